#!/usr/bin/env bash
# Create .venv with tabsynth and its dev extras. CPU torch is installed first when no torch is
# importable, so pip never resolves torch on its own (that pulls a multi-GB CUDA build).
# GPU users: install the torch build for your CUDA first (https://pytorch.org), then run this.
# Override: TORCH_SPEC (default torch==2.13.0), TORCH_INDEX_URL (e.g. the PyTorch CPU index).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing CPU torch (${TORCH_SPEC:-torch==2.13.0})"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
stamp="$VENV/.tabsynth-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing tabsynth[dev,report] (editable)"
  "${PIP[@]}" install -e ".[dev,report]"
  touch "$stamp"
fi
