"""File helpers shared by every layer: outputs appear whole or not at all.

The one recipe for every file tabsynth writes (metadata JSON, reports, tables, benchmark results,
model files): write a fresh temporary file in the target's folder, flush it to disk (``fsync``),
then rename it over the target (``os.replace``, atomic on POSIX and Windows). An interrupted run
leaves the previous file, never a truncated one, and never a stray temporary file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "commit_temp", "temp_beside"]


def temp_beside(path: str | os.PathLike[str]) -> Path:
    """A new, empty temporary file in ``path``'s folder (created; parent folders too).

    ``O_EXCL`` never clobbers another file; mode 0o666 lets the umask decide, as for ``open()``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def commit_temp(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Flush the finished temporary file to disk and rename it over ``path``; returns ``path``."""
    with open(tmp, "ab") as fh:  # writable: Windows cannot fsync a read-only handle
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    tmp = temp_beside(path)
    try:
        yield tmp
        commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (missing parent folders are created)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
