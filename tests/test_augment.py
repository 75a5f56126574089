"""Augmentation (tabsynth.augment, CLI augment, the report's augmentation utility) and training
curves (callbacks, TensorBoard, plot_history, the DP logging rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tabsynth
from tabsynth import Metadata
from tabsynth.cli.main import main
from tabsynth.errors import DataError

SMALL = {
    "CTGAN": dict(embedding_dim=16, generator_dim=(32,), discriminator_dim=(32,), pac=1),
    "TVAE": dict(embedding_dim=8, compress_dims=(32,), decompress_dims=(32,)),
}


def imbalanced(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = np.where(x + rng.normal(scale=0.3, size=n) > 1.2, "pos", "neg")
    return pd.DataFrame(
        {
            "x": x,
            "k": rng.integers(0, 5, n),
            "c": pd.Series(rng.choice(["a", "b", "c"], n)),
            "y": y,
        }
    )


def small(name: str = "CTGAN", **kw) -> tabsynth.models.BaseSynthesizer:
    params = dict(SMALL[name], epochs=2, batch_size=100, verbose=False, random_state=0)
    params.update(kw)
    return getattr(tabsynth, name)(**params)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return imbalanced()


@pytest.fixture(scope="module")
def fitted(table) -> tabsynth.models.BaseSynthesizer:
    return small().fit(table)


# -- augment ---------------------------------------------------------------------------------
def test_balance_adds_minority_rows_and_keeps_real_rows(table, fitted):
    out = tabsynth.augment(table, fitted, target="y", random_state=0)
    counts = table["y"].value_counts()
    real = out[~out["is_synthetic"]].drop(columns="is_synthetic")
    pd.testing.assert_frame_equal(real, table.reset_index(drop=True))
    syn = out[out["is_synthetic"]]
    assert len(syn) == counts["neg"] - counts["pos"]
    assert set(syn["y"]) == {"pos"}
    balanced = out["y"].value_counts()
    assert balanced["pos"] == balanced["neg"]
    for col in table.columns:
        assert out[col].dtype == table[col].dtype, col
    assert out["is_synthetic"].dtype == bool


def test_explicit_counts_and_reproducible(table, fitted):
    a = tabsynth.augment(table, fitted, target="y", strategy={"pos": 30, "neg": 7}, random_state=3)
    b = tabsynth.augment(table, fitted, target="y", strategy={"pos": 30, "neg": 7}, random_state=3)
    pd.testing.assert_frame_equal(a, b)
    syn = a[a["is_synthetic"]]
    assert syn["y"].value_counts().to_dict() == {"pos": 30, "neg": 7}


def test_augment_fits_an_unfitted_model(table):
    model = small("TVAE")
    out = tabsynth.augment(table, model, target="y", strategy={"pos": 5}, random_state=0)
    assert hasattr(model, "transformer_")
    assert int(out["is_synthetic"].sum()) == 5


def test_unseen_class_and_bad_requests_are_clear_errors(table, fitted):
    with pytest.raises(DataError, match=r"class 'maybe' does not occur in column 'y'"):
        tabsynth.augment(table, fitted, target="y", strategy={"maybe": 10})
    with pytest.raises(DataError, match="non-negative int"):
        tabsynth.augment(table, fitted, target="y", strategy={"pos": -1})
    with pytest.raises(DataError, match="'nope' is not in the table"):
        tabsynth.augment(table, fitted, target="nope")
    with pytest.raises(DataError, match="column 'x' is continuous"):
        tabsynth.augment(table, fitted, target="x")
    with pytest.raises(DataError, match="strategy must be"):
        tabsynth.augment(table, fitted, target="y", strategy="more")
    with pytest.raises(DataError, match="already has a column 'k'"):
        tabsynth.augment(table, fitted, target="y", indicator="k")


def dp_metadata(df: pd.DataFrame) -> Metadata:
    meta = Metadata.from_dict(
        {
            "columns": [
                {"name": "x", "kind": "continuous", "lower": -4.0, "upper": 4.0},
                {"name": "k", "kind": "integer", "lower": 0, "upper": 4},
                {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]},
                {"name": "y", "kind": "categorical", "categories": ["neg", "pos"]},
            ]
        }
    )
    meta.declare_public()
    meta.n_rows = len(df)
    return meta


@pytest.fixture(scope="module")
def dp_model(table):
    model = small(epsilon=3.0, delta=1e-5, epochs=1)
    return model.fit(table, metadata=dp_metadata(table))


def test_dp_augment_returns_only_synthetic_rows_and_the_privacy_report(table, dp_model):
    out = tabsynth.augment(table, dp_model, target="y", random_state=0)
    assert out["is_synthetic"].all()
    assert out.attrs["privacy_report"]["epsilon"] == pytest.approx(
        dp_model.privacy_report()["epsilon"]
    )
    # no real row is in the output
    merged = out.drop(columns="is_synthetic").merge(table, how="inner")
    assert merged.empty


def test_dp_augment_counts_do_not_read_the_real_class_counts(table, dp_model):
    """Under DP how many rows are added comes from the model, not from ``real[target]``."""
    a = tabsynth.augment(table, dp_model, target="y", random_state=0)
    flipped = table.assign(y=np.where(table["y"] == "pos", "neg", "pos"))
    b = tabsynth.augment(flipped, dp_model, target="y", random_state=0)
    pd.testing.assert_frame_equal(a, b)


# -- the report's augmentation utility --------------------------------------------------------
def test_evaluate_reports_augmentation_utility(table, fitted):
    holdout = imbalanced(300, seed=1)
    synthetic = fitted.sample(400, random_state=0)
    report = tabsynth.evaluate(
        table, synthetic, holdout=holdout, target="y", random_state=0, metrics=("utility",)
    )
    aug = report.metrics["utility"]["augmentation"]
    assert aug["minority_class"] == "pos"
    n_pos_syn = int((synthetic["y"] == "pos").sum())
    need = int((table["y"] == "neg").sum() - (table["y"] == "pos").sum())
    assert aug["n_synthetic_added"] == min(need, n_pos_syn)
    for metric in ("roc_auc", "average_precision", "minority_recall"):
        s = aug[metric]
        assert 0.0 <= s["real"] <= 1.0 and 0.0 <= s["augmented"] <= 1.0
        assert s["difference"] == pytest.approx(s["augmented"] - s["real"])
        assert s["ci_low"] <= s["ci_high"]
    names = set(report.summary()["metric"])
    assert "utility.augmentation.roc_auc.difference" in names


def test_augmentation_with_the_real_minority_rows_helps_recall():
    """Synthetic minority rows that are exact copies of held-out minority rows are informative:
    the augmented model's minority recall must not fall (a check of the wiring, not of a model)."""
    train = imbalanced(600, seed=2)
    holdout = imbalanced(600, seed=3)
    extra = imbalanced(4000, seed=4)
    synthetic = extra[extra["y"] == "pos"]
    report = tabsynth.evaluate(
        train, synthetic, holdout=holdout, target="y", random_state=0, metrics=("utility",)
    )
    aug = report.metrics["utility"]["augmentation"]
    assert aug["n_synthetic_added"] > 0
    assert aug["minority_recall"]["augmented"] >= aug["minority_recall"]["real"]


