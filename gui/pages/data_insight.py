"""The Evaluate step's answers about the data: "More data?" (the learning curve and its forecast) and
"Check labels" (examples whose label looks wrong, with keep / relabel / exclude per example).

Both read what the run wrote (``curve.json``, ``label_issues.json``) through the core; decisions go
into the project's ``data.exclude`` / ``data.relabel`` by :func:`tlapp.data.corrections.with_decisions`
and are saved with the project: the person's files are never moved or deleted.
"""

from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlapp.base.errors import TlappError
from tlapp.data.corrections import with_decisions
from tlapp.rundir import RunDir
from tlapp.training.insight import read_curve, read_label_issues

from ..theme import SERIES, muted_color, text_color
from ..widgets import thumbnail

ROWS = 60  # label-check rows shown (thumbnails decode on the GUI thread; the CLI lists them all)
THUMB = 56


class MoreDataPanel(QWidget):
    """The learning curve: measured points, the fitted curve, the forecast band and one sentence."""

    def __init__(self) -> None:
        super().__init__()
        self.run: Optional[RunDir] = None
        self.sentence = QLabel("After a run, this says whether more examples would help, and how many.")
        self.sentence.setWordWrap(True)
        self.sentence.setObjectName("curveSentence")
        self.target = QDoubleSpinBox()
        self.target.setRange(0.5, 0.999)
        self.target.setDecimals(3)
        self.target.setSingleStep(0.01)
        self.target.setValue(0.95)
        self.target.setToolTip("An accuracy to reach: the forecast says how many examples per class it takes")
        self.ask = QPushButton("How many for this accuracy?")
        self.ask.clicked.connect(self._for_target)
        self.gains = QLabel("")
        self.gains.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        fg = text_color().name()
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setPen(muted_color())
            self.plot.getAxis(side).setTextPen(fg)
        self.plot.setLabel("bottom", "training examples per class (log)", color=fg)
        self.plot.setLabel("left", "accuracy (held out)", color=fg)
        self.plot.setLogMode(x=True, y=False)
        self.plot.setMinimumHeight(140)  # the Evaluate splitter decides its height, not the plot
        row = QHBoxLayout()
        row.addWidget(QLabel("Target accuracy"))
        row.addWidget(self.target)
        row.addWidget(self.ask)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.sentence)
        lay.addLayout(row)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.gains)

    def show_run(self, rd: Optional[RunDir]) -> None:
        self.run = rd if rd is not None and rd.curve.is_file() else None
        self.ask.setEnabled(self.run is not None)
        self.plot.clear()
        self.gains.setText("")
        if self.run is None:
            self.sentence.setText(
                "No learning curve for this run: it is measured when the head is solved exactly on single-label "
                "classes (the presets' default)."
            )
            return
        self._draw(read_curve(self.run))

    def _for_target(self) -> None:
        if self.run is not None:
            try:
                self._draw(read_curve(self.run, round(self.target.value(), 3)))
            except TlappError as e:
                self.sentence.setText(str(e))

    def _draw(self, a: dict[str, Any]) -> None:
        self.sentence.setText(f"<b>{html.escape(a['sentence'])}</b>")
        self.plot.clear()
        if not a.get("available"):
            return
        pts, fc, law = a["points"], a["forecast"], a["law"]
        for p in pts:
            self.plot.plot(
                [p["per_class"]] * len(p["seeds"]),
                p["seeds"],
                pen=None,
                symbol="o",
                symbolSize=5,
                symbolBrush=pg.mkColor(SERIES["batch"]),
            )
        self.plot.plot(
            [p["per_class"] for p in pts],
            [p["accuracy"] for p in pts],
            pen=None,
            symbol="o",
            symbolSize=9,
            symbolBrush=pg.mkColor(SERIES["val"]),
            name="measured",
        )
        n = np.geomspace(min(p["per_class"] for p in pts), fc[-1]["per_class"], 80)
        self.plot.plot(n, 1 - law["a"] * n ** -law["b"], pen=pg.mkPen(SERIES["val"], width=2))
        xs = [f["per_class"] for f in fc]
        lo = self.plot.plot(xs, [f["low"] for f in fc], pen=pg.mkPen(SERIES["val"], width=1, style=Qt.PenStyle.DotLine))
        hi = self.plot.plot(
            xs, [f["high"] for f in fc], pen=pg.mkPen(SERIES["val"], width=1, style=Qt.PenStyle.DotLine)
        )
        band = pg.mkColor(SERIES["val"])
        band.setAlpha(40)
        self.plot.addItem(pg.FillBetweenItem(lo, hi, brush=band))
        self.plot.addItem(pg.InfiniteLine(np.log10(a["n_now"]), angle=90, pen=pg.mkPen(muted_color(), width=1)))
        gains = [c for c in a["classes"] if c["gain_2x"] > 0.005][:5]
        self.gains.setText(
            "Would gain most from more examples: "
            + ", ".join(f"{c['name']} (+{c['gain_2x']:.2f} with twice as many)" for c in gains)
            if gains
            else "No class stands out as needing more examples."
        )


