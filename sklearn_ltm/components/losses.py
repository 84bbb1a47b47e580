"""Loss components: the batch loss trained on, built from its settings.

A loss component builds a ``torch.nn.Module`` with ``forward(cost, groups) -> scalar``
(:mod:`sklearn_ltm.losses`). The m-LTM losses take the estimator's top-level ``epsilon``
and ``mass_fraction``; the others say so when those are set (``uses_transport``).

Adding a loss is one registration::

    @register_loss("my-loss")
    class MyLoss(LossComponent):
        _parameter_constraints = {"scale": [Interval(Real, 0, None, closed="neither")]}

        def __init__(self, *, scale=1.0):
            self.scale = scale

        def build(self, *, epsilon, mass_fraction):
            return MyTorchLoss(self.scale)   # forward(cost, groups) -> scalar
"""

from __future__ import annotations

from .._validation import StrOptions, positive_float, positive_int
from ..transport import DIFFERENTIATION_MODES
from ._base import Component

__all__ = ["LossComponent", "MLTM", "Contrastive", "Triplet"]


class LossComponent(Component):
    """Base class of the loss components.

    ``uses_transport``: whether the loss solves an OT problem, so that the estimator's
    ``epsilon`` and ``mass_fraction`` apply to it.
    """

    kind = "loss"
    uses_transport = False

    def build(self, *, epsilon: float, mass_fraction: float):
        """The torch loss module, ``forward(cost, groups) -> scalar``."""
        raise NotImplementedError


class MLTM(LossComponent):
    """m-LTM: KL from the ground-truth plan to the (partial) entropic OT plan.

    The entropic regularisation and the transported mass are the estimator's ``epsilon``
    and ``mass_fraction`` (:func:`sklearn_ltm.losses.mltm_loss`).

    Parameters
    ----------
    normalize_cost : bool, default=True
        Divide the batch cost matrix by its maximum before the OT solve (as in the paper).
    group_aware : bool, default=True
        Captions of the same clip share that clip's mass in the ground-truth plan
        (``False``: they count as negatives, as in the reference code).
    max_iter : int, default=1000
        Iteration cap of the batch Sinkhorn solver (a ``ConvergenceWarning`` says when it
        is hit).
    tol : float, default=1e-6
        Marginal-violation tolerance of the batch solver.
    differentiation : {"implicit", "truncated", "unrolled"}, default="implicit"
        How gradients go through the solver.

    Examples
    --------
    >>> MLTM(max_iter=200).build(epsilon=0.1, mass_fraction=0.8)
    MLTMLoss(epsilon=0.1, mass_fraction=0.8, normalize_cost=True, group_aware=True, max_iter=200, tol=1e-06, differentiation='implicit')
    """

    uses_transport = True
    _parameter_constraints = {
        "normalize_cost": ["boolean"],
        "group_aware": ["boolean"],
        "max_iter": [positive_int()],
        "tol": [positive_float()],
        "differentiation": [StrOptions(set(DIFFERENTIATION_MODES))],
    }

    def __init__(self, *, normalize_cost=True, group_aware=True, max_iter=1000, tol=1e-6,
                 differentiation="implicit"):
        self.normalize_cost = normalize_cost
        self.group_aware = group_aware
        self.max_iter = max_iter
        self.tol = tol
        self.differentiation = differentiation

    def build(self, *, epsilon, mass_fraction):
        from ..losses import MLTMLoss

        return MLTMLoss(epsilon=epsilon, mass_fraction=mass_fraction,
                        normalize_cost=self.normalize_cost, group_aware=self.group_aware,
                        max_iter=self.max_iter, tol=self.tol,
                        differentiation=self.differentiation)


class Contrastive(LossComponent):
    """Symmetric InfoNCE on the negative cost (:func:`sklearn_ltm.losses.info_nce_loss`).

    Parameters
    ----------
    temperature : float, default=0.07
    group_aware : bool, default=True

    Examples
    --------
    >>> Contrastive(temperature=0.1).build(epsilon=0.05, mass_fraction=1.0)
    ContrastiveLoss(temperature=0.1, group_aware=True)
    """

    _parameter_constraints = {"temperature": [positive_float()], "group_aware": ["boolean"]}

    def __init__(self, *, temperature=0.07, group_aware=True):
        self.temperature = temperature
        self.group_aware = group_aware

    def build(self, *, epsilon, mass_fraction):
        from ..losses import ContrastiveLoss

        return ContrastiveLoss(temperature=self.temperature, group_aware=self.group_aware)


class Triplet(LossComponent):
    """Max-margin triplet loss with hardest negatives (:func:`sklearn_ltm.losses.triplet_loss`).

    Parameters
    ----------
    margin : float, default=0.2
        In cost units, >= 0.
    group_aware : bool, default=True

    Examples
    --------
    >>> Triplet(margin=0.5).build(epsilon=0.05, mass_fraction=1.0)
    TripletLoss(margin=0.5, group_aware=True)
    """

    _parameter_constraints = {"margin": [positive_float("left")], "group_aware": ["boolean"]}

    def __init__(self, *, margin=0.2, group_aware=True):
        self.margin = margin
        self.group_aware = group_aware

    def build(self, *, epsilon, mass_fraction):
        from ..losses import TripletLoss

        return TripletLoss(margin=self.margin, group_aware=self.group_aware)
