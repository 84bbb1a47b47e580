"""Small helpers shared by the estimator side: clip groups, devices, atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["infer_groups", "atomic_write", "resolve_device"]


def infer_groups(X) -> np.ndarray:
    """Integer clip identity of each row of ``X``: equal rows or equal paths share a group.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or sequence of str or path
        The audio side of the pairs: feature or waveform rows, or file paths.

    Returns
    -------
    groups : ndarray of shape (n_samples,), dtype int64
        ``groups[i] == groups[j]`` exactly when rows ``i`` and ``j`` are the same clip.
        Groups are numbered in order of first appearance.

    Examples
    --------
    >>> infer_groups(["a.wav", "b.wav", "a.wav"])
    array([0, 1, 0])
    >>> import numpy as np
    >>> infer_groups(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]]))
    array([0, 0, 1])
    """
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "fiub":
        keys = [row.tobytes() for row in np.ascontiguousarray(X)]
    else:
        keys = [os.fspath(x) if isinstance(x, (str, os.PathLike)) else repr(x) for x in X]
    seen: dict = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        out[i] = seen.setdefault(key, len(seen))
    return out


def resolve_device(device: str = "auto"):
    """The torch device for ``device``: ``"auto"`` picks CUDA when present, else CPU.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device; accepted: 'auto', 'cpu', 'cuda', 'cuda:N'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available here.")
    return dev


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path`` and rename it onto ``path`` on success.

    A reader never sees a half-written file: on any exception the temporary file is
    removed and ``path`` keeps its previous content.

    Parameters
    ----------
    path : str or path-like
        The final destination.
    mode : {"wb", "w"}
        Binary or text mode.

    Yields
    ------
    file object
        The open temporary file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_write(target, "w") as fh:
    ...     _ = fh.write("hello")
    >>> target.read_text()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r} is not accepted; use 'wb' or 'w'.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def as_str_list(values: Sequence, name: str) -> list[str]:
    """Validate a sequence of non-empty strings and return it as a list (a copy)."""
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{name}[{i}]={v!r} is not a string; {name} must be strings.")
        if not v.strip():
            raise ValueError(f"{name}[{i}]={v!r} is empty or whitespace-only; captions need text.")
        out.append(v)
    return out
