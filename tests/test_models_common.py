"""Behaviour every model shares through BaseSynthesizer: reproducibility, conditions, errors."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from toy_model import IndependentMarginals

import tabsynth
from tabsynth.datasets import make_patients
from tabsynth.errors import (
    HyperParameterError,
    NotFittedError,
    PrivacyError,
    SamplingError,
)
from tabsynth.models import ARGN, CTGAN, TVAE, BaseSynthesizer
from tabsynth.models import base as models_base

TINY = {
    "CTGAN": dict(
        batch_size=100, pac=5, embedding_dim=16, generator_dim=(32, 32), discriminator_dim=(32,)
    ),
    "TVAE": dict(batch_size=100, embedding_dim=16, compress_dims=(32,), decompress_dims=(32,)),
    "ARGN": dict(batch_size=100, embedding_dim=4, hidden=16),
    "IndependentMarginals": dict(batch_size=100),
}
#: every built-in model plus the toy written against the contract alone (tests/toy_model.py)
MODELS = [ARGN, CTGAN, TVAE, IndependentMarginals]


def test_every_built_in_model_is_in_the_shared_suite() -> None:
    assert {c.__name__ for c in MODELS} >= set(tabsynth.MODELS)


def make(cls: type, random_state: int | None = 0, epochs: int = 2) -> BaseSynthesizer:
    return cls(epochs=epochs, verbose=False, random_state=random_state, **TINY[cls.__name__])


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    return make_patients(300, random_state=1)


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def fitted(request: pytest.FixtureRequest, patients: pd.DataFrame) -> BaseSynthesizer:
    return make(request.param).fit(patients)


def _state(model: BaseSynthesizer) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().cpu().clone()
        for name, module in model._modules().items()
        for k, v in module.state_dict().items()
    }


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_same_random_state_is_bit_identical_and_global_rng_untouched(
    cls: type, patients: pd.DataFrame
) -> None:
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = (random.getstate(), np.random.get_state(), torch.get_rng_state())

    a = make(cls, random_state=5).fit(patients)
    b = make(cls, random_state=5).fit(patients)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    pd.testing.assert_frame_equal(
        a.history_.drop(columns="seconds"), b.history_.drop(columns="seconds")
    )
    out_a = a.sample(80, random_state=3)
    pd.testing.assert_frame_equal(out_a, b.sample(80, random_state=3))
    pd.testing.assert_frame_equal(
        a.sample(40, conditions={"sex": "M"}, random_state=4),
        b.sample(40, conditions={"sex": "M"}, random_state=4),
    )
    # another sampling seed gives other rows; unseeded calls advance the model's own stream
    assert not out_a.equals(a.sample(80, random_state=4))
    assert not a.sample(20).equals(a.sample(20))

    after = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    assert after[0] == before[0]
    assert all(np.array_equal(x, y) for x, y in zip(after[1], before[1], strict=True))
    assert torch.equal(after[2], before[2])


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_other_random_state_gives_other_weights(cls: type, patients: pd.DataFrame) -> None:
    a, b = make(cls, 1, epochs=1).fit(patients), make(cls, 2, epochs=1).fit(patients)
    sa, sb = _state(a), _state(b)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())


def test_unconditional_sample_size_chunks_and_unique_ids(fitted: BaseSynthesizer) -> None:
    fitted._sample_chunk = 64  # force several chunks
    try:
        out = fitted.sample(300, random_state=0)
    finally:
        del fitted._sample_chunk
    assert len(out) == 300 and out.index.equals(pd.RangeIndex(300))
    assert out["patient_id"].is_unique
    assert fitted.last_sample_stats_ == {
        "requested": 300,
        "produced": 300,
        "generated": 300,
        "acceptance_rate": 1.0,
    }


def _id_numbers(model: BaseSynthesizer, ids: pd.Series) -> np.ndarray:
    """The numbers of ``patient_id`` values, checking they are in the style learned at fit."""
    enc = model.transformer_.encoders_["patient_id"]
    assert enc.prefix_ == "P" and enc.digits_ == 7  # make_patients: P + 7 digits
    parts = ids.str.extract(r"^P(\d{7,})$")[0]
    assert parts.notna().all(), ids[parts.isna()].head()
    return parts.astype("int64").to_numpy()


def test_id_start_numbers_ids_once_in_the_final_order(fitted: BaseSynthesizer) -> None:
    """``id_start`` changes the ids only; they are contiguous from it with or without
    conditions (rejected rows and reordered DataFrame requests leave no gap), across the
    model's internal chunks and across calls."""
    fitted._sample_chunk = 64  # several internal chunks per call
    try:
        plain = fitted.sample(150, random_state=0)
        moved = fitted.sample(150, random_state=0, id_start=1000)
    finally:
        del fitted._sample_chunk
    np.testing.assert_array_equal(_id_numbers(fitted, plain["patient_id"]), np.arange(1, 151))
    np.testing.assert_array_equal(_id_numbers(fitted, moved["patient_id"]), np.arange(1000, 1150))
    others = [c for c in plain.columns if c != "patient_id"]
    pd.testing.assert_frame_equal(plain[others], moved[others])
    assert list(moved.columns) == list(plain.columns) and moved.dtypes.equals(plain.dtypes)

    cond = fitted.sample(40, conditions={"sex": "F", "age": (30, 80)}, random_state=1, id_start=0)
    assert (cond["sex"] == "F").all()
    np.testing.assert_array_equal(_id_numbers(fitted, cond["patient_id"]), np.arange(0, 40))
    assert cond["patient_id"].iloc[0] == "P0000000"

    req = pd.DataFrame({"sex": ["M", "F", None] * 4, "ward": ["icu", None, None] * 4})
    rows = fitted.sample(None, conditions=req, random_state=2, id_start=77)
    np.testing.assert_array_equal(_id_numbers(fitted, rows["patient_id"]), np.arange(77, 89))

    # chunks drawn the way `tabsynth sample` draws them: ids unique and contiguous overall
    written, parts = 0, []
    for size, seed in ((30, 5), (30, 6), (11, 7)):
        parts.append(fitted.sample(size, random_state=seed, id_start=written + 1))
        written += size
    ids = _id_numbers(fitted, pd.concat(parts)["patient_id"])
    np.testing.assert_array_equal(ids, np.arange(1, 72))


