"""Distributed fits (#15 item 2): torchrun starts 2 CPU processes on the gloo backend.

One torchrun launch (``tests/ddp_worker.py``) fits ARGN, CTGAN and TVAE without DP and with
DP on a 240-row table, 2 epochs each, and every rank writes a hash of its weights, buffers and
extra state: the ranks must end with identical models, the DP ledger must equal the one a
one-process fit of the same plan (epsilon, delta, q, steps) writes, and the models rank 0
saved must load in this process and sample; the same group runs the command line
(``tabsynth fit ... --distributed``; the launch through ``torchrun -m tabsynth`` itself is
a slow test). The rest runs in this process: the row shards, a one-process
``distributed=True`` fit bit-identical to a plain one, and the errors.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tabsynth
from tabsynth import Metadata, _distributed
from tabsynth.cli.main import main
from tabsynth.datasets import write_table
from tabsynth.errors import DistributedError, HyperParameterError, PrivacyError

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import model_hash, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N, BATCH, EPOCHS = 240, 80, 2
SMALL = {
    "ARGN": dict(embedding_dim=4, hidden=16),
    "CTGAN": dict(embedding_dim=16, generator_dim=(32,), discriminator_dim=(32,), pac=1),
    "TVAE": dict(embedding_dim=8, compress_dims=(32,), decompress_dims=(32,)),
}
MODELS = sorted(SMALL)
DP_MODELS = ["CTGAN", "TVAE"]  # also compared with a one-process fit (ARGN's ledger: same code)


def params(name: str, **extra) -> dict:
    return dict(SMALL[name], batch_size=BATCH, epochs=EPOCHS, verbose=False, random_state=0) | extra


def public_metadata(n_rows: int | None = N) -> Metadata:
    """A declared schema (codebook domains and bounds, not the observed ones)."""
    meta = Metadata.from_dict(
        {
            "columns": [
                {"name": "a", "kind": "categorical", "categories": ["x", "y", "z", "w"]},
                {"name": "b", "kind": "continuous", "lower": -5.0, "upper": 5.0},
                {"name": "c", "kind": "integer", "lower": 0, "upper": 50},
                {"name": "flag", "kind": "boolean"},
            ]
        }
    ).declare_public()
    meta.n_rows = n_rows
    return meta


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    for key in _distributed.ENV_VARS:
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
         f"--master_port={free_port()}", *args],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


JOBS = [{"name": m, "model": m, "params": params(m)} for m in MODELS] + [
    {
        "name": f"{m}-dp",
        "model": m,
        "params": params(m, epsilon=1.0),
        "metadata": public_metadata().to_dict(),
    }
    for m in MODELS
]


#: the TVAE DP job on the same table streamed from Parquet (out-of-core, a compact store)
PARQUET = {**JOBS[-1], "name": "TVAE-dp-parquet"}  # "data": the Parquet file (fixture)
assert JOBS[-1]["name"] == "TVAE-dp"


#: refused on rank 0 after the noisy row count (delta is not below 1/n for n ~ 240)
REFUSED = {
    "name": "refused",
    "model": "TVAE",
    "params": params("TVAE", epsilon=1.0, delta=0.009),
    "metadata": public_metadata(n_rows=None).to_dict(),
}


#: one row for two processes: rank 1's shard is empty (the row count is private under DP)
ONE_ROW = {
    "name": "TVAE-dp-one-row",
    "model": "TVAE",
    "rows": 1,
    "params": params("TVAE", epsilon=1.0, epochs=1),
    "metadata": public_metadata(n_rows=1).to_dict(),
}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    """Both ranks' results of one 2-process launch, and the folder of rank 0's model files."""
    out = tmp_path_factory.mktemp("ddp")
    write_table(table(N), out / "train.csv")
    cli = {
        "name": "cli",
        "cli": ["fit", str(out / "train.csv"), "--model", "tvae", "--epochs", "1",
                "--batch-size", "60", "--seed", "0", "--distributed", "-o", str(out / "cli.tsyn")],
    }  # fmt: skip
    write_table(table(N), out / "train.parquet")
    parquet = {"name": "TVAE-parquet", "model": "TVAE", "params": params("TVAE")}
    parquet["data"] = str(out / "train.parquet")  # out of core: each rank keeps its shard
    dp_parquet = {**PARQUET, "data": str(out / "train.parquet")}  # DP out of core
    auto = {"name": "TVAE-auto", "model": "TVAE", "params": params("TVAE", epochs=None)}
    auto["params"] |= {"max_steps": 30, "patience": 1}  # early stopping on 2 processes
    jobs = [*JOBS, REFUSED, ONE_ROW, parquet, dp_parquet, auto, cli]
    (out / "spec.json").write_text(json.dumps({"rows": N, "jobs": jobs}))
    torchrun(str(REPO / "tests" / "ddp_worker.py"), str(out / "spec.json"), str(out), cwd=out)
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    return rank0, rank1, out


@pytest.mark.parametrize("job", [j["name"] for j in [*JOBS, PARQUET]])
def test_both_processes_end_with_the_same_model(ranks, job: str) -> None:
    rank0, rank1, _ = ranks
    assert rank0[job]["hash"] == rank1[job]["hash"]
    assert rank0[job]["report"] == rank1[job]["report"]  # rank 0's ledger, sent to rank 1
    assert rank0[job]["epochs"] == rank1[job]["epochs"] == EPOCHS
    assert rank0[job]["batch_size_"] == BATCH  # rows per step, both processes together


def test_early_stopping_decides_alike_on_every_process(ranks) -> None:
    """epochs=None: the validation loss is averaged over the processes before each decision,
    so both stop after the same epoch with the same (best) weights."""
    rank0, rank1, _ = ranks
    assert rank0["TVAE-auto"]["hash"] == rank1["TVAE-auto"]["hash"]
    assert rank0["TVAE-auto"]["epochs"] == rank1["TVAE-auto"]["epochs"] > 1


def test_rank0_alone_calls_the_callbacks(ranks) -> None:
    rank0, rank1, _ = ranks
    for job in ("CTGAN", "TVAE-dp"):
        assert rank0[job]["callback_epochs"] == EPOCHS and rank1[job]["callback_epochs"] == 0


def test_an_out_of_core_fit_runs_distributed(ranks) -> None:
    rank0, rank1, out = ranks
    assert rank0["TVAE-parquet"]["hash"] == rank1["TVAE-parquet"]["hash"]
    assert rank0["TVAE-parquet"]["epochs"] == EPOCHS
    assert len(tabsynth.load(out / "TVAE-parquet.tsyn").sample(10, random_state=0)) == 10


def test_a_process_with_no_row_takes_every_dp_step_with_empty_batches(ranks) -> None:
    rank0, rank1, _ = ranks
    job = ONE_ROW["name"]
    assert rank0[job]["hash"] == rank1[job]["hash"]
    (dpsgd,) = [m for m in rank0[job]["report"]["mechanisms"] if m["kind"] == "dpsgd"]
    assert dpsgd["sample_rate"] == 1.0 and dpsgd["steps"] == 1


def test_an_error_on_rank0_is_raised_on_every_rank(ranks) -> None:
    """A refusal made by rank 0 (the only process that releases DP statistics) reaches the
    others as the same error, instead of leaving them waiting for its results."""
    rank0, rank1, _ = ranks
    assert rank0["refused"]["error"] == rank1["refused"]["error"] == "PrivacyError"
    assert "not below 1/n" in rank0["refused"]["message"]
    assert rank1["refused"]["message"] == "(raised on rank 0) " + rank0["refused"]["message"]


@pytest.mark.parametrize("name", DP_MODELS)
def test_dp_ledger_equals_the_one_process_ledger(ranks, name: str) -> None:
    """Same (epsilon, delta, q, steps): the same mechanisms with the same noise, steps and
    cost; the two-process fit took every planned DP-SGD step (counted on rank 0)."""
    report = ranks[0][f"{name}-dp"]["report"]
    one = getattr(tabsynth, name)(**params(name, epsilon=1.0))
    one.fit(table(N), public_metadata())
    alone = one.privacy_report()
    keys = ("name", "kind", "noise_multiplier", "sample_rate", "steps", "epsilon_alone")
    assert [{k: m[k] for k in keys} for m in report["mechanisms"]] == [
        {k: m[k] for k in keys} for m in alone["mechanisms"]
    ]
    for key in ("epsilon", "delta", "rdp_epsilon", "noise_multiplier", "n_estimate"):
        assert report[key] == alone[key], key
    (dpsgd,) = [m for m in report["mechanisms"] if m["kind"] == "dpsgd"]
    assert dpsgd["steps"] == EPOCHS * (N // BATCH) * one._critic_steps()


def test_an_out_of_core_dp_fit_has_the_in_memory_ledger(ranks) -> None:
    """DP + distributed + Parquet: rank 0 streams the releases, each process trains on its
    shard of the compact store; the ledger is the one of the same 2-process fit in memory."""
    rank0, _, _ = ranks
    streamed, in_memory = rank0["TVAE-dp-parquet"]["report"], rank0["TVAE-dp"]["report"]
    keys = ("name", "kind", "noise_multiplier", "sample_rate", "steps", "epsilon_alone")
    assert [{k: m[k] for k in keys} for m in streamed["mechanisms"]] == [
        {k: m[k] for k in keys} for m in in_memory["mechanisms"]
    ]
    for key in ("epsilon", "delta", "rdp_epsilon", "noise_multiplier", "n_estimate"):
        assert streamed[key] == in_memory[key], key


@pytest.mark.parametrize("job", [j["name"] for j in [*JOBS, PARQUET]])
def test_the_model_rank0_saved_loads_in_one_process_and_samples(ranks, job: str) -> None:
    rank0, _, out = ranks
    model = tabsynth.load(out / f"{job}.tsyn")
    assert model_hash(model) == rank0[job]["hash"]  # the trained weights, nothing else
    rows = model.sample(50, random_state=0)
    assert list(rows.columns) == ["a", "b", "c", "flag"] and len(rows) == 50
    assert rows.equals(tabsynth.load(out / f"{job}.tsyn").sample(50, random_state=0))


def test_the_command_line_fits_on_both_ranks_and_rank0_writes(ranks) -> None:
    rank0, rank1, out = ranks
    assert rank0["cli"]["code"] == rank1["cli"]["code"] == 0
    assert "model written to" in rank0["cli"]["stdout"] and rank1["cli"]["stdout"] == ""
    model = tabsynth.load(out / "cli.tsyn")
    assert model.batch_size_ == 60 and len(model.history_) == 1
    assert len(model.sample(20, random_state=0)) == 20


@pytest.mark.slow
def test_torchrun_runs_the_module(tmp_path: Path) -> None:
    """The documented launch, `torchrun --nproc_per_node=2 -m tabsynth fit ... --distributed`
    (slow: two more interpreters start; the default suite runs the same command line inside
    the worker's group above)."""
    write_table(table(N), tmp_path / "train.csv")
    done = torchrun(
        "-m", "tabsynth", "fit", "train.csv", "--model", "tvae", "--epochs", "1",
        "--batch-size", "60", "--seed", "0", "--distributed", "-o", "model.tsyn",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.count("model written to") == 1  # rank 0 alone writes and prints
    model = tabsynth.load(tmp_path / "model.tsyn")
    assert model.batch_size_ == 60 and len(model.history_) == 1
    assert len(model.sample(20, random_state=0)) == 20


# ---------------------------------------------------------------------- in this process
@pytest.fixture
def one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's environment for a group of one process."""
    env = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    for key, value in (env | {"MASTER_PORT": str(free_port())}).items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", MODELS)
def test_one_process_distributed_fit_is_the_plain_fit(one_process, name: str) -> None:
    """With one process every collective is a no-op: bit-identical weights and samples."""
    df = table(N)
    plain = getattr(tabsynth, name)(**params(name)).fit(df)
    dist = getattr(tabsynth, name)(**params(name)).fit(df, distributed=True)
    assert model_hash(dist) == model_hash(plain)
    assert dist.sample(30, random_state=1).equals(plain.sample(30, random_state=1))
    assert not torch.distributed.is_initialized()  # the group fit opened is closed again
    assert _distributed.active() is None


def _session(rank: int, world: int) -> _distributed.Session:
    return _distributed.Session(rank, world, rank, torch.device("cpu"))


@pytest.mark.parametrize("n, world", [(240, 2), (241, 2), (10, 3), (2, 4)])
def test_shards(monkeypatch: pytest.MonkeyPatch, n: int, world: int) -> None:
    """Plain training: equal shards covering every row (at most world - 1 seen twice); DP:
    a partition of the rows (a repeated row would join two Poisson samples)."""
    padded, exact = [], []
    for rank in range(world):
        monkeypatch.setattr(_distributed, "_ACTIVE", _session(rank, world))
        padded.append(_distributed.shard(n, pad=True))
        exact.append(_distributed.shard(n, pad=False))
    assert len({len(s) for s in padded}) == 1
    assert set(np.concatenate(padded)) == set(range(n))
    assert len(np.concatenate(padded)) - n < world
    assert sorted(np.concatenate(exact)) == list(range(n))
    assert max(map(len, exact)) - min(map(len, exact)) <= 1


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="auto"``/``"cuda"`` on a 2-GPU machine: cuda:LOCAL_RANK; an explicit cuda:N and
    the CPU are kept; more processes than GPUs is refused (no GPU needed to check the rule)."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert _distributed.process_device(cuda, "auto", 1) == torch.device("cuda", 1)
    assert _distributed.process_device(cuda, "cuda", 0) == torch.device("cuda", 0)
    assert _distributed.process_device(torch.device("cuda", 0), "cuda:0", 1).index == 0
    assert _distributed.process_device(torch.device("cpu"), "cpu", 1).type == "cpu"
    with pytest.raises(DistributedError, match="LOCAL_RANK=2 but this machine has 2 CUDA"):
        _distributed.process_device(cuda, "auto", 2)


def test_distributed_without_torchrun_is_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in _distributed.ENV_VARS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(DistributedError, match="torchrun.*missing: RANK, WORLD_SIZE"):
        tabsynth.TVAE(**params("TVAE")).fit(table(N), distributed=True)
    # under DP too, before a row is read: the frame here is not even a table
    with pytest.raises(DistributedError, match="torchrun"):
        tabsynth.TVAE(**params("TVAE", epsilon=1.0)).fit(
            table(N), public_metadata(), distributed=True
        )
    with pytest.raises(HyperParameterError, match="distributed must be True or False"):
        tabsynth.TVAE(**params("TVAE")).fit(table(N), distributed="yes")


def test_cli_distributed_without_torchrun_says_how_to_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for key in _distributed.ENV_VARS:
        monkeypatch.delenv(key, raising=False)
    args = ["fit", str(tmp_path / "absent.csv"), "--distributed", "-o", str(tmp_path / "m.tsyn")]
    assert main(args) == 1  # refused before the (absent) file is opened
    err = capsys.readouterr().err
    assert "torchrun --nproc_per_node=N -m tabsynth fit" in err and "absent.csv" not in err
    assert not (tmp_path / "m.tsyn").exists()


def test_dp_optimizer_distributed_needs_a_running_fit() -> None:
    from tabsynth.privacy import make_dp_optimizer

    net = torch.nn.Linear(2, 1)
    with pytest.raises(PrivacyError, match="running distributed fit"):
        make_dp_optimizer(
            net, torch.optim.SGD(net.parameters(), lr=0.1), noise_multiplier=1.0,
            max_grad_norm=1.0, expected_batch_size=4, generator=torch.Generator(),
            distributed=True,
        )  # fmt: skip