# -- training curves ---------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_epoch_end(self, model, row) -> None:
        self.rows.append(dict(row))


@pytest.mark.parametrize("name", ["CTGAN", "TVAE"])
def test_callbacks_see_every_epoch_row(table, name):
    rec = Recorder()
    model = small(name, epochs=3).fit(table, callbacks=[rec])
    assert [r["epoch"] for r in rec.rows] == [0, 1, 2]
    assert rec.rows == model.history_.to_dict(orient="records")


def test_bad_callback_is_a_clear_error(table):
    with pytest.raises(DataError, match="on_epoch_end"):
        small().fit(table, callbacks=[lambda m, r: None])
    with pytest.raises(DataError, match="list of objects"):
        small().fit(table, callbacks="print")


@pytest.mark.parametrize("name,keys", [("CTGAN", {"loss_g"}), ("TVAE", set())])
def test_dp_logging_passes_only_dp_values(table, name, keys):
    rec = Recorder()
    model = small(name, epsilon=3.0, delta=1e-5, epochs=2)
    model.fit(table, metadata=dp_metadata(table), callbacks=[rec])
    assert len(rec.rows) == 2
    for row in rec.rows:
        assert set(row) == {"epoch", "epsilon_spent"} | keys
    spent = [r["epsilon_spent"] for r in rec.rows]
    assert spent[0] < spent[1] <= model.privacy_report()["epsilon"] + 1e-6


