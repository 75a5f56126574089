#!/usr/bin/env bash
# Create (or refresh) the anchors benchmark virtualenv at .venv-bench.
#
# Why a separate venv: ctgan / sdv / sdmetrics pin pandas<3, while tabsynth's own venv runs
# pandas 3. CPU torch is installed first, and only when it is not importable yet, so that
# ctgan's "torch" requirement is already satisfied and pip never pulls a multi-GB CUDA build.
# mostlyai-engine (TabularARGN, the `mostlyai-argn` contender) is installed with torch pinned to
# the version already there; it pulls torchvision/torchaudio wheels built for another torch,
# which break `import torch` users, so they are removed afterwards (the engine does not need
# them for tabular data). Set BENCH_NO_MOSTLYAI=1 to skip it.
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
TORCH_HAVE="$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")"

"$PY" -m pip install ctgan sdv sdmetrics "torch==$TORCH_HAVE"
if [ -z "${BENCH_NO_MOSTLYAI:-}" ]; then
    "$PY" -m pip install mostlyai-engine "torch==$TORCH_HAVE" "opacus>=1.6" transformers
    "$PY" -m pip uninstall -y torchvision torchaudio >/dev/null 2>&1 || true
fi
"$PY" -m pip install -e "$REPO"

"$PY" - <<'PY'
from importlib.metadata import PackageNotFoundError, version

import ctgan  # noqa: F401
import sdmetrics  # noqa: F401
import sdv  # noqa: F401
import tabsynth  # noqa: F401

pkgs = ["torch", "ctgan", "sdv", "rdt", "sdmetrics", "mostlyai-engine", "opacus", "pandas",
        "numpy", "scikit-learn"]
found = []
for p in pkgs:
    try:
        found.append(f"{p} {version(p)}")
    except PackageNotFoundError:
        found.append(f"{p} -")
print("bench env OK:", ", ".join(found))
PY
