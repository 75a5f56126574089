"""The evaluation report: a JSON-able dict with a summary table, JSON and single-file HTML output."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabsynth._files import atomic_write_bytes
from tabsynth.errors import DataError
from tabsynth.metrics._labels import _UTILITY_NAMES

FORMAT = "tabsynth-report"
FORMAT_VERSION = 1
SUMMARY_COLUMNS = ["metric", "value", "direction", "meaning"]

#: metric name -> (how to read it, what it measures)
METRIC_INFO: dict[str, tuple[str, str]] = {
    "fidelity.column_shapes": (
        "higher is better (1 = same marginals)",
        "mean per-column KS complement (numeric) / TV complement (categorical)",
    ),
    "fidelity.column_pair_trends": (
        "higher is better (1 = same pairwise trends)",
        "mean correlation / contingency similarity over pairs with a real trend "
        "(|r| > 0.5 or Cramér's V > 0.3; all pairs if none)",
    ),
    "fidelity.column_pair_trends_all": (
        "higher is better",
        "mean correlation / contingency similarity over every evaluated pair",
    ),
    "fidelity.missing_similarity": (
        "higher is better",
        "1 - |difference in missing rate|, mean over columns",
    ),
    "fidelity.range_coverage": (
        "higher is better",
        "share of each numeric column's real range that the synthetic values span",
    ),
    "fidelity.boundary_adherence": (
        "higher is better",
        "share of synthetic numeric values inside the real min-max range",
    ),
    "fidelity.category_coverage": (
        "higher is better",
        "share of real categories that occur in the synthetic data",
    ),
    "fidelity.category_adherence": (
        "higher is better",
        "share of synthetic categorical values that are real categories",
    ),
    "detection.logistic_auc": (
        "0.5 is ideal (1 = trivially detectable)",
        "3-fold CV ROC AUC of logistic regression telling real rows from synthetic rows",
    ),
    "detection.hist_gradient_boosting_auc": (
        "0.5 is ideal (1 = trivially detectable)",
        "same with gradient boosting; a much stricter detector, often near 1",
    ),
    "privacy.dcr_synthetic_median": (
        "higher is safer; compare with dcr_holdout_median",
        "median distance from a synthetic row to its closest training row",
    ),
    "privacy.dcr_synthetic_p05": (
        "higher is safer; near 0 means near-copies",
        "5th percentile of the synthetic-to-training closest distances",
    ),
    "privacy.dcr_holdout_median": (
        "reference",
        "median distance from a holdout row (never trained on) to its closest training row",
    ),
    "privacy.dcr_median_ratio": (
        ">= 1 is reassuring; << 1 means synthetic rows hug the training rows",
        "dcr_synthetic_median / dcr_holdout_median",
    ),
    "privacy.nndr_synthetic_median": (
        "higher is safer; compare with nndr_holdout_median",
        "median ratio of closest to second-closest training-row distance for synthetic rows",
    ),
    "privacy.nndr_holdout_median": ("reference", "same for holdout rows"),
    "privacy.exact_copy_rate": (
        "lower is better; compare with holdout_exact_copy_rate",
        "share of synthetic rows identical to some training row",
    ),
    "privacy.holdout_exact_copy_rate": (
        "reference",
        "share of holdout rows identical to some training row (duplicates in the population)",
    ),
    "privacy.dcr_share_closer_to_train": (
        "0.5 is ideal; 1 = synthetic rows sit on the training rows",
        "share of synthetic rows closer to the training set than to the holdout "
        "(odds rescaled by distinct n_holdout / n_train so that 0.5 is ideal for any sizes)",
    ),
    "privacy.membership_auc": (
        "0.5 is ideal; > 0.5 leaks membership",
        "ROC AUC of guessing training vs holdout rows from their distance to the synthetic set",
    ),
}


def jsonable(obj: Any) -> Any:
    """Plain JSON types only: NaN/inf become None, numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def summary_rows(metrics: dict, skipped: dict[str, str]) -> list[dict]:
    """One row per metric, in report order; skipped metrics appear with value None and a reason."""
    rows: list[dict] = []

    def add(name: str, value: Any) -> None:
        direction, meaning = METRIC_INFO[name]
        rows.append({"metric": name, "value": value, "direction": direction, "meaning": meaning})

    for group in ("fidelity", "detection", "utility", "privacy"):
        if group in skipped:
            rows.append(
                {
                    "metric": group,
                    "value": None,
                    "direction": "",
                    "meaning": f"skipped: {skipped[group]}",
                }
            )
            continue
        values = metrics.get(group, {})
        if group == "utility":
            _utility_rows(values, rows)
            continue
        for name in METRIC_INFO:
            g, short = name.split(".", 1)
            if g != group:
                continue
            if name in skipped:
                direction, meaning = METRIC_INFO[name]
                rows.append(
                    {
                        "metric": name,
                        "value": None,
                        "direction": direction,
                        "meaning": f"skipped: {skipped[name]}",
                    }
                )
            elif short in values:
                add(name, values[short])
    return rows


_AUGMENTATION_NAMES = {
    "roc_auc": "ROC AUC",
    "average_precision": "average precision",
    "minority_recall": "minority-class recall",
}


