"""One-file model format without pickle: a pure codec, header + arrays <-> file.

This module never sees a model. ``BaseSynthesizer.save`` hands it a JSON-able header and a
dict of numpy arrays; ``tabsynth.load`` (``models/base.py``) gets them back and decides, with
a per-class whitelist, what may be restored.

A file is a zip archive with exactly two members:

* ``model.json``: ``format``, ``format_version``, the caller's header (class, library version,
  hyper-parameters, metadata, transformer, fitted scalars, ...), the tensor table
  (name -> dtype, shape, offset, nbytes) and ``sha256``;
* ``tensors.bin``: the raw little-endian bytes of every array, back to back, stored
  uncompressed.

``sha256`` (format 2) is the digest of the canonical JSON of the header without it, a NUL byte,
and the tensor payload: editing either part makes the file fail to load. Format 1 files
(tabsynth 0.1.0) carried ``tensors_sha256`` over the payload only; they still load.

Reading parses JSON and reads arrays with ``np.frombuffer``: no code from the file is ever
executed (``torch.load``/pickle are never called), every size is checked against the bytes
actually present before anything is allocated, and a foreign, corrupted or modified file can
only fail with ``ModelFileError``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tabsynth import __version__, _files
from tabsynth.errors import ModelFileError

FORMAT_NAME = "tabsynth-model"
#: the version this tabsynth writes
FORMAT_VERSION = 2
#: the versions this tabsynth reads
READS_VERSIONS = (1, 2)
_JSON = "model.json"
_TENSORS = "tensors.bin"
#: the header may not decompress to more than this (bounds a zip bomb)
MAX_HEADER_BYTES = 256 * 2**20
#: keys the codec owns in the header (the caller may not set them)
_RESERVED = ("format", "format_version", "tensors", "sha256", "tensors_sha256")
_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def check_path(path: Any, what: str) -> Path:
    """``path`` as a ``Path``, or ``ModelFileError`` naming what was passed instead."""
    if isinstance(path, (str, os.PathLike)) and not isinstance(path, bytes):
        text = os.fspath(path)
        if isinstance(text, str) and text:
            return Path(text)
    raise ModelFileError(
        f"{what} expects the path of a model file (str or pathlib.Path), got "
        f"{type(path).__name__} {path!r}"[:300]
    )


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("ascii")


def _digest(header: dict[str, Any], blob: bytes) -> str:
    body = {k: v for k, v in header.items() if k != "sha256"}
    return hashlib.sha256(_canonical(body) + b"\0" + blob).hexdigest()


def _os_reason(exc: OSError) -> str:
    """The reason of an OSError without its file names (they may name the temporary file)."""
    return exc.strerror or type(exc).__name__


def write_model_file(path: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` (JSON-able) and ``arrays`` to ``path`` atomically; return the path.

    Missing parent folders are created. Any failure raises ``ModelFileError`` naming ``path``
    (never the temporary file) and leaves no temporary file behind.
    """
    path = check_path(path, "save()")
    clash = [k for k in _RESERVED if k in header]
    if clash:  # pragma: no cover - a programming error in the caller
        raise ValueError(f"header keys {clash} belong to the codec")
    table: dict[str, dict[str, Any]] = {}
    payload = io.BytesIO()
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make a scalar 1-d)
            arr = arr.copy(order="C")
        dtype = arr.dtype.name
        if dtype not in _DTYPES:
            raise ModelFileError(f"cannot save array {name!r} of dtype {dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        table[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "offset": payload.tell(),
            "nbytes": len(data),
        }
        payload.write(data)
    blob = payload.getvalue()
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **header, "tensors": table}
    try:
        full["sha256"] = _digest(full, blob)
        text = json.dumps(full, allow_nan=True)
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold
        raise ModelFileError(f"cannot save the model to {path}: {exc}") from exc

    if path.is_dir():
        raise ModelFileError(f"cannot save the model to {path}: it is a folder")
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(
            f"cannot save the model to {path}: cannot create the folder {directory} "
            f"({_os_reason(exc)})"
        ) from exc
    try:
        with _files.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(_JSON, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(_TENSORS, blob, compress_type=zipfile.ZIP_STORED)
    except OSError as exc:
        raise ModelFileError(f"cannot save the model to {path}: {_os_reason(exc)}") from exc
    return path


def _read_archive(path: Path) -> tuple[bytes, bytes]:
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if sorted(infos) != sorted([_JSON, _TENSORS]):
                raise ModelFileError(
                    f"{path}: not a tabsynth model file (archive members {sorted(infos)[:5]})"
                )
            if infos[_JSON].file_size > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path}: the model header is implausibly large")
            if infos[_TENSORS].compress_type != zipfile.ZIP_STORED:
                raise ModelFileError(f"{path}: the tensor payload must be stored uncompressed")
            raw_json = zf.read(_JSON)
            blob = zf.read(_TENSORS)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ModelFileError(f"{path}: not a tabsynth model file ({exc})") from exc
    return raw_json, blob


def _check_version(path: Path, header: dict[str, Any]) -> int:
    version = header.get("format_version")
    if type(version) is int and version in READS_VERSIONS:
        return version
    written = header.get("library_version")
    by = f"tabsynth {written}" if isinstance(written, str) else "an unknown tabsynth"
    newer = type(version) is int and version > FORMAT_VERSION
    advice = " (upgrade tabsynth to read it)" if newer else ""
    raise ModelFileError(
        f"{path}: written by {by} in model format version {version!r}{advice}; this tabsynth "
        f"{__version__} needs format version " + " or ".join(str(v) for v in READS_VERSIONS)
    )


def _read_arrays(path: Path, table: Any, blob: bytes) -> dict[str, np.ndarray]:
    if not isinstance(table, dict):
        raise ModelFileError(f"{path}: the tensor table is missing")
    out: dict[str, np.ndarray] = {}
    for name, entry in table.items():
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
            shape = tuple(entry["shape"])
            offset, nbytes = entry["offset"], entry["nbytes"]
            if not all(type(v) is int for v in (*shape, offset, nbytes)):
                raise TypeError("non-integer size")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: bad entry for tensor {name!r}") from exc
        count = math.prod(shape)  # exact (Python ints): no overflow before the size check
        if (
            any(d < 0 for d in shape)
            or offset < 0
            or nbytes != count * dtype.itemsize
            or offset + nbytes > len(blob)
        ):
            raise ModelFileError(f"{path}: tensor {name!r} does not fit the payload")
        arr = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape)
        out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return out


def read_model_file(path: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The caller's header and the arrays of a file written by ``write_model_file``.

    Checks the container, the format version and the checksum; the header's content is the
    caller's to validate. ``ModelFileError`` for anything else than a valid, unmodified file.
    """
    path = check_path(path, "load()")
    raw_json, blob = _read_archive(path)
    try:
        header = json.loads(raw_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the model header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a tabsynth model file (foreign header)")
    version = _check_version(path, header)
    if version == 1:
        ok = header.get("tensors_sha256") == hashlib.sha256(blob).hexdigest()
    else:
        ok = header.get("sha256") == _digest(header, blob)
    if not ok:
        raise ModelFileError(
            f"{path}: the model file does not match its checksum; the file was modified "
            "or corrupted"
        )
    arrays = _read_arrays(path, header.get("tensors"), blob)
    return {k: v for k, v in header.items() if k not in _RESERVED}, arrays


__all__ = ["FORMAT_VERSION", "read_model_file", "write_model_file"]
