"""Checks made before any work starts, and warnings about settings that defeat themselves.

- :func:`check_writable_path`: an output file (a ``Checkpoint`` callback's path, the CLI's
  ``--output``, a cache) can be written, found before training rather than after it;
- :func:`validate_model_payload`, :func:`model_file_errors` and :func:`load_state_checked`:
  a model file read back by ``LTMRetriever.load`` has the keys, dimensions, parameters and
  weights it must have;
- :func:`load_checkpoint_safely` and :func:`check_checkpoint_matches`: a training checkpoint
  given to ``fit(resume_from=...)`` is one, is complete and fits the model;
- :func:`check_capacity`: the model's size fits in the memory of the machine;
- ``warn_if_*``: validation that holds out nothing, a single clip repeated, a gallery of
  one clip.

Every error is one :class:`ValueError` (or :class:`TypeError`) on one line that names the
bad value and what is accepted.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
import re
import tempfile
import warnings
from pathlib import Path

__all__ = [
    "CHECKPOINT_KEYS",
    "model_file_errors",
    "check_capacity",
    "check_checkpoint_matches",
    "check_estimator_numbers",
    "check_writable_path",
    "load_checkpoint_safely",
    "load_state_checked",
    "validate_model_payload",
    "warn_if_no_validation",
    "warn_if_single_clip",
    "warn_if_trivial_gallery",
]

MODEL_FORMAT = "sklearn-ltm-model"
#: Keys a training checkpoint holds (``Trainer.state_dict``, written by the ``Checkpoint``
#: callback; read by ``fit(resume_from=...)``), besides ``format`` and ``format_version``.
CHECKPOINT_KEYS = ("model", "optimizer", "history", "epoch", "batch_in_epoch", "step_count",
                   "stop_training", "epoch_order", "epoch_losses", "rng", "callbacks")
#: Keys of a model file of format 2 (format-1 files are translated before the check).
_MODEL_KEYS = ("params", "fitted_components", "architecture", "audio_input_kind",
               "text_input_kind", "n_features_in", "history", "state_dict")
_AUDIO_KINDS = ("features", "waveforms", "paths")
_TEXT_KINDS = ("features", "strings")
CUSTOM_MODULE = "<custom module>"


def one_line(exc, limit: int = 300) -> str:
    """An exception's message squeezed onto one line (torch's messages span many)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_error_reason(exc: BaseException) -> str:
    """What went wrong in ``torch.load(weights_only=True)``, in a few words on one line.

    Examples
    --------
    >>> load_error_reason(RuntimeError("PytorchStreamReader failed reading zip archive"))
    'PytorchStreamReader failed reading zip archive'
    """
    text = str(exc)
    refused = re.search(r"(\S+) was not an allowed global", text) or re.search(
        r"Unsupported global: (\S+)", text)
    if refused:
        return (f"it refers to {refused.group(1).strip('.,')}, code that is refused for safety "
                "(weights_only=True)")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
    if not text.strip():
        return f"{type(exc).__name__} (an empty or truncated file?)"
    return one_line(text, 160)


