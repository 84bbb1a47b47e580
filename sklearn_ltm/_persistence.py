"""Reading and writing LTMRetriever model files: parameters as plain data, and format 1.

Format 2 (this version) stores each component by its registered name and parameters.
Format 1 (sklearn-ltm 0.1) stored 41 flat parameters; :func:`params_from_v1` translates
them to today's surface, so old files still load.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

_CUSTOM = "<custom module>"
_COMPONENT_KEYS = ("audio_encoder", "text_encoder", "metric", "loss", "optimizer",
                   "lr_schedule")


def _plain(value):
    if isinstance(value, nn.Module):
        return _CUSTOM
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def component_to_data(component) -> dict:
    """``{"kind", "name", "class", "params"}`` of a component (plain data)."""
    return {"kind": component.kind, "name": component.registered_name(),
            "class": type(component).__name__,
            "params": {k: _plain(v) for k, v in component.get_params(deep=False).items()}}


def params_to_data(params: dict) -> dict:
    """The estimator's ``get_params(deep=False)`` as JSON-serialisable data."""
    from .training import EarlyStopping

    out = {}
    for key, value in params.items():
        if key in _COMPONENT_KEYS and hasattr(value, "get_params"):
            out[key] = {"component": component_to_data(value)}
        elif isinstance(value, EarlyStopping):
            out[key] = {"early_stopping": value.get_params(deep=False)}
        elif key == "callbacks":
            out[key] = None  # run-time objects, not part of the model
        elif key == "random_state" and not isinstance(value, (int, type(None))):
            out[key] = None
        else:
            out[key] = _plain(value)
    json.dumps(out)  # everything saved must be plain data
    return out


def component_from_data(data: dict, audio_module=None, text_module=None):
    """Rebuild a component saved by :func:`component_to_data`."""
    from .components import ModuleAudio, ModuleText, registry_of

    params = dict(data["params"])
    if data["class"] in ("ModuleAudio", "ModuleText"):
        module = audio_module if data["class"] == "ModuleAudio" else text_module
        side = "audio_encoder" if data["class"] == "ModuleAudio" else "text_encoder"
        if module is None:
            raise ValueError(f"this model was trained with a custom {side}; pass an "
                             f"instance of it as {side}=... to load().")
        params.pop("module", None)
        return (ModuleAudio if side == "audio_encoder" else ModuleText)(module, **params)
    registry = registry_of(data["kind"])
    name = data["name"]
    if data["kind"] == "text_encoder" and name not in registry:
        from .components import HuggingFaceText

        return HuggingFaceText(**params)
    if name not in registry:
        raise ValueError(
            f"this model uses {data['kind']}={name!r}, which is not registered here; import "
            f"the module that registers it (sklearn_ltm.components.register_{data['kind']}) "
            "before loading.")
    if data["kind"] == "loss" and name == "mltm" and "sqrt_cost" not in params:
        params["sqrt_cost"] = False  # saved before sqrt_cost existed: the squared cost
    component = registry.create(name)
    return component.set_params(**params)


def _not_a_model_message(path, exc) -> str:
    """Why ``path`` could not be loaded, in words a user can act on (not torch's)."""
    name = repr(os.fspath(path))
    hint = "save one with LTMRetriever.save or sklearn-ltm train"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        return f"model file {name} cannot be read: {err.strerror or err}."
    if not head:
        return f"model file {name} is empty; {hint}."
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch's zip nor a pickle
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return f"{name} is not a sklearn-ltm model file (not a torch file); {hint}."
        kind = "a CSV file" if "," in text.splitlines()[0] else "a text file"
        return (f"{name} is {kind}, not a sklearn-ltm model file (a torch file written by "
                f"LTMRetriever.save or sklearn-ltm train).")
    from ._checks import load_error_reason

    return (f"{name} is not a sklearn-ltm model file (torch could not read it: "
            f"{load_error_reason(exc).rstrip('. ')}); {hint}.")


