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
    meta.n_rows = len(df)  # a public count keeps the test fast (no noisy-count calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pac=1 under DP
        model = _quiet(tabsynth.CTGAN, epsilon=5.0, batch_size=50).fit(df, meta)
    out = model.sample(30)
    assert out["x"].between(-5, 5).all()
    assert model.privacy_report()["epsilon"] <= 5.0 + 1e-9


# -- rare-value grouping: free text and high cardinality fit by default --------------------------
def _free_text_frame(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    common = ["nurse", "teacher", "driver", "manager"]
    rare = np.array([f"title number {i}" for i in range(2 * n)])
    title = np.where(rng.random(n) < 0.5, rng.choice(common, n), rng.choice(rare, n))
    df = pd.DataFrame({"title": title, "amount": rng.normal(1000, 100, n).round(2)})
    return df, common


@pytest.mark.parametrize("model_cls", [tabsynth.CTGAN, tabsynth.TVAE])
def test_free_text_column_fits_with_rare_values_grouped(model_cls, tmp_path):
    df, common = _free_text_frame()
    counts = df["title"].value_counts()
    n_rare = int((counts < 5).sum())  # "auto": max(5, 0.1 % of 3000 rows) = 5
    with pytest.warns(UserWarning, match=rf"column 'title': {n_rare} of {len(counts)} distinct"):
        model = _quiet(model_cls).fit(df)
    enc = model.transformer_.encoders_["title"]
    assert set(enc.categories_) == set(counts[counts >= 5].index)
    assert len(enc.other_members_) == n_rare
    # "other" is counted per value: the grouped values keep their own frequencies
    probs = dict(zip(enc.other_members_, enc.other_probs_, strict=True))
    rare_counts = counts[counts < 5]
    top = rare_counts.idxmax()
    assert probs[top] == pytest.approx(rare_counts[top] / rare_counts.sum())
    out = model.sample(500, random_state=0)
    assert out["title"].isin(set(df["title"])).all()  # real values only, no placeholder
    assert out["title"].isin(set(rare_counts.index)).any()
    model.save(tmp_path / "m.tsyn")
    again = tabsynth.load(tmp_path / "m.tsyn")
    assert again.rare_threshold == "auto"
    pd.testing.assert_frame_equal(
        again.sample(200, random_state=1), model.sample(200, random_state=1)
    )


def test_rare_threshold_parameter_and_error_that_names_it():
    df, _ = _free_text_frame(n=3000)  # about 1,400 distinct values, over max_categories
    assert tabsynth.CTGAN().rare_threshold == "auto"
    assert tabsynth.TVAE(rare_threshold=0.01).get_params()["rare_threshold"] == 0.01
    with pytest.raises(tabsynth.errors.DataError, match=r"'title'.*rare_threshold=") as err:
        _quiet(tabsynth.TVAE, rare_threshold=None).fit(df)
    assert "--rare-threshold" in str(err.value)
    # a count: values seen fewer than 300 times are grouped, only the 4 common ones stay
    with pytest.warns(UserWarning, match="'title'"):
        model = _quiet(tabsynth.TVAE, rare_threshold=300).fit(df)
    assert len(model.transformer_.encoders_["title"].categories_) == 4
    for bad in ("often", -1, float("nan"), True):
        with pytest.raises(tabsynth.errors.DataError, match="rare_threshold"):
            _quiet(tabsynth.TVAE, rare_threshold=bad).fit(df)


def test_rare_values_under_dp_come_from_the_public_domain_only(tmp_path):
    """Under DP the grouped values' raw frequency table must not exist (nor be saved)."""
    df, common = _free_text_frame(n=1000)
    meta = Metadata.infer(df)
    meta.update_column("title", categories=common)
    meta.update_column("amount", lower=0.0, upper=2000.0)
    meta.declare_public()
    meta.n_rows = len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = _quiet(tabsynth.TVAE, epsilon=5.0, batch_size=100).fit(df, meta)
    enc = model.transformer_.encoders_["title"]
    assert enc.categories_ == common and enc.other_members_ == [] and enc.other_probs_ == []
    out = model.sample(300)
    assert out["title"].isin(common).all()  # "other" -> uniform over the public list
    model.save(tmp_path / "dp.tsyn")
    raw = (tmp_path / "dp.tsyn").read_bytes()
    assert b"title number" not in raw


def test_category_dtype_counts_occurring_values_not_declared_levels():
    rng = np.random.default_rng(0)
    levels = [f"L{i}" for i in range(10_000)]
    df = pd.DataFrame(
        {
            "c": pd.Categorical(rng.choice(levels[:50], 200), categories=levels),
            "x": rng.normal(size=200),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = _quiet(tabsynth.TVAE).fit(df)
    assert model.transformer_.category_span("c").width <= 51
    out = model.sample(100)
    assert out["c"].dtype == df["c"].dtype  # the 10,000 levels are restored
    assert out["c"].isin(levels[:50]).all()


def test_constant_boolean_samples_only_what_occurs():
    df = pd.DataFrame({"b": [True] * 100, "x": np.random.default_rng(0).normal(size=100)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = _quiet(tabsynth.CTGAN).fit(df).sample(500)
    assert out["b"].all()
    assert out["b"].dtype == bool
    # a declared domain keeps its values even when one is absent from the data
    meta = Metadata.infer(df).update_column("b", categories=[False, True])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = _quiet(tabsynth.CTGAN).fit(df, meta)
    assert model.transformer_.categories_of("b") == [False, True]


# -- key-like columns are ids; free text of the same cardinality is grouped ---------------------
def test_near_unique_codes_are_ids_and_free_text_is_grouped():
    rng = np.random.default_rng(0)
    n = 400
    codes = [f"{1_000_000_000 + i}" for i in range(n)]
    codes[5] = codes[4]  # one repeated key (as patient_id in the Korean COVID-19 table)
    words = np.array(["red fox", "old barn", "blue sky", "new car", "wet road", "tall tree"])
    text = [f"{a} near {b} {i}" for i, (a, b) in enumerate(rng.choice(words, (n, 2)))]
    df = pd.DataFrame(
        {
            "code": codes,
            "comment": text,
            "row": np.arange(n) + 1,
            "amount": rng.integers(0, 10**6, n),
            "group": rng.choice(["a", "b"], n),
        }
    )
    meta = Metadata.infer(df)
    assert meta["code"].kind == "id"
    assert meta["row"].kind == "integer"  # distinct numbers alone do not make a key
    assert meta["comment"].kind == "categorical"  # free text, not a key
    assert meta["amount"].kind == "integer"  # distinct numbers are not keys by themselves
    with pytest.warns(UserWarning, match="'comment'"):
        model = _quiet(tabsynth.TVAE).fit(df)
    out = model.sample(300)
    assert out["code"].is_unique and out["code"].str.fullmatch(r"\d{10}").all()
    assert out["comment"].isin(set(text)).all()


# -- declared facts are validated where they are declared ------------------------------------
def test_declared_fact_types_are_checked(tmp_path):
    df = pd.DataFrame({"k": np.arange(60.0), "c": list("ab") * 30})
    meta = Metadata.infer(df)
    with pytest.raises(tabsynth.errors.MetadataError, match=r"'k'.*lower must be a number"):
        meta.update_column("k", lower="zero")
    assert meta["k"].lower == 0  # a refused update changes nothing
    for fact, value, match in [
        ("upper", float("inf"), "finite"),
        ("nullable", "yes", "True or False"),
        ("categories", "ab", "list of values"),
        ("resolution", "week", "resolution"),
        ("lower", 100, "above upper"),
    ]:
        column = "c" if fact == "categories" else "k"
        with pytest.raises(tabsynth.errors.MetadataError, match=match):
            Metadata.infer(df).update_column(column, **{fact: value})
    with pytest.raises(tabsynth.errors.MetadataError, match=r"'c'.*lower applies only"):
        Metadata.infer(df).update_column("c", lower=1)
    d = meta.to_dict()
    d["columns"][0]["lower"] = "zero"
    path = tmp_path / "meta.json"
    path.write_text(__import__("json").dumps(d))
    with pytest.raises(tabsynth.errors.MetadataError, match="lower must be a number"):
        Metadata.load(path)
    meta["k"].lower = "zero"  # edited in place after declaration: caught at fit
    with pytest.raises(tabsynth.errors.MetadataError, match="lower must be a number"):
        _quiet(tabsynth.TVAE).fit(df, meta)
    # numpy scalars and timestamps are normalised to JSON values
    meta = Metadata.infer(df).update_column("k", lower=np.float32(-1.5), upper=np.int64(70))
    assert type(meta["k"].lower) is float and type(meta["k"].upper) is int
    when = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=5)})
    meta = Metadata.infer(when).update_column("t", lower=pd.Timestamp("2019-01-01"))
    assert meta["t"].lower == "2019-01-01T00:00:00"
    Metadata.from_dict(__import__("json").loads(__import__("json").dumps(meta.to_dict())))


def test_infer_crashes_become_fits_or_clear_errors(tmp_path):
    import datetime
    import decimal

    # a non-unique index with a text-date column
    df = pd.DataFrame(
        {"d": [f"2020-01-0{i % 9 + 1}" for i in range(60)], "x": np.arange(60.0)}, index=[0] * 60
    )
    assert Metadata.infer(df)["d"].kind == "datetime"
    assert _quiet(tabsynth.TVAE).fit(df).sample(5)["d"].str.match(r"2020-01-0\d").all()
    # dates outside pandas' nanosecond range, as Python objects
    old = pd.DataFrame(
        {
            "d": [datetime.date(1000, 1, 1) + datetime.timedelta(days=i) for i in range(60)],
            "x": np.arange(60.0),
        }
    )
    assert Metadata.infer(old)["d"].kind == "datetime"
    model = _quiet(tabsynth.TVAE).fit(old)
    out = model.sample(20)
    assert all(isinstance(v, datetime.date) and v.year == 1000 for v in out["d"])
    # Decimal values are numbers: fit, sample and save
    dec = pd.DataFrame({"m": [decimal.Decimal(f"{i}.25") for i in range(60)], "c": ["a", "b"] * 30})
    assert Metadata.infer(dec)["m"].kind == "continuous"
    model = _quiet(tabsynth.CTGAN).fit(dec)
    model.save(tmp_path / "dec.tsyn")
    out = tabsynth.load(tmp_path / "dec.tsyn").sample(10)
    assert all(isinstance(v, decimal.Decimal) for v in out["m"])
    # bytes and nested cells: a clear error naming the column
    with pytest.raises(tabsynth.errors.DataError, match=r"'b' holds bytes.*decode"):
        _quiet(tabsynth.TVAE).fit(pd.DataFrame({"b": [b"x", b"y"] * 30}))
    for cell in ([1, 2], {"a": 1}, np.arange(3), (1, 2)):
        frame = pd.DataFrame({"n": pd.Series([cell] * 60, dtype=object), "x": np.arange(60.0)})
        with pytest.raises(tabsynth.errors.DataError, match=r"'n' holds 60 nested"):
            Metadata.infer(frame)
    # an object column of ints and floats: the advice keeps them numbers
    mixed = pd.DataFrame({"v": pd.Series([1, 2.5] * 30, dtype=object)})
    with pytest.raises(tabsynth.errors.DataError, match=r"pd\.to_numeric"):
        Metadata.infer(mixed)


def test_cli_nested_parquet_and_semicolon_csv(tmp_path, capsys):
    from tabsynth.cli.main import main

    nested = pd.DataFrame({"tags": [[1, 2], [3]] * 30, "x": np.arange(60.0)})
    nested.to_parquet(tmp_path / "nested.parquet")
    assert main(["inspect", str(tmp_path / "nested.parquet")]) != 0
    err = capsys.readouterr().err
    assert "'tags' holds 60 nested" in err and "bug" not in err
    (tmp_path / "semi.csv").write_text("a;b;c\n1;x;2.5\n2;y;3.5\n3;x;1.0\n")
    assert main(["inspect", str(tmp_path / "semi.csv")]) == 0
    cap = capsys.readouterr()
    assert "delimiter ';'" in cap.err and "--sep" in cap.err
    assert "3 rows x 3 columns" in cap.out
    assert main(["inspect", str(tmp_path / "semi.csv"), "--sep", ","]) == 0
    assert "3 rows x 1 columns" in capsys.readouterr().out


def test_cli_inspect_notes_and_rare_threshold_option(tmp_path, capsys):
    from tabsynth.cli.main import main

    df, _ = _free_text_frame(n=3000)
    df.insert(0, "order_id", [f"O{i:06d}" for i in range(len(df))])
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["inspect", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "'order_id' looks like a key" in out
    assert "'title':" in out and "--rare-threshold" in out
    model = tmp_path / "m.tsyn"
    assert main(["fit", str(tmp_path / "t.csv"), "--model", "tvae", "--epochs", "1", "-q",
                 "--rare-threshold", "none", "-o", str(model)]) != 0  # fmt: skip
    assert "rare_threshold=" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "t.csv"), "--model", "tvae", "--epochs", "1", "-q",
                 "--rare-threshold", "300", "-o", str(model)]) == 0  # fmt: skip
    assert tabsynth.load(model).rare_threshold == 300