def test_sample_checks_its_arguments_once_and_never_revalidates_metadata(
    fitted: BaseSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tabsynth.metadata import metadata as metadata_module
    from tabsynth.models import conditions

    calls: dict[str, int] = {}

    def spy(name: str, real):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(conditions, "check_int", spy("check_int", conditions.check_int))
    monkeypatch.setattr(models_base, "check_int", spy("check_int", models_base.check_int))
    monkeypatch.setattr(
        metadata_module.Metadata, "validate", spy("validate", metadata_module.Metadata.validate)
    )
    monkeypatch.setattr(metadata_module, "check_frame", spy("frame", metadata_module.check_frame))
    size = type(fitted)._check_sample_size
    monkeypatch.setattr(type(fitted), "_check_sample_size", spy("size", size))
    fitted.sample(30, conditions={"sex": "F"}, random_state=0, id_start=5)
    # n_rows and id_start once each, the memory bound once, no metadata validation
    assert calls == {"check_int": 2, "size": 1}


def test_fit_validates_the_frame_once(patients: pd.DataFrame, monkeypatch) -> None:
    """One validation of the training frame per fit: ``TableTransformer.fit`` runs it (the
    model does not repeat it), inferred metadata is not re-validated against its own frame,
    and every check still names the column."""
    from tabsynth.errors import DataError, MetadataError
    from tabsynth.metadata import metadata as metadata_module

    calls = {"validate": 0, "frame": 0}
    validate, check_frame = metadata_module.Metadata.validate, metadata_module.check_frame

    def count_validate(self, df, **kwargs):
        calls["validate"] += 1
        return validate(self, df, **kwargs)

    def count_frame(df):
        calls["frame"] += 1
        return check_frame(df)

    monkeypatch.setattr(metadata_module.Metadata, "validate", count_validate)
    monkeypatch.setattr(metadata_module, "check_frame", count_frame)
    small = patients.head(120)
    make(IndependentMarginals, epochs=1).fit(small)
    assert calls == {"validate": 0, "frame": 1}  # Metadata.infer checks the frame
    meta = tabsynth.Metadata.infer(small)
    calls.update(validate=0, frame=0)
    make(IndependentMarginals, epochs=1).fit(small, meta)
    assert calls == {"validate": 1, "frame": 1}

    with pytest.raises(MetadataError, match=r"not in the metadata: \['extra'\]"):
        make(IndependentMarginals).fit(small.assign(extra=1.0), meta)
    with pytest.raises(DataError, match="column 'smoker' has missing values"):
        make(IndependentMarginals).fit(
            small.assign(smoker=small["smoker"].where(small.age > 40)), meta
        )
    with pytest.raises(DataError, match="column 'age' has only missing values"):
        make(IndependentMarginals).fit(small.assign(age=np.nan))
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        make(IndependentMarginals).fit(small.to_numpy())
    with pytest.raises(DataError, match="metadata must be a tabsynth Metadata"):
        make(IndependentMarginals).fit(small, {"age": "integer"})


def test_numeric_ids_keep_their_dtype_and_never_wrap_around() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"row_id": np.arange(1, 201, dtype=np.int16), "x": rng.normal(size=200)})
    model = make(IndependentMarginals, epochs=1).fit(df)
    assert model.metadata_["row_id"].kind == "id"
    top = np.iinfo(np.int16).max
    out = model.sample(2, random_state=0, id_start=top - 1)
    assert out["row_id"].dtype == np.int16 and out["row_id"].tolist() == [top - 1, top]
    with pytest.raises(SamplingError, match=rf"'row_id' \(int16\) cannot hold .* 0 to {top}"):
        model.sample(3, random_state=0, id_start=top - 1)


