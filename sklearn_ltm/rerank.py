"""Transductive re-ranking: an entropic OT plan between all queries and the whole gallery.

The m-LTM paper scores a query-gallery pair by the entry of the Sinkhorn plan between every
query and every gallery item under the learned ground cost, instead of by the cost alone: the
uniform marginals make each gallery item receive its fair share of queries, which corrects hubs
(items close to everything). The reference code built a ``n_queries x n_gallery x d`` tensor
(about 56 GB on the AudioCaps test set); here the cost is recomputed per chunk of queries from
the embeddings, so the memory is ``O(chunk_size * n_gallery + (n_queries + n_gallery) * d)``
besides the returned scores.

Pure torch math; numpy in gives numpy out, a tensor in gives a tensor out on its device.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["SinkhornPotentials", "sinkhorn_potentials", "transductive_log_plan"]


class SinkhornPotentials(NamedTuple):
    """Result of :func:`sinkhorn_potentials`.

    The plan is ``P[i, j] = exp((query_potential[i] + gallery_potential[j]
    - C[i, j] / cost_scale) / epsilon)`` with ``C[i, j] = ||q_i - g_j||^2``.

    Attributes
    ----------
    query_potential : ndarray or Tensor of shape (n_queries,)
    gallery_potential : ndarray or Tensor of shape (n_gallery,)
    cost_scale : float
        The cost was divided by this (its maximum when ``normalize_cost=True``, else 1).
    n_iter : int
        Sinkhorn iterations run.
    marginal_error : float
        L1 distance between the plan's row sums and the uniform query marginal, measured at
        the start of the last iteration (the column sums are exact after each iteration).
    """

    query_potential: object
    gallery_potential: object
    cost_scale: float
    n_iter: int
    marginal_error: float


def _as_tensor(array, name: str) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        t = array.detach()
    else:
        a = np.asarray(array)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (n, embedding_dim); got shape {tuple(t.shape)}."
        )
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return t


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1.")
    return int(value)


def _check_sinkhorn_options(epsilon, n_iter, tol, chunk_size):
    """Validate the Sinkhorn options; return them as (float, int, float, int)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not (
        math.isfinite(epsilon) and epsilon > 0
    ):
        raise ValueError(f"epsilon={epsilon!r} must be a finite float > 0.")
    n_iter = _check_positive_int(n_iter, "n_iter")
    chunk_size = _check_positive_int(chunk_size, "chunk_size")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
        raise ValueError(f"tol={tol!r} must be a float >= 0 (0 runs all n_iter iterations).")
    return float(epsilon), n_iter, float(tol), chunk_size


def _validate(queries, gallery, epsilon, n_iter, tol, chunk_size):
    epsilon, n_iter, tol, chunk_size = _check_sinkhorn_options(epsilon, n_iter, tol, chunk_size)
    q = _as_tensor(queries, "queries")
    g = _as_tensor(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but gallery has {g.shape[1]}; they must match."
        )
    if q.device != g.device:
        raise ValueError(f"queries are on {q.device} but gallery is on {g.device}.")
    dtype = torch.promote_types(q.dtype, g.dtype)
    return q.to(dtype), g.to(dtype), epsilon, n_iter, tol, chunk_size


class _ChunkedCost:
    """Squared Euclidean cost ``||q_i - g_j||^2 / scale`` for one chunk of query rows at a time."""

    def __init__(self, q: torch.Tensor, g: torch.Tensor, chunk_size: int):
        self.q, self.g, self.chunk_size = q, g, chunk_size
        self.q_sq = (q * q).sum(dim=1)
        self.g_sq = (g * g).sum(dim=1)
        self.scale = 1.0
        self._whole = None  # with a single chunk, the cost is kept (it is the chunk anyway)

    def _compute(self, start, stop):
        cost = self.q_sq[start:stop, None] + self.g_sq[None, :]
        cost = cost.addmm_(self.q[start:stop], self.g.T, alpha=-2.0).clamp_(min=0.0)
        return cost.div_(self.scale) if self.scale != 1.0 else cost

    def chunks(self):
        n = self.q.shape[0]
        if n <= self.chunk_size:
            if self._whole is None or self._whole[0] != self.scale:
                self._whole = (self.scale, self._compute(0, n))
            yield slice(0, n), self._whole[1]
            return
        for start in range(0, n, self.chunk_size):
            yield slice(start, min(start + self.chunk_size, n)), self._compute(
                start, min(start + self.chunk_size, n))


