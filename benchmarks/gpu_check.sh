#!/usr/bin/env bash
# GPU check (issue 27): the paper model (rsrefseg2-paper, random full-size weights built on the GPU, nothing
# downloaded) in fp32 and bf16 on one NVIDIA GPU, in at most 5 minutes; prints the table beside the paper's
# 5.4 FPS (RTX 4090) and writes benchmarks/results/gpu_check.json. See benchmarks/gpu_check.py for what each
# figure measures.
#
# Usage: bash benchmarks/gpu_check.sh [gpu_check.py options, e.g. --views 8 --device cuda:1]
# Python: $PYTHON, else .venv/bin/python in the repository, else python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi
LIMIT_S="${GPU_CHECK_LIMIT_S:-300}"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "note: nvidia-smi not found; the Python part checks for a CUDA device itself" >&2
fi

cd "$ROOT"
status=0
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" timeout "$LIMIT_S" "$PYTHON" benchmarks/gpu_check.py "$@" || status=$?
if [[ $status -eq 124 ]]; then
    echo "error: the GPU check ran past ${LIMIT_S} s and was stopped" >&2
    echo "hint: run with fewer --views or --repeats, or raise GPU_CHECK_LIMIT_S" >&2
fi
exit $status
