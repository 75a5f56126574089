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

The attacker holds the model file, the synthetic rows and the code (dp.md §4.4 P2, white-box).
It computes these statistics per canary, then ranks the token canaries (they carry the audit)
above the combination ones, each group by one statistic chosen from the release alone
(``_primary_statistic``: an exact match with the shadow first, then released frequencies,
gradient alignment, weight distance, synthetic matches), with a decisive bonus for a canary
whose categories are in a released domain that others miss:

* samples: the number of synthetic rows that match the canary (every categorical equal,
  numeric values within 2 % of the public range);
* the schema in the file: whether the canary's categories are in the released domains;
* CTGAN's condition counts in the file: the released frequency of the token's category;
* the weights, against a shadow model: the attacker re-runs the published fit, with the
  hyper-parameters and the schema read from the file (``random_state`` included), on a
  public table that holds no token, and measures how far the first-layer weights of the
  token's input differ. Without secret noise, a token absent from the training table leaves
  that column on exactly the shadow's trajectory (TVAE: no row feeds it a gradient);
* TVAE also: the alignment of how far that column moved from its initial value (rebuilt from
  ``random_state``) with the canary's own gradient (descent moves a member's column against
  its gradient).

The numeric columns use the ``minmax`` encoder so the layout (hence the seeded initial
weights) does not depend on noisy histograms and the shadow shares it. The clipping norm is
small (``--clip 1e-3``): the noise is calibrated to it, so a missing clip shows as per-example
gradients far above the noise (any norm is a valid DP configuration).

