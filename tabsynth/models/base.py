"""``BaseSynthesizer``: everything CTGAN and TVAE share, so both use one implementation.

The base class owns input validation, metadata, the ``TableTransformer``, device choice, seeded
generators, progress/history/timings, chunked and conditional sampling and persistence.

Subclass contract (all a model must write)
------------------------------------------
``__init__``
    Keyword hyper-parameters stored untouched under the same names (scikit-learn style). Must
    include the common ones: ``batch_size, epochs, device, verbose, random_state,
    max_fit_samples, epsilon, delta, max_grad_norm, accountant, rare_threshold`` (a model
    without ``rare_threshold`` gets the default, ``"auto"``). Call nothing else.
``_build(self) -> None``
    Create the networks (and optimizers if wanted) from ``self.transformer_`` (``spans_``,
    ``output_dim_``, ``discrete_columns_``). Build every module with
    ``_nn.seeded_module(factory, self._init_generator, self.device_)`` so weights depend only on
    ``random_state`` and the global RNG is untouched. Also called by ``tabsynth.load`` before
    the saved weights are put back, so it must depend on hyper-parameters + transformer only.
``_train(self, X: CompactTable) -> None``
    The training loop. ``X`` is the encoded table kept compact on ``self.device_``
    (:class:`~tabsynth.transform.compact.CompactTable`): ``len(X)`` rows, ``X.dense(rows)`` a
    float32 batch in the transformer layout, ``X.span_codes(start)`` a one-hot span's codes, so
    a table larger than a dense matrix trains the same way. Use
    ``self._train_generator`` (torch, on the device) / ``self._train_rng`` (numpy) for every
    random draw, ``self.batch_size_`` as the batch size, ``for epoch in self._epochs():`` for
    the epoch loop (progress bar) and ``self._log_epoch(loss_a=..., loss_b=...)`` once per epoch
    (it records ``seconds`` itself, except under DP, and shows the losses in the progress bar).
``_generate(self, n: int, cond: dict | None, generator: torch.Generator) -> Tensor``
    ``n`` rows in transformer space, *activated* (tanh / one-hot-like probabilities; the
    transformer decodes a one-hot group by argmax). Runs under ``eval()`` + ``no_grad()`` (the
    base sets both). ``cond`` is ``None`` or ``{column: value}`` of categorical conditions the
    model MAY use to steer generation (CTGAN's conditional vector); a model that cannot steer
    ignores it: the base rejects rows that miss any condition, so results are always right.
``_modules(self) -> dict[str, nn.Module]``
    The networks to save (their ``state_dict`` s, incl. BatchNorm buffers) and to switch to
    ``eval()`` for sampling.

Optional: ``_extra_state`` / ``_set_extra_state`` (fitted numpy arrays to save, e.g. category
frequencies; ``_set_extra_state`` must check shapes and values and raise ``ValueError``),
``_fitted_attrs`` (fitted JSON-able attributes to save: ``{name: validator}``, e.g.
``{"steps_trained_": fitted_int(0)}``; merged with the base class's),
``_batch_multiple`` (batch sizes are rounded to a multiple of it, e.g. CTGAN's ``pac``) and
``_check_params`` (extra hyper-parameter validation at fit, also run on a loaded file).

Saving and loading (``save`` / ``load`` below) live here; ``persistence.py`` only turns a
header and arrays into a file and back. ``load`` restores nothing but a whitelist: the
hyper-parameters (validated as ``fit`` validates them), metadata and transformer (through their
own ``from_dict``), the declared ``_fitted_attrs`` (each through its validator), history and
timings, the networks' weights and the extra arrays. Networks are first built on the ``meta``
device (no memory), so a header whose sizes do not match the saved tensors is refused before
anything is allocated.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from tabsynth import __version__, _distributed
from tabsynth._lazy import nn, torch
from tabsynth._params import check_int
from tabsynth.errors import (
    DataError,
    HyperParameterError,
    ModelFileError,
    NotFittedError,
    PrivacyError,
    SamplingError,
    TabsynthError,
)
from tabsynth.models import _nn
from tabsynth.models.persistence import check_path, read_model_file, write_model_file

if TYPE_CHECKING:  # the DP fit's plan; importing it at run time would load Opacus
    from tabsynth.models._private import PrivateFit
    from tabsynth.transform.compact import CompactTable

logger = logging.getLogger("tabsynth.models")

#: class name -> class, filled by ``__init_subclass__``; ``tabsynth.load`` looks classes up here
MODEL_REGISTRY: dict[str, type[BaseSynthesizer]] = {}

_COMMON_PARAMS = (
    "batch_size",
    "epochs",
    "device",
    "verbose",
    "random_state",
    "max_fit_samples",
    "epsilon",
    "delta",
    "max_grad_norm",
    "accountant",
    "rare_threshold",
)


def _seed_from(random_state: Any) -> np.random.SeedSequence:
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(
        random_state, (int, np.integer)
    ):
        raise DataError(f"random_state must be None or a non-negative int, got {random_state!r}")
    if random_state < 0:
        raise DataError(f"random_state must be non-negative, got {random_state}")
    return np.random.SeedSequence(int(random_state))


# -- validators of saved fitted attributes (``_fitted_attrs``) ---------------------------------
#: a validator takes the JSON value read from a file and returns it (or raises ValueError)
Validator = Callable[[Any], Any]


def fitted_int(lo: int = 0, hi: int = 2**63 - 1) -> Validator:
    """An int in ``[lo, hi]``."""

    def check(value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise ValueError(f"expected an int in [{lo}, {hi}], got {value!r}"[:200])
        return value

    return check


def fitted_number(lo: float = -math.inf, hi: float = math.inf) -> Validator:
    """A finite real number in ``[lo, hi]``."""

    def check(value: Any) -> float:
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"expected a finite number in [{lo}, {hi}], got {value!r}"[:200])
        return value

    return check


def fitted_optional(inner: Validator) -> Validator:
    """``None`` or what ``inner`` accepts."""

    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _privacy_report(value: Any) -> dict | None:
    """The DP ledger's report: a dict whose figures are numbers (it is only displayed)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected None or a dict, got {type(value).__name__}")
    for key in ("epsilon", "delta", "target_epsilon", "rdp_epsilon"):
        fitted_number(0.0)(value.get(key))
    if not isinstance(value.get("mechanisms", []), list):
        raise ValueError("'mechanisms' must be a list")
    return value


