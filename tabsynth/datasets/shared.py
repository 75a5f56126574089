"""Registry of the real development tables described by ``shared/datasets/manifest.json``.

The tables live outside the package (licences differ; two are for development use only), so
nothing here is shipped: the folder is found next to the repository checkout or through the
``TABSYNTH_SHARED_DIR`` environment variable, and every function degrades gracefully when it is
absent (``shared_datasets_dir()`` returns None, ``list_shared()`` returns an empty list).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tabsynth.datasets.io import read_table
from tabsynth.errors import DataError

__all__ = [
    "ENV_VAR",
    "SharedDatasetInfo",
    "shared_datasets_dir",
    "list_shared",
    "shared_info",
    "load_shared",
]

ENV_VAR = "TABSYNTH_SHARED_DIR"
_MANIFEST = "manifest.json"
_REQUIRED = ("path", "target", "task", "column_kinds")


@dataclass(frozen=True)
class SharedDatasetInfo:
    """What the manifest says about one table (its target, task and the kind of every column)."""

    name: str
    path: Path
    target: str
    task: str
    domain: str
    rows: int | None
    cols: int | None
    column_kinds: dict[str, str] = field(default_factory=dict)
    leakage_columns: tuple[str, ...] = ()
    read_csv_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (for reports and the CLI)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "target": self.target,
            "task": self.task,
            "domain": self.domain,
            "rows": self.rows,
            "cols": self.cols,
            "column_kinds": dict(self.column_kinds),
            "leakage_columns": list(self.leakage_columns),
            "read_csv_kwargs": copy.deepcopy(self.read_csv_kwargs),
        }


def _candidates() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        return [root, root / "datasets"]  # accept the datasets folder or the shared/ folder above
    repo_root = Path(__file__).resolve().parents[2]
    return [repo_root.parent / "shared" / "datasets"]


def shared_datasets_dir() -> Path | None:
    """The folder holding ``manifest.json``: ``$TABSYNTH_SHARED_DIR`` if set, else ``../shared``.

    Returns None when no manifest is found, so callers (and tests) can skip instead of failing.
    """
    for candidate in _candidates():
        if (candidate / _MANIFEST).is_file():
            return candidate
    return None


def _root_or_raise() -> Path:
    root = shared_datasets_dir()
    if root is None:
        looked = ", ".join(str(p) for p in _candidates())
        raise DataError(
            f"the shared datasets folder was not found (looked in {looked}); "
            f"set {ENV_VAR} to the folder that holds {_MANIFEST}"
        )
    return root


def _read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    try:
        manifest = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {root / _MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{root / _MANIFEST} must hold a JSON object of datasets")
    return manifest


def list_shared() -> list[str]:
    """Names of the shared tables in manifest order; empty when the folder is absent."""
    root = shared_datasets_dir()
    return [] if root is None else list(_read_manifest(root))


def _info(name: str, entry: Any, root: Path) -> SharedDatasetInfo:
    if not isinstance(entry, dict):
        raise DataError(f"manifest entry {name!r} must be a JSON object")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise DataError(f"manifest entry {name!r} lacks {', '.join(missing)}")
    path = (root / entry["path"]).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"manifest entry {name!r} points outside {root}: {entry['path']!r}")
    return SharedDatasetInfo(
        name=name,
        path=path,
        target=entry["target"],
        task=entry["task"],
        domain=entry.get("domain", ""),
        rows=entry.get("rows"),
        cols=entry.get("cols"),
        column_kinds=dict(entry["column_kinds"]),
        leakage_columns=tuple(entry.get("leakage_columns", ())),
        read_csv_kwargs=copy.deepcopy(entry.get("read_csv_kwargs", {})),
    )


def shared_info(name: str) -> SharedDatasetInfo:
    """The manifest facts for one table, without loading it."""
    root = _root_or_raise()
    manifest = _read_manifest(root)
    if name not in manifest:
        raise DataError(f"unknown shared dataset {name!r}; available: {', '.join(manifest)}")
    return _info(name, manifest[name], root)


def load_shared(name: str, nrows: int | None = None) -> tuple[pd.DataFrame, SharedDatasetInfo]:
    """Load a shared table with the manifest's ``read_csv`` arguments (missing-value markers,
    dtypes, date parsing) and check it against the manifest's shape and column list.

    ``nrows`` reads only the first rows (quick tests); the row-count check is then skipped.
    """
    info = shared_info(name)
    kwargs = copy.deepcopy(info.read_csv_kwargs)
    if nrows is not None:
        kwargs["nrows"] = nrows
    df = read_table(info.path, **kwargs)
    if set(df.columns) != set(info.column_kinds):
        extra = [c for c in df.columns if c not in info.column_kinds]
        lacking = [c for c in info.column_kinds if c not in df.columns]
        raise DataError(
            f"shared dataset {name!r} does not match its manifest: "
            f"unexpected columns {extra}, missing columns {lacking}"
        )
    if nrows is None and info.rows is not None and len(df) != info.rows:
        raise DataError(
            f"shared dataset {name!r} has {len(df)} rows, the manifest says {info.rows}"
        )
    return df, info
