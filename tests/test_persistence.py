"""Single-file, pickle-free model persistence shared by every model."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tabsynth
from tabsynth.datasets import make_patients
from tabsynth.errors import ModelFileError, NotFittedError
from tabsynth.models import CTGAN, TVAE, BaseSynthesizer, load
from tabsynth.models.persistence import _digest

FIXTURES = Path(__file__).parent / "fixtures"

MODELS = [
    lambda: CTGAN(
        epochs=1,
        batch_size=100,
        pac=5,
        embedding_dim=16,
        generator_dim=(32, 32),
        discriminator_dim=(32,),
        verbose=False,
        random_state=0,
    ),
    lambda: TVAE(
        epochs=1,
        batch_size=100,
        embedding_dim=16,
        compress_dims=(32,),
        decompress_dims=(32,),
        verbose=False,
        random_state=0,
    ),
]

MARKER_NAME = "pwned.txt"


class _Evil:
    """Unpickling this object would create a marker file (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle payload executed"))


@pytest.fixture(scope="module", params=MODELS, ids=["CTGAN", "TVAE"])
def fitted(request: pytest.FixtureRequest) -> BaseSynthesizer:
    return request.param().fit(make_patients(250, random_state=2))


@pytest.fixture
def saved(fitted: BaseSynthesizer, tmp_path: Path) -> Path:
    path = tmp_path / "model.tabsynth"
    fitted.save(path)
    return path


def _read(path: Path) -> tuple[dict, bytes]:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("model.json")), zf.read("tensors.bin")


def _rewrite(
    path: Path, header: dict | None = None, blob: bytes | None = None, resign: bool = False
) -> None:
    """Rewrite one member of a saved archive (what anyone with the file could do).

    ``resign``: also recompute the checksum, as a deliberate forger would: then only the
    loader's whitelist and checks stand between the header and the model.
    """
    old_header, old_blob = _read(path)
    header = header if header is not None else old_header
    blob = blob if blob is not None else old_blob
    if resign:
        header = {**header, "sha256": _digest(header, blob)}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(header))
        zf.writestr("tensors.bin", blob)


def test_round_trip_gives_identical_samples(fitted: BaseSynthesizer, saved: Path) -> None:
    loaded = load(saved)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()  # tuples come back as tuples
    pd.testing.assert_frame_equal(loaded.history_, fitted.history_)
    assert loaded.timings_ == fitted.timings_
    assert loaded.batch_size_ == fitted.batch_size_
    pd.testing.assert_frame_equal(
        loaded.sample(50, random_state=7), fitted.sample(50, random_state=7)
    )
    cond = {"sex": "F", "age": (20, 80)}
    pd.testing.assert_frame_equal(
        loaded.sample(20, conditions=cond, random_state=8),
        fitted.sample(20, conditions=cond, random_state=8),
    )
    # the top-level entry point is the same function
    assert tabsynth.load is load


