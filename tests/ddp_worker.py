"""One process of the distributed fits of ``tests/test_distributed.py`` (started by torchrun).

``python -m torch.distributed.run --nproc_per_node=N tests/ddp_worker.py SPEC.json OUT_DIR``:
joins the gloo group once, fits every job of the spec with ``fit(..., distributed=True)`` on
the same table, and writes ``OUT_DIR/rank{R}.json`` with, per job, a SHA-256 of the model's
weights, buffers and extra state, the privacy report, the batch size and the history length.
Rank 0 also saves each model to ``OUT_DIR/{job}.tsyn``. A job's ``rows`` replaces the table
with a smaller one, its ``data`` with a Parquet file (an out-of-core fit). A job ``{"cli": [...]}`` runs the
command line instead (``tabsynth fit ... --distributed`` inside the same group) and records
its exit code and what it printed. Not collected by pytest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist


def table(n: int) -> pd.DataFrame:
    """The table of test_dp_models (a categorical, a continuous, an integer, a boolean)."""
    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame(
        {
            "a": a,
            "b": np.round(rng.normal(0.0, 1.0, n) + (a == "y"), 3),
            "c": rng.integers(0, 10, n),
            "flag": rng.random(n) < 0.4,
        }
    )


class EpochCounter:
    """A fit callback that counts the epochs this process was told about."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_epoch_end(self, model, row) -> None:
        self.epochs += 1


def model_hash(model) -> str:
    digest = hashlib.sha256()
    for name, module in sorted(model._modules().items()):
        for key, tensor in module.state_dict().items():
            digest.update(f"{name}/{key}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for key, arr in sorted(model._extra_state().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def main(spec_path: str, out_dir: str) -> None:
    import tabsynth
    import tabsynth.errors
    from tabsynth import Metadata

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_dir)
    dist.init_process_group("gloo")  # once for all jobs; fit uses it and leaves it open
    rank = dist.get_rank()
    df = table(int(spec["rows"]))
    results = {}
    for job in spec["jobs"]:
        if "cli" in job:  # the command line in this group: `tabsynth fit ... --distributed`
            from tabsynth.cli.main import main as cli

            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = cli(job["cli"])
            results[job["name"]] = {"code": code, "stdout": printed.getvalue()}
            continue
        model = getattr(tabsynth, job["model"])(**job["params"])
        meta = Metadata.from_dict(job["metadata"]) if job.get("metadata") else None
        t0 = time.perf_counter()
        try:
            data = job.get("data") or (table(job["rows"]) if "rows" in job else df)
            counter = EpochCounter()
            model.fit(data, meta, distributed=True, callbacks=[counter])
        except tabsynth.errors.TabsynthError as exc:  # the same error on every rank, no hang
            results[job["name"]] = {"error": type(exc).__name__, "message": str(exc)}
            continue
        results[job["name"]] = {
            "hash": model_hash(model),
            "report": getattr(model, "privacy_report_", None),
            "batch_size_": int(model.batch_size_),
            "epochs": len(model.history_),
            "callback_epochs": counter.epochs,
            "seconds": time.perf_counter() - t0,
        }
        if rank == 0:
            model.save(out / f"{job['name']}.tsyn")
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
