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

__all__ = ["LossComponent", "MLTM", "MLTMReference", "Contrastive", "Triplet"]


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
    sqrt_cost : bool, default=True
        Transport on the square root of the squared ground cost (then divided by its
        maximum when ``normalize_cost``), as the paper's code does; ``False``: on the squared
        cost, as the paper's text writes it. The default comes from the quality study
        (``benchmarks/results/quality.md``, :doc:`/user_guide/quality`).

    Examples
    --------
    >>> MLTM(max_iter=200).build(epsilon=0.1, mass_fraction=0.8)
    MLTMLoss(epsilon=0.1, mass_fraction=0.8, normalize_cost=True, group_aware=True, max_iter=200, tol=1e-06, differentiation='implicit', sqrt_cost=True)
    """

    uses_transport = True
    _parameter_constraints = {
        "normalize_cost": ["boolean"],
        "group_aware": ["boolean"],
        "max_iter": [positive_int()],
        "tol": [positive_float()],
        "differentiation": [StrOptions(set(DIFFERENTIATION_MODES))],
        "sqrt_cost": ["boolean"],
    }

    def __init__(self, *, normalize_cost=True, group_aware=True, max_iter=1000, tol=1e-6,
                 differentiation="implicit", sqrt_cost=True):
        self.normalize_cost = normalize_cost
        self.group_aware = group_aware
        self.max_iter = max_iter
        self.tol = tol
        self.differentiation = differentiation
        self.sqrt_cost = sqrt_cost

    def build(self, *, epsilon, mass_fraction):
        from ..losses import MLTMLoss

        return MLTMLoss(epsilon=epsilon, mass_fraction=mass_fraction,
                        normalize_cost=self.normalize_cost, group_aware=self.group_aware,
                        max_iter=self.max_iter, tol=self.tol,
                        differentiation=self.differentiation, sqrt_cost=self.sqrt_cost)


class MLTMReference(LossComponent):
    """The m-LTM objective of the paper's published code (:func:`sklearn_ltm.losses.mltm_reference_loss`).

    The batch cost is square-rooted and divided by its maximum, the plan is POT's plain
    Sinkhorn between uniform marginals (entropic partial OT when ``mass_fraction < 1``),
    differentiated by autograd through every iteration, and the target is :math:`I/B`:
    captions of one clip in a batch count as negatives. The estimator's ``epsilon`` and
    ``mass_fraction`` apply. There is no ``normalize_cost``, ``group_aware``, ``sqrt_cost``
    or ``differentiation`` here: the reference fixes all four (``loss__group_aware=...``
    is refused by ``set_params`` as an unknown parameter). The code's full settings are
    :data:`sklearn_ltm.reference.REFERENCE_TRAINING`.

    Parameters
    ----------
    max_iter : int, default=1000
        POT's ``numItermax`` (a ``ConvergenceWarning`` says when it is reached).
    tol : float or None, default=None
        POT's ``stopThr``; ``None``: POT's default, ``1e-9`` for full and ``1e-100`` for
        partial OT, as the reference code calls them.

    Examples
    --------
    >>> MLTMReference().build(epsilon=0.03, mass_fraction=1.0)
    MLTMReferenceLoss(epsilon=0.03, mass_fraction=1.0, max_iter=1000, tol=None)
    """

    uses_transport = True
    _parameter_constraints = {"max_iter": [positive_int()], "tol": [positive_float(), None]}

    def __init__(self, *, max_iter=1000, tol=None):
        self.max_iter = max_iter
        self.tol = tol

    def build(self, *, epsilon, mass_fraction):
        from ..losses import MLTMReferenceLoss

        return MLTMReferenceLoss(epsilon=epsilon, mass_fraction=mass_fraction,
                                 max_iter=self.max_iter, tol=self.tol)


class Contrastive(LossComponent):
    """Symmetric InfoNCE on the negative cost (:func:`sklearn_ltm.losses.info_nce_loss`).

    Parameters
    ----------
    temperature : float, default=0.07
        Softmax temperature of the InfoNCE logits (minus the cost), > 0; smaller is sharper.
    group_aware : bool, default=True
        Pairs of the same clip in a batch count as positives (``False``: as negatives).

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
        Pairs of the same clip in a batch count as positives (``False``: as negatives).

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
