"""One-run canary audit of tabsynth's DP training (dp.md section 4.4 P2; Steinke, Nasr and
Jagielski, "Privacy auditing with one (1) training run", NeurIPS 2023).

m canaries are added to a seeded base table, each independently with probability 1/2, and each
arm trains ONE model on the result and releases ``n_synth`` synthetic rows (fixed, because
bigger releases make attacks stronger). The auditor scores every canary from what the fit
publishes, guesses "in" for its top-k+ canaries, and turns the number of correct guesses into a
lower bound on epsilon. An audit can only falsify: a DP claim is refuted when the bound exceeds
it at 99 % confidence; a bound below the claim certifies nothing.

Canaries (half of each kind):

* token: a canary-specific diagnosis code (``ZC000``...) LISTED in the public schema that no
  base record has, so a DP pipeline may represent it but must not learn whether it was seen;
* combination: a (diagnosis, ward, insurance) combination absent from the base table, with
  age and systolic blood pressure near the public bounds.

Score of a canary = number of synthetic rows that match it (every categorical equal, numeric
values within 2 % of the public range), plus a large bonus when its category values all lie in
the category domain the saved model publishes (the threat model lets the attacker read the
model file), plus 0.5 for token canaries so they win ties. Ties are broken at random.

Arms:

* ``nondp``: the model without DP on the public schema. The negative control that must leak:
  if it shows no signal the attack or the test is broken.
* ``dp1`` / ``dp8``: DP at epsilon 1 and 8 with the public schema (all tokens in the domain).
* ``leaky``: the audit's self-test. DP at epsilon 1, but the schema is inferred from the
  training table and declared public: a token's category exists only if its canary was
  included. The audit must refute the claimed epsilon = 1.

Statistics per arm: attack AUROC (all canaries, and per kind), TPR at 5 % FPR, and the one-run
epsilon lower bound at 95 % confidence, maximised over k+ in {10, 20, 50} with a Bonferroni
correction; DP claims are checked at 99 %.

    python benchmarks/privacy_audit.py --quick                       # ~10 min on 2 busy cores
    python benchmarks/privacy_audit.py --arms nondp,dp1,dp8,leaky --epochs 300 --dp-epochs 30

Exit status 1 when the control shows no leak, a DP claim is refuted, or the self-test is not
flagged.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom
from sklearn.metrics import roc_auc_score, roc_curve

import tabsynth
from tabsynth import Metadata
from tabsynth.datasets import make_patients

COLUMNS = [
    "age",
    "sex",
    "diagnosis",
    "ward",
    "systolic_bp",
    "insurance",
    "smoker",
    "readmitted_30d",
]
CATEGORICAL = ["sex", "diagnosis", "ward", "insurance", "smoker", "readmitted_30d"]
TEXT = ["sex", "diagnosis", "ward", "insurance"]
#: public bounds (clinical ranges, not the observed ones)
BOUNDS = {"age": (0, 110), "systolic_bp": (50.0, 250.0)}
MATCH_TOLERANCE = 0.02  # numeric match: within 2 % of the public range
COMBO_KEY = ["diagnosis", "ward", "insurance"]
ARMS = {  # name -> (claimed epsilon or None, schema)
    "nondp": (None, "public"),
    "dp1": (1.0, "public"),
    "dp8": (8.0, "public"),
    "leaky": (1.0, "inferred"),
}
K_GUESSES = (10, 20, 50)
CONFIDENCE, CLAIM_CONFIDENCE = 0.95, 0.99
CONTROL_MIN_EPSILON = 1.0  # the non-DP control must reach at least this bound


# ---------------------------------------------------------------------- data and canaries
def _frame(n: int, seed: int) -> pd.DataFrame:
    df = make_patients(n, random_state=seed)[COLUMNS].reset_index(drop=True)
    for col in TEXT:  # plain strings: a Categorical dtype would carry its own domain
        df[col] = df[col].astype(str)
    return df


@dataclass
class Canaries:
    rows: pd.DataFrame  # the m canary records
    is_token: np.ndarray  # bool (m,)
    included: np.ndarray  # bool (m,)


def make_canaries(base: pd.DataFrame, public: pd.DataFrame, m: int, seed: int) -> Canaries:
    """``m`` canaries (half token, half combination), each included with probability 1/2."""
    rng = np.random.default_rng([seed, 1])
    n_token = m // 2
    n_combo = m - n_token
    templates = public.sample(m, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    rows = templates.copy()
    token_idx, combo_idx = np.arange(n_token), np.arange(n_token, m)
    rows.loc[token_idx, "diagnosis"] = [f"ZC{i:03d}" for i in range(n_token)]
    seen = set(map(tuple, base[COMBO_KEY].to_numpy()))
    domains = {c: sorted(public[c].unique()) for c in COMBO_KEY}
    combos: list[tuple] = []
    while len(combos) < n_combo:
        combo = tuple(rng.choice(domains[c]) for c in COMBO_KEY)
        if combo not in seen and combo not in combos:
            combos.append(combo)
    rows.loc[combo_idx, COMBO_KEY] = combos
    for col, (lo, hi) in BOUNDS.items():  # 1-3 % of the range inside a public bound
        inset = (hi - lo) * (0.01 + 0.02 * rng.random(n_combo))
        value = np.where(rng.random(n_combo) < 0.5, lo + inset, hi - inset)
        rows.loc[combo_idx, col] = np.round(value) if col == "age" else np.round(value, 1)
    rows = rows.astype(base.dtypes.to_dict())
    included = rng.random(m) < 0.5
    return Canaries(rows, np.arange(m) < n_token, included)


def training_table(base: pd.DataFrame, canaries: Canaries, seed: int) -> pd.DataFrame:
    df = pd.concat([base, canaries.rows[canaries.included]], ignore_index=True)
    order = np.random.default_rng([seed, 2]).permutation(len(df))
    return df.iloc[order].reset_index(drop=True)


def public_metadata(public: pd.DataFrame, canaries: Canaries, n_public: int) -> Metadata:
    """The declared schema: codebook domains (every token listed) and clinical bounds."""
    meta = Metadata.infer(public)  # kinds and dtypes from a public frame, facts overridden below
    for col in CATEGORICAL:
        if meta[col].kind == "boolean":
            meta.update_column(col, kind="boolean", nullable=False)
            continue
        domain = sorted(public[col].unique())
        if col == "diagnosis":
            domain += sorted(canaries.rows.loc[canaries.is_token, col])
        meta.update_column(col, kind="categorical", categories=domain, nullable=False)
    meta.update_column("age", kind="integer", lower=BOUNDS["age"][0], upper=BOUNDS["age"][1])
    lo, hi = BOUNDS["systolic_bp"]
    meta.update_column("systolic_bp", kind="continuous", lower=lo, upper=hi, nullable=False)
    meta.declare_public()
    meta.n_rows = n_public  # an approximate public count, not a function of the canaries
    return meta


def leaky_metadata(train: pd.DataFrame) -> Metadata:
    """The bug the audit must catch: facts learned from the private table, declared public."""
    meta = Metadata.infer(train).declare_public()
    meta.n_rows = len(train)
    return meta


# ---------------------------------------------------------------------- attack
def canary_scores(
    model, synth: pd.DataFrame, canaries: Canaries, n_synth: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(ranking score, match count) per canary; vectorised over synthetic rows per canary."""
    rows = canaries.rows
    m = len(rows)
    counts = np.zeros(m, dtype=np.int64)
    key = synth[CATEGORICAL].astype(str).agg("\x1f".join, axis=1).to_numpy()
    ckey = rows[CATEGORICAL].astype(str).agg("\x1f".join, axis=1).to_numpy()
    token_counts = pd.Series(synth["diagnosis"].astype(str)).value_counts()
    for i in range(m):
        if canaries.is_token[i]:  # token canaries: the token alone identifies the canary
            counts[i] = int(token_counts.get(str(rows["diagnosis"].iat[i]), 0))
            continue
        hit = key == ckey[i]
        for col, (lo, hi) in BOUNDS.items():
            tol = MATCH_TOLERANCE * (hi - lo)
            hit &= np.abs(synth[col].to_numpy(dtype=float) - float(rows[col].iat[i])) <= tol
        counts[i] = int(hit.sum())
    released = model.metadata_
    in_domain = np.ones(m, dtype=bool)
    for col in CATEGORICAL:
        cats = released[col].categories
        if cats is not None:
            in_domain &= rows[col].astype(str).isin({str(c) for c in cats}).to_numpy()
    score = (n_synth + 1.0) * in_domain + counts + 0.5 * canaries.is_token
    return score + 1e-3 * rng.random(m), counts  # random tie-breaking keeps the test valid


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of v correct out of r guesses under an (epsilon, delta)-DP null (dp.md 4.2):
    P[Bin(r, q) >= v] + 2 m delta max_i (P[Bin(r, q) >= v - i] - P[Bin(r, q) >= v]) / i,
    with q = e^eps / (1 + e^eps)."""
    q = float(expit(epsilon))
    tail = float(binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    i = np.arange(1, v + 1)
    gap = (binom.sf(v - i - 1, r, q) - tail) / i
    return min(tail + 2 * m * delta * float(np.max(gap)), 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, alpha: float) -> float:
    """Largest epsilon whose (epsilon, delta) claim the guesses refute at level ``alpha``."""
    if r == 0 or one_run_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    hi = 1.0
    while one_run_p_value(m, r, v, hi, delta) < alpha:
        hi *= 2
        if hi > 100:
            return math.inf
    return float(brentq(lambda e: one_run_p_value(m, r, v, e, delta) - alpha, 0.0, hi))


@dataclass
class AuditResult:
    auroc: float
    auroc_token: float
    auroc_combo: float
    tpr_at_5fpr: float
    eps_lb: float
    best: tuple[int, int]  # (correct, guesses) at the best k
    claim_p: float | None  # Bonferroni-corrected p-value of the claimed epsilon


def audit(
    score: np.ndarray, counts: np.ndarray, canaries: Canaries, delta: float, claim: float | None
) -> AuditResult:
    y = canaries.included.astype(int)
    m = len(y)
    tok = canaries.is_token
    fpr, tpr, _ = roc_curve(y, score)
    order = np.argsort(-score, kind="stable")
    bounds, claim_ps = [], []
    for k in K_GUESSES:
        v = int(y[order[:k]].sum())
        bounds.append(
            (epsilon_lower_bound(m, k, v, delta, (1 - CONFIDENCE) / len(K_GUESSES)), v, k)
        )
        if claim is not None:
            claim_ps.append(len(K_GUESSES) * one_run_p_value(m, k, v, claim, delta))
    eps_lb, v, k = max(bounds)
    return AuditResult(
        auroc=float(roc_auc_score(y, score)),
        auroc_token=float(roc_auc_score(y[tok], counts[tok])),
        auroc_combo=float(roc_auc_score(y[~tok], counts[~tok])),
        tpr_at_5fpr=float(tpr[fpr <= 0.05].max()),
        eps_lb=eps_lb,
        best=(v, k),
        claim_p=min(min(claim_ps), 1.0) if claim_ps else None,
    )


# ---------------------------------------------------------------------- arms
def has_dp_training(cls: type) -> bool:
    from tabsynth.models.base import BaseSynthesizer

    return cls._train_private is not BaseSynthesizer._train_private


def fit_arm(
    arm: str,
    model_name: str,
    train: pd.DataFrame,
    meta: Metadata,
    args: argparse.Namespace,
):
    claim, _ = ARMS[arm]
    cls = tabsynth.CTGAN if model_name == "ctgan" else tabsynth.TVAE
    dims = tuple([args.width, args.width])
    params = dict(
        batch_size=args.batch_size,
        epochs=args.epochs if claim is None else args.dp_epochs,
        verbose=False,
        random_state=args.seed,
        epsilon=claim,
    )
    if model_name == "ctgan":
        params.update(generator_dim=dims, discriminator_dim=dims)
        if claim is not None:
            params["pac"] = 1  # DP trains with pac=1 anyway; say so instead of a warning
    else:
        params.update(compress_dims=dims, decompress_dims=dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(**params).fit(train, meta)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="nondp,dp1,dp8,leaky", help="comma list of " + str(ARMS))
    p.add_argument("--model", choices=("auto", "ctgan", "tvae"), default="auto")
    p.add_argument("--epochs", type=int, default=None, help="non-DP control epochs (300)")
    p.add_argument("--dp-epochs", type=int, default=None, help="DP arms epochs (30)")
    p.add_argument("--rows", type=int, default=None, help="base rows (3000)")
    p.add_argument("--canaries", type=int, default=200)
    p.add_argument("--n-synth", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--width", type=int, default=None, help="hidden width (256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smaller defaults (~10 min on 2 cores)")
    args = p.parse_args(argv)
    quick = {"epochs": 60, "dp_epochs": 10, "rows": 2000, "width": 128}
    full = {"epochs": 300, "dp_epochs": 30, "rows": 3000, "width": 256}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    if args.model == "auto":
        args.model = "tvae" if has_dp_training(tabsynth.TVAE) else "ctgan"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    base = _frame(args.rows, args.seed)
    public = _frame(20_000, args.seed + 10_000)  # stands in for the published code lists
    canaries = make_canaries(base, public, args.canaries, args.seed)
    train = training_table(base, canaries, args.seed)
    n_public = args.rows + args.canaries // 2
    print(
        f"one-run canary audit: model={args.model}, base rows={args.rows}, "
        f"m={args.canaries} canaries ({int(canaries.is_token.sum())} token), "
        f"{int(canaries.included.sum())} included, n_synth={args.n_synth}, seed={args.seed}, "
        f"epochs non-DP={args.epochs} DP={args.dp_epochs}, batch={args.batch_size}, "
        f"width={args.width}"
    )
    header = (
        f"{'arm':<6} {'claim':>5} {'ledger eps':>10} {'AUROC':>6} {'token':>6} {'combo':>6} "
        f"{'TPR@5%':>6} {'eps_lb95':>8} {'v/k':>6} {'p(claim)':>9} {'fit s':>6}  verdict"
    )
    rows, failed = [], False
    for arm in args.arms:
        claim, schema = ARMS[arm]
        meta = (
            public_metadata(public, canaries, n_public)
            if schema == "public"
            else leaky_metadata(train)
        )
        t1 = time.perf_counter()
        try:
            model = fit_arm(arm, args.model, train, meta, args)
        except Exception as exc:  # noqa: BLE001 - report every arm, then fail
            rows.append(f"{arm:<6} ERROR {type(exc).__name__}: {exc}")
            failed = True
            continue
        fit_s = time.perf_counter() - t1
        synth = model.sample(args.n_synth, random_state=args.seed + 1)
        rng = np.random.default_rng([args.seed, 3, len(rows)])
        score, counts = canary_scores(model, synth, canaries, args.n_synth, rng)
        delta = model.privacy_report()["delta"] if claim is not None else 1e-5
        res = audit(score, counts, canaries, delta, claim)
        ledger = f"{model.privacy_report()['epsilon']:.3f}" if claim is not None else "-"
        if claim is None:
            ok = res.eps_lb > CONTROL_MIN_EPSILON
            verdict = "leaks (control ok)" if ok else "NO SIGNAL: attack or test broken"
        elif schema == "public":
            ok = res.claim_p >= 1 - CLAIM_CONFIDENCE
            verdict = "claim not refuted" if ok else "CLAIM REFUTED: pipeline leak"
        else:
            ok = res.claim_p < 1 - CLAIM_CONFIDENCE
            verdict = "self-test flagged" if ok else "SELF-TEST MISSED the leak"
        failed |= not ok
        tok, inc = canaries.is_token, canaries.included
        p_claim = "-" if res.claim_p is None else f"{res.claim_p:.2g}"
        rows.append(
            f"{arm:<6} {'-' if claim is None else f'{claim:g}':>5} {ledger:>10} "
            f"{res.auroc:>6.3f} {res.auroc_token:>6.3f} {res.auroc_combo:>6.3f} "
            f"{res.tpr_at_5fpr:>6.2f} {res.eps_lb:>8.3f} {res.best[0]:>2}/{res.best[1]:<3} "
            f"{p_claim:>9} {fit_s:>6.0f}  {verdict}"
            f"\n       token matches: included mean {counts[tok & inc].mean():.2f} "
            f"(reproduced {np.mean(counts[tok & inc] > 0):.0%}), excluded mean "
            f"{counts[tok & ~inc].mean():.2f}; combination matches: included "
            f"{counts[~tok & inc].mean():.2f}, excluded {counts[~tok & ~inc].mean():.2f}"
        )
        print(f"[{arm}: fit {fit_s:.0f} s]", file=sys.stderr, flush=True)
    print(header)
    print("\n".join(rows))
    print(
        f"eps_lb95: one-run bound at 95 % (max over k+ in {list(K_GUESSES)}, Bonferroni), "
        f"delta = the arm's delta (1e-5 for the control); p(claim): Bonferroni p-value of the "
        f"claimed epsilon, refuted below {1 - CLAIM_CONFIDENCE:.2f}. "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
