"""Frozen-phase speed: tlapp's embedding cache vs plain ``model.fit``; fine-tune
images/s: tlapp vs a plain Keras ``fit`` on the same model. One process, one run.

    python benchmarks/frozen_vs_fit.py [--epochs 10] [--n 400] [--size 160]

Data: ../shared sign-language digits when present, else the demo digits.
Prints ratios (baseline time / tlapp time); nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def dataset(tmp: Path) -> Path:
    shared = ROOT.parent / "shared" / "data" / "sign_language_digits" / "Dataset"
    if shared.is_dir():
        return shared
    from tlapp.data.demo import write_digits

    return write_digits(tmp / "digits")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n", type=int, default=40, help="images per class")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    args = ap.parse_args()

    from tlapp.backbones.freeze import apply_plan
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import image_dataset
    from tlapp.data.scan_images import scan
    from tlapp.data.split import split_examples
    from tlapp.model.image_model import build_model
    from tlapp.training.run import train

    tf, keras = quiet_import()
    tmp = Path(tempfile.mkdtemp())
    data = dataset(tmp)
    base = {
        "name": "bench",
        "data": {"path": str(data), "val_fraction": 0.2, "max_per_class": args.n},
        "backbone": {"name": args.backbone, "image_size": args.size},
        "head": {"dropout": 0.0},
        "export": {"formats": []},
    }

    def phase_seconds(phases: list[dict]) -> tuple[list[float], list[float]]:
        events = []
        train(
            project_from_dict({**base, "train": {"batch_size": 32, "phases": phases}}),
            tmp / f"run{time.time()}",
            events.append,
        )
        starts = [e.time for e in events if e.type == "phase_start"]
        ends = [e.time for e in events if e.type == "phase_end"]
        ips = [e.data["images_per_s"] for e in events if e.type == "epoch_end"]
        return [b - a for a, b in zip(starts, ends)], ips

    # tlapp, frozen phase with the embedding cache (includes the one forward pass).
    from tlapp.training import embcache

    embcache.clear()
    (t_cache,), _ = phase_seconds([{"name": "head", "epochs": args.epochs, "learning_rate": 1e-3}])

    # Plain Keras: same model, backbone frozen, images through the backbone every epoch.
    p = project_from_dict({**base, "train": {"batch_size": 32}})
    rep = scan(data)
    sp = split_examples(rep.examples, p.task.type, 0.2, 0.0, 42, args.n)
    enc = LabelEncoder(p.task.type, rep.classes)
    asm = build_model(p, len(rep.classes))
    asm.backbone.model.trainable = False
    ds = image_dataset(sp.train, enc, asm.backbone.size, 32, shuffle=True)
    vds = image_dataset(sp.val, enc, asm.backbone.size, 32)
    asm.model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    t0 = time.time()
    asm.model.fit(ds, validation_data=vds, epochs=args.epochs, verbose=0)
    t_plain = time.time() - t0

    # Fine-tune throughput: tlapp phase vs plain fit, top 2 blocks trainable, BN frozen.
    _, ips = phase_seconds(
        [{"name": "ft", "epochs": 3, "learning_rate": 1e-4, "freeze": {"mode": "top_blocks", "blocks": 2}}]
    )
    tl_ips = float(np.median(ips[1:]))  # epoch 1 includes graph tracing
    from tlapp.config import FreezePlan

    apply_plan(asm.backbone.model, asm.backbone.entry, FreezePlan(mode="top_blocks", blocks=2))
    asm.model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    asm.model.fit(ds, validation_data=vds, epochs=1, verbose=0)  # warm-up (tracing), like tlapp's epoch 1
    rates = []
    for _ in range(2):  # tlapp's epoch time includes validation too
        t0 = time.time()
        asm.model.fit(ds, validation_data=vds, epochs=1, verbose=0)
        rates.append(len(sp.train) / (time.time() - t0))
    plain_ips = float(np.median(rates))

    print(f"data: {data} ({len(sp.train)} train / {len(sp.val)} val), backbone {args.backbone}@{args.size}")
    print(
        f"frozen phase, {args.epochs} epochs: plain model.fit {t_plain:.1f}s, tlapp embedding cache {t_cache:.1f}s "
        f"-> {t_plain / t_cache:.1f}x faster"
    )
    print(
        f"fine-tune (top 2 blocks, median of 2 epochs after tracing, validation included): plain fit "
        f"{plain_ips:.1f} img/s, tlapp {tl_ips:.1f} img/s -> ratio {tl_ips / plain_ips:.2f}"
    )


if __name__ == "__main__":
    main()