Arms. The real pipelines must not be refuted; the self-tests inject one bug each into the DP
fit (for the attacker's shadow fit too: the attacker knows the code) and must be refuted at
the claimed epsilon with 95 % confidence:

* ``ctgan``, ``tvae``: DP at epsilon 1 with the public schema;
* ``no-noise`` (TVAE): the DP-SGD noise multiplier forced to 0;
* ``no-clip`` (TVAE): per-example clipping off (noise still calibrated to the clip norm);
* ``raw-histogram`` (CTGAN): metadata histograms released without noise or threshold;
* ``replayable-seed`` (TVAE): every secret seed a fixed function of the stream's name, as
  when the noise was seeded from ``random_state``;
* ``nondp``: the non-DP model, a negative control that must leak (not in ``--fast``);
* ``leaky``: DP at epsilon 1 with the schema inferred from the training table and declared
  public (a token's category exists only if its canary was included).

Statistics per arm: attack AUROC (all canaries, and per kind), TPR at 5 % FPR, and the one-run
epsilon lower bound at 95 % confidence, maximised over k+ in {10, 20, 50} with a Bonferroni
correction; ``p(claim)`` is the Bonferroni p-value of the claimed epsilon (refuted below 0.05).

    python benchmarks/privacy_audit.py --fast        # CI: real pipelines + the four self-tests
    python benchmarks/privacy_audit.py               # full: every arm, bigger fits

Exit status 1 when the control shows no leak, a real pipeline is refuted, or a self-test is not
refuted. The accountant's answers are memoised within a run (they depend on public settings
only: the shadow fit plans exactly the target's noise).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom, rankdata
from sklearn.metrics import roc_auc_score, roc_curve

import tabsynth
from tabsynth import Metadata
from tabsynth.datasets import make_patients
from tabsynth.models import _private
from tabsynth.privacy import budget, ledger, mechanisms

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
#: name -> (model, claimed epsilon or None, schema, injected bug or None)
ARMS = {
    "ctgan": ("ctgan", 1.0, "public", None),
    "tvae": ("tvae", 1.0, "public", None),
    "no-noise": ("tvae", 1.0, "public", "no-noise"),
    "no-clip": ("tvae", 1.0, "public", "no-clip"),
    "raw-histogram": ("ctgan", 1.0, "public", "raw-histogram"),
    "replayable-seed": ("tvae", 1.0, "public", "replayable-seed"),
    "nondp": ("tvae", None, "public", None),
    "leaky": ("tvae", 1.0, "inferred", None),
}
FAST_ARMS = ["ctgan", "tvae", "no-noise", "no-clip", "raw-histogram", "replayable-seed"]
K_GUESSES = (10, 20, 50)
CONFIDENCE = 0.95  # lower bounds, and the level at which a claim counts as refuted
CONTROL_MIN_EPSILON = 1.0  # the non-DP control must reach at least this bound


# ---------------------------------------------------------------------- data and canaries
def _frame(n: int, seed: int) -> pd.DataFrame:
    df = make_patients(n, random_state=seed)[COLUMNS].reset_index(drop=True)
    for col in TEXT:  # plain strings: a Categorical dtype would carry its own domain
        df[col] = df[col].astype(str).to_numpy(dtype=object)
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
    while len(combos) < n_combo:  # plain str: numpy.str_ from rng.choice would reach the data
        combo = tuple(str(domains[c][int(rng.integers(len(domains[c])))]) for c in COMBO_KEY)
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
    """The declared schema, written as a codebook: code lists (every token listed), clinical
    bounds; numeric columns use the ``minmax`` encoder (a layout free of noisy histograms)."""
    columns = []
    for col in CATEGORICAL:
        if col in ("smoker", "readmitted_30d"):
            columns.append({"name": col, "kind": "boolean"})
            continue
        domain = sorted(str(v) for v in public[col].unique())
        if col == "diagnosis":
            domain += sorted(str(v) for v in canaries.rows.loc[canaries.is_token, col])
        columns.append({"name": col, "kind": "categorical", "categories": domain})
    for col, (lo, hi) in BOUNDS.items():
        kind = "integer" if col == "age" else "continuous"
        columns.append({"name": col, "kind": kind, "lower": lo, "upper": hi, "encoder": "minmax"})
    meta = Metadata.from_dict({"columns": columns}).declare_public()
    meta.n_rows = n_public  # an approximate public count, not a function of the canaries
    return meta


def leaky_metadata(train: pd.DataFrame) -> Metadata:
    """The bug the audit must catch: facts learned from the private table, declared public."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the warning is the point of this arm
        meta = Metadata.infer(train).declare_public()
    meta.n_rows = len(train)
    return meta


# ---------------------------------------------------------------------- injected bugs
@contextlib.contextmanager
def injected(bug: str | None) -> Iterator[None]:
    """Run a DP fit with one bug, for the target and for the attacker's shadow alike."""
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(_Patch())
        if bug == "no-noise":  # past the budget guard, as a bug in the noise path would be
            from opacus.optimizers import optimizer_fast_gradient_clipping as fgc

            patch(fgc, "_generate_noise", lambda std, reference, *a, **k: reference * 0.0)
        elif bug == "no-clip":
            from tabsynth.models import ctgan as ctgan_module
            from tabsynth.models import tvae as tvae_module

            real_clip = ctgan_module.clip_linear_uses

            def no_clip(uses, max_grad_norm, module=None):
                return real_clip(uses, math.inf, module=module)

            for owner in (ctgan_module, tvae_module):  # each model clips in its own loop
                patch(owner, "clip_linear_uses", no_clip)
        elif bug == "raw-histogram":
            real_hist = _private.dp_histogram

            def raw_histogram(
                values, domain, sigma, threshold=None, *, rng, ledger, name, counts=None
            ):
                rel = real_hist(
                    values, domain, sigma, threshold, rng=rng, ledger=ledger, name=name,
                    counts=counts,
                )  # fmt: skip
                exact = (
                    mechanisms.category_counts(values, domain)
                    if counts is None
                    else np.asarray(counts, dtype=np.float64)
                )
                k = len(exact) - 1
                return mechanisms.HistogramRelease(
                    name, rel.categories, exact[:k], float(exact[k]), np.ones(k, bool), sigma, 0.0
                )

            patch(_private, "dp_histogram", raw_histogram)
        elif bug == "replayable-seed":
            patch(_private, "secret_seed", lambda purpose: zlib.crc32(purpose.encode()))
        elif bug is not None:
            raise ValueError(f"unknown bug {bug!r}")
        yield


class _Patch(contextlib.AbstractContextManager):
    def __init__(self) -> None:
        self.undo: list[tuple[object, str, object]] = []

    def __call__(self, obj: object, name: str, value: object) -> None:
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def __exit__(self, *exc: object) -> None:
        for obj, name, value in reversed(self.undo):
            setattr(obj, name, value)


@contextlib.contextmanager
def memoised_accounting() -> Iterator[None]:
    """The accountant is a pure function of public settings: memoise it for the run."""
    real = ledger.compose_epsilon
    cache: dict[str, tuple[float, str]] = {}

    def compose(history, delta, accountant="prv", **kw):
        key = repr((list(history), delta, accountant, sorted(kw.items())))
        if key not in cache:
            cache[key] = real(history, delta, accountant, **kw)
        return cache[key]

    with _Patch() as patch:
        patch(ledger, "compose_epsilon", compose)
        patch(budget, "compose_epsilon", compose)
        yield


# ---------------------------------------------------------------------- attack
def first_linear(model) -> torch.nn.Linear:
    module = model.vae_.encoder if hasattr(model, "vae_") else model.discriminator_
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear))