def test_dict_conditions_categorical_boolean_and_range(fitted: BaseSynthesizer) -> None:
    cond = {"sex": "F", "smoker": False, "age": (30, 70)}
    out = fitted.sample(60, conditions=cond, random_state=1)
    assert len(out) == 60
    assert (out["sex"] == "F").all()
    assert (~out["smoker"]).all()
    assert out["age"].between(30, 70).all()
    stats = fitted.last_sample_stats_
    assert stats["requested"] == stats["produced"] == 60
    assert 0 < stats["acceptance_rate"] <= 1
    # the rate counts every generated row that met the conditions (surplus ones included)
    assert stats["acceptance_rate"] * stats["generated"] >= 60 - 1e-9


def test_datetime_and_continuous_ranges(fitted: BaseSynthesizer, patients) -> None:
    lo, hi = patients["admitted_at"].quantile([0.2, 0.9])
    glo, ghi = patients["glucose"].quantile([0.1, 0.9])
    out = fitted.sample(
        30, conditions={"admitted_at": (lo, hi), "glucose": (glo, ghi)}, random_state=2
    )
    assert out["admitted_at"].between(lo, hi).all()
    assert out["glucose"].between(glo, ghi).all()


def test_dataframe_conditions_one_row_per_request(fitted: BaseSynthesizer) -> None:
    req = pd.DataFrame(
        {
            "sex": ["F", "M", None, "F", "M", "F"],
            "ward": ["icu", None, "icu", None, "cardiology", "icu"],
            "age": [(20, 60), None, None, (50, 90), (20, 60), (20, 60)],
        }
    )
    out = fitted.sample(None, conditions=req, random_state=3)
    assert len(out) == len(req)
    for i, row in req.iterrows():
        if pd.notna(row["sex"]):
            assert out.loc[i, "sex"] == row["sex"]
        if pd.notna(row["ward"]):
            assert out.loc[i, "ward"] == row["ward"]
        if isinstance(row["age"], tuple):
            assert row["age"][0] <= out.loc[i, "age"] <= row["age"][1]
    assert fitted.last_sample_stats_["produced"] == len(req)


