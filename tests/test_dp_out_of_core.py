"""DP fits on the compact store, and DP fits streamed from Parquet (out-of-core)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tabsynth
from tabsynth.cli.main import main
from tabsynth.datasets import write_table
from tabsynth.errors import MetadataError, PrivacyError
from tabsynth.metadata import Metadata
from tabsynth.models import _private
from tabsynth.privacy import category_counts, domain_counts, grid_counts, make_poisson_loader
from tabsynth.transform import TableTransformer
from tabsynth.transform.compact import CompactTable
from tabsynth.transform.stream import ParquetSource

N = 300
SMALL = {
    "ARGN": dict(embedding_dim=4, hidden=16),
    "CTGAN": dict(embedding_dim=16, generator_dim=(32,), discriminator_dim=(32,), pac=1),
    "TVAE": dict(embedding_dim=8, compress_dims=(32,), decompress_dims=(32,)),
}


def table(n: int = N) -> pd.DataFrame:
    """Categorical, continuous (with nulls and out-of-bounds values), integer, boolean,
    datetime columns, and a categorical column whose list is left to dp_domains."""
    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    b = np.round(rng.normal(0.0, 1.0, n) + (a == "y"), 3)
    b[::17] = np.nan
    b[5] = 99.0  # clipped to the declared bounds
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.integers(0, 10, n),
            "flag": rng.random(n) < 0.4,
            "d": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
            "city": rng.choice(["p", "q", "r", "s"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def codebook(n_rows: int | None = None, *, city: bool = True) -> Metadata:
    spec = {
        "a": {"kind": "categorical", "categories": ["x", "y", "z"]},
        "b": {"kind": "continuous", "lower": -4.0, "upper": 5.0, "nullable": True},
        "c": {"kind": "integer", "lower": 0, "upper": 9},
        "flag": {"kind": "boolean"},
        "d": {"kind": "datetime", "lower": "2020-01-01", "upper": "2020-12-31", "resolution": "D"},
        "city": {"kind": "categorical"},
    }
    if city:
        spec["city"]["categories"] = ["p", "q", "r", "s"]
    meta = Metadata.from_dict({"columns": [{"name": k, **v} for k, v in spec.items()]})
    meta.declare_public(*[k for k in spec if city or k != "city"])
    if not city:  # its kind is public, its category list left to dp_domains
        meta.declare_public("city", category_lists=False)
    meta.n_rows = n_rows
    return meta


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("dp-ooc") / "t.parquet"
    write_table(table(), path)
    return path


# ---------------------------------------------------------------------- the compact store
def test_the_poisson_loader_draws_the_same_rows_from_the_compact_store() -> None:
    """Same generator seed, same masks: the compact store's batches are the dense matrix's
    rows, empty batches included (shape (0, dim))."""
    tt = TableTransformer(random_state=0).fit(table())
    dense = tt.transform(table())
    store = CompactTable.from_dense(dense, tt.spans_)

    def draw(X, seed: int, q_rows: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return list(make_poisson_loader(X, q_rows, generator=gen).batches(40))

    for q_rows in (30, 1):  # 1: most batches empty
        a = draw(torch.as_tensor(dense), 3, q_rows)
        b = draw(store, 3, q_rows)
        assert len(a) == len(b) == 40
        assert all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(len(x) == 0 for x in draw(store, 3, 1))
    order = torch.randperm(tt.output_dim_, generator=torch.Generator().manual_seed(1))
    a = draw(torch.as_tensor(dense)[:, order], 4, 30)
    b = draw(store.reorder(order), 4, 30)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_category_slot_counts_equal_the_dense_argmax_counts() -> None:
    df = table()
    fit = _private.prepare_private_fit(
        df, codebook(N), epsilon=5.0, delta=None, max_grad_norm=1.0, batch_size=50,
        epochs=1, critic_steps=1, seed=0,
    )  # fmt: skip
    assert isinstance(fit.X, CompactTable) and len(fit.X) == N
    dense = fit.X.dense().numpy()
    for col in ("a", "flag", "city"):
        span = fit.transformer.category_span(col)
        positions = np.argmax(dense[:, span.start : span.stop], axis=1)
        expected = category_counts(positions, list(range(span.width)))
        got = _private.category_slot_counts(fit.X, fit.transformer, col)
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------- streamed releases
def test_streamed_counts_equal_the_in_memory_counts(parquet) -> None:
    """Summed over batches of 37 rows, every exact count behind a release (row count, DP
    domain, numeric grids) equals the count over the whole frame, noise aside."""
    df = pd.read_parquet(parquet)
    plan = _private.plan_private_fit(
        codebook(city=False), epsilon=1.0, delta=None, max_grad_norm=1.0, dp_domains=True
    )
    assert plan.derive == ["city"] and len(plan.num_cols) == 3
    probe = TableTransformer(plan.metadata)
    source = ParquetSource(parquet, batch_rows=37)
    counts = _private.stream_counts(source.frames(), plan, probe)
    assert counts.n_rows == len(df) == N
    whole = domain_counts(_private._domain_values(df["city"]))
    pd.testing.assert_series_equal(
        counts.domains["city"].sort_index(), whole.astype(np.float64).sort_index(),
        check_names=False,
    )  # fmt: skip
    frame = _private.private_frame(df, plan.metadata)
    for col in plan.num_cols:
        lo, hi, bins = _private._grid_of(probe, plan, col)
        values = _private._grid_values(frame, probe, col)
        np.testing.assert_array_equal(counts.grids[col], grid_counts(values, lo, hi, bins))
        assert counts.grids[col].sum() == N
    assert counts.grids["b"][-1] == np.isnan(df["b"]).sum() > 0  # the null cell


def _ledger_view(report: dict) -> tuple:
    keys = ("name", "kind", "noise_multiplier", "sample_rate", "steps", "epsilon_alone")
    return [{k: m.get(k) for k in keys} for m in report["mechanisms"]]


@pytest.mark.parametrize("name", ["ARGN", "CTGAN", "TVAE"])
def test_a_parquet_dp_fit_has_the_ledger_of_the_in_memory_fit(parquet, name: str) -> None:
    """Declared n: the same plan, so the same mechanisms, noise and spent (epsilon, delta)."""
    params = dict(SMALL[name], epochs=1, batch_size=60, epsilon=2.0, verbose=False)
    streamed = getattr(tabsynth, name)(**params).fit(parquet, codebook(N))
    in_memory = getattr(tabsynth, name)(**params).fit(pd.read_parquet(parquet), codebook(N))
    a, b = streamed.privacy_report(), in_memory.privacy_report()
    assert _ledger_view(a) == _ledger_view(b)
    for key in ("epsilon", "delta", "rdp_epsilon", "noise_multiplier", "n_estimate"):
        assert a[key] == b[key], key
    assert streamed.n_rows_fit_ == N and streamed.timings_ == {}
    out = streamed.sample(50, random_state=0)
    assert list(out.columns) == list(table().columns)
    assert out["b"].dropna().between(-4.0, 5.0).all()


def test_private_n_and_dp_domains_streamed(parquet) -> None:
    """n private and an undeclared category list: the streamed fit makes the same releases
    (names, metadata noise) as the in-memory one; DP-SGD's q = B / noisy n differs by fit."""
    # a large epsilon: 300 rows must leave each city above the domain threshold
    params = dict(SMALL["TVAE"], epochs=1, batch_size=60, epsilon=30.0, verbose=False)
    params["dp_domains"] = True
    meta = codebook(None, city=False)
    streamed = tabsynth.TVAE(**params).fit(parquet, meta)
    in_memory = tabsynth.TVAE(**params).fit(pd.read_parquet(parquet), meta)
    a, b = streamed.privacy_report(), in_memory.privacy_report()
    names = [m["name"] for m in a["mechanisms"]]
    assert names == [m["name"] for m in b["mechanisms"]]
    assert {"row-count", "category-domain:city"} <= set(names)
    metadata_only = [m for m in _ledger_view(a) if m["kind"] != "dpsgd"]
    assert metadata_only == [m for m in _ledger_view(b) if m["kind"] != "dpsgd"]
    assert a["delta"] == b["delta"] and max(a["epsilon"], b["epsilon"]) <= 30.0
    assert set(streamed.metadata_["city"].categories) <= {"p", "q", "r", "s"}
    assert streamed.n_rows_fit_ == a["n_estimate"]


