"""LTMRetriever: the scikit-learn estimator that trains and serves m-LTM."""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import __version__, _checks, distributed
from ._inputs import AudioInput, TextInput, check_audio, check_text
from ._utils import atomic_write, resolve_device
from ._validation import (
    Interval,
    Real,
    RegisteredName,
    _fit_context,
    check_params,
    positive_float,
    positive_int,
)
from .batching import AudioBatcher, TextBatcher, encode_all
from .components import (
    AUDIO_ENCODERS,
    LOSSES,
    LR_SCHEDULES,
    METRICS,
    OPTIMIZERS,
    AudioEncoder,
    GroundMetricComponent,
    LossComponent,
    LRSchedule,
    OptimizerComponent,
    TextEncoder,
    resolve_component,
)
from .fitting import (
    Pairs,
    build_encoders,
    build_model,
    check_audio_files,
    corrupt_training_captions,
    make_pairs,
    split_validation,
)
from .gradient_cache import check_micro_batch_size
from .training import (
    EarlyStopping,
    FrozenEncoderCache,
    LargeBatchStep,
    LRScheduler,
    NaNGuard,
    ProgressBar,
    Trainer,
    TrainingData,
    ValidationScoring,
    param_groups,
)

__all__ = ["LTMRetriever"]

_FORMAT = "sklearn-ltm-model"
_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_CUSTOM = "<custom module>"

#: Parameters holding a component (or a name resolved by that kind's registry).
_COMPONENT_PARAMS = ("audio_encoder", "text_encoder", "metric", "loss", "optimizer",
                     "lr_schedule")
_DEFAULT_EPSILON, _DEFAULT_MASS, _DEFAULT_VALIDATION = 0.1, 1.0, 0.1


def _on_main_process(score_fn):
    """``score_fn`` run on rank 0 only, its scores sent to every rank (so that early
    stopping decides the same everywhere)."""
    def score(model):
        return distributed.broadcast_object(
            score_fn(model) if distributed.is_main_process() else None)

    return score


