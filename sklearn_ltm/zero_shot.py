"""Zero-shot audio classification with a fitted audio-text retriever (the ESC-50 protocol).

Each class name is put into a caption template ("This is a sound of dog."), the captions are
embedded by the retriever, and a clip is given the class whose caption embedding is nearest
(squared Euclidean distance in the retriever's space). Nothing is trained.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from sklearn_ltm._validation import Integral, Interval, Real, check_params
from sklearn_ltm.rerank import transductive_log_plan
from sklearn_ltm.retrieval_metrics import _check_embeddings, negative_squared_distances

__all__ = ["ZeroShotAudioClassifier"]

_UNIT_NORM_TOLERANCE = 1e-3


def _check_templates(template) -> list[str]:
    templates = [template] if isinstance(template, str) else template
    if not isinstance(templates, (list, tuple)) or len(templates) == 0:
        raise ValueError(
            f"template={template!r} must be a str or a non-empty list of str, each with one '{{}}' "
            "where the class name goes."
        )
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(
                f"template {t!r} must be a str with exactly one '{{}}' where the class name goes, "
                "e.g. 'This is a sound of {}.'."
            )
    return list(templates)


def _check_labels(y) -> np.ndarray:
    if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
        raise TypeError(f"y must be a sequence of class names; got {type(y).__name__}.")
    labels = np.asarray(y, dtype=object)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"y must be a non-empty 1-D sequence of class names; got shape "
                         f"{labels.shape}.")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(
                f"y[{i}]={label!r} is not a class name; zero-shot classes must be non-empty "
                "strings (the names put into the template), e.g. 'dog'."
            )
    return labels.astype(str)


class ZeroShotAudioClassifier(ClassifierMixin, BaseEstimator):
    """Classify audio by the nearest caption "This is a sound of {label}." in a retriever's space.

    ``fit`` records the class names (no training) and embeds one caption per class and
    template; ``predict`` gives each clip the class of the nearest caption embedding.
    With ``balanced=True`` the clips of one ``predict`` call are shared out between the classes
    by an entropic optimal-transport plan with uniform marginals, which helps on test sets with
    equally many clips per class (ESC-50): predictions then depend on the whole batch.

    Parameters
    ----------
    retriever : fitted retriever
        Provides ``transform(X)`` (audio embeddings) and ``embed_text(captions)`` in a space where
        a smaller squared Euclidean distance is a better match, e.g. a fitted
        :class:`sklearn_ltm.LTMRetriever`. It is used as is, never refitted. ``clone`` (used by
        ``cross_val_score`` and ``GridSearchCV``) returns an *unfitted* copy of a plain
        estimator: wrap a fitted one in :class:`sklearn.frozen.FrozenEstimator` to keep it.
    template : str or list of str, default="This is a sound of {}."
        Caption template(s), each with one ``{}`` for the class name. With several templates the
        caption embeddings of a class are averaged (prompt ensembling) and, when every caption
        embedding has unit norm, the average is re-normalised to unit norm.
    temperature : float, default=0.1
        ``predict_proba`` is ``softmax(-squared_distance / temperature)``; it changes the
        sharpness of the probabilities, not ``predict``. Unused when ``balanced=True``.
    balanced : bool, default=False
        Predict with the Sinkhorn plan between the clips and the classes (uniform marginals,
        cost normalised to ``[0, 1]``); ``predict_proba`` is the plan's rows normalised to sum
        1. Needs a batch with several clips per class to be meaningful.
    epsilon : float, default=0.05
        Entropic regularisation of the balanced plan.
    max_iter : int, default=1000
        Maximum Sinkhorn iterations of the balanced plan.
    underscores_as_spaces : bool, default=True
        Write ``"chirping_birds"`` as ``"chirping birds"`` in the captions (ESC-50 names).
        ``classes_`` keeps the names as given.

    Attributes
    ----------
    classes_ : ndarray of str, shape (n_classes,)
        The sorted distinct class names seen in ``fit``.
    prompts_ : list of list of str
        The captions of each class, one per template.
    class_embeddings_ : ndarray of shape (n_classes, embedding_dim)
        The (template-averaged) caption embedding of each class.

    See Also
    --------
    sklearn_ltm.evaluation.evaluate : retrieval metrics of the same retriever.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Toy(BaseEstimator):  # a fitted retriever: audio rows are their embeddings
    ...     def fit(self, X, y): self.fitted_ = True; return self
    ...     def transform(self, X): return np.asarray(X, dtype=float)
    ...     def embed_text(self, y): return np.array([[1.0, 0.0] if "dog" in c else [0, 1] for c in y])
    >>> X = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> clf = ZeroShotAudioClassifier(Toy().fit(X, None)).fit(X, ["dog", "rain", "dog"])
    >>> clf.classes_.tolist(), clf.prompts_[0]
    (['dog', 'rain'], ['This is a sound of dog.'])
    >>> clf.predict(X).tolist(), clf.score(X, ["dog", "rain", "rain"])
    (['dog', 'rain', 'dog'], 0.666...)
    """

    _parameter_constraints = {
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "balanced": ["boolean"],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "underscores_as_spaces": ["boolean"],
    }

    def __init__(self, retriever, template="This is a sound of {}.", *, temperature=0.1,
                 balanced=False, epsilon=0.05, max_iter=1000, underscores_as_spaces=True):
        self.retriever = retriever
        self.template = template
        self.temperature = temperature
        self.balanced = balanced
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.underscores_as_spaces = underscores_as_spaces

    def _check_params(self) -> list[str]:
        for method in ("transform", "embed_text"):
            if not callable(getattr(self.retriever, method, None)):
                raise TypeError(
                    f"retriever {type(self.retriever).__name__} has no method {method}; it must "
                    "provide transform(X) and embed_text(y) (e.g. a fitted LTMRetriever)."
                )
        templates = _check_templates(self.template)
        check_params(self.get_params(deep=False), self._parameter_constraints,
                     type(self).__name__)
        return templates

    def fit(self, X, y):
        """Record the class names and embed their captions; the retriever is not trained.

        Parameters
        ----------
        X : array-like or sequence of paths of length n_samples, or None
            Audio; only its length is checked (zero-shot: nothing is learned from it).
        y : sequence of str
            Class names, e.g. ESC-50 categories; may repeat (one per clip of ``X``).

        Returns
        -------
        self : ZeroShotAudioClassifier
            The fitted classifier.
        """
        templates = self._check_params()
        labels = _check_labels(y)
        if X is not None:
            if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
                raise TypeError(f"X must be None, an array or a sequence of clips; got "
                                f"{type(X).__name__}.")
            if len(X) != len(labels):
                raise ValueError(f"X has {len(X)} samples but y has {len(labels)} labels; "
                                 "they must be equal.")
        check_is_fitted(self.retriever)
        classes = np.unique(labels)
        names = [c.replace("_", " ") if self.underscores_as_spaces else c for c in classes]
        prompts = [[t.replace("{}", name) for t in templates] for name in names]
        flat = [p for per_class in prompts for p in per_class]
        emb = _check_embeddings(self.retriever.embed_text(flat), "retriever.embed_text")
        if emb.shape[0] != len(flat):
            raise ValueError(f"retriever.embed_text returned {emb.shape[0]} rows for "
                             f"{len(flat)} captions; one row each expected.")
        emb = emb.reshape(len(classes), len(templates), -1)
        class_emb = emb.mean(axis=1)
        norms = np.linalg.norm(emb, axis=2)
        if len(templates) > 1 and np.all(np.abs(norms - 1.0) <= _UNIT_NORM_TOLERANCE):
            class_emb /= np.linalg.norm(class_emb, axis=1, keepdims=True).clip(min=1e-12)
        self.classes_ = classes
        self.prompts_ = prompts
        self.class_embeddings_ = class_emb
        return self

    def _audio_embeddings(self, X) -> np.ndarray:
        check_is_fitted(self, "class_embeddings_")
        self._check_params()
        if isinstance(X, (str, bytes)) or not hasattr(X, "__len__") or len(X) == 0:
            raise ValueError("X must be a non-empty array or sequence of clips.")
        audio = _check_embeddings(self.retriever.transform(X), "retriever.transform")
        if audio.shape[1] != self.class_embeddings_.shape[1]:
            raise ValueError(
                f"retriever.transform gives dimension {audio.shape[1]} but the class embeddings "
                f"have {self.class_embeddings_.shape[1]}; was the retriever refitted after fit?"
            )
        return audio

    def decision_function(self, X) -> np.ndarray:
        """Minus the squared distance between each clip and each class caption embedding.

        Parameters
        ----------
        X : array-like or sequence of paths, length n_samples
            Audio accepted by the retriever's ``transform``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Greater is better; columns follow ``classes_``.
        """
        return self._decision(self._audio_embeddings(X))

    def _decision(self, audio):
        return negative_squared_distances(audio, self.class_embeddings_)

    def _log_scores(self, X) -> np.ndarray:
        audio = self._audio_embeddings(X)
        if self.balanced:
            return transductive_log_plan(audio, self.class_embeddings_, epsilon=self.epsilon,
                                         n_iter=self.max_iter)
        return self._decision(audio) / self.temperature

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: softmax of ``-distance / temperature``, or the balanced plan.

        Parameters
        ----------
        X : array-like or sequence of paths, length n_samples
            Audio accepted by the retriever's ``transform``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        return softmax(self._log_scores(X), axis=1)

    def predict(self, X) -> np.ndarray:
        """The class name of the nearest caption embedding (or of the balanced plan's row).

        Parameters
        ----------
        X : array-like or sequence of paths, length n_samples
            Audio accepted by the retriever's ``transform``.

        Returns
        -------
        ndarray of str, shape (n_samples,)
        """
        scores = self._log_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]