def read_payload(path, fmt: str, readable: tuple, current: int) -> dict:
    """The checked payload of a model file (``torch.load(weights_only=True)``)."""
    from ._checks import model_file_errors

    if not os.path.isfile(path):
        raise ValueError(f"model file {os.fspath(path)!r} "
                         f"{'is a directory' if os.path.isdir(path) else 'does not exist'}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(_not_a_model_message(path, exc)) from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{os.fspath(path)!r} is not a sklearn-ltm model file.")
    if payload.get("format_version") not in readable:
        raise ValueError(
            f"{os.fspath(path)!r} was written with model format "
            f"{payload.get('format_version')} (sklearn-ltm "
            f"{payload.get('sklearn_ltm_version')}); this version reads formats "
            f"{', '.join(map(str, readable))} (it writes format {current})."
        )
    if payload["format_version"] == 1:
        with model_file_errors(path, "its format-1 content cannot be translated"):
            payload = upgrade_v1(payload)
    return payload


def params_from_payload(payload: dict, audio_module=None, text_module=None) -> dict:
    """Constructor parameters of the saved estimator."""
    from .training import EarlyStopping

    params = {}
    for key, value in payload["params"].items():
        if isinstance(value, dict) and "component" in value:
            params[key] = component_from_data(value["component"], audio_module, text_module)
        elif isinstance(value, dict) and "early_stopping" in value:
            params[key] = EarlyStopping(**value["early_stopping"])
        elif value == _CUSTOM:
            module = audio_module if key == "audio_encoder" else text_module
            if module is None:
                raise ValueError(f"this model was trained with a custom {key}; pass an "
                                 f"instance of it as {key}=... to load().")
            params[key] = module
        else:
            params[key] = value
    fitted_loss = payload.get("fitted_components", {}).get("loss")
    if (params.get("loss") == "mltm" and fitted_loss is not None
            and "sqrt_cost" not in fitted_loss["params"]):
        # saved before sqrt_cost existed: the name stood for the squared cost, not today's root
        params["loss"] = component_from_data(fitted_loss)
    return params


def fitted_components(payload: dict, params: dict, audio_module=None, text_module=None):
    """The components the saved model was built with."""
    return {key: component_from_data(data, audio_module, text_module)
            for key, data in payload["fitted_components"].items()}