def test_impossible_condition_raises_with_counts(fitted: BaseSynthesizer) -> None:
    # inside the age domain, but an integer column never falls strictly between two integers
    exact = hasattr(fitted, "_sample_exact")  # ARGN proves it impossible without generating
    message = r"no value the model can produce" if exact else r"produce 0 of 5 rows.*rate 0\.0"
    with pytest.raises(SamplingError, match=message):
        fitted.sample(5, conditions={"age": (40.2, 40.8)})
    stats = fitted.last_sample_stats_
    assert stats["produced"] == 0 and stats["requested"] == 5
    assert stats["acceptance_rate"] == 0.0
    assert stats["generated"] == 0 if exact else stats["generated"] >= 10_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": 0}, "positive int"),
        ({"n_rows": -5}, "positive int"),
        ({"n_rows": 2.5}, "positive int"),
        ({"n_rows": True}, "positive int"),
        ({"n_rows": None}, "positive int"),
        ({"n_rows": 5, "conditions": {"nope": 1}}, "unknown condition column 'nope'"),
        ({"n_rows": 5, "conditions": {"sex": "X"}}, "outside the column's domain"),
        ({"n_rows": 5, "conditions": {"age": (500, 600)}}, "outside the column's domain"),
        ({"n_rows": 5, "conditions": {"age": (60, 30)}}, "low > high"),
        ({"n_rows": 5, "conditions": {"crp": 1.5}}, "range"),
        ({"n_rows": 5, "conditions": {"patient_id": "P1"}}, "id column"),
        ({"n_rows": 5, "conditions": {"sex": None}}, "missing"),
        ({"n_rows": 5, "conditions": [("sex", "F")]}, "dict or a DataFrame"),
        ({"n_rows": 3, "conditions": pd.DataFrame({"sex": ["F"]})}, "disagrees"),
        ({"n_rows": None, "conditions": pd.DataFrame({"bad": ["F"]})}, "unknown condition"),
        ({"n_rows": 5, "id_start": -1}, "id_start must be None or a non-negative int, got -1"),
        ({"n_rows": 5, "id_start": 2.0}, "id_start must be None or a non-negative int"),
        ({"n_rows": 5, "id_start": True}, "id_start must be None or a non-negative int"),
        ({"n_rows": 5, "id_start": "7"}, "id_start must be None or a non-negative int"),
        ({"n_rows": 5, "id_start": 2**63 - 3}, "'patient_id' .* cannot hold the ids"),
    ],
)
def test_bad_sample_requests(fitted: BaseSynthesizer, kwargs: dict, message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        fitted.sample(**kwargs)


def test_huge_sample_is_refused_before_allocating(
    fitted: BaseSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SamplingError, match=r"sample\(1000000000000\).*TiB.*tabsynth sample"):
        fitted.sample(10**12)
    # the bound is half the machine's memory: on a 1 MiB machine 10,000 rows are too many
    monkeypatch.setattr(models_base, "_physical_memory", lambda: 2**20)
    with pytest.raises(SamplingError, match="in chunks"):
        fitted.sample(10_000)
    assert len(fitted.sample(100)) == 100


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", 3, "CPU", "cuda:-1"])
def test_bad_device_is_refused_at_fit(cls: type, device, patients: pd.DataFrame) -> None:
    model = cls(device=device, epochs=1, verbose=False)
    assert model.device == device  # stored untouched, validated at fit
    with pytest.raises(
        HyperParameterError, match=r"device must be 'auto', 'cpu', 'cuda', 'cuda:N'"
    ):
        model.fit(patients.head(50))


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_unfitted_model_says_what_to_call(cls: type, tmp_path) -> None:
    with pytest.raises(NotFittedError, match=r"call fit\(df\) before sample\(\)"):
        cls().sample(5)
    with pytest.raises(NotFittedError, match=r"call fit\(df\) before save\(\)"):
        cls().save(tmp_path / "m.tsyn")


def test_range_condition_on_dates_stored_as_text() -> None:
    """A datetime column that is text in the frame (e.g. read from CSV) takes date ranges."""
    from tabsynth import TVAE

    rng = np.random.default_rng(0)
    days = pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, 300), unit="D")
    df = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "x": rng.normal(0, 1, 300)})
    model = TVAE(epochs=2, batch_size=100, verbose=False, random_state=0).fit(df)
    out = model.sample(50, conditions={"day": ("2020-03-01", "2020-09-30")})
    parsed = pd.to_datetime(out["day"], format="%Y-%m-%d")
    assert len(out) == 50
    assert parsed.between("2020-03-01", "2020-09-30").all()