def token_inputs(model, tokens: list[str]) -> np.ndarray:
    """Index of each token's one-hot input in the first layer of the model's DP network."""
    tt = model.transformer_
    span = tt.category_span("diagnosis")
    idx = np.array([span.start + tt.category_position("diagnosis", t) for t in tokens])
    if hasattr(model, "vae_"):  # the encoder reads the columns in decoder order
        inverse = np.argsort(model._perm.cpu().numpy())
        idx = inverse[idx]
    return idx


def condition_counts(model, tokens: list[str]) -> np.ndarray | None:
    """The released condition frequency of each token (CTGAN's saved category counts)."""
    sampler = getattr(model, "_sampler", None)
    if sampler is None or "diagnosis" not in list(sampler.columns):
        return None
    counts = model._extra_state()["category_counts"]
    start = int(sampler.offsets[list(sampler.columns).index("diagnosis")])
    pos = [model.transformer_.category_position("diagnosis", t) for t in tokens]
    return np.asarray(counts, dtype=np.float64)[start + np.asarray(pos)]


def initial_model(model):
    """The model before training: the initial weights are seeded from ``random_state`` (in
    the file) for a layout fixed by the public schema, so the attacker rebuilds them."""
    from tabsynth.models import _nn
    from tabsynth.models.base import _int_seeds, _seed_from

    init = type(model)(**model.get_params())
    for name in ("metadata_", "transformer_", "device_", "batch_size_", "n_rows_fit_"):
        setattr(init, name, getattr(model, name))
    seed = _int_seeds(_seed_from(model.random_state), 4)[1]
    init._init_generator = _nn.make_generator(seed, "cpu")
    init._build()
    return init


def gradient_alignment(model, init, rows: pd.DataFrame, idx: np.ndarray) -> np.ndarray | None:
    """TVAE: cosine between how far each token's input column moved from its initial value
    and minus that canary's own gradient on it (descent moves a member's column so)."""
    if not hasattr(model, "vae_"):
        return None
    X = model.transformer_.transform(rows, dtype=np.float32)
    xp = torch.as_tensor(X, device=model.device_)[:, model._perm]
    noise = torch.zeros(len(rows), int(model.embedding_dim), device=model.device_)
    layer = first_linear(model)
    grads = torch.zeros(len(rows), layer.out_features, dtype=torch.float64)
    with torch.no_grad():
        for use in model._elbo_terms(xp, noise).uses:
            if use.layer is layer:
                a = use.inputs[torch.arange(len(rows)), torch.as_tensor(idx)]
                grads += (use.grad_out * a[:, None]).double().cpu()
    diff = (first_linear(model).weight - first_linear(init).weight).detach().double().cpu()
    cols = diff[:, torch.as_tensor(idx)].T  # (canaries, out)
    num = -(cols * grads).sum(1)
    den = cols.norm(dim=1) * grads.norm(dim=1) + 1e-300
    return (num / den).numpy()


