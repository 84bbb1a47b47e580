"""Callbacks of the :class:`~sklearn_ltm.training.Trainer`: everything outside the loop.

A callback is any object with some of the methods below; each gets the trainer and the
keywords ``history`` (list of epoch records) and ``model`` (the RetrievalModel), plus:

==================  =========================================  ===========================
event               extra keywords                             when
==================  =========================================  ===========================
on_train_begin      --                                         before the first epoch
on_epoch_begin      ``epoch``                                  before each epoch
on_batch_begin      ``epoch``, ``step``, ``batch``             before each optimizer step
on_after_backward   ``epoch``, ``loss``                        gradients computed, not applied
on_batch_end        ``epoch``, ``step``, ``loss``, ``batch``   after each optimizer step
on_epoch_scores     ``epoch``, ``record``                      add scores to the record
on_epoch_end        ``epoch``, ``record``                      the record is in ``history``
on_train_end        --                                         training finished
==================  =========================================  ===========================

``teardown(trainer)`` runs at the end whatever happened. Callbacks with state (early
stopping's best score ...) have ``state_dict`` / ``load_state_dict``, saved in
checkpoints. A callback sets ``trainer.stop_training = True`` to stop after the epoch.
Callbacks that write or print should check ``trainer.is_main_process``.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator

from .._utils import atomic_write
from .._validation import StrOptions, check_params, positive_int

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "FrozenEncoderCache",
    "LRScheduler",
    "NaNGuard",
    "ProgressBar",
    "ValidationScoring",
    "MONITORS",
    "check_writable",
]

_METRIC_NAMES = ("R@1", "R@5", "R@10", "mAP@10", "median_rank", "mean_rank", "mean_recall")
#: Names an :class:`EarlyStopping` can monitor: every validation score, both directions.
MONITORS = tuple(f"{d}_{m}" for d in ("t2a", "a2t") for m in _METRIC_NAMES)


def check_writable(path, what: str) -> str:
    """Raise ``ValueError`` unless a file can be written at ``path``; return it as a str.

    The project's one writability check, :func:`sklearn_ltm._checks.check_writable_path`
    (also used by the CLI's ``--output`` and ``--cache``): refused are a folder, a path
    under a file, an empty name, a folder where no file can be created; missing parent
    folders are fine when they can be created (the file's atomic write creates them).

    Parameters
    ----------
    path : str or path-like
    what : str
        Named in the message, e.g. ``"Checkpoint(path)"``.

    Examples
    --------
    >>> check_writable("/proc/x.ckpt", "Checkpoint(path)")
    Traceback (most recent call last):
    ...
    ValueError: Checkpoint(path)='/proc/x.ckpt' cannot be written: ...
    """
    from .._checks import check_writable_path

    return str(check_writable_path(path, what))


class Callback(BaseEstimator):
    """Base class of callbacks (optional: any object with the event methods works).

    Parameters are stored as in scikit-learn, so callbacks ``clone`` and show in
    ``repr``; :meth:`check` validates them before training starts.

    Examples
    --------
    >>> class CountBatches(Callback):
    ...     def on_train_begin(self, trainer, **kw):
    ...         self.n_ = 0
    ...     def on_batch_end(self, trainer, *, loss, **kw):
    ...         self.n_ += 1
    >>> CountBatches()
    CountBatches()
    """

    #: Callbacks run in increasing order (user callbacks: 50).
    order = 50
    _parameter_constraints: dict = {}

    def check(self) -> None:
        """Validate the parameters (called by ``LTMRetriever.fit`` before any work)."""
        check_params(self.get_params(deep=False), self._parameter_constraints,
                     type(self).__name__)


class NaNGuard(Callback):
    """Stop with ``FloatingPointError`` when a batch loss is NaN or infinite.

    Examples
    --------
    >>> import torch
    >>> NaNGuard().on_after_backward(None, loss=torch.tensor(float("nan")), epoch=3)
    Traceback (most recent call last):
    ...
    FloatingPointError: the training loss became nan at epoch 3; lower learning_rate or raise epsilon.
    """

    order = 0

    def on_after_backward(self, trainer, *, loss, epoch, **kw):
        if not bool(torch.isfinite(torch.as_tensor(loss))):
            raise FloatingPointError(
                f"the training loss became {float(loss)} at epoch {epoch}; lower "
                "learning_rate or raise epsilon."
            )


class LRScheduler(Callback):
    """Set every parameter group's rate to ``base_lr * schedule.factor(step)`` before each
    batch (heads, metric, audio and text encoder each from their own base rate).

    Parameters
    ----------
    schedule : LRSchedule
        E.g. :class:`~sklearn_ltm.components.CosineLR`.

    Examples
    --------
    >>> from sklearn_ltm.components import StepLR
    >>> LRScheduler(StepLR(gamma=0.5))
    LRScheduler(schedule=StepLR(gamma=0.5))
    """

    order = 0

    def __init__(self, schedule):
        self.schedule = schedule

    def check(self):
        from ..components import LRSchedule

        if not isinstance(self.schedule, LRSchedule):
            raise ValueError(f"LRScheduler(schedule={self.schedule!r}) needs an LRSchedule.")
        self.schedule.validate()

    def on_train_begin(self, trainer, **kw):
        self.steps_per_epoch_ = trainer.steps_per_epoch()
        self.total_steps_ = trainer.max_epochs * self.steps_per_epoch_
        for group in trainer.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])

    def on_batch_begin(self, trainer, *, step, **kw):
        factor = self.schedule.factor(step, self.total_steps_, self.steps_per_epoch_)
        for group in trainer.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def state_dict(self):
        return {"total_steps": self.total_steps_, "steps_per_epoch": self.steps_per_epoch_}


class FrozenEncoderCache(Callback):
    """Encode the training clips and captions once with each frozen encoder, so that every
    epoch reuses the outputs (frozen-encoder training then costs about as much as feature
    mode). Only encoders with raw input (waveforms, files, strings) are cached.

    Parameters
    ----------
    sides : tuple of {"audio", "text"}, default=("audio", "text")
        Which frozen encoders to cache.
    distributed : bool, default=False
        In a distributed run, each rank encodes its shard of the rows and the outputs are
        gathered (:func:`sklearn_ltm.distributed.gather_sharded`).

    Examples
    --------
    >>> FrozenEncoderCache(sides=("audio",))
    FrozenEncoderCache(sides=('audio',))
    """

    order = 0

    def __init__(self, sides=("audio", "text"), distributed=False):
        self.sides = sides
        self.distributed = distributed

    def on_train_begin(self, trainer, **kw):
        from ..batching import encode_all
        from ..distributed import gather_sharded

        data, device = trainer.data, trainer.device
        sides = {"audio": (data.audio, "features", np.unique(data.clip_of_pair[data.train_pairs])),
                 "text": (data.text, "features", np.asarray(data.train_pairs))}
        for side, (batcher, plain_kind, rows) in sides.items():
            if side not in self.sides or side not in trainer.frozen or batcher.kind == plain_kind:
                continue

            def encode(shard, batcher=batcher, side=side):
                return encode_all(trainer.model, batcher, side=side,
                                  batch_size=trainer.batch_size, device=device, embed=False,
                                  mixed_precision=trainer.mixed_precision, indices=shard,
                                  progress=trainer.verbose > 0 and trainer.is_main_process)

            # under torchrun each rank encodes its shard and every rank gets the whole cache
            enc = gather_sharded(encode, rows) if self.distributed else encode(rows)
            cache = torch.zeros((len(batcher), enc.shape[1]), device=device)
            cache[torch.as_tensor(rows, device=device)] = enc
            trainer.encoder_cache[side] = cache

    def teardown(self, trainer):
        trainer.encoder_cache.clear()


class ValidationScoring(Callback):
    """Add validation scores (``val_`` + each key of ``score_fn(model)``) to every record.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(model) -> dict of float`` (the estimator's: every metric of
        :data:`MONITORS` on the validation clips).

    Examples
    --------
    >>> cb = ValidationScoring(lambda model: {"t2a_R@1": 0.5})
    >>> record = {}
    >>> cb.on_epoch_scores(None, model=None, record=record)
    >>> record
    {'val_t2a_R@1': 0.5}
    """

    order = 10

    def __init__(self, score_fn):
        self.score_fn = score_fn

    def on_epoch_scores(self, trainer, *, model, record, **kw):
        record.update({f"val_{k}": float(v) for k, v in self.score_fn(model).items()})


class EarlyStopping(Callback):
    """Stop when the monitored validation score has not improved for ``patience`` epochs,
    and keep the weights of the best epoch.

    Parameters
    ----------
    monitor : str, default="t2a_mean_recall"
        A validation score, one of :data:`MONITORS` (recalls, mAP@10, ranks, mean recall;
        ``t2a`` or ``a2t``). Ranks improve downwards, the others upwards.
    patience : int, default=5
        Epochs without improvement before stopping.
    restore_best : bool, default=True
        Load the best epoch's weights when training ends.

    Examples
    --------
    >>> EarlyStopping(monitor="a2t_R@1", patience=3).lower_is_better()
    False
    >>> EarlyStopping(monitor="t2a_median_rank").lower_is_better()
    True
    """

    order = 20
    _parameter_constraints = {"monitor": [StrOptions(set(MONITORS))],
                              "patience": [positive_int()],
                              "restore_best": ["boolean"]}

    def __init__(self, monitor="t2a_mean_recall", *, patience=5, restore_best=True):
        self.monitor = monitor
        self.patience = patience
        self.restore_best = restore_best

    def lower_is_better(self) -> bool:
        """Whether the monitored score improves downwards (ranks)."""
        return self.monitor.endswith("_rank")

    def on_train_begin(self, trainer, **kw):
        if not hasattr(self, "best_score_") or not getattr(self, "_resumed", False):
            self.best_score_ = -math.inf
            self.best_epoch_ = None
            self.bad_epochs_ = 0
            self.best_state_ = None
        self._resumed = False

    def on_epoch_end(self, trainer, *, model, record, **kw):
        key = f"val_{self.monitor}"
        if key not in record:
            scores = sorted(k for k in record if k.startswith("val_"))
            if scores:
                raise ValueError(f"EarlyStopping(monitor={self.monitor!r}): {key!r} is not among "
                                 f"the validation scores {scores}.")
            return  # no validation data: nothing to monitor
        score = -record[key] if self.lower_is_better() else record[key]
        if score > self.best_score_:
            self.best_score_, self.best_epoch_, self.bad_epochs_ = score, record["epoch"], 0
            self.best_state_ = copy.deepcopy({k: v.detach().cpu()
                                              for k, v in model.state_dict().items()})
        else:
            self.bad_epochs_ += 1
            if self.bad_epochs_ >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer, *, model, **kw):
        if self.restore_best and self.best_state_ is not None:
            model.load_state_dict(self.best_state_)

    def state_dict(self):
        return {"best_score": float(self.best_score_), "best_epoch": self.best_epoch_,
                "bad_epochs": int(self.bad_epochs_), "best_state": self.best_state_}

    def load_state_dict(self, state):
        self.best_score_ = float(state["best_score"])
        self.best_epoch_ = state["best_epoch"]
        self.bad_epochs_ = int(state["bad_epochs"])
        self.best_state_ = state["best_state"]
        self._resumed = True


class Checkpoint(Callback):
    """Write a resumable checkpoint atomically after every epoch and every N steps.

    The file holds the weights, the optimizer, the position in the epoch, every random
    state and the callbacks' states (:meth:`Trainer.state_dict`); ``LTMRetriever.fit(...,
    resume_from=path)`` continues from it bitwise as the uninterrupted run would.

    Parameters
    ----------
    path : str or path-like
        Checked to be writable before training starts.
    every_n_steps : int or None, default=None
        Also write after every ``every_n_steps`` optimizer steps.

    Examples
    --------
    >>> Checkpoint("run.ckpt", every_n_steps=100)
    Checkpoint(every_n_steps=100, path='run.ckpt')
    """

    order = 80
    _parameter_constraints = {"path": [str, os.PathLike], "every_n_steps": [positive_int(), None]}

    def __init__(self, path, *, every_n_steps=None):
        self.path = path
        self.every_n_steps = every_n_steps

    def check(self):
        super().check()
        check_writable(self.path, "Checkpoint(path)")

    def save(self, trainer):
        """Write ``trainer.state_dict()`` to ``path`` (main process only)."""
        if not trainer.is_main_process:
            return
        state = trainer.state_dict()
        with atomic_write(self.path, "wb") as fh:
            torch.save(state, fh)

    def on_batch_end(self, trainer, *, step, **kw):
        if self.every_n_steps and step % self.every_n_steps == 0 and trainer.batch_in_epoch:
            self.save(trainer)

    def on_epoch_end(self, trainer, **kw):
        self.save(trainer)


class ProgressBar(Callback):
    """A tqdm bar over epochs with the latest scores (main process only).

    Examples
    --------
    >>> ProgressBar()
    ProgressBar()
    """

    order = 90

    def on_train_begin(self, trainer, **kw):
        self.bar_ = None
        if trainer.is_main_process:
            from tqdm.auto import tqdm

            self.bar_ = tqdm(total=trainer.max_epochs, initial=trainer.epoch,
                             desc="m-LTM training", unit="epoch")

    def on_epoch_end(self, trainer, *, record, **kw):
        if self.bar_ is not None:
            self.bar_.update(1)
            self.bar_.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                                   if k not in ("epoch", "time") and not k.startswith("lr_")})

    def teardown(self, trainer):
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
            self.bar_ = None


