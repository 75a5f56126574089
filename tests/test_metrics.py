"""Known-answer tests for tabsynth.metrics (small frames, seconds in total)."""

from __future__ import annotations

import base64
import io
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from tabsynth.errors import DataError, HyperParameterError, MetadataError
from tabsynth.metrics import Report, evaluate
from tabsynth.metrics import _data as mdata
from tabsynth.metrics.privacy import nearest


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """Correlated numerics, dependent categoricals, a datetime, missing values, a binary target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    income = 30_000 + 15_000 * x + rng.normal(0, 4_000, n)
    income[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "age": np.round(40 + 10 * x + rng.normal(0, 3, n)).astype(int),
            "income": income,
            "group": np.where(x + rng.normal(0, 0.4, n) > 0, "high", "low"),
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "flag": rng.random(n) < 0.3,
            "joined": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 365, n) + np.round(30 * x).astype(int), unit="D"),
            "target": np.where(x + rng.normal(0, 0.7, n) > 0.3, "yes", "no"),
        }
    )


def noise_like(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Independent uniform noise over each column's real range / categories."""
    rng = np.random.default_rng(seed)
    n = len(df)
    out = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            out[col] = rng.random(n) < 0.5
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D")
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = rng.uniform(s.min(), s.max(), n)
        else:
            out[col] = rng.choice(s.dropna().unique(), n)
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def frames():
    return make_frame(900, 0), make_frame(900, 1), make_frame(600, 2)


@pytest.fixture(scope="module")
def full_report(frames):
    real, synthetic, holdout = frames
    return evaluate(real, synthetic, holdout=holdout, target="target", random_state=0)


# -- fidelity --------------------------------------------------------------------------------
def test_identical_frames_score_one_and_are_undetectable(frames):
    real = frames[0]
    rep = evaluate(real, real.copy(), metrics=["fidelity", "detection"], random_state=0)
    assert rep["fidelity.column_shapes"] == pytest.approx(1.0)
    assert rep["fidelity.column_pair_trends"] == pytest.approx(1.0)
    assert rep["fidelity.column_pair_trends_all"] == pytest.approx(1.0)
    assert rep["fidelity.missing_similarity"] == pytest.approx(1.0)
    assert rep["detection.logistic_auc"] == pytest.approx(0.5, abs=0.1)
    assert rep["detection.hist_gradient_boosting_auc"] == pytest.approx(0.5, abs=0.1)


def test_independent_sample_is_close_but_noise_is_detected(frames, full_report):
    assert full_report["fidelity.column_shapes"] > 0.9
    assert full_report["fidelity.column_pair_trends"] > 0.9
    assert full_report["detection.logistic_auc"] == pytest.approx(0.5, abs=0.1)
    noisy = evaluate(
        frames[0], noise_like(frames[0], 5), metrics=["fidelity", "detection"], random_state=0
    )
    assert noisy["fidelity.column_shapes"] < full_report["fidelity.column_shapes"] - 0.1
    assert noisy["detection.hist_gradient_boosting_auc"] > 0.8


def test_shuffled_columns_keep_shapes_but_lose_pair_trends(frames):
    real = frames[0]
    rng = np.random.default_rng(3)
    shuffled = real.apply(lambda s: pd.Series(s.to_numpy()[rng.permutation(len(s))]))
    rep = evaluate(real, shuffled, metrics=["fidelity"], random_state=0)
    assert rep["fidelity.column_shapes"] == pytest.approx(1.0)
    assert rep["fidelity.column_pair_trends"] < 0.8
    pairs = rep.pair_scores().set_index(["column_1", "column_2"])
    assert pairs.loc[("age", "income"), "metric"] == "CorrelationSimilarity"
    assert pairs.loc[("age", "income"), "score"] < 0.7
    assert bool(pairs.loc[("age", "income"), "has_trend"])