class LTMRetriever(TransformerMixin, BaseEstimator):
    r"""Audio-text retrieval by mini-batch Learning-to-Match (m-LTM).

    Within each mini-batch of (caption, clip) pairs an entropic optimal-transport plan between
    caption and audio embeddings is computed under a ground metric (by default the squared
    Euclidean distance of the learned embeddings; a learned Mahalanobis metric
    :math:`M = L^\top L` with ``metric="mahalanobis"``), and the loss pulls that plan towards
    the ground-truth matching (Luong et al., ICLR 2024). With ``mass_fraction < 1`` the plan is
    a partial transport plan, which lets misaligned training pairs go unmatched.

    Settings specific to one part live in that part's component (reached as
    ``audio_encoder__weights``, ``loss__temperature``, ``metric__rank``, ... by
    ``get_params``, ``set_params``, ``clone`` and ``GridSearchCV``); a name such as
    ``loss="contrastive"`` stands for the component registered under it
    (:mod:`sklearn_ltm.components`).

    Parameters
    ----------
    audio_encoder : str or AudioEncoder or torch.nn.Module, default="auto"
        What turns the audio ``X`` into vectors. ``"auto"``: precomputed features for a 2-D
        float ``X``, ``"cnn10"`` for file paths. ``"features"``: ``X`` is a 2-D array of
        precomputed features. ``"cnn10"``, ``"cnn14"``, ``"resnet38"``
        (:class:`~sklearn_ltm.components.PANNs`) or ``"aisfx"``: ``X`` is fixed-length
        waveforms or audio file paths. A component sets the weights, sample rate of waveform
        arrays, clip length, file reading, freezing and learning rate of the encoder. A user
        module (``(waveforms, lengths) -> (B, D)`` with ``sample_rate`` and ``output_dim``) is
        wrapped in :class:`~sklearn_ltm.components.ModuleAudio`; it is copied, never trained
        in place.
    text_encoder : str or TextEncoder or torch.nn.Module, default="auto"
        What turns the captions ``y`` into vectors. ``"auto"``: precomputed features for a
        2-D float ``y``, ``"scratch"`` (:class:`~sklearn_ltm.components.ScratchText`, trained
        from scratch, vocabulary built in ``fit``) for strings. Any other string is a Hugging
        Face model name or local path (:class:`~sklearn_ltm.components.HuggingFaceText`).
    metric : str or GroundMetricComponent, default="euclidean"
        Ground metric: ``"euclidean"``, ``"mahalanobis"`` (``metric__rank``,
        ``metric__learning_rate``), ``"diagonal"`` or ``"cosine"``.
    loss : str or LossComponent, default="mltm"
        ``"mltm"`` (OT plan against the ground-truth plan; ``loss__max_iter``,
        ``loss__tol``, ``loss__normalize_cost``, ``loss__group_aware``,
        ``loss__sqrt_cost``, default ``True``: transport on the square-rooted cost),
        ``"mltm-reference"`` (the paper code's objective,
        :class:`~sklearn_ltm.components.MLTMReference`; its full settings are
        :data:`sklearn_ltm.reference.REFERENCE_TRAINING`), ``"contrastive"`` (symmetric
        InfoNCE, ``loss__temperature``) or ``"triplet"`` (hardest negatives,
        ``loss__margin``).
    epsilon : float, default=0.1
        Entropic regularisation of the batch OT plan, > 0 (m-LTM losses only: a warning
        says when it is set for another loss).
    mass_fraction : float, default=1.0
        Transported mass in (0, 1]: 1 is full OT, < 1 partial OT (m-LTM losses only).
    noise_ratio : float, default=0.0
        Fraction in [0, 1) of training pairs whose captions are moved to other clips before
        training (the paper's noisy-correspondence protocol, :mod:`sklearn_ltm.noise`).
    embedding_dim : int, default=256
        Size of the shared embedding space.
    hidden_dim : int or None, default=None
        Hidden size of the two-layer projection heads (``None``: ``2 * embedding_dim``).
    batch_size : int, default=128
        Pairs per mini-batch, >= 2.
    max_epochs : int, default=20
        Upper bound on training epochs (with ``warm_start``: epochs of this call).
    learning_rate : float, default=1e-3
        Base learning rate of the projection heads; the metric and the encoders take theirs
        from their components (by default the same, or 1e-5 for pretrained encoders).
    optimizer : str or OptimizerComponent, default="adam"
        ``"adam"`` or ``"adamw"`` (``optimizer__weight_decay``, ``optimizer__gradient_clip``).
    lr_schedule : str or LRSchedule, default="constant"
        ``"constant"``, ``"cosine"`` (linear warm-up then cosine decay,
        ``lr_schedule__warmup_fraction``) or ``"step"``; applied per batch to every parameter
        group (heads, metric, audio encoder, text encoder) relative to its own base rate.
    early_stopping : bool or EarlyStopping, default=True
        Stop when the validation score has not improved for ``early_stopping__patience``
        epochs (default 5) and restore the best weights; ``early_stopping__monitor`` chooses
        the score (any validation metric, either direction). No effect without validation.
    validation_fraction : float, default=0.1
        Fraction of clips (not pairs) held out for per-epoch validation, in [0, 1). An
        ``eval_set`` given to ``fit`` is used instead.
    warm_start : bool, default=False
        ``fit`` continues training the fitted model (also one from :meth:`load`) on the new
        data instead of building a new one.
    callbacks : list of callbacks or None, default=None
        Extra :mod:`sklearn_ltm.training` callbacks (e.g.
        :class:`~sklearn_ltm.training.Checkpoint`), or any object with ``on_train_begin``,
        ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end`` methods.
    mixed_precision : bool, default=False
        bf16 autocast of the encoders on CUDA (a warning says it does nothing on CPU).
    device : str, default="auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, batching, the validation split and the noise.
    verbose : int, default=0
        ``> 0``: progress bars.

    Attributes
    ----------
    model_ : RetrievalModel
        The trained torch module.
    audio_encoder_, text_encoder_, metric_, loss_ : component
        The resolved components the model was built with.
    history_ : list of dict
        Per-epoch ``train_loss``, validation metrics (``val_*``), ``time`` and the learning
        rate of each parameter group (``lr_head``, ``lr_metric``, ...).
    n_epochs_ : int
        Epochs run.
    noisy_pairs_ : ndarray of int
        Indices of the training pairs whose captions were moved to other clips.
    validation_pairs_ : ndarray of int
        Pairs held out for validation.
    n_features_in_ : int
        Audio feature count (feature or waveform mode).
    audio_input_kind_, text_input_kind_ : str
        ``"features"``, ``"waveforms"``, ``"paths"`` / ``"features"``, ``"strings"``.

    See Also
    --------
    sklearn_ltm.evaluation.evaluate : every retrieval metric in both directions.
    sklearn_ltm.zero_shot.ZeroShotAudioClassifier : zero-shot classification on top.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 8))
    >>> audio = Z @ rng.normal(size=(8, 12))
    >>> text = Z @ rng.normal(size=(8, 10))
    >>> model = LTMRetriever(embedding_dim=8, max_epochs=20, batch_size=20, learning_rate=1e-2,
    ...                      validation_fraction=0.0, random_state=0).fit(audio, text)
    >>> model.transform(audio).shape
    (60, 8)
    >>> model.score(audio, text) > 0.9
    True
    >>> model.get_params()["loss__max_iter"]
    1000
    """

    _parameter_constraints = {
        "audio_encoder": [RegisteredName(AUDIO_ENCODERS, extra=("auto",)), AudioEncoder,
                          nn.Module],
        "text_encoder": [str, os.PathLike, TextEncoder, nn.Module],
        "metric": [RegisteredName(METRICS), GroundMetricComponent],
        "loss": [RegisteredName(LOSSES), LossComponent],
        "epsilon": [positive_float()],
        "mass_fraction": [Interval(Real, 0, 1, closed="right")],
        "noise_ratio": [Interval(Real, 0, 1, closed="left")],
        "embedding_dim": [positive_int()],
        "hidden_dim": [positive_int(), None],
        "batch_size": [positive_int(2)],
        "max_epochs": [positive_int()],
        "learning_rate": [positive_float()],
        "optimizer": [RegisteredName(OPTIMIZERS), OptimizerComponent],
        "lr_schedule": [RegisteredName(LR_SCHEDULES), LRSchedule],
        "early_stopping": ["boolean", EarlyStopping],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "warm_start": ["boolean"],
        "callbacks": [list, tuple, None],
        "mixed_precision": ["boolean"],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, audio_encoder="auto", text_encoder="auto", *, metric="euclidean",
                 loss="mltm", epsilon=0.1, mass_fraction=1.0, noise_ratio=0.0,
                 embedding_dim=256, hidden_dim=None, batch_size=128, max_epochs=20,
                 learning_rate=1e-3, optimizer="adam", lr_schedule="constant",
                 early_stopping=True, validation_fraction=0.1, warm_start=False,
                 callbacks=None, mixed_precision=False, device="auto", random_state=None,
                 verbose=0):
        self.audio_encoder = audio_encoder
        self.text_encoder = text_encoder
        self.metric = metric
        self.loss = loss
        self.epsilon = epsilon
        self.mass_fraction = mass_fraction
        self.noise_ratio = noise_ratio
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ nested parameters
    def _component_or_none(self, key, value):
        """The component behind parameter ``key`` (resolving names), or None."""
        if key == "early_stopping":
            if isinstance(value, EarlyStopping):
                return value
            return EarlyStopping() if value is True else None
        if key not in _COMPONENT_PARAMS or (isinstance(value, str) and value == "auto"):
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        try:
            return resolve_component(key, value)
        except (ValueError, TypeError):
            return None

    def get_params(self, deep=True):
        """Parameters of this estimator; with ``deep``, also each component's as
        ``<param>__<name>`` (a name such as ``loss="mltm"`` shows its default component's).

        Parameters
        ----------
        deep : bool, default=True

        Returns
        -------
        dict
        """
        params = super().get_params(deep=False)
        if not deep:
            return params
        for key in (*_COMPONENT_PARAMS, "early_stopping"):
            component = self._component_or_none(key, params[key])
            if component is not None:
                for sub, value in component.get_params(deep=True).items():
                    params[f"{key}__{sub}"] = value
        return params

    def set_params(self, **params):
        """Set parameters; ``<param>__<name>`` sets a component's, turning a name such as
        ``loss="contrastive"`` into its component first (so ``set_params(loss="contrastive",
        loss__temperature=0.1)`` works).

        Returns
        -------
        self
        """
        top = {k: v for k, v in params.items() if "__" not in k}
        if top:
            super().set_params(**top)
        nested: dict = {}
        for key, value in params.items():
            if "__" in key:
                head, sub = key.split("__", 1)
                nested.setdefault(head, {})[sub] = value
        valid = super().get_params(deep=False)
        for head, sub_params in nested.items():
            if head not in valid:
                raise ValueError(f"Invalid parameter {head!r} for estimator {self}. Valid "
                                 f"parameters are: {sorted(valid)!r}.")
            current = getattr(self, head)
            component = self._component_or_none(head, current)
            if component is None:
                raise ValueError(
                    f"{head}={current!r} has no parameters to set ({sorted(sub_params)}); "
                    f"give {head} a component or a registered name first.")
            if component is not current:
                setattr(self, head, component)
            component.set_params(**sub_params)
        return self

    # ------------------------------------------------------------------ checks
    def _component(self, key):
        return resolve_component(key, os.fspath(getattr(self, key))
                                 if isinstance(getattr(self, key), os.PathLike)
                                 else getattr(self, key))

    def _resolve_parts(self, audio_component, text_component) -> dict:
        """Validated copies of every component of this fit."""
        parts = {
            "audio_encoder": clone(audio_component),
            "text_encoder": clone(text_component),
            "metric": clone(self._component("metric")),
            "loss": clone(self._component("loss")),
            "optimizer": clone(self._component("optimizer")),
            "lr_schedule": clone(self._component("lr_schedule")),
        }
        for component in parts.values():
            component.validate()
        parts["metric"].check_dim(self.embedding_dim)
        early = self._component_or_none("early_stopping", self.early_stopping)
        parts["early_stopping"] = None if early is None else clone(early)
        if parts["early_stopping"] is not None:
            parts["early_stopping"].check()
        return parts

    def _check_callbacks(self) -> list:
        callbacks = list(self.callbacks or [])
        for cb in callbacks:
            check = getattr(cb, "check", None)
            if check is not None:
                check()
        return callbacks

    def _warn_inapplicable(self, parts, audio_kind: str, device) -> None:
        notes = []
        loss = parts["loss"]
        if not loss.uses_transport:
            for name, default in (("epsilon", _DEFAULT_EPSILON), ("mass_fraction", _DEFAULT_MASS)):
                value = getattr(self, name)
                if value != default:
                    notes.append(f"{name}={value!r} does not apply to loss={type(loss).__name__}"
                                 "(), which solves no transport problem; it is ignored.")
        for key in ("audio_encoder", "text_encoder"):
            notes += parts[key].inapplicable_settings()
        notes += getattr(parts["audio_encoder"], "input_settings_notes", lambda k: [])(audio_kind)
        if self.mixed_precision and device.type != "cuda":
            notes.append("mixed_precision=True applies to CUDA only; this fit runs on "
                         f"{device.type}.")
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ inputs
    def _audio_rate(self):
        return getattr(self.model_.audio_encoder, "sample_rate", None)

    def _prepare_audio(self, audio: AudioInput):
        """Bring waveform arrays to the encoder's rate (a copy)."""
        if audio.kind != "waveforms":
            return audio
        target = self._audio_rate()
        rate = getattr(self.audio_encoder_, "sample_rate", None)
        if rate is None or target is None or rate == target:
            return audio
        from .encoders import resample_waveforms

        return AudioInput("waveforms", np.asarray(
            resample_waveforms(audio.data, rate, target), dtype=np.float32))

    def _audio_batcher(self, audio: AudioInput) -> AudioBatcher:
        return AudioBatcher(audio.kind, audio.data, sample_rate=self._audio_rate(),
                            max_seconds=getattr(self.audio_encoder_, "max_seconds", None))

    def _text_batcher(self, text: TextInput) -> TextBatcher:
        tokenizer = getattr(self.model_.text_encoder, "tokenize", None)
        return TextBatcher(text.kind, text.data, tokenizer)

    def _eval_pairs(self, eval_set, parts) -> Pairs:
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) not in (2, 3):
            raise ValueError("eval_set must be (X_val, y_val) or (X_val, y_val, groups_val); "
                             f"got {type(eval_set).__name__} of length "
                             f"{len(eval_set) if hasattr(eval_set, '__len__') else '?'}.")
        X_val, y_val = eval_set[0], eval_set[1]
        groups_val = eval_set[2] if len(eval_set) == 3 else None
        pairs, _, _ = make_pairs(X_val, y_val, groups_val, audio_encoder=parts["audio_encoder"],
                                 text_encoder=parts["text_encoder"])
        return pairs

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, groups=None, eval_set=None, resume_from=None):
        """Train the retriever on (audio, caption) pairs.

        Parameters
        ----------
        X : array-like of shape (n_pairs, n_features) or sequence of path
            Audio of each pair: precomputed features, fixed-length waveforms or file paths.
            Several captions of one clip are several rows with the same audio.
        y : sequence of str or array-like of shape (n_pairs, n_text_features)
            Caption of each pair, or precomputed text features.
        groups : array-like of shape (n_pairs,), default=None
            Clip identity of each pair; default: equal rows (or paths) of ``X``.
        eval_set : tuple or None, default=None
            ``(X_val, y_val)`` or ``(X_val, y_val, groups_val)``: an explicit validation set
            (such as the official AudioCaps or Clotho validation split), scored every epoch
            instead of holding out ``validation_fraction`` of the clips.
        resume_from : str or None
            A checkpoint written by a :class:`~sklearn_ltm.training.Checkpoint` callback:
            training continues from it exactly (same data and parameters expected).

        Returns
        -------
        self : LTMRetriever
        """
        # 1. pairs and clip groups (bad files handled here); components, callbacks checked
        warm = bool(self.warm_start) and hasattr(self, "model_")
        pairs, parts, val_set, callbacks, world, resume_state = self._check_fit(
            X, y, groups, eval_set, resume_from, warm)
        # the same seed on every rank (rank 0's, also with random_state=None): same noise,
        # split, initialisation and batch order everywhere
        seed = distributed.broadcast_object(
            int(check_random_state(self.random_state).randint(2**31 - 1)))
        rng = np.random.default_rng(seed)
        torch_seed = int(rng.integers(2**31 - 1))
        # 2. validation clips (none held out when eval_set is given)
        if val_set is None:
            train_pairs, val_pairs = split_validation(pairs.clip_of_pair,
                                                      self.validation_fraction, rng)
            _checks.warn_if_no_validation(self.validation_fraction, pairs.n_clips,
                                          len(np.unique(pairs.clip_of_pair[val_pairs])))
        else:
            train_pairs, val_pairs = np.arange(len(pairs.text)), np.zeros(0, dtype=np.int64)
        # 3. caption noise
        caption_row, noisy = corrupt_training_captions(pairs.clip_of_pair, train_pairs,
                                                       self.noise_ratio, rng)
        train_text = pairs.text.take(caption_row)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            # 4. the model (kept by a warm start)
            self._build(pairs, parts, train_text, train_pairs, keep=warm)
            if resume_state is not None:
                _checks.check_checkpoint_matches(resume_state, self.model_, resume_from)
            # 5. training
            trainer = self._make_trainer(parts, pairs, train_text, train_pairs, val_pairs,
                                         val_set, callbacks, rng, world)
            history = trainer.fit(self._training_data(pairs, train_text, train_pairs),
                                  resume_state=resume_state)
        if world.world_size > 1:  # rank 0 may still be writing a checkpoint
            distributed.barrier()
        # 6. fitted attributes
        self._set_fitted(history, warm, noisy, val_pairs)
        return self

    def _check_fit(self, X, y, groups, eval_set, resume_from, warm):
        """Everything checked before any work: device, callbacks and paths, the pairs, the
        components, inapplicable settings (warned), the validation set, a warm start."""
        device = resolve_device(self.device)
        check_micro_batch_size(getattr(self._component("optimizer"), "micro_batch_size", None),
                               self.batch_size)
        callbacks = self._check_callbacks()
        _checks.check_estimator_numbers(self)
        resume_state = (None if resume_from is None
                        else _checks.load_checkpoint_safely(resume_from))
        pairs, audio_component, text_component = make_pairs(
            X, y, groups, audio_encoder=self.audio_encoder, text_encoder=self.text_encoder)
        _checks.warn_if_single_clip(pairs.n_clips, len(pairs.text), stacklevel=4)
        parts = self._resolve_parts(audio_component, text_component)
        val_set = None if eval_set is None else self._eval_pairs(eval_set, parts)
        self._warn_inapplicable(parts, pairs.audio_kind, device)
        if eval_set is not None and self.validation_fraction not in (0, _DEFAULT_VALIDATION):
            warnings.warn(f"validation_fraction={self.validation_fraction!r} is not used: "
                          "eval_set is the validation set.", UserWarning, stacklevel=3)
        if warm:
            self._check_warm_start(pairs, parts)
        world = self._join_distributed(pairs, resume_from, device)
        if world.backend == "nccl":  # one process per GPU: this rank's
            device = world.device
        self.device_ = str(device)
        return pairs, parts, val_set, callbacks, world, resume_state

    def _join_distributed(self, pairs: Pairs, resume_from, device):
        """Under torchrun, join the process group (NCCL for a CUDA device, else gloo) and
        check at start (a collective) that every rank has the same data and parameters, and
        at least 2 pairs per rank."""
        text = os.environ.get("SKLEARN_LTM_DISTRIBUTED_TIMEOUT", distributed.DEFAULT_TIMEOUT)
        try:
            timeout = float(text)
        except ValueError:
            raise ValueError(f"SKLEARN_LTM_DISTRIBUTED_TIMEOUT={text!r} is not a number of "
                             "seconds.") from None
        world = distributed.init_from_env("nccl" if device.type == "cuda" else "gloo",
                                          timeout=timeout)
        if world.world_size == 1:
            return world
        distributed.check_global_batch_size(self.batch_size, world.world_size)
        params = {k: v for k, v in self.get_params(deep=True).items()
                  if k not in ("callbacks", "random_state", "verbose")}
        state = self.random_state
        distributed.check_consistent(
            n_pairs=len(pairs.text), clip_of_pair=pairs.clip_of_pair,
            audio=pairs.clip_audio.data, text=pairs.text.data, **params,
            random_state=state if state is None or isinstance(state, int) else type(state).__name__,
            callbacks=[type(cb).__name__ for cb in (self.callbacks or [])],
            resume_from=None if resume_from is None else os.path.basename(resume_from))
        return world

    def _set_fitted(self, history, warm, noisy, val_pairs) -> None:
        previous = list(self.history_) if warm else []
        offset = len(previous)
        self.history_ = previous + [{**r, "epoch": r["epoch"] + offset} for r in history]
        self.model_.eval()
        self.n_epochs_ = len(self.history_)
        self.noisy_pairs_ = noisy
        self.validation_pairs_ = val_pairs

    def _check_warm_start(self, pairs: Pairs, parts) -> None:
        for key in ("audio_encoder", "text_encoder", "metric"):
            fitted, now = getattr(self, f"{key}_"), parts[key]
            if type(fitted) is not type(now) or \
                    fitted.registered_name() != now.registered_name():
                raise ValueError(f"warm_start=True continues the fitted model, whose {key} is "
                                 f"{fitted!r}; {key} is now {now!r}.")
        if pairs.audio_kind != self.audio_input_kind_ or (
                pairs.text.kind != self.text_input_kind_):
            raise ValueError(
                f"warm_start=True continues the fitted model, which takes audio "
                f"{self.audio_input_kind_} and text {self.text_input_kind_}; this data holds "
                f"audio {pairs.audio_kind} and text {pairs.text.kind}.")
        for name in ("embedding_dim", "hidden_dim"):
            if self._architecture.get(name, getattr(self, name)) != getattr(self, name):
                raise ValueError(f"warm_start=True keeps the fitted model, built with "
                                 f"{name}={self._architecture[name]!r}; {name} is now "
                                 f"{getattr(self, name)!r}.")

    def _build(self, pairs: Pairs, parts, train_text, train_pairs, *, keep=False) -> None:
        audio, text = parts["audio_encoder"], parts["text_encoder"]
        self.loss_ = parts["loss"]
        if keep:  # warm start: the fitted model goes on training
            self.audio_encoder_, self.text_encoder_, self.metric_ = audio, text, parts["metric"]
            self.model_.to(self.device_)
            return
        captions = ([train_text.data[i] for i in train_pairs]
                    if pairs.text.kind == "strings" else None)
        audio_dim = pairs.clip_audio.data.shape[1] if pairs.audio_kind != "paths" else None
        text_dim = pairs.text.data.shape[1] if pairs.text.kind == "features" else None
        audio_module, text_module, architecture = build_encoders(
            audio, text, audio_dim=audio_dim, text_dim=text_dim, captions=captions)
        architecture.update(embedding_dim=int(self.embedding_dim), hidden_dim=self.hidden_dim)
        _checks.check_capacity(self.embedding_dim, architecture["audio_dim"],
                               architecture["text_dim"], hidden_dim=self.hidden_dim,
                               metric=parts["metric"], device=self.device_)
        self.model_ = build_model(architecture, audio=audio, text=text, metric=parts["metric"],
                                  embedding_dim=self.embedding_dim, hidden_dim=self.hidden_dim,
                                  audio_module=audio_module, text_module=text_module)
        self._architecture = architecture
        self.audio_encoder_, self.text_encoder_, self.metric_ = audio, text, parts["metric"]
        self.audio_input_kind_ = pairs.audio_kind
        self.text_input_kind_ = pairs.text.kind
        if pairs.audio_kind in ("features", "waveforms"):
            self.n_features_in_ = int(pairs.clip_audio.data.shape[1])
        self.model_.to(self.device_)

    def _training_data(self, pairs: Pairs, train_text, train_pairs) -> TrainingData:
        clip_audio = self._prepare_audio(pairs.clip_audio)
        return TrainingData(self._audio_batcher(clip_audio), self._text_batcher(train_text),
                            pairs.clip_of_pair, train_pairs)

    def _validation_scorer(self, audio: AudioInput, text: TextInput, clip_of_caption, device):
        """``score_fn(model)``: every validation metric, both directions."""
        from .retrieval_metrics import negative_squared_distances, retrieval_metrics

        audio_batcher = self._audio_batcher(self._prepare_audio(audio))
        text_batcher = self._text_batcher(text)
        relevant = clip_of_caption[:, None] == np.arange(len(audio))[None, :]
        mixed = bool(self.mixed_precision)

        def score(model):
            a = encode_all(model, audio_batcher, side="audio", batch_size=self.batch_size,
                           device=device, mixed_precision=mixed)
            t = encode_all(model, text_batcher, side="text", batch_size=self.batch_size,
                           device=device, mixed_precision=mixed)
            with torch.no_grad():
                a = model.metric.map(a).cpu().numpy().astype(np.float64)
                t = model.metric.map(t).cpu().numpy().astype(np.float64)
            sim = negative_squared_distances(t, a)  # the scores evaluate() uses
            out = {}
            for direction, s, r in (("t2a", sim, relevant), ("a2t", sim.T, relevant.T)):
                m = retrieval_metrics(s, r)
                out.update({f"{direction}_{k}": v for k, v in m.items()})
                out[f"{direction}_mean_recall"] = float(np.mean([m["R@1"], m["R@5"],
                                                                 m["R@10"]]))
            return out

        return score

    def _make_trainer(self, parts, pairs, train_text, train_pairs, val_pairs, val_set,
                      callbacks, rng, world=None) -> Trainer:
        device = torch.device(self.device_)
        several = world is not None and world.world_size > 1
        audio, text = parts["audio_encoder"], parts["text_encoder"]
        frozen = {side for side, comp in (("audio", audio), ("text", text))
                  if getattr(comp, "freeze", False) and comp.input_kind != "features"}
        rates = {"head": self.learning_rate,
                 "metric": parts["metric"].metric_learning_rate(self.learning_rate)}
        for side, comp in (("audio_encoder", audio), ("text_encoder", text)):
            rates[side] = (comp.encoder_learning_rate(self.learning_rate)
                           if hasattr(comp, "encoder_learning_rate") else self.learning_rate)
        optimizer = parts["optimizer"].build(param_groups(self.model_, rates, frozen))
        built_in = [NaNGuard(), LRScheduler(parts["lr_schedule"])]
        cached = tuple(side for side, comp in (("audio", audio), ("text", text))
                       if side in frozen and getattr(comp, "cache", False))
        if cached:
            built_in.append(FrozenEncoderCache(sides=cached, distributed=several))
        scorer = None
        if val_set is not None:
            scorer = self._validation_scorer(val_set.clip_audio, val_set.text,
                                             val_set.clip_of_pair, device)
        elif len(val_pairs):
            val_groups = pairs.clip_of_pair[val_pairs]
            val_clips, clip_of_caption = np.unique(val_groups, return_inverse=True)
            scorer = self._validation_scorer(pairs.clip_audio.take(val_clips),
                                             pairs.text.take(val_pairs), clip_of_caption, device)
        if scorer is not None:
            built_in.append(ValidationScoring(_on_main_process(scorer) if several else scorer))
        if parts["early_stopping"] is not None:
            built_in.append(parts["early_stopping"])
        if self.verbose > 0:
            built_in.append(ProgressBar())
        return Trainer(self.model_, parts["loss"].build(epsilon=self.epsilon,
                                                       mass_fraction=self.mass_fraction),
                       optimizer, batch_size=self.batch_size, max_epochs=self.max_epochs,
                       device=device, rng=rng, callbacks=built_in + callbacks, frozen=frozen,
                       gradient_clip=parts["optimizer"].gradient_clip,
                       mixed_precision=self.mixed_precision,
                       num_workers=getattr(audio, "num_workers", 0),
                       step=self._train_step(parts, several),
                       is_main_process=not several or world.is_main_process,
                       verbose=self.verbose, checkpoint_exclude={
                           side for side, comp in (("audio", audio), ("text", text))
                           if side in frozen and comp.is_pretrained()})

    def _train_step(self, parts=None, several=False):
        """The ``step(trainer, batch)`` of the Trainer (None: ``backprop_step``).

        The hook through which a large-batch strategy (two-pass gradient cache,
        ``optimizer__micro_batch_size``) or a distributed one (under torchrun) plugs into
        ``fit``."""
        micro = None if parts is None else getattr(parts["optimizer"], "micro_batch_size", None)
        if micro is None and not several:
            return None
        return LargeBatchStep(micro, distributed=several)

    # ------------------------------------------------------------------ inference
    def _inference_device(self):
        dev = torch.device(getattr(self, "device_", "cpu"))
        if dev.type == "cuda" and not torch.cuda.is_available():
            dev = torch.device("cpu")
        if next(self.model_.parameters()).device != dev:
            self.model_.to(dev)
        return dev

    def _check_audio_for_inference(self, X) -> AudioInput:
        spec = "features" if self.audio_input_kind_ == "features" else "module"
        audio = check_audio(X, spec)
        if self.audio_input_kind_ == "features" and audio.kind != "features":
            raise ValueError("this retriever was fitted on audio features; X must be a 2-D "
                             "float array of features, not file paths.")
        if audio.kind in ("features", "waveforms") and hasattr(self, "n_features_in_") and \
                self.audio_input_kind_ != "paths" and audio.data.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {audio.data.shape[1]} features, but LTMRetriever is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted with)."
            )
        # fit decoded every file; here headers only (load_audio refuses NaN samples)
        check_audio_files(audio, max_seconds=getattr(self.audio_encoder_, "max_seconds", None),
                          decode=False)
        return self._prepare_audio(audio)

    def transform(self, X, *, window_seconds=None, hop_seconds=None, pooling="mean"):
        """Audio embeddings in the learned space.

        Euclidean distance between the returned vectors (and :meth:`embed_text`'s) equals
        the learned ground metric, so any Euclidean index ranks as the model does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or sequence of path
            Audio, of the kind used in ``fit`` (with ``window_seconds``: files, or 1-D
            waveforms of any lengths).
        window_seconds : float or None, default=None
            None: files are cropped to the audio encoder's ``max_seconds``. A number: each recording is
            embedded window by window (see :func:`sklearn_ltm.windows.pool_windows`) and
            the windows are pooled into one vector.
        hop_seconds : float or None, default=None
            Step between windows, > 0 (None: ``window_seconds``).
        pooling : {"mean", "max"}, default="mean"
            How the windows are pooled.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim)
        """
        check_is_fitted(self, "model_")
        if window_seconds is not None or hop_seconds is not None:
            if window_seconds is None:
                raise ValueError(f"hop_seconds={hop_seconds!r} needs window_seconds.")
            from .windows import pool_windows

            return pool_windows(self, X, window_seconds=window_seconds, hop_seconds=hop_seconds,
                                pooling=pooling, progress=self.verbose > 0)
        audio = self._check_audio_for_inference(X)
        device = self._inference_device()
        emb = encode_all(self.model_, self._audio_batcher(audio), side="audio",
                         batch_size=self.batch_size, device=device,
                         mixed_precision=self.mixed_precision)
        with torch.no_grad():
            return self.model_.metric.map(emb).cpu().numpy()

    def transform_windows(self, X, *, window_seconds, hop_seconds=None):
        """One embedding per window of each recording, with its start and end time.

        See :func:`sklearn_ltm.windows.embed_windows`.

        Parameters
        ----------
        X : sequence of path or of 1-D array
            Recordings (files, or waveforms at ``sample_rate``).
        window_seconds : float
        hop_seconds : float or None

        Returns
        -------
        sklearn_ltm.windows.WindowEmbeddings
        """
        check_is_fitted(self, "model_")
        from .windows import embed_windows

        return embed_windows(self, X, window_seconds=window_seconds, hop_seconds=hop_seconds,
                             progress=self.verbose > 0)

    def embed_text(self, y):
        """Caption embeddings in the same space as :meth:`transform`.

        Parameters
        ----------
        y : sequence of str or array-like of shape (n_samples, n_text_features)
            Captions, of the kind used in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim)
        """
        check_is_fitted(self, "model_")
        text = check_text(y, "features" if self.text_input_kind_ == "features" else "module")
        if text.kind != self.text_input_kind_:
            raise ValueError(
                f"this retriever was fitted on text {self.text_input_kind_}; y holds "
                f"{text.kind}."
            )
        if text.kind == "features" and text.data.shape[1] != self._architecture["text_dim"]:
            raise ValueError(
                f"y has {text.data.shape[1]} features, but LTMRetriever is expecting "
                f"{self._architecture['text_dim']} text features as input (the number it was "
                "fitted with)."
            )
        device = self._inference_device()
        emb = encode_all(self.model_, self._text_batcher(text), side="text",
                         batch_size=self.batch_size, device=device,
                         mixed_precision=self.mixed_precision)
        with torch.no_grad():
            return self.model_.metric.map(emb).cpu().numpy()

    def score(self, X, y, groups=None):
        """Mean of text-to-audio R@1, R@5 and R@10 on the given pairs (greater is better).

        Multi-caption aware: each distinct clip is one gallery item, and every caption of
        a clip counts as relevant to it.

        Parameters
        ----------
        X : array-like or sequence of path
            Audio of each pair.
        y : sequence of str or array-like
            Caption of each pair.
        groups : array-like of shape (n_pairs,), default=None
            Clip identity; default: equal rows of ``X``.

        Returns
        -------
        float
        """
        from .evaluation import text_to_audio_score

        return text_to_audio_score(self, X, y, groups=groups)

    def retrieve(self, queries, gallery, *, k=10, direction="text-to-audio"):
        """Top-``k`` gallery items for each query, with their learned distances.

        Parameters
        ----------
        queries : sequence of str or array-like
            Captions (``direction="text-to-audio"``) or audio (``"audio-to-text"``,
            ``"audio-to-audio"``).
        gallery : array-like or sequence
            Audio (text-to-audio, audio-to-audio) or captions (audio-to-text) to search.
        k : int, default=10
            Results per query (capped at the gallery size).
        direction : {"text-to-audio", "audio-to-text", "audio-to-audio"}

        Returns
        -------
        indices : ndarray of shape (n_queries, k)
            Gallery rows, best first.
        distances : ndarray of shape (n_queries, k)
            Learned squared distances :math:`(t - a)^\\top M (t - a)`, ascending.
        """
        if direction not in ("text-to-audio", "audio-to-text", "audio-to-audio"):
            raise ValueError(f"direction={direction!r} is not accepted; use 'text-to-audio', "
                             "'audio-to-text' or 'audio-to-audio'.")
        check_params({"k": k}, {"k": [positive_int()]}, "LTMRetriever.retrieve")
        check_is_fitted(self, "model_")
        if direction == "text-to-audio":
            q, g = self.embed_text(queries), self.transform(gallery)
        elif direction == "audio-to-text":
            q, g = self.transform(queries), self.embed_text(gallery)
        else:
            q, g = self.transform(queries), self.transform(gallery)
        from .search import topk_nearest

        return topk_nearest(q, g, k)  # chunked: never the whole score matrix, no full sort

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            # Always pickle CPU tensors so that a CUDA-trained model unpickles anywhere.
            state["model_"] = copy.deepcopy(self.model_).cpu()
        return state

    def save(self, path):
        """Write the fitted model to ``path`` (atomically), loadable with :meth:`load`.

        The file holds plain data and tensors only, read back with
        ``torch.load(weights_only=True)``: loading never runs code from the file. Components
        are saved by their registered name and parameters (a user's component must be
        registered again, e.g. by importing its module, before loading).

        Parameters
        ----------
        path : str or path-like
        """
        check_is_fitted(self, "model_")
        from ._persistence import component_to_data, params_to_data

        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "sklearn_ltm_version": __version__,
            "params": params_to_data(self.get_params(deep=False)),
            "fitted_components": {key: component_to_data(getattr(self, f"{key}_"))
                                  for key in ("audio_encoder", "text_encoder", "metric",
                                              "loss")},
            "architecture": self._architecture,
            "audio_input_kind": self.audio_input_kind_,
            "text_input_kind": self.text_input_kind_,
            "n_features_in": getattr(self, "n_features_in_", None),
            "history": self.history_,
            "state_dict": {k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
        }
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)

    @classmethod
    def load(cls, path, *, audio_encoder=None, text_encoder=None, device="auto"):
        """Load a model written by :meth:`save` (safe: ``weights_only=True``).

        Files of format 1 (sklearn-ltm 0.1) load too: their parameters are translated to
        today's names.

        Parameters
        ----------
        path : str or path-like
        audio_encoder, text_encoder : torch.nn.Module or None
            Instances of the user modules the model was trained with (their weights come
            from the file); needed only for models trained with custom modules.
        device : str, default="auto"
            Where to put the model (a CUDA-trained model loads on a CPU-only machine).

        Returns
        -------
        LTMRetriever
        """
        from ._persistence import read_payload

        payload = read_payload(path, _FORMAT, _READABLE_VERSIONS, _FORMAT_VERSION)
        from ._persistence import fitted_components, params_from_payload

        _checks.validate_model_payload(payload, path, cls)  # after a format-1 translation
        with _checks.model_file_errors(path, "bad parameter"):
            params = params_from_payload(payload, audio_encoder, text_encoder)
            params["device"] = device
            est = cls(**params)
            est._validate_params()
            components = fitted_components(payload, params, audio_encoder, text_encoder)
        arch = payload["architecture"]
        with _checks.model_file_errors(path, "'architecture' is refused by the encoder",
                                       also=(ValueError,)):
            est.model_ = build_model(arch, audio=components["audio_encoder"],
                                     text=components["text_encoder"],
                                     metric=components["metric"],
                                     embedding_dim=arch.get("embedding_dim", est.embedding_dim),
                                     hidden_dim=arch.get("hidden_dim", est.hidden_dim))
        _checks.load_state_checked(est.model_, payload["state_dict"], path)
        est.model_.eval()
        est._architecture = dict(arch)
        for key, component in components.items():
            setattr(est, f"{key}_", component)
        est.audio_input_kind_ = payload["audio_input_kind"]
        est.text_input_kind_ = payload["text_input_kind"]
        if payload["n_features_in"] is not None:
            est.n_features_in_ = int(payload["n_features_in"])
        est.history_ = list(payload["history"])
        est.n_epochs_ = len(est.history_)
        est.device_ = str(resolve_device(device))
        est.model_.to(est.device_)
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        # Captions may be 2-D text features; scikit-learn's common checks then pass y as a
        # column of numbers, which is a legitimate 1-feature text input.
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.transformer_tags.preserves_dtype = []
        return tags

