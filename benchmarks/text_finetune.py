"""Text fine-tune throughput: padded-string model vs tlapp's length-trimmed token batches.

    python benchmarks/text_finetune.py

MiniLM-L6 (top 2 transformer layers trainable), SMS Spam Collection (100 per
class), sequence length 64; the same layers are trained both ways. Prints
texts/s after one warm-up epoch each; asserts nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tlapp.backbones.freeze import apply_plan
    from tlapp.config import FreezePlan, project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import text_dataset
    from tlapp.data.scan_text import scan_text
    from tlapp.data.split import split_examples
    from tlapp.model.text_model import build_text_model, token_batches

    data = ROOT.parent / "shared" / "data" / "smsspamcollection" / "SMSSpamCollection"
    rep = scan_text(data, "text_classification")
    p = project_from_dict(
        {
            "task": {"type": "text_classification"},
            "data": {"path": str(data)},
            "backbone": {"name": "minilm_l6", "weights": "pretrained", "sequence_length": 64},
        }
    )
    sp = split_examples(rep.examples, p.task.type, 0.2, 0.0, 1, 100)
    enc = LabelEncoder(p.task.type, rep.classes)
    asm = build_text_model(p, len(rep.classes))
    apply_plan(asm.backbone.model, asm.backbone.entry, FreezePlan(mode="top_blocks", blocks=2))
    rates = {}
    for name, model, ds in [
        ("padded strings", asm.model, text_dataset(sp.train, enc, 32, shuffle=True)),
        ("trimmed tokens", asm.token_model, token_batches(asm, sp.train, enc, 32, shuffle=True)),
    ]:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(ds, epochs=1, verbose=0)  # tracing
        t0 = time.time()
        model.fit(ds, epochs=1, verbose=0)
        rates[name] = len(sp.train) / (time.time() - t0)
        print(f"{name}: {rates[name]:.1f} texts/s")
    print(f"ratio: {rates['trimmed tokens'] / rates['padded strings']:.2f}x")


if __name__ == "__main__":
    main()
