#!/usr/bin/env bash
# The suite's GPU-relevant rows against plain Keras on the same GPU (about 10 minutes on one GPU),
# and what train.strategy "auto" picks there (one GPU: default strategy, mixed precision on).
#   bash benchmarks/gpu.sh [OUT.json]
# Needs: pip install -e ".[gpu]" on a machine with an NVIDIA GPU. Untested here: no GPU was lent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu.json}"
python -m tlapp doctor --json | tee "${out%.json}-doctor.json"
python - "${out%.json}-doctor.json" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
print("strategy auto:", info["strategy_auto"])
if info.get("device") == "GPU" and len(info.get("gpus", [])) == 1:
    assert info["strategy_auto"].startswith("default"), info["strategy_auto"]
PY
python benchmarks/run.py --only frozen_phase,finetune,pipeline,large_set --json "$out"
