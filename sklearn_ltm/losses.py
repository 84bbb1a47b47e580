r"""Training losses on a mini-batch cost matrix: m-LTM (full, partial, reference), InfoNCE, triplet.

Every loss takes ``cost`` of shape ``(B, B)``, the ground cost between caption ``i`` and audio
``j`` of the batch (row ``i`` and column ``i`` form a training pair), and ``groups``, an
integer tensor of shape ``(B,)`` of clip ids: equal ids mean the same audio clip (several
captions of one clip in one batch). With ``group_aware=True`` such pairs are positives that
share the clip's mass; with ``group_aware=False`` they count as negatives, as in the reference
code of the paper.

``"mltm-reference"`` (:func:`mltm_reference_loss`) reproduces the objective of the paper's
published code (square-rooted cost, POT's plain Sinkhorn differentiated through its
iterations, target :math:`I/B`; see :mod:`sklearn_ltm.reference`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .reference import reference_plan, root_normalized_cost
from .transport import DIFFERENTIATION_MODES, partial_sinkhorn, sinkhorn

__all__ = [
    "LOSS_NAMES",
    "ContrastiveLoss",
    "MLTMLoss",
    "MLTMReferenceLoss",
    "TripletLoss",
    "ground_truth_plan",
    "info_nce_loss",
    "make_loss",
    "mltm_loss",
    "mltm_reference_loss",
    "triplet_loss",
]


def _check_groups(groups, size=None, device=None):
    if isinstance(groups, torch.Tensor):
        tensor = groups
    else:
        array = np.asarray(groups)
        if array.dtype.kind not in "iu":
            raise TypeError(f"groups must be integers; got dtype {array.dtype}.")
        tensor = torch.as_tensor(array.astype(np.int64))
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"groups must be an integer tensor; got dtype {tensor.dtype}.")
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"groups has shape {tuple(tensor.shape)}; expected (B,) with B >= 1.")
    if size is not None and tensor.shape[0] != size:
        raise ValueError(
            f"groups has {tensor.shape[0]} entries but the cost matrix is {size} x {size}; "
            "give one clip id per pair."
        )
    return tensor if device is None else tensor.to(device)


def _check_cost(cost):
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor; got {type(cost).__name__}.")
    if not cost.is_floating_point():
        raise TypeError(f"cost has dtype {cost.dtype}; a floating-point dtype is required.")
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] == 0:
        raise ValueError(
            f"cost has shape {tuple(cost.shape)}; expected a square (B, B) matrix, B >= 1."
        )
    if not bool(torch.isfinite(cost).all()):
        raise ValueError("cost contains non-finite values; every cost must be finite.")


def _check_real(value, name, low, high=math.inf, low_open=True, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a real number.")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name}={value!r} is not accepted; it must lie in {lo}{low}, {high}{hi}.")
    return value


def _same_clip(groups):
    return groups[:, None] == groups[None, :]


def ground_truth_plan(groups, group_aware=True, *, dtype=None, device=None):
    r"""The target transport plan of a batch: rows and columns each sum to ``1/B``.

    With ``group_aware=True``, caption ``i`` and audio ``j`` of the same clip ``g`` (``n_g``
    pairs of that clip in the batch) get :math:`\hat P_{ij} = 1 / (B\, n_g)`: the captions of
    a clip share that clip's mass instead of counting as negatives. With
    ``group_aware=False`` the plan is :math:`I / B` (the paper's reference behaviour).

    Parameters
    ----------
    groups : int Tensor or array-like of shape (B,)
        Clip id of each pair.
    group_aware : bool, default=True
        Share mass between pairs of the same clip.
    dtype : torch.dtype, optional
        Default: ``torch.get_default_dtype()``.
    device : torch.device, optional
        Default: the device of ``groups``.

    Returns
    -------
    Tensor of shape (B, B)

    Examples
    --------
    >>> import torch
    >>> ground_truth_plan(torch.tensor([0, 1, 0]))
    tensor([[0.1667, 0.0000, 0.1667],
            [0.0000, 0.3333, 0.0000],
            [0.1667, 0.0000, 0.1667]])
    >>> ground_truth_plan(torch.tensor([0, 1, 0]), group_aware=False).diagonal()
    tensor([0.3333, 0.3333, 0.3333])
    """
    groups = _check_groups(groups, device=device)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    size = groups.shape[0]
    if not group_aware:
        return torch.eye(size, dtype=dtype, device=groups.device) / size
    same = _same_clip(groups).to(dtype)
    return same / (same.sum(1, keepdim=True) * size)


def mltm_loss(
    cost,
    groups,
    *,
    epsilon=0.05,
    mass_fraction=1.0,
    normalize_cost=True,
    group_aware=True,
    max_iter=1000,
    tol=1e-6,
    differentiation="implicit",
    sqrt_cost=False,
):
    r"""Mini-batch Learning-to-Match loss: KL from the ground-truth plan to the OT plan.

    With :math:`C` the cost (divided by its maximum when ``normalize_cost``), :math:`P` the
    entropic OT plan between uniform marginals (:func:`~sklearn_ltm.transport.sinkhorn`) or,
    when ``mass_fraction`` :math:`s < 1`, the partial plan moving mass :math:`s`
    (:func:`~sklearn_ltm.transport.partial_sinkhorn`), and :math:`\hat P` the ground-truth plan
    (:func:`ground_truth_plan`):

    .. math:: L = -\sum_{ij} \hat P_{ij} \log (P_{ij} / s),

    i.e. :math:`\mathrm{KL}(\hat P \,\|\, P/s) + H(\hat P)`. The division by the constant
    :math:`s` only shifts the loss by :math:`\log s` (same gradients) so that, for every
    ``mass_fraction``, the minimum is :math:`H(\hat P)` (:math:`\log B` when all clips
    differ), reached when :math:`P = s \hat P`. :math:`\log P` is taken from the log-domain
    solver, so the loss stays finite where :math:`P` underflows.

    Parameters
    ----------
    cost : Tensor of shape (B, B)
        Cost between caption ``i`` and audio ``j``.
    groups : int Tensor of shape (B,)
        Clip id of each pair.
    epsilon : float, default=0.05
        Entropic regularisation (relative to the normalised cost when ``normalize_cost``).
    mass_fraction : float, default=1.0
        Transported mass :math:`s` in (0, 1]; < 1 uses partial OT, so that the worst-matched
        ``1 - s`` of the mass (misaligned pairs) can stay unmatched.
    normalize_cost : bool, default=True
        Divide the cost by its maximum (as in the paper; the gradient flows through the max).
    group_aware : bool, default=True
        See :func:`ground_truth_plan`.
    max_iter, tol, differentiation
        Passed to the solver.
    sqrt_cost : bool, default=False
        Use :math:`\sqrt{C}` (before the normalisation) instead of the squared cost, as the
        reference code does (:func:`sklearn_ltm.reference.root_normalized_cost`). Costs of
        exactly 0 get a zero gradient instead of an infinite one.

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> cost = 1.0 - torch.eye(4)
    >>> loss = mltm_loss(cost, torch.arange(4), epsilon=0.01)
    >>> round(loss.item(), 4), round(math.log(4), 4)
    (1.3863, 1.3863)
    """
    _check_cost(cost)
    groups = _check_groups(groups, cost.shape[0], cost.device)
    epsilon = _check_real(epsilon, "epsilon", 0.0)
    mass_fraction = _check_real(mass_fraction, "mass_fraction", 0.0, 1.0)
    if sqrt_cost:
        cost = torch.sqrt(cost.clamp_min(torch.finfo(cost.dtype).tiny))
    if normalize_cost:
        cost = cost / cost.max().clamp_min(torch.finfo(cost.dtype).tiny)
    # the solvers return the log-plan in the cost's dtype: the target's
    target = ground_truth_plan(groups, group_aware, dtype=cost.dtype, device=cost.device)
    if mass_fraction == 1.0 and differentiation == "implicit":
        return _BalancedPlanCrossEntropy.apply(cost, target, epsilon, max_iter, tol)
    options = dict(max_iter=max_iter, tol=tol, differentiation=differentiation, log_plan=True)
    if mass_fraction < 1.0:
        log_plan = partial_sinkhorn(cost, epsilon, mass_fraction, **options)
    else:
        log_plan = sinkhorn(cost, epsilon, **options)
    return -(target * log_plan).sum() + math.log(mass_fraction)


class _BalancedPlanCrossEntropy(torch.autograd.Function):
    r""":math:`-\sum_{ij} \hat P_{ij} \log P_{ij}` for the balanced plan, with its closed-form gradient.

    With :math:`\log P = (f \oplus g - C)/\varepsilon` and a target :math:`\hat P` whose
    marginals are those of :math:`P` (uniform: :func:`ground_truth_plan`), the loss is
    :math:`(\langle \hat P, C\rangle - \langle a, f\rangle - \langle b, g\rangle)/\varepsilon`,
    and :math:`\langle a, f\rangle + \langle b, g\rangle` is the optimal value of the dual
    plus the constant :math:`\varepsilon`. By the envelope theorem its derivative in
    :math:`C` is :math:`P`, so

    .. math:: \partial L / \partial C = (\hat P - P) / \varepsilon,

    the gradient implicit differentiation gives, without its linear solve (as the softmax
    cross-entropy's gradient is the probabilities minus the target).
    """

    @staticmethod
    def forward(ctx, cost, target, epsilon, max_iter, tol):
        work = cost.detach()
        log_plan = sinkhorn(
            work if work.dtype in (torch.float32, torch.float64) else work.float(),
            epsilon, max_iter=max_iter, tol=tol, log_plan=True,
        )
        target = target.to(log_plan.dtype)
        ctx.save_for_backward(log_plan, target)
        ctx.epsilon, ctx.dtype = epsilon, cost.dtype
        return (-(target * log_plan).sum()).to(cost.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        log_plan, target = ctx.saved_tensors
        grad_cost = (target - log_plan.exp()) * (grad_loss.to(log_plan.dtype) / ctx.epsilon)
        return grad_cost.to(ctx.dtype), None, None, None, None


def mltm_reference_loss(
    cost, groups=None, *, epsilon=0.03, mass_fraction=1.0, max_iter=1000, tol=None
):
    r"""The m-LTM objective of the paper's published code, with POT as its solver.

    With :math:`S` the squared cost of the batch (a ground metric's output; the reference
    uses the diagonal metric, see :func:`sklearn_ltm.reference.reference_cost`),
    :math:`C = \sqrt{S} / \max \sqrt{S}` (:func:`~sklearn_ltm.reference.root_normalized_cost`),
    :math:`P` POT's plain Sinkhorn plan between uniform marginals, differentiated by autograd
    through every iteration (:func:`~sklearn_ltm.reference.reference_plan`; partial OT for
    ``mass_fraction < 1``), and the target :math:`I/B`:

    .. math:: L = -\sum_{ij} \frac{\delta_{ij}}{B} \log P_{ij} = -\frac{1}{B} \sum_i \log P_{ii}.

    Captions of the same clip in one batch count as negatives (the target ignores
    ``groups``), and no :math:`\log s` shift is applied for partial OT, as in the code. Only
    the diagonal of the plan enters, so an off-diagonal entry that underflows to 0 cannot
    turn the loss into NaN (``0 * log 0``), the one place where this differs from a literal
    ``sum(-pi_hat * log(pi))``; where that is finite both are equal.

    Parameters
    ----------
    cost : Tensor of shape (B, B)
        Squared cost between caption ``i`` and audio ``j`` (>= 0).
    groups : int Tensor of shape (B,), optional
        Clip ids; checked for shape, not used by the target.
    epsilon : float, default=0.03
        Entropic regularisation (POT's ``reg``) on the normalised root cost.
    mass_fraction : float, default=1.0
        POT's ``m`` of the entropic partial plan when < 1.
    max_iter : int, default=1000
        POT's ``numItermax``.
    tol : float or None, default=None
        POT's ``stopThr``; ``None``: POT's default (``1e-9`` full, ``1e-100`` partial).

    Returns
    -------
    Tensor
        Scalar loss.

    Examples
    --------
    >>> import math, torch
    >>> cost = 1.0 - torch.eye(4, dtype=torch.float64)
    >>> loss = mltm_reference_loss(cost, epsilon=0.01)
    >>> round(loss.item(), 4), round(math.log(4), 4)
    (1.3863, 1.3863)
    """
    _check_cost(cost)
    if groups is not None:
        _check_groups(groups, cost.shape[0], cost.device)
    plan = reference_plan(root_normalized_cost(cost), epsilon, mass_fraction=mass_fraction,
                          max_iter=max_iter, tol=tol)
    return -torch.log(plan.diagonal()).sum() / cost.shape[0]


def info_nce_loss(cost, groups, *, temperature=0.07, group_aware=True):
    r"""Symmetric InfoNCE (NT-Xent) on similarity :math:`-C`.

    Logits are :math:`-C_{ij} / \tau`. With the cosine metric (:math:`C = 2 - 2\cos`) this is
    CLIP's loss with logits :math:`\cos / (\tau / 2)` (softmax ignores the constant); with an
    L2-normalised Euclidean or Mahalanobis metric the same relation holds approximately.
    The loss is the mean of the caption-to-audio and audio-to-caption cross-entropies, with
    soft targets :math:`B \hat P` (:func:`ground_truth_plan`): with ``group_aware=True`` all
    pairs of the same clip are positives sharing the target mass.

    Parameters
    ----------
    cost : Tensor of shape (B, B)
    groups : int Tensor of shape (B,)
    temperature : float, default=0.07
        :math:`\tau > 0`.
    group_aware : bool, default=True

    Returns
    -------
    Tensor
        Scalar loss (>= 0; ``log B`` for a constant cost and distinct clips).

    Examples
    --------
    >>> import math, torch
    >>> loss = info_nce_loss(torch.zeros(4, 4), torch.arange(4))
    >>> round(loss.item(), 4), round(math.log(4), 4)
    (1.3863, 1.3863)
    """
    _check_cost(cost)
    groups = _check_groups(groups, cost.shape[0], cost.device)
    temperature = _check_real(temperature, "temperature", 0.0)
    logits = -cost / temperature
    target = ground_truth_plan(groups, group_aware, dtype=cost.dtype, device=cost.device)
    target = target * cost.shape[0]  # rows and columns sum to 1
    text_to_audio = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    audio_to_text = -(target * torch.log_softmax(logits, 0)).sum(0).mean()
    return (text_to_audio + audio_to_text) / 2


def triplet_loss(cost, groups, *, margin=0.2, group_aware=True):
    r"""Max-margin triplet loss with the hardest negative in the batch (VSE++), on :math:`-C`.

    For each pair :math:`i`, with similarity :math:`S = -C`:
    :math:`[m - S_{ii} + \max_{j \in N(i)} S_{ij}]_+ + [m - S_{ii} + \max_{j \in N(i)} S_{ji}]_+`,
    averaged over the batch. The negatives :math:`N(i)` exclude the pairs of the same clip when
    ``group_aware`` (otherwise only :math:`i` itself). The margin is in cost units.

    Parameters
    ----------
    cost : Tensor of shape (B, B)
    groups : int Tensor of shape (B,)
    margin : float, default=0.2
        :math:`m \ge 0`.
    group_aware : bool, default=True

    Returns
    -------
    Tensor
        Scalar loss (0 when every positive beats its hardest negatives by the margin).

    Examples
    --------
    >>> import torch
    >>> cost = torch.tensor([[0.0, 1.0], [0.1, 0.0]])
    >>> triplet_loss(cost, torch.arange(2), margin=0.2)
    tensor(0.1000)
    """
    _check_cost(cost)
    groups = _check_groups(groups, cost.shape[0], cost.device)
    margin = _check_real(margin, "margin", 0.0, low_open=False)
    size = cost.shape[0]
    if group_aware:
        positive_mask = _same_clip(groups)
    else:
        positive_mask = torch.eye(size, dtype=torch.bool, device=cost.device)
    similarity = -cost
    negatives = similarity.masked_fill(positive_mask, -math.inf)
    positive = similarity.diagonal()
    hardest_audio = negatives.max(1).values  # for each caption, the closest wrong audio
    hardest_text = negatives.max(0).values  # for each audio, the closest wrong caption
    loss = (margin - positive + hardest_audio).clamp_min(0) + (
        margin - positive + hardest_text
    ).clamp_min(0)
    return loss.mean()


class _BatchLoss(torch.nn.Module):
    """A loss module: ``forward(cost, groups)`` -> scalar."""

    name = "base"
    _function = None

    def __init__(self, **params):
        super().__init__()
        self.params = params

    def forward(self, cost, groups):
        """Scalar loss of the batch.

        Parameters
        ----------
        cost : Tensor of shape (B, B)
            Cost between caption ``i`` and audio ``j``.
        groups : int Tensor of shape (B,)
            Clip id of each pair.

        Returns
        -------
        Tensor
        """
        return type(self)._function(cost, groups, **self.params)

    def extra_repr(self):
        return ", ".join(f"{key}={value!r}" for key, value in self.params.items())


class MLTMLoss(_BatchLoss):
    """Module form of :func:`mltm_loss` (parameters as there).

    Examples
    --------
    >>> import torch
    >>> loss = MLTMLoss(epsilon=0.05, mass_fraction=0.8)
    >>> cost = torch.rand(6, 6, requires_grad=True)
    >>> value = loss(cost, torch.arange(6))
    >>> value.backward()
    >>> bool(torch.isfinite(cost.grad).all())
    True
    """

    name = "mltm"
    _function = staticmethod(mltm_loss)

    def __init__(
        self,
        *,
        epsilon=0.05,
        mass_fraction=1.0,
        normalize_cost=True,
        group_aware=True,
        max_iter=1000,
        tol=1e-6,
        differentiation="implicit",
        sqrt_cost=False,
    ):
        _check_real(epsilon, "epsilon", 0.0)
        _check_real(mass_fraction, "mass_fraction", 0.0, 1.0)
        if differentiation not in DIFFERENTIATION_MODES:
            raise ValueError(
                f"differentiation={differentiation!r} is not accepted; use one of "
                f"{', '.join(map(repr, DIFFERENTIATION_MODES))}."
            )
        super().__init__(
            epsilon=epsilon,
            mass_fraction=mass_fraction,
            normalize_cost=normalize_cost,
            group_aware=group_aware,
            max_iter=max_iter,
            tol=tol,
            differentiation=differentiation,
            sqrt_cost=bool(sqrt_cost),
        )


class MLTMReferenceLoss(_BatchLoss):
    """Module form of :func:`mltm_reference_loss` (parameters as there).

    Examples
    --------
    >>> import torch
    >>> loss = MLTMReferenceLoss(epsilon=0.1)
    >>> cost = torch.rand(6, 6, dtype=torch.float64, requires_grad=True)
    >>> loss(cost, torch.arange(6)).backward()
    >>> bool(torch.isfinite(cost.grad).all())
    True
    """

    name = "mltm-reference"
    _function = staticmethod(mltm_reference_loss)

    def __init__(self, *, epsilon=0.03, mass_fraction=1.0, max_iter=1000, tol=None):
        _check_real(epsilon, "epsilon", 0.0)
        _check_real(mass_fraction, "mass_fraction", 0.0, 1.0)
        if tol is not None:
            _check_real(tol, "tol", 0.0)
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
            raise ValueError(f"max_iter={max_iter!r} is not accepted; it must be an integer >= 1.")
        super().__init__(epsilon=epsilon, mass_fraction=mass_fraction, max_iter=int(max_iter),
                         tol=tol)


class ContrastiveLoss(_BatchLoss):
    """Module form of :func:`info_nce_loss` (parameters as there).

    Examples
    --------
    >>> import torch
    >>> ContrastiveLoss(temperature=0.1)(torch.zeros(3, 3), torch.arange(3)).shape
    torch.Size([])
    """

    name = "contrastive"
    _function = staticmethod(info_nce_loss)

    def __init__(self, *, temperature=0.07, group_aware=True):
        _check_real(temperature, "temperature", 0.0)
        super().__init__(temperature=temperature, group_aware=group_aware)


class TripletLoss(_BatchLoss):
    """Module form of :func:`triplet_loss` (parameters as there).

    Examples
    --------
    >>> import torch
    >>> TripletLoss(margin=0.5)(torch.zeros(3, 3), torch.arange(3))
    tensor(1.)
    """

    name = "triplet"
    _function = staticmethod(triplet_loss)

    def __init__(self, *, margin=0.2, group_aware=True):
        _check_real(margin, "margin", 0.0, low_open=False)
        super().__init__(margin=margin, group_aware=group_aware)


_LOSSES = {
    cls.name: cls for cls in (MLTMLoss, ContrastiveLoss, TripletLoss, MLTMReferenceLoss)
}

#: Names accepted by :func:`make_loss`.
LOSS_NAMES = tuple(_LOSSES)


def make_loss(
    name,
    *,
    epsilon=0.05,
    mass_fraction=1.0,
    normalize_cost=True,
    group_aware=True,
    temperature=0.07,
    margin=0.2,
    max_iter=1000,
    tol=None,
    differentiation="implicit",
    sqrt_cost=False,
):
    """Build a batch loss by name; parameters that do not apply to it are ignored.

    Parameters
    ----------
    name : {"mltm", "contrastive", "triplet", "mltm-reference"}
        m-LTM (:func:`mltm_loss`), symmetric InfoNCE (:func:`info_nce_loss`), hardest-negative
        triplet (:func:`triplet_loss`) or the paper code's m-LTM objective
        (:func:`mltm_reference_loss`).
    epsilon, mass_fraction, max_iter
        m-LTM and m-LTM reference.
    tol : float or None, default=None
        Solver tolerance of m-LTM and m-LTM reference; ``None``: each loss's default
        (``1e-6`` for m-LTM, POT's own for the reference).
    normalize_cost, differentiation, sqrt_cost
        m-LTM only (the reference always roots and normalises, and unrolls POT's iterations).
    group_aware : bool, default=True
        All losses.
    temperature : float, default=0.07
        Contrastive only.
    margin : float, default=0.2
        Triplet only.

    Returns
    -------
    torch.nn.Module
        ``forward(cost, groups)`` returns a scalar loss; ``.name`` is ``name``.

    Examples
    --------
    >>> make_loss("mltm", epsilon=0.1, mass_fraction=0.9)
    MLTMLoss(epsilon=0.1, mass_fraction=0.9, normalize_cost=True, group_aware=True, max_iter=1000, tol=1e-06, differentiation='implicit', sqrt_cost=False)
    >>> make_loss("triplet").name
    'triplet'
    >>> make_loss("mltm-reference", epsilon=0.03)
    MLTMReferenceLoss(epsilon=0.03, mass_fraction=1.0, max_iter=1000, tol=None)
    """
    if name not in _LOSSES:
        raise ValueError(
            f"loss name {name!r} is not accepted; use one of {', '.join(map(repr, LOSS_NAMES))}."
        )
    if name == "mltm":
        return MLTMLoss(
            epsilon=epsilon,
            mass_fraction=mass_fraction,
            normalize_cost=normalize_cost,
            group_aware=group_aware,
            max_iter=max_iter,
            tol=1e-6 if tol is None else tol,
            differentiation=differentiation,
            sqrt_cost=sqrt_cost,
        )
    if name == "mltm-reference":
        return MLTMReferenceLoss(
            epsilon=epsilon, mass_fraction=mass_fraction, max_iter=max_iter, tol=tol
        )
    if name == "contrastive":
        return ContrastiveLoss(temperature=temperature, group_aware=group_aware)
    return TripletLoss(margin=margin, group_aware=group_aware)
