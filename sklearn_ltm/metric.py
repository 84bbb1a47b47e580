"""Former name of :mod:`sklearn_ltm.ground_metrics`, kept so that models pickled by
sklearn-ltm 0.1 (which reference ``sklearn_ltm.metric.MahalanobisMetric`` etc.) unpickle."""

from .ground_metrics import *  # noqa: F401,F403
from .ground_metrics import __all__  # noqa: F401
