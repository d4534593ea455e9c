"""Exports of a tuned causal LM, and their check in a fresh process (issue #11).

``export/`` gets:
- ``preset/``: the merged model (adapters folded into the kernels) as a Hugging Face Llama folder.
  ``keras_hub.models.CausalLM.from_preset("export/preset")`` loads it without tlapp, and so do
  ``transformers`` and llama.cpp's ``convert_hf_to_gguf.py``;
- ``lora.weights.h5``: the adapter alone (LoRA runs), a few MB, with its rank, alpha and targets;
- ``samples.json``: prompt token ids and the greedy answer the app produced for each;
- ``README.md``: how to load and prompt it.

The check runs :data:`CHECK` with ``python -c``: it imports keras_hub and numpy only, loads the
folder, decodes the same prompts greedily and scores the app's answers token by token. Every token
must match, except at a tie: where the app's two best logits were within :data:`TIE`, or where the
exported model scores the app's token within :data:`LOGIT_TOLERANCE` of its own best (merging an
adapter into a kernel changes the float rounding, so a near-tie may break the other way; on a real
model that is rare, on a random test model common). The answer tokens' logits must agree within
:data:`LOGIT_TOLERANCE`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from tlapp.backbones.causal_lm import LanguageModel
from tlapp.backbones.llama_folder import check_gguf, tensors_from_backbone, write_folder, write_gguf
from tlapp.base.fsutil import atomic_write_text
from tlapp.model.lm import Generator, Trainables

PRESET, ADAPTER, SAMPLES, GGUF = "preset", "lora.weights.h5", "samples.json", "model-f16.gguf"
TIE = 1e-3
LOGIT_TOLERANCE = 1e-2  # float32 logits of ~10-30 through 30 layers, kernels merged vs added at run time

CHECK = r"""
import json, sys
import numpy as np
import keras_hub
folder, samples = sys.argv[1], json.load(open(sys.argv[2]))
lm = keras_hub.models.CausalLM.from_preset(folder)
lm.preprocessor = None  # token ids in, token ids out: the same inputs the app used
lm.compile(sampler="greedy")
results = []
for case in samples["cases"]:
    p, want = case["prompt_ids"], case["expected_ids"]
    n = len(p) + samples["max_new"]
    ids = np.zeros((1, n), "int32"); ids[0, :len(p)] = p
    mask = np.zeros((1, n), bool); mask[0, :len(p)] = True
    out = lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=[samples["end_id"]])
    t, m = np.asarray(out["token_ids"])[0], np.asarray(out["padding_mask"])[0]
    got = [int(x) for x in t[len(p):][m[len(p):]]]
    got = got[:got.index(samples["end_id"])] if samples["end_id"] in got else got
    seq = np.asarray([p + want], "int32")
    logits = np.asarray(lm.predict_on_batch({"token_ids": seq, "padding_mask": np.ones_like(seq, bool)}))[0]
    chosen = [float(logits[len(p) - 1 + i, tok]) for i, tok in enumerate(want)]
    diff = float(np.max(np.abs(np.subtract(chosen, case["logits"])))) if want else 0.0
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    if first is None and len(got) != len(want):
        first = min(len(got), len(want))
    tie = False
    if first is not None:  # a tie: the app's token scores within rounding of the best one here too
        row = logits[len(p) - 1 + first]
        mine = want[first] if first < len(want) else samples["end_id"]
        tie = case["margins"][first] < samples["tie"] or float(row.max() - row[mine]) <= samples["tolerance"]
    results.append({"match": first is None, "tie_at": first if tie else None, "tokens": len(want),
                    "max_logit_diff": diff, "ok": (first is None or tie) and diff <= samples["tolerance"]})
print("RESULT " + json.dumps({"class": type(lm).__name__, "results": results}))
"""

README = """# {name}: a fine-tuned causal language model

Exported by tlapp from `{base}` ({mode}). The prompt format is ChatML:

    <|im_start|>user
    YOUR QUESTION<|im_end|>
    <|im_start|>assistant

{system_line}
## Load it without tlapp

```python
import keras_hub
lm = keras_hub.models.CausalLM.from_preset("{preset}")  # a Hugging Face Llama folder
```