# ---------------------------------------------------------------------------- format 1
def params_from_v1(old: dict, audio_input_kind: str, text_input_kind: str,
                   audio_config, text_config):
    """Translate format-1 parameters; return ``(params, fitted component data)``."""
    from .components import (
        MLTM,
        Adam,
        Aisfx,
        AudioFeatures,
        Contrastive,
        Diagonal,
        HuggingFaceText,
        MLTMReference,
        ModuleAudio,
        ModuleText,
        PANNs,
        ScratchText,
        TextFeatures,
        Triplet,
        resolve_component,
    )

    reader = dict(sample_rate=old.get("sample_rate"), max_seconds=old.get("max_audio_seconds"),
                  num_workers=old.get("num_workers", 0),
                  on_bad_file=old.get("on_bad_audio", "raise"),
                  freeze=bool(old.get("freeze_audio_encoder", False)),
                  learning_rate=old.get("encoder_learning_rate"),
                  cache=bool(old.get("cache_frozen_encoders", True)))
    audio_name = old.get("audio_encoder", "auto")
    if audio_input_kind == "features":
        audio = AudioFeatures()
    elif audio_name == _CUSTOM:
        audio = ModuleAudio(nn.Identity(), **reader)  # module given to load()
    elif (audio_config or {}).get("name") == "aisfx" or audio_name == "aisfx":
        audio = Aisfx(weights=old.get("audio_encoder_weights"), **reader)
    else:
        arch = (audio_config or {}).get("name", "cnn10" if audio_name == "auto" else audio_name)
        audio = PANNs(arch, weights=old.get("audio_encoder_weights"), **reader)
    trainable = dict(freeze=bool(old.get("freeze_text_encoder", False)),
                     learning_rate=old.get("encoder_learning_rate"),
                     cache=bool(old.get("cache_frozen_encoders", True)))
    text_name = old.get("text_encoder", "auto")
    if text_input_kind == "features":
        text = TextFeatures()
    elif text_name == _CUSTOM:
        text = ModuleText(nn.Identity(), **trainable)
    elif (text_config or {}).get("name") == "scratch":
        text = ScratchText(max_length=old.get("text_max_length", 64), **trainable)
    else:
        text = HuggingFaceText((text_config or {}).get("name", text_name),
                               pooling=old.get("text_pooling", "cls"),
                               max_length=old.get("text_max_length", 64), **trainable)
    metric_name = old.get("metric", "mahalanobis")
    if metric_name == "mahalanobis":
        metric = resolve_component("metric", "mahalanobis").set_params(
            rank=old.get("metric_rank"), learning_rate=old.get("metric_learning_rate"))
    elif metric_name == "diagonal":
        metric = Diagonal(learning_rate=old.get("metric_learning_rate"))
    else:
        metric = resolve_component("metric", metric_name)
    loss_name = old.get("loss", "mltm")
    group_aware = bool(old.get("group_aware", True))
    if loss_name == "mltm":
        loss = MLTM(normalize_cost=bool(old.get("normalize_cost", True)), group_aware=group_aware,
                    max_iter=int(old.get("sinkhorn_max_iter", 1000)),
                    tol=float(old.get("sinkhorn_tol", 1e-6)), sqrt_cost=False)
    elif loss_name == "mltm-reference":
        loss = MLTMReference(max_iter=int(old.get("sinkhorn_max_iter", 1000)),
                             tol=old.get("sinkhorn_tol"))
    elif loss_name == "contrastive":
        loss = Contrastive(temperature=old.get("temperature", 0.07), group_aware=group_aware)
    else:
        loss = Triplet(margin=old.get("margin", 0.2), group_aware=group_aware)
    from .training import EarlyStopping

    early = (EarlyStopping(patience=int(old.get("patience", 5)))
             if old.get("early_stopping", True) else False)
    params = {
        "audio_encoder": audio if audio_input_kind != "features" else audio_name,
        "text_encoder": text if text_input_kind != "features" else text_name,
        "metric": metric, "loss": loss,
        "optimizer": Adam(weight_decay=old.get("weight_decay", 0.0),
                          gradient_clip=old.get("gradient_clip", 2.0)),
        "early_stopping": early,
    }
    for key in ("epsilon", "mass_fraction", "noise_ratio", "embedding_dim", "hidden_dim",
                "batch_size", "max_epochs", "learning_rate", "validation_fraction",
                "mixed_precision", "device", "random_state", "verbose"):
        if key in old:
            params[key] = old[key]
    fitted = {"audio_encoder": audio, "text_encoder": text, "metric": metric, "loss": loss}
    return params, fitted


def upgrade_v1(payload: dict) -> dict:
    """A format-1 payload in format-2 form (parameters translated, architecture merged)."""
    params, fitted = params_from_v1(payload["params"], payload["audio_input_kind"],
                                    payload["text_input_kind"], payload["audio_config"],
                                    payload["text_config"])
    custom = {k for k in ("audio_encoder", "text_encoder") if payload["params"].get(k) == _CUSTOM}
    data = params_to_data(params)
    for key in custom:
        data[key] = _CUSTOM
    arch = {"audio_config": payload["audio_config"], "text_config": payload["text_config"],
            **payload["dims"], "embedding_dim": params.get("embedding_dim", 256),
            "hidden_dim": params.get("hidden_dim")}
    return {**payload, "format_version": 2, "params": data, "architecture": arch,
            "fitted_components": {k: component_to_data(v) for k, v in fitted.items()}}
