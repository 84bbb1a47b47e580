"""Training: the :class:`Trainer` loop, its callbacks and the learning-rate schedules.

``Trainer.fit`` -> ``run_epoch`` -> ``train_step`` -> ``step(trainer, batch)`` (the loss
and its gradients) -> ``loss_from_embeddings``. Validation scoring, early stopping,
checkpoints, the LR schedule, the frozen-encoder cache, the NaN guard and the progress bar
are callbacks; :class:`~sklearn_ltm.LTMRetriever` assembles them from its parameters and
adds the user's (``callbacks=[...]``).
"""

from .callbacks import (
    MONITORS,
    Callback,
    Checkpoint,
    EarlyStopping,
    FrozenEncoderCache,
    LRScheduler,
    NaNGuard,
    ProgressBar,
    ValidationScoring,
    check_writable,
)
from .schedules import ConstantLR, CosineLR, LRSchedule, StepLR
from .steps import LargeBatchStep
from .trainer import Batch, Trainer, TrainingData, backprop_step, param_groups

__all__ = [
    "MONITORS",
    "Batch",
    "Callback",
    "Checkpoint",
    "ConstantLR",
    "CosineLR",
    "EarlyStopping",
    "FrozenEncoderCache",
    "LRSchedule",
    "LargeBatchStep",
    "LRScheduler",
    "NaNGuard",
    "ProgressBar",
    "StepLR",
    "Trainer",
    "TrainingData",
    "ValidationScoring",
    "backprop_step",
    "check_writable",
    "param_groups",
]
