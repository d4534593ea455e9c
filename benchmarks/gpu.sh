#!/usr/bin/env bash
# The suite's GPU-relevant rows against plain Keras on the same GPU (about 10 minutes on one GPU).
#   bash benchmarks/gpu.sh [OUT.json]
# Needs: pip install -e ".[gpu]" on a machine with an NVIDIA GPU. Untested here: no GPU was lent.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu.json}"
python -m tlapp doctor
python benchmarks/run.py --only frozen_phase,finetune,pipeline,large_set --json "$out"
