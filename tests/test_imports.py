"""Import only what is used: the model classes load without torch, Opacus, scipy.stats or the
benchmark harness; torch comes in on the first fit, load or sample, Opacus when a DP fit asks
for it."""

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


def test_models_layer_imports_without_torch():
    """Every file of ``tabsynth.models`` (a new model file too) and the names users reach first
    load without torch: ``import torch`` at module level in any of them fails here (use
    ``from tabsynth._lazy import F, nn, torch``). ``_private`` is the DP fit's, torch and Opacus
    on purpose."""
    code = (
        "import pkgutil, sys, tabsynth, tabsynth.models as m\n"
        "for _, name, _ in pkgutil.iter_modules(m.__path__, 'tabsynth.models.'):\n"
        "    if name != 'tabsynth.models._private':\n"
        "        __import__(name)\n"
        "for name in ('CTGAN', 'TVAE', 'ARGN', *tabsynth.MODELS, 'Metadata', 'ColumnSpec',\n"
        "             'TableTransformer', 'load', 'augment', 'datasets'):\n"
        "    getattr(tabsynth, name)\n"
        "import tabsynth.privacy.ghost, tabsynth.transform, tabsynth.metadata\n"
    )
    loaded = _modules_after(code)
    assert {"tabsynth.models.ctgan", "tabsynth.models._nn", "tabsynth.privacy.ghost"} <= loaded
    assert not any(m == "torch" or m.startswith("torch.") for m in loaded)
    assert not any(m == "opacus" or m.startswith("opacus.") for m in loaded)


def test_torch_loads_on_first_use_and_the_models_work():
    """After the torch-free imports, a fit, a sample and a save/load round trip of every model
    in the same process load torch transparently and give the same rows as the fitted model."""
    code = (
        "import sys, tempfile, os\n"
        "import numpy as np, pandas as pd, tabsynth\n"
        "classes = [getattr(tabsynth, name) for name in tabsynth.MODELS]\n"
        "tabsynth.Metadata, tabsynth.load\n"
        "assert 'torch' not in sys.modules\n"
        "from tabsynth._lazy import nn, torch\n"
        "rng = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'a': rng.normal(size=80), 'b': rng.choice(['x', 'y'], 80)})\n"
        "for cls in classes:\n"
        "    m = cls(epochs=1, batch_size=40, verbose=False, random_state=0).fit(df)\n"
        "    assert 'torch' in sys.modules\n"
        "    assert all(isinstance(net, nn.Module) for net in m._modules().values())\n"
        "    with tempfile.TemporaryDirectory() as d:\n"
        "        m.save(os.path.join(d, 'm.tsyn'))\n"
        "        back = tabsynth.load(os.path.join(d, 'm.tsyn'))\n"
        "    assert type(back) is cls\n"
        "    pd.testing.assert_frame_equal(back.sample(30, random_state=1),\n"
        "                                  m.sample(30, random_state=1))\n"
        "import torch as real\n"
        "assert torch.randn is real.randn and vars(torch)['randn'] is real.randn  # kept\n"
        "assert nn.Linear is real.nn.Linear\n"
    )
    loaded = _modules_after(code)
    assert "torch" in loaded
    assert "opacus" not in loaded


def test_no_grad_decorator_applies_when_called():
    from tabsynth._lazy import no_grad, torch

    @no_grad
    def grad_enabled(x):
        """doc kept"""
        return torch.is_grad_enabled(), x

    assert grad_enabled(3) == (False, 3)
    assert torch.is_grad_enabled()
    assert grad_enabled.__doc__ == "doc kept"


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
