"""Real tables fit by default (issue #19): no crash, no refusal a sensible default avoids."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import tabsynth
from tabsynth import Metadata


def _quiet(model_cls, **kw):
    kw.setdefault("epochs", 1)
    kw.setdefault("verbose", False)
    kw.setdefault("random_state", 0)
    return model_cls(**kw)


# -- CTGAN without any discrete column: unconditional training -------------------------------
@pytest.mark.parametrize(
    "df",
    [
        pd.DataFrame({"x": np.arange(60.0)}),
        pd.DataFrame(
            {
                "x": np.random.default_rng(0).normal(size=80),
                "when": pd.date_range("2020-01-01", periods=80, freq="D"),
            }
        ),
    ],
    ids=["numeric", "numeric+datetime"],
)
def test_ctgan_fits_tables_without_discrete_columns(df, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch size adapted to the small table
        model = _quiet(tabsynth.CTGAN).fit(df)
    assert model._sampler.cond_dim == 0
    out = model.sample(50)
    assert list(out.columns) == list(df.columns)
    assert (out.dtypes == df.dtypes).all()
    model.save(tmp_path / "m.tsyn")
    again = tabsynth.load(tmp_path / "m.tsyn").sample(50, random_state=1)
    pd.testing.assert_frame_equal(again, model.sample(50, random_state=1))


def test_ctgan_without_discrete_columns_under_dp():
    df = pd.DataFrame({"x": np.random.default_rng(1).normal(size=200)})
    meta = Metadata.infer(df).update_column("x", lower=-5.0, upper=5.0).declare_public()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pac=1 under DP
        model = _quiet(tabsynth.CTGAN, epsilon=5.0, batch_size=50).fit(df, meta)
    out = model.sample(30)
    assert out["x"].between(-5, 5).all()
    assert model.privacy_report()["epsilon"] <= 5.0 + 1e-9
