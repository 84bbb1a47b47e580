"""Named dataset readers, so that a corpus added once is usable by name (command line).

A reader is ``reader(root, *, split=None, folds=None, on_missing="raise") -> Bunch`` with
``audio`` (one path per pair) and ``captions``.
"""

from __future__ import annotations

from ..components._base import Registry

__all__ = ["DATASETS", "read_dataset", "register_dataset"]


class _Reader:
    """A reader function under a name (the registry builds no component for datasets)."""

    def __init__(self, function):
        self.function = function


#: Registry of dataset readers (``sklearn-ltm train --dataset NAME``).
DATASETS = Registry("dataset", _Reader)


def register_dataset(name, reader=None, *, overwrite=False):
    """Register ``reader(root, *, split, folds, on_missing) -> Bunch(audio, captions)``.

    Usable as a decorator; afterwards ``sklearn-ltm train --dataset NAME --root DIR`` reads
    the corpus with it.

    Parameters
    ----------
    name : str
    reader : callable or None
    overwrite : bool, default=False

    Returns
    -------
    reader

    Examples
    --------
    >>> from sklearn.utils import Bunch
    >>> @register_dataset("two-clips", overwrite=True)
    ... def read_two(root, *, split=None, folds=None, on_missing="raise"):
    ...     return Bunch(audio=[f"{root}/a.wav", f"{root}/b.wav"], captions=["a", "b"])
    >>> read_dataset("two-clips", "/data").captions
    ['a', 'b']
    """

    def add(reader):
        DATASETS.register(name, lambda: _Reader(reader), overwrite=overwrite)
        return reader

    return add if reader is None else add(reader)


def read_dataset(name, root, *, split=None, folds=None, on_missing="raise"):
    """Read the registered dataset ``name`` under ``root``.

    Parameters
    ----------
    name : str
    root : str or path-like
    split : str or None
    folds : list of int or None
    on_missing : {"raise", "drop"}

    Returns
    -------
    Bunch
        With ``audio`` and ``captions``.
    """
    reader = DATASETS.create(name).function
    return reader(root, split=split, folds=folds, on_missing=on_missing)


def _builtin():
    from ._loaders import load_audiocaps, load_clotho, load_esc50

    @register_dataset("audiocaps")
    def _audiocaps(root, *, split=None, folds=None, on_missing="raise"):
        return load_audiocaps(root, split or "train", on_missing=on_missing)

    @register_dataset("clotho")
    def _clotho(root, *, split=None, folds=None, on_missing="raise"):
        return load_clotho(root, split or "development", on_missing=on_missing)

    @register_dataset("esc50")
    def _esc50(root, *, split=None, folds=None, on_missing="raise"):
        return load_esc50(root, folds=folds, on_missing=on_missing)


_builtin()
