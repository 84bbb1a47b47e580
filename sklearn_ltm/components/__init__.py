"""The components an :class:`~sklearn_ltm.LTMRetriever` is built from, and their registries.

Each kind has one registry; a string parameter (``loss="contrastive"``) is resolved
through it, and a component registered by a user works by name everywhere, the command
line included (``sklearn-ltm train --plugin my_module ...`` imports the module that
registers it).

=================  ======================  ==========================================
kind               registry                built-in names
=================  ======================  ==========================================
audio_encoder      ``AUDIO_ENCODERS``      features, cnn10, cnn14, resnet38, aisfx
text_encoder       ``TEXT_ENCODERS``       features, scratch (any other string: a
                                           Hugging Face model)
metric             ``METRICS``             mahalanobis, diagonal, euclidean, cosine
loss               ``LOSSES``              mltm, contrastive, triplet
optimizer          ``OPTIMIZERS``          adam, adamw
lr_schedule        ``LR_SCHEDULES``        constant, cosine, step
=================  ======================  ==========================================
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ._base import Component, Registry
from .encoders import (
    Aisfx,
    AudioEncoder,
    AudioFeatures,
    HuggingFaceText,
    ModuleAudio,
    ModuleText,
    PANNs,
    ScratchText,
    TextEncoder,
    TextFeatures,
    WaveformEncoder,
)
from .ground_metric import Cosine, Diagonal, Euclidean, GroundMetricComponent, Mahalanobis
from .losses import MLTM, Contrastive, LossComponent, Triplet
from .optimizers import Adam, AdamW, OptimizerComponent
from .schedules import ConstantLR, CosineLR, LRSchedule, StepLR

__all__ = [
    "AUDIO_ENCODERS", "TEXT_ENCODERS", "METRICS", "LOSSES", "OPTIMIZERS", "LR_SCHEDULES",
    "Component", "Registry", "registry_of", "resolve_component",
    "register_audio_encoder", "register_text_encoder", "register_metric", "register_loss",
    "register_optimizer", "register_lr_schedule",
    "AudioEncoder", "AudioFeatures", "WaveformEncoder", "PANNs", "Aisfx", "ModuleAudio",
    "TextEncoder", "TextFeatures", "ScratchText", "HuggingFaceText", "ModuleText",
    "GroundMetricComponent", "Mahalanobis", "Diagonal", "Euclidean", "Cosine",
    "LossComponent", "MLTM", "Contrastive", "Triplet",
    "OptimizerComponent", "Adam", "AdamW",
    "LRSchedule", "ConstantLR", "CosineLR", "StepLR",
]

AUDIO_ENCODERS = Registry("audio_encoder", AudioEncoder)
TEXT_ENCODERS = Registry("text_encoder", TextEncoder)
METRICS = Registry("metric", GroundMetricComponent)
LOSSES = Registry("loss", LossComponent)
OPTIMIZERS = Registry("optimizer", OptimizerComponent)
LR_SCHEDULES = Registry("lr_schedule", LRSchedule)

_REGISTRIES = {r.kind: r for r in (AUDIO_ENCODERS, TEXT_ENCODERS, METRICS, LOSSES, OPTIMIZERS,
                                   LR_SCHEDULES)}

AUDIO_ENCODERS.register("features", AudioFeatures)
for _arch in ("cnn10", "cnn14", "resnet38"):
    AUDIO_ENCODERS.register(_arch, partial(PANNs, _arch))
AUDIO_ENCODERS.register("aisfx", Aisfx)
TEXT_ENCODERS.register("features", TextFeatures)
TEXT_ENCODERS.register("scratch", ScratchText)
METRICS.register("mahalanobis", Mahalanobis)
METRICS.register("diagonal", Diagonal)
METRICS.register("euclidean", Euclidean)
METRICS.register("cosine", Cosine)
LOSSES.register("mltm", MLTM)
LOSSES.register("contrastive", Contrastive)
LOSSES.register("triplet", Triplet)
OPTIMIZERS.register("adam", Adam)
OPTIMIZERS.register("adamw", AdamW)
LR_SCHEDULES.register("constant", ConstantLR)
LR_SCHEDULES.register("cosine", CosineLR)
LR_SCHEDULES.register("step", StepLR)


def registry_of(kind: str) -> Registry:
    """The registry of ``kind`` ("audio_encoder", "text_encoder", "metric", "loss",
    "optimizer" or "lr_schedule").

    Examples
    --------
    >>> registry_of("metric").names()
    ('mahalanobis', 'diagonal', 'euclidean', 'cosine')
    """
    try:
        return _REGISTRIES[kind]
    except KeyError:
        raise ValueError(f"no registry of kind {kind!r}; the kinds are "
                         f"{', '.join(map(repr, _REGISTRIES))}.") from None


def resolve_component(kind: str, value):
    """The component that ``value`` (a name, a component or a torch module) stands for.

    A name gives a new default instance from the registry (for text encoders any other
    non-empty string is a Hugging Face model name); a component is returned as it is; a
    ``torch.nn.Module`` is wrapped in :class:`ModuleAudio` / :class:`ModuleText`.

    Examples
    --------
    >>> resolve_component("loss", "triplet")
    Triplet()
    >>> resolve_component("text_encoder", "my-org/my-model")
    HuggingFaceText(name='my-org/my-model')
    """
    registry = registry_of(kind)
    if isinstance(value, registry.base):
        return value
    if isinstance(value, nn.Module) and kind in ("audio_encoder", "text_encoder"):
        return (ModuleAudio if kind == "audio_encoder" else ModuleText)(value)
    if isinstance(value, str) and value in registry:
        return registry.create(value)
    if kind == "text_encoder" and isinstance(value, str) and value.strip() and value != "auto":
        return HuggingFaceText(value)
    raise ValueError(
        f"{kind}={value!r} is not accepted; use one of "
        f"{', '.join(map(repr, registry.names()))}, a {registry.base.__name__} instance"
        + (" or a torch.nn.Module" if kind in ("audio_encoder", "text_encoder") else "")
        + f" (register new names with sklearn_ltm.components.register_{kind})."
    )


def _registrar(registry):
    def register(name, factory=None, *, overwrite=False):
        return registry.register(name, factory, overwrite=overwrite)

    register.__name__ = f"register_{registry.kind}"
    register.__doc__ = f"""Register a {registry.kind} component under ``name``.

    Usable as a decorator. Afterwards ``{registry.kind}=name`` works in
    :class:`~sklearn_ltm.LTMRetriever`, in saved models and on the command line.

    Parameters
    ----------
    name : str
    factory : type or callable or None
        A :class:`{registry.base.__name__}` subclass, or a callable returning an instance.
    overwrite : bool, default=False

    Returns
    -------
    factory
    """
    return register


register_audio_encoder = _registrar(AUDIO_ENCODERS)
register_text_encoder = _registrar(TEXT_ENCODERS)
register_metric = _registrar(METRICS)
register_loss = _registrar(LOSSES)
register_optimizer = _registrar(OPTIMIZERS)
register_lr_schedule = _registrar(LR_SCHEDULES)
