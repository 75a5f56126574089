"""Import only what is used: the model classes load without Opacus, scipy.stats or the
benchmark harness; Opacus comes in when a DP fit asks for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter (run from the repository root) after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_model_classes_do_not_import_opacus():
    loaded = _modules_after("import tabsynth\ntabsynth.CTGAN\ntabsynth.TVAE\ntabsynth.load")
    assert "tabsynth.models.ctgan" in loaded  # the probe did import the models
    assert not any(m == "opacus" or m.startswith("opacus.") for m in loaded)
    assert "scipy.stats" not in loaded
    assert "resource" not in loaded  # Windows has no ``resource`` module
    assert not any(m.startswith("tabsynth.bench") for m in loaded)


def test_privacy_package_names_load_on_first_use():
    code = (
        "import sys\nimport tabsynth.privacy as p\n"
        "assert 'opacus' not in sys.modules\n"
        "assert p.LinearUse.__module__ == 'tabsynth.privacy.ghost'\n"
        "assert 'opacus' not in sys.modules  # ghost clipping is plain torch\n"
        "assert p.PrivacyLedger.__module__ == 'tabsynth.privacy.ledger'\n"
        "assert set(p.__all__) <= set(dir(p))\n"
        "try:\n    p.no_such_name\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    assert "opacus" in _modules_after(code)


def test_non_dp_fit_and_sample_do_not_import_opacus():
    code = (
        "import numpy as np, pandas as pd, tabsynth\n"
        "rng = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'a': rng.normal(size=60), 'b': rng.choice(['x', 'y'], 60)})\n"
        "m = tabsynth.TVAE(epochs=1, batch_size=20, verbose=False, random_state=0).fit(df)\n"
        "assert len(m.sample(10, random_state=0)) == 10\n"
    )
    assert "opacus" not in _modules_after(code)


def test_cli_demo_and_parser_do_not_import_the_benchmark_harness():
    loaded = _modules_after(
        "from tabsynth.cli.main import build_parser\nbuild_parser()\nimport tabsynth.cli.commands"
    )
    assert not any(m.startswith("tabsynth.bench") for m in loaded)
    assert "tabsynth.cli.benchmark" not in loaded
