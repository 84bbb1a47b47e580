"""sklearn-ltm: audio-text retrieval with mini-batch Learning-to-Match (m-LTM).

The estimator :class:`LTMRetriever` trains and serves m-LTM models; the math lives in
:mod:`sklearn_ltm.transport` (entropic and partial optimal transport),
:mod:`sklearn_ltm.ground_metrics` (ground metrics) and :mod:`sklearn_ltm.losses`; retrieval
evaluation in :mod:`sklearn_ltm.evaluation` and :mod:`sklearn_ltm.retrieval_metrics`; data in
:mod:`sklearn_ltm.datasets`; audio and text models in :mod:`sklearn_ltm.encoders`; search
at scale in :mod:`sklearn_ltm.search`. The estimator is built from the components of
:mod:`sklearn_ltm.components` (one registry per kind) and trained by the
:class:`~sklearn_ltm.training.Trainer` and its callbacks (:mod:`sklearn_ltm.training`).

The names below are imported on first use (``from sklearn_ltm import LTMRetriever`` works as
usual), so ``import sklearn_ltm`` and the ``sklearn-ltm`` command start quickly.
"""

import importlib

__version__ = "0.1.0"

#: Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    "LTMRetriever": "retriever",
    "ZeroShotAudioClassifier": "zero_shot",
    "evaluate": "evaluation",
    "text_to_audio_score": "evaluation",
    "make_retrieval_scorer": "evaluation",
    "make_multi_retrieval_scorer": "evaluation",
    "get_retrieval_scorers": "evaluation",
    "RETRIEVAL_SCORERS": "evaluation",
    "modality_gap": "retrieval_metrics",
    "sinkhorn": "transport",
    "partial_sinkhorn": "transport",
    "LogMelSegmentFeatures": "features",
    "PretrainedAudioFeatures": "features",
    "PretrainedTextFeatures": "features",
    "SearchIndex": "search",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sklearn_ltm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
