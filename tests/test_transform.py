"""Round trips, dtypes, guard rails and reproducibility of the metadata + transform layers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import load_shared_table, shared_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabsynth import Metadata, TableTransformer
from tabsynth.errors import DataError, MetadataError
from tabsynth.transform import fit_mixture


def assert_round_trip(df: pd.DataFrame, tt: TableTransformer, rtol: float = 1e-9) -> pd.DataFrame:
    """inverse(transform(df)) equals df: exactly except for float columns (tolerance)."""
    back = tt.inverse_transform(tt.transform(df, dtype=np.float64))
    assert list(back.columns) == list(df.columns)
    for name in df.columns:
        a, b = df[name].reset_index(drop=True), back[name]
        assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
        kind = tt.metadata_[name].kind
        if kind == "id":
            assert b.is_unique and b.notna().all()
            continue
        assert a.isna().equals(b.isna()), f"{name}: null pattern differs"
        if kind == "continuous":
            x, y = a.to_numpy("float64", na_value=np.nan), b.to_numpy("float64", na_value=np.nan)
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-9 * (np.nanmax(np.abs(x)) + 1))
        elif a.dtype == object:  # None and NaN are both "missing" there (pattern checked above)
            pd.testing.assert_series_equal(a.dropna(), b.dropna(), check_names=False)
        else:
            pd.testing.assert_series_equal(a, b, check_names=False)
    return back


def test_mixed_frame_round_trip_exact(mixed_frame):
    tt = TableTransformer(random_state=0).fit(mixed_frame)
    assert_round_trip(mixed_frame, tt)


@pytest.mark.parametrize("method", ["gmm", "quantile", "minmax"])
def test_numeric_encoders_round_trip(mixed_frame, method):
    tt = TableTransformer(random_state=1, numeric_encoder=method).fit(mixed_frame)
    assert_round_trip(mixed_frame, tt, rtol=1e-7)


def test_layout_spans_are_contiguous(mixed_frame):
    tt = TableTransformer(random_state=0).fit(mixed_frame)
    pos = 0
    for span in tt.spans_:
        assert span.start == pos and span.width >= 1
        assert span.activation in ("tanh", "softmax")
        assert span.activation != "tanh" or span.width == 1
        pos += span.width
    assert pos == tt.output_dim_
    x = tt.transform(mixed_frame)
    assert x.dtype == np.float32 and x.shape == (len(mixed_frame), tt.output_dim_)
    for span in tt.spans_:
        if span.activation == "softmax":
            np.testing.assert_array_equal(x[:, span.start : span.stop].sum(axis=1), 1.0)
    assert "row_id" not in {s.column for s in tt.spans_}


def test_id_columns_regenerated_in_style(mixed_frame):
    tt = TableTransformer(random_state=0).fit(mixed_frame)
    x = tt.transform(mixed_frame)
    a = tt.inverse_transform(x[:10], id_start=0)["row_id"]
    b = tt.inverse_transform(x[:10], id_start=10)["row_id"]
    both = pd.concat([a, b])
    assert both.is_unique
    assert both.str.fullmatch(r"R\d{5}").all()
    # ids=False decodes the other columns alike and leaves the ids to with_ids
    full = tt.inverse_transform(x[:10], id_start=10)
    bare = tt.inverse_transform(x[:10], id_start=10, ids=False)
    assert "row_id" not in bare.columns
    pd.testing.assert_frame_equal(bare, full.drop(columns="row_id"))
    numbered = tt.with_ids(bare, first=99_998)
    assert list(numbered.columns) == list(full.columns)
    assert numbered["row_id"].tolist()[:3] == ["R99998", "R99999", "R100000"]  # never cut
    pd.testing.assert_frame_equal(numbered.drop(columns="row_id"), bare)


def test_datetimes_outside_nanosecond_range():
    dates = pd.Series(np.array(["1500-01-01", "1900-06-30", "2500-12-31"], dtype="datetime64[s]"))
    df = pd.DataFrame({"when": dates, "x": [1.0, 2.0, 3.0]})
    tt = TableTransformer(random_state=0).fit(df)
    assert tt.metadata_["when"].resolution == "D"
    assert_round_trip(df, tt)


def test_text_dates_keep_their_format():
    df = pd.DataFrame({"day": ["2020-01-03", "2021-05-17", None, "2019-12-31"] * 5})
    meta = Metadata.infer(df)
    assert meta["day"].kind == "datetime" and meta["day"].datetime_format == "%Y-%m-%d"
    assert_round_trip(df, TableTransformer(meta, random_state=0).fit(df))


def test_pyarrow_and_python_strings_round_trip():
    df = pd.DataFrame(
        {
            "a": pd.Series(["x", "y", None, "x"] * 10, dtype="string[pyarrow]"),
            "b": pd.Series(["u", "v", "v", None] * 10, dtype="string[python]"),
        }
    )
    assert_round_trip(df, TableTransformer(random_state=0).fit(df))


def test_spikes_come_back_exactly():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(5000) < 0.9, 0.0, rng.lognormal(8, 1, 5000))
    df = pd.DataFrame({"gain": x})
    tt = TableTransformer(random_state=0).fit(df)
    enc = tt.encoders_["gain"]
    assert 0.0 in enc.spikes_.tolist()
    # a generated matrix: the spike mode decodes to exactly zero, never to a negative value
    z = tt.transform(df)
    z[:, 0] = np.random.default_rng(1).uniform(-1, 1, len(z))
    back = tt.inverse_transform(z)["gain"]
    assert (back >= 0).all()
    # every row encoded in the zero mode decodes to exactly zero (bounds may clip a few more)
    assert (back[x == 0] == 0).all()


def test_inverse_clips_to_bounds_and_rounds_integers():
    df = pd.DataFrame({"n": np.arange(100, dtype=np.int64)})
    meta = Metadata.infer(df).update_column("n", lower=0, upper=99)
    tt = TableTransformer(meta, random_state=0, numeric_encoder="minmax").fit(df)
    z = np.full((3, tt.output_dim_), 0.0, dtype=np.float32)
    z[:, 0] = [-5.0, 0.013, 5.0]
    out = tt.inverse_transform(z)["n"]
    assert out.dtype == np.int64
    assert out.tolist()[0] == 0 and out.tolist()[2] == 99


def test_mixture_prunes_and_orders_modes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 4000), rng.normal(50, 2, 4000)])
    u, c = np.unique(x, return_counts=True)
    means, stds, weights = fit_mixture(u, c, max_modes=10)
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(weights) <= 1e-12)
    assert np.all(weights >= 0.005)
    # both clusters are covered by some mode
    assert np.min(np.abs(means - 0)) < 1.5 and np.min(np.abs(means - 50)) < 3


# -- guard rails ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "df, match",
    [
        (pd.DataFrame(), "no columns"),
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "empty"),
        (pd.DataFrame({"a": [np.nan, np.nan]}), "'a' has only missing"),
        (pd.DataFrame({"a": [1.0, np.inf]}), "'a' has 1 infinite"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate column names"),
        (pd.DataFrame({"m": pd.Series(["x", 1, 2.5], dtype=object)}), "'m' mixes value types"),
    ],
)
def test_bad_frames_get_clear_errors(df, match):
    with pytest.raises(DataError, match=match):
        TableTransformer().fit(df)


def test_exploding_categorical_suggests_id():
    df = pd.DataFrame({"code": [f"c{i}" for i in range(2000)] * 2})
    meta = Metadata.infer(df)
    assert meta["code"].kind == "categorical"
    # without rare-value grouping the one-hot would be 2000 wide: refused, naming the remedies
    with pytest.raises(DataError, match="'code'.*rare_threshold=.*kind='id'"):
        TableTransformer(meta, rare_threshold=None).fit(df)
    # by default the values seen fewer than 5 times share one slot (issue #19)
    with pytest.warns(UserWarning, match="'code': 2000 of 2000 distinct values"):
        tt = TableTransformer(meta).fit(df)
    assert tt.category_span("code").width == 1
    assert set(tt.inverse_transform(tt.transform(df))["code"]) <= set(df["code"])


def test_memory_budget_is_checked_before_allocating():
    df = pd.DataFrame({"c": list("abcdefghij") * 100})
    with pytest.raises(DataError, match="memory budget"):
        TableTransformer(memory_budget=1000).fit(df)


def test_unseen_category_error_and_fallback():
    train = pd.DataFrame({"c": list("aabbc") * 20})
    test = pd.DataFrame({"c": ["a", "zz"]})
    tt = TableTransformer(random_state=0).fit(train)
    with pytest.raises(DataError, match="'c'.*outside its category domain.*zz"):
        tt.transform(test)
    tt2 = TableTransformer(random_state=0, unseen="other").fit(train)
    x = tt2.transform(test)
    span = tt2.category_span("c")
    assert x[1, span.start + tt2.categories_of("c").index("__other__")] == 1


def test_rare_grouping_decodes_to_members():
    df = pd.DataFrame({"c": ["a"] * 90 + ["b"] * 5 + ["c"] * 5})
    tt = TableTransformer(random_state=0, rare_threshold=0.1).fit(df)
    assert tt.categories_of("c") == ["a", "__other__"]
    back = tt.inverse_transform(tt.transform(df))
    assert set(back["c"]) <= {"a", "b", "c"} and (back["c"] == "a").sum() == 90


def test_wrong_columns_at_transform(mixed_frame):
    tt = TableTransformer(random_state=0).fit(mixed_frame)
    with pytest.raises(MetadataError, match="missing: \\['age'\\]"):
        tt.transform(mixed_frame.drop(columns="age"))


def test_metadata_mismatch_at_fit(mixed_frame):
    meta = Metadata.infer(mixed_frame.drop(columns="age"))
    with pytest.raises(MetadataError, match="not in the metadata: \\['age'\\]"):
        TableTransformer(meta).fit(mixed_frame)


# -- metadata -----------------------------------------------------------------------------
def test_metadata_json_round_trip_and_origin(mixed_frame, tmp_path):
    meta = Metadata.infer(mixed_frame)
    assert meta["row_id"].kind == "id"
    assert meta["visits"].kind == "integer" and meta["visits"].nullable
    assert meta["stamp_tz"].timezone == "Europe/Paris"
    assert meta["age"].origin["lower"] == "data"
    meta.update_column("age", lower=0, upper=120)
    assert meta["age"].origin["lower"] == "declared" and meta["age"].is_public("upper")
    meta.save(tmp_path / "m.json")
    again = Metadata.load(tmp_path / "m.json")
    assert again == meta
    json.loads((tmp_path / "m.json").read_text())
    assert "age" in repr(meta) and "integer" in repr(meta)


def test_transformer_state_round_trip(mixed_frame):
    tt = TableTransformer(random_state=3).fit(mixed_frame)
    state = json.loads(json.dumps(tt.to_dict()))
    tt2 = TableTransformer.from_dict(state)
    x = tt.transform(mixed_frame)
    np.testing.assert_array_equal(x, tt2.transform(mixed_frame))
    pd.testing.assert_frame_equal(tt.inverse_transform(x), tt2.inverse_transform(x))


def test_reproducible_and_global_rng_untouched(mixed_frame):
    np_state = np.random.get_state()[1].copy()
    import torch  # noqa: PLC0415 - only to check its global state is not touched

    torch_state = torch.random.get_rng_state().clone()
    a = TableTransformer(random_state=7).fit(mixed_frame).transform(mixed_frame)
    b = TableTransformer(random_state=7).fit(mixed_frame).transform(mixed_frame)
    np.testing.assert_array_equal(a, b)
    c = TableTransformer(random_state=8).fit(mixed_frame).transform(mixed_frame)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


# -- property test ------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(5, 60),
    seed=st.integers(0, 10_000),
    null_share=st.floats(0, 0.5),
)
def test_generated_frames_round_trip(n, seed, null_share):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "i": rng.integers(-1000, 1000, n),
            "f": rng.normal(0, 1e3, n),
            "c": rng.choice(["a", "b", "c"], n).astype(object),
            "b": rng.random(n) < 0.5,
            "t": pd.to_datetime("2000-01-01") + pd.to_timedelta(rng.integers(0, 10**9, n), "s"),
        }
    )
    mask = rng.random(n) < null_share
    mask[0] = False  # keep every column non-empty
    df.loc[mask, "f"] = np.nan
    df.loc[mask, "c"] = np.nan
    df.loc[mask, "t"] = pd.NaT
    assert_round_trip(df, TableTransformer(random_state=seed).fit(df))


# -- the shared real tables --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(shared_manifest()) or ["adult"])
def test_shared_tables_round_trip(name):
    df, info = load_shared_table(name)
    meta = Metadata.infer(df)
    for col, kind in info.get("column_kinds", {}).items():
        if col in meta and kind != meta[col].kind:
            if kind in ("categorical", "boolean") and meta[col].kind in ("integer", "continuous"):
                meta.update_column(col, kind="categorical")
            elif kind == "id":
                meta.update_column(col, kind="id")
    # an exact round trip needs every value in its own slot (grouped rare values are redrawn)
    tt = TableTransformer(meta, random_state=0, rare_threshold=None).fit(df)
    assert_round_trip(df, tt)


# -- public (DP) path ---------------------------------------------------------------------
def _public_meta(df: pd.DataFrame) -> Metadata:
    meta = Metadata.infer(df)
    meta.update_column("age", lower=0, upper=120)
    if "city" in meta:
        meta.update_column("city", categories=["Oslo", "Lima", "Pune", "Rome"])
    return meta.declare_public()


def test_public_fit_reads_no_data_and_maps_unknown_tokens_to_other(mixed_frame):
    frame = mixed_frame[["age", "city", "smoker", "seen_at"]]
    meta = _public_meta(frame)
    tt = TableTransformer(meta, random_state=0).fit_public()
    canary = pd.concat(
        [frame, pd.DataFrame({"age": [119], "city": ["ZZ_CANARY"], "smoker": [True]})],
        ignore_index=True,
    )
    tt2 = TableTransformer(meta, random_state=0).fit_public()
    assert json.dumps(tt.to_dict()) == json.dumps(tt2.to_dict())
    assert "ZZ_CANARY" not in json.dumps(tt.to_dict())
    x = tt.transform(canary)
    span = tt.category_span("city")
    assert x[-1, span.start + tt.categories_of("city").index("__other__")] == 1
    back = tt.inverse_transform(x)
    assert "ZZ_CANARY" not in set(back["city"].dropna())
    assert back["age"].between(0, 120).all()


def test_public_fit_lists_undeclared_facts(mixed_frame):
    meta = Metadata.infer(mixed_frame[["age", "city"]])
    with pytest.raises(MetadataError, match="'age': kind, nullable, lower, upper"):
        TableTransformer(meta).fit_public()


def test_public_fit_from_a_histogram(mixed_frame):
    frame = mixed_frame[["age"]]
    meta = _public_meta(frame)
    tt = TableTransformer(meta, random_state=0)
    lo, hi = tt.numeric_bounds("age")
    centres = np.linspace(lo, hi, 25)
    counts = np.exp(-0.5 * ((centres - 50) / 10) ** 2) * 100
    tt.fit_public({"age": (centres, counts)})
    enc = tt.encoders_["age"]
    assert enc.method == "gmm" and np.min(np.abs(enc.means_ - 50)) < 10
    back = tt.inverse_transform(tt.transform(frame, dtype=np.float64))
    pd.testing.assert_series_equal(back["age"], frame["age"].reset_index(drop=True))