def _run_sinkhorn(cost: _ChunkedCost, epsilon: float, n_iter: int, tol: float):
    q = cost.q
    n_q, n_g = q.shape[0], cost.g.shape[0]
    log_a, log_b = -math.log(n_q), -math.log(n_g)
    f = torch.zeros(n_q, dtype=q.dtype, device=q.device)
    h = torch.zeros(n_g, dtype=q.dtype, device=q.device)
    error = float("inf")
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007 (the count is returned)
        column_lse = torch.full((n_g,), -math.inf, dtype=q.dtype, device=q.device)
        f_old = f.clone()
        for rows, c in cost.chunks():
            # Row update with the current gallery potential (exact row marginals) ...
            f[rows] = epsilon * (log_a - torch.logsumexp((h[None, :] - c) / epsilon, dim=1))
            # ... then accumulate the column log-sums for the gallery update with the new f.
            chunk_lse = torch.logsumexp((f[rows, None] - c) / epsilon, dim=0)
            column_lse = torch.logaddexp(column_lse, chunk_lse)
        h = epsilon * (log_b - column_lse)
        # Row sums of the plan before this iteration were a_i * exp((f_old_i - f_i) / eps).
        error = float(torch.expm1((f_old - f) / epsilon).abs().sum() / n_q)
        if error <= tol:
            break
    return f, h, it, error


def _solve(queries, gallery, epsilon, n_iter, tol, chunk_size, normalize_cost):
    q, g, epsilon, n_iter, tol, chunk_size = _validate(
        queries, gallery, epsilon, n_iter, tol, chunk_size
    )
    with torch.no_grad():
        cost = _ChunkedCost(q, g, chunk_size)
        if normalize_cost:
            peak = max(float(c.max()) for _, c in cost.chunks())
            cost.scale = peak if peak > 0 else 1.0
        f, h, it, error = _run_sinkhorn(cost, epsilon, n_iter, tol)
    return cost, f, h, it, error


def _output(t: torch.Tensor, as_numpy: bool):
    return t.cpu().numpy() if as_numpy else t