# ---------------------------------------------------------------------- refusals before reading
def _unreadable_rows(src, dst) -> None:
    """A copy of ``src`` whose column chunks are overwritten (footer and schema intact)."""
    raw = bytearray(src.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little")
    stop = len(raw) - 8 - footer
    raw[4:stop] = b"\xff" * (stop - 4)
    dst.write_bytes(bytes(raw))


REFUSALS = [
    ({}, None, PrivacyError, "needs a public schema"),
    ({}, "missing-column", MetadataError, "missing from the frame"),
    ({}, "inferred", PrivacyError, "learned from the data"),
    ({"epsilon": 1e-4}, "ok", PrivacyError, "too small"),
    ({"delta": 0.5}, "ok", PrivacyError, "delta"),
]


@pytest.mark.parametrize("extra, meta, error, match", REFUSALS)
def test_refusals_come_before_any_row_is_read(
    parquet, tmp_path, monkeypatch, extra, meta, error, match
) -> None:
    bad = tmp_path / "bad.parquet"
    _unreadable_rows(parquet, bad)
    assert ParquetSource(bad).columns == list(table().columns)  # the schema reads fine
    with pytest.raises(Exception):  # noqa: B017 - the rows do not (positive control)
        next(ParquetSource(bad).frames())
    metadata = {
        None: None,
        "ok": codebook(N),
        "missing-column": Metadata.from_dict(
            {"columns": [c for c in codebook(N).to_dict()["columns"] if c["name"] != "c"]}
        ),
        "inferred": Metadata.infer(table()),
    }[meta]
    read = []
    monkeypatch.setattr(ParquetSource, "_batches", lambda self: read.append(1) or iter(()))
    params = dict(SMALL["TVAE"], epochs=1, batch_size=60, epsilon=1.0, verbose=False)
    with pytest.raises(error, match=match):
        tabsynth.TVAE(**{**params, **extra}).fit(bad, metadata)
    assert read == []


def test_the_command_line_fits_dp_out_of_core(parquet, tmp_path, capsys) -> None:
    meta = tmp_path / "meta.json"
    codebook(N).save(meta)
    args = ["fit", str(parquet), "--model", "tvae", "--epochs", "1", "--seed", "0",
            "--out-of-core", "--epsilon", "2"]  # fmt: skip
    assert main([*args, "-o", str(tmp_path / "x.tsyn")]) == 1
    assert "needs a public schema" in capsys.readouterr().err
    assert main([*args, "--declare-public", "-o", str(tmp_path / "x.tsyn")]) == 1
    assert "--declare-public with --out-of-core needs --metadata" in capsys.readouterr().err
    assert main([*args, "--metadata", str(meta), "-q", "-o", str(tmp_path / "m.tsyn")]) == 0
    printed = capsys.readouterr().out
    assert "row count used by the fit (declared): 300" in printed and "dp-sgd" in printed
    assert not (tmp_path / "x.tsyn").exists()
    model = tabsynth.load(tmp_path / "m.tsyn")
    assert model.privacy_report()["n_estimate"] == N and len(model.sample(10)) == 10