_HEADER_KEYS = frozenset(
    {
        "library_version",
        "class",
        "params",
        "metadata",
        "transformer",
        "history",
        "history_columns",
        "timings",
        "fitted",
    }
)
#: exceptions that third-party ``from_dict``/``set_state`` code raises on a malformed header
_HEADER_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    OverflowError,
    RuntimeError,
    RecursionError,
)


def _int_seeds(seq: np.random.SeedSequence, n: int) -> list[int]:
    """``n`` independent 63-bit seeds (torch.manual_seed takes int64)."""
    return [int(s.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for s in seq.spawn(n)]


class BaseSynthesizer:
    """Shared machinery of every tabsynth model (see the module docstring for the contract)."""

    #: fitted JSON-able attributes that ``save`` stores and ``load`` restores, each with the
    #: validator a loaded value must pass; subclasses add theirs (merged along the MRO)
    _fitted_attrs: ClassVar[Mapping[str, Validator]] = {
        "n_rows_fit_": fitted_int(0),
        "batch_size_": fitted_int(1),
        "_sample_seed_": fitted_int(0),
        "privacy_report_": _privacy_report,
    }
    #: the model accepts ``epochs=None`` (it chooses its training length itself; ARGN)
    _auto_epochs: ClassVar[bool] = False
    #: rows decoded per chunk at sampling time (bounds memory for very large requests)
    _sample_chunk: ClassVar[int] = 50_000
    #: history keys that are post-processing of the DP release (may be logged under DP)
    _dp_log_keys: ClassVar[tuple[str, ...]] = ()
    #: rows per network forward inside a chunk: activations stay in cache and allocator blocks
    #: are reused (26k rows at once were ~45% slower on CPU than slices of 2048)
    _forward_chunk: ClassVar[int] = 2048
    #: smallest training batch (CTGAN: 2, BatchNorm cannot train on one row; rows are drawn
    #: with replacement, so a batch may exceed a tiny table)
    _min_batch: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_json_attrs" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__}._json_attrs is gone: declare saved fitted attributes as "
                "_fitted_attrs = {name: validator} (see tabsynth.models.base.fitted_int)"
            )
        if not cls.__name__.startswith("_"):
            MODEL_REGISTRY[cls.__name__] = cls

    # -- scikit-learn conventions ------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseSynthesizer:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise HyperParameterError(f"{type(self).__name__} has no hyper-parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if sig.parameters[k].default is inspect.Parameter.empty
            or not _same(v, sig.parameters[k].default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- subclass hooks --------------------------------------------------------------
    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _train(self, X: CompactTable) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _generate(
        self, n: int, cond: dict[str, Any] | None, generator: torch.Generator
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _modules(self) -> dict[str, nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_extra_state(self, state: dict[str, np.ndarray]) -> None:
        return None

    def _batch_multiple(self) -> int:
        return 1

    def _check_params(self) -> None:
        return None

    def _gather_fitted_state(self) -> None:
        """After a plain distributed fit: make fitted state that ``_train`` computed from this
        process's shard describe the whole table (CTGAN: category counts summed over the
        processes with ``_distributed.all_reduce_``). Not called under DP, where such state
        comes from DP releases made once, on rank 0."""
        return None

    def _module_tensors(self, params: bool = True) -> list[torch.Tensor]:
        """The networks' parameters (``params``) and buffers, in a fixed order."""
        out: list[torch.Tensor] = []
        for module in self._modules().values():
            if params:
                out.extend(p.data for p in module.parameters())
            out.extend(module.buffers())
        return out

    def _process_batch(self, batch: int, world: int) -> int:
        """Rows per process and step of a distributed fit: ``batch / world``, a multiple of
        ``_batch_multiple`` and at least ``_min_batch``."""
        multiple = max(int(self._batch_multiple()), 1)
        smallest = multiple * -(-max(int(self._min_batch), 1) // multiple)
        return max(smallest, batch // world // multiple * multiple)

    # -- fit ------------------------------------------------------------------------------
    def fit(
        self,
        df: pd.DataFrame | str | os.PathLike,
        metadata: Any = None,
        *,
        callbacks: Sequence[Any] | None = None,
        log_dir: str | os.PathLike | None = None,
        distributed: bool = False,
    ) -> BaseSynthesizer:
        """Learn the table ``df``; ``metadata=None`` infers it from the data.

        ``df`` may also be the path of a Parquet file or folder, which is streamed (out-of-core:
        the table is never held whole; see docs/scaling.md): the metadata is inferred from a
        seeded sample of 100,000 rows with the bounds and nullability of the whole file, the
        encoders are fit on that sample (a category first seen outside it takes the column's
        ``other`` slot), and the rows are kept compactly encoded for training. With ``epsilon``
        the metadata must be declared (as for a frame); each DP release is computed from exact
        counts summed over the streamed batches and noised once, with the same ledger as the
        same fit on the frame in memory (docs/privacy.md).

        ``callbacks``: objects with ``on_epoch_end(model, row)``, called after every epoch with
        the epoch's history row. ``log_dir``: write the same rows as TensorBoard scalars there
        (needs the ``tensorboard`` package). Under DP both receive only DP or public values
        (the epoch, the epsilon spent so far, losses that are post-processing of the release).

        ``distributed=True``: this process is one of several started by ``torchrun`` (every
        one calls ``fit`` on the same table); each trains on its shard of the rows and the
        gradients are averaged before every optimizer step, so all of them end with the same
        model (``batch_size`` stays the rows of one step, split over the processes). Rank 0
        alone shows progress, calls ``callbacks``/``log_dir`` and, under DP, makes the noisy
        releases and adds the DP-SGD noise. See docs/scaling.md.
        """
        from tabsynth.metadata import Metadata
        from tabsynth.models._tracking import check_callbacks

        callbacks = check_callbacks(callbacks)
        self._validate_params()
        if not isinstance(distributed, (bool, np.bool_)):
            raise HyperParameterError(f"distributed must be True or False, got {distributed!r}")
        if distributed:  # before any row is read: the environment alone
            _distributed.environment()
        if self.epsilon is None:
            # the frame is checked, and its metadata inferred or validated, once: by
            # TableTransformer.fit below
            if metadata is not None and not isinstance(metadata, Metadata):
                raise DataError(
                    f"metadata must be a tabsynth Metadata, got {type(metadata).__name__}"
                )
        else:  # DP: only the public schema and column names, no row (see _private.py);
            # a Parquet path becomes its ParquetSource (the footer read, no row)
            from tabsynth.models._private import check_private_input

            df = check_private_input(df, metadata)

        self.device_ = _nn.resolve_device(self.device)
        if not distributed:
            return self._fit(df, metadata, callbacks, log_dir)
        self.device_ = _distributed.process_device(
            self.device_, self.device, _distributed.environment()[2]
        )
        with _distributed.session(self.device_):
            return self._fit(df, metadata, callbacks, log_dir)

    def _fit(self, df: Any, metadata: Any, callbacks: list[Any], log_dir: Any) -> BaseSynthesizer:
        """``fit`` once the arguments are checked and the device (and any process group) set."""
        from tabsynth.transform import TableTransformer
        from tabsynth.transform.compact import encode_frames
        from tabsynth.transform.stream import (
            ParquetSource,
            encode_parquet,
            is_table_path,
            parquet_transformer,
        )

        session = _distributed.active()
        logger.info("%s: training on device %s", type(self).__name__, self.device_)
        seeds = _int_seeds(_seed_from(self.random_state), 4)
        if self.epsilon is not None:
            # the training stream (per-example draws in the loss) comes from OS entropy under
            # DP and is not kept; random_state fixes only the data-independent weight init,
            # the transformer's public decoding stream and sampling (docs/privacy.md)
            from tabsynth.models import _private as _p

            seeds[2] = _p.secret_seed("training")
            self._seeds_ = [seeds[0], seeds[1], None, seeds[3]]
        else:
            self._seeds_ = seeds
            if session is not None and session.rank:  # per-process draws (batches, noise)
                seeds[2] = _int_seeds(np.random.SeedSequence([seeds[2], session.rank]), 1)[0]
        private = None

        t0 = time.perf_counter()
        if self.epsilon is None:
            settings = {
                "random_state": seeds[0],
                "max_fit_samples": self.max_fit_samples,
                "rare_threshold": getattr(self, "rare_threshold", "auto"),
            }
            source = ParquetSource(df) if is_table_path(df) else None

            def fit_transformer() -> Any:
                if source is not None:  # out-of-core: on a sample, with the file's statistics
                    return parquet_transformer(source, metadata, settings)
                return TableTransformer(metadata, **settings).fit(df)

            if session is None:
                transformer = fit_transformer()
            else:  # fitted once, on rank 0, and sent to the others as JSON
                state = _distributed.on_main(lambda: fit_transformer().to_dict())
                transformer = TableTransformer.from_dict(state)
            X = (
                encode_frames(transformer, [df], len(df))
                if source is None
                else encode_parquet(source, transformer)
            )
            n_rows = len(X)
            metadata = transformer.metadata_
        else:
            from tabsynth.models._private import prepare_private_fit

            self._check_private_params()
            private = prepare_private_fit(
                df,
                metadata,
                epsilon=float(self.epsilon),
                delta=None if self.delta is None else float(self.delta),
                max_grad_norm=float(self.max_grad_norm),
                batch_size=int(self.batch_size),
                epochs=self._private_epochs(),
                critic_steps=self._critic_steps(),
                seed=seeds[0],
                dp_domains=bool(getattr(self, "dp_domains", False)),
            )
            transformer, X = private.transformer, None
            metadata = private.metadata or metadata  # with any DP-derived category lists
            n_rows = private.n_estimate  # the DP (or declared) count: never len(df)
        preprocess_s = time.perf_counter() - t0

        self.metadata_ = metadata
        self.transformer_ = transformer
        self.n_rows_fit_ = n_rows
        self.batch_size_ = (
            self._resolve_batch_size(n_rows) if private is None else private.expected_batch
        )
        if session is not None and private is None:  # each process computes its share
            self.batch_size_ = self._process_batch(self.batch_size_, session.world)
        self._init_generator = _nn.make_generator(seeds[1], "cpu")
        self._train_generator = _nn.make_generator(seeds[2], self.device_)
        self._train_rng = np.random.default_rng(seeds[2])
        self._sample_seed_ = seeds[3]
        self._sample_generator: torch.Generator | None = None
        self._build()
        if session is not None:  # seeded alike anyway; rank 0's weights make it certain
            _distributed.broadcast_(self._module_tensors())

        from tabsynth.models._tracking import Tracker

        if not _distributed.is_main():  # rank 0 alone reports
            callbacks, log_dir = [], None
        self._tracker = Tracker(callbacks, log_dir, private=private, dp_keys=self._dp_log_keys)
        t1 = time.perf_counter()
        self._history_rows: list[dict[str, float]] = []
        for module in self._modules().values():
            module.train()
        try:
            if private is None:
                if session is not None:  # this process's rows (the one place they are split)
                    X = X.take(torch.as_tensor(_distributed.shard(len(X), pad=True)))
                with _nn.autocast(self.device_, getattr(self, "precision", "fp32")):
                    self._train(X.place(self.device_))  # on the GPU when it fits
                self.privacy_report_ = None
                if session is not None:
                    self._gather_fitted_state()
            else:
                self._train_private(private)
                from tabsynth.models._private import finish_private_fit

                self.privacy_report_ = _distributed.on_main(lambda: finish_private_fit(private))
                if self.verbose and _distributed.is_main():
                    print(format_privacy_report(self.privacy_report_))
            if session is not None:
                # running statistics (BatchNorm) were updated by each process from its own
                # batches: their mean, so every process holds the same model
                floating = [t for t in self._module_tensors(params=False) if t.is_floating_point()]
                _distributed.all_reduce_(floating, average=True)
                if private is None:  # rows per optimizer step, all processes together
                    self.batch_size_ *= session.world
        finally:
            self._tracker.close()
            del self._tracker
        train_s = time.perf_counter() - t1
        for module in self._modules().values():
            module.eval()

        self.history_ = pd.DataFrame(self._history_rows)
        del self._history_rows
        if private is None:
            self.timings_ = {"preprocess_s": preprocess_s, "train_s": train_s}
        else:
            # durations scale with the private row count and the Poisson batch sizes: not
            # kept under DP; nor is the secret training generator
            self.timings_ = {}
            del self._train_generator, self._train_rng
        return self

    def _validate_params(self) -> None:
        """Every hyper-parameter check (``fit`` runs it, and so does ``load`` on a file)."""
        self._validate_common_params()
        self._check_params()
        self._check_privacy()

    def _validate_common_params(self) -> None:
        _nn.check_device(self.device)
        check_int("batch_size", self.batch_size)
        check_int("epochs", self.epochs, optional=self._auto_epochs)
        check_int("max_fit_samples", self.max_fit_samples, optional=True)
        try:
            _seed_from(self.random_state)
        except DataError as exc:  # the constructor's random_state is a hyper-parameter
            raise HyperParameterError(str(exc)) from None
        from tabsynth.transform.categorical import resolve_rare_threshold

        resolve_rare_threshold(getattr(self, "rare_threshold", "auto"), 1)  # its type, early
        precision = getattr(self, "precision", "fp32")
        if precision not in ("fp32", "bf16"):
            raise HyperParameterError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if precision != "fp32" and self.epsilon is not None:
            raise PrivacyError(
                "precision='bf16' is for non-DP fits: DP-SGD clips exact float32 per-example "
                "gradient norms; use precision='fp32' with epsilon"
            )

    def _check_privacy(self) -> None:
        """Validate the privacy hyper-parameters (the DP fit itself is in ``_private.py``)."""
        dp_domains = getattr(self, "dp_domains", False)
        if not isinstance(dp_domains, (bool, np.bool_)):
            raise PrivacyError(f"dp_domains must be True or False, got {dp_domains!r}")
        if self.epsilon is None:
            if dp_domains:
                raise PrivacyError(
                    "dp_domains=True derives category lists with differential privacy and "
                    "needs epsilon; without epsilon the fit is not private"
                )
            return
        if type(self)._train_private is BaseSynthesizer._train_private:
            # refused from the class alone, before a row is read (a refusal that depended on
            # the data would itself leak)
            raise PrivacyError(
                f"{type(self).__name__} has no differentially private training: fit it "
                "without epsilon, or use ARGN, CTGAN or TVAE for a DP fit"
            )
        eps = self.epsilon
        if not _real(eps) or not eps > 0:
            raise PrivacyError(f"epsilon must be a positive number or None, got {eps!r}")
        clip = self.max_grad_norm
        if not _real(clip) or not clip > 0:
            raise PrivacyError(f"max_grad_norm must be a positive number, got {clip!r}")
        if self.delta is not None:  # data-free and before any row is read (delta <= 1e-2)
            from tabsynth.privacy.ledger import check_delta

            if not _real(self.delta):
                raise PrivacyError(f"delta must be a number or None, got {self.delta!r}")
            check_delta(self.delta)
        if self.accountant != "prv":
            raise PrivacyError(
                f"accountant={self.accountant!r} is not supported: the ledger reports PRV "
                "(tightest in Opacus) with an RDP cross-check; GDP can under-report"
            )

    def _check_private_params(self) -> None:
        """Model-specific DP adjustments (e.g. CTGAN's pac=1), warned about, never silent."""
        return None

    def _private_epochs(self) -> int:
        """Epochs of the DP plan, fixed before training: ``epochs``, or with ``epochs=None``
        ``round(4 * epsilon)`` clipped to 2-30 (from the settings alone, nothing selected on
        private data; measured in docs/benchmarks.md)."""
        if self.epochs is not None:
            return int(self.epochs)
        return int(min(max(round(4 * float(self.epsilon)), 2), 30))

    def _critic_steps(self) -> int:
        """Noisy optimizer steps per batch of the private loop (CTGAN: discriminator steps)."""
        return 1

    def _train_private(self, private: PrivateFit) -> None:  # pragma: no cover - abstract
        """Train on ``private.X`` (a compact store) with DP-SGD for exactly ``private.steps``
        noisy steps, reading the rows only through ``private.loader`` (Poisson batches of
        ``private.X.place(device)``, expanded by ``dense``) and ``private.optimizer``."""
        raise PrivacyError(f"{type(self).__name__} has no differentially private training")

    def privacy_report(self) -> dict:
        """The DP ledger of the last fit: (epsilon, delta), accountant, per-mechanism rows.

        Saved inside the model file; ``None``-free: raises for a non-private model.
        """
        self._check_fitted()
        report = getattr(self, "privacy_report_", None)
        if report is None:
            raise PrivacyError(f"this {type(self).__name__} was not fitted with epsilon")
        return report

    def _resolve_batch_size(self, n_rows: int) -> int:
        """Adapt the batch size to small tables, to ``_batch_multiple`` and to ``_min_batch``
        (never assert)."""
        multiple = max(int(self._batch_multiple()), 1)
        smallest = multiple * -(-max(int(self._min_batch), 1) // multiple)
        batch = int(self.batch_size)
        if n_rows < batch:
            new = max(smallest, (n_rows // multiple) * multiple)
            why = f"the table has {n_rows} rows, fewer than batch_size={batch}"
        elif batch % multiple:
            new = max(smallest, round(batch / multiple) * multiple)
            why = f"batch_size={batch} is not a multiple of pac={multiple}"
        elif batch < smallest:
            new = smallest
            why = f"batch_size={batch} is too small to train on (at least {smallest})"
        else:
            return batch
        warnings.warn(
            f"{type(self).__name__}: {why}; using batch size {new}", UserWarning, stacklevel=3
        )
        return new

    # -- progress and history -------------------------------------------------------------
    def _epochs(self, total: int | None = None) -> Iterator[int]:
        """Epoch indices with a tqdm bar (``verbose``); pair with ``_log_epoch`` per epoch.

        ``total``: the most epochs the loop may run (``epochs=None``: it may stop earlier);
        by default ``epochs``, under DP the plan's (``epochs=None`` included)."""
        from tqdm.auto import tqdm

        if total is None:
            total = self._private_epochs() if self.epsilon is not None else int(self.epochs)
        self._bar = tqdm(
            range(int(total)),
            desc=type(self).__name__,
            unit="epoch",
            disable=not (self.verbose and _distributed.is_main()),
            leave=True,
            # under DP no elapsed time or rate: they scale with the private row count
            bar_format=None if self.epsilon is None else "{l_bar}{bar}| {n_fmt}/{total_fmt}",
        )
        self._epoch_t0 = time.perf_counter()
        try:
            yield from self._bar
        finally:
            self._bar.close()

    def _log_epoch(self, **losses: float) -> None:
        now = time.perf_counter()
        row = {"epoch": len(self._history_rows)}
        row.update({k: float(v) for k, v in losses.items()})
        if self.epsilon is None:  # under DP an epoch's duration reveals the private n
            row["seconds"] = now - self._epoch_t0
        self._epoch_t0 = now
        self._history_rows.append(row)
        self._tracker.epoch_end(self, row)
        if self.verbose:
            self._bar.set_postfix({k: f"{float(v):.3f}" for k, v in losses.items()}, refresh=False)

    # -- sampling ---------------------------------------------------------------------------
    def _check_fitted(self, action: str = "sample()") -> None:
        if not hasattr(self, "transformer_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(df) before {action}"
            )

    def _check_sample_size(self, n_rows: int) -> None:
        """Refuse a request whose result cannot fit in memory before allocating anything."""
        per_row = sum(
            8 if s.kind in ("continuous", "integer", "datetime", "boolean") else 64
            for s in self.metadata_
        )
        need = n_rows * max(per_row, 1)
        have = _physical_memory()
        if need > have // 2:
            raise SamplingError(
                f"sample({n_rows}) would hold about {_bytes(need)} in one DataFrame "
                f"({len(self.metadata_.names)} columns), more than half of this machine's "
                f"{_bytes(have)} of memory. Stream large samples to disk instead: "
                "`tabsynth sample MODEL -n N -o out.parquet` writes chunk by chunk, or call "
                "sample() in chunks of, e.g., 1_000_000 rows and append each to a file"
            )

    def _sampling_generator(self, random_state: Any) -> torch.Generator:
        if random_state is None:
            if self._sample_generator is None:
                self._sample_generator = _nn.make_generator(self._sample_seed_, self.device_)
            return self._sample_generator
        return _nn.make_generator(_int_seeds(_seed_from(random_state), 1)[0], self.device_)

    def sample(
        self,
        n_rows: int | None,
        conditions: dict[str, Any] | pd.DataFrame | None = None,
        random_state: int | None = None,
        *,
        id_start: int | None = None,
    ) -> pd.DataFrame:
        """Draw synthetic rows; every row satisfies its condition.

        Parameters
        ----------
        n_rows : int or None
            How many rows to draw (a positive int); ``None`` with a DataFrame of
            ``conditions``, which then sets the count.
        conditions : dict, DataFrame or None, default=None
            ``{column: value}`` applied to all ``n_rows`` rows: a value of a categorical or
            boolean column's domain (``None`` for "missing" where the column is nullable), a
            value or an inclusive ``(low, high)`` range for an integer column, a range for a
            continuous or datetime column. A DataFrame holds one row of conditions per
            requested row, a missing cell meaning "no condition" (see ``conditions.py``).
        random_state : int or None, default=None
            Seed of this draw: the same seed gives the same rows, bit for bit on CPU.
            ``None`` continues the model's own sampling stream.
        id_start : int or None, default=None
            The number of the first row's id in every id column (the ids then count up by
            one per row, in the style learned at fit: prefix, digit width, suffix, dtype).
            ``None`` numbers from 1. Pass the rows already written to draw a large table in
            chunks with unique ids, as ``tabsynth sample`` does: ``id_start=written + 1``.

        Returns
        -------
        DataFrame
            ``n_rows`` rows with the fitted columns and dtypes. ``last_sample_stats_`` then
            reports the requested, produced and generated row counts and the acceptance rate
            (share of generated rows that met their conditions).

        Raises
        ------
        SamplingError
            A bad argument (naming it), a request that would not fit in memory, ids beyond
            their column's dtype, or conditions the model cannot meet within the budget.
        """
        from tabsynth.models.conditions import sample_with_conditions

        self._check_fitted()
        first_id = _check_id_start(id_start)
        generator = self._sampling_generator(random_state)
        self._decoded_rows = 0
        self.last_sample_stats_: dict[str, Any] | None = None
        frame = sample_with_conditions(self, n_rows, conditions, generator)
        return self.transformer_.with_ids(frame, first_id)  # ids numbered once, in final order

    def _generate_frame(
        self, n: int, cond: dict[str, Any] | None, generator: torch.Generator
    ) -> pd.DataFrame:
        """``n`` decoded rows without their id columns (``sample`` numbers those once, at the
        end), generated and decoded chunk by chunk (bounded memory).

        Decoding draws its randomness from a seed taken from ``generator``, keyed by the rows
        this request decoded before (``self._decoded_rows``).
        """
        modules = self._modules().values()
        for module in modules:
            module.eval()
        frames = []
        with torch.no_grad():
            for start in range(0, n, self._sample_chunk):
                size = min(self._sample_chunk, n - start)
                out = np.empty((size, self.transformer_.output_dim_), dtype=np.float32)
                for lo in range(0, size, self._forward_chunk):
                    hi = min(lo + self._forward_chunk, size)
                    part = self._generate(hi - lo, cond, generator)
                    out[lo:hi] = part.detach().to("cpu", torch.float32).numpy()
                seed = int(
                    torch.randint(2**62, (1,), generator=generator, device=generator.device).item()
                )
                offset = getattr(self, "_decoded_rows", 0)
                frames.append(
                    self.transformer_.inverse_transform(
                        out, id_start=offset, random_state=seed, ids=False
                    )
                )
                self._decoded_rows = offset + size
        if not frames:
            return self.transformer_.inverse_transform(
                np.zeros((0, self.transformer_.output_dim_), dtype=np.float32), ids=False
            )
        if len(frames) == 1:
            return frames[0]
        return pd.concat(frames, ignore_index=True)

    def plot_history(self) -> Any:
        """The training curves of ``history_``: a matplotlib ``Figure`` with one panel per loss
        (the same drawing as the HTML report's; needs the ``report`` extra)."""
        from tabsynth.models._tracking import plot_history

        self._check_fitted()
        return plot_history(self.history_, title=f"{type(self).__name__} training curves")

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one file (JSON + raw tensors, no pickle); see ``load``.

        Missing parent folders are created; any failure raises ``ModelFileError`` naming
        ``path``.
        """
        self._check_fitted("save()")
        check_path(path, "save()")
        fitted = {name: _jsonable(getattr(self, name, None)) for name in self._fitted_spec()}
        header = {
            "library_version": __version__,
            "class": type(self).__name__,
            "params": _jsonable(self.get_params()),
            "metadata": self.metadata_.to_dict(),
            "transformer": self.transformer_.to_dict(),
            "history": json.loads(self.history_.to_json(orient="records")),
            "history_columns": [str(c) for c in self.history_.columns],
            "timings": _jsonable(self.timings_),
            "fitted": fitted,
        }
        arrays: dict[str, np.ndarray] = {}
        for mod_name, module in self._modules().items():
            for key, tensor in module.state_dict().items():
                t = tensor.detach().to("cpu")
                if t.dtype == torch.bfloat16:
                    t = t.float()
                arrays[f"modules/{mod_name}/{key}"] = t.numpy()
        for key, arr in self._extra_state().items():
            arrays[f"extra/{key}"] = np.asarray(arr)
        write_model_file(path, header, arrays)

    @classmethod
    def _fitted_spec(cls) -> dict[str, Validator]:
        """``_fitted_attrs`` of the class and all its bases (subclass entries win)."""
        spec: dict[str, Validator] = {}
        for klass in reversed(cls.__mro__):
            spec.update(klass.__dict__.get("_fitted_attrs", {}))
        return spec

    @classmethod
    def _from_file(
        cls, path: Path, header: dict[str, Any], arrays: dict[str, np.ndarray], device: Any
    ) -> BaseSynthesizer:
        """A model from a decoded file, restoring only the whitelist (see the module doc)."""
        from tabsynth.metadata import Metadata
        from tabsynth.transform import TableTransformer

        def refuse(message: str) -> ModelFileError:
            return ModelFileError(f"{path}: {message}"[:2000])

        extra_keys = sorted(set(header) - _HEADER_KEYS)
        if extra_keys:
            raise refuse(f"unexpected header entries {extra_keys[:5]}")
        params = header.get("params")
        if not isinstance(params, dict):
            raise refuse("the hyper-parameters are missing")
        unknown = sorted(set(params) - set(cls._param_names()))
        if unknown:
            raise refuse(f"{cls.__name__} has no hyper-parameter(s) {unknown[:5]}")
        defaults = {p: v.default for p, v in inspect.signature(cls.__init__).parameters.items()}
        params = dict(params)
        for key, value in params.items():  # JSON lists back to tuples where the default is one
            if isinstance(value, list) and isinstance(defaults.get(key), tuple):
                params[key] = tuple(value)
        if device is not None:
            params["device"] = device
        model = cls(**params)
        try:
            model._validate_params()
        except TabsynthError as exc:
            if device is not None and "device" in str(exc):
                raise
            raise refuse(f"bad hyper-parameter: {exc}") from exc

        fitted = header.get("fitted")
        spec = cls._fitted_spec()
        if not isinstance(fitted, dict) or set(fitted) != set(spec):
            got = sorted(fitted) if isinstance(fitted, dict) else fitted
            raise refuse(f"the fitted attributes {str(got)[:200]} are not {sorted(spec)}")
        try:
            for name, check in spec.items():
                setattr(model, name, check(fitted[name]))
        except ValueError as exc:
            raise refuse(f"fitted attribute {name!r}: {exc}") from exc
        if (model.privacy_report_ is None) != (model.epsilon is None):
            raise refuse("the privacy report does not match epsilon")

        try:
            model.metadata_ = Metadata.from_dict(header["metadata"])
            model.transformer_ = TableTransformer.from_dict(header["transformer"])
            same = _canonical(model.metadata_.to_dict()) == _canonical(
                model.transformer_.metadata_.to_dict()
            )
            if not same:
                raise refuse("the metadata does not match the transformer's")
            model.history_ = _history(header["history"], header["history_columns"])
            timings = header["timings"]
            if not isinstance(timings, dict):
                raise TypeError("timings must be a dict")
            model.timings_ = {str(k): fitted_number(0.0)(v) for k, v in timings.items()}
        except ModelFileError:
            raise
        except _HEADER_ERRORS as exc:  # incl. MetadataError/DataError
            raise refuse(f"the model header is inconsistent ({exc!r})"[:600]) from exc

        bad = [k for k in arrays if not k.startswith(("modules/", "extra/"))]
        if bad:
            raise refuse(f"unexpected arrays {bad[:5]}")
        model.device_ = _nn.resolve_device(model.device)
        model._sample_generator = None
        model._check_saved_shapes(path, arrays)  # before any real allocation
        model._init_generator = _nn.make_generator(0, "cpu")  # weights are overwritten below
        model._build()
        for mod_name, module in model._modules().items():
            prefix = f"modules/{mod_name}/"
            state = {
                k[len(prefix) :]: torch.from_numpy(v)
                for k, v in arrays.items()
                if k.startswith(prefix)
            }
            if not all(
                bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()
            ):
                raise refuse(f"the saved weights of {mod_name!r} are not all finite")
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise refuse(
                    f"the saved weights of {mod_name!r} do not fit the model ({exc})"
                ) from exc
            module.to(model.device_)
            module.eval()
        extra = {k[len("extra/") :]: v for k, v in arrays.items() if k.startswith("extra/")}
        try:
            model._set_extra_state(extra)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise refuse(f"saved model state is incomplete or invalid ({exc!r})") from exc
        return model

    def _check_saved_shapes(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        """Build the networks on the ``meta`` device (no memory) and compare every parameter's
        shape with the saved tensor's, so hyper-parameters can never allocate more than the
        file holds."""
        self._init_generator = _nn.make_generator(0, "cpu")
        device = self.device_
        self.device_ = torch.device("meta")
        try:
            self._build()
            expected = {  # a scalar (BatchNorm's counter) was saved as shape (1,) by format 1
                f"modules/{m}/{k}": tuple(t.shape) or (1,)
                for m, module in self._modules().items()
                for k, t in module.state_dict().items()
            }
        except (RuntimeError, ValueError, TypeError, OverflowError, IndexError) as exc:
            raise ModelFileError(f"{path}: the networks cannot be built ({exc!r})"[:600]) from exc
        finally:
            self.device_ = device
        saved = {k: v.shape or (1,) for k, v in arrays.items() if k.startswith("modules/")}
        if saved != expected:
            diff = sorted(set(saved.items()) ^ set(expected.items()))[:3]
            raise ModelFileError(
                f"{path}: the saved weights do not fit the model's declared sizes "
                f"(first differences, name and shape: {diff})"[:600]
            )


def load(path: str | os.PathLike, device: str | None = None) -> BaseSynthesizer:
    """Load a model written by ``model.save(path)``; ``device`` overrides the saved one.

    Raises ``ModelFileError`` for a file that is not a tabsynth model, comes from an
    unsupported format version, or whose content was modified. No code from the file is run,
    and only declared attributes are restored, each checked (see ``BaseSynthesizer``).
    A model trained on CUDA loads on a CPU-only machine (with a warning).
    """
    header, arrays = read_model_file(path)
    path = check_path(path, "load()")
    name = header.get("class")
    cls = MODEL_REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"{path}: unknown model class {str(name)[:100]!r}")
    return cls._from_file(path, header, arrays, device)


def _jsonable(value: Any) -> Any:
    """Hyper-parameters/fitted scalars as JSON (tuples become lists; numpy scalars unwrap)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _history(rows: Any, columns: Any) -> pd.DataFrame:
    """The per-epoch history from JSON: records of numbers under string column names."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise TypeError("history_columns must be a list of strings")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("history must be a list of records")
    for row in rows:
        if not set(row) <= set(columns) or not all(
            v is None or type(v) in (int, float) for v in row.values()
        ):
            raise TypeError("history records must hold numbers under history_columns")
    return pd.DataFrame(rows, columns=columns)


def _check_id_start(id_start: Any) -> int:
    """The first id number of a ``sample`` (``None``: 1, as the ids of a fit's table)."""
    check_int("id_start", id_start, low=0, optional=True, error=SamplingError)
    return 1 if id_start is None else int(id_start)


def _physical_memory() -> int:
    """Bytes of RAM (16 GiB where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def format_privacy_report(report: dict) -> str:
    """A short human-readable view of a privacy report (the full one is a dict)."""
    lines = [
        f"privacy: ({report['epsilon']:.3f}, {report['delta']:.1e})-DP, {report['adjacency']} "
        f"of one {report['unit']}; accountant {report['accountant']} (RDP cross-check "
        f"{report['rdp_epsilon']:.3f}); target epsilon {report['target_epsilon']:g}",
        f"  n: {report.get('n_treatment')}; schema: {report.get('schema_source')}",
    ]
    for m in report.get("mechanisms", []):
        steps = f", q={m['sample_rate']:.4g}, steps={m['steps']}" if m["kind"] == "dpsgd" else ""
        alone = m.get("epsilon_alone")
        share = f", epsilon alone {alone:.3f}" if alone is not None else ""
        lines.append(f"  - {m['name']}: noise multiplier {m['noise_multiplier']:.3g}{steps}{share}")
    return "\n".join(lines)


def _real(value: Any) -> bool:
    """Any real number type (int, float, np.float32, ...), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - exotic values in repr only
        return False


__all__ = [
    "MODEL_REGISTRY",
    "BaseSynthesizer",
    "fitted_int",
    "fitted_number",
    "fitted_optional",
    "load",
]
