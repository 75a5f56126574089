"""One privacy ledger for every mechanism that reads the private table during a fit.

Every noisy release (DP histograms, quantiles, a noisy row count, DP-SGD) is recorded here as an
event and the total is composed by an Opacus accountant: PRV (numerical composition of privacy
loss random variables, Gopi et al. 2021) for the reported epsilon, RDP as an independent
cross-check. A plain Gaussian release is the ``q = 1, steps = 1`` case of the Poisson-subsampled
Gaussian that both accountants analyse, so metadata releases and DP-SGD share one composition.

Threshold mechanisms (``dp_category_domain``) add a pure additive delta on top of the Gaussian
part; the ledger keeps it apart and the accountant only gets ``delta - extra_delta``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import opacus
from opacus.accountants import PRVAccountant, RDPAccountant

from tabsynth import __version__ as _TABSYNTH_VERSION
from tabsynth.errors import ModelFileError, PrivacyError

__all__ = [
    "ADJACENCY",
    "MAX_DELTA",
    "UNIT",
    "Mechanism",
    "PrivacyLedger",
    "check_delta",
    "collapse_gaussians",
    "compose_epsilon",
    "merge_history",
]

ADJACENCY = "add/remove one row"
UNIT = "row"
ACCOUNTANTS = ("prv", "rdp")
#: absolute epsilon discretisation error of the PRV accountant (Opacus' default)
PRV_EPS_ERROR = 0.01
#: RDP orders reaching far enough for small epsilons and large noise (split heuristics)
RDP_EXTENDED_ORDERS = tuple(RDPAccountant.DEFAULT_ALPHAS) + (
    72,
    80,
    96,
    112,
    128,
    160,
    192,
    256,
    320,
    384,
    512,
    768,
    1024,
    1536,
    2048,
    4096,
)
_FORMAT = "tabsynth.privacy_ledger"
_VERSION = 1

History = list[tuple[float, float, int]]


#: the largest delta accepted anywhere: a guarantee that may fail outright with probability
#: above 1 % protects no table (delta must be far below 1/n), and the PRV accountant's grid
#: grows without bound as delta rises (delta = 0.02 exhausts 6 GiB), so it is refused first
MAX_DELTA = 1e-2


def check_delta(delta: Any) -> float:
    """``delta`` as a float in (0, MAX_DELTA], else a ``PrivacyError`` -- a data-free check."""
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise PrivacyError(f"delta must be a number in (0, {MAX_DELTA:g}], got {delta!r}") from None
    if isinstance(delta, bool) or not 0 < value <= MAX_DELTA:
        raise PrivacyError(
            f"delta={delta!r} is outside (0, {MAX_DELTA:g}]: delta is the chance that the "
            "guarantee fails outright, so it must be far below 1/n (the chance of picking any "
            f"one row); tabsynth refuses a delta above {MAX_DELTA:g} before reading a row. "
            "Pass a smaller delta, or none for the default"
        )
    return value


def _positive(value: Any, what: str, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PrivacyError(f"mechanism {name!r}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise PrivacyError(f"mechanism {name!r}: {what} must be positive and finite, got {value!r}")
    return out


def merge_history(events: Iterable[tuple[float, float, int]]) -> History:
    """Merge events with identical (noise multiplier, sample rate) into one self-composition.

    Composition is order-free, and merged histories make the PRV accountant faster and the
    comparison between a planned and an executed ledger exact.
    """
    merged: dict[tuple[float, float], int] = {}
    for sigma, q, steps in events:
        if steps > 0:
            key = (float(sigma), float(q))
            merged[key] = merged.get(key, 0) + int(steps)
    return [(s, q, n) for (s, q), n in merged.items()]


def collapse_gaussians(events: Iterable[tuple[float, float, int]]) -> History:
    """Merge the history and fold every plain Gaussian release (q = 1) into one.

    Exact, not an approximation: Gaussian releases of noise multipliers sigma_i compose to a
    Gaussian of multiplier (sum_i 1/sigma_i^2)^(-1/2) -- their privacy-loss distributions are
    Gaussian and add (and their RDP curves alpha/(2 sigma^2) add). One event instead of many
    keeps the PRV accountant fast.
    """
    history = merge_history(events)
    inv = sum(n / s**2 for s, q, n in history if q == 1.0)
    out = [(s, q, n) for s, q, n in history if q != 1.0]
    if inv > 0:
        out.insert(0, (1.0 / math.sqrt(inv), 1.0, 1))
    return out


def compose_epsilon(
    history: History,
    delta: float,
    accountant: str = "prv",
    *,
    eps_error: float = PRV_EPS_ERROR,
    rdp_orders: Sequence[float] | None = None,
) -> tuple[float, str]:
    """Epsilon of a composed history at ``delta``; returns ``(epsilon, accountant_used)``.

    PRV can fail numerically on extreme settings (opacus#591, #601); it then falls back to RDP,
    which is always a valid (looser) upper bound, and says so in ``accountant_used``.
    ``rdp_orders`` defaults to Opacus' own orders (the cross-check); ``RDP_EXTENDED_ORDERS``
    reaches small epsilons (the default orders cannot certify epsilon < log(1/delta)/62).
    """
    if accountant not in ACCOUNTANTS:
        raise PrivacyError(
            f"accountant {accountant!r} is not allowed; use one of {ACCOUNTANTS} "
            "(GDP can underestimate epsilon and is never used for reporting)"
        )
    history = collapse_gaussians(history)
    if not history:
        return 0.0, accountant
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1) for the accountant, got {delta!r}")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # q = 1 makes PRV take log(0) = -inf on a branch it then masks out, and RDP warns when
        # the best order is the largest one; neither changes the bound.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        if accountant == "prv":
            acc = PRVAccountant()
            acc.history = list(history)
            try:
                eps = float(acc.get_epsilon(delta, eps_error=eps_error))
                if math.isfinite(eps):
                    return max(eps, 0.0), "prv"
            except (RuntimeError, ValueError, FloatingPointError, ZeroDivisionError):
                pass
            warnings.warn(
                "PRV accountant failed on this history; reporting the RDP bound instead",
                RuntimeWarning,
                stacklevel=2,
            )
        acc = RDPAccountant()
        acc.history = list(history)
        orders = None if rdp_orders is None else list(rdp_orders)
        return max(float(acc.get_epsilon(delta, alphas=orders)), 0.0), "rdp"


@dataclass
class Mechanism:
    """One recorded read of the private data.

    ``noise_multiplier`` is noise std / L2 sensitivity. For DP-SGD ``sensitivity`` is the clipping
    norm C; ``steps`` counts optimizer steps actually taken. ``extra_delta`` is the additive delta
    of a threshold (partition-selection) release, 0 for plain Gaussian releases.
    """

    name: str
    kind: str  # "gaussian" | "dpsgd"
    noise_multiplier: float
    sample_rate: float
    steps: int
    sensitivity: float | None = None
    extra_delta: float = 0.0
    what: str = ""

    @property
    def noise_std(self) -> float | None:
        """Standard deviation of the added noise, in the units of the released statistic."""
        if self.sensitivity is None:
            return None
        return self.noise_multiplier * self.sensitivity

    def event(self) -> tuple[float, float, int]:
        """The accountant tuple ``(noise_multiplier, sample_rate, steps)``."""
        return (self.noise_multiplier, self.sample_rate, self.steps)


class PrivacyLedger:
    """Records every DP mechanism of one fit and composes them into one (epsilon, delta).

    Parameters
    ----------
    delta : float, optional
        Target delta of the whole pipeline (used by ``report`` when none is passed).
    n_treatment : str
        How the row count was treated: ``"public"`` (declared by the user), ``"noisy"``
        (released by ``noisy_count`` and charged here) -- shown in the report.
    schema_source : str
        Where the column domain came from: ``"declared"`` (public schema) or ``"dp"``.
    secure_mode : bool
        Whether the DP-SGD noise came from a cryptographically secure generator.
    tuning : str
        How hyper-parameters were chosen (``"none"``, ``"public data"``...).
    """

    def __init__(
        self,
        *,
        delta: float | None = None,
        n_treatment: str = "public",
        schema_source: str = "declared",
        secure_mode: bool = False,
        tuning: str = "none",
    ) -> None:
        self.delta = delta
        self.n_treatment = n_treatment
        self.schema_source = schema_source
        self.secure_mode = secure_mode
        self.tuning = tuning
        self.mechanisms: list[Mechanism] = []
        self._cache: dict[tuple, tuple[float, str]] = {}

    # ------------------------------------------------------------------ recording
    def _add(self, mechanism: Mechanism) -> Mechanism:
        if any(m.name == mechanism.name for m in self.mechanisms):
            raise PrivacyError(
                f"mechanism {mechanism.name!r} is already in the ledger; give every release "
                "its own name (e.g. 'histogram:<column>')"
            )
        self.mechanisms.append(mechanism)
        return mechanism

    def add_gaussian(
        self,
        name: str,
        noise_std: float,
        sensitivity: float = 1.0,
        *,
        extra_delta: float = 0.0,
        what: str = "",
    ) -> Mechanism:
        """Record one Gaussian release: noise of std ``noise_std`` on a statistic whose L2
        sensitivity under add/remove of one row is ``sensitivity``."""
        std = _positive(noise_std, "noise_std", name)
        sens = _positive(sensitivity, "sensitivity", name)
        extra = float(extra_delta)
        if not 0 <= extra < 1:
            raise PrivacyError(f"mechanism {name!r}: extra_delta must be in [0, 1), got {extra}")
        return self._add(
            Mechanism(
                name=name,
                kind="gaussian",
                noise_multiplier=std / sens,
                sample_rate=1.0,
                steps=1,
                sensitivity=sens,
                extra_delta=extra,
                what=what or "Gaussian release",
            )
        )

    def add_dpsgd(
        self,
        name: str,
        noise_multiplier: float,
        sample_rate: float,
        steps: int,
        *,
        max_grad_norm: float | None = None,
        what: str = "",
    ) -> Mechanism:
        """Record DP-SGD: ``steps`` Poisson-sampled (rate ``sample_rate``) Gaussian steps."""
        sigma = _positive(noise_multiplier, "noise_multiplier", name)
        q = _positive(sample_rate, "sample_rate", name)
        if q > 1:
            raise PrivacyError(f"mechanism {name!r}: sample_rate must be <= 1, got {q}")
        if int(steps) != steps or steps < 0:
            raise PrivacyError(f"mechanism {name!r}: steps must be a non-negative integer")
        clip = None if max_grad_norm is None else _positive(max_grad_norm, "max_grad_norm", name)
        return self._add(
            Mechanism(
                name=name,
                kind="dpsgd",
                noise_multiplier=sigma,
                sample_rate=q,
                steps=int(steps),
                sensitivity=clip,
                what=what or "DP-SGD (Poisson sampling, per-sample clipping, Gaussian noise)",
            )
        )

    def record_dpsgd_steps(self, name: str, steps: int = 1) -> int:
        """Count ``steps`` more optimizer steps of a DP-SGD mechanism; returns the new total."""
        mech = self[name]
        if mech.kind != "dpsgd":
            raise PrivacyError(f"mechanism {name!r} is not a DP-SGD mechanism")
        mech.steps += int(steps)
        return mech.steps

    def __getitem__(self, name: str) -> Mechanism:
        for m in self.mechanisms:
            if m.name == name:
                return m
        raise PrivacyError(f"no mechanism named {name!r} in the privacy ledger")

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.mechanisms)

    def __len__(self) -> int:
        return len(self.mechanisms)

    def without(self, *names: str) -> PrivacyLedger:
        """A copy of the ledger without the named mechanisms (what-if analysis, tests)."""
        for name in names:
            self[name]  # raises on unknown names
        out = PrivacyLedger.from_dict(self.to_dict())
        out.mechanisms = [m for m in out.mechanisms if m.name not in names]
        return out

    # ------------------------------------------------------------------ accounting
    @property
    def extra_delta(self) -> float:
        """Total additive delta of threshold releases (charged on top of the accountant)."""
        return float(sum(m.extra_delta for m in self.mechanisms))

    def history(self) -> History:
        """Merged accountant history ``[(noise_multiplier, sample_rate, steps), ...]``."""
        return merge_history(m.event() for m in self.mechanisms)

    def _accountant_delta(self, delta: float | None) -> float:
        delta = self.delta if delta is None else delta
        if delta is None:
            raise PrivacyError("no delta given and the ledger has no target delta")
        delta = float(delta)
        remaining = delta - self.extra_delta
        if not 0 < remaining < 1:
            raise PrivacyError(
                f"delta={delta:g} does not cover the threshold releases' extra delta "
                f"({self.extra_delta:g}); raise delta or the thresholds"
            )
        return remaining

    def _compose(
        self, history: History, delta_acc: float, accountant: str, extended: bool = False
    ) -> tuple[float, str]:
        key = (tuple(history), delta_acc, accountant, extended)
        if key not in self._cache:
            orders = RDP_EXTENDED_ORDERS if extended else None
            self._cache[key] = compose_epsilon(history, delta_acc, accountant, rdp_orders=orders)
        return self._cache[key]

    def _epsilon_alone(self, mechanism: Mechanism, delta_acc: float) -> float:
        """Tighter of PRV and extended-order RDP for one mechanism (PRV's absolute
        discretisation error dominates tiny epsilons)."""
        history = [mechanism.event()]
        if mechanism.steps == 0:
            return 0.0
        prv = self._compose(history, delta_acc, "prv")[0]
        return min(prv, self._compose(history, delta_acc, "rdp", extended=True)[0])

    def epsilon(self, delta: float | None = None, accountant: str = "prv") -> float:
        """Total epsilon at total ``delta`` (threshold deltas are subtracted first)."""
        return self._compose(self.history(), self._accountant_delta(delta), accountant)[0]

    def rdp_epsilon(self, delta: float | None = None) -> float:
        """RDP cross-check of ``epsilon`` (always a valid, usually looser, upper bound)."""
        return self.epsilon(delta, accountant="rdp")

    def report(self, delta: float | None = None, *, per_mechanism: bool = True) -> dict:
        """The privacy report: JSON-able, reproducible from its own ``mechanisms`` list."""
        delta = self.delta if delta is None else delta
        delta_acc = self._accountant_delta(delta)
        eps, used = self._compose(self.history(), delta_acc, "prv")
        rdp = self._compose(self.history(), delta_acc, "rdp")[0]
        mechanisms = []
        for m in self.mechanisms:
            entry = {
                "name": m.name,
                "kind": m.kind,
                "what": m.what,
                "noise_multiplier": m.noise_multiplier,
                "noise_std": m.noise_std,
                "sensitivity": m.sensitivity,
                "sample_rate": m.sample_rate,
                "steps": m.steps,
                "extra_delta": m.extra_delta,
            }
            if per_mechanism:
                entry["epsilon_alone"] = self._epsilon_alone(m, delta_acc)
            mechanisms.append(entry)
        return {
            "epsilon": eps,
            "delta": float(delta),
            "accountant": used,
            "rdp_epsilon": rdp,
            "delta_accountant": delta_acc,
            "delta_threshold": self.extra_delta,
            "adjacency": ADJACENCY,
            "unit": UNIT,
            "n_treatment": self.n_treatment,
            "schema_source": self.schema_source,
            "secure_mode": bool(self.secure_mode),
            "tuning": self.tuning,
            "mechanisms": mechanisms,
            "notes": (
                "epsilon composes every mechanism with the PRV accountant (an upper bound, "
                f"absolute discretisation error {PRV_EPS_ERROR}); rdp_epsilon is the RDP "
                "accountant's bound (Opacus default orders) as a cross-check. delta_threshold "
                "is charged by threshold releases on top of the accountant's delta. "
                "epsilon_alone is each mechanism on its own at the same delta (tighter of PRV "
                "and RDP), a descriptive share only: composition is sub-additive."
            ),
            "versions": {"tabsynth": _TABSYNTH_VERSION, "opacus": opacus.__version__},
        }

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-able state (no pickle)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "delta": self.delta,
            "n_treatment": self.n_treatment,
            "schema_source": self.schema_source,
            "secure_mode": bool(self.secure_mode),
            "tuning": self.tuning,
            "mechanisms": [asdict(m) for m in self.mechanisms],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PrivacyLedger:
        """Rebuild a ledger written by ``to_dict``."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ModelFileError("not a tabsynth privacy ledger")
        if data.get("version") != _VERSION:
            raise ModelFileError(f"unsupported privacy ledger version {data.get('version')!r}")
        ledger = cls(
            delta=data.get("delta"),
            n_treatment=data.get("n_treatment", "public"),
            schema_source=data.get("schema_source", "declared"),
            secure_mode=bool(data.get("secure_mode", False)),
            tuning=data.get("tuning", "none"),
        )
        names = {f.name for f in fields(Mechanism)}
        for raw in data.get("mechanisms", []):
            if not isinstance(raw, dict) or set(raw) != names:
                raise ModelFileError(f"malformed privacy ledger entry: {raw!r}")
            mech = Mechanism(**raw)
            if mech.kind not in ("gaussian", "dpsgd"):
                raise ModelFileError(f"unknown mechanism kind {mech.kind!r} in privacy ledger")
            ledger._add(mech)
        return ledger

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self.mechanisms)
        return f"PrivacyLedger([{names}])"