def canary_scores(
    model, shadow, synth: pd.DataFrame, canaries: Canaries, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(ranking score, match count, per-statistic token AUROC) for every canary."""
    rows = canaries.rows
    m = len(rows)
    tok = canaries.is_token
    counts = np.zeros(m, dtype=np.int64)
    key = synth[CATEGORICAL].astype(str).agg("\x1f".join, axis=1).to_numpy()
    ckey = rows[CATEGORICAL].astype(str).agg("\x1f".join, axis=1).to_numpy()
    token_counts = pd.Series(synth["diagnosis"].astype(str)).value_counts()
    for i in range(m):
        if tok[i]:  # token canaries: the token alone identifies the canary
            counts[i] = int(token_counts.get(str(rows["diagnosis"].iat[i]), 0))
            continue
        hit = key == ckey[i]
        for col, (lo, hi) in BOUNDS.items():
            tol = MATCH_TOLERANCE * (hi - lo)
            hit &= np.abs(synth[col].to_numpy(dtype=float) - float(rows[col].iat[i])) <= tol
        counts[i] = int(hit.sum())
    stats: dict[str, np.ndarray] = {"samples": counts.astype(np.float64)}
    released = model.metadata_
    in_domain = np.ones(m, dtype=bool)
    for col in CATEGORICAL:
        cats = released[col].categories
        if cats is not None:
            in_domain &= rows[col].astype(str).isin({str(c) for c in cats}).to_numpy()
    stats["schema"] = in_domain.astype(np.float64)
    tokens = [str(t) for t in rows.loc[tok, "diagnosis"]]
    known = all(t in (released["diagnosis"].categories or []) for t in tokens)
    if known and shadow is not None:
        idx = token_inputs(model, tokens)
        freq = condition_counts(model, tokens)
        if freq is not None:
            stats["condition counts"] = _expand(freq, tok)
        w, ws = first_linear(model).weight.detach(), first_linear(shadow).weight.detach()
        diff = (w - ws)[:, torch.as_tensor(idx)].double().norm(dim=0).cpu().numpy()
        stats["weights vs shadow"] = _expand(diff, tok)
        align = gradient_alignment(model, initial_model(model), rows.loc[tok], idx)
        if align is not None:
            stats["gradient alignment"] = _expand(align, tok)
    y = canaries.included
    per_stat = {
        name: float(roc_auc_score(y[tok], np.nan_to_num(values[tok])))
        for name, values in stats.items()
        if len(np.unique(y[tok])) == 2
    }
    primary = _primary_statistic(stats, tok)
    score = np.zeros(m)
    score[tok] = 1.0 + rankdata(stats[primary][tok]) / tok.sum()  # tokens carry the audit
    score[~tok] = rankdata(stats["samples"][~tok]) / max((~tok).sum(), 1)
    score += 10.0 * (stats["schema"] > stats["schema"].min())  # a released domain is decisive
    per_stat["ranked by"] = primary  # type: ignore[assignment]
    return score + 1e-9 * rng.random(m), counts, per_stat  # random tie-breaking


def _primary_statistic(stats: dict[str, np.ndarray], tok: np.ndarray) -> str:
    """Which statistic ranks the tokens, chosen from the release alone (no labels).

    A weight column that equals the shadow's bit for bit was fed no data and no secret noise:
    if some do and some do not, that split is the membership. Else released condition
    frequencies that differ between tokens; else the gradient alignment (TVAE), the weight
    distance, and finally the synthetic rows.
    """
    weights = stats.get("weights vs shadow")
    if weights is not None:
        zero = weights[tok] == 0
        if zero.mean() >= 0.1 and not zero.all():
            return "weights vs shadow"
    counts = stats.get("condition counts")
    if counts is not None and np.ptp(counts[tok]) > 0:
        return "condition counts"
    for name in ("gradient alignment", "weights vs shadow"):
        if name in stats:
            return name
    return "samples"


def _expand(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(len(mask), np.nan)
    out[mask] = values
    return out


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
def fit_arm(model_name: str, claim, train: pd.DataFrame, meta: Metadata, args, seed: int):
    cls = tabsynth.CTGAN if model_name == "ctgan" else tabsynth.TVAE
    dims = (args.width, args.width)
    params = dict(
        batch_size=args.batch_size,
        epochs=args.epochs if claim is None else args.dp_epochs,
        verbose=False,
        random_state=seed,
        epsilon=claim,
    )
    if claim is not None:
        params["max_grad_norm"] = args.clip
    if model_name == "ctgan":
        params.update(generator_dim=dims, discriminator_dim=dims)
        if claim is not None:
            params["pac"] = 1  # DP trains with pac=1 anyway; say so instead of a warning
    else:
        params.update(compress_dims=dims, decompress_dims=dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(**params).fit(train, meta)


def run_arm(arm: str, args, data: dict) -> tuple[str, bool]:
    model_name, claim, schema, bug = ARMS[arm]
    canaries, train = data["canaries"], data["train"]
    meta = data["public_meta"] if schema == "public" else leaky_metadata(train)
    t1 = time.perf_counter()
    with injected(bug):
        model = fit_arm(model_name, claim, train, meta, args, seed=args.seed)
        fit_s = time.perf_counter() - t1
        with tempfile.TemporaryDirectory() as tmp:  # the attacker reads the model FILE
            path = Path(tmp) / "target.tsyn"
            model.save(path)
            loaded = tabsynth.load(path)
        shadow = None
        if claim is not None and schema == "public":
            # the attacker re-runs the published fit with the file's hyper-parameters and
            # schema on a public table without tokens
            params = loaded.get_params()
            cls = type(loaded)
            n_public = int(loaded.metadata_.n_rows)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                shadow = cls(**params).fit(data["public"].iloc[:n_public], loaded.metadata_)
    synth = loaded.sample(args.n_synth, random_state=args.seed + 1)
    rng = np.random.default_rng([args.seed, 3, zlib.crc32(arm.encode())])
    score, counts, per_stat = canary_scores(loaded, shadow, synth, canaries, rng)
    delta = loaded.privacy_report()["delta"] if claim is not None else 1e-5
    res = audit(score, counts, canaries, delta, claim)
    ledger_eps = f"{loaded.privacy_report()['epsilon']:.3f}" if claim is not None else "-"
    refuted = res.claim_p is not None and res.claim_p < 1 - CONFIDENCE
    if claim is None:
        ok = res.eps_lb > CONTROL_MIN_EPSILON
        verdict = "leaks (control ok)" if ok else "NO SIGNAL: attack or test broken"
    elif bug is None and schema == "public":
        ok = not refuted
        verdict = "claim not refuted" if ok else "CLAIM REFUTED: pipeline leak"
    else:
        ok = refuted
        verdict = "self-test refuted" if ok else "SELF-TEST MISSED the bug"
    tok, inc = canaries.is_token, canaries.included
    p_claim = "-" if res.claim_p is None else f"{res.claim_p:.2g}"
    stats = ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in per_stat.items()
    )
    line = (
        f"{arm:<15} {model_name:<5} {'-' if claim is None else f'{claim:g}':>5} {ledger_eps:>8} "
        f"{res.auroc:>6.3f} {res.auroc_token:>6.3f} {res.tpr_at_5fpr:>6.2f} {res.eps_lb:>8.3f} "
        f"{res.best[0]:>2}/{res.best[1]:<3} {p_claim:>9} {fit_s:>6.0f}  {verdict}"
        f"\n    token AUROC per statistic: {stats}; token matches: included mean "
        f"{counts[tok & inc].mean():.2f}, excluded {counts[tok & ~inc].mean():.2f}"
    )
    print(f"[{arm}: fit {fit_s:.0f} s, {verdict}]", file=sys.stderr, flush=True)
    return line, ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=None, help="comma list of " + ", ".join(ARMS))
    p.add_argument("--epochs", type=int, default=None, help="non-DP control epochs (300)")
    p.add_argument("--dp-epochs", type=int, default=None, help="DP arms epochs (30)")
    p.add_argument("--rows", type=int, default=None, help="base rows (3000)")
    p.add_argument("--canaries", type=int, default=200)
    p.add_argument("--n-synth", type=int, default=None, help="released rows (10000)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (500)")
    p.add_argument("--width", type=int, default=None, help="hidden width (256)")
    p.add_argument("--clip", type=float, default=1e-3, help="DP clipping norm (small: see docs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", "--quick", action="store_true", help="CI size (see the docstring)")
    args = p.parse_args(argv)
    fast = {"epochs": 30, "dp_epochs": 12, "rows": 1000, "width": 32, "n_synth": 2000,
            "batch_size": 250}  # fmt: skip
    full = {"epochs": 300, "dp_epochs": 30, "rows": 3000, "width": 256, "n_synth": 10_000,
            "batch_size": 500}  # fmt: skip
    for key, value in (fast if args.fast else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    default = FAST_ARMS if args.fast else list(ARMS)
    args.arms = default if args.arms is None else [a.strip() for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    return args


def prepare(args) -> dict:
    base = _frame(args.rows, args.seed)
    public = _frame(max(20_000, args.rows + args.canaries), args.seed + 10_000)  # code lists
    canaries = make_canaries(base, public, args.canaries, args.seed)
    train = training_table(base, canaries, args.seed)
    n_public = args.rows + args.canaries // 2
    return {
        "public": public,
        "canaries": canaries,
        "train": train,
        "public_meta": public_metadata(public, canaries, n_public),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    data = prepare(args)
    canaries = data["canaries"]
    print(
        f"one-run canary audit: base rows={args.rows}, m={args.canaries} canaries "
        f"({int(canaries.is_token.sum())} token), {int(canaries.included.sum())} included, "
        f"n_synth={args.n_synth}, seed={args.seed}, epochs non-DP={args.epochs} "
        f"DP={args.dp_epochs}, batch={args.batch_size}, width={args.width}, clip={args.clip}"
    )
    header = (
        f"{'arm':<15} {'model':<5} {'claim':>5} {'ledger':>8} {'AUROC':>6} {'token':>6} "
        f"{'TPR@5%':>6} {'eps_lb95':>8} {'v/k':>6} {'p(claim)':>9} {'fit s':>6}  verdict"
    )
    rows, failed = [], False
    with memoised_accounting():
        for arm in args.arms:
            try:
                line, ok = run_arm(arm, args, data)
            except Exception as exc:  # noqa: BLE001 - report every arm, then fail
                line, ok = f"{arm:<15} ERROR {type(exc).__name__}: {exc}", False
            rows.append(line)
            failed |= not ok
    print(header)
    print("\n".join(rows))
    print(
        f"eps_lb95: one-run bound at 95 % (max over k+ in {list(K_GUESSES)}, Bonferroni), "
        f"delta = the arm's delta (1e-5 for the control); p(claim): Bonferroni p-value of the "
        f"claimed epsilon, refuted below {1 - CONFIDENCE:.2f}. "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
