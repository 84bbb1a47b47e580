"""The one parameter-validation engine of sklearn-ltm: scikit-learn's constraint machinery.

The estimator (``_parameter_constraints`` checked by ``_fit_context``), the component
objects (:mod:`sklearn_ltm.components`), the callbacks and the public functions all state
their accepted values as scikit-learn constraints (``Interval``, ``StrOptions``, types, ...)
and are checked by :func:`check_params` or the :func:`validate_params` decorator, so every
bad value gets the same kind of message: ``The 'epsilon' parameter of LTMRetriever must be a
float in the range (0.0, inf). Got 0.0 instead.`` The error, ``InvalidParameterError``, is a
``ValueError`` and a ``TypeError``.

scikit-learn keeps this machinery in a private module; it is imported here only, so that a
change there is fixed in one place.
"""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

__all__ = [
    "HasMethods",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Real",
    "StrOptions",
    "_fit_context",
    "check_params",
    "check_value",
    "validate_params",
    "RegisteredName",
    "positive_int",
    "positive_float",
    "fraction_open_closed",
]


def check_params(params: dict, constraints: dict, caller: str) -> None:
    """Check ``params`` against scikit-learn ``constraints``; raise ``InvalidParameterError``.

    Parameters
    ----------
    params : dict
        Parameter name to value (names without a constraint are not checked).
    constraints : dict
        Parameter name to a list of constraints, as in ``_parameter_constraints``.
    caller : str
        Named in the error message.

    Examples
    --------
    >>> check_params({"k": 3}, {"k": [Interval(Integral, 1, None, closed="left")]}, "f")
    >>> check_params({"k": 0}, {"k": [Interval(Integral, 1, None, closed="left")]}, "f")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'k' parameter of f must be an int in the range [1, inf). Got 0 instead.
    """
    validate_parameter_constraints(constraints, params, caller_name=caller)


def check_value(value, name: str, constraints, caller: str):
    """Check one value against a list of constraints (as in :func:`check_params`); return it.

    Examples
    --------
    >>> check_value(3, "n_mels", [positive_int()], "LogMelFrontEnd")
    3
    """
    check_params({name: value}, {name: list(constraints)}, caller)
    return value


class RegisteredName(StrOptions):
    """One of the names of a registry, read when checked (so later registrations count).

    Parameters
    ----------
    registry : sklearn_ltm.components.Registry
    extra : tuple of str
        Names accepted besides the registered ones (``"auto"``).

    Examples
    --------
    >>> from sklearn_ltm.components import LOSSES
    >>> RegisteredName(LOSSES).is_satisfied_by("triplet")
    True
    """

    def __init__(self, registry, extra=()):
        self.registry = registry
        self.extra = tuple(extra)
        super().__init__(set())

    @property
    def options(self):
        return dict.fromkeys((*self.extra, *self.registry.names())).keys()

    @options.setter
    def options(self, value):
        pass  # the registry holds the names


def positive_int(low: int = 1) -> Interval:
    """``Interval(Integral, low, None, closed="left")``."""
    return Interval(Integral, low, None, closed="left")


def positive_float(closed: str = "neither") -> Interval:
    """``Interval(Real, 0, None)``: > 0 (``closed="neither"``) or >= 0 (``"left"``)."""
    return Interval(Real, 0, None, closed=closed)


def fraction_open_closed() -> Interval:
    """``Interval(Real, 0, 1, closed="right")``: a fraction in (0, 1]."""
    return Interval(Real, 0, 1, closed="right")
