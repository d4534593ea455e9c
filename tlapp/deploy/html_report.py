"""``report.html`` in the run folder: the evaluation a person reads, with no tlapp needed to open it.

Metrics per split, the plots (``plots/*.png``), per-class scores, and per class the examples the
model got wrong with the most confidence, as small embedded thumbnails (the page stays valid when
the data folder moves).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Optional

from tlapp.base.fsutil import atomic_write_text
from tlapp.deploy.evaluate import confidently_wrong
from tlapp.deploy.metrics import summary_lines
from tlapp.rundir import RunDir

THUMB = 96


def _thumb(path: str) -> str:
    from PIL import Image

    from tlapp.data.imageio import ImageProblem, load_rgb

    try:
        img = Image.fromarray(load_rgb(path))
    except (ImageProblem, OSError):
        return ""
    img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _section(name: str, split: str, rep: dict[str, Any], run_dir: RunDir) -> list[str]:
    e = html.escape
    out = [f"<h2>{e(name)}</h2>", "<pre>" + e("\n".join(summary_lines(rep))) + "</pre>"]
    for kind in ("confusion", "reliability", "residuals"):
        if (run_dir.plots / f"{split}_{kind}.png").is_file():
            out.append(f'<img class="plot" src="plots/{split}_{kind}.png" alt="{kind}">')
    wrong = confidently_wrong(rep)
    if wrong:
        out.append("<h3>Most confidently wrong, per true class</h3>")
        for label, rows in wrong.items():
            cells = []
            for p in rows:
                caption = e(f"said {p['pred']} ({p.get('score', 0):.2f})")
                if "text" in p:
                    cells.append(f'<div class="ex"><q>{e(p["text"][:200])}</q><br>{caption}</div>')
                else:
                    src = _thumb(p["path"])
                    img = f'<img src="{src}" alt="">' if src else "(unreadable)"
                    cells.append(f'<div class="ex" title="{e(p["path"])}">{img}<br>{caption}</div>')
            out.append(f"<h4>true: {e(label)}</h4><div class='row'>{''.join(cells)}</div>")
    elif "predictions" in rep and "per_class" in rep:
        out.append("<p>✓ No misclassified examples.</p>")
    return out


def write_html(
    run_dir: RunDir, title: str, val: Optional[dict[str, Any]], test: Optional[dict[str, Any]], card_md: str = ""
) -> Path:
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:.6em}.plot{max-width:48%;margin:.3em}"
        ".row{display:flex;flex-wrap:wrap;gap:.6em}.ex{font-size:80%;max-width:200px}</style>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if val:
        parts += _section("Validation", "val", val, run_dir)
    if test:
        parts += _section("Test (held out, evaluated once)", "test", test, run_dir)
    if card_md:
        parts += ["<h2>Model card</h2>", "<pre>" + html.escape(card_md) + "</pre>"]
    path = run_dir.report_html
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path
