"""Tests for tabsynth.datasets: demo generators, table IO and the shared-table registry."""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from tabsynth.datasets import (
    DIABETES_CODES,
    SharedDatasetInfo,
    list_shared,
    load_demo,
    load_shared,
    make_loans,
    make_patients,
    read_table,
    shared_datasets_dir,
    shared_info,
    write_table,
)
from tabsynth.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GENERATORS = [make_patients, make_loans]

# Missing cells after the manifest's read_csv arguments, as stated in each dataset README.
README_MISSING = {
    "adult": 1836 + 1843 + 583,
    "diabetes_130_us_hospitals": 2273 + 98569 + 40256 + 49949 + 21 + 358 + 1423,
    "heart_disease_uci": 1759,
    "credit_default_taiwan": 0,
    "bank_marketing": 0,
    "covid19_korea_patient_info": 1122 + 1380 + 94 + 919 + 3819 + 4378 + 4476 + 3 + 3578 + 5099,
    "home_equity_hmeq": 518 + 112 + 252 + 279 + 515 + 708 + 580 + 308 + 510 + 222 + 1267,
}


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return make_patients(5000, random_state=11)


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return make_loans(5000, random_state=11)


@pytest.fixture
def shared_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (SHARED / "datasets" / "manifest.json").is_file():
        pytest.skip(f"shared datasets not found at {SHARED}")
    monkeypatch.setenv("TABSYNTH_SHARED_DIR", str(SHARED / "datasets"))
    return SHARED / "datasets"


# --------------------------------------------------------------------------- determinism / RNG


@pytest.mark.parametrize("make", GENERATORS)
def test_same_seed_same_frame_and_different_seed_differs(make) -> None:
    a = make(300, random_state=7)
    pd.testing.assert_frame_equal(a, make(300, random_state=7))
    b = make(300, random_state=8)
    assert not a.equals(b)
    # every column varies with the seed, not just a few
    assert all(not a[c].equals(b[c]) for c in a.columns)


@pytest.mark.parametrize("make", GENERATORS)
def test_generator_and_seedsequence_accepted(make) -> None:
    from_gen = make(50, random_state=np.random.default_rng(3))
    pd.testing.assert_frame_equal(from_gen, make(50, random_state=3))
    pd.testing.assert_frame_equal(
        make(50, random_state=np.random.SeedSequence(5)), make(50, random_state=5)
    )


@pytest.mark.parametrize("make", GENERATORS)
def test_global_rng_state_untouched(make) -> None:
    np_before, py_before = np.random.get_state(), random.getstate()  # noqa: NPY002
    make(200, random_state=1)
    make(200)  # unseeded must not draw from the global RNG either
    load_demo("patients", 20, random_state=2)
    np_after = np.random.get_state()  # noqa: NPY002
    assert np_before[0] == np_after[0]
    np.testing.assert_array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert random.getstate() == py_before


@pytest.mark.parametrize("make", GENERATORS)
@pytest.mark.parametrize("bad", [-1, 2.5, True, "10", None])
def test_bad_n_rows_raises(make, bad) -> None:
    with pytest.raises(DataError, match="n_rows"):
        make(bad, random_state=0)


def test_bad_random_state_raises() -> None:
    with pytest.raises(DataError, match="random_state"):
        make_patients(10, random_state="seed")


@pytest.mark.parametrize("make", GENERATORS)
def test_empty_frame_keeps_dtypes(make) -> None:
    empty, small = make(0, random_state=0), make(40, random_state=0)
    assert len(empty) == 0
    pd.testing.assert_series_equal(empty.dtypes, small.dtypes)


def test_load_demo() -> None:
    pd.testing.assert_frame_equal(load_demo("loans", 30, 4), make_loans(30, random_state=4))
    pd.testing.assert_frame_equal(
        load_demo("patients", n_rows=30, random_state=4), make_patients(30, random_state=4)
    )
    with pytest.raises(DataError, match="unknown demo dataset 'adult'"):
        load_demo("adult")


# --------------------------------------------------------------------------- patients


