"""Metrics layer: fidelity, detection, ML utility and privacy-risk diagnostics, and the report.

``evaluate(real, synthetic, ...)`` returns a :class:`Report` with a ``summary()`` table and JSON /
self-contained HTML output. See docs/metrics.md for what each number means.
"""

from tabsynth.metrics._evaluate import evaluate
from tabsynth.metrics.report import Report

__all__ = ["Report", "evaluate"]
