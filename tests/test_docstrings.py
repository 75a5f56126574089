"""The Examples sections of the public model docstrings run as written."""

from __future__ import annotations

import doctest
import inspect

import pytest

import tabsynth


@pytest.mark.parametrize("name", ["ARGN", "CTGAN", "TVAE"])
def test_model_docstring_examples_run(name):
    cls = getattr(tabsynth, name)
    for section in ("Parameters", "Attributes", "Examples"):
        assert f"\n    {section}\n    ---" in cls.__doc__, section
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(cls, name, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ["ARGN", "CTGAN", "TVAE"])
def test_every_hyper_parameter_is_documented(name):
    cls = getattr(tabsynth, name)
    doc = cls.__doc__
    for param in cls._param_names():
        assert f"    {param} :" in doc or f", {param} :" in doc or f"    {param}," in doc, param


def test_sample_documents_every_argument():
    from tabsynth.models.base import BaseSynthesizer

    doc = inspect.getdoc(BaseSynthesizer.sample)
    for section in ("Parameters", "Returns", "Raises"):
        assert f"\n{section}\n---" in doc, section
    for param in list(inspect.signature(BaseSynthesizer.sample).parameters)[1:]:
        assert f"\n{param} :" in doc, param


@pytest.mark.parametrize("name", sorted(tabsynth.MODELS))
def test_documented_defaults_match_the_signature(name):
    """A ``name : type, default=X`` line states the constructor's real default (TVAE's
    docstring said 300 after its default became None)."""
    import re

    cls = getattr(tabsynth, name)
    signature = inspect.signature(cls.__init__).parameters
    stated = dict(re.findall(r"\n    (\w+) : [^\n]*?default=([^\n]+)", cls.__doc__))
    assert stated, "no documented default found"
    for param, text in stated.items():
        default = signature[param].default
        shown = {repr(default), str(default), f'"{default}"' if isinstance(default, str) else ""}
        if isinstance(default, float):
            shown |= {f"{default:g}", f"{default:.0e}".replace("e-0", "e-")}
        if isinstance(default, int) and not isinstance(default, bool):
            shown.add(f"{default:_}")
        assert text.strip() in shown, (param, text, default)