def test_patients_dtypes(patients: pd.DataFrame) -> None:
    dt = patients.dtypes
    assert pd.api.types.is_string_dtype(dt["patient_id"])
    for col in ("age", "length_of_stay_days", "n_prior_visits"):
        assert dt[col] == np.int64, col
    for col in ("systolic_bp", "glucose", "crp", "bmi", "weight_kg", "height_cm"):
        assert dt[col] == np.float64, col
    for col in ("sex", "diagnosis", "ward"):
        assert isinstance(dt[col], pd.CategoricalDtype), col
    assert list(dt["sex"].categories) == ["F", "M"]
    assert 45 <= len(dt["diagnosis"].categories) <= 55
    assert dt["admitted_at"] == "datetime64[ns]" and dt["discharged_at"] == "datetime64[ns]"
    assert dt["hba1c"] == "Float64"
    assert dt["n_medications"] == "Int64"
    assert dt["diabetic"] == "boolean"
    assert dt["smoker"] == np.dtype(bool) and dt["readmitted_30d"] == np.dtype(bool)
    assert pd.api.types.is_string_dtype(dt["insurance"]) or pd.api.types.is_object_dtype(
        dt["insurance"]
    )
    assert 18 <= patients.shape[1] <= 25


def test_patients_values(patients: pd.DataFrame) -> None:
    assert patients["patient_id"].is_unique
    assert patients["patient_id"].str.fullmatch(r"P\d{7}").all()
    assert patients["age"].between(0, 100).all()
    adm = patients["admitted_at"]
    assert adm.min() >= pd.Timestamp("2015-01-01") and adm.max() < pd.Timestamp("2025-01-01")
    assert adm.dt.year.nunique() == 10
    assert (adm.astype("int64") % 10**9 == 0).all()  # second resolution
    stay = patients["discharged_at"] - adm
    assert (stay.dt.days == patients["length_of_stay_days"]).all()
    assert (patients["length_of_stay_days"] >= 0).all()
    assert patients["n_medications"].isna().mean() > 0.01
    assert stats.skew(patients["crp"]) > 3  # heavily right-skewed
    assert patients["insurance"].nunique() >= 3
    assert patients["n_prior_visits"].min() >= 0


def test_diagnosis_is_skewed(patients: pd.DataFrame) -> None:
    freq = patients["diagnosis"].value_counts(normalize=True)
    assert freq.iloc[0] > 10 * freq.iloc[30]
    assert freq.iloc[:5].sum() > 0.4


def test_hba1c_missing_exactly_for_non_diabetes_diagnoses(patients: pd.DataFrame) -> None:
    diabetes_dx = patients["diagnosis"].isin(sorted(DIABETES_CODES))
    assert 0.05 < diabetes_dx.mean() < 0.5
    pd.testing.assert_series_equal(
        patients["hba1c"].notna(), diabetes_dx.astype(bool), check_names=False
    )
    assert patients["hba1c"].dropna().between(4, 16).all()


def test_diabetes_consistent_with_diagnosis_and_glucose(patients: pd.DataFrame) -> None:
    diabetes_dx = patients["diagnosis"].isin(sorted(DIABETES_CODES))
    assert patients.loc[diabetes_dx, "diabetic"].eq(True).all()
    assert patients["diabetic"].isna().any()  # unknown status for some others
    glucose = patients["glucose"].groupby(patients["diabetic"]).median()
    assert glucose[True] > glucose[False] + 40
    # HbA1c tracks glucose among the diabetes diagnoses (ADAG relation).
    sub = patients[diabetes_dx]
    rho = stats.spearmanr(sub["hba1c"].astype(float), sub["glucose"]).statistic
    assert rho > 0.3


def test_body_size_structure(patients: pd.DataFrame) -> None:
    miss = patients["bmi"].isna()
    assert 0.02 < miss.mean() < 0.1
    assert (patients["height_cm"].isna() == miss).all()
    assert patients["weight_kg"].notna().all()
    ok = patients[~miss]
    implied = ok["weight_kg"] / (ok["height_cm"] / 100) ** 2
    np.testing.assert_allclose(ok["bmi"], implied, atol=0.051)


def test_patient_columns_depend_on_each_other(patients: pd.DataFrame) -> None:
    groups = [
        g.to_numpy()
        for _, g in patients.groupby("diagnosis", observed=True)["length_of_stay_days"]
        if len(g) >= 20
    ]
    assert stats.kruskal(*groups).pvalue < 1e-10  # LOS depends on diagnosis
    los = patients.groupby("diagnosis", observed=True)["length_of_stay_days"].mean()
    assert los["A41.9"] > 3 * los["R07.9"]
    assert stats.spearmanr(patients["age"], patients["systolic_bp"]).statistic > 0.3
    readm = patients.groupby("readmitted_30d")[["length_of_stay_days", "age", "n_prior_visits"]]
    means = readm.mean()
    assert (means.loc[True] > means.loc[False]).all()
    assert 0.03 < patients["readmitted_30d"].mean() < 0.3
    old = patients["age"] >= 65
    assert (patients.loc[old, "insurance"] == "medicare").mean() > 0.6
    assert (patients.loc[~old, "insurance"] == "medicare").mean() < 0.1
    assert (patients.loc[patients["diagnosis"] == "O80", "sex"] == "F").all()
    kids = patients["age"] < 16
    assert (patients.loc[kids, "ward"].isin(["pediatrics", "icu"])).mean() > 0.8