def _augmentation_rows(values: dict, rows: list[dict]) -> None:
    aug = values.get("augmentation")
    if not aug:
        return
    for metric, label in _AUGMENTATION_NAMES.items():
        s = aug[metric]
        base = f"utility.augmentation.{metric}"
        rows.append(
            {
                "metric": f"{base}.augmented",
                "value": s["augmented"],
                "direction": "higher is better",
                "meaning": f"{label} trained on real + {aug['n_synthetic_added']} synthetic "
                f"rows of the smaller classes (real only: {s['real']:.3f})",
            }
        )
        rows.append(
            {
                "metric": f"{base}.difference",
                "value": s["difference"],
                "direction": "above 0 helps",
                "meaning": f"augmented - real {label}; 95% bootstrap interval over holdout rows "
                f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]",
            }
        )


def _utility_rows(values: dict, rows: list[dict]) -> None:
    for model, scores in values.get("models", {}).items():
        for metric, trio in scores.items():
            label = _UTILITY_NAMES[metric]
            better = "lower is better" if metric == "mae" else "higher is better"
            base = f"utility.{model}.{metric}"
            rows.append(
                {
                    "metric": f"{base}.synthetic",
                    "value": trio["synthetic"],
                    "direction": better,
                    "meaning": f"{label} of {model} trained on synthetic, tested on holdout",
                }
            )
            rows.append(
                {
                    "metric": f"{base}.real",
                    "value": trio["real"],
                    "direction": "reference",
                    "meaning": f"{label} of {model} trained on real, tested on holdout",
                }
            )
            rows.append(
                {
                    "metric": f"{base}.ratio",
                    "value": trio["ratio"],
                    "direction": "1 is ideal",
                    "meaning": f"synthetic / real {label}",
                }
            )
    _augmentation_rows(values, rows)


def _atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write_bytes(path, data)


class Report:
    """Result of :func:`tabsynth.metrics.evaluate`.

    Everything lives in one JSON-able dict (``to_dict``), so a report read back from JSON can
    still produce its summary and its HTML page.
    """

    def __init__(self, data: dict) -> None:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError("not a tabsynth report (missing format tag 'tabsynth-report')")
        self._data = data

    # -- access ---------------------------------------------------------------------------
    @property
    def metrics(self) -> dict:
        """Nested scores: ``metrics['fidelity']['column_shapes']`` etc."""
        return copy.deepcopy(self._data["metrics"])

    @property
    def warnings(self) -> list[str]:
        """Things the caller should know (dropped columns, coerced values, sampled pairs...)."""
        return list(self._data["warnings"])

    @property
    def skipped(self) -> dict[str, str]:
        """Metric groups or metrics that were not computed, with the reason."""
        return dict(self._data["skipped"])

    def summary(self) -> pd.DataFrame:
        """One row per metric: name, value, how to read it, what it measures."""
        df = pd.DataFrame(self._data["summary"], columns=SUMMARY_COLUMNS)
        df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
        return df

    def __getitem__(self, metric: str) -> float:
        """Value of one summary metric, e.g. ``report['fidelity.column_shapes']``."""
        for row in self._data["summary"]:
            if row["metric"] == metric:
                return float("nan") if row["value"] is None else float(row["value"])
        raise KeyError(metric)

    def headlines(self) -> list[dict]:
        """The verdict: 3-5 headline figures with level (good/check/poor) and a reading."""
        from tabsynth.metrics.verdict import headlines

        return headlines(self._data)

    def verdict_lines(self) -> list[str]:
        """Three plain-words lines (fidelity, utility, privacy risk), as ``tabsynth demo`` prints."""
        from tabsynth.metrics.verdict import verdict_lines

        return verdict_lines(self._data)

    def column_scores(self) -> pd.DataFrame:
        """Per-column fidelity details (shape, missing similarity, coverage, adherence)."""
        return pd.DataFrame(self._data["details"].get("columns", []))

    def pair_scores(self) -> pd.DataFrame:
        """Per-pair trend details (metric, score, real and synthetic correlation)."""
        return pd.DataFrame(self._data["details"].get("pairs", []))

    def __repr__(self) -> str:
        s = self.summary()
        head = s.loc[s["metric"].isin(["fidelity.column_shapes", "fidelity.column_pair_trends"])]
        parts = [f"{m}={v:.3f}" for m, v in zip(head["metric"], head["value"], strict=True)]
        return f"Report({', '.join(parts)}, {len(s)} metrics)"

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A deep copy of the report as plain JSON types."""
        return json.loads(json.dumps(self._data))

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        return cls(json.loads(json.dumps(data)))

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self._data, indent=1, allow_nan=False)
        if path is not None:
            _atomic_write(path, text.encode("utf-8"))
        return text

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> Report:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"report file {str(path)!r} does not exist") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"report file {str(path)!r} is not valid JSON: {exc}") from None
        return cls(data)

    def to_html(self, path: str | os.PathLike) -> Path:
        """Write one self-contained HTML page (PNG plots embedded as base64). Needs matplotlib."""
        from tabsynth.metrics._html import render

        return _atomic_write(path, render(self._data).encode("utf-8"))