class LabelCheckView(QWidget):
    """Examples whose label looks wrong; per example keep, relabel or exclude, saved into the project."""

    def __init__(self, state) -> None:
        super().__init__()
        self.state = state
        self.issues: list[dict[str, Any]] = []
        self.flagged = 0
        self.header = QLabel("After a run, examples whose label looks wrong are listed here.")
        self.header.setWordWrap(True)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("labelCheck")
        self.table.setHorizontalHeaderLabels(
            ["Example", "Labelled", "Looks like", "Probability of its label", "Decision"]
        )
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.table.setMinimumHeight(120)
        self.save = QPushButton("Save decisions")
        self.save.setToolTip("Written into the project (data.exclude, data.relabel); the next run uses them")
        self.save.clicked.connect(self.save_decisions)
        self.status = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.save)
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)

    def show_run(self, rd: Optional[RunDir]) -> None:
        self.table.setRowCount(0)
        self.issues = []
        self.save.setEnabled(False)
        if rd is None or not rd.label_issues.is_file():
            self.header.setText(
                "No label check for this run: it is made when the head is solved exactly on single-label classes."
            )
            return
        doc = read_label_issues(rd)
        self.flagged = len(doc["issues"])
        self.issues = (doc["issues"] + doc.get("doubtful", []))[:ROWS]
        conflicts = doc["duplicate_conflicts"]
        self.header.setText(
            f"<b>{len(doc['issues'])} of {doc['examples_checked']} examples look mislabelled</b> (a head that never "
            f"saw them confidently predicts another class; estimated label errors {doc['estimated_errors']:.0f}). "
            + (f"{len(conflicts)} group(s) of duplicate images carry different labels. " if conflicts else "")
            + (
                f"Below them, greyed: {len(doc['doubtful'])} more where the head prefers another class "
                "without the confidence to flag them. "
                if doc.get("doubtful")
                else ""
            )
            + (
                f"The first {ROWS} rows are shown; <code>tlapp label-issues --all</code> lists all. "
                if len(self.issues) == ROWS
                else ""
            )
            + "Decisions are saved in the project; your files are never moved or deleted."
        )
        self.table.setRowCount(len(self.issues))
        for r, it in enumerate(self.issues):
            self._fill_row(r, it, doc["classes"])
        self.table.resizeColumnsToContents()
        self.save.setEnabled(bool(self.issues))

    def _fill_row(self, r: int, it: dict[str, Any], classes: list[str]) -> None:
        cell = QTableWidgetItem(it["text"][:160] if it.get("text") else it["key"])
        cell.setToolTip(it["path"])
        if not it.get("text"):
            cell.setIcon(QIcon(thumbnail(it["path"], THUMB)))
        cells = [cell, QTableWidgetItem(it["given"]), QTableWidgetItem(it["suggested"])]
        cells.append(QTableWidgetItem(f"{it['self_confidence']:.3f}"))
        for c, item in enumerate(cells):
            if r >= self.flagged:  # doubtful, not flagged
                item.setForeground(muted_color())
            if c:
                item.setToolTip(it.get("reason", ""))
            self.table.setItem(r, c, item)
        box = QComboBox()
        box.addItem("keep", ("keep", None))
        for c in [it["suggested"], *[c for c in classes if c not in (it["suggested"], it["given"])]]:
            box.addItem(f"relabel as {c}", ("relabel", c))
        box.addItem("exclude", ("exclude", None))
        d = self.state.project.data
        if it["key"] in d.exclude:
            box.setCurrentIndex(box.count() - 1)
        elif it["key"] in d.relabel:
            box.setCurrentIndex(max(0, box.findText(f"relabel as {d.relabel[it['key']]}")))
        self.table.setCellWidget(r, 4, box)

    def decisions(self) -> tuple[list[str], dict[str, str], list[str]]:
        exclude, relabel, keep = [], {}, []
        for r, it in enumerate(self.issues):
            kind, label = self.table.cellWidget(r, 4).currentData()
            if kind == "exclude":
                exclude.append(it["key"])
            elif kind == "relabel":
                relabel[it["key"]] = label
            else:
                keep.append(it["key"])
        return exclude, relabel, keep

    def save_decisions(self) -> None:
        exclude, relabel, keep = self.decisions()
        self.state.set_project(with_decisions(self.state.project, exclude, relabel, keep))
        where = "the project (save it to keep them)"
        if self.state.path is not None:
            where = str(self.state.save())
        d = self.state.project.data
        self.status.setText(
            f"Saved in {where}: the next run leaves out {len(d.exclude)} and relabels {len(d.relabel)} example(s)."
        )