Prompt it with token ids from `tokenizer.json` (the `tokenizers` library reproduces the model's own
splitting exactly; keras-hub's Llama-3 tokenizer splits runs of spaces and newlines differently).
`transformers.AutoModelForCausalLM.from_pretrained("{preset}")` also loads it, and llama.cpp's
`convert_hf_to_gguf.py` converts it to GGUF.

With tlapp: `tlapp generate RUN "your question"`.

## Files

{files}
"""


def export_lm(
    lm: LanguageModel,
    dest: Path,
    name: str,
    mode: str,
    lora: Optional[dict[str, Any]],
    prompts: Sequence[Sequence[int]],
    max_new: int = 32,
    gguf: bool = False,
) -> dict[str, Any]:
    """Write the export folder; returns what was written (for metrics.json and the card)."""
    dest.mkdir(parents=True, exist_ok=True)
    files = replace(lm.tokenizer.files, tensors=tensors_from_backbone(lm.backbone))
    write_folder(files, dest / PRESET)
    written = [PRESET + "/"]
    gguf_check = None
    if gguf:
        write_gguf(files, dest / GGUF, name)
        gguf_check = check_gguf(dest / GGUF, files)
        written.append(GGUF)
    if lora:
        variables = [w for w in lm.backbone.weights if "lora_kernel" in w.path]
        Trainables(variables, {k: json.dumps(v) for k, v in lora.items()}).save_weights(dest / ADAPTER)
        written.append(ADAPTER)
    gen = Generator(lm.backbone, lm.tokenizer.end_id)
    cases = [_case(gen.model, [int(t) for t in p], gen([p], max_new)[0]) for p in prompts]
    atomic_write_text(
        dest / SAMPLES,
        json.dumps(
            {
                "end_id": lm.tokenizer.end_id,
                "max_new": max_new,
                "tie": TIE,
                "tolerance": LOGIT_TOLERANCE,
                "cases": cases,
            }
        ),
    )
    written.append(SAMPLES)
    lines = {
        PRESET + "/": "the merged model (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)",
        GGUF: "the merged model for llama.cpp (f16; `llama-cli -m model-f16.gguf -cnv`)",
        ADAPTER: "the LoRA adapter alone (attrs: rank, alpha, targets, base)",
        SAMPLES: "prompts and the app's greedy answers (token ids), for the parity check",
    }
    system_line = (
        f'With no system turn, the model was tuned with its default system prompt: "{lm.system}".\n'
        if lm.system
        else ""
    )
    atomic_write_text(
        dest / "README.md",
        README.format(
            name=name,
            base=lm.entry.name,
            mode=mode,
            preset=str(dest / PRESET),
            system_line=system_line,
            files="\n".join(f"- `{f}`: {lines[f]}" for f in written),
        ),
    )
    written.append("README.md")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    return {
        "dir": str(dest),
        "formats": [f.rstrip("/") for f in written if f != "README.md"],
        "files": written,
        "bytes": size,
        **({"gguf_check": gguf_check} if gguf_check else {}),
    }


def _case(model: Any, prompt: list[int], answer: list[int]) -> dict[str, Any]:
    """A prompt, the app's greedy answer, and per answer token its logit and the top-two margin."""
    import numpy as np

    seq = np.asarray([prompt + answer], np.int32)
    logits = np.asarray(model.predict_on_batch({"token_ids": seq, "padding_mask": np.ones_like(seq, bool)}))[0]
    rows = logits[len(prompt) - 1 : len(prompt) - 1 + len(answer) + 1]
    top2 = np.sort(rows, axis=-1)[:, -2:]
    return {
        "prompt_ids": prompt,
        "expected_ids": answer,
        "logits": [float(rows[i, t]) for i, t in enumerate(answer)],
        "margins": [float(m) for m in top2[:, 1] - top2[:, 0]],
    }


def verify_lm(dest: Path, timeout: float = 900) -> dict[str, Any]:
    """Load ``dest/preset`` in a fresh Python with keras_hub alone and compare greedy tokens."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        r = subprocess.run(
            [sys.executable, "-c", CHECK, str(dest / PRESET), str(dest / SAMPLES)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "summary": f"the fresh process did not finish in {timeout:.0f} s"}
    line = next((x for x in reversed(r.stdout.splitlines()) if x.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "summary": f"keras_hub could not load or run the export: {tail}"}
    out = json.loads(line[len("RESULT ") :])
    res = out["results"]
    same, ties = sum(x["match"] for x in res), sum(x["tie_at"] is not None for x in res)
    ok = all(x["ok"] for x in res)
    tokens = sum(x["tokens"] for x in res)
    diff = max((x["max_logit_diff"] for x in res), default=0.0)
    tie_note = f" ({ties} diverged only where two tokens scored within rounding of each other)" if ties else ""
    return {
        "ok": ok,
        "loader": f"keras_hub.models.CausalLM.from_preset -> {out['class']}",
        "results": res,
        "max_logit_diff": diff,
        "summary": f"{same}/{len(res)} prompts give the same {tokens} greedy tokens from export/preset loaded "
        f"by keras_hub alone ({out['class']}){tie_note}; answer-token logits within {diff:.1e}"
        + ("" if ok else " — MISMATCH"),
    }