def test_column_metrics_match_known_answers():
    real = pd.DataFrame({"num": [1.0, 2.0, 3.0, 4.0], "cat": ["a", "a", "b", "b"]})
    syn = pd.DataFrame({"num": [3.0, 4.0, 5.0, 6.0], "cat": ["a", "a", "a", "c"]})
    rep = evaluate(real, syn, {"num": "continuous", "cat": "categorical"}, metrics=["fidelity"])
    cols = rep.column_scores().set_index("column")
    ks = ks_2samp(real["num"], syn["num"]).statistic
    assert cols.loc["num", "shape"] == pytest.approx(1 - ks)
    assert cols.loc["cat", "shape"] == pytest.approx(1 - 0.5 * (0.25 + 0.5 + 0.25))
    assert cols.loc["num", "coverage"] == pytest.approx(1 - 2 / 3)  # spans [3, 4] of [1, 4]
    assert cols.loc["num", "adherence"] == pytest.approx(0.5)
    assert cols.loc["cat", "coverage"] == pytest.approx(0.5)  # 'b' never appears
    assert cols.loc["cat", "adherence"] == pytest.approx(0.75)  # 'c' is not a real category
    pair = rep.pair_scores().iloc[0]
    # num is cut into 10 real bins: 1->0, 2->3, 3->6, 4->9; 5 and 6 lie above the real range
    # real cells {(0,a),(3,a),(6,b),(9,b)}; synthetic {(6,a),(9,a),(above,a),(above,c)}
    assert pair["score"] == pytest.approx(0.0)


def test_correlation_similarity_and_missing_rate():
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    real = pd.DataFrame({"a": a, "b": a + rng.normal(0, 0.5, 2000)})
    syn = pd.DataFrame({"a": a, "b": -real["b"]})
    syn.loc[:199, "b"] = np.nan
    rep = evaluate(real, syn, {"a": "continuous", "b": "continuous"}, metrics=["fidelity"])
    pair = rep.pair_scores().iloc[0]
    r_real = np.corrcoef(real["a"], real["b"])[0, 1]
    r_syn = np.corrcoef(syn["a"][200:], syn["b"][200:])[0, 1]
    assert pair["score"] == pytest.approx(1 - abs(r_real - r_syn) / 2)
    cols = rep.column_scores().set_index("column")
    assert cols.loc["b", "missing_similarity"] == pytest.approx(0.9)


def test_pair_cap_samples_and_warns():
    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(200, 12)), columns=[f"c{i}" for i in range(12)])
    rep = evaluate(wide, wide.copy(), metrics=["fidelity"], max_pairs=10, random_state=0)
    assert len(rep.pair_scores()) == 10
    assert rep.metrics["fidelity"]["n_pairs_total"] == 66
    assert any("10 of 66" in w for w in rep.warnings)


