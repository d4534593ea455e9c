"""Training throughput with the GUI attached vs the headless CLI, same project.

    python benchmarks/gui_vs_cli.py [--per-class 30] [--epochs 2]

Both runs fine-tune the top blocks (no embedding cache, so every batch goes
through the backbone); images/s is read from each run's events.jsonl for the
last epoch (after graph tracing). Prints the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def last_epoch_ips(run_dir: Path) -> float:
    rows = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    return [r["data"]["images_per_s"] for r in rows if r["type"] == "epoch_end"][-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sign_language_digits" / "Dataset")
    args = ap.parse_args()
    from tlapp.config import project_from_dict, save_project

    work = Path(tempfile.mkdtemp())
    pfile = work / "p.yaml"
    save_project(
        project_from_dict(
            {
                "name": "bench",
                "data": {"path": str(args.data), "max_per_class": args.per_class},
                "backbone": {"name": "efficientnet_lite0", "image_size": 128},
                "train": {
                    "batch_size": 32,
                    "phases": [
                        {
                            "name": "ft",
                            "epochs": args.epochs,
                            "learning_rate": 1e-4,
                            "freeze": {"mode": "top_blocks", "blocks": 2},
                        }
                    ],
                },
                "export": {"formats": []},
            }
        ),
        pfile,
    )

    subprocess.run(
        [sys.executable, "-m", "tlapp", "train", str(pfile), "--out", str(work / "cli")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cli = last_epoch_ips(work / "cli")

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(settings=QSettings(str(work / "s.ini"), QSettings.Format.IniFormat))
    win.show()
    win.open(pfile)
    tp = win.pages[4]
    tp.refresh()
    tp.new_run_dir = lambda: work / "gui"
    tp.start()
    while tp.status_text == "running":
        app.processEvents()
        time.sleep(0.01)
    gui = last_epoch_ips(work / "gui")
    print(f"fine-tune images/s (last epoch): CLI {cli:.1f}, GUI {gui:.1f} -> GUI/CLI {gui / cli:.3f}")


if __name__ == "__main__":
    main()