# --------------------------------------------------------------------------- loans


def test_loans_dtypes_and_values(loans: pd.DataFrame) -> None:
    dt = loans.dtypes
    assert pd.api.types.is_string_dtype(dt["loan_id"])
    assert loans["loan_id"].is_unique and loans["loan_id"].str.fullmatch(r"L\d{8}").all()
    for col in ("term_months", "n_open_accounts", "credit_score"):
        assert dt[col] == np.int64, col
    for col in ("amount", "interest_rate", "dti"):
        assert dt[col] == np.float64, col
    assert dt["employment_length_years"] == "Int64"
    assert dt["annual_income"] == "Float64"
    assert isinstance(dt["grade"], pd.CategoricalDtype)
    assert list(dt["grade"].categories) == list("ABCDEFG")
    assert dt["issue_date"] == "datetime64[ns]"
    assert dt["has_mortgage"] == np.dtype(bool) and dt["default"] == np.dtype(bool)
    assert pd.api.types.is_string_dtype(dt["employment_type"]) or pd.api.types.is_object_dtype(
        dt["employment_type"]
    )
    assert set(loans["employment_type"]) == {
        "employed",
        "self-employed",
        "unemployed",
        "retired",
        "student",
    }
    assert set(loans["term_months"]) == {36, 60}
    np.testing.assert_allclose(loans["amount"], loans["amount"].round(2), rtol=0, atol=1e-9)
    assert stats.skew(loans["amount"]) > 0.5
    assert (loans["issue_date"] == loans["issue_date"].dt.normalize()).all()  # day resolution
    assert loans["dti"].between(0, 60).all()


def test_loans_missing_for_a_reason(loans: pd.DataFrame) -> None:
    no_job = loans["employment_type"].isin(["unemployed", "student"])
    assert (loans["employment_length_years"].isna() == no_job).all()
    income_na = loans["annual_income"].isna().groupby(loans["employment_type"]).mean()
    assert income_na["student"] > 0.4 and income_na["unemployed"] > 0.4
    assert income_na["employed"] < 0.05
    table = pd.crosstab(loans["employment_type"], loans["annual_income"].isna())
    assert stats.chi2_contingency(table).pvalue < 1e-10


def test_loan_columns_depend_on_each_other(loans: pd.DataFrame) -> None:
    rate = loans.groupby("grade", observed=True)["default"].mean()
    assert rate["A"] < rate["C"] < rate["E"] < rate["G"]
    assert stats.chi2_contingency(pd.crosstab(loans["grade"], loans["default"])).pvalue < 1e-10
    interest = loans.groupby("grade", observed=True)["interest_rate"].mean()
    assert interest.is_monotonic_increasing
    assert loans.loc[loans["home_ownership"] == "MORTGAGE", "has_mortgage"].all()
    assert not loans.loc[loans["home_ownership"].isin(["RENT", "OWN"]), "has_mortgage"].any()
    known = loans.dropna(subset=["annual_income"])
    income = known["annual_income"].astype(float)
    assert stats.spearmanr(income, known["dti"]).statistic < -0.1
    defaulted = known.groupby("default")["dti"].mean()
    assert defaulted[True] > defaulted[False]
    long_amount = loans.groupby("term_months")["amount"].median()
    assert long_amount[60] > long_amount[36]


# --------------------------------------------------------------------------- invariants


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 60))
def test_invariants_hold_for_any_seed(seed: int, n: int) -> None:
    p = make_patients(n, random_state=seed)
    assert len(p) == n and p["patient_id"].is_unique
    assert (p["hba1c"].notna() == p["diagnosis"].isin(sorted(DIABETES_CODES))).all()
    assert ((p["discharged_at"] - p["admitted_at"]).dt.days == p["length_of_stay_days"]).all()
    loans = make_loans(n, random_state=seed)
    assert len(loans) == n and loans["loan_id"].is_unique
    no_job = loans["employment_type"].isin(["unemployed", "student"])
    assert (loans["employment_length_years"].isna() == no_job).all()


