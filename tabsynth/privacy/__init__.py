"""Differential privacy: one ledger for every mechanism, DP metadata, DP-SGD helpers.

See docs/privacy.md for the threat model and how the pieces fit together.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Every public name, by the submodule that defines it. Names load on first use (PEP 562):
# Opacus (~1.5 s to import) is needed by budget, dpsgd and ledger only, and the ghost-clipping
# code the models import at module level is plain torch, so `import tabsynth.models` must not
# pay for Opacus unless a DP fit asks for it.
_NAMES = {
    "budget": (
        "BudgetGuard",
        "Calibration",
        "DPSGDPlan",
        "GaussianPlan",
        "calibrate",
        "dpsgd_steps",
    ),
    "dpsgd": (
        "PoissonLoader",
        "gradient_penalty",
        "make_dp_optimizer",
        "make_poisson_loader",
        "module_state",
        "per_sample_grads",
        "resolve_delta",
        "secure_generator",
        "single_example",
        "validate_dp_module",
        "write_grad_samples",
    ),
    "ghost": (
        "LinearTape",
        "LinearUse",
        "clip_linear_uses",
        "record_linear",
        "write_linear_grads",
    ),
    "ledger": (
        "ADJACENCY",
        "UNIT",
        "Mechanism",
        "PrivacyLedger",
        "compose_epsilon",
    ),
    "mechanisms": (
        "OTHER",
        "GridRelease",
        "HistogramRelease",
        "category_counts",
        "dp_category_domain",
        "dp_grid_histogram",
        "dp_histogram",
        "dp_quantiles",
        "grid_counts",
        "noisy_count",
        "quantiles_from_histogram",
        "threshold_delta",
        "threshold_for_delta",
    ),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
