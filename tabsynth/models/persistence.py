"""One-file model format without pickle.

A saved model is a zip archive with exactly two members:

* ``model.json``: format name/version, library version, class name, hyper-parameters,
  ``metadata.to_dict()``, ``transformer.to_dict()``, history, timings, fitted scalars, the
  tensor table (name → dtype, shape, offset, nbytes) and the sha256 of the tensor payload;
* ``tensors.bin``: the raw little-endian bytes of every tensor, back to back.

Loading parses JSON and reads tensors with ``np.frombuffer``: no code from the file is ever
executed (``torch.load``/pickle are never called), so a tampered or malicious file can only
fail with ``ModelFileError``. Tensors are materialised on the CPU and moved to the requested
device, so a CUDA-trained model loads on a CPU-only machine.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tabsynth.errors import ModelFileError

FORMAT_NAME = "tabsynth-model"
FORMAT_VERSION = 1
_JSON = "model.json"
_TENSORS = "tensors.bin"
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
#: fitted attributes every model has (beyond the subclass's ``_json_attrs``)
_COMMON_FITTED = ("n_rows_fit_", "batch_size_", "_sample_seed_")


def _jsonable(value: Any) -> Any:
    """Hyper-parameters/fitted scalars as JSON (tuples become lists; numpy scalars unwrap)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _tensor_items(model: Any) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for mod_name, module in model._modules().items():
        for key, tensor in module.state_dict().items():
            t = tensor.detach().to("cpu")
            if t.dtype == torch.bfloat16:
                t = t.float()
            arrays[f"modules/{mod_name}/{key}"] = t.numpy()
    for key, arr in model._extra_state().items():
        arrays[f"extra/{key}"] = np.asarray(arr)
    return arrays


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    import tabsynth

    path = Path(path)
    arrays = _tensor_items(model)
    table: dict[str, dict[str, Any]] = {}
    payload = io.BytesIO()
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        dtype = arr.dtype.name
        if dtype not in _DTYPES:
            raise ModelFileError(f"cannot save tensor {name!r} of dtype {dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        table[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "offset": payload.tell(),
            "nbytes": len(data),
        }
        payload.write(data)
    blob = payload.getvalue()
    fitted = {name: _jsonable(getattr(model, name)) for name in _COMMON_FITTED}
    fitted.update({name: _jsonable(getattr(model, name)) for name in model._json_attrs})
    fitted["privacy_report_"] = _jsonable(getattr(model, "privacy_report_", None))
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": tabsynth.__version__,
        "class": type(model).__name__,
        "params": _jsonable(model.get_params()),
        "metadata": model.metadata_.to_dict(),
        "transformer": model.transformer_.to_dict(),
        "history": json.loads(model.history_.to_json(orient="records")),
        "history_columns": [str(c) for c in model.history_.columns],
        "timings": _jsonable(model.timings_),
        "fitted": fitted,
        "tensors": table,
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }
    text = json.dumps(header, allow_nan=True)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as zf:
                zf.writestr(_JSON, text, compress_type=zipfile.ZIP_DEFLATED)
                zf.writestr(_TENSORS, blob, compress_type=zipfile.ZIP_STORED)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_archive(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(zf.namelist())
            if names != sorted([_JSON, _TENSORS]):
                raise ModelFileError(
                    f"{path}: not a tabsynth model file (archive members {names[:5]})"
                )
            raw_json = zf.read(_JSON)
            blob = zf.read(_TENSORS)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: not a tabsynth model file ({exc})") from exc
    try:
        header = json.loads(raw_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a tabsynth model file (foreign header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {header.get('format_version')!r} is not supported "
            f"by this tabsynth (reads version {FORMAT_VERSION})"
        )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != header.get("tensors_sha256"):
        raise ModelFileError(
            f"{path}: the tensor payload does not match its checksum; the file was modified "
            "or corrupted"
        )
    return header, blob


def _read_tensors(path: Path, header: dict[str, Any], blob: bytes) -> dict[str, np.ndarray]:
    table = header.get("tensors")
    if not isinstance(table, dict):
        raise ModelFileError(f"{path}: the tensor table is missing")
    out: dict[str, np.ndarray] = {}
    for name, entry in table.items():
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
            shape = tuple(int(d) for d in entry["shape"])
            offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: bad entry for tensor {name!r}") from exc
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
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


def load(path: str | os.PathLike, device: str | None = None) -> Any:
    """Load a model written by ``model.save(path)``; ``device`` overrides the saved one.

    Raises ``ModelFileError`` for a file that is not a tabsynth model, comes from an
    unsupported format version, or whose content was modified.
    """
    from tabsynth.metadata import Metadata
    from tabsynth.models import _nn
    from tabsynth.models.base import MODEL_REGISTRY
    from tabsynth.transform import TableTransformer

    path = Path(path)
    header, blob = _read_archive(path)
    cls = MODEL_REGISTRY.get(header.get("class"))
    if cls is None:
        raise ModelFileError(f"{path}: unknown model class {header.get('class')!r}")
    arrays = _read_tensors(path, header, blob)
    try:
        params = dict(header["params"])
        defaults = {p: v.default for p, v in inspect.signature(cls.__init__).parameters.items()}
        for key, value in params.items():  # JSON lists back to tuples where the default is one
            if isinstance(value, list) and isinstance(defaults.get(key), tuple):
                params[key] = tuple(value)
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model.metadata_ = Metadata.from_dict(header["metadata"])
        model.transformer_ = TableTransformer.from_dict(header["transformer"])
        for name, value in header["fitted"].items():
            setattr(model, name, value)
        model.history_ = pd.DataFrame(header["history"], columns=header.get("history_columns"))
        model.timings_ = dict(header["timings"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # incl. MetadataError/DataError
        raise ModelFileError(f"{path}: the model header is inconsistent ({exc!r})") from exc

    model.device_ = _nn.resolve_device(model.device)
    model._init_generator = _nn.make_generator(0, "cpu")  # weights are overwritten below
    model._sample_generator = None
    model._build()
    for mod_name, module in model._modules().items():
        prefix = f"modules/{mod_name}/"
        state = {
            k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)
        }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(
                f"{path}: the saved weights of {mod_name!r} do not fit the model ({exc})"
            ) from exc
        module.to(model.device_)
        module.eval()
    extra = {k[len("extra/") :]: v for k, v in arrays.items() if k.startswith("extra/")}
    try:
        model._set_extra_state(extra)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: saved model state is incomplete ({exc!r})") from exc
    return model
