"""Ground-metric components: the learned cost between caption and audio embeddings."""

from __future__ import annotations

from .._validation import positive_float, positive_int
from ._base import Component

__all__ = ["GroundMetricComponent", "Mahalanobis", "Diagonal", "Euclidean", "Cosine"]


class GroundMetricComponent(Component):
    """Base class of the metric components: :meth:`build` makes the torch module.

    ``name`` is the :func:`sklearn_ltm.ground_metrics.make_metric` name.
    """

    kind = "metric"
    name = None

    def build(self, dim: int):
        """The :class:`~sklearn_ltm.ground_metrics.GroundMetric` for ``dim``-sized embeddings."""
        from ..ground_metrics import make_metric

        return make_metric(self.name, dim, **self.module_params())

    def module_params(self) -> dict:
        """Arguments of the torch module besides ``dim`` (saved with the model)."""
        return {}

    def metric_learning_rate(self, head_learning_rate: float) -> float:
        """Adam rate of the metric's parameters."""
        rate = getattr(self, "learning_rate", None)
        return float(head_learning_rate) if rate is None else float(rate)

    def check_dim(self, embedding_dim: int) -> None:
        """Raise if the settings do not fit ``embedding_dim``."""


class Mahalanobis(GroundMetricComponent):
    r"""Full Mahalanobis metric :math:`(t - a)^\top L^\top L (t - a)`, learned.

    Parameters
    ----------
    rank : int or None, default=None
        Rows of ``L`` (at most ``embedding_dim``); a low rank regularises the metric on
        small data. ``None``: full rank.
    learning_rate : float or None, default=None
        Adam rate of ``L``; ``None``: the heads' rate. 0 keeps the initial identity.

    Examples
    --------
    >>> Mahalanobis(rank=4).build(8).L.shape
    torch.Size([4, 8])
    """

    name = "mahalanobis"
    _parameter_constraints = {"rank": [positive_int(), None],
                              "learning_rate": [positive_float("left"), None]}

    def __init__(self, *, rank=None, learning_rate=None):
        self.rank = rank
        self.learning_rate = learning_rate

    def module_params(self):
        return {} if self.rank is None else {"rank": int(self.rank)}

    def check_dim(self, embedding_dim):
        if self.rank is not None and self.rank > embedding_dim:
            raise ValueError(f"metric__rank={self.rank!r} is outside the accepted range "
                             f"[1, embedding_dim={embedding_dim}].")


class Diagonal(GroundMetricComponent):
    """Diagonal metric: a learned scale per embedding dimension.

    Parameters
    ----------
    learning_rate : float or None, default=None
        Adam rate of the scales; ``None``: the heads' rate.

    Examples
    --------
    >>> Diagonal().build(3).scale.shape
    torch.Size([3])
    """

    name = "diagonal"
    _parameter_constraints = {"learning_rate": [positive_float("left"), None]}

    def __init__(self, *, learning_rate=None):
        self.learning_rate = learning_rate


class Euclidean(GroundMetricComponent):
    """Squared Euclidean distance (nothing learned in the metric).

    Examples
    --------
    >>> Euclidean().build(3)
    EuclideanMetric(dim=3)
    """

    name = "euclidean"


class Cosine(GroundMetricComponent):
    """Cosine distance ``2 - 2 cos`` (nothing learned in the metric).

    Examples
    --------
    >>> Cosine().build(3)
    CosineMetric(dim=3)
    """

    name = "cosine"