@pytest.mark.slow
def test_million_rows_is_fast() -> None:
    for make in GENERATORS:
        start = time.perf_counter()
        df = make(1_000_000, random_state=0)
        assert len(df) == 1_000_000 and df.iloc[:, 0].is_unique
        assert time.perf_counter() - start < 30  # catches per-row Python loops, not tuning


# --------------------------------------------------------------------------- IO


def _tricky_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "f": pd.array([1.5, None, 3.25], dtype="Float64"),
            "c": pd.Categorical(["lo", "hi", None], categories=["lo", "hi", "mid"], ordered=True),
            "s": pd.Series(["x", None, "z"], dtype=str),
            "tz": pd.Series(
                pd.date_range("2024-03-30 12:00", periods=3, freq="D", tz="Europe/Paris")
            ),
            "sec": pd.Series(pd.date_range("2020-01-01", periods=3, freq="s")).astype(
                "datetime64[s]"
            ),
            "td": pd.to_timedelta([1, None, 3], unit="D"),
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip_is_exact(tmp_path: Path, patients, loans, suffix: str) -> None:
    for i, df in enumerate([patients.head(500), loans.head(500), _tricky_frame()]):
        path = write_table(df, tmp_path / f"t{i}{suffix}")
        back = read_table(path)
        pd.testing.assert_frame_equal(back, df)
    cols = read_table(tmp_path / f"t2{suffix}", columns=["sec", "i"])
    assert list(cols.columns) == ["sec", "i"] and cols["sec"].dtype == "datetime64[s]"


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "T.CSV"])
def test_csv_round_trip(tmp_path: Path, name: str) -> None:
    df = pd.DataFrame(
        {
            "n": np.arange(5, dtype=np.int64),
            "x": [0.1, np.nan, 1e-300, -2.5, 1 / 3],
            "s": pd.Series(["a", "b, c", 'q"uote', "d", "é"], dtype=str),
            "flag": [True, False, True, True, False],
        }
    )
    path = write_table(df, tmp_path / name)
    pd.testing.assert_frame_equal(read_table(path), df)


def test_csv_gz_is_gzip_and_reproducible(tmp_path: Path, loans) -> None:
    a = write_table(loans.head(200), tmp_path / "a.csv.gz")
    b = write_table(loans.head(200), tmp_path / "b.csv.gz")
    assert a.read_bytes()[:2] == b"\x1f\x8b"
    assert a.read_bytes() == b.read_bytes()
    with gzip.open(a, "rt") as fh:
        assert fh.readline().startswith("loan_id,issue_date,amount")


