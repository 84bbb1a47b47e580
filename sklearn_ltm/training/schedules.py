"""Learning-rate schedules (defined in :mod:`sklearn_ltm.components.schedules`, where their
registry lives), applied per batch by :class:`~sklearn_ltm.training.LRScheduler`."""

from ..components.schedules import ConstantLR, CosineLR, LRSchedule, StepLR

__all__ = ["LRSchedule", "ConstantLR", "CosineLR", "StepLR"]
