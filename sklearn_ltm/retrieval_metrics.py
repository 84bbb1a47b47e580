"""Retrieval metrics: recall@k, mAP@k, ranks of the first relevant item, modality gap.

Pure math on numpy arrays (torch tensors are accepted and moved to host memory). Nothing here
imports the estimator side: :func:`sklearn_ltm.evaluation.evaluate` wires these functions to a
fitted retriever.

Conventions shared by every function:

- ``similarity`` has shape ``(n_queries, n_gallery)`` and *greater is better*. A distance is
  turned into a similarity by negating it.
- ``relevant`` is a boolean array of the same shape: ``relevant[i, j]`` is true when gallery item
  ``j`` is a correct answer to query ``i``. Every query needs at least one relevant item.
- Ties are broken **pessimistically**: among gallery items with exactly equal similarity, the
  non-relevant ones are ranked before the relevant ones. A constant scorer therefore gets the
  worst possible value, never a lucky one, and the metrics do not depend on the gallery order.
- Ranks are 1-based: rank 1 is the top of the list.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "first_relevant_rank",
    "recall_at_k",
    "mean_average_precision_at_k",
    "median_rank",
    "mean_rank",
    "retrieval_metrics",
    "modality_gap",
    "negative_squared_distances",
]


def _to_numpy(array, name: str) -> np.ndarray:
    """A read-only view (or copy) of ``array`` as a numpy array; torch tensors go to the host."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like; got {type(array).__name__}.") from exc


def _check_similarity_relevant(similarity, relevant) -> tuple[np.ndarray, np.ndarray]:
    """Validate the (similarity, relevant) pair and return them as float64 / bool arrays."""
    sim = _to_numpy(similarity, "similarity")
    rel = _to_numpy(relevant, "relevant")
    if sim.ndim != 2:
        raise ValueError(
            f"similarity must be 2-D (n_queries, n_gallery); got shape {sim.shape}."
        )
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"similarity must have at least one query and one gallery item; "
                         f"got shape {sim.shape}.")
    if sim.dtype.kind not in "fiub":
        raise TypeError(f"similarity must hold real numbers; got dtype {sim.dtype}.")
    if rel.shape != sim.shape:
        raise ValueError(
            f"relevant has shape {rel.shape} but similarity has shape {sim.shape}; "
            "they must be equal."
        )
    if rel.dtype != np.bool_:
        if rel.dtype.kind not in "iuf" or not np.isin(rel, (0, 1)).all():
            raise ValueError(
                f"relevant must be a boolean array (or 0/1 values); got dtype {rel.dtype}."
            )
        rel = rel.astype(bool)
    sim = sim.astype(np.float64, copy=False)
    if np.isnan(sim).any():
        bad = int(np.argwhere(np.isnan(sim).any(axis=1))[0, 0])
        raise ValueError(f"similarity contains NaN (first in query row {bad}); scores must be "
                         "numbers (infinities are accepted).")
    empty = ~rel.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        raise ValueError(
            f"{rows.size} queries have no relevant gallery item (rows {rows[:5].tolist()}"
            f"{'...' if rows.size > 5 else ''}); every query needs at least one."
        )
    return sim, rel


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name}={k!r} must be an int >= 1.")
    if k < 1:
        raise ValueError(f"{name}={k!r} must be an int >= 1.")
    return int(k)


def _first_relevant_rank(sim: np.ndarray, rel: np.ndarray) -> np.ndarray:
    # The best relevant item of row i has score s_i*. Pessimistically it sits after every item
    # scoring more than s_i* and after every non-relevant item scoring exactly s_i*.
    best = np.where(rel, sim, -np.inf).max(axis=1, keepdims=True)
    above = (sim > best).sum(axis=1)
    tied_irrelevant = ((sim == best) & ~rel).sum(axis=1)
    return (1 + above + tied_irrelevant).astype(np.int64)


def first_relevant_rank(similarity, relevant) -> np.ndarray:
    """1-based rank of the best-ranked relevant gallery item of each query.

    Ties are broken pessimistically (see the module notes): a relevant item tied with
    non-relevant items is ranked after all of them.

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.

    Returns
    -------
    ranks : ndarray of shape (n_queries,), dtype int64
        Values in ``1..n_gallery``.

    See Also
    --------
    median_rank, mean_rank, recall_at_k

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.9, 0.5, 0.1], [0.2, 0.2, 0.7]])
    >>> relevant = np.array([[False, True, False], [True, False, False]])
    >>> first_relevant_rank(similarity, relevant)  # row 1: tie with item 1, counted after it
    array([2, 3])
    """
    sim, rel = _check_similarity_relevant(similarity, relevant)
    return _first_relevant_rank(sim, rel)