# -- utility ---------------------------------------------------------------------------------
def independent_frame(n: int, seed: int) -> pd.DataFrame:
    """Mutually independent features; only n0 predicts the target."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"n{i}": rng.normal(size=n) for i in range(3)})
    for i in range(3):
        df[f"c{i}"] = rng.choice(list("abcd"), n)
    df["y"] = np.where(df["n0"] + 0.5 * rng.normal(size=n) > 0, "yes", "no")
    return df


def test_utility_real_beats_noise(full_report):
    util = full_report.metrics["utility"]
    assert util["task"] == "binary"
    assert set(util["models"]) == {"hist_gradient_boosting", "linear"}
    assert util["models"]["linear"]["roc_auc"]["real"] > 0.75
    assert util["models"]["linear"]["roc_auc"]["ratio"] == pytest.approx(1.0, abs=0.1)
    # a model trained on noise ranks the holdout at random. With independent features, that
    # random ranking is unrelated to the target, so its AUC is near 0.5 (with collinear
    # features a random direction can correlate with the target by chance).
    real, holdout = independent_frame(900, 0), independent_frame(600, 2)
    aucs = []
    for seed in (7, 8, 9):
        rep = evaluate(
            real,
            noise_like(real, seed),
            holdout=holdout,
            target="y",
            metrics=["utility"],
            random_state=0,
        )
        for scores in rep.metrics["utility"]["models"].values():
            assert scores["roc_auc"]["real"] > 0.85
            assert scores["roc_auc"]["synthetic"] == pytest.approx(0.5, abs=0.12)
            assert scores["roc_auc"]["ratio"] < 0.7
            aucs.append(scores["roc_auc"]["synthetic"])
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.05)


def test_utility_multiclass_with_missing_class_and_regression(frames):
    real, synthetic, holdout = (f.copy() for f in frames)
    for f in (real, synthetic, holdout):
        f["tier"] = pd.cut(f["age"], [-np.inf, 32, 40, 48, np.inf], labels=["a", "b", "c", "d"])
        f["tier"] = f["tier"].astype(str)
    synthetic["tier"] = synthetic["tier"].replace({"d": "c"})
    rep = evaluate(
        real, synthetic, holdout=holdout, target="tier", metrics=["utility"], random_state=0
    )
    util = rep.metrics["utility"]
    assert util["task"] == "multiclass"
    assert util["models"]["hist_gradient_boosting"]["roc_auc"]["synthetic"] > 0.6
    assert any("lacks 1 class" in w for w in rep.warnings)
    reg = evaluate(
        real, synthetic, holdout=holdout, target="income", metrics=["utility"], random_state=0
    )
    scores = reg.metrics["utility"]["models"]["linear"]
    assert reg.metrics["utility"]["task"] == "regression"
    assert scores["r2"]["real"] > 0.5 and scores["mae"]["synthetic"] > 0
    assert "utility.linear.mae.ratio" in set(reg.summary()["metric"])


def test_utility_skipped_with_reason_without_holdout_or_target(frames):
    real, synthetic, _ = frames
    rep = evaluate(real, synthetic, target="target", metrics=["utility"])
    assert "holdout" in rep.skipped["utility"]
    row = rep.summary().set_index("metric").loc["utility"]
    assert np.isnan(row["value"]) and row["meaning"].startswith("skipped")
    assert "no target" in evaluate(real, synthetic, metrics=["utility"]).skipped["utility"]


# -- privacy ---------------------------------------------------------------------------------
def test_training_copy_is_flagged(frames):
    real, _, holdout = frames
    rep = evaluate(real, real.copy(), holdout=holdout, metrics=["privacy"], random_state=0)
    assert rep["privacy.exact_copy_rate"] == 1.0
    assert rep["privacy.dcr_synthetic_median"] == 0.0
    assert rep["privacy.dcr_share_closer_to_train"] > 0.95
    assert rep["privacy.membership_auc"] > 0.9
    assert rep["privacy.dcr_median_ratio"] == 0.0


def test_independent_sample_looks_private(full_report):
    assert full_report["privacy.exact_copy_rate"] == 0.0
    assert full_report["privacy.dcr_share_closer_to_train"] == pytest.approx(0.5, abs=0.1)
    assert full_report["privacy.membership_auc"] == pytest.approx(0.5, abs=0.1)
    assert full_report["privacy.dcr_median_ratio"] == pytest.approx(1.0, abs=0.3)


def test_privacy_without_holdout_reports_what_it_can(frames):
    real, synthetic, _ = frames
    rep = evaluate(real, synthetic, metrics=["privacy"], random_state=0)
    assert rep["privacy.dcr_synthetic_median"] > 0
    assert "holdout" in rep.skipped["privacy.membership_auc"]
    assert np.isnan(rep["privacy.membership_auc"])


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(300, 7)), rng.normal(size=(500, 7))
    r[:5] = q[:5]
    d = nearest(q, r, k=2)
    brute = np.sort(np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(axis=2)), axis=1)[:, :2]
    np.testing.assert_allclose(d, brute, rtol=1e-5, atol=1e-5)
    assert np.all(d[:5, 0] == 0.0)


# -- inputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_rows": 50}, "max_rows must be an int >= 100, got 50"),
        ({"max_pairs": 0}, "max_pairs must be None or a positive int, got 0"),
        ({"privacy_queries": 5}, "privacy_queries must be None or an int >= 10, got 5"),
        ({"n_threads": 1.5}, "n_threads must be None or a positive int, got 1.5"),
    ],
)
def test_bad_settings_are_hyper_parameter_errors(frames, setting, message):
    """A bad setting of evaluate is not a problem of the user's tables (DataError)."""
    real, synthetic, _ = frames
    with pytest.raises(HyperParameterError, match=message):
        evaluate(real, synthetic, **setting)


def test_bad_inputs_raise_clear_errors(frames):
    real, synthetic, holdout = frames
    with pytest.raises(DataError, match="DataFrame"):
        evaluate(real.to_numpy(), synthetic)
    with pytest.raises(DataError, match="synthetic is empty"):
        evaluate(real, synthetic.iloc[:0])
    with pytest.raises(DataError, match="no column in common"):
        evaluate(real, synthetic.add_suffix("_x"))
    with pytest.raises(DataError, match="missing from the synthetic"):
        evaluate(real, synthetic.drop(columns="target"), holdout=holdout, target="target")
    with pytest.raises(DataError, match="holdout columns differ"):
        evaluate(real, synthetic, holdout=holdout.drop(columns="color"))
    with pytest.raises(HyperParameterError, match="task must be"):
        evaluate(real, synthetic, holdout=holdout, target="target", task="ranking")
    with pytest.raises(HyperParameterError, match="unknown metric families"):
        evaluate(real, synthetic, metrics=["beauty"])
    with pytest.raises(MetadataError, match="unknown kind"):
        evaluate(real, synthetic, metadata={"age": "number"})
    with pytest.raises(DataError, match="numeric target"):
        evaluate(real, synthetic, holdout=holdout, target="color", task="regression")