# ---------------------------------------------------------------------- output files
def check_writable_path(path, what: str = "path") -> Path:
    """Check that a file can be written at ``path``, before any work is done.

    Refused: a folder, a path under an existing file, a folder where files cannot be
    created (permissions, read-only file system). Missing parent folders are fine when they
    can be created (they are created when the file is written).

    Parameters
    ----------
    path : str or path-like
        The file to be written.
    what : str, default="path"
        How the value is named in the message (``"Checkpoint(path)"``, ``"--output"``).

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Naming the path and the reason.
    TypeError
        When ``path`` is not a str or path-like.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> check_writable_path(os.path.join(folder, "new", "model.pt"), "--output").name
    'model.pt'
    >>> check_writable_path(folder, "--output")
    Traceback (most recent call last):
    ...
    ValueError: --output=... is a directory; give the path of a file to write.
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}={path!r} is not a path; give a str or path-like file name.")
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text.strip():
        raise ValueError(f"{what}={text!r} is empty; give the path of a file to write.")
    if "\0" in text:
        raise ValueError(f"{what}={text!r} holds a NUL character; it is not a path.")
    p = Path(text)
    if p.is_dir():
        raise ValueError(f"{what}={text!r} is a directory; give the path of a file to write.")
    if text.endswith(("/", os.sep)):
        raise ValueError(f"{what}={text!r} ends with a path separator; give a file name.")
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{what}={text!r} cannot be written: {os.fspath(ancestor)!r} is a file, "
                         "not a folder.")
    if ancestor != p.parent:  # folders to create: their first existing ancestor must allow it
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ValueError(f"{what}={text!r} cannot be written: no permission to create "
                             f"folders in {os.fspath(ancestor)!r}.")
        return p
    try:
        with tempfile.TemporaryFile(dir=p.parent):
            pass
    except OSError as exc:
        raise ValueError(f"{what}={text!r} cannot be written: no file can be created in "
                         f"{os.fspath(p.parent)!r} ({one_line(exc)}).") from exc
    return p


# ---------------------------------------------------------------------- model files
def _bad_model(path, problem: str) -> ValueError:
    return ValueError(f"{os.fspath(path)!r} is not a valid sklearn-ltm model file: {problem}")


def _is_int(value, low: int = 0) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _check_tensor_dict(state, path, key: str, bad) -> None:
    import torch

    if not isinstance(state, dict) or not state:
        raise bad(path, f"{key!r} is {type(state).__name__}, not a non-empty dict of tensors.")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise bad(path, f"{key}[{name!r}] is {type(value).__name__}, not a tensor.")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise bad(path, f"{key}[{name!r}] holds NaN or infinite weights.")


def validate_model_payload(payload, path, estimator_cls) -> None:
    """Check a model file's content before ``LTMRetriever.load`` builds anything from it.

    Checked (on model format 2; a format-1 file is translated first): every key is there
    with the right type; the parameters are the estimator's; the saved components are
    complete; the architecture's dimensions are positive integers; the input kinds are
    known; the weights are tensors with finite values. The parameter values are checked
    by the estimator's constraints when it is rebuilt (:func:`model_file_errors`).

    Parameters
    ----------
    payload : dict
        What ``torch.load(path, weights_only=True)`` returned (format already checked).
    path : str or path-like
        The file, for the message.
    estimator_cls : type
        :class:`~sklearn_ltm.LTMRetriever` (its signature and ``_validate_params``).

    Raises
    ------
    ValueError
        One line naming the file and the problem.

    Examples
    --------
    >>> from sklearn_ltm import LTMRetriever
    >>> validate_model_payload({"format": "sklearn-ltm-model"}, "m.pt", LTMRetriever)
    Traceback (most recent call last):
    ...
    ValueError: 'm.pt' is not a valid sklearn-ltm model file: it lacks the keys ['params', ...
    """
    if not isinstance(payload, dict):
        raise _bad_model(path, f"it holds a {type(payload).__name__}, not a dict.")
    missing = [k for k in _MODEL_KEYS if k not in payload]
    if missing:
        raise _bad_model(path, f"it lacks the keys {missing}.")
    params = payload["params"]
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _bad_model(path, f"'params' is {type(params).__name__}, not a dict of parameters.")
    accepted = [k for k in inspect.signature(estimator_cls.__init__).parameters if k != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise _bad_model(path, f"unknown parameter(s) {unknown}; {estimator_cls.__name__} "
                               f"accepts {accepted}.")
    components = payload["fitted_components"]
    if not isinstance(components, dict) or not all(
            isinstance(c, dict) and {"kind", "name", "class", "params"} <= set(c)
            and isinstance(c["params"], dict) for c in components.values()):
        raise _bad_model(path, "'fitted_components' is not a dict of saved components "
                               "(kind, name, class, params).")
    arch = payload["architecture"]
    if not isinstance(arch, dict) or not all(_is_int(arch.get(k), 1)
                                             for k in ("audio_dim", "text_dim")):
        dims = ({k: arch.get(k) for k in ("audio_dim", "text_dim")}
                if isinstance(arch, dict) else arch)
        raise _bad_model(path, f"'architecture' has dimensions {dims!r}; expected positive "
                               "integers 'audio_dim' and 'text_dim'.")
    for key in ("embedding_dim", "hidden_dim"):
        if arch.get(key) is not None and not _is_int(arch[key], 1):
            raise _bad_model(path, f"architecture {key}={arch[key]!r}; expected a positive "
                                   "integer.")
    for key in ("audio_config", "text_config"):
        config = arch.get(key)
        if config is not None and (not isinstance(config, dict)
                                   or not all(isinstance(k, str) for k in config)):
            raise _bad_model(path, f"architecture {key} is {type(config).__name__}, not a "
                                   "dict of settings.")
    if payload["audio_input_kind"] not in _AUDIO_KINDS:
        raise _bad_model(path, f"audio_input_kind={payload['audio_input_kind']!r}; expected one "
                               f"of {list(_AUDIO_KINDS)}.")
    if payload["text_input_kind"] not in _TEXT_KINDS:
        raise _bad_model(path, f"text_input_kind={payload['text_input_kind']!r}; expected one "
                               f"of {list(_TEXT_KINDS)}.")
    n_in = payload["n_features_in"]
    if n_in is not None and not _is_int(n_in, 1):
        raise _bad_model(path, f"n_features_in={n_in!r}; expected None or a positive integer.")
    history = payload["history"]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise _bad_model(path, f"'history' is {type(history).__name__}, not a list of dicts.")
    _check_tensor_dict(payload["state_dict"], path, "state_dict", _bad_model)


@contextlib.contextmanager
def model_file_errors(path, what: str, also: tuple = ()):
    """Turn a structural error while rebuilding a saved model (a parameter or setting
    refused, a malformed value) into one ValueError naming the file.

    Errors that already say what to do (a custom module to pass to ``load``, a component
    to register) are plain ``ValueError`` and pass unchanged, unless listed in ``also``.

    Examples
    --------
    >>> with model_file_errors("m.pt", "'architecture' is malformed"):
    ...     {}["audio_dim"]
    Traceback (most recent call last):
    ...
    ValueError: 'm.pt' is not a valid sklearn-ltm model file: 'architecture' is malformed: 'audio_dim'
    >>> with model_file_errors("m.pt", "bad parameter"):
    ...     raise ValueError("pass an instance of your module to load()")
    Traceback (most recent call last):
    ...
    ValueError: pass an instance of your module to load()
    """
    from ._validation import InvalidParameterError

    try:
        yield
    except (InvalidParameterError, TypeError, KeyError, AttributeError, *also) as exc:
        raise _bad_model(path, f"{what}: {one_line(exc)}") from exc


def _shape_mismatch(expected: dict, state: dict) -> str | None:
    missing = [k for k in expected if k not in state]
    if missing:
        return f"weights {missing[:3]} are missing"
    extra = [k for k in state if k not in expected]
    if extra:
        return f"weights {extra[:3]} do not belong to this model"
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            return (f"weight {k!r} has shape {tuple(state[k].shape)} where the model built from "
                    f"its parameters has {tuple(v.shape)}")
    return None


def load_state_checked(model, state_dict, path) -> None:
    """``model.load_state_dict(state_dict)``, with a mismatch reported as one ValueError.

    Parameters
    ----------
    model : torch.nn.Module
    state_dict : dict of str to Tensor
    path : str or path-like
        The file the weights came from, for the message.

    Examples
    --------
    >>> import torch
    >>> load_state_checked(torch.nn.Linear(2, 3), {"weight": torch.zeros(3, 3),
    ...                    "bias": torch.zeros(3)}, "m.pt")
    Traceback (most recent call last):
    ...
    ValueError: 'm.pt' is not a valid sklearn-ltm model file: weight 'weight' has shape (3, 3) ...
    """
    problem = _shape_mismatch(model.state_dict(), state_dict)
    if problem is not None:
        raise _bad_model(path, problem + ".")
    model.load_state_dict(state_dict)


# ---------------------------------------------------------------------- checkpoints
def _bad_checkpoint(path, problem: str) -> ValueError:
    return ValueError(f"resume_from={os.fspath(path)!r} is not a usable sklearn-ltm training "
                      f"checkpoint: {problem}")


def load_checkpoint_safely(path, *, map_location="cpu") -> dict:
    """Read a training checkpoint for ``fit(resume_from=...)``, refusing anything else.

    Read with ``torch.load(weights_only=True)``: a file holding code is refused, never run.
    Refused with one :class:`ValueError`: a missing file or a folder, a truncated or corrupt
    file, a malicious one, a saved model (``LTMRetriever.save``) instead of a checkpoint, a
    checkpoint lacking keys or with values of the wrong type.

    Parameters
    ----------
    path : str or path-like
        A checkpoint written by a :class:`~sklearn_ltm.training.Checkpoint` callback.
    map_location : str or torch.device, default="cpu"

    Returns
    -------
    dict
        The checkpoint (keys :data:`CHECKPOINT_KEYS`).

    Examples
    --------
    >>> import tempfile, os
    >>> bad = os.path.join(tempfile.mkdtemp(), "half.ckpt")
    >>> _ = open(bad, "wb").write(b"PK\\x03\\x04 truncated")
    >>> load_checkpoint_safely(bad)
    Traceback (most recent call last):
    ...
    ValueError: resume_from='...half.ckpt' is not a usable sklearn-ltm training checkpoint: ...
    """
    import torch

    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"resume_from={path!r} is not a path; give the checkpoint file.")
    if os.path.isdir(path):
        raise _bad_checkpoint(path, "it is a directory, not a file.")
    if not os.path.isfile(path):
        raise _bad_checkpoint(path, "the file does not exist.")
    if os.path.getsize(path) == 0:
        raise _bad_checkpoint(path, "the file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes: noise here
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, EOF, refused globals...
        reason = load_error_reason(exc)
        if "refused for safety" not in reason:
            reason = f"it cannot be read (truncated or corrupt?): {reason}"
        raise _bad_checkpoint(path, reason + ".") from exc
    if isinstance(state, dict) and state.get("format") == MODEL_FORMAT:
        raise _bad_checkpoint(path, "it is a saved model (LTMRetriever.save), not a training "
                                    "checkpoint; give the file written through "
                                    "a Checkpoint callback (the CLI's OUTPUT.ckpt).")
    if not isinstance(state, dict):
        raise _bad_checkpoint(path, f"it holds a {type(state).__name__}, not a dict.")
    from .training.trainer import _CHECKPOINT_FORMAT, _CHECKPOINT_VERSION

    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if state.get("format") != _CHECKPOINT_FORMAT:
        lacks = f"; it lacks the keys {missing}" if missing else ""
        raise _bad_checkpoint(path, f"it is not a sklearn-ltm training checkpoint of format "
                                    f"{_CHECKPOINT_VERSION} (found format version "
                                    f"{state.get('format_version')!r}{lacks}); checkpoints of "
                                    "sklearn-ltm 0.1 cannot be resumed: start the run again.")
    if missing:
        raise _bad_checkpoint(path, f"it lacks the keys {missing}.")
    _check_tensor_dict(state["model"], path, "model", _bad_checkpoint)
    if not isinstance(state["optimizer"], dict) or "state" not in state["optimizer"]:
        raise _bad_checkpoint(path, "'optimizer' is not an optimizer state.")
    for key in ("history", "epoch_losses"):
        if not isinstance(state[key], list):
            raise _bad_checkpoint(path, f"{key!r} is not a list.")
    for key in ("epoch", "batch_in_epoch", "step_count"):
        if not _is_int(state[key]):
            raise _bad_checkpoint(path, f"{key}={state[key]!r} is not an integer >= 0.")
    if not isinstance(state["stop_training"], bool):
        raise _bad_checkpoint(path, f"stop_training={state['stop_training']!r} is not a bool.")
    if not isinstance(state["rng"], dict):
        raise _bad_checkpoint(path, "'rng' is not a random generator state.")
    if not isinstance(state["callbacks"], dict):
        raise _bad_checkpoint(path, "'callbacks' is not a dict of callback states.")
    return state


def check_checkpoint_matches(state: dict, model, path) -> None:
    """Check that a checkpoint's weights fit ``model`` (same data and parameters).

    Parameters
    ----------
    state : dict
        From :func:`load_checkpoint_safely`.
    model : torch.nn.Module
        The model ``fit`` built.
    path : str or path-like
        The checkpoint, for the message.

    Raises
    ------
    ValueError
        When a weight is missing, extra or of another shape.

    Examples
    --------
    >>> import torch
    >>> state = {"model": {"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}}
    >>> check_checkpoint_matches(state, torch.nn.Linear(2, 3), "run.ckpt")
    """
    expected = model.state_dict()
    # a frozen pretrained encoder left out of the checkpoint (its fingerprint is kept, and
    # checked by the Trainer) is rebuilt from the model, not read from the file
    excluded = tuple(state.get("excluded_fingerprints", {}))
    if excluded:
        expected = {k: v for k, v in expected.items() if not k.startswith(excluded)}
    problem = _shape_mismatch(expected, state["model"])
    if problem is not None:
        raise _bad_checkpoint(path, f"it was written for another model ({problem}); resume "
                                    "with the data and parameters of the run that wrote it.")


# ---------------------------------------------------------------------- sizes
def _available_memory(device) -> tuple[int, str]:
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        dev = torch.device(device)
        return int(torch.cuda.get_device_properties(dev).total_memory), f"GPU memory of {dev}"
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "memory (RAM)"
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 2**40, "memory"


def check_capacity(embedding_dim, audio_dim, text_dim, *, hidden_dim=None,
                   metric="mahalanobis", metric_rank=None, device=None) -> int:
    """Refuse a model whose projection heads and metric cannot be trained in memory.

    Training needs the weights, their gradients and Adam's two moments: about 16 bytes a
    parameter (float32). The encoders are not counted (their sizes are fixed).

    Parameters
    ----------
    embedding_dim : int
    audio_dim, text_dim : int
        Input sizes of the two projection heads.
    hidden_dim : int or None
        Hidden size of the heads (``None``: ``2 * embedding_dim``).
    metric : str or GroundMetricComponent
    metric_rank : int or None
        Rank of a Mahalanobis metric (``None``: the component's ``rank``, else full).
    device : torch.device or str or None
        Where training runs (its memory is the limit); ``None``: the CPU.

    Returns
    -------
    int
        The bytes the heads and metric need.

    Raises
    ------
    ValueError
        With the figure, when it is more than the memory of ``device``.

    Examples
    --------
    >>> check_capacity(256, 512, 384) < 2**30
    True
    >>> check_capacity(10**9, 512, 384)
    Traceback (most recent call last):
    ...
    ValueError: embedding_dim=1000000000 with hidden_dim=2000000000 (...) needs about ... GiB ...
    """
    e = int(embedding_dim)
    h = 2 * e if hidden_dim is None else int(hidden_dim)
    n = sum(d * h + h + h * e + e for d in (int(audio_dim), int(text_dim)))
    name = metric if isinstance(metric, str) else getattr(metric, "registered_name",
                                                                 lambda: None)()
    if metric_rank is None:
        metric_rank = getattr(metric, "rank", None)
    if name == "mahalanobis":
        n += (e if metric_rank is None else int(metric_rank)) * e
    elif name == "diagonal":
        n += e
    needed = 16 * n
    available, where = _available_memory(device)
    if needed > available:
        raise ValueError(
            f"embedding_dim={embedding_dim} with hidden_dim={h} (audio_dim={audio_dim}, "
            f"text_dim={text_dim}) needs about {needed / 2**30:,.1f} GiB to train ({n:,} "
            "parameters in the heads and metric; weights, gradients and Adam moments in "
            f"float32), more than the {available / 2**30:,.1f} GiB {where} here; choose a "
            "smaller embedding_dim or hidden_dim."
        )
    return needed


FLOAT32_MAX = 3.4028234663852886e38
_OPTIMIZER_NUMBERS = ("learning_rate", "weight_decay")


def check_estimator_numbers(estimator) -> None:
    """Refuse optimiser numbers that pass their range checks but break training later.

    The rates and weight decays (``learning_rate``, ``optimizer__weight_decay``,
    ``metric__learning_rate``, ``audio_encoder__learning_rate``, ...) must fit in float32:
    torch converts them, and a larger one fails in the first step, after the work has
    started. (Ranges, and the seed ``random_state``, are checked by the estimator's
    ``_parameter_constraints``.)

    Parameters
    ----------
    estimator : LTMRetriever

    Raises
    ------
    ValueError
        Naming the parameter and its value.

    Examples
    --------
    >>> from sklearn_ltm import LTMRetriever
    >>> check_estimator_numbers(LTMRetriever(learning_rate=1e39))
    Traceback (most recent call last):
    ...
    ValueError: learning_rate=1e+39 is beyond the float32 range (at most 3.4e+38) that ...
    """
    for name, value in estimator.get_params(deep=True).items():
        if name.rsplit("__", 1)[-1] not in _OPTIMIZER_NUMBERS:
            continue
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and \
                abs(value) > FLOAT32_MAX:
            raise ValueError(f"{name}={value!r} is beyond the float32 range (at most "
                             f"{FLOAT32_MAX:.1e}) that the optimiser computes in; give a "
                             "smaller value.")


# ---------------------------------------------------------------------- warnings
def warn_if_no_validation(validation_fraction, n_clips: int, n_val_clips: int,
                          stacklevel: int = 3) -> bool:
    """Warn when ``validation_fraction > 0`` but no clip could be held out.

    Returns ``True`` when it warned.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_if_no_validation(0.99, 40, 0)
    True
    """
    if not validation_fraction or n_val_clips > 0:
        return False
    asked = int(round(validation_fraction * n_clips))
    warnings.warn(
        f"validation_fraction={validation_fraction} holds out no clips: of {n_clips} clips it "
        f"would keep {asked} for validation and {n_clips - asked} for training, and each needs "
        "at least 2; training runs without validation (no early stopping, no best-weights "
        "restore). Choose a fraction that leaves 2 clips on each side, or 0.",
        UserWarning, stacklevel=stacklevel)
    return True


def warn_if_single_clip(n_clips: int, n_pairs: int, stacklevel: int = 3) -> bool:
    """Warn when every pair has the same clip: the loss is then constant.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_if_single_clip(1, 50)
    True
    """
    if n_clips != 1:
        return False
    warnings.warn(
        f"all {n_pairs} pairs have the same clip (a single clip repeated, or one group): every "
        "mini-batch then holds one clip, the matching loss is constant and nothing is learned; "
        "give pairs of several distinct clips (or the right groups).",
        UserWarning, stacklevel=stacklevel)
    return True


def warn_if_trivial_gallery(n_clips: int, stacklevel: int = 3) -> bool:
    """Warn when a retrieval score is computed over fewer than 2 distinct clips.

    With one clip in the gallery every recall is 1.0 whatever the model: the figure says
    nothing. (:class:`sklearn.exceptions.UndefinedMetricWarning`.)

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_if_trivial_gallery(1)
    True
    """
    if n_clips >= 2:
        return False
    from sklearn.exceptions import UndefinedMetricWarning

    warnings.warn(
        f"the gallery holds {n_clips} distinct clip(s): every retrieval metric is trivially "
        f"{1.0 if n_clips == 1 else math.nan} whatever the model; score and evaluate need at "
        "least 2 distinct clips to mean something.",
        UndefinedMetricWarning, stacklevel=stacklevel)
    return True

