"""ARGN: fit/sample round trip, exact conditions, impute, persistence, DP (fast: small tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tabsynth
from tabsynth import Metadata
from tabsynth.datasets import make_patients
from tabsynth.errors import DataError, HyperParameterError, PrivacyError, SamplingError
from tabsynth.models import argn as argn_mod

FAST = dict(embedding_dim=4, hidden=16, batch_size=100, verbose=False)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    df = make_patients(400, random_state=0)
    # one value seen in a single row (< 0.3 %): conditions on it must still be met exactly
    df["ward"] = df["ward"].cat.add_categories(["isolation"])
    df.loc[7, "ward"] = "isolation"
    return df


@pytest.fixture(scope="module")
def model(table) -> tabsynth.ARGN:
    return tabsynth.ARGN(epochs=3, random_state=0, **FAST).fit(table)


def test_round_trip_columns_dtypes_and_history(model, table):
    syn = model.sample(300, random_state=1)
    assert list(syn.columns) == list(table.columns)
    assert syn.dtypes.to_dict() == table.dtypes.to_dict()
    assert len(syn) == 300
    assert syn["patient_id"].is_unique
    assert set(syn["ward"].dropna()) <= set(table["ward"].cat.categories)
    assert syn["age"].between(table["age"].min(), table["age"].max()).all()
    assert list(model.history_["epoch"]) == [0, 1, 2]
    assert model.history_["loss"].notna().all()
    assert model.epochs_trained_ == 3


def test_auto_epochs_stop_on_validation_loss(table):
    m = tabsynth.ARGN(random_state=0, max_steps=60, patience=2, **FAST).fit(table)
    hist = m.history_
    assert "val_loss" in hist and hist["val_loss"].notna().all()
    assert m.steps_trained_ <= 60 + 4  # the budget (plus the rest of the epoch)
    # the restored weights are the best ones: their validation loss is the minimum logged
    assert hist["val_loss"].min() <= hist["val_loss"].iloc[-1]


def test_reproducible_with_random_state(table, model):
    again = tabsynth.ARGN(epochs=3, random_state=0, **FAST).fit(table)
    pd.testing.assert_frame_equal(
        model.sample(200, random_state=3), again.sample(200, random_state=3)
    )
    a, b = model.sample(50, random_state=4), model.sample(50, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    assert not model.sample(50, random_state=5).equals(a)


@pytest.mark.parametrize(
    "conditions",
    [
        {"ward": "isolation"},  # a value seen in one training row
        {"sex": "F", "age": (40, 50)},
        {
            "diagnosis": "diabetes",
            "glucose": (90, 140),
            "admitted_at": ("2021-01-01", "2022-06-30"),
        },
        {"hba1c": None},  # missing, on a nullable numeric column
    ],
)
def test_conditions_hold_by_construction(model, table, conditions):
    if "diagnosis" in conditions and "diabetes" not in set(table["diagnosis"].astype(str)):
        conditions = {**conditions, "diagnosis": table["diagnosis"].iloc[0]}
    syn = model.sample(500, conditions=conditions, random_state=2)
    assert len(syn) == 500
    for col, value in conditions.items():
        s = syn[col]
        if value is None:
            assert s.isna().all()
        elif isinstance(value, tuple):
            lo, hi = value
            if col == "admitted_at":
                lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
            assert s.notna().all() and (s >= lo).all() and (s <= hi).all()
        else:
            assert (s.astype(object) == value).all()
    stats = model.last_sample_stats_
    assert stats["generated"] == 500 and stats["acceptance_rate"] == 1.0  # no rejection


def test_condition_on_a_value_grouped_as_rare():
    rng = np.random.default_rng(0)
    n = 600
    city = np.array([f"c{i}" for i in rng.integers(0, 55, n)], dtype=object)
    city[:2] = "tiny"  # 2 of 600 rows, below the "auto" threshold of 5 in a 56-value column
    df = pd.DataFrame({"city": city, "x": rng.normal(size=n)})
    with pytest.warns(UserWarning, match="share one 'other' slot"):
        m = tabsynth.ARGN(epochs=1, random_state=0, **FAST).fit(df)
    enc = m.transformer_.encoders_["city"]
    assert enc.position("tiny") == enc.other_position_  # grouped
    syn = m.sample(200, conditions={"city": "tiny", "x": (0.0, 1.0)}, random_state=0)
    assert (syn["city"] == "tiny").all() and syn["x"].between(0.0, 1.0).all()


def test_per_row_conditions_frame(model):
    cond = pd.DataFrame({"sex": ["F", "M", None, "F"], "age": [30, None, 61, 45]})
    syn = model.sample(None, conditions=cond, random_state=0)
    assert list(syn["sex"].iloc[[0, 1, 3]].astype(str)) == ["F", "M", "F"]
    assert list(syn["age"].iloc[[0, 2, 3]]) == [30, 61, 45]


def test_conditions_outside_what_the_model_can_produce(model):
    with pytest.raises(SamplingError, match="outside the column's domain"):
        model.sample(5, conditions={"ward": "no-such-ward"})
    with pytest.raises(SamplingError, match="outside the column's domain"):
        model.sample(5, conditions={"age": (500, 600)})


def test_other_models_keep_rejection(table):
    m = tabsynth.TVAE(epochs=1, batch_size=100, verbose=False, random_state=0).fit(table)
    assert not hasattr(m, "_sample_exact")
    m.sample(20, conditions={"sex": "F"}, random_state=0)
    assert m.last_sample_stats_["generated"] >= 20


def test_impute_keeps_given_cells_and_fills_missing(model, table):
    df = table.iloc[:120].reset_index(drop=True)
    rng = np.random.default_rng(0)
    mask = pd.DataFrame(rng.random(df.shape) < 0.3, columns=df.columns)
    mask["patient_id"] = False
    holes = df.mask(mask)  # int/bool columns with holes become float/object, as in real data
    out = model.impute(holes, random_state=0)
    assert list(out.columns) == list(df.columns) and len(out) == len(df)
    assert out.dtypes.to_dict() == df.dtypes.to_dict()
    given = holes.notna()
    for col in df.columns:
        pd.testing.assert_series_equal(out[col][given[col]], df[col][given[col]], check_names=False)
    for col in ("age", "sex", "ward", "admitted_at", "glucose", "smoker"):
        assert out[col].notna().all(), col  # every hole is filled, nullable or not
    assert out["hba1c"].notna().sum() == len(out)
    pd.testing.assert_frame_equal(out, model.impute(holes, random_state=0))


def test_impute_refuses_other_columns(model, table):
    with pytest.raises(DataError, match="missing"):
        model.impute(table.drop(columns=["age"]))


def test_save_load_identical_samples(model, tmp_path):
    path = tmp_path / "argn.tabsynth"
    model.save(path)
    loaded = tabsynth.load(path)
    assert type(loaded).__name__ == "ARGN"
    pd.testing.assert_frame_equal(
        model.sample(100, random_state=9), loaded.sample(100, random_state=9)
    )
    cond = {"sex": "M", "age": (20, 35)}
    pd.testing.assert_frame_equal(
        model.sample(50, conditions=cond, random_state=1),
        loaded.sample(50, conditions=cond, random_state=1),
    )


@pytest.mark.parametrize(
    "params",
    [
        {"value_bins": 1},
        {"hidden": 0},
        {"dropout": 1.0},
        {"validation_share": 0.7},
        {"max_steps": 0},
        {"epochs": 0},
    ],
)
def test_bad_hyper_parameters(table, params):
    with pytest.raises(HyperParameterError, match=next(iter(params))):
        tabsynth.ARGN(**{**FAST, **params}).fit(table)


def test_epochs_none_only_for_models_that_choose_their_length(table):
    from toy_model import IndependentMarginals

    with pytest.raises(HyperParameterError, match="epochs"):
        IndependentMarginals(epochs=None, verbose=False).fit(table)


# ---------------------------------------------------------------------- DP
def _dp_table(n: int = 240) -> tuple[pd.DataFrame, Metadata]:
    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    df = pd.DataFrame(
        {
            "a": a,
            "b": np.round(rng.normal(0.0, 1.0, n) + (a == "y"), 3),
            "c": rng.integers(0, 10, n),
        }
    )
    meta = Metadata.infer(df)
    meta.update_column("a", kind="categorical", categories=["x", "y", "z", "w"], nullable=False)
    meta.update_column("b", kind="continuous", lower=-5.0, upper=5.0)
    meta.update_column("c", kind="integer", lower=0, upper=50)
    meta.declare_public()
    meta.n_rows = n
    return df, meta


def test_dp_fit_reports_a_ledger_and_samples():
    df, meta = _dp_table()
    m = tabsynth.ARGN(epsilon=1.0, epochs=2, random_state=0, **{**FAST, "batch_size": 80})
    m.fit(df, meta)
    report = m.privacy_report()
    assert report["epsilon"] <= 1.0 + 1e-9
    dpsgd = [r for r in report["mechanisms"] if r["kind"] == "dpsgd"]
    assert len(dpsgd) == 1 and dpsgd[0]["steps"] == m.steps_trained_ == 6
    syn = m.sample(50, conditions={"a": "y", "b": (0.0, 2.0)}, random_state=0)
    assert (syn["a"] == "y").all() and syn["b"].between(0.0, 2.0).all()
    assert "val_loss" not in m.history_  # nothing is selected on private data


def test_dp_default_plan_is_fixed_before_training():
    df, meta = _dp_table()
    m = tabsynth.ARGN(epsilon=1.0, random_state=0, **{**FAST, "batch_size": 80}).fit(df, meta)
    assert m.epochs_trained_ == m._private_epochs() == 4


def test_dp_refuses_a_schema_learned_from_data():
    df, _ = _dp_table()
    with pytest.raises(PrivacyError, match="public schema"):
        tabsynth.ARGN(epsilon=1.0, epochs=1, **FAST).fit(df, Metadata.infer(df))


def test_clipped_grads_match_per_example_autograd():
    """The closed-form per-example norms and clipped sum equal autograd's, example by example."""
    cards = np.array([3, 5, 4, 2])
    g = torch.Generator().manual_seed(0)
    net = argn_mod._nets().Net(cards, 3, 6)
    net.reset(g)
    codes = torch.stack([torch.randint(0, int(c), (7,), generator=g) for c in cards], 1)
    order = torch.tensor([[2, 0, 3, 1]])
    lay = argn_mod._Layout.__new__(argn_mod._Layout)
    lay.sub_col, lay.sub_rank = np.arange(4), np.zeros(4, dtype=np.int64)
    vis = argn_mod._Layout.visible(lay, order)[0]
    clip = 0.5
    norms = argn_mod.clipped_grads(net, codes, vis, clip)
    got = {k: p.grad.clone() for k, p in net.named_parameters()}
    want = {k: torch.zeros_like(p) for k, p in net.named_parameters()}
    for i in range(codes.shape[0]):
        net.zero_grad()
        net.nll(codes[i : i + 1], vis).sum().backward()
        grads = {k: p.grad.clone() for k, p in net.named_parameters()}
        norm = torch.sqrt(sum(t.square().sum() for t in grads.values()))
        assert torch.isclose(norms[i], norm, rtol=1e-4), i
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for k in want:
            want[k] += factor * grads[k]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6)
