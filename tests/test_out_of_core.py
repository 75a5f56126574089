"""The compact encoded store and the out-of-core (Parquet) fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tabsynth
from tabsynth.datasets import make_patients, read_table, write_demo_parquet, write_table
from tabsynth.errors import DataError, MetadataError, PrivacyError
from tabsynth.metadata import Metadata
from tabsynth.transform import TableTransformer
from tabsynth.transform import compact as compact_mod
from tabsynth.transform import stream as stream_mod
from tabsynth.transform.base import Span
from tabsynth.transform.compact import CompactTable, encode_frames


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return make_patients(1200, random_state=3)


@pytest.fixture(scope="module")
def fitted_tt(patients: pd.DataFrame) -> TableTransformer:
    return TableTransformer(random_state=0).fit(patients)


# -- the compact store -------------------------------------------------------------------


def test_compact_store_is_exact_and_small(patients, fitted_tt) -> None:
    X = fitted_tt.transform(patients)
    table = CompactTable.from_dense(X, fitted_tt.spans_)
    assert np.array_equal(table.dense().numpy(), X)  # element for element
    rows = torch.tensor([5, 0, 1199, 5])
    assert np.array_equal(table.dense(rows).numpy(), X[rows.numpy()])
    assert table.shape == X.shape and len(table) == len(X)
    assert table.codes.dtype == torch.int8  # the widest span fits a byte
    assert table.nbytes < 0.25 * table.dense_nbytes


def test_compact_store_keeps_all_zero_spans_and_reorders(patients, fitted_tt) -> None:
    X = fitted_tt.transform(patients)[:50].copy()
    hot = next(s for s in fitted_tt.spans_ if s.activation == "softmax")
    X[:7, hot.start : hot.stop] = 0.0  # a span with no hot slot must not come back as slot 0
    table = CompactTable.from_dense(X, fitted_tt.spans_)
    assert np.array_equal(table.dense().numpy(), X)
    assert (table.span_codes(hot.start)[:7] == -1).all()
    order = torch.randperm(X.shape[1], generator=torch.Generator().manual_seed(0))
    assert torch.equal(table.reorder(order).dense(), torch.as_tensor(X)[:, order])
    assert torch.equal(table.reorder(order).take(slice(3, 9)).dense(), table.dense()[3:9][:, order])
    with pytest.raises(DataError, match="permutation"):
        table.reorder(torch.zeros(X.shape[1], dtype=torch.long))
    with pytest.raises(DataError, match="no one-hot span"):
        table.span_codes(-5)


def test_wide_spans_take_wider_codes() -> None:
    spans = [Span("c", "category", 0, 300, "softmax"), Span("x", "value", 300, 1, "tanh")]
    X = np.zeros((4, 301), dtype=np.float32)
    X[np.arange(4), [0, 299, 150, 7]] = 1.0
    X[:, 300] = [0.5, -0.25, 1.0, 0.0]
    table = CompactTable.from_dense(X, spans)
    assert table.codes.dtype == torch.int16
    assert np.array_equal(table.dense().numpy(), X)


def test_encode_frames_in_chunks(patients, fitted_tt, monkeypatch) -> None:
    one = encode_frames(fitted_tt, [patients], len(patients))
    assert np.array_equal(one.dense().numpy(), fitted_tt.transform(patients))  # one chunk: same
    monkeypatch.setattr(compact_mod, "CHUNK_ROWS", 100)
    parts = [patients.iloc[:450], patients.iloc[450:]]
    chunked = encode_frames(fitted_tt, parts, len(patients))
    # categories are not drawn, so their codes agree; numeric modes are drawn per chunk
    cat = fitted_tt.category_span("diagnosis").start
    assert torch.equal(chunked.span_codes(cat), one.span_codes(cat))
    with pytest.raises(DataError, match="not the 1300 announced"):
        encode_frames(fitted_tt, [patients], 1300)
    with pytest.raises(DataError, match="more rows than the 1000"):
        encode_frames(fitted_tt, [patients], 1000)


# -- Parquet sources and the out-of-core fit ----------------------------------------------


def test_fit_from_parquet_matches_the_in_memory_schema(patients, tmp_path) -> None:
    path = tmp_path / "p.parquet"
    write_table(patients, path)
    frame = read_table(path)
    streamed = tabsynth.TVAE(epochs=1, random_state=0, verbose=False).fit(path)
    in_memory = tabsynth.TVAE(epochs=1, random_state=0, verbose=False).fit(frame)
    assert streamed.metadata_.to_dict() == in_memory.metadata_.to_dict()
    assert streamed.n_rows_fit_ == len(patients)
    out = streamed.sample(300, random_state=0)
    assert list(out.columns) == list(patients.columns)
    assert out.dtypes.to_dict() == frame.dtypes.to_dict()


def test_streamed_statistics_cover_rows_outside_the_sample(tmp_path, monkeypatch) -> None:
    n = 2000
    df = pd.DataFrame(
        {
            "x": np.linspace(0.0, 1.0, n),
            "k": np.arange(n) % 3,
            "c": np.where(np.arange(n) % 2 == 0, "a", "b"),
        }
    )
    df.loc[n - 1, "x"] = 50.0  # the maximum, and a null, in one row each, late in the file
    df["x"] = df["x"].astype(float)
    df.loc[n - 2, "x"] = np.nan
    df.loc[n - 3, "c"] = "z"  # a category the sample never sees
    write_table(df, tmp_path / "t.parquet")
    monkeypatch.setattr(stream_mod, "SAMPLE_ROWS", 40)
    monkeypatch.setattr(stream_mod, "BATCH_ROWS", 256)
    source = stream_mod.ParquetSource(tmp_path / "t.parquet", batch_rows=256)
    sample, stats = source.scan(40, random_state=0)
    assert len(sample) == 40 and stats["x"]["nulls"] == 1 and stats["x"]["max"] == 50.0
    meta = stream_mod.infer_metadata(sample, stats, n)
    assert meta["x"].nullable and meta["x"].upper == 50.0
    model = tabsynth.TVAE(epochs=1, random_state=0, verbose=False).fit(tmp_path / "t.parquet")
    assert model.metadata_["x"].nullable
    assert model.metadata_["x"].upper == 50.0
    assert model.n_rows_fit_ == n  # the unseen category "z" took the "other" slot


def test_fit_from_a_folder_of_parquet_files(patients, tmp_path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    write_table(patients.iloc[:600], folder / "a.parquet")
    write_table(patients.iloc[600:], folder / "b.parquet")
    model = tabsynth.CTGAN(epochs=1, random_state=0, verbose=False).fit(folder)
    assert model.n_rows_fit_ == len(patients)
    assert len(model.sample(50, random_state=0)) == 50


def test_write_demo_parquet_is_chunked_unique_and_seeded(tmp_path) -> None:
    a = write_demo_parquet("patients", tmp_path / "a.parquet", 2500, chunk_rows=1000)
    b = write_demo_parquet("patients", tmp_path / "b.parquet", 2500, chunk_rows=1000)
    da, db = read_table(a), read_table(b)
    assert len(da) == 2500 and da["patient_id"].is_unique
    pd.testing.assert_frame_equal(da, db)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(a).metadata.num_row_groups == 3
    with pytest.raises(DataError, match="unknown demo dataset"):
        write_demo_parquet("nope", tmp_path / "c.parquet", 10)


def test_bad_parquet_inputs_are_named(tmp_path, patients) -> None:
    model = tabsynth.TVAE(epochs=1, verbose=False)
    with pytest.raises(DataError, match="no such file"):
        model.fit(tmp_path / "missing.parquet")
    write_table(patients.head(20), tmp_path / "p.csv")
    with pytest.raises(DataError, match="reads Parquet"):
        model.fit(tmp_path / "p.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read"):
        model.fit(tmp_path / "junk.parquet")
    # a declared non-nullable column with a missing value in the file: named with its rows
    df = patients[["age", "sex"]].copy()
    df["age"] = df["age"].astype(float)
    df.loc[1100, "age"] = np.nan
    write_table(df, tmp_path / "nulls.parquet")
    meta = Metadata.infer(df.dropna())
    with pytest.raises(DataError, match="'age' has missing values"):
        model.fit(tmp_path / "nulls.parquet", metadata=meta)
    meta2 = Metadata.infer(df[["age"]].dropna())
    with pytest.raises(MetadataError):
        model.fit(tmp_path / "nulls.parquet", metadata=meta2)


def test_dp_refuses_a_parquet_path_without_a_schema_before_opening_it(tmp_path) -> None:
    model = tabsynth.CTGAN(epochs=1, epsilon=1.0, verbose=False)
    # the file does not exist: the refusal comes from the arguments, not from the data
    # (DP out-of-core fits with a declared schema: tests/test_dp_out_of_core.py)
    with pytest.raises(PrivacyError, match="needs a public schema"):
        model.fit(tmp_path / "missing.parquet")


def test_a_folder_needs_parquet_files_with_one_set_of_columns(patients, tmp_path) -> None:
    model = tabsynth.TVAE(epochs=1, verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .parquet or .pq file"):
        model.fit(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_table(patients.iloc[:100], mixed / "a.parquet")
    write_table(patients.iloc[100:200, :5], mixed / "b.parquet")
    with pytest.raises(DataError, match="must hold the same columns"):
        model.fit(mixed)


def test_a_store_too_large_for_the_gpu_stays_on_the_host(patients, fitted_tt, monkeypatch) -> None:
    X = fitted_tt.transform(patients)
    table = CompactTable.from_dense(X, fitted_tt.spans_)
    assert table.place("cpu").device.type == "cpu"
    # a host store with batches sent elsewhere: simulated with the CPU as the "device"
    host = CompactTable(table.spans, table.dim, table.codes, table.values)
    host._target = torch.device("cpu")
    rows = torch.tensor([3, 1, 4])
    assert torch.equal(host.dense(rows), table.dense(rows))
    order = torch.randperm(X.shape[1], generator=torch.Generator().manual_seed(1))
    assert torch.equal(host.reorder(order).take(rows).dense(), table.dense(rows)[:, order])
    if torch.cuda.is_available():  # the placement rule itself, on a real GPU
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1, 2))
        assert table.place("cuda").codes.device.type == "cpu"
        assert table.place("cuda").dense(rows).device.type == "cuda"