def sinkhorn_potentials(queries, gallery, *, epsilon=0.05, n_iter=100, tol=1e-6,
                        chunk_size=1024, normalize_cost=True) -> SinkhornPotentials:
    """Log-domain Sinkhorn between all queries and the whole gallery, in chunks of queries.

    Solves :math:`\\min_P \\langle P, C\\rangle - \\epsilon H(P)` subject to uniform
    marginals :math:`P 1 = 1/n_q`, :math:`P^T 1 = 1/n_g`, with
    :math:`C_{ij} = \\lVert q_i - g_j\\rVert^2` (divided by its maximum when
    ``normalize_cost``), and returns the dual potentials. The cost is never stored whole: each
    iteration recomputes it chunk by chunk of ``chunk_size`` queries.

    Parameters
    ----------
    queries : array-like or Tensor of shape (n_queries, embedding_dim)
        Query embeddings (e.g. captions for text-to-audio retrieval).
    gallery : array-like or Tensor of shape (n_gallery, embedding_dim)
        Gallery embeddings (e.g. the distinct audio clips).
    epsilon : float, default=0.05
        Entropic regularisation, ``> 0``; relative to the cost scale (the cost is in ``[0, 1]``
        when ``normalize_cost``).
    n_iter : int, default=100
        Maximum number of Sinkhorn iterations.
    tol : float, default=1e-6
        Stop when the L1 error of the row marginals is at most ``tol``; 0 runs every iteration.
    chunk_size : int, default=1024
        Query rows per chunk; peak memory is about ``3 * chunk_size * n_gallery`` numbers.
    normalize_cost : bool, default=True
        Divide the cost by its maximum, as the m-LTM reference code does.

    Returns
    -------
    SinkhornPotentials
        Potentials (numpy arrays for numpy inputs, tensors on the inputs' device for tensors),
        the cost scale, the iterations run and the final marginal error.

    See Also
    --------
    transductive_log_plan : the log-plan itself, the transductive retrieval scores.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pot = sinkhorn_potentials(rng.normal(size=(6, 3)), rng.normal(size=(4, 3)), tol=1e-9,
    ...                           n_iter=1000)
    >>> pot.query_potential.shape, pot.gallery_potential.shape, pot.marginal_error <= 1e-9
    ((6,), (4,), True)
    """
    as_numpy = not isinstance(queries, torch.Tensor)
    cost, f, h, it, error = _solve(
        queries, gallery, epsilon, n_iter, tol, chunk_size, normalize_cost
    )
    return SinkhornPotentials(_output(f, as_numpy), _output(h, as_numpy), cost.scale, it, error)


def transductive_log_plan(queries, gallery, *, epsilon=0.05, n_iter=100, tol=1e-6,
                          chunk_size=1024, normalize_cost=True):
    """Logarithm of the Sinkhorn plan between all queries and the whole gallery.

    ``log P[i, j]`` is the transductive retrieval score of the m-LTM paper: rank the gallery
    for query ``i`` by row ``i`` (greater is better), and the queries for gallery item ``j``
    by column ``j`` (the plan of the reverse direction is the transpose). The log is returned
    because the plan itself underflows for small ``epsilon``; ranks are the same.

    Parameters
    ----------
    queries : array-like or Tensor of shape (n_queries, embedding_dim)
        Query embeddings.
    gallery : array-like or Tensor of shape (n_gallery, embedding_dim)
        Gallery embeddings, in the same space (smaller squared distance = better match).
    epsilon : float, default=0.05
        Entropic regularisation, ``> 0``.
    n_iter : int, default=100
        Maximum number of Sinkhorn iterations.
    tol : float, default=1e-6
        Stop when the L1 error of the row marginals is at most ``tol``.
    chunk_size : int, default=1024
        Query rows per chunk of the cost.
    normalize_cost : bool, default=True
        Divide the cost by its maximum.

    Returns
    -------
    log_plan : ndarray or Tensor of shape (n_queries, n_gallery)
        Same type, dtype and device as ``queries``; ``exp(log_plan)`` sums to 1 and has the
        uniform marginals up to ``tol``.

    See Also
    --------
    sinkhorn_potentials : the potentials alone (memory linear in the sizes).

    Examples
    --------
    >>> import numpy as np
    >>> texts = np.array([[0.0, 1.0], [1.0, 0.0], [0.9, 0.1]])
    >>> clips = np.array([[0.1, 0.9], [1.0, 0.0], [0.8, 0.3]])
    >>> # plain distance ranks clip 1 first for both texts 1 and 2; the plan shares clips out
    >>> transductive_log_plan(texts, clips, epsilon=0.01, n_iter=500).argmax(axis=1)
    array([0, 1, 2])
    """
    as_numpy = not isinstance(queries, torch.Tensor)
    cost, f, h, _, _ = _solve(queries, gallery, epsilon, n_iter, tol, chunk_size, normalize_cost)
    with torch.no_grad():
        out = torch.empty((f.shape[0], h.shape[0]), dtype=f.dtype, device=f.device)
        for rows, c in cost.chunks():
            out[rows] = (f[rows, None] + h[None, :] - c) / float(epsilon)
    return _output(out, as_numpy)