def test_csv_keeps_values_of_demo_table(tmp_path: Path, patients) -> None:
    df = patients.head(300)
    path = write_table(df, tmp_path / "p.csv")
    back = read_table(path, parse_dates=["admitted_at", "discharged_at"])
    assert list(back.columns) == list(df.columns)
    np.testing.assert_array_equal(
        back["admitted_at"].dt.as_unit("ns").to_numpy(), df["admitted_at"].to_numpy()
    )
    np.testing.assert_allclose(back["hba1c"], df["hba1c"].astype(float), equal_nan=True)
    assert (back["diagnosis"] == df["diagnosis"].astype(str)).all()


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, loans) -> None:
    target = tmp_path / "sub" / "out.parquet"  # parent folder is created
    write_table(loans.head(50), target)
    write_table(loans.head(60), target)  # overwrite
    assert [p.name for p in target.parent.iterdir()] == ["out.parquet"]
    assert len(read_table(target)) == 60

    before = target.read_bytes()
    bad = pd.DataFrame({"mixed": [1, "a", 2.5]}, dtype=object)
    with pytest.raises(DataError, match="out.parquet"):
        write_table(bad, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["out.parquet"]


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.csv"
    target.write_text("a\n1\n")

    def half_write(self, path, **kwargs):
        Path(path).write_text("a\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_table(pd.DataFrame({"a": [1, 2]}), target)
    assert target.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_io_errors(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(DataError, match="extension"):
        write_table(df, tmp_path / "t.xlsx")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="extension"):
        read_table(tmp_path / "t.xlsx")
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="not a file"):
        read_table(tmp_path / "dir.csv")
    with pytest.raises(DataError, match="folder"):
        write_table(df, tmp_path / "dir.csv")
    with pytest.raises(DataError, match="DataFrame"):
        write_table({"a": [1]}, tmp_path / "t.csv")
    with pytest.raises(DataError, match="more than once"):
        write_table(pd.DataFrame([[1, 2]], columns=["a", "a"]), tmp_path / "t.csv")
    with pytest.raises(DataError, match="column 0"):
        write_table(pd.DataFrame([[1, 2]]), tmp_path / "t.parquet")
    with pytest.raises(DataError, match="path must be"):
        read_table(42)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="Parquet"):
        read_table(tmp_path / "junk.parquet")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="CSV"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "fake.csv.gz").write_text("a,b\n1,2\n")
    with pytest.raises(DataError):
        read_table(tmp_path / "fake.csv.gz")
    assert issubclass(DataError, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --------------------------------------------------------------------------- shared registry


def test_each_shared_table_loads(shared_env: Path) -> None:
    manifest = json.loads((shared_env / "manifest.json").read_text())
    assert shared_datasets_dir() == shared_env
    assert list_shared() == list(manifest)
    assert len(manifest) == 7
    for name, entry in manifest.items():
        df, info = load_shared(name)
        assert isinstance(info, SharedDatasetInfo)
        assert df.shape == (entry["rows"], entry["cols"]), name
        assert list(df.columns) == list(entry["column_kinds"]), name
        assert info.target == entry["target"] and info.target in df.columns
        assert info.task == entry["task"] and info.domain == entry["domain"]
        assert info.column_kinds == entry["column_kinds"]
        assert set(info.leakage_columns) <= set(df.columns)
        assert info.path.is_file()
        assert int(df.isna().sum().sum()) == README_MISSING[name], name
        json.dumps(info.to_dict())


def test_shared_markers_applied(shared_env: Path) -> None:
    adult, _ = load_shared("adult")
    assert not adult["workclass"].dropna().str.startswith(" ").any()
    assert "?" not in set(adult["occupation"].dropna())
    diab, _ = load_shared("diabetes_130_us_hospitals", nrows=2000)
    assert len(diab) == 2000
    assert diab["A1Cresult"].notna().all() and "None" in set(diab["A1Cresult"])
    covid, info = load_shared("covid19_korea_patient_info")
    for col in ("symptom_onset_date", "confirmed_date", "released_date", "deceased_date"):
        assert pd.api.types.is_datetime64_any_dtype(covid[col]), col
        assert info.column_kinds[col] == "datetime"
    assert covid["patient_id"].str.len().eq(10).all()
    assert set(info.leakage_columns) == {"released_date", "deceased_date"}


def test_shared_env_may_point_at_shared_folder(shared_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("TABSYNTH_SHARED_DIR", str(shared_env.parent))
    assert shared_datasets_dir() == shared_env
    assert shared_info("home_equity_hmeq").target == "BAD"
    with pytest.raises(DataError, match="unknown shared dataset 'nope'"):
        shared_info("nope")


def test_shared_absent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TABSYNTH_SHARED_DIR", str(tmp_path))
    assert shared_datasets_dir() is None
    assert list_shared() == []
    with pytest.raises(DataError, match="TABSYNTH_SHARED_DIR"):
        load_shared("adult")


def _fake_shared(root: Path, entry: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "t.csv").write_text("a,b\n1,?\n2,3\n")
    (root / "manifest.json").write_text(json.dumps({"t": entry}))


def test_shared_checks_against_manifest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TABSYNTH_SHARED_DIR", str(tmp_path))
    base = {
        "path": "t.csv",
        "target": "b",
        "task": "regression",
        "rows": 2,
        "cols": 2,
        "read_csv_kwargs": {"na_values": ["?"]},
        "column_kinds": {"a": "integer", "b": "integer"},
    }
    _fake_shared(tmp_path, base)
    df, info = load_shared("t")
    assert df["b"].isna().sum() == 1 and info.leakage_columns == () and info.domain == ""
    _fake_shared(tmp_path, {**base, "rows": 3})
    with pytest.raises(DataError, match="2 rows, the manifest says 3"):
        load_shared("t")
    _fake_shared(tmp_path, {**base, "column_kinds": {"a": "integer", "z": "integer"}})
    with pytest.raises(DataError, match="does not match its manifest"):
        load_shared("t")
    _fake_shared(tmp_path, {**base, "path": "../t.csv"})
    with pytest.raises(DataError, match="outside"):
        load_shared("t")
    _fake_shared(tmp_path, {k: v for k, v in base.items() if k != "target"})
    with pytest.raises(DataError, match="lacks target"):
        load_shared("t")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json"):
        list_shared()
