"""Distributed training (#15 item 2): the same fit on Adult with 1 and with N CPU processes.

For each model and process count, ``torchrun --nproc_per_node=P`` runs this file as a worker:
every process calls ``fit(train, metadata, distributed=True)`` on the shared Adult split
(``tabsynth.bench.prepare_data``, the split of every other benchmark) with the same epochs
and batch size, and rank 0 saves the model and its per-epoch seconds. The parent then samples
as many rows as the training table from each saved model and scores them with
``tabsynth.evaluate`` (column shapes, TSTR ROC AUC on the holdout). The torch threads are split
between the processes (``--cores`` in all), so 1 and P processes use the same cores. With
``--allreduce`` it also times the gradient all-reduce of a CTGAN critic on 2 processes: one
flat bucket (what tabsynth does) against one collective per tensor.

    python benchmarks/distributed.py --models CTGAN TVAE --epochs 20 --procs 1 2

Skips (exit 0, with the reason) when the shared Adult table is not there.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spec():
    from tabsynth.bench.data import resolve_datasets

    return resolve_datasets(["adult"])[0]


def _data():
    from tabsynth.bench.data import build_metadata, prepare_data

    spec = _spec()
    train, test, task, notes = prepare_data(spec)
    return train, test, task, build_metadata(train, spec.kinds, notes), spec.target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(procs: int, threads: int, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
           f"--master_port={_free_port()}", __file__, *args]  # fmt: skip
    subprocess.run(cmd, check=True, env=env)


# ---------------------------------------------------------------------- workers (torchrun)
def fit_worker(config: dict) -> None:
    import torch

    import tabsynth

    torch.set_num_threads(int(config["threads"]))
    train, _, _, meta, _ = _data()
    model = getattr(tabsynth, config["model"])(
        epochs=config["epochs"], batch_size=config["batch_size"], random_state=0, verbose=False
    )
    t0 = time.perf_counter()
    model.fit(train, meta, distributed=True)
    seconds = time.perf_counter() - t0
    if int(os.environ["RANK"]) == 0:
        model.save(config["model_path"])
        info = {"fit_s": seconds, "epoch_s": model.history_["seconds"].tolist()}
        Path(config["info_path"]).write_text(json.dumps(info))


def allreduce_worker(config: dict) -> None:
    """Median seconds of one gradient all-reduce of a default CTGAN critic: one flat bucket
    vs one collective per tensor (Opacus' ``reduce_gradients``)."""
    import torch
    import torch.distributed as dist

    import tabsynth
    from tabsynth import _distributed

    torch.set_num_threads(1)
    train, _, _, meta, _ = _data()
    model = tabsynth.CTGAN(epochs=1, random_state=0, verbose=False)
    model.fit(train.head(1000), meta)  # the network sizes of Adult's layout
    grads = [torch.randn_like(p) for p in model._modules()["discriminator"].parameters()]
    dist.init_process_group("gloo")
    out: dict[str, float] = {"tensors": len(grads), "values": sum(g.numel() for g in grads)}
    with _distributed.session(torch.device("cpu")):
        for name, reduce in (
            ("bucket", lambda: _distributed.all_reduce_(grads, average=True)),
            ("per_tensor", lambda: [dist.all_reduce(g) for g in grads]),
        ):
            times = []
            for _ in range(int(config["reps"])):
                dist.barrier()
                t0 = time.perf_counter()
                reduce()
                times.append(time.perf_counter() - t0)
            out[f"{name}_ms"] = 1000 * statistics.median(times)
    if dist.get_rank() == 0:
        Path(config["info_path"]).write_text(json.dumps(out))
    dist.destroy_process_group()


# ---------------------------------------------------------------------- parent
def score(path: Path, train, test, target: str) -> dict:
    import tabsynth
    from tabsynth.bench.cell import record_report

    model = tabsynth.load(path)
    synthetic = model.sample(len(train), random_state=0)
    report = tabsynth.evaluate(
        train, synthetic, holdout=test, target=target, random_state=0,
        metrics=("fidelity", "utility"),
    )  # fmt: skip
    row: dict = {}
    record_report(report, "classification", row)
    return {"column_shapes": row["column_shapes"], "tstr_roc_auc": row["utility_synthetic"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["CTGAN", "TVAE"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--cores", type=int, default=2, help="torch threads in all, split evenly")
    p.add_argument("--allreduce", action="store_true", help="also time the all-reduce")
    p.add_argument("--out", type=Path, help="write the rows as JSON there")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        config = json.loads(args.worker.read_text())
        (allreduce_worker if config.get("allreduce") else fit_worker)(config)
        return

    from tabsynth.errors import DataError

    try:
        train, test, _, _, target = _data()
    except (DataError, FileNotFoundError, IndexError) as exc:
        print(f"skipped: the shared Adult table is not available ({exc})")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            for procs in args.procs:
                threads = max(1, args.cores // procs)
                config = {
                    "model": name, "epochs": args.epochs, "batch_size": args.batch_size,
                    "threads": threads, "model_path": str(folder / f"{name}-{procs}.tsyn"),
                    "info_path": str(folder / f"{name}-{procs}.json"),
                }  # fmt: skip
                (folder / "config.json").write_text(json.dumps(config))
                _torchrun(procs, threads, "--worker", str(folder / "config.json"))
                info = json.loads(Path(config["info_path"]).read_text())
                row = {
                    "model": name, "processes": procs, "threads_each": threads,
                    "epochs": args.epochs, "batch_size": args.batch_size,
                    "median_epoch_s": statistics.median(info["epoch_s"]),
                    "fit_s": info["fit_s"],
                    **score(Path(config["model_path"]), train, test, target),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
        if args.allreduce:
            config = {"allreduce": True, "reps": 200, "info_path": str(folder / "ar.json")}
            (folder / "config.json").write_text(json.dumps(config))
            _torchrun(2, 1, "--worker", str(folder / "config.json"))
            allreduce = json.loads((folder / "ar.json").read_text())
            print(json.dumps({"allreduce": allreduce}))
            rows.append({"allreduce": allreduce})
    print("\n| model | processes × threads | epochs | s/epoch (median) | whole fit s | shapes | "
          "TSTR ROC AUC |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        if "model" in r:
            print(
                f"| {r['model']} | {r['processes']} × {r['threads_each']} | {r['epochs']} | "
                f"{r['median_epoch_s']:.2f} | {r['fit_s']:.1f} | {r['column_shapes']:.3f} | "
                f"{r['tstr_roc_auc']:.3f} |"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
