"""Progress bars on stderr (tqdm) for the steps that can take more than a few seconds."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["progress", "map_in_chunks"]


def progress(iterable=None, *, verbose=0, total=None, desc=None, unit="it"):
    """``iterable`` wrapped in a tqdm bar on stderr when ``verbose > 0``, else unchanged.

    Examples
    --------
    >>> list(progress(range(3), verbose=0))
    [0, 1, 2]
    """
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def map_in_chunks(function, data, *, chunk_size, verbose=0, desc=None, unit="item"):
    """``function(data)``, or with ``verbose`` the rows of ``function`` over chunks, stacked.

    ``function`` must map rows independently (an embedding). With ``verbose == 0`` it is
    called once on all of ``data``, exactly as without this helper.

    Examples
    --------
    >>> import numpy as np
    >>> map_in_chunks(lambda x: np.asarray(x) * 2, [1, 2, 3], chunk_size=2, verbose=0)
    array([2, 4, 6])
    """
    if not verbose:
        return function(data)
    n = len(data)
    bar = progress(total=n, verbose=verbose, desc=desc, unit=unit)
    out = []
    try:
        for start in range(0, n, chunk_size):
            part = data[start:start + chunk_size]
            out.append(np.asarray(function(part)))
            bar.update(len(part))
    finally:
        bar.close()
    return np.concatenate(out) if out else function(data)