@pytest.mark.parametrize(("betas", "decay"), [((0.9, 0.999), 1e-5), ((0.5, 0.9), 1e-3)])
def test_adam_equals_torch_optim_adam(betas, decay):
    """The models' Adam (torch's functional Adam, no torch.optim object) takes exactly the
    steps of torch.optim.Adam, skipping parameters without a gradient as it does."""
    from tabsynth.models import _nn

    g = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((4, 3), (5,), (2,))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    opt = _nn.Adam(ours, 1e-2, decay, betas)
    ref_opt = torch.optim.Adam(ref, lr=1e-2, betas=betas, weight_decay=decay, fused=True)
    for step in range(6):
        for i, (p, q) in enumerate(zip(ours, ref, strict=True)):
            if i == 2 and step % 2:  # no gradient this step: both skip it
                p.grad = q.grad = None
                continue
            grad = torch.randn(p.shape, generator=g)
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        ref_opt.step()
    for p, q, p0 in zip(ours, ref, start, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert not torch.equal(p.detach(), p0)  # it did move


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_save_load_round_trip_samples_the_same(cls: type, patients, tmp_path) -> None:
    model = make(cls, random_state=0, epochs=1).fit(patients)
    path = tmp_path / "m.tsyn"
    model.save(path)
    loaded = tabsynth.load(path)
    assert type(loaded) is cls and loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(
        loaded.sample(50, random_state=7), model.sample(50, random_state=7)
    )
    pd.testing.assert_frame_equal(
        loaded.sample(20, conditions={"sex": "F"}, random_state=8),
        model.sample(20, conditions={"sex": "F"}, random_state=8),
    )


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_dp_refusals_come_before_any_row_is_read(cls: type, patients, monkeypatch) -> None:
    """Under DP a model refuses from its settings alone: inferred metadata for every model,
    and any DP fit for a model without ``_train_private`` (the toy)."""
    from tabsynth.models import _private

    def no_read(*args, **kwargs):
        raise AssertionError("the rows were read")

    monkeypatch.setattr(_private, "private_frame", no_read)
    with pytest.raises(PrivacyError):
        make(cls).set_params(epsilon=1.0).fit(patients)  # metadata=None under DP
    if cls._train_private is BaseSynthesizer._train_private:
        monkeypatch.setattr(_private, "check_private_input", no_read)
        meta = tabsynth.Metadata.infer(patients)
        with pytest.raises(PrivacyError, match="no differentially private training"):
            make(cls).set_params(epsilon=1.0).fit(patients, meta)


@pytest.mark.parametrize("cls", [ARGN, CTGAN, TVAE], ids=lambda c: c.__name__)
def test_dp_plan_length_with_epochs_none_comes_from_epsilon_alone(cls: type) -> None:
    """Under DP ``epochs=None`` is a fixed plan from the settings (nothing selected on
    private data): round(4 * epsilon) epochs, clipped to 2-30; ``epochs=N`` stays N."""
    assert cls(epochs=None, epsilon=1.0)._private_epochs() == 4
    assert cls(epochs=None, epsilon=0.1)._private_epochs() == 2
    assert cls(epochs=None, epsilon=50.0)._private_epochs() == 30
    assert cls(epochs=7, epsilon=1.0)._private_epochs() == 7


@pytest.mark.parametrize("cls", [ARGN, CTGAN, TVAE], ids=lambda c: c.__name__)
def test_bf16_precision_trains_in_float32_state(cls: type, patients: pd.DataFrame) -> None:
    tiny = TINY[cls.__name__]
    model = cls(epochs=1, random_state=0, verbose=False, precision="bf16", **tiny).fit(patients)
    losses = model.history_.drop(columns=["epoch", "seconds", "lr"], errors="ignore")
    assert np.isfinite(losses.to_numpy(dtype=float)).all()
    for module in model._modules().values():  # weights and their gradients stay float32
        assert all(p.dtype == torch.float32 for p in module.parameters())
    out = model.sample(50, random_state=0)
    assert list(out.columns) == list(patients.columns) and len(out) == 50
    with pytest.raises(HyperParameterError, match="precision must be"):
        cls(epochs=1, precision="fp16").fit(patients.head(50))


@pytest.mark.parametrize("cls", [ARGN, CTGAN, TVAE], ids=lambda c: c.__name__)
def test_bf16_is_refused_under_dp_before_any_row_is_read(cls: type) -> None:
    class Unreadable(pd.DataFrame):  # any read of the rows fails the test
        def __getitem__(self, key):  # pragma: no cover - must not be reached
            raise AssertionError("a row was read")

    with pytest.raises(PrivacyError, match="precision='bf16' is for non-DP fits"):
        cls(epochs=1, epsilon=1.0, precision="bf16").fit(Unreadable({"a": [1, 2]}))
