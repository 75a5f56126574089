"""``tabsynth`` command: argument parsing, dispatch and error reporting.

Each subcommand lives in :mod:`tabsynth.cli.commands` (``benchmark`` in
:mod:`tabsynth.cli.benchmark`, over :mod:`tabsynth.bench`) and is imported only when it runs,
so ``tabsynth --help`` does not load torch, pandas or scikit-learn. Errors print one ``tabsynth: error: ...`` line and exit 1
(2 for a bad command line, as argparse does); warnings print as ``tabsynth: warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from tabsynth.cli._io import MODEL_NAMES, parse_condition
from tabsynth.errors import TabsynthError


class _Formatter(argparse.HelpFormatter):
    """Wrap one-paragraph descriptions; keep multi-line text (the example epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``tabsynth fit: error: ...``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_THREADS_HELP = (
    "CPU threads for torch (default: torch's choice; 1 is often faster for small tables, "
    "and much faster when other jobs share the cores)"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _int_or_default(text: str) -> int | str:
    """A positive integer, or ``default`` (leave the value to each model)."""
    return text if text == "default" else _positive_int(text)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be non-negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def _rare_threshold(text: str) -> float | str | None:
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'auto', 'none' or a number (a share < 1 or a count >= 1)"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative finite number")
    return value


def _separator(text: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"--sep must be one character (or 'tab'), got {text!r}")
    return text


_SEP_HELP = "CSV delimiter (default: ',', or ';'/tab/'|' when the header shows it); 'tab' for tabs"
_RARE_HELP = (
    "group the values of a categorical column seen fewer times than this into one 'other' "
    "slot, sampled back by their frequency: 'auto' (default: max(5, 0.1%% of rows) in columns "
    "of over 50 distinct values), a share < 1, a count >= 1, or 'none'"
)


def _flag(*names: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A parent parser holding one flag, shared by the subcommands that take it (``parents=``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(*names, **kwargs)
    return parent


_DEVICE = _flag(
    "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when available"
)
_THREADS = _flag("--threads", type=_positive_int, help=_THREADS_HELP)
_SEP = _flag("--sep", type=_separator, help=_SEP_HELP)
_SEED = _flag("--seed", type=_seed, help="random seed (reproducible runs)")
_QUIET = _flag("-q", "--quiet", action="store_true", help="no progress bar or timings")
_METADATA = _flag("--metadata", metavar="META.json", help="metadata from `tabsynth inspect`")
_EPOCHS = _flag("--epochs", type=_positive_int, help="training epochs (default: the model's)")
_METRICS = _flag(
    "--metrics",
    nargs="+",
    choices=("fidelity", "detection", "utility", "privacy"),
    metavar="FAMILY",
    help="metric families to compute: fidelity detection utility privacy (default: all)",
)


def _condition(text: str) -> tuple[str, str]:
    try:
        return parse_condition(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(module: str, name: str) -> Any:
    """A lazy handler: import ``tabsynth.cli.<module>`` only when the subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        from importlib import import_module

        return int(getattr(import_module(f"tabsynth.cli.{module}"), name)(args))

    return handler


# -- the parser -------------------------------------------------------------------------------
def _add_inspect(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        parents=[_SEP],
        help="show the metadata tabsynth infers for a table",
        description="Infer each column's kind, nullability, dtype, bounds and categories.",
        epilog="examples:\n"
        "  tabsynth inspect patients.csv\n"
        "  tabsynth inspect patients.parquet --save meta.json   # edit, then fit --metadata",
        formatter_class=_Formatter,
    )
    p.add_argument("data", help="table to read (.csv, .csv.gz, .parquet, .pq)")
    p.add_argument("--save", metavar="META.json", help="write the metadata as JSON")
    p.set_defaults(func=_run("commands", "cmd_inspect"))


def _add_fit(sub: Any) -> None:
    p = sub.add_parser(
        "fit",
        parents=[_DEVICE, _THREADS, _SEP, _METADATA, _EPOCHS, _SEED, _QUIET],
        help="train a synthesizer on a table and save it",
        description="Train ARGN, CTGAN or TVAE on a table; prints progress and phase timings, and "
        "for differential privacy (--epsilon) the privacy ledger.",
        epilog="examples:\n"
        "  tabsynth fit patients.csv --model ctgan --epochs 300 -o patients.tsyn\n"
        "  tabsynth fit loans.parquet --model tvae --metadata meta.json --seed 0 -o loans.tsyn\n"
        "  tabsynth fit adult.csv --epsilon 3 --delta 1e-6 -o adult-dp.tsyn\n"
        "  tabsynth fit big.parquet --model tvae --out-of-core -o big.tsyn",
        formatter_class=_Formatter,
    )
    p.add_argument(
        "data",
        help="training table (.csv, .csv.gz, .parquet, .pq; a folder of "
        "Parquet files with --out-of-core)",
    )
    p.add_argument("--model", choices=MODEL_NAMES, default="ctgan", help="default: ctgan")
    p.add_argument(
        "--rare-threshold", type=_rare_threshold, default="auto", metavar="T", help=_RARE_HELP
    )
    p.add_argument("--batch-size", type=_positive_int, help="rows per batch (default: 500)")
    p.add_argument("--epsilon", type=_positive_float, help="train with DP at this epsilon")
    p.add_argument("--delta", type=_positive_float, help="DP delta (with --epsilon)")
    p.add_argument(
        "--declare-public",
        action="store_true",
        help="declare every fact of the metadata public knowledge (e.g. from a codebook); "
        "--epsilon needs a public schema",
    )
    p.add_argument(
        "--dp-domains",
        action="store_true",
        help="with --epsilon: derive undeclared category lists with DP (thresholded noisy "
        "histograms, paid from epsilon; rare values are dropped)",
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="write per-epoch TensorBoard scalars there (needs the tensorboard package; "
        "under DP only DP values)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="one of several processes started by torchrun (torchrun --nproc_per_node=N -m "
        "tabsynth fit ... --distributed): each trains on its share of the rows, rank 0 writes "
        "the model (docs/scaling.md)",
    )
    p.add_argument(
        "--out-of-core",
        action="store_true",
        help="stream a Parquet file or folder instead of reading it whole, for tables larger "
        "than memory (the rows are kept compactly encoded; with --epsilon the schema comes "
        "from --metadata; see docs/scaling.md)",
    )
    p.add_argument("-o", "--output", required=True, metavar="MODEL.tsyn", help="model file")
    p.set_defaults(func=_run("commands", "cmd_fit"))


def _add_sample(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        parents=[_THREADS, _SEED, _QUIET],
        help="draw synthetic rows from a saved model",
        description="Draw rows chunk by chunk and stream them to a CSV or Parquet file "
        "(bounded memory for any -n; the file appears only when complete). Conditions: "
        "col=value for categorical/boolean/integer columns (numbers, true/false, category "
        "text), col=lo..hi for an inclusive numeric or date range (lo.. or ..hi: one-sided).",
        epilog="examples:\n"
        "  tabsynth sample patients.tsyn -n 10000 -o synthetic.csv\n"
        "  tabsynth sample patients.tsyn -n 500 --condition ward=icu --condition age=65..90 \\\n"
        "      --seed 1 -o icu.parquet\n"
        "  tabsynth sample big.tsyn -n 10000000 --chunk-size 100000 -o big.parquet",
        formatter_class=_Formatter,
    )
    p.add_argument("model", help="model file written by `tabsynth fit`")
    p.add_argument("-n", "--n-rows", type=_positive_int, required=True, help="rows to draw")
    p.add_argument(
        "--condition",
        action="append",
        type=_condition,
        metavar="COL=VALUE",
        help="fix a column (repeatable): col=value or col=lo..hi",
    )
    p.add_argument(
        "--chunk-size", type=_positive_int, default=50_000, help="rows per chunk (default 50000)"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".csv/.csv.gz/.parquet")
    p.set_defaults(func=_run("commands", "cmd_sample"))


def _add_augment(sub: Any) -> None:
    p = sub.add_parser(
        "augment",
        parents=[_THREADS, _SEP, _METADATA, _EPOCHS, _SEED, _QUIET],
        help="add synthetic rows of chosen classes to a table (rebalance a rare class)",
        description="Fit a model (or load one) and add conditional synthetic rows of the chosen "
        "classes of --target; the output has a boolean column marking the synthetic rows. "
        "With a DP model only synthetic rows are written (real rows would be released).",
        epilog="examples:\n"
        "  tabsynth augment loans.csv --target default --balance -o augmented.csv\n"
        "  tabsynth augment loans.csv --target default --add yes=2000 --from-model loans.tsyn "
        "-o more.parquet",
        formatter_class=_Formatter,
    )
    p.add_argument("data", help="the real table (.csv, .csv.gz, .parquet, .pq)")
    p.add_argument("--target", required=True, metavar="COL", help="the class column")
    p.add_argument(
        "--balance",
        action="store_true",
        help="add rows until every class is as large as the largest",
    )
    p.add_argument(
        "--add", action="append", metavar="CLASS=N", help="add N rows of CLASS (repeatable)"
    )
    p.add_argument(
        "--from-model", metavar="MODEL.tsyn", help="use a saved model instead of fitting one"
    )
    p.add_argument("--model", choices=MODEL_NAMES, default="argn", help="default: argn")
    p.add_argument("--indicator", default="is_synthetic", help="name of the marker column")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".csv/.csv.gz/.parquet")
    p.set_defaults(func=_run("augment", "cmd_augment"))


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[_METRICS],
        help="score a synthetic table against the real one",
        description="Fidelity, detection, ML utility (needs --holdout and --target) and privacy "
        "risk; prints the summary table, optionally writes HTML/JSON reports.",
        epilog="examples:\n"
        "  tabsynth evaluate real.csv synthetic.csv\n"
        "  tabsynth evaluate train.csv synthetic.csv --holdout test.csv --target readmitted_30d "
        "\\\n      --html report.html --json report.json",
        formatter_class=_Formatter,
    )
    p.add_argument("real", help="the real table the model was trained on")
    p.add_argument("synthetic", help="the synthetic table")
    p.add_argument("--holdout", metavar="TEST", help="real rows the model never saw")
    p.add_argument("--target", metavar="COL", help="target column for ML utility")
    p.add_argument(
        "--task", choices=("binary", "multiclass", "regression"), help="default: inferred"
    )
    p.add_argument("--metadata", metavar="META.json", help="column kinds (default: inferred)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for subsamples/models (default 0)")
    p.add_argument(
        "--model",
        metavar="MODEL.tsyn",
        help="the model that made the synthetic table: adds its training curves (and its DP "
        "ledger) to the report",
    )
    p.add_argument("--html", metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--json", metavar="REPORT.json", help="write the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_run("commands", "cmd_evaluate"))


def _add_benchmark(sub: Any) -> None:
    p = sub.add_parser(
        "benchmark",
        parents=[_DEVICE, _METRICS],
        help="run the utility benchmark suite",
        description="For each dataset: 80/20 split (fixed seed, stratified), fit each model "
        "(with and without DP), sample the training row count, evaluate against the test "
        "split. Each cell runs in its own process (per-cell peak memory). Writes "
        "results.csv, results.md and utility_vs_epsilon.png.",
        epilog="examples:\n"
        "  tabsynth benchmark --quick -o results/\n"
        "  tabsynth benchmark --datasets adult heart_disease_uci --models ctgan tvae "
        "--epsilons 1 3 10 \\\n      --seeds 0 1 2 --epochs 100 -o results/\n"
        "  tabsynth benchmark --data mytable.csv --target churned --models tvae -o results/\n"
        "datasets: all (default), shared, demo, a shared table name, patients, loans\n"
        "models: ctgan, tvae, argn (tabsynth), anchor-ctgan, "
        "anchor-tvae, gaussiancopula, mostlyai-argn (anchors: skipped when ctgan / sdv / "
        "mostlyai-engine are not importable; see --anchor-python and scripts/bench-env.sh)",
        formatter_class=_Formatter,
    )
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="default: all")
    p.add_argument("--data", action="append", default=[], metavar="PATH", help="a table of yours")
    p.add_argument("--target", action="append", default=[], metavar="COL", help="its target")
    p.add_argument(
        "--task",
        action="append",
        default=[],
        choices=("binary", "multiclass", "regression"),
        help="its task (default: guessed from the target)",
    )
    p.add_argument("--models", nargs="+", metavar="MODEL", help="default: all (quick: ctgan tvae)")
    p.add_argument(
        "--epochs",
        type=_int_or_default,
        help="default 100 (quick: 40); 'default': each model's own (e.g. ARGN's early stopping)",
    )
    p.add_argument(
        "--batch-size",
        type=_int_or_default,
        help="default 500 (quick: 200); 'default': each model's",
    )
    p.add_argument(
        "--epsilons",
        nargs="+",
        type=_positive_float,
        default=[],
        metavar="EPS",
        help="also fit ctgan/tvae with DP at each epsilon",
    )
    p.add_argument("--delta", type=_positive_float, help="DP delta (default: the model's)")
    p.add_argument(
        "--private-schema",
        action="store_true",
        help="DP runs derive the category lists from the data with DP (dp_domains=True, paid "
        "from epsilon) instead of declaring them public; kinds and bounds stay declared",
    )
    p.add_argument("--seeds", nargs="+", type=_seed, metavar="SEED", help="default 0")
    p.add_argument("--max-rows", type=_positive_int, help="cap on training rows (quick: 3000)")
    p.add_argument("--max-test-rows", type=_positive_int, help="cap on test rows (quick: 1500)")
    p.add_argument("--demo-rows", type=_positive_int, help="rows of the demo tables (10000)")
    p.add_argument("--split-seed", type=_seed, default=0, help="seed of the 80/20 split")
    p.add_argument("--cell-timeout", type=_positive_float, metavar="S", help="seconds per cell")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch/BLAS/OpenMP threads per cell (default 1: stable timings on a shared machine)",
    )
    p.add_argument(
        "--anchor-python",
        metavar="PYTHON",
        help="interpreter with ctgan/sdv for the anchor cells (default: this one, "
        "else $TABSYNTH_ANCHOR_PYTHON, else <repo>/.venv-bench)",
    )
    p.add_argument("--resume", action="store_true", help="reuse finished cells in OUT/cells")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small preset (~15 min on 2 cores): ctgan+tvae, 40 epochs of batch 200, "
        "<= 3000 training / 1500 test rows, 3000-row demo tables",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="results folder")
    p.set_defaults(func=_run("benchmark", "cmd_benchmark"))


#: Per model, the demo's training length and batch size: its best train-on-synthetic utility on
#: the patients table within about 2 minutes on 2 cores (docs/benchmarks.md, section "Demo");
#: epochs None = the model's own stopping rule (ARGN: a held-out 10 % stops improving).
DEMO_SETTINGS: dict[str, tuple[int | None, int]] = {
    "tvae": (200, 200),
    "ctgan": (50, 200),
    "argn": (None, 512),
}
#: The model `tabsynth demo` (and `make demo`) uses. Switch model here.
DEMO_MODEL = "argn"


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        parents=[_DEVICE],
        help="fit, sample and evaluate on a built-in demo table (under 2 minutes)",
        description="Generate a demo table, fit a model on 80% of it, sample as many rows, "
        "evaluate against the held-out 20% and write an HTML report. Ends with three "
        "verdict lines: fidelity, utility and privacy risk.",
        epilog="examples:\n  tabsynth demo\n  tabsynth demo --table loans --model ctgan "
        "--out /tmp/demo",
        formatter_class=_Formatter,
    )
    p.add_argument("--table", choices=["patients", "loans"], default="patients")
    p.add_argument("--rows", type=_positive_int, default=3000, help="table rows (default 3000)")
    p.add_argument(
        "--model", choices=tuple(DEMO_SETTINGS), default=DEMO_MODEL, help=f"default {DEMO_MODEL}"
    )
    defaults = ", ".join(f"{m} {e or 'early stopping'}" for m, (e, _) in DEMO_SETTINGS.items())
    p.add_argument("--epochs", type=_positive_int, help=f"default per model: {defaults}")
    batches = ", ".join(f"{m} {b}" for m, (_, b) in DEMO_SETTINGS.items())
    p.add_argument("--batch-size", type=_positive_int, help=f"default per model: {batches}")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads for torch (default 1; "
        "the demo's small networks run fastest on one thread, most of all on a busy machine)",
    )
    p.add_argument("--out", default="tabsynth-demo", help="output folder (default ./tabsynth-demo)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_run("commands", "cmd_demo"))


def build_parser() -> argparse.ArgumentParser:
    from tabsynth import __version__

    parser = _Parser(
        prog="tabsynth",
        description="Synthetic tabular data with CTGAN/TVAE-family models, optional "
        "differential privacy and an evaluation report.",
        epilog="quick start:\n"
        "  tabsynth demo                                   # the whole pipeline on demo data\n"
        "  tabsynth inspect data.csv --save meta.json\n"
        "  tabsynth fit data.csv --metadata meta.json -o model.tsyn\n"
        "  tabsynth sample model.tsyn -n 10000 -o synthetic.csv\n"
        "  tabsynth evaluate data.csv synthetic.csv --html report.html\n"
        "run `tabsynth COMMAND --help` for the options of each command",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tabsynth {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_inspect,
        _add_fit,
        _add_sample,
        _add_augment,
        _add_evaluate,
        _add_benchmark,
        _add_demo,
    ):
        add(sub)
    return parser


def _show_warning(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
    text = " ".join(str(message).split())
    print(f"tabsynth: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tabsynth`` console script and of ``python -m tabsynth``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except TabsynthError as exc:
            message = " ".join(str(exc).split())
            print(f"tabsynth: error: {message}", file=sys.stderr)
            return 1
        except OSError as exc:  # permission denied, disk full, ... on a path the user gave
            where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
            print(f"tabsynth: error:{where} {exc.strerror or exc}", file=sys.stderr)
            return 1
        except ImportError as exc:  # an optional dependency (matplotlib, ctgan, ...) is absent
            print(f"tabsynth: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("tabsynth: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if args.debug:
                raise
            message = " ".join(str(exc).split())
            print(
                f"tabsynth: error: unexpected {type(exc).__name__}: {message} "
                "(this is a bug; rerun with `tabsynth --debug ...` for the traceback and report it)",
                file=sys.stderr,
            )
            return 1
