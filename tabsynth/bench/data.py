"""Benchmark tables: which datasets, how they are loaded, split, capped and described.

Every contender of a cell gets the very same ``(train, test)`` frames and metadata from
:func:`prepare_data`: the shared tables with their manifest target, task and column kinds
(leakage columns dropped), the demo tables, or a user's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabsynth.errors import DataError

__all__ = [
    "DatasetSpec",
    "build_metadata",
    "guess_task",
    "load_dataset",
    "prepare_data",
    "public_metadata",
    "resolve_datasets",
]


@dataclass
class DatasetSpec:
    """Where a benchmark table comes from; JSON-able so a cell subprocess can rebuild it."""

    name: str
    source: str  # "shared" | "demo" | "file"
    target: str
    task: str | None = None
    path: str | None = None
    rows: int | None = None  # demo tables only
    kinds: dict[str, str] = field(default_factory=dict)
    leakage: list[str] = field(default_factory=list)


def resolve_datasets(
    names: Sequence[str] | None,
    data: Sequence[str] = (),
    targets: Sequence[str] = (),
    tasks: Sequence[str] = (),
    demo_rows: int = 10_000,
) -> list[DatasetSpec]:
    """Dataset names (``all``, ``shared``, ``demo``, a shared table or a demo table) + files."""
    from tabsynth.datasets import DEMO_TARGETS, list_shared, shared_info

    shared = list_shared()
    chosen: list[str] = []
    wanted = list(names) if names else (["all"] if not data else [])
    groups = {"all": shared + list(DEMO_TARGETS), "shared": shared, "demo": list(DEMO_TARGETS)}
    for name in wanted:
        for item in groups.get(name, [name]):
            if item not in chosen:
                chosen.append(item)
    specs: list[DatasetSpec] = []
    for name in chosen:
        if name in DEMO_TARGETS:
            specs.append(DatasetSpec(name, "demo", DEMO_TARGETS[name], "binary", rows=demo_rows))
        elif name in shared:
            info = shared_info(name)
            specs.append(
                DatasetSpec(
                    name,
                    "shared",
                    info.target,
                    task=info.task,
                    path=str(info.path),
                    kinds=dict(info.column_kinds),
                    leakage=list(info.leakage_columns),
                )
            )
        else:
            known = ", ".join(["all", "shared", "demo", *shared, *DEMO_TARGETS])
            hint = "" if shared else " (the shared datasets folder was not found)"
            raise DataError(f"unknown dataset {name!r}; choose from {known}{hint}")
    if len(targets) != len(data):
        raise DataError("give one --target per --data file (in the same order)")
    if tasks and len(tasks) != len(data):
        raise DataError("give one --task per --data file, or none")
    for i, path in enumerate(data):
        p = Path(path)
        if not p.is_file():
            raise DataError(f"--data file {path!r} does not exist")
        task = tasks[i] if tasks else None
        specs.append(DatasetSpec(p.name.split(".")[0], "file", targets[i], task, str(p.resolve())))
    if not specs:
        raise DataError("no dataset to run; name some with --datasets or give --data")
    return specs


def load_dataset(spec: DatasetSpec) -> tuple[Any, list[str]]:
    """The full table of a dataset spec, leakage columns dropped; ``(frame, notes)``."""
    notes: list[str] = []
    if spec.source == "shared":
        from tabsynth.datasets import load_shared

        df, _ = load_shared(spec.name)
    elif spec.source == "demo":
        from tabsynth.datasets import load_demo

        df = load_demo(spec.name, n_rows=spec.rows or 10_000, random_state=0)
    else:
        from tabsynth.datasets import read_table

        df = read_table(spec.path)
    if spec.target not in df.columns:
        raise DataError(f"dataset {spec.name!r}: target column {spec.target!r} is not in the table")
    drop = [c for c in spec.leakage if c in df.columns]
    if drop:
        df = df.drop(columns=drop)
        notes.append(f"dropped leakage columns {drop}")
    return df, notes


def guess_task(df: Any, target: str, kinds: dict[str, str] | None = None) -> str:
    """The task ``tabsynth.evaluate`` would infer for ``target`` (its own rule, not a copy).

    ``kinds`` declares column kinds (e.g. the manifest's); the target's is inferred otherwise.
    """
    from tabsynth.metrics._data import encode, resolve_kinds
    from tabsynth.metrics.utility import infer_task

    notes: list[str] = []
    declared = {target: kinds[target]} if kinds and target in kinds else None
    column = df[[target]]
    col_kinds, formats = resolve_kinds(column, [target], declared, notes)
    if col_kinds[target] == "id":
        raise DataError(f"target column {target!r} looks like an id (every value distinct)")
    return infer_task(encode({"real": column}, col_kinds, formats, notes), target)


def prepare_data(
    spec: DatasetSpec,
    max_rows: int | None = None,
    max_test_rows: int | None = None,
    split_seed: int = 0,
) -> tuple[Any, Any, str, list[str]]:
    """``(train, test, task, notes)`` for one dataset: split, capped, unusable columns dropped."""
    from tabsynth.datasets import split_table, subsample_rows

    df, notes = load_dataset(spec)
    task = spec.task or guess_task(df, spec.target, spec.kinds)
    train, test, note = split_table(df, spec.target, task, seed=split_seed)
    if note:
        notes.append(note)
    n_train = len(train)
    train = subsample_rows(train, max_rows, spec.target, task, split_seed)
    test = subsample_rows(test, max_test_rows, spec.target, task, split_seed)
    if len(train) < n_train:
        notes.append(f"training rows subsampled {n_train} -> {len(train)}")
    empty = [c for c in train.columns if train[c].isna().all()]
    if empty:
        train, test = train.drop(columns=empty), test.drop(columns=empty)
        notes.append(f"dropped columns with no value in the training rows: {empty}")
    return train, test, task, notes


def build_metadata(train: Any, kinds: dict[str, str], notes: list[str]) -> Any:
    """Inferred metadata with the manifest's column kinds declared where they differ."""
    from tabsynth.errors import TabsynthError
    from tabsynth.metadata import Metadata

    meta = Metadata.infer(train)
    for name, kind in kinds.items():
        if name in meta and meta[name].kind != kind:
            if kind == "boolean" and meta[name].kind == "categorical":
                continue  # two text labels (e.g. "yes"/"no"): a 2-level categorical is the same
            try:
                meta.update_column(name, kind=kind)
            except TabsynthError as exc:
                notes.append(f"kept inferred kind of {name!r} ({exc})")
    return meta


def public_metadata(train: Any, test: Any, kinds: dict[str, str], category_lists: bool) -> Any:
    """The schema of a DP cell, declared public: it stands for a published codebook.

    Kinds, domains and bounds are read off the full table (train + test) and declared public,
    so no epsilon is spent on them; with ``category_lists=False`` the category lists are left
    undeclared, for the model to derive with DP from the training rows (``dp_domains``).
    """
    import pandas as pd

    meta = build_metadata(pd.concat([train, test], ignore_index=True), {}, [])
    for name, kind in kinds.items():
        if name in meta and meta[name].kind != kind:
            meta.update_column(name, kind=kind)
    meta.declare_public(category_lists=category_lists)
    return meta