def test_missing_and_extra_synthetic_columns_warn(frames):
    real, synthetic, _ = frames
    syn = synthetic.drop(columns=["color"]).assign(extra=1)
    rep = evaluate(real, syn, metrics=["fidelity"])
    assert "color" not in set(rep.column_scores()["column"])
    assert any("lacks real columns ['color']" in w for w in rep.warnings)
    assert any("extra" in w for w in rep.warnings)


def test_metadata_object_dict_and_fallback_agree(frames, monkeypatch):
    from tabsynth.metadata import Metadata

    real, synthetic, _ = frames
    meta = Metadata.infer(real)
    by_obj = evaluate(real, synthetic, meta, metrics=["fidelity"]).to_dict()["columns"]
    kinds = {name: spec.kind for name, spec in meta.columns.items()}
    assert evaluate(real, synthetic, kinds, metrics=["fidelity"]).to_dict()["columns"] == by_obj
    declared = evaluate(real, synthetic, {"age": "categorical"}, metrics=["fidelity"])
    assert declared.column_scores().set_index("column").loc["age", "metric"] == "TVComplement"
    monkeypatch.setitem(sys.modules, "tabsynth.metadata", None)  # import now fails
    fallback = mdata.resolve_kinds(real, list(real.columns), None, [])[0]
    assert fallback == {
        "age": "integer",
        "income": "continuous",
        "group": "categorical",
        "color": "categorical",
        "flag": "boolean",
        "joined": "datetime",
        "target": "categorical",
    }


def test_seeded_runs_are_reproducible(frames, full_report):
    real, synthetic, holdout = frames
    again = evaluate(real, synthetic, holdout=holdout, target="target", random_state=0)
    pd.testing.assert_frame_equal(again.summary(), full_report.summary())


def test_thread_cap_is_restored(frames):
    import torch

    before = torch.get_num_threads()
    real, synthetic, _ = frames
    rep = evaluate(real, synthetic, metrics=["privacy"], n_threads=2, random_state=0)
    assert rep.to_dict()["settings"]["n_threads"] == 2
    assert torch.get_num_threads() == before
    with pytest.raises(HyperParameterError, match="n_threads"):
        evaluate(real, synthetic, n_threads=0)


# -- report ----------------------------------------------------------------------------------
def test_summary_has_one_row_per_metric(full_report):
    s = full_report.summary()
    assert list(s.columns) == ["metric", "value", "direction", "meaning"]
    assert s["metric"].is_unique
    assert s["value"].dtype == np.float64
    assert s.set_index("metric").loc["privacy.membership_auc", "direction"].startswith("0.5")
    assert s["value"].notna().all()


def test_json_round_trip(full_report, tmp_path):
    path = tmp_path / "report.json"
    text = full_report.to_json(path)
    json.loads(text)  # strict JSON: no NaN tokens
    back = Report.read_json(path)
    assert back.to_dict() == full_report.to_dict()
    pd.testing.assert_frame_equal(back.summary(), full_report.summary())
    with pytest.raises(DataError, match="not a tabsynth report"):
        Report.from_dict({"metrics": {}})


def test_html_is_self_contained_with_non_blank_plots(full_report, tmp_path):
    from matplotlib.image import imread

    path = full_report.to_html(tmp_path / "out" / "report.html")
    page = path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    assert "http://" not in page and "https://" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    n_columns = len(full_report.column_scores())
    assert len(images) == n_columns + 4  # marginals, heatmap, utility, 2 distance plots
    for data in images:
        pixels = imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.ndim == 3 and pixels.var() > 0
    assert "membership_auc" in page and "not evidence of differential privacy" in page


def test_html_from_json_and_without_holdout(frames, tmp_path):
    real, synthetic, _ = frames
    rep = evaluate(real, synthetic, metrics=["fidelity", "privacy"])
    back = Report.from_dict(json.loads(rep.to_json()))
    page = back.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(real.columns) + 2


