"""Single-file, pickle-free model persistence shared by every model."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

import tabsynth
from tabsynth.datasets import make_patients
from tabsynth.errors import ModelFileError, NotFittedError
from tabsynth.models import CTGAN, BaseSynthesizer, load

try:
    from tabsynth.models import TVAE
except ImportError:  # pragma: no cover - only while tvae.py is absent
    TVAE = None

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
    )
]
if TVAE is not None:
    MODELS.append(
        lambda: TVAE(
            epochs=1,
            batch_size=100,
            embedding_dim=16,
            compress_dims=(32,),
            decompress_dims=(32,),
            verbose=False,
            random_state=0,
        )
    )

MARKER_NAME = "pwned.txt"


class _Evil:
    """Unpickling this object would create a marker file (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle payload executed"))


@pytest.fixture(scope="module", params=MODELS, ids=["CTGAN", "TVAE"][: len(MODELS)])
def fitted(request: pytest.FixtureRequest) -> BaseSynthesizer:
    return request.param().fit(make_patients(250, random_state=2))


@pytest.fixture
def saved(fitted: BaseSynthesizer, tmp_path: Path) -> Path:
    path = tmp_path / "model.tabsynth"
    fitted.save(path)
    return path


def _rewrite(path: Path, header: dict | None = None, blob: bytes | None = None) -> None:
    """Rewrite one member of a saved archive (what an attacker with the file could do)."""
    with zipfile.ZipFile(path) as zf:
        old_header = json.loads(zf.read("model.json"))
        old_blob = zf.read("tensors.bin")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(header if header is not None else old_header))
        zf.writestr("tensors.bin", blob if blob is not None else old_blob)


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
    assert header["format"] == "tabsynth-model" and header["format_version"] == 1
    assert header["library_version"] == tabsynth.__version__
    assert {"params", "metadata", "transformer", "history", "timings", "tensors"} <= set(header)
    assert header["tensors_sha256"] == hashlib.sha256(blob).hexdigest()
    assert not blob.startswith(b"\x80")  # not a pickle stream


def test_load_onto_cpu_when_saved_for_cuda(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        header = json.loads(zf.read("model.json"))
    header["params"]["device"] = "cuda"
    _rewrite(saved, header=header)
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
    header["tensors_sha256"] = hashlib.sha256(payload).hexdigest()
    _rewrite(saved, header=header, blob=payload)
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
    bad_version = {**header, "format_version": 99}
    _rewrite(saved, header=bad_version)
    with pytest.raises(ModelFileError, match="version 99"):
        load(saved)
    _rewrite(saved, header={**header, "class": "os.system"})
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
    _rewrite(saved, header=header)
    with pytest.raises(ModelFileError, match="do not fit"):
        load(saved)


def test_save_before_fit(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        CTGAN().save(tmp_path / "x.tabsynth")
    assert not os.listdir(tmp_path)
