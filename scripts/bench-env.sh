#!/usr/bin/env bash
# Create (or refresh) the anchors benchmark virtualenv at .venv-bench.
#
# Why a separate venv: ctgan / sdv / sdmetrics pin pandas<3, while tabsynth's own venv runs
# pandas 3. CPU torch is installed first, and only when it is not importable yet, so that
# ctgan's "torch" requirement is already satisfied and pip never pulls a multi-GB CUDA build.
#
# Usage: bash scripts/bench-env.sh [VENV_DIR]      (default: <repo>/.venv-bench)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-bench}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # CPU wheel; add the PyTorch CPU index where the default index would give a CUDA build.
    "$PY" -m pip install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

"$PY" -m pip install ctgan sdv sdmetrics
"$PY" -m pip install -e "$REPO"

"$PY" - <<'PY'
from importlib.metadata import version

import ctgan  # noqa: F401
import pandas
import sdmetrics  # noqa: F401
import sdv  # noqa: F401
import tabsynth  # noqa: F401

pkgs = ["torch", "ctgan", "sdv", "rdt", "sdmetrics", "opacus", "pandas", "numpy", "scikit-learn"]
print("bench env OK:", ", ".join(f"{p} {version(p)}" for p in pkgs))
print("pandas", pandas.__version__)
PY