def test_html_without_matplotlib_names_the_extra(full_report, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"tabsynth\[report\]"):
        full_report.to_html(tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


# -- verdict, pair heat maps, training curves ---------------------------------------------------
def test_verdict_levels_follow_the_documented_thresholds():
    from tabsynth.metrics.verdict import THRESHOLDS, level

    assert level("column_shapes", 0.90) == "good" and level("column_shapes", 0.8999) == "check"
    assert level("column_shapes", 0.80) == "check" and level("column_shapes", 0.79) == "poor"
    assert level("detection", 0.70) == "good" and level("detection", 0.86) == "poor"
    assert level("utility_ratio", 0.9) == "good" and level("utility_ratio", 0.74) == "poor"
    assert level("membership_auc", None) == "n/a"
    # the documented table in docs/metrics.md carries the same numbers
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text("utf-8")
    section = doc[doc.index("## Verdict") :]
    for key, t in THRESHOLDS.items():
        row = next(line for line in section.splitlines() if f"`{key}`" in line)
        assert f"{t['good']:.2f}" in row and f"{t['check']:.2f}" in row, key


def test_headlines_and_verdict_lines_read_the_report(frames, full_report):
    items = {h["key"]: h for h in full_report.headlines()}
    assert list(items) == ["column_shapes", "pair_trends", "detection", "utility", "privacy"]
    # an independent sample of the same distribution: faithful, useful, no copying
    assert items["column_shapes"]["level"] == "good"
    assert items["privacy"]["level"] == "good"
    ratio = full_report["utility.hist_gradient_boosting.roc_auc.ratio"]
    assert items["utility"]["value"] == f"{ratio:.2f}"
    lines = full_report.verdict_lines()
    assert [line.split(":")[0] for line in lines] == ["fidelity", "utility", "privacy risk"]
    assert f"(ratio {ratio:.2f})" in lines[1]
    # copies of the training rows: privacy risk is flagged, not called low
    real, _, holdout = frames
    copied = evaluate(real, real.copy(), holdout=holdout, metrics=["privacy"], random_state=0)
    assert {h["key"]: h for h in copied.headlines()}["privacy"]["level"] == "poor"
    assert "-> HIGH" in copied.verdict_lines()[2]
    assert copied.verdict_lines()[1].startswith("utility: not computed")
    # shuffled columns keep the shapes but lose the pair trends
    rng = np.random.default_rng(3)
    shuffled = real.apply(lambda s: pd.Series(s.to_numpy()[rng.permutation(len(s))]))
    rep = evaluate(real, shuffled, metrics=["fidelity"], random_state=0)
    levels = {h["key"]: h["level"] for h in rep.headlines()}
    assert levels["column_shapes"] == "good" and levels["pair_trends"] != "good"


def test_association_matrices_match_scipy(frames, full_report):
    from scipy.stats.contingency import association

    real, synthetic, _ = frames
    pairs = full_report.to_dict()["plots"]["pairs"]
    cols = pairs["columns"]
    r, s = np.array(pairs["real"], dtype=float), np.array(pairs["synthetic"], dtype=float)
    i, j = cols.index("age"), cols.index("income")
    both = real[["age", "income"]].dropna()
    assert r[i, j] == pytest.approx(np.corrcoef(both["age"], both["income"])[0, 1])
    both = synthetic[["age", "income"]].dropna()
    assert s[i, j] == pytest.approx(np.corrcoef(both["age"], both["income"])[0, 1])
    a, b = cols.index("group"), cols.index("target")
    table = pd.crosstab(real["group"], real["target"]).to_numpy()
    assert r[a, b] == pytest.approx(association(table, method="cramer"))
    assert np.allclose(np.diag(r), 1.0) and np.allclose(r, r.T, equal_nan=True)
    same = evaluate(real, real.copy(), metrics=["fidelity"], random_state=0).to_dict()
    np.testing.assert_allclose(
        np.array(same["plots"]["pairs"]["real"], dtype=float),
        np.array(same["plots"]["pairs"]["synthetic"], dtype=float),
    )


def test_marginals_count_out_of_range_values_instead_of_clipping():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"x": rng.normal(size=2000)})
    syn = pd.DataFrame({"x": np.r_[rng.normal(size=1920), np.full(80, -50.0)]})
    rep = evaluate(real, syn, {"x": "continuous"}, metrics=["fidelity"], random_state=0)
    plot = rep.to_dict()["plots"]["marginals"][0]
    lo, hi = plot["edges"][0], plot["edges"][-1]
    assert lo > -5  # the plotted range follows the real values
    x = syn["x"].to_numpy()
    assert plot["outside"]["synthetic"] == pytest.approx(np.mean((x < lo) | (x > hi)))
    assert plot["outside"]["synthetic"] > 0.04
    # the far outliers are not piled into the lowest bin
    assert plot["synthetic"][0] < 0.01
    assert sum(plot["synthetic"]) == pytest.approx(1 - plot["outside"]["synthetic"])