def recall_at_k(similarity, relevant, k) -> float:
    """Fraction of queries with at least one relevant item among the top ``k``.

    With several relevant items per query (audio-to-text retrieval: five captions per clip) a
    query counts as a hit when the best-ranked of them is in the top ``k``, as in the
    audio-text retrieval literature.

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.
    k : int
        Cut-off, ``k >= 1``. A ``k`` at least ``n_gallery`` gives 1.0.

    Returns
    -------
    float
        Recall@k in ``[0, 1]`` (multiply by 100 for the percentages of the papers).

    Notes
    -----
    Ties are broken pessimistically: ``R@k`` of a constant scorer is ``0`` unless a relevant
    item can only be placed within the top ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.9, 0.5, 0.1], [0.2, 0.2, 0.7]])
    >>> relevant = np.array([[False, True, False], [True, False, False]])
    >>> recall_at_k(similarity, relevant, k=1), recall_at_k(similarity, relevant, k=2)
    (0.0, 0.5)
    """
    k = _check_k(k)
    sim, rel = _check_similarity_relevant(similarity, relevant)
    return float((_first_relevant_rank(sim, rel) <= k).mean())


def _average_precision_at_k(sim: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    # Without sorting the rows: the i-th best relevant item (score x_i) sits, pessimistically,
    # at rank r_i = i + #(non-relevant items scoring >= x_i), and contributes i / r_i when
    # r_i <= k. Only i <= k can qualify, so k passes over the matrix suffice.
    n_gallery = sim.shape[1]
    depth = min(k, n_gallery)
    masked = np.where(rel, sim, -np.inf)
    if depth < n_gallery:
        masked = -np.partition(-masked, depth - 1, axis=1)[:, :depth]
    best_relevant = -np.sort(-masked, axis=1)[:, :depth]
    n_relevant = rel.sum(axis=1)
    irrelevant = ~rel
    total = np.zeros(sim.shape[0])
    for i in range(depth):
        rank = (i + 1) + (irrelevant & (sim >= best_relevant[:, i : i + 1])).sum(axis=1)
        total += np.where((i < n_relevant) & (rank <= k), (i + 1) / rank, 0.0)
    return total / np.minimum(k, n_relevant)


def mean_average_precision_at_k(similarity, relevant, k=10) -> float:
    """Mean over queries of the average precision in the top ``k`` (mAP@k).

    For one query,

    .. math::

        \\mathrm{AP@}k = \\frac{1}{\\min(k, n_{\\mathrm{rel}})}
        \\sum_{i=1}^{k} \\mathrm{precision@}i \\cdot \\mathrm{rel}_i

    where :math:`\\mathrm{rel}_i` is 1 when the item at rank :math:`i` is relevant and
    :math:`n_{\\mathrm{rel}}` is the number of relevant items of the query. With one relevant
    item this is the reciprocal rank when the rank is at most ``k``, else 0.

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.
    k : int, default=10
        Cut-off, ``k >= 1``.

    Returns
    -------
    float
        mAP@k in ``[0, 1]``.

    Notes
    -----
    Ties are broken pessimistically (non-relevant before relevant among equal scores).

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.9, 0.8, 0.7, 0.1]])
    >>> relevant = np.array([[False, True, False, True]])
    >>> # hits at ranks 2 and 4: (1/2 + 2/4) / min(10, 2)
    >>> mean_average_precision_at_k(similarity, relevant, k=10)
    0.5
    >>> mean_average_precision_at_k(similarity, relevant, k=2)  # (1/2) / min(2, 2)
    0.25
    """
    k = _check_k(k)
    sim, rel = _check_similarity_relevant(similarity, relevant)
    return float(_average_precision_at_k(sim, rel, k).mean())


def median_rank(similarity, relevant) -> float:
    """Median over queries of :func:`first_relevant_rank` (lower is better).

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.

    Returns
    -------
    float
        The median 1-based rank (a half-integer for an even number of queries with
        different middle ranks).

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    >>> relevant = np.eye(3, dtype=bool)
    >>> median_rank(similarity, relevant), mean_rank(similarity, relevant)
    (2.0, 2.0)
    """
    sim, rel = _check_similarity_relevant(similarity, relevant)
    return float(np.median(_first_relevant_rank(sim, rel)))


def mean_rank(similarity, relevant) -> float:
    """Mean over queries of :func:`first_relevant_rank` (lower is better).

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.

    Returns
    -------
    float
        The mean 1-based rank.

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.0, 1.0], [0.0, 1.0]])
    >>> relevant = np.array([[True, False], [False, True]])
    >>> mean_rank(similarity, relevant)
    1.5
    """
    sim, rel = _check_similarity_relevant(similarity, relevant)
    return float(np.mean(_first_relevant_rank(sim, rel)))


def retrieval_metrics(similarity, relevant, ks: Sequence[int] = (1, 5, 10), map_k: int = 10
                      ) -> dict[str, float]:
    """Every retrieval metric of one direction in one pass.

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)
        ``relevant[i, j]`` is true when item ``j`` answers query ``i``; each row needs one true.
    ks : sequence of int, default=(1, 5, 10)
        Cut-offs of the recalls.
    map_k : int, default=10
        Cut-off of the mean average precision.

    Returns
    -------
    dict of str to float
        ``"R@k"`` for each ``k`` in ``ks``, ``"mAP@{map_k}"``, ``"median_rank"``,
        ``"mean_rank"``; the same values as the single-metric functions.

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.9, 0.5, 0.1], [0.2, 0.2, 0.7]])
    >>> relevant = np.array([[False, True, False], [True, False, False]])
    >>> retrieval_metrics(similarity, relevant, ks=(1, 2), map_k=3)
    {'R@1': 0.0, 'R@2': 0.5, 'mAP@3': 0.41666..., 'median_rank': 2.5, 'mean_rank': 2.5}
    """
    ks = _check_ks(ks)
    map_k = _check_k(map_k, "map_k")
    sim, rel = _check_similarity_relevant(similarity, relevant)
    ranks = _first_relevant_rank(sim, rel)
    out = {f"R@{k}": float((ranks <= k).mean()) for k in ks}
    out[f"mAP@{map_k}"] = float(_average_precision_at_k(sim, rel, map_k).mean())
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def _check_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise TypeError(f"ks={ks!r} must be a non-empty sequence of ints >= 1, e.g. (1, 5, 10).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"ks={ks!r} holds {k!r}; every cut-off must be an int >= 1.")
    return tuple(int(k) for k in ks)


def _check_embeddings(array, name: str, upcast: bool = True) -> np.ndarray:
    """Validate a 2-D finite embedding matrix; float64 unless ``upcast=False`` keeps a float."""
    emb = _to_numpy(array, name)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, embedding_dim); "
                         f"got shape {emb.shape}.")
    if emb.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers; got dtype {emb.dtype}.")
    if upcast or emb.dtype.kind != "f":
        emb = emb.astype(np.float64, copy=False)
    if not np.isfinite(emb).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return emb