# -- every shared real table fits with inferred metadata ---------------------------------------
def _shared_names() -> list[str]:
    from conftest import shared_manifest

    return sorted(shared_manifest()) or ["(shared data absent)"]


@pytest.mark.parametrize("name", _shared_names())
def test_every_shared_table_fits_with_inferred_metadata(name):
    from conftest import load_shared_table

    df, info = load_shared_table(name)
    if name == "covid19_korea_patient_info":
        meta = Metadata.infer(df)  # the full table: patient_id has one repeated value
        assert meta["patient_id"].kind == "id"
    df = df.sample(min(len(df), 500), random_state=0).reset_index(drop=True)
    for model_cls in (tabsynth.CTGAN, tabsynth.TVAE):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = _quiet(model_cls, batch_size=200).fit(df, Metadata.infer(df))
        out = model.sample(100)
        assert list(out.columns) == list(df.columns), (name, model_cls.__name__)
        assert (out.dtypes == df.dtypes).all(), (name, model_cls.__name__)


def test_privacy_numbers_of_any_real_type_are_accepted():
    df = pd.DataFrame({"x": np.random.default_rng(2).normal(size=200), "c": ["a", "b"] * 100})
    meta = Metadata.infer(df).update_column("x", lower=-5.0, upper=5.0).declare_public()
    meta.n_rows = len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = _quiet(
            tabsynth.TVAE,
            epsilon=np.float32(3.0),
            delta=np.float32(1e-4),
            max_grad_norm=np.float16(1.0),
            batch_size=50,
        ).fit(df, meta)
    assert model.privacy_report()["epsilon"] <= 3.0 + 1e-6
    for bad in (True, "3", 0.0):
        with pytest.raises(tabsynth.errors.PrivacyError, match="epsilon"):
            _quiet(tabsynth.TVAE, epsilon=bad).fit(df, meta)


def test_too_small_epsilon_error_quotes_the_users_epsilon():
    df = pd.DataFrame({"x": np.random.default_rng(3).normal(size=200), "c": ["a", "b"] * 100})
    meta = Metadata.infer(df).update_column("x", lower=-5.0, upper=5.0).declare_public()
    meta.n_rows = len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(tabsynth.errors.PrivacyError) as err:
            _quiet(tabsynth.TVAE, epsilon=1e-3, batch_size=50).fit(df, meta)
    assert "epsilon=0.001 is too small" in str(err.value)
    assert "0.0001" not in str(err.value)  # not an internal share of it
