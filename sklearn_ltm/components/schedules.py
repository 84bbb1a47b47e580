r"""Learning-rate schedules: a factor of each parameter group's base rate, per batch.

A schedule is a component (``get_params`` / ``set_params``) whose :meth:`factor` gives the
multiplier of every group's base learning rate (heads, metric, audio encoder, text
encoder) at optimizer step ``step`` (0-based) of ``total_steps``. The
:class:`~sklearn_ltm.training.LRScheduler` callback applies it before every batch, so the
schedule's state is the step count, which checkpoints keep.
"""

from __future__ import annotations

import math

from .._validation import Interval, Real, positive_int
from ._base import Component

__all__ = ["LRSchedule", "ConstantLR", "CosineLR", "StepLR"]


class LRSchedule(Component):
    """Base class of the schedules."""

    kind = "lr_schedule"

    def factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """Multiplier of the base learning rates at optimizer step ``step`` (0-based)."""
        raise NotImplementedError


class ConstantLR(LRSchedule):
    """The base learning rates throughout.

    Examples
    --------
    >>> ConstantLR().factor(5, 10, 2)
    1.0
    """

    def factor(self, step, total_steps, steps_per_epoch):
        return 1.0


class CosineLR(LRSchedule):
    r"""Linear warm-up from 0, then cosine decay to ``min_factor`` at the last step.

    For step :math:`s` of :math:`S`, with :math:`W` warm-up steps:
    :math:`(s + 1) / W` while :math:`s < W`, then
    :math:`m + (1 - m) (1 + \cos(\pi (s - W) / (S - W))) / 2`.

    Parameters
    ----------
    warmup_fraction : float, default=0.05
        Fraction of all optimizer steps spent warming up, in [0, 1).
    min_factor : float, default=0.0
        Final multiplier, in [0, 1].

    Examples
    --------
    >>> s = CosineLR(warmup_fraction=0.2)
    >>> [round(s.factor(i, 10, 5), 3) for i in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """

    _parameter_constraints = {"warmup_fraction": [Interval(Real, 0, 1, closed="left")],
                              "min_factor": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, *, warmup_fraction=0.05, min_factor=0.0):
        self.warmup_fraction = warmup_fraction
        self.min_factor = min_factor

    def factor(self, step, total_steps, steps_per_epoch):
        warmup = int(round(self.warmup_fraction * total_steps))
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepLR(LRSchedule):
    """Multiply the rates by ``gamma`` every ``step_epochs`` epochs (applied per batch).

    Parameters
    ----------
    step_epochs : int, default=10
    gamma : float, default=0.1
        In (0, 1].

    Examples
    --------
    >>> StepLR(step_epochs=2, gamma=0.5).factor(9, 20, 2)  # step 9 is in epoch 4
    0.25
    """

    _parameter_constraints = {"step_epochs": [positive_int()],
                              "gamma": [Interval(Real, 0, 1, closed="right")]}

    def __init__(self, *, step_epochs=10, gamma=0.1):
        self.step_epochs = step_epochs
        self.gamma = gamma

    def factor(self, step, total_steps, steps_per_epoch):
        epoch = step // max(1, steps_per_epoch)
        return float(self.gamma ** (epoch // self.step_epochs))


