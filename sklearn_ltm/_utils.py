"""Small helpers shared by the estimator side: clip groups, devices, atomic writes."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["infer_groups", "atomic_write", "remove_stale_temporaries", "resolve_device"]


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


_TMP_SUFFIX = ".tmp"
STALE_TEMP_SECONDS = 24 * 3600


def _temp_prefix(path: Path) -> str:
    """Temporaries of ``path`` are named ``.{name}.{pid}-{host}.{random}.tmp`` next to it."""
    return f".{path.name}."


def _writer_tag() -> str:
    """``{pid}-{host}``: who writes a temporary (the host, for folders shared by machines)."""
    import re
    import socket

    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"
    return f"{os.getpid()}-{host}"


def _current_umask() -> int:
    """The process umask, read without changing it where ``/proc`` allows (thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - no /proc: the classic read-and-restore
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True  # so only the age of a temporary tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(path, *, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporaries that killed writers of ``path`` left behind.

    A temporary of ``path`` (written by :func:`atomic_write`) is stale when the process
    that wrote it, on this machine, is gone, or when it is older than ``max_age`` seconds
    (its process id may have been reused, or it was written from another machine sharing
    the folder). Temporaries of other files, and those of live writers, are kept.

    Parameters
    ----------
    path : str or path-like
        The target file whose temporaries are looked for (in its folder).
    max_age : float, default=86400
        Age in seconds past which a temporary is stale whoever wrote it.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> import os, time
    >>> stale = folder / ".model.pt.12345-otherhost.abc.tmp"
    >>> _ = stale.write_bytes(b"half a file")
    >>> os.utime(stale, (time.time() - 2 * 86400,) * 2)
    >>> [p.name for p in remove_stale_temporaries(folder / "model.pt")]
    ['.model.pt.12345-otherhost.abc.tmp']
    """
    import time

    path = Path(path)
    prefix = _temp_prefix(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        middle = name[len(prefix):-len(_TMP_SUFFIX)]
        tag, _, rest = middle.partition(".")
        pid_text, _, host = tag.partition("-")
        if not pid_text.isdigit() or not host or not rest or "." in rest:
            continue  # not one of ours (another name that happens to share the prefix)
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        same_host = host == _writer_tag().partition("-")[2]
        if age < max_age and (not same_host or _pid_alive(int(pid_text))):
            continue  # a live writer, or one on another machine: only age tells
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path`` and rename it onto ``path`` on success.

    A reader never sees a half-written file: on any exception the temporary file is
    removed and ``path`` keeps its previous content. The data is flushed to disk
    (``fsync``) before the rename and the folder after it, so a power cut leaves the old
    or the new file. Temporaries that killed writers of the same ``path`` left behind
    (``.{name}.{pid}-{host}.{random}.tmp``) are removed first (:func:`remove_stale_temporaries`).
    The new file gets the mode of the file it replaces, or ``0o666`` less the umask for a
    new file, as :func:`open` would.

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
    if path.is_dir():
        raise IsADirectoryError(f"{os.fspath(path)!r} is a directory; give a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    try:
        file_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        file_mode = 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{_writer_tag()}.",
                               suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
            with contextlib.suppress(OSError):
                os.fchmod(fd, file_mode)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


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
