"""sklearn-ltm: audio-text retrieval with mini-batch Learning-to-Match (m-LTM).

The estimator :class:`LTMRetriever` trains and serves m-LTM models; the math lives in
:mod:`sklearn_ltm.transport` (entropic and partial optimal transport),
:mod:`sklearn_ltm.ground_metrics` (ground metrics) and :mod:`sklearn_ltm.losses`; retrieval
evaluation in :mod:`sklearn_ltm.evaluation` and :mod:`sklearn_ltm.retrieval_metrics`; data in
:mod:`sklearn_ltm.datasets`; audio and text models in :mod:`sklearn_ltm.encoders`. The
estimator is built from the components of :mod:`sklearn_ltm.components` (one registry per
kind) and trained by the :class:`~sklearn_ltm.training.Trainer` and its callbacks
(:mod:`sklearn_ltm.training`).
"""

__version__ = "0.1.0"

from .evaluation import (  # noqa: E402
    RETRIEVAL_SCORERS,
    evaluate,
    get_retrieval_scorers,
    make_multi_retrieval_scorer,
    make_retrieval_scorer,
    text_to_audio_score,
)
from .features import (  # noqa: E402
    LogMelSegmentFeatures,
    PretrainedAudioFeatures,
    PretrainedTextFeatures,
)
from .retrieval_metrics import modality_gap  # noqa: E402
from .retriever import LTMRetriever  # noqa: E402
from .transport import partial_sinkhorn, sinkhorn  # noqa: E402
from .zero_shot import ZeroShotAudioClassifier  # noqa: E402

__all__ = [
    "__version__",
    "LTMRetriever",
    "ZeroShotAudioClassifier",
    "evaluate",
    "text_to_audio_score",
    "make_retrieval_scorer",
    "make_multi_retrieval_scorer",
    "get_retrieval_scorers",
    "RETRIEVAL_SCORERS",
    "modality_gap",
    "sinkhorn",
    "partial_sinkhorn",
    "LogMelSegmentFeatures",
    "PretrainedAudioFeatures",
    "PretrainedTextFeatures",
]