@pytest.fixture(scope="module")
def fitted_tvae(frames):
    import tabsynth

    real = frames[0]
    return tabsynth.TVAE(epochs=3, batch_size=100, random_state=0, verbose=False).fit(real)


def test_report_with_model_has_training_curves_and_verdict_first(frames, fitted_tvae, tmp_path):
    real, _, holdout = frames
    synthetic = fitted_tvae.sample(len(real), random_state=0)
    rep = evaluate(
        real, synthetic, holdout=holdout, target="target", random_state=0, model=fitted_tvae
    )
    info = rep.to_dict()["model"]
    assert info["name"] == "TVAE" and info["privacy"] is None
    assert info["params"] == {"epochs": 3, "batch_size": 100}
    assert info["history"]["epoch"] == [0, 1, 2]
    assert info["history"]["loss"] == pytest.approx(fitted_tvae.history_["loss"].tolist())
    page = rep.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(real.columns) + 5  # + training curves
    order = [
        page.index("id='verdict'"),
        page.index("<h2>Marginals"),
        page.index("<h2>Pair trends"),
        page.index("<h2>Training curves"),
        page.index("<h2>All metrics"),
    ]
    assert order == sorted(order)
    for group in ("Fidelity", "Detection", "ML utility", "Privacy-risk diagnostics"):
        assert f"<h3>{group}</h3>" in page
    assert "Membership-inference AUC" in page and "ROC AUC, gradient boosting" in page
    assert page.count("class='card ") == 5
    # JSON round trip keeps the model section and renders the same page
    back = Report.from_dict(json.loads(rep.to_json()))
    assert back.to_dict()["model"] == info
    with pytest.raises(DataError, match="fitted tabsynth model"):
        evaluate(real, synthetic, model=object())


def test_report_header_shows_the_dp_ledger(tmp_path):
    import tabsynth
    from tabsynth.metadata import Metadata

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"a": rng.choice(["x", "y"], 400), "b": rng.normal(size=400)})
    meta = Metadata.infer(table)
    meta.update_column("a", kind="categorical", categories=["x", "y"], nullable=False)
    meta.update_column("b", kind="continuous", lower=-5.0, upper=5.0)
    meta.declare_public()
    meta.n_rows = 400
    model = tabsynth.CTGAN(
        epochs=1, batch_size=100, epsilon=3.0, pac=1, embedding_dim=8, generator_dim=(16,),
        discriminator_dim=(16,), verbose=False, random_state=0,
    ).fit(table, meta)  # fmt: skip
    rep = evaluate(table, model.sample(400), random_state=0, model=model)
    ledger = model.privacy_report()
    assert rep.to_dict()["model"]["privacy"]["epsilon"] == pytest.approx(ledger["epsilon"])
    page = rep.to_html(tmp_path / "dp.html").read_text(encoding="utf-8")
    header = page[: page.index("</section>")]
    assert "Differentially private training" in header
    assert f"{ledger['epsilon']:.4g}" in header and f"{ledger['delta']:.4g}" in header
    for mech in ledger["mechanisms"]:
        assert str(mech["name"]) in header


def test_privacy_histograms_count_the_tail_instead_of_clipping(full_report):
    hists = full_report.to_dict()["plots"]["privacy"]
    for hist in hists.values():
        series = [k for k in hist if k not in ("edges", "beyond")]
        assert set(hist["beyond"]) == set(series)
        for name in series:
            # every distance is in a bin or counted beyond the plotted range (none dropped)
            assert sum(hist[name]) + hist["beyond"][name] == pytest.approx(1.0)
        assert max(hist["beyond"].values()) > 0  # the range ends at the pooled 99th percentile
