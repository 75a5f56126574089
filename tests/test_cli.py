"""The ``tabsynth`` command line end to end, its error messages, and the benchmark suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tabsynth
from tabsynth.cli._io import CLIError, parse_condition, resolve_conditions, table_writer
from tabsynth.cli.main import main
from tabsynth.datasets import make_patients, write_table
from tabsynth.metadata import Metadata

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "tabsynth", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small patients table (train + holdout) and a TVAE fitted through the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    write_table(make_patients(300, random_state=0), folder / "train.csv")
    write_table(make_patients(120, random_state=1), folder / "holdout.csv")

    done = _cli("inspect", "train.csv", "--save", "meta.json", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "readmitted_30d" in done.stdout and "boolean" in done.stdout
    assert Metadata.load(folder / "meta.json")["ward"].kind == "categorical"

    done = _cli(
        "fit", "train.csv", "--model", "tvae", "--metadata", "meta.json", "--epochs", "1",
        "--batch-size", "50", "--seed", "0", "-o", "model.tsyn", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "phase timings" in done.stdout and "train" in done.stdout
    assert (folder / "model.tsyn").stat().st_size > 0
    return folder


def test_sample_with_conditions_and_evaluate(work: Path) -> None:
    done = _cli(
        "sample", "model.tsyn", "-n", "250", "--chunk-size", "100", "--condition", "ward=icu",
        "--condition", "age=40..90", "--condition", "smoker=false", "--seed", "1",
        "-o", "synthetic.csv", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    syn = pd.read_csv(work / "synthetic.csv")
    assert len(syn) == 250
    assert (syn["ward"] == "icu").all()
    assert syn["age"].between(40, 90).all()
    assert not syn["smoker"].any()
    # ids continue across the three chunks (id_start per chunk), in the learned style
    assert syn["patient_id"].tolist() == [f"P{i:07d}" for i in range(1, 251)]

    done = _cli(
        "evaluate", "train.csv", "synthetic.csv", "--holdout", "holdout.csv",
        "--target", "readmitted_30d", "--metrics", "fidelity", "utility",
        "--html", "report.html", "--json", "report.json", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fidelity.column_shapes" in done.stdout
    assert "utility.hist_gradient_boosting.roc_auc.synthetic" in done.stdout
    assert "<img" in (work / "report.html").read_text(encoding="utf-8")
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    assert report["n_rows"] == {"real": 300, "synthetic": 250, "holdout": 120}


def test_sample_parquet_chunks_are_reproducible(work: Path) -> None:
    for name in ("a.parquet", "b.parquet"):
        args = ["sample", str(work / "model.tsyn"), "-n", "130", "--chunk-size", "60"]
        assert main([*args, "--seed", "7", "-q", "-o", str(work / name)]) == 0
    a, b = pd.read_parquet(work / "a.parquet"), pd.read_parquet(work / "b.parquet")
    assert len(a) == 130
    pd.testing.assert_frame_equal(a, b)
    assert a["patient_id"].tolist() == [f"P{i:07d}" for i in range(1, 131)]
    assert not list(work.glob(".*.tmp")), "temporary files left behind"
    # a chunk of the file is the model's own sample of that chunk, ids numbered from its start
    model = tabsynth.load(work / "model.tsyn")
    seeds = np.random.SeedSequence(7).spawn(3)
    second = model.sample(
        60, random_state=int(seeds[1].generate_state(1, dtype=np.uint32)[0]), id_start=61
    )
    with table_writer(work / "second.parquet") as writer:
        writer.write(second)
    pd.testing.assert_frame_equal(
        a.iloc[60:120].reset_index(drop=True), pd.read_parquet(work / "second.parquet")
    )


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["inspect", "missing.csv"], 1, "'missing.csv' does not exist"),
        (["fit", "missing.csv", "-o", "m.tsyn"], 1, "does not exist"),
        (["inspect", "train.txt"], 1, "does not exist"),
        (["fit", "train.csv", "--model", "gan", "-o", "m.tsyn"], 2, "invalid choice: 'gan'"),
        (["fit", "train.csv", "--delta", "1e-5", "-o", "m.tsyn"], 1, "--delta needs --epsilon"),
        (["sample", "model.tsyn", "-n", "5", "--condition", "wardicu", "-o", "x.csv"], 2,
         "must look like col=value"),
        (["sample", "model.tsyn", "-n", "5", "--condition", "nope=1", "-o", "x.csv"], 1,
         "unknown column 'nope'"),
        (["sample", "model.tsyn", "-n", "5", "--condition", "ward=moon", "-o", "x.csv"], 1,
         "'moon' is not one of its categories"),
        (["sample", "model.tsyn", "-n", "5", "--condition", "crp=3", "-o", "x.csv"], 1,
         "needs a range"),
        (["sample", "model.tsyn", "-n", "5", "-o", "x.txt"], 1, "table format"),
        (["sample", "train.csv", "-n", "5", "-o", "x.csv"], 1, "not a tabsynth model"),
        (["sample", "model.tsyn", "-n", "0", "-o", "x.csv"], 2, "must be a positive integer"),
        (["evaluate", "train.csv", "holdout.csv", "--target", "nope"], 1, "'nope' is not in"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_nonzero_exit(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args, code, needle
) -> None:
    monkeypatch.chdir(work)
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    assert rc == code
    line = _error_line(capsys.readouterr().err)
    assert ": error: " in line and needle in line
    assert not (work / "x.csv").exists()


def test_missing_file_through_the_console_entry_point(tmp_path: Path) -> None:
    done = _cli("sample", "nowhere.tsyn", "-n", "3", "-o", "out.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert _error_line(done.stderr) == "tabsynth: error: model file 'nowhere.tsyn' does not exist"
    assert not (tmp_path / "out.csv").exists()


def test_help_is_fast_and_has_examples() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from tabsynth.cli.main import build_parser\n"
        "p = build_parser()\n"
        "for cmd in ['inspect', 'fit', 'sample', 'evaluate', 'benchmark', 'demo']:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try: p.parse_args([cmd, '--help'])\n"
        "        except SystemExit: pass\n"
        "    assert 'examples:' in out.getvalue(), cmd\n"
        "print(sorted(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # no heavy import just to print help


# -- helpers ----------------------------------------------------------------------------------
def test_condition_values_are_parsed_against_the_column_kind() -> None:
    df = pd.DataFrame(
        {
            "code": pd.Series([1, 2, 3, 1] * 5).astype("category"),
            "flag": [True, False] * 10,
            "n": np.arange(20),
            "x": np.linspace(0, 1, 20),
            "when": pd.date_range("2021-01-01", periods=20, freq="D"),
        }
    )
    meta = Metadata.infer(df)
    items = [
        parse_condition(t) for t in ("code=3", "flag=Yes", "n=4", "x=0.2..", "when=2021-01-05")
    ]
    out = resolve_conditions(items, meta)
    assert out["code"] == 3 and not isinstance(out["code"], str)
    assert out["flag"] is True
    assert out["n"] == 4
    assert out["x"] == (0.2, None)
    lo, hi = out["when"]
    assert lo == pd.Timestamp("2021-01-05") and hi < pd.Timestamp("2021-01-06") < hi + pd.Timedelta(
        1, "s"
    )
    with pytest.raises(CLIError, match="empty range"):
        resolve_conditions([("n", "5..2")], meta)
    with pytest.raises(CLIError, match="not true/false"):
        resolve_conditions([("flag", "maybe")], meta)
    with pytest.raises(ValueError, match="no value"):
        parse_condition("n=")


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet"])
def test_chunked_writer_round_trips_and_is_atomic(tmp_path: Path, name: str) -> None:
    chunks = [
        pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}),
        pd.DataFrame({"a": [3.0, 4.0], "b": [None, None]}),  # an all-missing column in a chunk
    ]
    target = tmp_path / name
    with table_writer(target) as writer:
        for chunk in chunks:
            writer.write(chunk)
    back = pd.read_parquet(target) if name.endswith("parquet") else pd.read_csv(target)
    assert back["a"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert back["b"].isna().tolist() == [False, False, True, True]

    target.write_text("old")  # a failed write leaves the previous file and no temp file
    with pytest.raises(RuntimeError), table_writer(target) as writer:
        writer.write(chunks[0])
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_dp_fit_needs_a_declared_schema_and_prints_the_ledger(work: Path) -> None:
    refused = _cli(
        "fit", "train.csv", "--model", "tvae", "--epochs", "1", "--epsilon", "3",
        "-o", "dp.tsyn", cwd=work,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "public schema" in refused.stderr and "--declare-public" in refused.stderr
    assert not (work / "dp.tsyn").exists()
    # refused before the file is read (inferring a schema would read every row): a file that
    # cannot be read at all gets the same answer
    (work / "broken.csv").write_bytes(b"\x00\xff not a table")
    unread = _cli("fit", "broken.csv", "--epsilon", "3", "-o", "dp.tsyn", cwd=work)
    assert unread.returncode != 0 and "public schema" in unread.stderr, unread.stderr

    done = _cli(
        "fit", "train.csv", "--model", "tvae", "--epochs", "1", "--batch-size", "100",
        "--epsilon", "3", "--declare-public", "--seed", "0", "-q", "-o", "dp.tsyn", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dp-sgd" in done.stdout and "accountant prv" in done.stdout
    assert (work / "dp.tsyn").exists()


def test_dp_fit_can_derive_category_lists_with_dp(work: Path) -> None:
    """--declare-public --dp-domains: every fact public except the inferred category lists,
    which are released by thresholded noisy histograms (one ledger row per column)."""
    bad = _cli(
        "fit", "train.csv", "--model", "tvae", "--dp-domains", "-o", "x.tsyn", cwd=work,
    )  # fmt: skip
    assert bad.returncode != 0 and "--dp-domains needs --epsilon" in bad.stderr
    write_table(make_patients(5000, random_state=2), work / "big.csv")
    done = _cli(
        "fit", "big.csv", "--model", "tvae", "--epochs", "1", "--batch-size", "1000",
        "--epsilon", "10", "--declare-public", "--dp-domains", "--seed", "0", "-q",
        "-o", "dpd.tsyn", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "category-domain:" in done.stdout
    model = tabsynth.load(work / "dpd.tsyn")
    derived = [s for s in model.metadata_ if s.origin.get("categories") == "dp"]
    assert derived, "no category list was derived with DP"


def test_demo_ends_with_three_verdict_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--rows", "400", "--epochs", "2", "--out", str(out), "-q"]
    assert main([*args, "--model", "tvae"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["fidelity", "utility", "privacy risk"]
    assert "trained on synthetic vs" in lines[-2] and "(ratio " in lines[-2]
    assert all(" -> " in line for line in lines[-3:])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "id='verdict'" in page and "<h2>Training curves</h2>" in page
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["model"]["name"] == "TVAE" and len(report["model"]["history"]["epoch"]) == 2


def test_demo_defaults_come_from_one_settings_table() -> None:
    from tabsynth.cli.main import DEMO_MODEL, DEMO_SETTINGS, build_parser

    args = build_parser().parse_args(["demo"])
    assert args.model == DEMO_MODEL and DEMO_MODEL in DEMO_SETTINGS
    assert args.epochs is None and args.batch_size is None  # filled in per model by cmd_demo
    from tabsynth.cli.commands import _model_class

    for name, (epochs, batch) in DEMO_SETTINGS.items():  # every entry builds a valid model
        assert build_parser().parse_args(["demo", "--model", name]).model == name
        model = _model_class(name)(epochs=epochs, batch_size=batch)
        assert model.get_params()["epochs"] == epochs


def test_fit_out_of_core_streams_a_parquet_file(tmp_path: Path, capsys) -> None:
    df = make_patients(600, random_state=1)
    write_table(df, tmp_path / "p.parquet")
    args = ["fit", str(tmp_path / "p.parquet"), "--model", "tvae", "--epochs", "1", "--seed", "0"]
    assert main([*args, "--out-of-core", "-o", str(tmp_path / "m.tsyn")]) == 0
    assert "fitted on 600 rows streamed from" in capsys.readouterr().out
    model = tabsynth.load(tmp_path / "m.tsyn")
    assert model.n_rows_fit_ == 600 and list(model.sample(10).columns) == list(df.columns)
    # DP out-of-core needs a declared schema (tests/test_dp_out_of_core.py fits one)
    assert main([*args, "--out-of-core", "--epsilon", "1", "-o", str(tmp_path / "d.tsyn")]) == 1
    assert "needs a public schema" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "no.parquet"), "--out-of-core", "-o", str(tmp_path / "x")])
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "d.tsyn").exists() and not (tmp_path / "x").exists()
