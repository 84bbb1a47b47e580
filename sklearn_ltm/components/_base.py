"""Components and their registries: the small parameter objects the estimator is built from.

A component is a scikit-learn style parameter holder (``get_params`` / ``set_params``,
``clone``-able, shown by ``repr``) that knows how to build one piece of the model: an audio
or text encoder, a ground metric, a loss, an optimizer or a learning-rate schedule. The
estimator reaches its parameters as ``audio_encoder__weights``, ``loss__temperature``...

A registry maps names to component factories, one registry per kind, so a string such as
``loss="contrastive"`` resolves to ``Contrastive()``, and a user's component registered
once works by name everywhere (estimator, saved models, command line).
"""

from __future__ import annotations

from sklearn.base import BaseEstimator

from .._validation import check_params

__all__ = ["Component", "Registry"]


class Component(BaseEstimator):
    """Base class of the components: parameters only, checked by :meth:`validate`.

    Subclasses list their parameters in ``__init__`` (stored unchanged, as in
    scikit-learn) and their accepted values in ``_parameter_constraints``.

    Examples
    --------
    >>> from sklearn_ltm.components import Contrastive
    >>> loss = Contrastive(temperature=0.1)
    >>> loss.get_params()
    {'group_aware': True, 'temperature': 0.1}
    >>> loss.set_params(temperature=0.2)
    Contrastive(temperature=0.2)
    """

    #: Registry kind ("audio_encoder", "text_encoder", "metric", "loss", "optimizer",
    #: "lr_schedule").
    kind = "component"
    _parameter_constraints: dict = {}

    @classmethod
    def _get_param_names(cls):
        """Parameter names of every ``__init__`` in the class hierarchy, so a subclass can
        take its own parameters and pass the others on with ``**kwargs``."""
        import inspect

        names = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    names.add(p.name)
            if not any(p.kind == p.VAR_KEYWORD
                       for p in inspect.signature(init).parameters.values()):
                break  # this __init__ does not pass parameters further up
        return sorted(names)

    def validate(self):
        """Check every parameter; return ``self``.

        Raises
        ------
        InvalidParameterError
            A ``ValueError`` naming the bad value and what is accepted.
        """
        check_params(self.get_params(deep=False), self._parameter_constraints,
                     type(self).__name__)
        return self

    def registered_name(self) -> str | None:
        """The name this component's kind registry knows it by (``None``: not registered)."""
        from . import registry_of

        return registry_of(self.kind).name_of(self)


class Registry:
    """Names of one kind of component, each mapped to a factory of default instances.

    Parameters
    ----------
    kind : str
        What the registry holds (used in error messages), e.g. ``"loss"``.
    base : type
        Registered factories must return instances of it.

    Examples
    --------
    >>> from sklearn_ltm.components import LOSSES, Contrastive
    >>> LOSSES.create("contrastive")
    Contrastive()
    >>> "contrastive" in LOSSES
    True
    >>> LOSSES.create("hinge")
    Traceback (most recent call last):
    ...
    ValueError: loss='hinge' is not a registered loss; use one of 'mltm', 'contrastive', 'triplet' (or register it with sklearn_ltm.components.register_loss).
    """

    def __init__(self, kind: str, base: type):
        self.kind = kind
        self.base = base
        self._factories: dict = {}

    def register(self, name: str, factory=None, *, overwrite: bool = False):
        """Register ``factory`` (a component class or a callable returning a component).

        Usable as a decorator: ``@LOSSES.register("my-loss")`` above the class.

        Parameters
        ----------
        name : str
        factory : callable or None
            Called without arguments to make the default instance for ``name``.
        overwrite : bool, default=False
            Replace an existing registration instead of raising.

        Returns
        -------
        factory (so that it works as a decorator)
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty str; got {name!r}.")

        def add(factory):
            if not callable(factory):
                raise TypeError(f"the factory of {self.kind} {name!r} must be callable; got "
                                f"{factory!r}.")
            if name in self._factories and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass "
                                 "overwrite=True to replace it.")
            self._factories[name] = factory
            return factory

        return add if factory is None else add(factory)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when absent)."""
        self._factories.pop(name, None)

    def names(self) -> tuple:
        """Registered names, in registration order."""
        return tuple(self._factories)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._factories

    def create(self, name: str):
        """A new default instance of the component registered as ``name``."""
        if name not in self:
            raise ValueError(
                f"{self.kind}={name!r} is not a registered {self.kind}; use one of "
                f"{', '.join(map(repr, self.names()))} (or register it with "
                f"sklearn_ltm.components.register_{self.kind})."
            )
        component = self._factories[name]()
        if not isinstance(component, self.base):
            raise TypeError(f"the factory of {self.kind} {name!r} returned "
                            f"{type(component).__name__}, not a {self.base.__name__}.")
        component._registered_name = name
        return component

    def name_of(self, component) -> str | None:
        """The registered name whose default instance has the class of ``component``."""
        own = type(component).__dict__.get("registered_name")
        if own is not None:
            return component.registered_name()
        name = getattr(component, "_registered_name", None)
        if name in self:
            return name
        for key, factory in self._factories.items():
            if factory is type(component):
                return key
        return None
