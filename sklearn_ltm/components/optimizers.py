"""Optimizer components: how the parameter groups are updated."""

from __future__ import annotations

from numbers import Integral

import torch

from .._validation import positive_float
from ._base import Component

__all__ = ["OptimizerComponent", "Adam", "AdamW"]


class OptimizerComponent(Component):
    """Base class of the optimizer components.

    :meth:`build` takes the parameter groups (each with its ``lr`` and ``name``: ``"head"``,
    ``"metric"``, ``"audio_encoder"``, ``"text_encoder"``); ``gradient_clip`` is the
    maximum gradient norm applied before each step (``None``: no clipping) and
    ``micro_batch_size`` how many rows the step embeds at once (``None``: the whole batch in
    one pass; see :class:`~sklearn_ltm.training.LargeBatchStep`). Both are step settings, so
    they live here rather than as top-level estimator parameters.
    """

    kind = "optimizer"
    gradient_clip = None
    micro_batch_size = None

    def build(self, param_groups):
        """The ``torch.optim.Optimizer`` over ``param_groups``."""
        raise NotImplementedError


class Adam(OptimizerComponent):
    """Adam (Kingma and Ba, 2015).

    Parameters
    ----------
    weight_decay : float, default=0.0
        L2 penalty added to the gradients.
    gradient_clip : float or None, default=2.0
        Maximum gradient norm (``None``: no clipping).
    micro_batch_size : int or None, default=None
        Exact large batches on one device: each step embeds the batch this many clips and
        captions at a time without a graph, computes the loss and the OT plan on the whole
        batch, then re-embeds each micro-batch with a graph to back-propagate its slice of
        the embedding gradient (:mod:`sklearn_ltm.gradient_cache`). The gradients are those
        of one pass; peak memory is one micro-batch of encoder activations plus the
        ``B x B`` plan. ``None``: one pass. Must lie in ``[1, batch_size]``.

    Examples
    --------
    >>> import torch
    >>> opt = Adam(weight_decay=1e-4).build([{"params": [torch.zeros(2, requires_grad=True)],
    ...                                       "lr": 0.1, "name": "head"}])
    >>> type(opt).__name__, opt.param_groups[0]["weight_decay"]
    ('Adam', 0.0001)
    """

    _parameter_constraints = {"weight_decay": [positive_float("left")],
                              "gradient_clip": [positive_float(), None],
                              "micro_batch_size": [Integral, None]}

    def __init__(self, *, weight_decay=0.0, gradient_clip=2.0, micro_batch_size=None):
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.micro_batch_size = micro_batch_size

    def build(self, param_groups):
        return torch.optim.Adam(param_groups, weight_decay=self.weight_decay)


class AdamW(OptimizerComponent):
    """AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019).

    Parameters
    ----------
    weight_decay : float, default=0.01
    gradient_clip : float or None, default=2.0
    micro_batch_size : int or None, default=None
        See :class:`Adam`.

    Examples
    --------
    >>> AdamW().weight_decay
    0.01
    """

    _parameter_constraints = Adam._parameter_constraints

    def __init__(self, *, weight_decay=0.01, gradient_clip=2.0, micro_batch_size=None):
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.micro_batch_size = micro_batch_size

    def build(self, param_groups):
        return torch.optim.AdamW(param_groups, weight_decay=self.weight_decay)
