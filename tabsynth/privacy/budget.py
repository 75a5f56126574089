"""Solve noise levels so that the whole pipeline meets a target (epsilon, delta), and hold
training to the planned number of steps.

Budget split: the metadata releases (Gaussian, sensitivity 1 each) together get
``metadata_share`` of epsilon, measured on their own; inside that share the releases split the
budget in zCDP terms (rho_i proportional to the weights), which for Gaussians composes exactly,
so the metadata group is worth one Gaussian of the solved multiplier. The DP-SGD noise
multiplier is then bisected until the PRV epsilon of the *whole* composed plan is at most the
target. Calibration is step-exact: the DP-SGD event carries the exact number of critic steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opacus.optimizers import DPOptimizer

from tabsynth.errors import PrivacyError
from tabsynth.privacy.ledger import (
    RDP_EXTENDED_ORDERS,
    History,
    PrivacyLedger,
    check_delta,
    collapse_gaussians,
    compose_epsilon,
    merge_history,
)

__all__ = [
    "BudgetGuard",
    "Calibration",
    "DPSGDPlan",
    "GaussianPlan",
    "calibrate",
    "dpsgd_steps",
]

_MAX_SIGMA = 1e6


@dataclass(frozen=True)
class GaussianPlan:
    """A planned group of Gaussian releases of L2 sensitivity 1 each.

    ``releases`` identical releases (e.g. one histogram per categorical column) share the
    group's budget; ``weight`` is the group's relative share of the metadata budget;
    ``threshold_delta`` is the extra delta charged per release by ``dp_category_domain``.
    """

    name: str
    weight: float = 1.0
    releases: int = 1
    threshold_delta: float = 0.0
    what: str = ""


@dataclass(frozen=True)
class DPSGDPlan:
    """The planned DP-SGD run: Poisson rate ``sample_rate`` and the exact number of noisy
    optimizer ``steps`` (see ``dpsgd_steps``)."""

    name: str
    sample_rate: float
    steps: int
    max_grad_norm: float | None = None
    what: str = ""


def dpsgd_steps(epochs: int, steps_per_epoch: int, critic_steps: int = 1) -> int:
    """Noisy optimizer steps of a run: every critic (discriminator) step is a DP-SGD step."""
    for value, what in ((epochs, "epochs"), (steps_per_epoch, "steps_per_epoch")):
        if int(value) != value or value < 1:
            raise PrivacyError(f"{what} must be a positive integer, got {value!r}")
    if int(critic_steps) != critic_steps or critic_steps < 1:
        raise PrivacyError(f"critic_steps must be a positive integer, got {critic_steps!r}")
    return int(epochs) * int(steps_per_epoch) * int(critic_steps)


def _smallest_sigma(
    eps_of: Callable[[float], float],
    target: float,
    rel_tol: float,
    start: float,
    slope: float = -1.0,
) -> tuple[float, float, float]:
    """Smallest noise multiplier (up to ``rel_tol`` in epsilon) with ``eps_of(sigma) <= target``.

    Safeguarded secant search on log(epsilon) against log(sigma) (epsilon falls roughly like
    1/sigma), aiming just inside the accepted window so that one or two accountant calls
    usually finish the search. The returned sigma always meets the target. Returns
    ``(sigma, epsilon, slope)``, the last being the local d log(eps) / d log(sigma).
    """
    aim = target * (1 - rel_tol / 2)
    lo: tuple[float, float] | None = None  # (sigma, eps) with eps > target
    hi: tuple[float, float] | None = None  # (sigma, eps) with eps <= target
    last: tuple[float, float] | None = None
    sigma = start
    for _ in range(100):
        if not 0 < sigma <= _MAX_SIGMA:
            raise PrivacyError(
                f"epsilon={target:g} cannot be met with a noise multiplier below "
                f"{_MAX_SIGMA:g}; raise epsilon or lower the number of steps"
            )
        eps = eps_of(sigma)
        if last is not None and eps > 0 and last[1] > 0 and sigma != last[0]:
            est = (math.log(eps) - math.log(last[1])) / (math.log(sigma) - math.log(last[0]))
            if math.isfinite(est) and est < -0.05:
                slope = est
        last = (sigma, eps)
        if eps <= target:
            hi = (sigma, eps)
            if target - eps <= rel_tol * target or sigma < 1e-4:
                return (*hi, slope)
        else:
            lo = (sigma, eps)
        if lo is not None and hi is not None:
            if hi[0] / lo[0] < 1 + 1e-9:
                return (*hi, slope)
            span = math.log(max(hi[1], 1e-300)) - math.log(lo[1])
            t = (math.log(aim) - math.log(lo[1])) / span if span < 0 else 0.5
            t = min(max(t, 0.05), 0.95)
            sigma = math.exp(math.log(lo[0]) + t * (math.log(hi[0]) - math.log(lo[0])))
        else:
            cur = hi if hi is not None else lo
            step = (max(cur[1], 1e-300) / aim) ** (-1.0 / slope)  # sigma ratio to reach aim
            if hi is None:  # too little noise: go up by at least 5 %, at most 4x
                sigma = cur[0] * min(max(step, 1.05), 4.0)
            else:  # target met with room to spare: go down by at least 5 %, at most 4x
                sigma = cur[0] * max(min(step, 1 / 1.05), 0.25)
    if hi is None:
        raise PrivacyError(f"could not calibrate noise for epsilon={target:g}")
    return (*hi, slope)


@dataclass
class Calibration:
    """The solved plan: noise for every planned mechanism and the composed epsilon it gives."""

    target_epsilon: float
    delta: float
    gaussian_plans: tuple[GaussianPlan, ...]
    dpsgd_plan: DPSGDPlan | None
    gaussian_sigma: dict[str, float] = field(default_factory=dict)
    noise_multiplier: float | None = None
    epsilon: float = 0.0  # composed plan, PRV (what the report will say)
    rdp_epsilon: float = 0.0  # composed plan, RDP with Opacus' orders (cross-check)
    metadata_epsilon: float = 0.0  # the Gaussian releases alone (tighter of PRV and RDP)

    def sigma(self, name: str) -> float:
        """Noise std per release of a planned Gaussian group (sensitivity 1 per release)."""
        if name not in self.gaussian_sigma:
            raise PrivacyError(f"no planned Gaussian mechanism named {name!r}")
        return self.gaussian_sigma[name]

    @property
    def extra_delta(self) -> float:
        return float(sum(p.releases * p.threshold_delta for p in self.gaussian_plans))

    def planned_history(self) -> History:
        events = [(self.gaussian_sigma[p.name], 1.0, p.releases) for p in self.gaussian_plans]
        if self.dpsgd_plan is not None:
            events.append(
                (self.noise_multiplier, self.dpsgd_plan.sample_rate, self.dpsgd_plan.steps)
            )
        return merge_history(events)

    def planned_ledger(self, **ledger_kwargs) -> PrivacyLedger:
        """A ledger holding the whole plan as if it had run (what-if reports, tests)."""
        ledger = PrivacyLedger(delta=self.delta, **ledger_kwargs)
        for p in self.gaussian_plans:
            sigma = self.gaussian_sigma[p.name]
            for i in range(p.releases):
                name = p.name if p.releases == 1 else f"{p.name}[{i}]"
                ledger.add_gaussian(name, sigma, 1.0, extra_delta=p.threshold_delta, what=p.what)
        if self.dpsgd_plan is not None:
            d = self.dpsgd_plan
            ledger.add_dpsgd(
                d.name,
                self.noise_multiplier,
                d.sample_rate,
                d.steps,
                max_grad_norm=d.max_grad_norm,
                what=d.what,
            )
        return ledger

    def guard(self, ledger: PrivacyLedger) -> BudgetGuard:
        """Register the planned DP-SGD run on ``ledger`` and return its step guard."""
        if self.dpsgd_plan is None:
            raise PrivacyError("this calibration has no DP-SGD plan")
        d = self.dpsgd_plan
        return BudgetGuard(
            ledger,
            d.name,
            noise_multiplier=self.noise_multiplier,
            sample_rate=d.sample_rate,
            planned_steps=d.steps,
            max_grad_norm=d.max_grad_norm,
            what=d.what,
        )

    def verify(self, ledger: PrivacyLedger) -> None:
        """Raise PrivacyError unless ``ledger`` spends no more than this plan.

        No accountant call: the Gaussian releases must not exceed the planned total
        ``sum(1 / sigma_i^2)`` (they compose exactly), every DP-SGD event must be planned with
        the same (sigma, q) and at least as many steps, and the extra delta must not grow.
        """
        planned = collapse_gaussians(self.planned_history())
        actual = collapse_gaussians(ledger.history())
        p_gauss = [s for s, q, _ in planned if q == 1.0]
        a_gauss = [s for s, q, _ in actual if q == 1.0]
        if a_gauss and (not p_gauss or a_gauss[0] < p_gauss[0] * (1 - 1e-9)):
            raise PrivacyError("the ledger's Gaussian releases spend more than the plan")
        budget = {(s, q): n for s, q, n in planned if q != 1.0}
        for sigma, q, steps in actual:
            if q == 1.0:
                continue
            match = [k for k in budget if math.isclose(k[0], sigma, rel_tol=1e-9) and k[1] == q]
            if not match or budget[match[0]] < steps:
                raise PrivacyError(
                    f"ledger event (noise_multiplier={sigma:g}, sample_rate={q:g}, "
                    f"steps={steps}) is not covered by the calibrated plan"
                )
            budget[match[0]] -= steps
        if ledger.extra_delta > self.extra_delta * (1 + 1e-9):
            raise PrivacyError("the ledger charges more threshold delta than planned")

    def to_dict(self) -> dict:
        return {
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "epsilon": self.epsilon,
            "rdp_epsilon": self.rdp_epsilon,
            "metadata_epsilon": self.metadata_epsilon,
            "gaussian_sigma": dict(self.gaussian_sigma),
            "noise_multiplier": self.noise_multiplier,
            "gaussian_plans": [vars(p).copy() for p in self.gaussian_plans],
            "dpsgd_plan": None if self.dpsgd_plan is None else vars(self.dpsgd_plan).copy(),
        }


def calibrate(
    target_epsilon: float,
    delta: float,
    gaussian: Sequence[GaussianPlan] = (),
    dpsgd: DPSGDPlan | None = None,
    *,
    metadata_share: float = 0.1,
    tolerance: float = 0.01,
) -> Calibration:
    """Solve every noise level so the composed PRV epsilon is ``<= target_epsilon``.

    ``metadata_share`` of epsilon goes to the Gaussian releases (all of it when there is no
    DP-SGD run); the DP-SGD noise multiplier takes the rest, solved on the *composed* total.
    ``tolerance`` is the relative slack accepted below the target (the result is never above).
    """
    eps = float(target_epsilon)
    if not math.isfinite(eps) or eps <= 0:
        raise PrivacyError(f"target epsilon must be positive and finite, got {target_epsilon!r}")
    delta = check_delta(delta)
    if not 0 < tolerance < 1:
        raise PrivacyError(f"tolerance must be in (0, 1), got {tolerance!r}")
    gaussian = tuple(gaussian)
    names = [p.name for p in gaussian] + ([dpsgd.name] if dpsgd is not None else [])
    if len(set(names)) != len(names):
        raise PrivacyError(f"planned mechanism names must be unique, got {names}")
    for p in gaussian:
        if not (math.isfinite(p.weight) and p.weight > 0):
            raise PrivacyError(f"mechanism {p.name!r}: weight must be positive")
        if int(p.releases) != p.releases or p.releases < 1:
            raise PrivacyError(f"mechanism {p.name!r}: releases must be a positive integer")
        if not 0 <= p.threshold_delta < 1:
            raise PrivacyError(f"mechanism {p.name!r}: threshold_delta must be in [0, 1)")
    if dpsgd is not None:
        if not 0 < dpsgd.sample_rate <= 1:
            raise PrivacyError(f"mechanism {dpsgd.name!r}: sample_rate must be in (0, 1]")
        if int(dpsgd.steps) != dpsgd.steps or dpsgd.steps < 1:
            raise PrivacyError(f"mechanism {dpsgd.name!r}: steps must be a positive integer")
    if not gaussian and dpsgd is None:
        raise PrivacyError("nothing to calibrate: the plan has no mechanism")
    if gaussian and dpsgd is not None and not 0 < metadata_share < 1:
        raise PrivacyError(f"metadata_share must be in (0, 1), got {metadata_share!r}")

    cal = Calibration(eps, float(delta), gaussian, dpsgd)
    delta_acc = cal.delta - cal.extra_delta
    if delta_acc <= 0:
        raise PrivacyError(
            f"the planned threshold deltas ({cal.extra_delta:g}) use up delta={delta:g}"
        )

    memo: dict[tuple, float] = {}

    def prv(history: History) -> float:
        key = tuple(history)
        if key not in memo:
            memo[key] = compose_epsilon(history, delta_acc, "prv")[0]
        return memo[key]

    def rdp(history: History) -> float:
        return compose_epsilon(history, delta_acc, "rdp", rdp_orders=RDP_EXTENDED_ORDERS)[0]

    meta_history: History = []
    if gaussian:
        share = 1.0 if dpsgd is None else float(metadata_share)
        eps_meta = share * eps
        # classic Gaussian-mechanism noise is an upper bound: a good starting point
        start = math.sqrt(2 * math.log(1.25 / delta_acc)) / eps_meta
        # the split is a heuristic; RDP (extended orders) is tight for one Gaussian and, unlike
        # PRV, has no absolute error floor at small shares. The total is checked with PRV below.
        sigma_meta = _smallest_sigma(lambda s: rdp([(s, 1.0, 1)]), eps_meta, tolerance, start)[0]
        total_weight = sum(p.weight for p in gaussian)

        def split(sigma: float) -> dict[str, float]:
            # rho_i = w_i / W * rho  and  k releases at sigma_i compose to sigma_i / sqrt(k)
            return {
                p.name: sigma * math.sqrt(total_weight / p.weight) * math.sqrt(p.releases)
                for p in gaussian
            }

        def group_history(sigma: float) -> History:
            sigmas = split(sigma)
            return [(sigmas[p.name], 1.0, p.releases) for p in gaussian]

        if dpsgd is None:  # the metadata is the whole plan: solve it on the PRV total
            sigma_meta = _smallest_sigma(
                lambda s: prv(group_history(s)), eps, tolerance, sigma_meta
            )[0]
        cal.gaussian_sigma = split(sigma_meta)
        meta_history = group_history(sigma_meta)
        cal.metadata_epsilon = min(prv(meta_history), rdp(meta_history))

    if dpsgd is not None:
        if meta_history and prv(meta_history) >= eps:
            raise PrivacyError("the metadata releases alone use up the privacy budget")
        q, steps = float(dpsgd.sample_rate), int(dpsgd.steps)

        # RDP is fast and (almost always) above PRV: its solution and local slope are a good
        # start for the PRV search. Opacus' orders suffice unless epsilon is small.
        orders = None if eps > 2 * math.log(1 / delta_acc) / 62 else RDP_EXTENDED_ORDERS

        def rdp_total(s: float) -> float:
            history = meta_history + [(s, q, steps)]
            return compose_epsilon(history, delta_acc, "rdp", rdp_orders=orders)[0]

        start, _, slope = _smallest_sigma(rdp_total, eps, 0.01, 1.0)
        cal.noise_multiplier = _smallest_sigma(
            lambda s: prv(meta_history + [(s, q, steps)]), eps, tolerance, start, slope
        )[0]
    cal.epsilon = prv(cal.planned_history())
    cal.rdp_epsilon = compose_epsilon(cal.planned_history(), delta_acc, "rdp")[0]
    if cal.epsilon > eps:  # guaranteed by construction; keep the promise explicit
        raise PrivacyError(f"calibration failed: epsilon {cal.epsilon:g} > target {eps:g}")
    return cal


class BudgetGuard:
    """Holds a DP-SGD run to its planned step count and records every step in the ledger.

    ``attach(optimizer)`` installs an Opacus step hook: it runs after clipping/noising but
    before the parameter update, so a step beyond the plan raises PrivacyError before anything
    is released. Loops should also call ``check_before_step()`` before computing gradients.
    A step whose update later turns out NaN/inf still counts: the noisy gradient was computed.
    """

    def __init__(
        self,
        ledger: PrivacyLedger,
        name: str,
        *,
        noise_multiplier: float,
        sample_rate: float,
        planned_steps: int,
        max_grad_norm: float | None = None,
        what: str = "",
    ) -> None:
        if int(planned_steps) != planned_steps or planned_steps < 1:
            raise PrivacyError(f"planned_steps must be a positive integer, got {planned_steps!r}")
        self.ledger = ledger
        self.name = name
        self.planned_steps = int(planned_steps)
        self.mechanism = ledger.add_dpsgd(
            name, noise_multiplier, sample_rate, 0, max_grad_norm=max_grad_norm, what=what
        )

    @property
    def steps_taken(self) -> int:
        return self.mechanism.steps

    @property
    def remaining(self) -> int:
        return self.planned_steps - self.steps_taken

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def check_before_step(self) -> None:
        """Raise PrivacyError if one more step would exceed the planned budget."""
        if self.steps_taken >= self.planned_steps:
            raise PrivacyError(
                f"{self.name!r}: all {self.planned_steps} planned DP-SGD steps are spent; "
                "another step would exceed the privacy budget"
            )

    def record_step(self) -> None:
        """Count one noisy step (raises instead if it would exceed the plan)."""
        self.check_before_step()
        self.ledger.record_dpsgd_steps(self.name, 1)

    def _hook(self, optimizer: DPOptimizer) -> None:
        mech = self.mechanism
        if not math.isclose(optimizer.noise_multiplier, mech.noise_multiplier, rel_tol=1e-12):
            raise PrivacyError(
                f"{self.name!r}: optimizer noise multiplier {optimizer.noise_multiplier:g} "
                f"differs from the planned {mech.noise_multiplier:g}"
            )
        if optimizer.accumulated_iterations != 1:
            raise PrivacyError(
                f"{self.name!r}: gradient accumulation changes the sampling rate; "
                "take one optimizer step per Poisson batch"
            )
        if mech.sensitivity is not None and not math.isclose(
            optimizer.max_grad_norm, mech.sensitivity, rel_tol=1e-12
        ):
            raise PrivacyError(
                f"{self.name!r}: optimizer clips at {optimizer.max_grad_norm:g}, "
                f"the plan at {mech.sensitivity:g}"
            )
        self.record_step()

    def attach(self, optimizer: DPOptimizer) -> BudgetGuard:
        """Make every ``optimizer.step()`` count (and stop at the plan); returns the guard."""
        if not isinstance(optimizer, DPOptimizer):
            raise PrivacyError("BudgetGuard.attach needs an opacus DPOptimizer")
        optimizer.attach_step_hook(self._hook)
        return self