def test_file_layout_is_json_plus_raw_tensors(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        assert sorted(zf.namelist()) == ["model.json", "tensors.bin"]
        header = json.loads(zf.read("model.json"))
        blob = zf.read("tensors.bin")
    assert header["format"] == "tabsynth-model" and header["format_version"] == 2
    assert header["library_version"] == tabsynth.__version__
    assert {"params", "metadata", "transformer", "history", "timings", "tensors"} <= set(header)
    # the checksum covers the header (all of it but the checksum itself) and the payload
    assert header["sha256"] == _digest(header, blob)
    assert header["sha256"] != hashlib.sha256(blob).hexdigest()
    assert not blob.startswith(b"\x80")  # not a pickle stream
    assert "device_" not in json.dumps(header)  # the resolved device is never recorded


def test_load_onto_cpu_when_saved_for_cuda(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        header = json.loads(zf.read("model.json"))
    header["params"]["device"] = "cuda"
    _rewrite(saved, header=header, resign=True)
    model = load(saved, device="cpu")
    assert model.device_.type == "cpu"
    assert all(p.device.type == "cpu" for m in model._modules().values() for p in m.parameters())
    assert len(model.sample(5)) == 5
    if not torch.cuda.is_available():
        with pytest.warns(RuntimeWarning, match="CUDA is not available"):
            assert load(saved).device_.type == "cpu"


def test_save_is_atomic_and_overwrites(fitted: BaseSynthesizer, saved: Path) -> None:
    first = saved.read_bytes()
    fitted.save(saved)  # overwrite in place
    assert saved.read_bytes() == first
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temp file left
    fitted.save(str(saved.parent / "other.tabsynth"))  # str paths too
    assert load(saved.parent / "other.tabsynth").get_params() == fitted.get_params()


def test_tampered_tensor_payload_is_refused(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        blob = bytearray(zf.read("tensors.bin"))
    blob[len(blob) // 2] ^= 0xFF
    _rewrite(saved, blob=bytes(blob))
    with pytest.raises(ModelFileError, match="checksum"):
        load(saved)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda h: h["metadata"]["columns"][1].update(kind="id"), id="kind-to-id"),
        pytest.param(lambda h: h["params"].update(epochs=7), id="param"),
        pytest.param(lambda h: h["fitted"].update(_sample_seed_=1), id="fitted"),
        pytest.param(lambda h: h.update(library_version="9.9"), id="version-string"),
    ],
)
def test_tampered_header_is_refused(saved: Path, edit) -> None:
    header, _ = _read(saved)
    edit(header)
    _rewrite(saved, header=header)
    with pytest.raises(ModelFileError, match="checksum"):
        load(saved)


def test_pickle_payload_is_never_executed(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / MARKER_NAME
    payload = pickle.dumps(_Evil(str(marker)))
    # 1) payload swapped in as is: the checksum no longer matches
    _rewrite(saved, blob=payload)
    with pytest.raises(ModelFileError):
        load(saved)
    # 2) attacker also fixes the checksum: the bytes are still only read as raw numbers
    with zipfile.ZipFile(saved) as zf:
        header = json.loads(zf.read("model.json"))
    _rewrite(saved, header=header, blob=payload, resign=True)
    with pytest.raises(ModelFileError, match="does not fit the payload"):
        load(saved)
    # 3) a torch.save pickle in place of the whole file
    torch.save({"w": _Evil(str(marker))}, saved)
    with pytest.raises(ModelFileError):
        load(saved)
    assert not marker.exists()


def test_header_tampering_and_foreign_files(saved: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        header = json.loads(zf.read("model.json"))
    bad_version = {**header, "format_version": 99, "library_version": "3.1"}
    _rewrite(saved, header=bad_version)
    with pytest.raises(ModelFileError, match=r"written by tabsynth 3\.1 .*version 99.*upgrade"):
        load(saved)
    _rewrite(saved, header={**header, "class": "os.system"})
    with pytest.raises(ModelFileError, match="checksum"):
        load(saved)
    _rewrite(saved, header={**header, "class": "os.system"}, resign=True)
    with pytest.raises(ModelFileError, match="unknown model class"):
        load(saved)
    _rewrite(saved, header={**header, "format": "something-else"})
    with pytest.raises(ModelFileError, match="not a tabsynth model"):
        load(saved)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a tabsynth model"):
        load(text)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="not a tabsynth model"):
        load(other_zip)
    with pytest.raises(ModelFileError, match="no such model file"):
        load(tmp_path / "missing.tabsynth")


def test_shape_mismatch_is_refused(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        header = json.loads(zf.read("model.json"))
    header["params"]["embedding_dim"] = 17  # the saved weights no longer fit the network
    _rewrite(saved, header=header, resign=True)
    with pytest.raises(ModelFileError, match="do not fit"):
        load(saved)


def test_save_before_fit(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match=r"call fit\(df\) before save\(\)"):
        CTGAN().save(tmp_path / "x.tabsynth")
    assert not os.listdir(tmp_path)


# -- a forger who recomputes the checksum: only the whitelist stands in the way -----------------
def _dims_key(header: dict) -> str:
    return "generator_dim" if header["class"] == "CTGAN" else "compress_dims"


def _set_fitted(name: str, value):
    return lambda h: h["fitted"].update({name: value})


FORGERIES = [
    # (edit of the header, what the error must say)
    pytest.param(_set_fitted("_build", None), "fitted attributes", id="method-replaced"),
    pytest.param(_set_fitted("_sample_chunk", 0), "fitted attributes", id="sample-chunk-0"),
    pytest.param(_set_fitted("__class__", "x"), "fitted attributes", id="dunder"),
    pytest.param(lambda h: h["fitted"].pop("batch_size_"), "fitted attributes", id="missing"),
    pytest.param(_set_fitted("batch_size_", 0), "'batch_size_'", id="batch-size-0"),
    pytest.param(_set_fitted("_sample_seed_", "x"), "'_sample_seed_'", id="seed-type"),
    pytest.param(_set_fitted("n_rows_fit_", -1), "'n_rows_fit_'", id="n-rows-negative"),
    pytest.param(
        _set_fitted("privacy_report_", {"epsilon": 1.0, "delta": 1e-6}), "privacy", id="fake-dp"
    ),
    pytest.param(lambda h: h["params"].update(_build=None), "no hyper-parameter", id="param-inj"),
    pytest.param(lambda h: h["params"].update(batch_size=0), "batch_size", id="param-range"),
    pytest.param(lambda h: h["params"].update(device="gpu"), "device", id="param-device"),
    pytest.param(lambda h: h["params"].update(epsilon="big"), "epsilon", id="param-type"),
    pytest.param(
        lambda h: h["params"].update({_dims_key(h): [10**13]}), "declared sizes", id="huge-dims"
    ),
    pytest.param(
        lambda h: h["params"].update({_dims_key(h): [10**30]}),
        "cannot be built|declared sizes",
        id="overflowing-dims",
    ),
    pytest.param(
        lambda h: h["params"].update(embedding_dim=10**12), "declared sizes", id="huge-embedding"
    ),
    pytest.param(lambda h: h.update(evil={"x": 1}), "unexpected header", id="extra-entry"),
    pytest.param(lambda h: h.update(history=[{"epoch": "x"}]), "inconsistent", id="history"),
    pytest.param(lambda h: h.update(timings={"train_s": -1}), "inconsistent", id="timings"),
    pytest.param(
        lambda h: h["metadata"]["columns"][1].update(kind="id"),
        "does not match|inconsistent",
        id="kind-id",
    ),
    pytest.param(
        lambda h: [
            c.update(kind="id")
            for c in (h["metadata"]["columns"][1], h["transformer"]["metadata"]["columns"][1])
        ],
        "inconsistent|does not match|do not fit|declared sizes",
        id="kind-id-both-copies",
    ),
    pytest.param(lambda h: h.update(metadata=[]), "inconsistent", id="metadata-type"),
    pytest.param(lambda h: h.update(transformer={"x": 1}), "inconsistent", id="transformer"),
]


@pytest.mark.parametrize(("edit", "message"), FORGERIES)
def test_forged_header_is_refused(saved: Path, edit, message: str) -> None:
    header, _ = _read(saved)
    edit(header)
    _rewrite(saved, header=header, resign=True)
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match=message):
        load(saved)
    assert time.perf_counter() - t0 < 10  # refused before any large allocation


def test_forged_tensors_are_refused(fitted: BaseSynthesizer, saved: Path) -> None:
    header, blob = _read(saved)
    name, entry = next(iter(header["tensors"].items()))
    assert entry["dtype"] == "float32"
    data = bytearray(blob)
    data[entry["offset"] : entry["offset"] + 4] = np.float32(np.nan).tobytes()
    _rewrite(saved, blob=bytes(data), resign=True)
    with pytest.raises(ModelFileError, match="not all finite"):
        load(saved)
    # a tensor table that claims more than the payload holds
    fitted.save(saved)
    header, blob = _read(saved)
    header["tensors"][name]["shape"] = [10**9, 10**9]
    _rewrite(saved, header=header, resign=True)
    with pytest.raises(ModelFileError, match="does not fit the payload"):
        load(saved)
    # a tensor the model does not have
    fitted.save(saved)
    header, blob = _read(saved)
    header["tensors"]["modules/extra_net/w"] = dict(header["tensors"][name])
    _rewrite(saved, header=header, resign=True)
    with pytest.raises(ModelFileError, match="declared sizes"):
        load(saved)


def test_forged_category_counts_are_refused(tmp_path: Path) -> None:
    model = MODELS[0]().fit(make_patients(120, random_state=1))
    path = tmp_path / "m.tsyn"
    model.save(path)
    header, blob = _read(path)
    entry = header["tensors"]["extra/category_counts"]
    data = bytearray(blob)
    data[entry["offset"] : entry["offset"] + 8] = np.float64(-5).tobytes()
    _rewrite(path, blob=bytes(data), resign=True)
    with pytest.raises(ModelFileError, match="non-negative"):
        load(path)


# -- files written by tabsynth 0.1.0 (format 1) -------------------------------------------------
@pytest.mark.parametrize("name", ["ctgan_format1.tsyn", "tvae_format1.tsyn"])
def test_format1_files_still_load(name: str, tmp_path: Path) -> None:
    model = load(FIXTURES / name)
    assert type(model).__name__ == name.split("_")[0].upper()
    assert model.get_params()["random_state"] == 0 and model.n_rows_fit_ == 80
    out = model.sample(40, random_state=1)
    # (make_patients has changed since: compare with the model's own metadata, not a new table)
    assert list(out.columns) == list(model.metadata_.names) and len(out.columns) == 21
    for spec in model.metadata_:
        if not spec.nullable:
            assert out[spec.name].notna().all(), spec.name
    pd.testing.assert_frame_equal(out, load(FIXTURES / name).sample(40, random_state=1))
    # saving again writes the current format, which loads to the same samples
    model.save(tmp_path / "again.tsyn")
    assert _read(tmp_path / "again.tsyn")[0]["format_version"] == 2
    pd.testing.assert_frame_equal(load(tmp_path / "again.tsyn").sample(40, random_state=1), out)


def test_format1_header_edits_are_still_caught(tmp_path: Path) -> None:
    """Format 1 had no header checksum; the whitelist and consistency checks still hold."""
    path = tmp_path / "old.tsyn"
    path.write_bytes((FIXTURES / "ctgan_format1.tsyn").read_bytes())
    header, _ = _read(path)
    header["metadata"]["columns"][1]["kind"] = "id"
    _rewrite(path, header=header)
    with pytest.raises(ModelFileError, match="does not match the transformer|inconsistent"):
        load(path)
    header["metadata"] = _read(FIXTURES / "ctgan_format1.tsyn")[0]["metadata"]
    header["fitted"]["_build"] = None
    _rewrite(path, header=header)
    with pytest.raises(ModelFileError, match="fitted attributes"):
        load(path)


# -- bad paths ------------------------------------------------------------------------------------
def test_save_creates_missing_folders(fitted: BaseSynthesizer, tmp_path: Path) -> None:
    path = tmp_path / "missing" / "dir" / "m.tsyn"
    fitted.save(path)
    assert load(path).get_params() == fitted.get_params()


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_save_errors_name_the_users_path(
    fitted: BaseSynthesizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(ModelFileError, match=r"a_file/m\.tsyn.*cannot create the folder") as err:
        fitted.save(a_file / "m.tsyn")
    assert ".tmp" not in str(err.value)
    with pytest.raises(ModelFileError, match="is a folder"):
        fitted.save(tmp_path)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", refuse)
    target = tmp_path / "locked.tsyn"
    with pytest.raises(ModelFileError, match="Permission denied") as err:
        fitted.save(target)
    assert str(target) in str(err.value) and ".tmp" not in str(err.value)
    assert _no_temp_files(tmp_path) and not target.exists()


@pytest.mark.parametrize("bad", [12345, None, b"model.tsyn", ["m.tsyn"], ""])
def test_load_and_save_need_a_path(fitted: BaseSynthesizer, bad) -> None:
    with pytest.raises(ModelFileError, match=r"load\(\) expects the path of a model file"):
        tabsynth.load(bad)
    with pytest.raises(ModelFileError, match=r"save\(\) expects the path of a model file"):
        fitted.save(bad)


def test_load_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is a folder"):
        load(tmp_path)
