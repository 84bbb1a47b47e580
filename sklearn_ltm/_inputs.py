"""Validation and type dispatch of the estimator's inputs (audio ``X`` and captions ``y``).

The estimator accepts three kinds of audio and two kinds of text; this module decides which
one a given input is, validates it (before any work starts) and never modifies it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ._utils import as_str_list

__all__ = ["AudioInput", "TextInput", "as_values", "check_audio", "check_text"]

AUDIO_ENCODER_NAMES = ("auto", "features", "cnn10", "cnn14", "resnet38", "aisfx")


@dataclass(frozen=True)
class AudioInput:
    """Validated audio: ``kind`` is ``"features"``, ``"waveforms"`` or ``"paths"``."""

    kind: str
    data: object  # float32 ndarray (n, F) / (n, T), or list[str]

    def __len__(self) -> int:
        return len(self.data)

    def take(self, indices) -> AudioInput:
        """The rows ``indices`` as a new input (a copy for arrays)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.kind == "paths":
            return AudioInput(self.kind, [self.data[i] for i in indices])
        return AudioInput(self.kind, self.data[indices])


@dataclass(frozen=True)
class TextInput:
    """Validated captions: ``kind`` is ``"strings"`` or ``"features"``."""

    kind: str
    data: object  # list[str] or float32 ndarray (n, F)

    def __len__(self) -> int:
        return len(self.data)

    def take(self, indices) -> TextInput:
        """The rows ``indices`` as a new input."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.kind == "strings":
            return TextInput(self.kind, [self.data[i] for i in indices])
        return TextInput(self.kind, self.data[indices])


def _is_sparse(values) -> bool:
    return hasattr(values, "tocsr") or hasattr(values, "to_coo")


def _is_pandas(values) -> bool:
    return type(values).__module__.split(".")[0] == "pandas" and hasattr(values, "to_numpy")


def as_values(values, name: str = "X"):
    """The values of ``values``, read once: what the input dispatch looks at.

    A pandas ``DataFrame`` or ``Series`` becomes its values (never its column labels or
    index): a numeric frame a float array (missing values as NaN), a frame of one text
    column or a text series a 1-D object array. Other objects with ``__array__`` (polars
    frames, CPU tensors) become ``np.asarray`` of them. A one-shot iterable (a generator, an
    iterator, ``map``...) is read once into a list. Arrays, lists and tuples are returned
    as they are. Nothing is modified.

    Parameters
    ----------
    values : object
        An ``X`` or ``y`` as given by the user.
    name : str
        Name of the argument in error messages.

    Returns
    -------
    ndarray, list or the input itself

    Raises
    ------
    TypeError
        For a set or a mapping: their order is not the order of the pairs.

    Examples
    --------
    >>> as_values(c for c in ["a dog", "rain"])
    ['a dog', 'rain']
    >>> import pandas as pd  # doctest: +SKIP
    >>> as_values(pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}))  # doctest: +SKIP
    array([[1., 3.],
           [2., 4.]])
    """
    if _is_sparse(values):
        return values  # refused, as sparse, by the dispatch (a dok_matrix is also a dict)
    if _is_pandas(values):
        import pandas as pd

        if isinstance(values, pd.DataFrame):
            dtypes = list(values.dtypes)
            if dtypes and all(pd.api.types.is_numeric_dtype(d) for d in dtypes):
                return values.to_numpy(dtype=np.float64, na_value=np.nan)
            arr = values.to_numpy(dtype=object)
            return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr
        if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values.dtype):
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return values.to_numpy(dtype=object)
    if isinstance(values, (set, frozenset, Mapping)):
        raise TypeError(
            f"{name} is a {type(values).__name__}: it has no order, so its items cannot be "
            "paired with the other side; pass a list or an array."
        )
    if isinstance(values, (str, bytes, np.ndarray, list, tuple, os.PathLike)):
        return values
    if hasattr(values, "__array__"):  # other frames (polars...), tensors: their values too
        try:
            return np.asarray(values)
        except Exception:  # a CUDA tensor, a tensor that requires grad: refused later
            return values
    if isinstance(values, Iterable) and not hasattr(values, "__getitem__"):
        return list(values)  # a generator or an iterator: read it exactly once
    return values


def _is_path_sequence(X) -> bool:
    if isinstance(X, (str, bytes, os.PathLike)):
        return False
    if isinstance(X, np.ndarray):
        return X.ndim == 1 and X.dtype.kind in "OUS" and all(
            isinstance(x, (str, os.PathLike)) for x in X
        )
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(isinstance(x, (str, os.PathLike)) for x in X)
    return False


def _float_matrix(values, name: str, what: str) -> np.ndarray:
    if _is_sparse(values):
        raise TypeError(
            f"{name} is a sparse matrix: sparse input is not supported; pass a dense array "
            f"({what})."
        )
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} has dtype {arr.dtype}: Complex data not supported; "
                         f"accepted: {what}.")
    if arr.dtype.kind == "O":
        for index, v in np.ndenumerate(arr):
            if isinstance(v, (str, bytes)) or not isinstance(v, (numbers.Real, np.bool_)):
                where = ", ".join(map(str, index))
                raise TypeError(
                    f"{name} has dtype object with a non-numeric value at [{where}]: {v!r} "
                    f"({type(v).__name__}); every argument must be a real number (a numeric "
                    f"string is not a number); accepted: {what}."
                )
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "fiub":
        strings = " (strings are not features)" if arr.dtype.kind in "US" else ""
        raise ValueError(
            f"{name} has dtype {arr.dtype}{strings}; accepted: {what}."
        )
    if arr.ndim != 2:
        hint = " Reshape your data: x.reshape(1, -1) for one clip." if arr.ndim == 1 else ""
        raise ValueError(f"{name} has shape {arr.shape}; accepted: {what}.{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} is empty: {arr.shape[0]} sample(s) and {arr.shape[1]} feature(s) "
            f"(shape={arr.shape}) while a minimum of 1 is required; {what} is needed."
        )
    src = arr
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float32, copy=True)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains NaN or infinity (first at row {r}, column {c}: {src[r, c]!r}); "
            "every value must be finite (and within the float32 range, |x| < 3.4e38)."
        )
    return arr


def check_audio(X, audio_encoder, *, name: str = "X") -> AudioInput:
    """Validate the audio side and decide its kind.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or sequence of path
        Precomputed features or fixed-length waveforms (2-D float), or audio file paths.
    audio_encoder : str or torch.nn.Module
        ``"auto"`` and ``"features"`` treat a 2-D array as features; an audio encoder
        name or module treats it as waveforms.
    name : str
        Name of the argument in error messages.

    Returns
    -------
    AudioInput

    Examples
    --------
    >>> check_audio([[0.0, 1.0], [1.0, 0.0]], "auto").kind
    'features'
    >>> check_audio(["a.wav", "b.wav"], "cnn10").kind
    'paths'
    """
    X = as_values(X, name)
    if X is None:
        raise ValueError(f"{name} is None; accepted: a 2-D float array of features or "
                         "waveforms, or a sequence of audio file paths.")
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise ValueError(f"{name} is empty (0 samples); at least 1 clip is required.")
    if _is_path_sequence(X):
        if audio_encoder == "features":
            raise ValueError(
                f"{name} is a sequence of file paths but audio_encoder='features' expects a 2-D "
                "float array of precomputed features; choose an audio encoder "
                "('cnn10', 'cnn14', 'resnet38', 'aisfx' or a torch module) for files."
            )
        paths = [os.fspath(p) for p in X]
        for i, p in enumerate(paths):
            if not p.strip():
                raise ValueError(f"{name}[{i}]={p!r} is an empty path.")
            if "\0" in p:
                raise ValueError(f"{name}[{i}]={p!r} holds a NUL character; it is not a path.")
        return AudioInput("paths", paths)
    arr = _float_matrix(
        X, name, "a 2-D float array (n_samples, n_features or n_audio_samples) or a sequence of "
        "audio file paths"
    )
    kind = "features" if audio_encoder in ("auto", "features") else "waveforms"
    return AudioInput(kind, arr)


def check_text(y, text_encoder, *, name: str = "y") -> TextInput:
    """Validate the caption side and decide its kind.

    Parameters
    ----------
    y : sequence of str or array-like of shape (n_samples, n_features)
        Captions, or precomputed text features.
    text_encoder : str or torch.nn.Module
        ``"features"`` requires a 2-D float array; other encoders require strings;
        ``"auto"`` accepts both.
    name : str
        Name of the argument in error messages.

    Returns
    -------
    TextInput

    Examples
    --------
    >>> check_text(["a dog barks", "rain"], "auto").kind
    'strings'
    >>> check_text([[0.5], [1.5]], "auto").kind
    'features'
    """
    if y is None:
        raise ValueError(
            f"LTMRetriever requires y to be passed, but the target y is None: {name} holds the "
            "captions (a sequence of strings or a 2-D float array of text features)."
        )
    if isinstance(y, (str, bytes)):
        raise ValueError(f"{name}={y!r} is a single string; pass a sequence of captions.")
    y = as_values(y, name)
    if _is_sparse(y):
        _float_matrix(y, name, "captions or a dense 2-D float array of text features")
    if isinstance(y, np.ndarray) and y.ndim == 0:
        raise ValueError(f"{name}={y!r} is a scalar array; pass a sequence of captions or a 2-D "
                         "float array of text features.")
    if isinstance(y, np.ndarray):
        is_strings = y.ndim == 1 and y.dtype.kind in "OUS"
    else:
        try:
            y = list(y)
        except TypeError as exc:
            raise TypeError(
                f"{name} of type {type(y).__name__} is not a sequence; accepted: captions (a "
                "sequence of strings) or a 2-D float array of text features."
            ) from exc
        is_strings = any(isinstance(v, (str, bytes)) for v in y)
    if len(y) == 0:
        raise ValueError(
            f"{name} is empty: no captions were given (0 samples); at least 1 caption (a "
            "string) or 1 row of text features is required."
        )
    if is_strings:
        if text_encoder == "features":
            raise ValueError(
                f"{name} holds strings but text_encoder='features' expects a 2-D float array of "
                "precomputed text features; use a text encoder ('scratch', a Hugging Face name or "
                "path, or a torch module) for strings."
            )
        return TextInput("strings", as_str_list(list(y), name))
    try:
        arr = np.asarray(y)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if arr.ndim == 1 and arr.dtype.kind in "fiub":
        raise ValueError(
            f"{name} is a 1-D numeric array of shape {arr.shape}; accepted: captions (a sequence "
            "of strings) or a 2-D float array of text features (n_samples, n_features)."
        )
    if text_encoder not in ("auto", "features"):
        raise ValueError(
            f"{name} is numeric but text_encoder={text_encoder!r} expects caption strings; use "
            "text_encoder='features' (or 'auto') for precomputed text features."
        )
    return TextInput("features", _float_matrix(
        arr, name, "captions (a sequence of strings) or a 2-D float array of text features"
    ))