def test_tensorboard_writes_readable_scalars(table, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = small(epochs=3).fit(table, log_dir=tmp_path / "runs")
    acc = EventAccumulator(str(tmp_path / "runs"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    losses = [c for c in model.history_.columns if c != "epoch"]
    assert tags == {f"CTGAN/{c}" for c in losses}
    first = losses[0]
    values = [e.value for e in acc.Scalars(f"CTGAN/{first}")]
    assert values == pytest.approx(model.history_[first].tolist(), rel=1e-6)


def test_plot_history_draws_each_loss(fitted):
    pytest.importorskip("matplotlib")
    fig = fitted.plot_history()
    losses = [c for c in fitted.history_.columns if c not in ("epoch", "seconds")]
    assert [ax.get_title() for ax in fig.axes] == [c.replace("_", " ") for c in losses]
    for ax, col in zip(fig.axes, losses, strict=True):
        (line,) = ax.get_lines()
        assert list(line.get_ydata()) == pytest.approx(fitted.history_[col].tolist())
        assert list(line.get_xdata()) == [e + 1 for e in fitted.history_["epoch"]]


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_augment_balance_and_errors(table, tmp_path, capsys):
    src = tmp_path / "t.csv"
    table.to_csv(src, index=False)
    out = tmp_path / "aug.csv"
    rc = main(
        [
            "augment",
            str(src),
            "--target",
            "y",
            "--balance",
            "--epochs",
            "1",
            "--seed",
            "0",
            "-q",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    got = pd.read_csv(out)
    assert got["is_synthetic"].sum() == (table["y"] == "neg").sum() - (table["y"] == "pos").sum()
    rc = main(["augment", str(src), "--target", "y", "--add", "maybe=3", "-q", "-o", str(out)])
    assert rc == 1
    assert "class 'maybe' does not occur in column 'y'" in capsys.readouterr().err


def test_integer_label_is_a_class_column(table):
    """A 0/1 integer label (the common encoding of a binary target) is augmented per value."""
    df = table.assign(y=(table["y"] == "pos").astype("int64"))
    model = small(epochs=1).fit(df)
    out = tabsynth.augment(df, model, target="y", random_state=0)
    syn = out[out["is_synthetic"]]
    assert set(syn["y"]) == {1}
    assert len(syn) == (df["y"] == 0).sum() - (df["y"] == 1).sum()
    assert out["y"].dtype == np.int64
    with pytest.raises(DataError, match="integer target 'k' has 5 values|class 7"):
        tabsynth.augment(df, model, target="k", strategy={7: 1})


def test_cli_evaluate_model_adds_training_curves(table, fitted, tmp_path):
    pytest.importorskip("matplotlib")
    src, syn, hold = tmp_path / "t.csv", tmp_path / "s.csv", tmp_path / "h.csv"
    table.to_csv(src, index=False)
    fitted.sample(200, random_state=0).to_csv(syn, index=False)
    imbalanced(200, seed=5).to_csv(hold, index=False)
    fitted.save(tmp_path / "m.tsyn")
    args = ["evaluate", str(src), str(syn), "--metrics", "fidelity", "-q"]
    out_json, html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(
        [*args, "--model", str(tmp_path / "m.tsyn"), "--json", str(out_json), "--html", str(html)]
    )
    assert rc == 0
    saved = tabsynth.Report.read_json(out_json).to_dict()["model"]
    assert saved["name"] == "CTGAN"
    assert saved["history"]["epoch"] == fitted.history_["epoch"].tolist()
    assert 'alt="training curves"' in html.read_text()


def test_augment_with_argn_meets_every_condition(table):
    """ARGN (the default model) meets conditions by construction: every added row has its
    class and no row was rejected."""
    model = tabsynth.ARGN(epochs=3, random_state=0, verbose=False)
    out = tabsynth.augment(table, model, target="y", strategy={"pos": 40}, random_state=0)
    assert model.last_sample_stats_["generated"] == 40
    syn = out[out["is_synthetic"]]
    assert len(syn) == 40 and set(syn["y"]) == {"pos"}


def test_cli_fit_accepts_argn(table, tmp_path):
    src, out = tmp_path / "t.csv", tmp_path / "m.tsyn"
    table.to_csv(src, index=False)
    rc = main(
        ["fit", str(src), "--model", "argn", "--epochs", "1", "--seed", "0", "-q", "-o", str(out)]
    )
    assert rc == 0
    assert type(tabsynth.load(out)).__name__ == "ARGN"
