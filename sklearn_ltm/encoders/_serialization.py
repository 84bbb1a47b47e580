"""Loading third-party checkpoints safely: ``torch.load(weights_only=True)`` plus numpy types."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["safe_torch_load", "extract_state_dict"]


def _numpy_safe_globals() -> list:
    """The numpy names a weights-only unpickler may need: scalars, arrays and dtypes.

    Checkpoints written under numpy 1.x name ``numpy.core.multiarray.*``; numpy 2 moved
    these to ``numpy._core``, so each function is also registered under its old name.
    None of these can run arbitrary code: they only rebuild numbers and arrays.
    """
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    allowed: list = [np.ndarray, np.dtype]
    for func_name in ("scalar", "_reconstruct"):
        func = getattr(multiarray, func_name)
        allowed.append(func)
        allowed.append((func, f"numpy.core.multiarray.{func_name}"))
    for code in ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32",
                 "float64"):
        allowed.append(type(np.dtype(code)))
    return allowed


def safe_torch_load(path) -> object:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` and a numpy allow-list.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.

    Returns
    -------
    object
        What the file holds (tensors, dicts, tuples, numbers), on the CPU.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a checkpoint that a weights-only load accepts.
    """
    import pickle

    import torch

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint path={path!r} is not a path; give a str or path-like.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist.")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(
            f"checkpoint file {path!r} could not be read as weights only ({exc}). Only files "
            "of tensors, numbers and numpy scalars/arrays are accepted; arbitrary pickled "
            "objects are refused for safety."
        ) from exc


def extract_state_dict(obj, source: str) -> dict:
    """The tensor state dict inside a loaded checkpoint object.

    Accepts a state dict itself, a dict with a ``"model"`` or ``"state_dict"`` entry (the
    PANNs and Lightning layouts) or a tuple whose first item is one (the aisfx layout).
    A ``"module."`` prefix left by ``DataParallel`` is removed.
    """
    import torch

    if isinstance(obj, tuple) and obj and isinstance(obj[0], Mapping):
        obj = obj[0]
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{source} holds no state dict (got {type(obj).__name__}).")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{source} is not a state dict: entry {key!r} is a {type(value).__name__}, "
                "not a tensor."
            )
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out