def modality_gap(audio_embeddings, text_embeddings) -> dict[str, float]:
    """How far apart the audio and text embeddings lie: centroid distance and direction cosine.

    Parameters
    ----------
    audio_embeddings : array-like of shape (n_audio, embedding_dim)
        One row per clip.
    text_embeddings : array-like of shape (n_text, embedding_dim)
        One row per caption.

    Returns
    -------
    dict
        ``centroid_distance``: Euclidean distance between the two means of the embeddings as
        given (0 when the modalities share a centre). ``mean_direction_cosine``: cosine between
        the means of the L2-normalised embeddings of each modality (1 when both point, on
        average, the same way; undefined directions give 0).

    Examples
    --------
    >>> import numpy as np
    >>> audio = np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> text = np.array([[0.0, 1.0], [0.0, 2.0]])
    >>> gap = modality_gap(audio, text)
    >>> round(gap["centroid_distance"], 4), round(gap["mean_direction_cosine"], 4)
    (1.8028, 0.0)
    """
    audio = _check_embeddings(audio_embeddings, "audio_embeddings")
    text = _check_embeddings(text_embeddings, "text_embeddings")
    if audio.shape[1] != text.shape[1]:
        raise ValueError(
            f"audio_embeddings have dimension {audio.shape[1]} but text_embeddings have "
            f"{text.shape[1]}; they must live in the same space."
        )
    distance = float(np.linalg.norm(audio.mean(axis=0) - text.mean(axis=0)))

    def mean_direction(emb):
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        unit = np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)
        return unit.mean(axis=0)

    da, dt = mean_direction(audio), mean_direction(text)
    denom = np.linalg.norm(da) * np.linalg.norm(dt)
    cosine = float(np.dot(da, dt) / denom) if denom > 0 else 0.0
    return {"centroid_distance": distance, "mean_direction_cosine": cosine}


def negative_squared_distances(queries, gallery) -> np.ndarray:
    """Scores ``-||q_i - g_j||^2`` between every query and gallery row (greater is better).

    Computed from one matrix product and the squared norms, never a
    queries x gallery x dim array; the dtype of the inputs is kept.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, dim)
    gallery : ndarray of shape (n_gallery, dim)

    Returns
    -------
    ndarray of shape (n_queries, n_gallery)

    Examples
    --------
    >>> import numpy as np
    >>> negative_squared_distances(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 2.0]]))
    array([[-1., -4.]])
    """
    scores = queries @ gallery.T
    scores *= 2.0
    scores -= (queries * queries).sum(axis=1)[:, None]
    scores -= (gallery * gallery).sum(axis=1)[None, :]
    return scores
