"""CTGAN: training mechanics, fit-time validation and the vectorised internals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tabsynth import Metadata
from tabsynth.datasets import make_patients
from tabsynth.errors import (
    DataError,
    HyperParameterError,
    MetadataError,
    NotFittedError,
    PrivacyError,
)
from tabsynth.models import CTGAN
from tabsynth.models._nn import SpanLayout
from tabsynth.models.ctgan import _ConditionSampler
from tabsynth.transform.compact import CompactTable

TINY = dict(
    epochs=2,
    batch_size=100,
    pac=5,
    embedding_dim=16,
    generator_dim=(32, 32),
    discriminator_dim=(32,),
    verbose=False,
)


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return make_patients(300, random_state=0)


@pytest.fixture(scope="module")
def fitted(patients: pd.DataFrame) -> CTGAN:
    return CTGAN(random_state=0, **TINY).fit(patients)


def test_fit_sample_round_trip_keeps_columns_and_dtypes(mixed_frame: pd.DataFrame) -> None:
    model = CTGAN(random_state=1, **TINY).fit(mixed_frame)
    out = model.sample(64)
    assert len(out) == 64
    assert list(out.columns) == list(mixed_frame.columns)
    assert out.dtypes.to_dict() == mixed_frame.dtypes.to_dict()
    assert out["row_id"].is_unique


def test_history_timings_and_device(fitted: CTGAN) -> None:
    h = fitted.history_
    assert list(h.columns) == ["epoch", "generator_loss", "discriminator_loss", "seconds"]
    assert h["epoch"].tolist() == [0, 1]
    assert np.isfinite(h[["generator_loss", "discriminator_loss"]].to_numpy()).all()
    assert (h["seconds"] > 0).all()
    assert set(fitted.timings_) >= {"preprocess_s", "train_s"}
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert fitted.device_.type == expected


def test_hyper_parameters_are_stored_untouched() -> None:
    model = CTGAN(generator_dim=(8, 4), pac=3, batch_size=7)
    assert model.generator_dim == (8, 4) and model.pac == 3 and model.batch_size == 7
    assert model.get_params()["generator_dim"] == (8, 4)
    assert "pac=3" in repr(model)


def test_verbose_shows_progress(patients: pd.DataFrame, capsys: pytest.CaptureFixture) -> None:
    CTGAN(random_state=0, **{**TINY, "verbose": True, "epochs": 1}).fit(patients)
    err = capsys.readouterr().err
    assert "CTGAN" in err and "generator_loss" in err
    CTGAN(random_state=0, **{**TINY, "epochs": 1}).fit(patients)
    assert capsys.readouterr().err == ""


def test_too_few_rows_adapts_batch_size_with_warning(patients: pd.DataFrame) -> None:
    small = patients.head(40)
    with pytest.warns(UserWarning, match="fewer than batch_size"):
        model = CTGAN(random_state=0, **{**TINY, "epochs": 1, "batch_size": 500}).fit(small)
    assert model.batch_size_ == 40
    assert len(model.sample(10)) == 10


def test_batch_size_not_multiple_of_pac_is_rounded(patients: pd.DataFrame) -> None:
    with pytest.warns(UserWarning, match="not a multiple of pac"):
        model = CTGAN(random_state=0, **{**TINY, "epochs": 1, "batch_size": 98}).fit(patients)
    assert model.batch_size_ == 100


def test_epsilon_needs_a_public_schema(patients: pd.DataFrame) -> None:
    # inferred metadata is learned from the data: DP refuses it and lists what to declare
    with pytest.raises(PrivacyError, match="public schema.*'age': kind, nullable, lower, upper"):
        CTGAN(epsilon=1.0, **{**TINY, "pac": 1}).fit(patients, Metadata.infer(patients))
    with pytest.raises(PrivacyError, match="metadata=None would infer"):  # before any row
        CTGAN(epsilon=1.0, **{**TINY, "pac": 1}).fit(patients)


def test_frame_not_matching_metadata(patients: pd.DataFrame) -> None:
    meta = Metadata.infer(patients)
    bad = patients.drop(columns=["age"]).assign(extra_col=1)
    with pytest.raises(MetadataError, match="age") as info:
        CTGAN(**TINY).fit(bad, meta)
    assert "extra_col" in str(info.value)


def test_bad_inputs_at_fit(patients: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="DataFrame"):
        CTGAN(**TINY).fit(patients.to_numpy())
    # a bad setting is a HyperParameterError, not a DataError ("your table")
    with pytest.raises(HyperParameterError, match="pac must be a positive int, got 0"):
        CTGAN(**{**TINY, "pac": 0}).fit(patients)
    with pytest.raises(HyperParameterError, match="generator_dim"):
        CTGAN(**{**TINY, "generator_dim": "big"}).fit(patients)
    with pytest.raises(HyperParameterError, match="random_state"):
        CTGAN(**{**TINY, "random_state": -3}).fit(patients)
    with pytest.raises(HyperParameterError, match="generator_lr must be a positive finite"):
        CTGAN(**{**TINY, "generator_lr": float("nan")}).fit(patients)
    with pytest.raises(HyperParameterError, match="epochs"):
        CTGAN(**{**TINY, "epochs": 0}).fit(patients)


def test_sample_before_fit() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        CTGAN().sample(5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_cuda_request_without_cuda_warns_and_uses_cpu(patients: pd.DataFrame) -> None:
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        model = CTGAN(device="cuda", random_state=0, **{**TINY, "epochs": 1}).fit(patients)
    assert model.device_.type == "cpu"


# -- vectorised internals -------------------------------------------------------------------


def test_condition_sampler_rows_have_the_drawn_category(fitted: CTGAN, patients) -> None:
    tt = fitted.transformer_
    X = torch.as_tensor(tt.transform(patients))
    sampler = _ConditionSampler(tt, torch.device("cpu"))
    sampler.fit(CompactTable.from_dense(X.numpy(), tt.spans_))
    gen = torch.Generator().manual_seed(0)
    g = sampler.draw_conditions(5000, gen, log_frequency=True, training=True)
    rows = sampler.draw_rows(g, gen)
    col = sampler.col_of[g]
    # the category of every drawn row in the drawn column is the drawn category
    pos = sampler.out_index[col]
    values = torch.gather(X[rows], 1, pos).masked_fill(~sampler.out_valid[col], -1)
    assert torch.equal(values.argmax(1), g - sampler.offset_of[g])
    # every discrete column gets drawn (uniform choice of column)
    assert set(col.tolist()) == set(range(len(sampler.columns)))


def test_conditions_derived_from_rows(fitted: CTGAN, patients: pd.DataFrame) -> None:
    tt = fitted.transformer_
    X = torch.as_tensor(tt.transform(patients))
    sampler = fitted._sampler
    g = sampler.conditions_of_rows(X, torch.Generator().manual_seed(3))
    col = sampler.col_of[g]
    for i in range(0, len(X), 37):  # spot-check rows against the decoded table
        name = sampler.columns[int(col[i])]
        value = tt.categories_of(name)[int(g[i] - sampler.offset_of[g[i]])]
        assert patients[name].iloc[i] == value


def test_condition_sampler_frequencies(fitted: CTGAN, patients: pd.DataFrame) -> None:
    sampler = fitted._sampler
    j = sampler.columns.index("sex")
    sl = slice(int(sampler.offsets[j]), int(sampler.offsets[j] + sampler.widths[j]))
    counts = patients["sex"].value_counts()
    expected = np.array([counts.get(v, 0) for v in fitted.transformer_.categories_of("sex")])
    # empirical frequencies when sampling, log(1 + count) while training
    emp = sampler.p_sample[sl].numpy() * len(sampler.columns)
    np.testing.assert_allclose(emp, expected / expected.sum(), rtol=1e-5)
    logf = np.log1p(expected)
    np.testing.assert_allclose(
        sampler.p_train[sl].numpy() * len(sampler.columns), logf / logf.sum(), rtol=1e-5
    )


def test_cond_loss_matches_per_column_reference(fitted: CTGAN) -> None:
    sampler = fitted._sampler
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(64, fitted.transformer_.output_dim_, generator=gen)
    g = sampler.draw_conditions(64, gen, log_frequency=True, training=True)
    ref = []
    for i in range(64):
        j = int(sampler.col_of[g[i]])
        s, w = int(sampler.starts[j]), int(sampler.widths[j])
        target = g[i] - int(sampler.offsets[j])
        ref.append(F.cross_entropy(logits[i, s : s + w][None], target[None]))
    torch.testing.assert_close(sampler.cond_loss(logits, g), torch.stack(ref).mean())


def test_span_activation_groups(fitted: CTGAN) -> None:
    tt = fitted.transformer_
    layout = SpanLayout(tt.spans_, tt.output_dim_)
    x = torch.randn(32, tt.output_dim_, generator=torch.Generator().manual_seed(0)) * 5
    out = layout.activate(x, generator=torch.Generator().manual_seed(1))
    for span in tt.spans_:
        block = out[:, span.start : span.start + span.width]
        if span.activation == "tanh":
            torch.testing.assert_close(block, torch.tanh(x[:, span.start : span.start + 1]))
        else:
            torch.testing.assert_close(block.sum(1), torch.ones(32))
    plain = layout.activate(x, gumbel=False)
    for span in tt.spans_:
        if span.activation == "softmax":
            sl = slice(span.start, span.start + span.width)
            torch.testing.assert_close(plain[:, sl], torch.softmax(x[:, sl], 1))


def test_sampling_draw_follows_the_softmax_with_exact_one_hots() -> None:
    """``SpanLayout.draw`` (sampling decode) gives exact one-hots, never a padded slot, and
    category frequencies equal softmax(logits) -- the law of the Gumbel-softmax argmax."""

    class S:
        def __init__(self, start, width, activation):
            self.start, self.width, self.activation, self.column = start, width, activation, "c"

    spans = [S(0, 1, "tanh"), S(1, 3, "softmax"), S(4, 2, "softmax"), S(6, 4, "softmax")]
    layout = SpanLayout(spans, 10)
    n = 40_000
    logits = torch.tensor([0.3, 1.0, 0.0, -1.0, 2.0, 2.0, -3.0, 0.5, 0.0, 1.5]).repeat(n, 1)
    out = layout.draw(logits, torch.Generator().manual_seed(0))
    assert out.shape == (n, 10)
    torch.testing.assert_close(out[:, 0], torch.tanh(logits[:, 0]))
    for s in spans[1:]:
        block = out[:, s.start : s.start + s.width]
        assert set(block.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(block.sum(1), torch.ones(n))
        expected = torch.softmax(logits[0, s.start : s.start + s.width], 0)
        freq = block.mean(0)
        assert (freq - expected).abs().max() < 4 * float(
            (expected * (1 - expected) / n).max().sqrt()
        ) + 1e-3
    again = layout.draw(logits, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # seeded: reproducible


def test_conditional_vector_reaches_the_generator(fitted: CTGAN) -> None:
    seen = []
    original = fitted._generate

    def spy(n, cond, generator):
        seen.append(cond)
        return original(n, cond, generator)

    fitted._generate = spy
    try:
        out = fitted.sample(20, conditions={"sex": "F", "age": (0, 100)}, random_state=0)
    finally:
        del fitted._generate
    assert (out["sex"] == "F").all()
    assert seen and all(c == {"sex": "F"} for c in seen)


def test_no_warnings_on_a_clean_fit(patients: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CTGAN(random_state=0, device="cpu", **{**TINY, "epochs": 1}).fit(patients)


def test_epochs_none_fits_the_schedule_to_the_table(patients: pd.DataFrame) -> None:
    """#18: without a held-out likelihood CTGAN's epochs=None is a schedule from the table
    size: a batch of ~10 steps per epoch (a multiple of pac) and max_steps generator steps."""
    small = patients.head(300)
    model = CTGAN(**{**TINY, "epochs": None, "max_steps": 60}).fit(small)
    assert model.batch_size_ == 30 and model.batch_size_ % 5 == 0  # 300 rows // 10, pac 5
    assert len(model.history_) == 6  # 60 steps of 300 // 30 = 10 per epoch
    exact = CTGAN(**{**TINY, "epochs": 2}).fit(small)
    assert len(exact.history_) == 2 and exact.batch_size_ == TINY["batch_size"]
