r"""Ground metrics: the pairwise cost between a batch of text and a batch of audio embeddings.

Every metric is a :class:`torch.nn.Module` with

- ``forward(text, audio)``: the cost matrix of shape ``(n_text, n_audio)``;
- ``map(x)``: an embedding map such that the squared Euclidean distance between mapped
  vectors equals the cost, so any Euclidean nearest-neighbour index ranks exactly as the
  learned metric.

Costs come from squared norms and one matrix product
(:math:`\|x\|^2 + \|y\|^2 - 2\langle x, y\rangle`), never from an ``n x m x d`` tensor.
A metric is rebuilt from ``make_metric(metric.name, metric.dim)`` and its ``state_dict``.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "METRIC_NAMES",
    "CosineMetric",
    "DiagonalMetric",
    "EuclideanMetric",
    "GroundMetric",
    "MahalanobisMetric",
    "make_metric",
    "pairwise_sq_euclidean",
]


def pairwise_sq_euclidean(x, y):
    r"""Squared Euclidean distances between the rows of ``x`` and the rows of ``y``.

    Computed as :math:`\|x_i\|^2 + \|y_j\|^2 - 2 \langle x_i, y_j\rangle` (one matrix product)
    and clamped at 0 against rounding.

    Parameters
    ----------
    x : Tensor of shape (..., n, d)
    y : Tensor of shape (..., m, d)

    Returns
    -------
    Tensor of shape (..., n, m)

    Examples
    --------
    >>> import torch
    >>> pairwise_sq_euclidean(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[3.0, 4.0]]))
    tensor([[25.],
            [13.]])
    """
    sq_x = (x * x).sum(-1)
    sq_y = (y * y).sum(-1)
    cross = x @ y.transpose(-1, -2)
    return (sq_x[..., :, None] + sq_y[..., None, :] - 2 * cross).clamp_min(0)


def _check_dim(dim):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim={dim!r} is not accepted; it must be an integer >= 1.")
    return int(dim)


class GroundMetric(torch.nn.Module):
    """Base class: cost = squared Euclidean distance after :meth:`map`.

    Subclasses set :attr:`name` and override :meth:`map`.

    Parameters
    ----------
    dim : int
        Embedding dimension.

    Attributes
    ----------
    name : str
        The name accepted by :func:`make_metric`.
    dim : int
        Embedding dimension.
    """

    name = "base"

    def __init__(self, dim):
        super().__init__()
        self.dim = _check_dim(dim)

    def _check_input(self, x, what):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor; got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{what} has dtype {x.dtype}; a floating-point dtype is required.")
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{what} has shape {tuple(x.shape)}; the {self.name} metric expects "
                f"(..., {self.dim}) (last dimension = dim)."
            )

    def map(self, x):
        """Map embeddings so that squared Euclidean distance equals the cost.

        Parameters
        ----------
        x : Tensor of shape (..., dim)

        Returns
        -------
        Tensor of shape (..., k)
        """
        self._check_input(x, "x")
        return self._map(x)

    def _map(self, x):
        return x

    def forward(self, text, audio):
        """Pairwise cost matrix between text and audio embeddings.

        Parameters
        ----------
        text : Tensor of shape (..., n_text, dim)
        audio : Tensor of shape (..., n_audio, dim)

        Returns
        -------
        cost : Tensor of shape (..., n_text, n_audio)
        """
        self._check_input(text, "text")
        self._check_input(audio, "audio")
        if text.ndim < 2 or audio.ndim < 2:
            raise ValueError(
                f"text and audio must be batches of shape (..., n, {self.dim}); got shapes "
                f"{tuple(text.shape)} and {tuple(audio.shape)}."
            )
        return pairwise_sq_euclidean(self._map(text), self._map(audio))

    def extra_repr(self):
        return f"dim={self.dim}"


class EuclideanMetric(GroundMetric):
    r"""Squared Euclidean cost :math:`\|t - a\|^2`; ``map`` is the identity.

    Parameters
    ----------
    dim : int
        Embedding dimension.

    Examples
    --------
    >>> import torch
    >>> metric = EuclideanMetric(2)
    >>> metric(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    tensor([[1., 4.]])
    """

    name = "euclidean"


class CosineMetric(GroundMetric):
    r"""Squared chordal distance :math:`2 - 2\cos(t, a)`; ``map`` L2-normalises.

    The cost is a decreasing function of the cosine similarity, so rankings by cost and by
    cosine are the same.

    Parameters
    ----------
    dim : int
        Embedding dimension.

    Examples
    --------
    >>> import torch
    >>> metric = CosineMetric(2)
    >>> metric(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]))
    tensor([[0., 2., 4.]])
    """

    name = "cosine"

    def _map(self, x):
        return torch.nn.functional.normalize(x, dim=-1)


class DiagonalMetric(GroundMetric):
    r"""Diagonal Mahalanobis cost :math:`\sum_k s_k^2 (t_k - a_k)^2`.

    Parameters
    ----------
    dim : int
        Embedding dimension.

    Attributes
    ----------
    scale : Parameter of shape (dim,)
        Per-dimension scale :math:`s` (initialised to ones); ``map(x) = x * scale``.

    Examples
    --------
    >>> import torch
    >>> metric = DiagonalMetric(2)
    >>> with torch.no_grad():
    ...     _ = metric.scale.copy_(torch.tensor([2.0, 0.0]))
    >>> metric(torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 0.0]]))
    tensor([[4.]], grad_fn=<ClampMinBackward0>)
    """

    name = "diagonal"

    def __init__(self, dim):
        super().__init__(dim)
        self.scale = torch.nn.Parameter(torch.ones(self.dim))

    def _map(self, x):
        return x * self.scale


class MahalanobisMetric(GroundMetric):
    r"""Full Mahalanobis cost :math:`(t - a)^\top M (t - a)` with :math:`M = L^\top L`.

    :math:`M` is positive semi-definite by construction. ``map(x) = x L^T``, so the Euclidean
    distance between mapped embeddings is the learned distance.

    Parameters
    ----------
    dim : int
        Embedding dimension.
    rank : int, optional
        Number of rows of :math:`L` (rank of :math:`M`); ``dim`` when None. ``L`` is
        initialised to the first ``rank`` rows of the identity. A state dict with another
        rank loads into any instance (``L`` is resized).

    Attributes
    ----------
    L : Parameter of shape (rank, dim)
        The factor of :math:`M`.

    Examples
    --------
    >>> import torch
    >>> metric = MahalanobisMetric(3)
    >>> text, audio = torch.randn(4, 3), torch.randn(5, 3)
    >>> cost = metric(text, audio)
    >>> bool(torch.allclose(cost, torch.cdist(text, audio) ** 2, atol=1e-5))
    True
    >>> metric.M.shape
    torch.Size([3, 3])
    """

    name = "mahalanobis"

    def __init__(self, dim, rank=None):
        super().__init__(dim)
        if rank is None:
            rank = self.dim
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
            raise ValueError(f"rank={rank!r} is not accepted; it must be an integer >= 1.")
        self.L = torch.nn.Parameter(torch.eye(int(rank), self.dim))

    @property
    def rank(self):
        """Number of rows of :attr:`L`."""
        return self.L.shape[0]

    @property
    def M(self):
        """The metric matrix :math:`L^\\top L`, shape (dim, dim)."""
        return self.L.transpose(0, 1) @ self.L

    def _map(self, x):
        return x @ self.L.transpose(0, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        loaded = state_dict.get(prefix + "L")
        if (
            isinstance(loaded, torch.Tensor)
            and loaded.ndim == 2
            and loaded.shape[1] == self.dim
            and loaded.shape[0] != self.rank
        ):
            self.L = torch.nn.Parameter(
                torch.empty(loaded.shape, dtype=self.L.dtype, device=self.L.device)
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        return f"dim={self.dim}, rank={self.rank}"


_METRICS = {
    cls.name: cls for cls in (MahalanobisMetric, DiagonalMetric, EuclideanMetric, CosineMetric)
}

#: Names accepted by :func:`make_metric`.
METRIC_NAMES = tuple(_METRICS)


def make_metric(name, dim, **kwargs):
    """Build a ground metric by name.

    Parameters
    ----------
    name : {"mahalanobis", "diagonal", "euclidean", "cosine"}
        The metric.
    dim : int
        Embedding dimension.
    **kwargs
        Passed to the class (``rank`` for ``"mahalanobis"``).

    Returns
    -------
    GroundMetric
        A :class:`torch.nn.Module` with ``forward(text, audio)``, ``map(x)`` and ``name``.

    Examples
    --------
    >>> metric = make_metric("mahalanobis", 8)
    >>> metric
    MahalanobisMetric(dim=8, rank=8)
    >>> clone = make_metric(metric.name, metric.dim)
    >>> clone.load_state_dict(metric.state_dict())
    <All keys matched successfully>
    """
    if name not in _METRICS:
        raise ValueError(
            f"metric name {name!r} is not accepted; use one of "
            f"{', '.join(map(repr, METRIC_NAMES))}."
        )
    return _METRICS[name](dim, **kwargs)
