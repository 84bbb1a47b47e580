"""Noisy correspondences: the one definition of caption noise (``noise_ratio``).

:func:`corrupt_captions` moves the captions of a seeded fraction of the rows among those
rows so that each moved caption lands on a row of another clip: a clip with several
captions never "corrupts" a row with one of its own captions. The estimator
(``LTMRetriever(noise_ratio=...)``) and the synthetic corpus
(:func:`sklearn_ltm.datasets.make_sound_captions`) both use it.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import Interval, Real, validate_params

__all__ = ["corrupt_captions"]


@validate_params(
    {"clip_ids": ["array-like"], "noise_ratio": [Interval(Real, 0, 1, closed="left")],
     "random_state": ["random_state", np.random.Generator]},
    prefer_skip_nested_validation=True,
)
def corrupt_captions(clip_ids, noise_ratio, random_state=None):
    """Which caption each row gets when ``noise_ratio`` of them are moved to other clips.

    ``round(noise_ratio * n)`` rows are drawn (none when that is below 2); their captions
    are cycled among them in an order that keeps the rows of a clip together and shifts
    past the longest such run, so a moved caption comes from another clip whenever the
    drawn rows span more than one clip.

    Parameters
    ----------
    clip_ids : array-like of int, shape (n_rows,)
        Clip of each row.
    noise_ratio : float in [0, 1)
    random_state : int, RandomState, Generator or None

    Returns
    -------
    source : ndarray of int, shape (n_rows,)
        Row whose caption each row gets (``source[i] == i`` for untouched rows).
    noisy : ndarray of bool, shape (n_rows,)
        Rows whose caption now comes from another clip.

    Examples
    --------
    >>> source, noisy = corrupt_captions([0, 0, 1, 1, 2, 2], 0.5, random_state=0)
    >>> int(noisy.sum())
    3
    >>> bool(all(source[i] != i for i in range(6) if noisy[i]))
    True
    """
    clip_ids = np.asarray(clip_ids, dtype=np.int64)
    n_rows = len(clip_ids)
    source = np.arange(n_rows)
    noisy = np.zeros(n_rows, dtype=bool)
    n_moved = int(math.floor(noise_ratio * n_rows + 0.5))
    if n_moved < 2:
        return source, noisy
    rs = (random_state if isinstance(random_state, (np.random.Generator, np.random.RandomState))
          else np.random.RandomState(random_state))
    rows = rs.choice(n_rows, size=n_moved, replace=False)
    clip_rank = rs.permutation(int(clip_ids.max()) + 1)
    rows = rows[np.argsort(clip_rank[clip_ids[rows]], kind="stable")]  # rows of a clip together
    largest = int(np.bincount(clip_ids[rows]).max())
    shift = largest if n_moved >= 2 * largest else 1  # a shift past any clip's run
    source[rows] = np.roll(rows, -shift)
    noisy[rows] = clip_ids[rows] != clip_ids[source[rows]]
    return source, noisy
