"""Seeded demo tables with realistic structure, generated offline.

The generators exist so that tests, examples and benchmarks have tables whose columns truly depend
on each other (so models and metrics have something to learn) and whose missing values are missing
*for a reason*, without a download. Everything is vectorised numpy driven by one
``np.random.Generator``; the global RNG state is never touched.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from tabsynth.errors import DataError

__all__ = [
    "make_patients",
    "make_loans",
    "load_demo",
    "write_demo_parquet",
    "DEMO_NAMES",
    "DEMO_TARGETS",
    "DIABETES_CODES",
]

RandomState = int | np.random.Generator | np.random.SeedSequence | None

# ---------------------------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------------------------

# code, ward, typical LOS (days), mean age, sd age, P(female), log CRP (mg/L), readmission logit
# shift, chronic (0/1), P(icu), smoking shift. Ordered by frequency rank (Zipf-like weights).
_DIAGNOSES: tuple[tuple, ...] = (
    ("I10", "cardiology", 2.0, 66, 12, 0.52, 1.0, 0.1, 1, 0.01, 0.05),
    ("E11.9", "endocrinology", 3.0, 62, 12, 0.48, 1.3, 0.2, 1, 0.01, 0.03),
    ("J18.9", "pulmonology", 5.0, 68, 18, 0.48, 4.4, 0.3, 0, 0.08, 0.08),
    ("I50.9", "cardiology", 6.0, 75, 10, 0.47, 2.0, 0.8, 1, 0.06, 0.05),
    ("N39.0", "general_medicine", 3.0, 70, 18, 0.70, 3.7, 0.2, 0, 0.02, 0.0),
    ("J44.1", "pulmonology", 5.0, 70, 9, 0.45, 3.0, 0.6, 1, 0.07, 0.45),
    ("I48.91", "cardiology", 3.0, 72, 10, 0.46, 1.2, 0.3, 1, 0.03, 0.04),
    ("A41.9", "general_medicine", 8.0, 70, 15, 0.47, 5.0, 0.5, 0, 0.35, 0.03),
    ("I21.4", "cardiology", 4.0, 67, 11, 0.36, 2.0, 0.4, 0, 0.20, 0.15),
    ("E11.65", "endocrinology", 4.0, 60, 13, 0.47, 1.5, 0.4, 1, 0.04, 0.03),
    ("K80.20", "surgery", 3.0, 52, 15, 0.65, 2.5, 0.0, 0, 0.01, 0.0),
    ("S72.001A", "orthopedics", 7.0, 81, 9, 0.70, 2.3, 0.3, 0, 0.04, 0.0),
    ("I63.9", "neurology", 6.0, 73, 12, 0.50, 1.8, 0.4, 0, 0.10, 0.08),
    ("K35.80", "surgery", 2.0, 28, 14, 0.45, 3.8, -0.5, 0, 0.01, 0.0),
    ("O80", "obstetrics", 2.0, 30, 5, 1.00, 1.5, -1.0, 0, 0.00, -0.08),
    ("J45.901", "pulmonology", 2.0, 30, 20, 0.58, 1.6, 0.0, 1, 0.03, 0.05),
    ("E10.9", "endocrinology", 3.0, 30, 15, 0.47, 1.1, 0.3, 1, 0.02, 0.0),
    ("E11.22", "nephrology", 5.0, 68, 10, 0.45, 2.0, 0.6, 1, 0.05, 0.03),
    ("N17.9", "nephrology", 6.0, 72, 12, 0.45, 2.6, 0.6, 0, 0.12, 0.02),
    ("K92.2", "general_medicine", 4.0, 68, 14, 0.42, 1.8, 0.3, 0, 0.10, 0.05),
    ("L03.90", "general_medicine", 4.0, 55, 18, 0.45, 4.1, 0.1, 0, 0.01, 0.03),
    ("E86.0", "general_medicine", 2.0, 45, 30, 0.52, 1.5, 0.0, 0, 0.02, 0.0),
    ("J21.9", "pediatrics", 3.0, 1, 1, 0.45, 2.5, -0.3, 0, 0.05, -0.2),
    ("R55", "general_medicine", 2.0, 65, 18, 0.52, 1.0, 0.0, 0, 0.01, 0.0),
    ("R07.9", "cardiology", 1.0, 55, 14, 0.45, 0.9, -0.2, 0, 0.00, 0.08),
    ("K85.90", "general_medicine", 5.0, 50, 15, 0.42, 4.6, 0.3, 0, 0.12, 0.05),
    ("E11.52", "surgery", 9.0, 66, 11, 0.35, 3.5, 0.7, 1, 0.05, 0.15),
    ("M17.11", "orthopedics", 3.0, 68, 9, 0.60, 1.0, -0.4, 0, 0.01, 0.0),
    ("C34.90", "oncology", 7.0, 68, 9, 0.45, 3.0, 0.8, 1, 0.06, 0.40),
    ("C18.9", "oncology", 8.0, 69, 11, 0.45, 2.6, 0.6, 1, 0.05, 0.05),
    ("F10.239", "general_medicine", 4.0, 47, 11, 0.25, 1.6, 0.7, 1, 0.08, 0.35),
    ("G40.909", "neurology", 3.0, 40, 20, 0.48, 1.0, 0.2, 1, 0.05, 0.05),
    ("I26.99", "pulmonology", 5.0, 62, 15, 0.52, 2.9, 0.2, 0, 0.10, 0.05),
    ("K56.609", "surgery", 6.0, 65, 15, 0.52, 3.0, 0.3, 0, 0.06, 0.0),
    ("E87.1", "general_medicine", 4.0, 75, 12, 0.60, 1.4, 0.3, 0, 0.04, 0.02),
    ("D64.9", "general_medicine", 3.0, 70, 15, 0.58, 1.8, 0.3, 1, 0.02, 0.0),
    ("E11.10", "endocrinology", 4.0, 45, 15, 0.47, 2.2, 0.5, 1, 0.40, 0.03),
    ("E10.10", "endocrinology", 3.0, 22, 10, 0.50, 2.2, 0.5, 1, 0.50, 0.0),
    ("O24.410", "obstetrics", 3.0, 32, 5, 1.00, 1.6, -0.6, 0, 0.00, -0.08),
    ("N40.1", "surgery", 2.0, 70, 9, 0.00, 1.2, -0.2, 1, 0.00, 0.03),
    ("S06.0X0A", "neurology", 1.0, 35, 22, 0.40, 1.0, -0.3, 0, 0.04, 0.05),
    ("T39.1X2A", "general_medicine", 2.0, 30, 13, 0.60, 1.0, 0.4, 0, 0.30, 0.10),
    ("K57.32", "surgery", 4.0, 62, 13, 0.55, 4.0, 0.1, 0, 0.02, 0.05),
    ("I70.262", "surgery", 8.0, 72, 10, 0.38, 3.3, 0.7, 1, 0.05, 0.40),
    ("U07.1", "pulmonology", 7.0, 65, 17, 0.45, 3.9, 0.4, 0, 0.18, 0.02),
    ("J10.1", "pulmonology", 4.0, 55, 25, 0.50, 3.2, 0.1, 0, 0.06, 0.05),
    ("E11.649", "endocrinology", 2.0, 70, 10, 0.50, 1.2, 0.4, 1, 0.05, 0.02),
    ("E13.9", "endocrinology", 3.0, 55, 15, 0.50, 1.3, 0.2, 1, 0.02, 0.03),
    ("P59.9", "pediatrics", 2.0, 0, 0.3, 0.45, 0.5, -0.5, 0, 0.01, -0.2),
    ("Z51.11", "oncology", 2.0, 60, 12, 0.55, 1.8, 0.5, 1, 0.01, 0.08),
)

_DX_CODES = tuple(row[0] for row in _DIAGNOSES)
#: Diagnosis codes (ICD-10 E10/E11/E13/O24) for which HbA1c is measured.
DIABETES_CODES: frozenset[str] = frozenset(
    c for c in _DX_CODES if c.startswith(("E10", "E11", "E13", "O24"))
)
_WARDS = (
    "cardiology",
    "endocrinology",
    "general_medicine",
    "icu",
    "nephrology",
    "neurology",
    "obstetrics",
    "oncology",
    "orthopedics",
    "pediatrics",
    "pulmonology",
    "surgery",
)
_INSURANCE = ("medicare", "medicaid", "private", "self-pay", "uninsured")
_SECONDS_PER_DAY = 86_400
_PATIENT_START = np.datetime64("2015-01-01T00:00:00", "s")
_PATIENT_END = np.datetime64("2025-01-01T00:00:00", "s")
_COVID_START = np.datetime64("2020-03-01T00:00:00", "s")

# ---------------------------------------------------------------------------------------------
# Loans
# ---------------------------------------------------------------------------------------------

_GRADES = ("A", "B", "C", "D", "E", "F", "G")
_GRADE_BASE_RATE = np.array([6.5, 9.8, 13.2, 16.9, 20.4, 24.1, 27.9])
_GRADE_CUTS = np.array([760.0, 725.0, 695.0, 665.0, 635.0, 605.0])  # score >= cut -> better grade
_EMPLOYMENT = ("employed", "self-employed", "unemployed", "retired", "student")
_EMPLOYMENT_P = np.array([0.62, 0.12, 0.06, 0.12, 0.08])
_INCOME_LOG_MEDIAN = np.log([58_000.0, 62_000.0, 14_000.0, 38_000.0, 11_000.0])
_INCOME_LOG_SD = np.array([0.5, 0.75, 0.6, 0.45, 0.5])
_INCOME_MISSING_P = np.array([0.02, 0.10, 0.75, 0.06, 0.65])
_HOME = ("RENT", "MORTGAGE", "OWN", "OTHER")
_PURPOSES = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "major_purchase",
    "medical",
    "car",
    "small_business",
    "education",
    "other",
)
_PURPOSE_LOGIT = np.log([0.45, 0.20, 0.06, 0.05, 0.04, 0.06, 0.02, 0.02, 0.07])
_PURPOSE_AMOUNT = np.array([0.15, 0.0, 0.25, 0.05, -0.3, 0.0, 0.45, -0.1, -0.4])
_LOAN_START = np.datetime64("2016-01-01", "D")
_LOAN_END = np.datetime64("2024-01-01", "D")

DEMO_NAMES: tuple[str, ...] = ("patients", "loans")
#: the target column of each demo table (the demo and the benchmark predict it)
DEMO_TARGETS: dict[str, str] = {"patients": "readmitted_30d", "loans": "default"}


def _check_n_rows(n_rows: object) -> int:
    if isinstance(n_rows, bool) or not isinstance(n_rows, numbers.Integral) or n_rows < 0:
        raise DataError(f"n_rows must be a non-negative integer, got {n_rows!r}")
    return int(n_rows)


def _rng(random_state: RandomState) -> np.random.Generator:
    """A private generator: seeds and SeedSequences are expanded, a Generator is used as given."""
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"random_state must be None, an int, a SeedSequence or a numpy Generator, "
            f"got {random_state!r}"
        ) from exc


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix (rows need not sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    idx = (u[:, None] >= cum).sum(axis=1)
    return np.minimum(idx, probs.shape[1] - 1)


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(rng: np.random.Generator, prefix: str, n: int, min_width: int) -> pd.Series:
    """Unique random ids like ``P0004711``: distinct numbers from a space at least 10x larger."""
    width = max(min_width, len(str(max(n, 1))) + 1)
    values = rng.choice(10**width, size=n, replace=False)
    digits = np.empty((n, width), dtype=np.uint8)
    for pos in range(width - 1, -1, -1):  # one vectorised pass per digit, not per row
        values, digit = np.divmod(values, 10)
        digits[:, pos] = digit + ord("0")
    body = digits.view(f"S{width}").reshape(n)
    ids = np.char.add(prefix.encode(), body).astype(str).astype(object)
    return pd.Series(ids, dtype=str)


def _categorical(codes: np.ndarray, categories: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=list(categories))


def make_patients(n_rows: int = 5000, random_state: RandomState = None) -> pd.DataFrame:
    """Hospital admissions with clinically plausible dependencies and structured missingness.

    Diagnosis drives age, sex, ward, length of stay, CRP and readmission; HbA1c is measured only
    for diabetes diagnoses (missing otherwise); ``bmi`` and ``height_cm`` are missing together and
    ``bmi == weight_kg / (height_cm / 100) ** 2`` (rounded to 0.1); ``length_of_stay_days`` equals
    the whole days between ``admitted_at`` and ``discharged_at``.
    """
    n = _check_n_rows(n_rows)
    rng = _rng(random_state)
    table = list(zip(*_DIAGNOSES, strict=True))
    codes = table[0]
    ward_of_dx = np.array([_WARDS.index(w) for w in table[1]])
    los_dx, age_mu, age_sd, p_female, crp_dx, readmit_dx, chronic_dx, icu_dx, smoke_dx = (
        np.asarray(col, dtype=float) for col in table[2:]
    )
    is_diab_code = np.array([c in DIABETES_CODES for c in codes])
    dx_shift = np.zeros(len(codes))
    dx_shift[codes.index("E11.10")] = dx_shift[codes.index("E10.10")] = 250.0  # ketoacidosis
    hypo = codes.index("E11.649")
    hypertension = np.isin(np.array(codes), ["I10", "I50.9", "I63.9", "E11.22", "N17.9"])

    # Diagnosis: Zipf-like frequencies over the listed order.
    weights = 1.0 / np.arange(1, len(codes) + 1) ** 1.05
    dx = rng.choice(len(codes), size=n, p=weights / weights.sum())

    # Truncated (not clipped) normal ages: clipping would pile the tails of wide diagnoses
    # onto exactly 0 and 100 years, a spike that models then faithfully reproduce.
    lo_p, hi_p = ndtr((-0.5 - age_mu[dx]) / age_sd[dx]), ndtr((100.49 - age_mu[dx]) / age_sd[dx])
    age_z = ndtri(lo_p + rng.random(n) * (hi_p - lo_p))
    age = np.clip(np.rint(age_mu[dx] + age_sd[dx] * age_z), 0, 100).astype(np.int64)
    female = rng.random(n) < p_female[dx]
    male = ~female
    child = age < 16

    # Ward: the diagnosis' ward, children mostly in paediatrics, severe cases in the ICU.
    ward = ward_of_dx[dx].copy()
    ward[child & (rng.random(n) < 0.9)] = _WARDS.index("pediatrics")
    icu = rng.random(n) < np.clip(icu_dx[dx] + 0.002 * (age - 50), 0.0, 0.9)
    ward[icu] = _WARDS.index("icu")

    # Admission over 2015-2024 (COVID-19 only from March 2020), second resolution.
    start = np.where(np.array(codes)[dx] == "U07.1", _COVID_START, _PATIENT_START)
    span = (_PATIENT_END - start).astype(np.int64)
    admitted = start + (rng.random(n) * span).astype(np.int64).astype("timedelta64[s]")
    log_los = np.log(los_dx[dx]) + 0.006 * (age - 50) + 0.5 * icu + rng.normal(0.0, 0.55, n)
    los = np.clip(np.floor(np.exp(log_los)), 0, 180).astype(np.int64)
    within_day = rng.integers(0, _SECONDS_PER_DAY, n)
    discharged = admitted + (los * _SECONDS_PER_DAY + within_day).astype("timedelta64[s]")

    # Diabetes: always for diabetes diagnoses, otherwise an age-dependent comorbidity.
    p_comorbid = np.clip(0.02 + 0.003 * (age - 30), 0.01, 0.25)
    true_diab = is_diab_code[dx] | (rng.random(n) < p_comorbid)
    diab_unknown = ~is_diab_code[dx] & (rng.random(n) < 0.04)
    chronic_glucose = np.where(
        true_diab, rng.normal(165.0, 40.0, n), rng.normal(95.0, 10.0, n)
    ).clip(70.0, 400.0)
    glucose = chronic_glucose + np.where(true_diab, dx_shift[dx], 0.0) + rng.normal(0.0, 12.0, n)
    glucose = np.where(dx == hypo, rng.normal(52.0, 8.0, n), glucose)
    glucose = np.round(np.clip(glucose, 25.0, 900.0), 0)
    # ADAG relation: mean glucose = 28.7 * HbA1c - 46.7.
    hba1c_val = np.round(
        np.clip((chronic_glucose + 46.7) / 28.7 + rng.normal(0.0, 0.5, n), 4.0, 16.0), 1
    )
    hba1c = pd.arrays.FloatingArray(hba1c_val, ~is_diab_code[dx])

    smoke_p = np.where(child, 0.0, 0.13 + 0.07 * male + smoke_dx[dx])
    smoker = rng.random(n) < np.clip(smoke_p, 0.0, 0.95)

    sbp = 105.0 + 0.45 * age + 9.0 * hypertension[dx] + 4.0 * smoker + 3.0 * male
    sbp = np.round(sbp + rng.normal(0.0, 14.0, n), 1)

    crp = np.round(np.clip(np.exp(crp_dx[dx] + 0.4 * icu + rng.normal(0.0, 1.0, n)), 0.1, 500.0), 1)

    # Body size: height by sex and age, BMI by age and diabetes, weight implied.
    adult_h = np.where(male, rng.normal(176.0, 7.0, n), rng.normal(163.0, 6.5, n))
    growth = np.minimum(1.0, 0.30 + 0.70 * (np.minimum(age, 17) / 17.0) ** 0.75)
    height = np.round(adult_h * growth, 1)
    bmi_true = np.where(
        age < 18,
        15.5 + 0.35 * age + rng.normal(0.0, 2.5, n),
        26.5 + 3.5 * true_diab + 0.5 * male + rng.normal(0.0, 5.0, n),
    ).clip(12.0, 60.0)
    weight = np.round(bmi_true * (height / 100.0) ** 2, 1)
    bmi = np.round(weight / (height / 100.0) ** 2, 1)
    no_height = rng.random(n) < 0.04 + 0.12 * icu
    bmi[no_height] = np.nan
    height[no_height] = np.nan

    prior = rng.poisson(np.exp(-0.8 + 0.015 * age + 0.5 * chronic_dx[dx] + 0.3 * true_diab))
    meds = rng.poisson(1.0 + 0.06 * age + 2.0 * true_diab + 1.5 * chronic_dx[dx] + 0.3 * prior)
    meds_missing = rng.random(n) < 0.05 + 0.05 * icu

    # Readmission as a clinical risk score would model it (LACE/HOSPITAL-like): long stays,
    # age, high-risk diagnoses, frequent prior visits, inflammation (CRP), poor glucose control
    # and polypharmacy raise the risk. Strong enough that a model trained on real rows reaches a
    # ROC AUC around 0.8, so the demo's utility comparison has signal to preserve.
    readmit_logit = (
        -5.8
        + 0.9 * np.log1p(np.minimum(los, 60))
        + 0.03 * (age - 50)
        + 1.8 * readmit_dx[dx]
        + 0.3 * np.minimum(prior, 8)
        + 0.45 * (np.log(crp) - 2.0)
        + 0.8 * (glucose > 200)
        + 0.07 * np.minimum(meds, 15)
        + 0.5 * icu
    )
    readmitted = rng.random(n) < _sigmoid(readmit_logit)

    # Insurance: medicare for the elderly, medicaid more common for children.
    age_group = np.where(age >= 65, 0, np.where(age < 18, 1, 2))
    ins_p = np.array(
        [
            [0.85, 0.03, 0.10, 0.02, 0.00],  # 65+
            [0.00, 0.42, 0.55, 0.01, 0.02],  # children
            [0.02, 0.22, 0.60, 0.10, 0.06],  # other adults
        ]
    )[age_group]
    insurance = np.array(_INSURANCE, dtype=object)[_choice_rows(rng, ins_p)]

    patient_id = _ids(rng, "P", n, 7)
    return pd.DataFrame(
        {
            "patient_id": patient_id,
            "age": age,
            "sex": _categorical(male.astype(np.int8), ("F", "M")),
            "diagnosis": _categorical(dx, codes),
            "ward": _categorical(ward, _WARDS),
            "admitted_at": admitted.astype("datetime64[ns]"),
            "discharged_at": discharged.astype("datetime64[ns]"),
            "length_of_stay_days": los,
            "systolic_bp": sbp,
            "glucose": glucose,
            "hba1c": hba1c,
            "diabetic": pd.arrays.BooleanArray(true_diab, diab_unknown),
            "crp": crp,
            "height_cm": height,
            "weight_kg": weight,
            "bmi": bmi,
            "smoker": smoker,
            "n_prior_visits": prior.astype(np.int64),
            "n_medications": pd.arrays.IntegerArray(meds.astype(np.int64), meds_missing),
            "insurance": pd.Series(insurance, dtype=str),
            "readmitted_30d": readmitted,
        }
    )


def make_loans(n_rows: int = 5000, random_state: RandomState = None) -> pd.DataFrame:
    """Consumer loans where grade, rate and default follow from income, debt and employment.

    ``annual_income`` is missing mostly for students and the unemployed (missing for a reason);
    ``employment_length_years`` is missing exactly for them; ``has_mortgage`` is true for every
    ``MORTGAGE`` home owner; the default rate rises with grade, debt-to-income and low income.
    """
    n = _check_n_rows(n_rows)
    rng = _rng(random_state)

    emp = rng.choice(len(_EMPLOYMENT), size=n, p=_EMPLOYMENT_P)
    employed, self_emp, unemployed, retired, student = (emp == k for k in range(5))
    emp_len = np.select(
        [employed, self_emp, retired],
        [rng.gamma(2.0, 3.5, n), rng.gamma(2.5, 4.0, n), rng.gamma(8.0, 4.0, n)],
        default=0.0,
    )
    emp_len = np.floor(np.clip(emp_len, np.where(retired, 10, 0), 50)).astype(np.int64)
    emp_len_missing = unemployed | student

    log_income = (
        _INCOME_LOG_MEDIAN[emp]
        + 0.015 * np.minimum(emp_len, 25) * (employed | self_emp)
        + _INCOME_LOG_SD[emp] * rng.standard_normal(n)
    )
    income = np.round(np.exp(log_income), 0)
    rel_income = log_income - np.log(50_000.0)
    income_missing = rng.random(n) < _INCOME_MISSING_P[emp]

    home_logit = np.zeros((n, len(_HOME))) + np.log([0.42, 0.38, 0.15, 0.05])
    home_logit[:, 1] += 1.0 * rel_income
    home_logit[:, 2] += 1.5 * retired + 0.3 * rel_income
    home_logit[:, 0] += 2.0 * student
    home_logit[:, 3] += 1.5 * student + 0.5 * unemployed
    home = _choice_rows(rng, _softmax_rows(home_logit))
    has_mortgage = (home == 1) | ((home == 3) & (rng.random(n) < 0.15))

    purpose_logit = np.zeros((n, len(_PURPOSES))) + _PURPOSE_LOGIT
    purpose_logit[:, 2] += 1.2 * ((home == 1) | (home == 2))
    purpose_logit[:, 6] += 2.5 * self_emp
    purpose_logit[:, 7] += 3.5 * student
    purpose_logit[:, 4] += 0.8 * retired
    purpose = _choice_rows(rng, _softmax_rows(purpose_logit))

    dti = rng.gamma(4.0, 4.5, n) * np.exp(-0.25 * rel_income) + 3.0 * has_mortgage
    dti = np.round(np.clip(dti, 0.0, 60.0), 2)
    n_open = 1 + rng.poisson(np.exp(np.log(8.0) + 0.2 * rel_income - 0.5 * student))

    score = (
        700.0
        + 50.0 * rng.standard_normal(n)
        - 0.9 * (dti - 18.0)
        + 15.0 * rel_income
        - 25.0 * unemployed
        + 0.8 * np.minimum(emp_len, 20)
    )
    credit_score = np.clip(np.rint(score), 300, 850).astype(np.int64)
    grade = (score + rng.normal(0.0, 15.0, n) < _GRADE_CUTS[:, None]).sum(axis=0)

    days = (_LOAN_END - _LOAN_START).astype(np.int64)
    issue = _LOAN_START + rng.integers(0, days, n).astype("timedelta64[D]")
    year = issue.astype("datetime64[Y]").astype(np.int64) + 1970

    log_amount = np.log(12_000.0) + 0.35 * rel_income + _PURPOSE_AMOUNT[purpose]
    amount = np.round(np.clip(np.exp(log_amount + 0.6 * rng.standard_normal(n)), 1000, 40000), 2)
    long_term = rng.random(n) < _sigmoid(-1.2 + 1.3 * np.log(amount / 15_000.0))
    term = np.where(long_term, 60, 36).astype(np.int64)
    rate = _GRADE_BASE_RATE[grade] + 0.9 * long_term + 1.5 * (year >= 2022)
    rate = np.round(np.clip(rate + rng.normal(0.0, 0.5, n), 5.0, 31.0), 2)

    default_logit = (
        -3.6
        + 0.45 * grade
        + 0.03 * (dti - 18.0)
        - 0.35 * rel_income
        + 0.35 * long_term
        + 0.6 * unemployed
    )
    default = rng.random(n) < _sigmoid(default_logit)

    loan_id = _ids(rng, "L", n, 8)
    return pd.DataFrame(
        {
            "loan_id": loan_id,
            "issue_date": issue.astype("datetime64[ns]"),
            "amount": amount,
            "term_months": term,
            "interest_rate": rate,
            "grade": _categorical(grade, _GRADES),
            "credit_score": credit_score,
            "employment_type": pd.Series(np.array(_EMPLOYMENT, dtype=object)[emp], dtype=str),
            "employment_length_years": pd.arrays.IntegerArray(emp_len, emp_len_missing),
            "annual_income": pd.arrays.FloatingArray(income, income_missing),
            "home_ownership": _categorical(home, _HOME),
            "has_mortgage": has_mortgage,
            "purpose": _categorical(purpose, _PURPOSES),
            "dti": dti,
            "n_open_accounts": n_open.astype(np.int64),
            "default": default,
        }
    )


_GENERATORS = {"patients": make_patients, "loans": make_loans}


def load_demo(name: str, n_rows: int = 5000, random_state: RandomState = None) -> pd.DataFrame:
    """Generate a demo table by name (``"patients"`` or ``"loans"``), e.g. for the CLI."""
    try:
        generator = _GENERATORS[name]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown demo dataset {name!r}; choose one of {', '.join(DEMO_NAMES)}"
        ) from None
    return generator(n_rows=n_rows, random_state=random_state)


_ID_COLUMNS = {"patients": ("patient_id", "P"), "loans": ("loan_id", "L")}


def write_demo_parquet(
    name: str,
    path: str | os.PathLike,
    n_rows: int,
    random_state: int | None = 0,
    chunk_rows: int = 250_000,
) -> Path:
    """Write a demo table of ``n_rows`` rows to one Parquet file, a chunk at a time.

    For tables larger than memory (the out-of-core benchmarks): memory is bounded by one chunk
    of ``chunk_rows`` rows, each chunk is a row group generated from its own child seed of
    ``random_state``, and the id column is numbered across chunks so ids stay unique.
    """
    from tabsynth.datasets.io import ChunkedTableWriter

    n = _check_n_rows(n_rows)
    generator = _GENERATORS.get(name)
    if generator is None:
        raise DataError(f"unknown demo dataset {name!r}; choose one of {', '.join(DEMO_NAMES)}")
    chunk = _check_n_rows(chunk_rows)
    n_chunks = -(-n // chunk)
    seeds = np.random.SeedSequence(random_state).spawn(n_chunks)
    id_col, prefix = _ID_COLUMNS[name]
    width = len(str(n)) + 1
    with ChunkedTableWriter(path) as writer:  # one row group per chunk, renamed into place
        for i, seed in enumerate(seeds):
            lo = i * chunk
            df = generator(n_rows=min(chunk, n - lo), random_state=np.random.default_rng(seed))
            numbers = np.arange(lo + 1, lo + len(df) + 1).astype(str)
            df[id_col] = pd.Series(np.char.add(prefix, np.char.zfill(numbers, width)), dtype=str)
            writer.write(df)
    return Path(path)
