"""sklearn-ltm: audio-text retrieval with mini-batch Learning-to-Match (m-LTM).

The public names are re-exported here; the math lives in :mod:`sklearn_ltm.transport`,
:mod:`sklearn_ltm.metric` and :mod:`sklearn_ltm.losses`, the evaluation in
:mod:`sklearn_ltm.metrics`, the data in :mod:`sklearn_ltm.datasets`.
"""

__version__ = "0.1.0"

from .retriever import LTMRetriever  # noqa: E402

__all__ = ["__version__", "LTMRetriever"]
