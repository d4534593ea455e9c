"""Step 7 — Export: formats, destination, the fresh-process parity result,
open the folder, and "Try it": drop an image to see the exported model's answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from tlapp.deploy.formats import formats_for
from tlapp.deploy.predict import Predictor, find_export
from tlapp.deploy.report import status as report_status
from tlapp.deploy.report import status_lines
from tlapp.rundir import RunDir

from ..widgets import open_folder, show_error, thumbnail
from ..workers import FunctionWorker
from .base import WizardPage
from .lm_views import ChatBox


class DropLabel(QLabel):
    """Accepts a dropped image file."""

    def __init__(self, on_file) -> None:
        super().__init__("Drop an image here\n(or click “Choose image…”)")
        self.on_file = on_file
        self.setAcceptDrops(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(220, 220)
        self.setStyleSheet("QLabel { border: 2px dashed palette(mid); border-radius: 8px; }")

    def dragEnterEvent(self, e) -> None:  # noqa: N802 - Qt API
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        urls = e.mimeData().urls()
        if urls:
            self.on_file(urls[0].toLocalFile())


class ExportPage(WizardPage):
    title = "Export"
    intro = (
        "Training already exported your model and checked it in a fresh process, as a deployment would load "
        "it. Here you can add formats or export to another folder, open the folder, and try the exported "
        "model on your own images or texts."
    )

    intro_lm = (
        "Training exported the tuned model — merged into one folder that keras-hub, transformers and "
        "llama.cpp's converter load, plus the adapter alone — and checked it in a fresh process with keras-hub "
        "only. Ask it questions below; open the folder to copy it anywhere."
    )

    def __init__(self, state) -> None:
        super().__init__(state)
        self.worker: Optional[FunctionWorker] = None
        self.predictor = None
        self.report_poll = QTimer(self)  # the export report lands after the run: show it when it does
        self.report_poll.setSingleShot(True)
        self.report_poll.setInterval(1000)
        self.report_poll.timeout.connect(self.show_parity)
        self.formats = {
            f: QCheckBox(label)
            for f, label in (
                ("savedmodel", "SavedModel (TF Serving / TFLite converter)"),
                ("keras", ".keras"),
                ("h5", "Legacy .h5"),
                ("tflite", "TFLite float32"),
                ("tflite_fp16", "TFLite float16"),
                ("tflite_int8", "TFLite int8"),
                ("onnx", "ONNX"),
            )
        }
        for f, tip in (
            (
                "savedmodel",
                "TensorFlow's deployment format: TF Serving, TFLite and TF.js converters. "
                "Takes raw images (uint8 or float). Always recommended.",
            ),
            ("keras", "Keras 3 file: reload with keras.saving.load_model to keep training or inspect"),
            ("h5", "Legacy Keras 2 format, only for old tools that need it"),
            ("tflite", "TensorFlow Lite for phones and boards, same numbers as the SavedModel (images only)"),
            (
                "tflite_fp16",
                "TFLite with 16-bit weights: half the size; answers may differ slightly "
                "(the report below measures how often)",
            ),
            (
                "tflite_int8",
                "TFLite, all-integer: about 4x smaller and fastest on phones and "
                "microcontrollers; calibrated on your training images, its accuracy "
                "change is measured on your validation images",
            ),
            (
                "onnx",
                "ONNX for ONNX Runtime, OpenVINO or TensorRT (images only; needs "
                'pip install "tlapp[onnx]"), checked with ONNX Runtime',
            ),
        ):
            self.formats[f].setToolTip(tip)
        self.dest = QLineEdit()
        self.dest.setPlaceholderText("Export folder (default: the run's export/)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(
            lambda: self.dest.setText(QFileDialog.getExistingDirectory(self, "Export to") or self.dest.text())
        )
        self.dest.setToolTip("Where 'Export again' writes. Empty: the run's own export/ folder.")
        self.export_btn = QPushButton("Export again")
        self.export_btn.setToolTip(
            "Write the ticked formats again (to the folder at the left) and re-check them in a fresh process"
        )
        self.export_btn.clicked.connect(self.reexport)
        self.open_btn = QPushButton("Open folder")
        self.open_btn.setToolTip("Show the exported model's folder in your file manager")
        self.open_btn.clicked.connect(lambda: open_folder(self.export_dir()))
        self.parity = QLabel(
            "No export yet: train a model on the Training step (or open a finished run with "
            "File > Open run…); its export and the fresh-process check appear here."
        )
        self.parity.setWordWrap(True)
        self.drop = DropLabel(self.try_file)
        choose = QPushButton("Choose image…")
        choose.clicked.connect(self._choose)
        self.explain_btn = QPushButton("Show what it looked at")
        self.explain_btn.setToolTip(
            "Grad-CAM: colours the parts of the image that pushed the model towards its "
            "answer (red = most). Also `tlapp explain RUN IMAGE`."
        )
        self.explain_btn.clicked.connect(self.explain_last)
        self.explain_btn.setEnabled(False)
        self._last_image: Optional[str] = None
        self.text_in = QLineEdit()
        self.text_in.setPlaceholderText("Type a text and press Enter to classify it")
        self.text_in.returnPressed.connect(lambda: self.try_text(self.text_in.text()))
        self.answer = QLabel()
        self.answer.setWordWrap(True)
        self.answer.setObjectName("tryAnswer")
        self.chat = ChatBox()
        self.chat_title = QLabel(
            "<b>Try it</b> — chat with the tuned model (loaded from export/preset, exactly as keras-hub would load it):"
        )
        self.try_title = QLabel("<b>Try it</b> — the exported SavedModel answers, exactly as a deployment would:")
        self.browse_btn = browse
        lay = QVBoxLayout(self)
        for cb in self.formats.values():
            lay.addWidget(cb)
        row = QHBoxLayout()
        row.addWidget(self.dest, 1)
        row.addWidget(browse)
        row.addWidget(self.export_btn)
        row.addWidget(self.open_btn)
        lay.addLayout(row)
        lay.addWidget(self.parity)
        lay.addWidget(self.chat_title)
        lay.addWidget(self.chat, 1)
        lay.addWidget(self.try_title)
        tr = QHBoxLayout()
        tr.addWidget(self.drop)
        col = QVBoxLayout()
        self.choose = choose
        col.addWidget(self.text_in)
        col.addWidget(choose)
        col.addWidget(self.explain_btn)
        col.addWidget(self.answer, 1)
        tr.addLayout(col, 1)
        lay.addLayout(tr, 1)

    def export_dir(self) -> Path:
        return Path(self.dest.text()) if self.dest.text().strip() else RunDir(self.state.run_dir or ".").export

    def refresh(self) -> None:
        text = self.state.project.task.type.is_text
        lm = self.state.project.task.type.is_generative
        ready = self.state.run_dir is not None and RunDir(self.state.run_dir).is_finished()
        for w in (self.chat, self.chat_title):
            w.setVisible(lm)
        for w in (self.try_title, self.dest, self.browse_btn, self.export_btn, self.answer, *self.formats.values()):
            w.setVisible(not lm)
        if lm:
            for w in (self.drop, self.choose, self.text_in, self.explain_btn):
                w.setVisible(False)
            self.open_btn.setEnabled(ready)
            self.chat.set_run(Path(self.state.run_dir) if ready else None)
            self.show_lm_export(ready)
            return
        for w in (self.drop, self.choose, self.text_in, self.export_btn, self.open_btn):
            w.setEnabled(ready)
        if not ready:
            self.answer.setText("Once a model is trained, drop an image (or type a text) to see its answer here.")
        self.text_in.setVisible(text)
        possible = formats_for(self.state.project.task.type)
        for f, cb in self.formats.items():
            cb.setVisible(f in possible)
        self.drop.setVisible(not text)
        self.choose.setVisible(not text)
        self.explain_btn.setVisible(
            not text and self.state.project.task.type.value in ("image_classification", "multi_label")
        )
        fmts = self.state.project.export.formats
        for f, cb in self.formats.items():
            cb.setChecked(f in fmts)
        self.show_parity()

    def show_lm_export(self, ready: bool) -> None:
        if not ready:
            self.parity.setText(
                "No export yet: train the model on the Training step (or open a finished run with "
                "File > Open run…). The merged model, the adapter and the fresh-process check appear "
                "here, and you can chat with it below."
            )
            return
        rd = RunDir(self.state.run_dir)
        exp = rd.read_json(rd.metrics, {}).get("export") or {}
        v = exp.get("verify") or {}
        files = "".join(f"<li><code>{f}</code></li>" for f in exp.get("files", []))
        size = exp.get("bytes", 0) / 2**20
        self.parity.setText(
            f"<b>{'✓' if v.get('ok') else '✗'} Fresh-process check:</b> {v.get('summary', 'not run')}<br>"
            f"Folder {exp.get('dir')} ({size:.0f} MB):<ul>{files}</ul>"
            'Load it anywhere with <code>keras_hub.models.CausalLM.from_preset("…/export/preset")</code> or '
            '<code>tlapp generate RUN "question"</code>; its README.md says how.'
        )

    def show_parity(self) -> None:
        if self.state.run_dir is None or not RunDir(self.state.run_dir).is_finished():
            return
        rd = RunDir(self.state.run_dir)
        exp = rd.read_json(rd.metrics, {}).get("export") or {}
        v = exp.get("verify") or {}
        rows = "".join(
            f"<li>{r['artifact']}: max |diff| {r['max_abs_diff']:.1e}, argmax "
            f"{'same' if r['argmax_match'] else 'DIFFERENT'}</li>"
            for r in v.get("results", [])
        )
        ok = v.get("ok")
        st = report_status(rd.export)
        lines = status_lines(st)
        if st["status"] == "running":
            self.report_poll.start()
        table = (f"<b>{lines[0]}</b><ul>" + "".join(f"<li>{x[2:]}</li>" for x in lines[1:]) + "</ul>") if lines else ""
        self.parity.setText(
            f"<b>{'✓' if ok else '✗'} Fresh-process check:</b> {v.get('summary', 'not run')}"
            f"<ul>{rows}</ul>{table}Folder: {exp.get('dir')}"
        )

    def commit(self) -> None:
        if self.state.project.task.type.is_generative:
            return  # a language model always exports its merged folder (+ adapter); no formats to choose
        self.state.update("export", formats=[f for f, cb in self.formats.items() if cb.isChecked()])

    def validate(self) -> Optional[str]:
        if self.state.project.task.type.is_generative:
            return None
        return None if any(cb.isChecked() for cb in self.formats.values()) else "Choose at least one export format."

    def reexport(self) -> None:
        from tlapp.deploy.finished_run import (
            reexport,  # loads TensorFlow: only when asked
        )

        if self.state.run_dir is None:
            show_error(self, "Train a model first.")
            return
        fmts = [f for f, cb in self.formats.items() if cb.isChecked()]
        out = Path(self.dest.text()) if self.dest.text().strip() else None
        self.worker = FunctionWorker(reexport, self.state.run_dir, fmts, out)
        self.worker.done.connect(
            lambda info: self.parity.setText(
                f"Exported {info['formats']} to {info['dir']}. Check: {(info.get('verify') or {}).get('summary')}"
                + (f" Problems: {info['errors']}" if info["errors"] else "")
            )
        )
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.parity.setText("Exporting and checking in a fresh process…")
        self.worker.start()

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose an image", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp)"
        )
        if path:
            self.try_file(path)

    def try_file(self, path: str) -> None:
        if self.state.run_dir is None:
            show_error(self, "Train and export a model first.")
            return
        self.drop.setPixmap(thumbnail(path, 200))
        self._last_image = path
        self.explain_btn.setEnabled(False)
        self._predict(lambda p: p.predict_files([path])[0])

    def explain_last(self) -> None:
        """Grad-CAM of the image just tried, computed off the GUI thread; the overlay replaces it."""
        if self.state.run_dir is None or not self._last_image:
            return
        from tlapp.deploy.explain import explain_file  # loads TensorFlow: only when asked

        path = self._last_image
        self.worker = FunctionWorker(explain_file, Path(self.state.run_dir), Path(path))
        self.worker.done.connect(self._explained)
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.explain_btn.setEnabled(False)
        self.answer.setText(self.answer.text() + "<br><i>Computing the heat map…</i>")
        self.worker.start()

    def _explained(self, result) -> None:
        ex, png = result
        self.drop.setPixmap(thumbnail(str(png), 200))
        self.answer.setText(
            f"<h2>{ex.predicted}</h2>Heat map for <b>{ex.class_name}</b> (score {ex.score:.3f}): "
            f"red areas pushed the model towards it most.<br>Saved as {png}"
        )
        self.explain_btn.setEnabled(True)

    def _predict(self, fn) -> None:
        """Run ``fn(predictor)`` off the GUI thread with the run's exported SavedModel."""
        run = Path(self.state.run_dir)

        def work():
            if self.predictor is None or self.predictor.export_dir != find_export(run):
                self.predictor = Predictor.load(run)
            return fn(self.predictor)

        self.worker = FunctionWorker(work)
        self.worker.done.connect(self._answer)
        self.worker.failed.connect(lambda m, d: show_error(self, m, d))
        self.answer.setText("Predicting…")
        self.worker.start()

    def try_text(self, text: str) -> None:
        if self.state.run_dir is None or not text.strip():
            return
        self._predict(lambda p: p.predict_texts([text])[0])

    def _answer(self, r: dict) -> None:
        if "error" in r:
            self.answer.setText(f"Cannot read this image: {r['error']}")
            return
        if "label" not in r:
            self.answer.setText(json.dumps(r))
            return
        self.explain_btn.setEnabled(self._last_image is not None and r.get("path") == self._last_image)
        top = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:5]
        self.answer.setText(
            f"<h2>{r['label']}</h2>score {r['score']:.3f}<br>" + "<br>".join(f"{c}: {s:.3f}" for c, s in top)
        )
