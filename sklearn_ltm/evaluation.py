"""Evaluate a fitted audio-text retriever: every metric in both directions, and ready scorers.

The retriever is any fitted object (checked with :func:`sklearn.utils.validation.check_is_fitted`)
that has

- ``transform(X) -> ndarray (n_clips, d)``: audio embeddings, and
- ``embed_text(y) -> ndarray (n_captions, d)``: caption embeddings,

in a space where a smaller squared Euclidean distance is a better match, as
:class:`sklearn_ltm.LTMRetriever` provides. ``X`` holds one row per (clip, caption) pair: the
several captions of a clip are several rows with the same audio (equal feature rows or equal
paths, see :func:`sklearn_ltm._utils.infer_groups`), or share an id in ``groups``.

A :class:`sklearn.pipeline.Pipeline` whose last step is such a retriever works too: the audio
``X`` goes through the earlier steps (e.g. a ``StandardScaler``) and then the last step's
``transform``; the captions go to the last step's ``embed_text`` only.

Text-to-audio (``t2a``) queries are the distinct captions and the gallery is the distinct
clips. Audio-to-text (``a2t``) queries are the distinct clips and the gallery is the distinct
captions (recall counts the best relevant caption, mAP@k divides by
``min(k, n_relevant_captions)``). Captions that are equal after
:func:`sklearn_ltm.datasets.normalize_caption` (the loaders' normalisation: case and
punctuation ignored) are **one** item, relevant to every clip they describe: with class
captions ("a dog barking" for every dog clip) the identical captions would otherwise tie and
pessimistic tie-breaking would make audio-to-text R@1 exactly 0. A
:class:`RepeatedCaptionsWarning` says when captions were merged.

Relevance (``relevance=``):

- ``"clip"`` (default): a caption is relevant to the clips it was paired with;
- ``"label"``: a caption is relevant to every clip of the same class, given by ``labels``
  (one class label per pair, e.g. ``load_esc50(...).labels``).
"""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from sklearn_ltm._checks import warn_if_trivial_gallery
from sklearn_ltm._inputs import as_values
from sklearn_ltm._progress import map_in_chunks
from sklearn_ltm._utils import as_str_list, infer_groups
from sklearn_ltm.rerank import _check_positive_int, _check_sinkhorn_options, transductive_log_plan
from sklearn_ltm.retrieval_metrics import (
    _check_embeddings,
    _check_k,
    _check_ks,
    mean_average_precision_at_k,
    mean_rank,
    median_rank,
    modality_gap,
    negative_squared_distances,
    recall_at_k,
    retrieval_metrics,
)

__all__ = [
    "evaluate",
    "text_to_audio_score",
    "make_retrieval_scorer",
    "make_multi_retrieval_scorer",
    "get_retrieval_scorers",
    "RETRIEVAL_SCORERS",
    "RepeatedCaptionsWarning",
]

_DIRECTIONS = ("t2a", "a2t")
_RELEVANCES = ("clip", "label")
_PROGRESS_CHUNK = 256


class RepeatedCaptionsWarning(UserWarning):
    """Equal captions were merged into one gallery item relevant to all their clips.

    Raised (as a warning) by :func:`evaluate`, :func:`text_to_audio_score` and the retrieval
    scorers. Filter it with ``warnings.filterwarnings("ignore", category=...)`` once the
    class-caption set-up is understood.
    """


def _final_step(estimator):
    """The retriever doing the embedding: ``estimator`` itself or a Pipeline's last step."""
    if isinstance(estimator, Pipeline):
        final = estimator.steps[-1][1] if estimator.steps else None
        if final is None or isinstance(final, str):
            raise TypeError(
                f"the Pipeline's last step is {final!r}; it must be a retriever with "
                "transform(X) and embed_text(y) (e.g. a fitted LTMRetriever)."
            )
        return final
    return estimator


class _Embedder:
    """Audio through every step of a Pipeline (or the retriever), text through the last only."""

    def __init__(self, estimator):
        self.final = _final_step(estimator)
        self.before = estimator[:-1] if isinstance(estimator, Pipeline) and \
            len(estimator.steps) > 1 else None

    def audio(self, X, **kwargs):
        if self.before is not None:
            X = self.before.transform(X)
        return self.final.transform(X, **kwargs)

    def text(self, y, **kwargs):
        return self.final.embed_text(y, **kwargs)


def _check_retriever(retriever, batch_size=None) -> _Embedder:
    final = _final_step(retriever)
    where = (f"the last step {type(final).__name__} of the Pipeline"
             if final is not retriever else f"retriever {type(retriever).__name__}")
    missing = [m for m in ("transform", "embed_text") if not callable(getattr(final, m, None))]
    if missing:
        raise TypeError(
            f"{where} has no method {' or '.join(missing)}; it must provide transform(X) and "
            "embed_text(y) (e.g. a fitted LTMRetriever, alone or as a Pipeline's last step)."
        )
    if batch_size is not None:
        for m in ("transform", "embed_text"):
            if not _accepts_batch_size(getattr(final, m)):
                raise TypeError(
                    f"batch_size={batch_size!r} was given but {type(final).__name__}.{m} "
                    "takes no batch_size argument; leave batch_size=None (set the batch size "
                    "on the retriever instead)."
                )
    check_is_fitted(retriever)
    check_is_fitted(final)
    return _Embedder(retriever)


def _check_pairs(X, y, groups, relevance="clip", labels=None):
    """Validate the pairs; return (distinct clips, distinct captions, the pairs' clip and
    caption indices, relevance matrix (n_distinct_captions, n_clips), merged-caption count)."""
    X, y = as_values(X, "X"), as_values(y, "y")  # pandas as values, generators read once
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise TypeError(f"X must be an array or a sequence of clips; got {type(X).__name__}.")
    if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
        raise TypeError(f"y must be a sequence of captions; got {type(y).__name__}.")
    n = len(X)
    if n == 0:
        raise ValueError("X is empty; evaluation needs at least one (clip, caption) pair.")
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)} captions; they must be equal.")
    if isinstance(y, np.ndarray) and y.ndim == 2:
        captions = y  # precomputed text features; the retriever validates them
    else:
        captions = as_str_list(y, "y")
    if groups is None:
        groups = infer_groups(X)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(
                f"groups has shape {groups.shape}; it must be 1-D with one id per row of X ({n})."
            )
    labels = _check_relevance(relevance, labels, n)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    clip_of_pair = inverse.reshape(-1)
    warn_if_trivial_gallery(len(first))
    if isinstance(X, np.ndarray):
        clips = X[first]
    else:
        clips = [X[int(i)] for i in first]
    caption_of_pair = _caption_groups(captions)
    first_caption = np.unique(caption_of_pair, return_index=True)[1]
    if isinstance(captions, np.ndarray):
        distinct = captions[first_caption]
    else:
        distinct = [captions[int(i)] for i in first_caption]
    n_captions, n_clips = len(first_caption), len(first)
    if relevance == "clip":
        relevant = np.zeros((n_captions, n_clips), dtype=bool)
        relevant[caption_of_pair, clip_of_pair] = True
    else:
        codes = np.unique(labels, return_inverse=True)[1].reshape(-1)
        caption_class = np.zeros((n_captions, codes.max() + 1), dtype=np.int64)
        clip_class = np.zeros((n_clips, codes.max() + 1), dtype=np.int64)
        caption_class[caption_of_pair, codes] = 1
        clip_class[clip_of_pair, codes] = 1
        relevant = (caption_class @ clip_class.T) > 0
    return clips, distinct, clip_of_pair, caption_of_pair, relevant, n - n_captions


def _caption_groups(captions) -> np.ndarray:
    """Index of each caption's distinct item: equal after ``normalize_caption`` (strings) or
    equal rows (precomputed text features), numbered in order of first appearance."""
    if isinstance(captions, np.ndarray):
        return infer_groups(captions)
    from sklearn_ltm.datasets import normalize_caption

    return infer_groups([normalize_caption(c) for c in captions])


def _check_relevance(relevance, labels, n):
    if relevance not in _RELEVANCES:
        raise ValueError(f"relevance={relevance!r} is not known; accepted: 'clip' (the pairs "
                         "given) or 'label' (every clip of the caption's class, with labels=).")
    if relevance == "clip":
        if labels is not None:
            raise ValueError("labels were given but relevance='clip' ignores them; pass "
                             "relevance='label' to count every clip of a caption's class.")
        return None
    if labels is None:
        raise ValueError("relevance='label' needs labels=: one class label per pair of X, y.")
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise TypeError(f"labels must be a sequence of class labels; got "
                        f"{type(labels).__name__}.")
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels has shape {labels.shape}; it must be 1-D with one label per "
                         f"pair ({n}).")
    if labels.dtype == object:
        labels = labels.astype(str)
    return labels


def _accepts_batch_size(method) -> bool:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "batch_size" or p.kind is p.VAR_KEYWORD for p in params)


def _embed(embedder, clips, captions, batch_size, verbose=0):
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    chunk = batch_size or _PROGRESS_CHUNK
    # float32 stays float32 for the transductive plan; the metrics work in float64
    audio = map_in_chunks(lambda c: embedder.audio(c, **kwargs), clips, chunk_size=chunk,
                          verbose=verbose, desc="evaluate: embedding clips", unit="clip")
    audio = _check_embeddings(audio, "retriever.transform(X)", upcast=False)
    text = map_in_chunks(lambda c: embedder.text(c, **kwargs), captions, chunk_size=chunk,
                         verbose=verbose, desc="evaluate: embedding captions", unit="caption")
    text = _check_embeddings(text, "retriever.embed_text(y)", upcast=False)
    if audio.shape[0] != len(clips) or text.shape[0] != len(captions):
        raise ValueError(
            f"retriever returned {audio.shape[0]} audio embeddings for {len(clips)} clips and "
            f"{text.shape[0]} text embeddings for {len(captions)} captions; one row each expected."
        )
    if audio.shape[1] != text.shape[1]:
        raise ValueError(
            f"audio embeddings have dimension {audio.shape[1]} but text embeddings {text.shape[1]}."
        )
    return audio, text


def _check_options(transductive=False, epsilon=0.05, max_iter=1000, tol=1e-6, chunk_size=1024,
                   batch_size=None, verbose=0) -> dict:
    """Validate the evaluation options before any work; return them as a dict."""
    if not isinstance(transductive, (bool, np.bool_)):
        raise TypeError(f"transductive={transductive!r} must be True or False.")
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose={verbose!r} must be an int >= 0 (0: silent).")
    max_iter = _check_positive_int(max_iter, "max_iter")
    epsilon, max_iter, tol, chunk_size = _check_sinkhorn_options(epsilon, max_iter, tol, chunk_size)
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
    return dict(transductive=bool(transductive), epsilon=epsilon, max_iter=max_iter, tol=tol,
                chunk_size=chunk_size, batch_size=batch_size, verbose=int(verbose))


def _text_to_audio_similarity(text, audio, options):
    """(n_captions, n_clips) scores, greater is better: minus squared distance or the log-plan."""
    if options["transductive"]:
        return transductive_log_plan(text, audio, epsilon=options["epsilon"],
                                     n_iter=options["max_iter"], tol=options["tol"],
                                     chunk_size=options["chunk_size"])
    text, audio = text.astype(np.float64, copy=False), audio.astype(np.float64, copy=False)
    return negative_squared_distances(text, audio)


def _scores(retriever, X, y, groups, options, relevance="clip", labels=None):
    """Validate, embed each distinct clip and caption once; return (t2a scores over distinct
    captions x clips, relevance, audio, text, clip and caption index of each pair)."""
    embedder = _check_retriever(retriever, options["batch_size"])
    clips, captions, clip_of_pair, caption_of_pair, relevant, merged = _check_pairs(
        X, y, groups, relevance, labels)
    if merged:
        how = ("equal text feature rows" if isinstance(captions, np.ndarray)
               else "equal after normalize_caption")
        warnings.warn(
            f"{merged} of {len(caption_of_pair)} captions repeat an earlier one ({how}); the {len(captions)} distinct captions are the queries and gallery items, "
            "each relevant to every clip it describes.",
            RepeatedCaptionsWarning, stacklevel=3)
    audio, text = _embed(embedder, clips, captions, options["batch_size"], options["verbose"])
    sim = _text_to_audio_similarity(text, audio, options)
    return sim, relevant, audio, text, clip_of_pair, caption_of_pair


def evaluate(retriever, X, y, *, groups=None, relevance="clip", labels=None, ks=(1, 5, 10),
             map_k=10, transductive=False, epsilon=0.05, max_iter=1000, tol=1e-6,
             chunk_size=1024, batch_size=None, protocol="standard", verbose=0) -> dict[str, float]:
    """Every retrieval metric in both directions, and the modality gap, in one dict.

    Each distinct clip is embedded once (the first row of its group) and each distinct
    caption once; equal captions are one query and one gallery item (see the module notes).

    Parameters
    ----------
    retriever : fitted retriever or Pipeline
        Provides ``transform(X)`` and ``embed_text(y)`` (see the module notes), e.g. a fitted
        :class:`sklearn_ltm.LTMRetriever`, or a fitted Pipeline ending in one.
    X : array-like of shape (n_pairs, n_features) or sequence of paths
        The audio of each (clip, caption) pair; a clip with several captions repeats.
    y : sequence of str of length n_pairs, or array of shape (n_pairs, n_text_features)
        The captions (or precomputed text features, if the retriever was fitted on them).
    groups : array-like of shape (n_pairs,), default=None
        Clip id of each pair. ``None`` infers it from equal rows or paths of ``X``.
    relevance : {"clip", "label"}, default="clip"
        Which clips answer a caption: those it is paired with, or every clip whose pair has
        the same class in ``labels``.
    labels : array-like of shape (n_pairs,), default=None
        Class label of each pair; required by ``relevance="label"`` only.
    ks : sequence of int, default=(1, 5, 10)
        Recall cut-offs.
    map_k : int, default=10
        Cut-off of the mean average precision.
    transductive : bool, default=False
        Score pairs by the log of the entropic OT plan between all captions and all clips
        (the m-LTM paper's transductive re-ranking, :func:`sklearn_ltm.rerank.transductive_log_plan`)
        instead of by minus the squared distance. One plan serves both directions.
    epsilon : float, default=0.05
        Entropic regularisation of the transductive plan (cost normalised to ``[0, 1]``).
    max_iter : int, default=1000
        Maximum Sinkhorn iterations of the transductive plan.
    tol : float, default=1e-6
        Marginal error at which the Sinkhorn iterations stop.
    chunk_size : int, default=1024
        Captions per chunk of the transductive cost: memory ``O(chunk_size * n_clips)``.
    batch_size : int, default=None
        Passed as ``batch_size=`` to ``transform`` and ``embed_text`` when not ``None``
        (a ``TypeError`` is raised first if they take no such argument).
    protocol : {"standard", "reference"}, default="standard"
        ``"reference"``: the m-LTM paper code's protocol
        (:func:`sklearn_ltm.reference.reference_protocol_metrics`): a transductive plan at
        epsilon 0.03 with 10 Sinkhorn iterations on the square-rooted cost, one per direction,
        and the median rank as ``floor(median(rank - 1)) + 1``. Every caption row is a query,
        as in the paper code (``relevance`` and caption merging do not apply). It fixes its own
        plan, so ``transductive``, ``epsilon``, ``max_iter``, ``tol`` and ``chunk_size`` must
        keep their defaults.
    verbose : int, default=0
        Above 0, show the progress of the embedding on stderr (tqdm).

    Returns
    -------
    dict of str to float
        For each direction ``t2a`` and ``a2t``: ``"{dir}_R@{k}"`` for ``k`` in ``ks``,
        ``"{dir}_mAP@{map_k}"``, ``"{dir}_median_rank"``, ``"{dir}_mean_rank"``; then
        ``"modality_gap_centroid_distance"`` and ``"modality_gap_mean_direction_cosine"``
        (:func:`sklearn_ltm.retrieval_metrics.modality_gap` over the pairs: a clip counts once per
        caption, so perfectly matched embeddings have no gap).
        Recalls and mAP are fractions in ``[0, 1]``; ranks are 1-based. Ties are broken
        pessimistically.

    Warns
    -----
    RepeatedCaptionsWarning
        When equal captions were merged into one item.

    See Also
    --------
    sklearn_ltm.retrieval_metrics.retrieval_metrics : the metrics of one direction from a score matrix.
    make_retrieval_scorer : one metric as a scorer for ``GridSearchCV``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Toy(BaseEstimator):  # any fitted object with transform and embed_text
    ...     def fit(self, X, y): self.fitted_ = True; return self
    ...     def transform(self, X): return np.asarray(X, dtype=float)
    ...     def embed_text(self, y): return np.array([[1.0, 0.0] if "dog" in c else [0, 1] for c in y])
    >>> X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # clip 0 has two captions
    >>> y = ["a dog barks", "dogs", "rain falls"]
    >>> scores = evaluate(Toy().fit(X, y), X, y, ks=(1,))
    >>> scores["t2a_R@1"], scores["a2t_mAP@10"], scores["modality_gap_centroid_distance"]
    (1.0, 1.0, 0.0)

    Class captions repeat: two dog clips share "a dog barking", which is one item relevant
    to both. Relevance by class counts the second dog caption for both dog clips too:

    >>> import warnings
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0]])
    >>> y = ["a dog barking", "a dog barking", "A dog barking!", "rain falling"]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", RepeatedCaptionsWarning)
    ...     scores = evaluate(Toy().fit(X, y), X, y, ks=(1,))
    >>> scores["a2t_R@1"], scores["t2a_mAP@10"]
    (1.0, 1.0)
    >>> X, y = X[:3], ["a dog barking", "a dog barking", "dog barks"]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", RepeatedCaptionsWarning)
    ...     evaluate(Toy().fit(X, y), X, y, relevance="label", labels=["dog"] * 3,
    ...              ks=(1,))["a2t_mAP@10"]
    1.0
    """
    ks = _check_ks(ks)
    _check_k(map_k, "map_k")
    options = _check_options(transductive, epsilon, max_iter, tol, chunk_size, batch_size,
                             verbose)
    if protocol != "standard":
        return _evaluate_reference_protocol(retriever, X, y, groups, ks, map_k, protocol, options)
    sim, relevant, audio, text, clip_of_pair, caption_of_pair = _scores(
        retriever, X, y, groups, options, relevance, labels)
    out = {}
    for direction, s, r in (("t2a", sim, relevant), ("a2t", sim.T, relevant.T)):
        for name, value in retrieval_metrics(s, r, ks=ks, map_k=map_k).items():
            out[f"{direction}_{name}"] = value
    for name, value in modality_gap(audio[clip_of_pair], text[caption_of_pair]).items():
        out[f"modality_gap_{name}"] = value
    return out


def _evaluate_reference_protocol(retriever, X, y, groups, ks, map_k, protocol, options):
    """``evaluate(..., protocol="reference")``: the paper code's protocol (see ``evaluate``)."""
    if protocol != "reference":
        raise ValueError(f"protocol={protocol!r} is not accepted; use 'standard' or 'reference'.")
    from sklearn_ltm.reference import reference_protocol_metrics

    defaults = _check_options(batch_size=options["batch_size"], verbose=options["verbose"])
    changed = [k for k, v in defaults.items() if options[k] != v]
    if changed:
        raise ValueError(
            "protocol='reference' fixes its own transductive plan (epsilon 0.03, 10 "
            f"iterations); leave {', '.join(changed)} at their defaults, or call "
            "sklearn_ltm.reference.reference_protocol_metrics for other settings."
        )
    embedder = _check_retriever(retriever, options["batch_size"])
    clips, captions, clip_of_pair, caption_of_pair, _, _ = _check_pairs(X, y, groups)
    audio, text = _embed(embedder, clips, captions, options["batch_size"], options["verbose"])
    text = text[caption_of_pair]  # one query per caption row, as in the paper code
    out = reference_protocol_metrics(text, audio, clip_of_pair, ks=ks, map_k=map_k)
    for name, value in modality_gap(audio[clip_of_pair], text).items():
        out[f"modality_gap_{name}"] = value
    return out


def text_to_audio_score(retriever, X, y, *, groups=None, relevance="clip", labels=None,
                        batch_size=None) -> float:
    """Mean of the text-to-audio R@1, R@5 and R@10: the retriever's default ``score``.

    Equal captions are one query relevant to all their clips, as in :func:`evaluate`.

    Parameters
    ----------
    retriever : fitted retriever or Pipeline
        Provides ``transform(X)`` and ``embed_text(y)``, or a Pipeline ending in one.
    X : array-like of shape (n_pairs, n_features) or sequence of paths
        The audio of each (clip, caption) pair.
    y : sequence of str of length n_pairs
        The captions.
    groups : array-like of shape (n_pairs,), default=None
        Clip id of each pair; ``None`` infers it from ``X``.
    relevance : {"clip", "label"}, default="clip"
        As in :func:`evaluate`.
    labels : array-like of shape (n_pairs,), default=None
        Class label of each pair, for ``relevance="label"``.
    batch_size : int, default=None
        Passed to ``transform`` and ``embed_text`` when not ``None``.

    Returns
    -------
    float
        In ``[0, 1]``, greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Toy(BaseEstimator):  # clips are their features; captions are mapped to a point
    ...     def fit(self, X, y): self.fitted_ = True; return self
    ...     def transform(self, X): return np.asarray(X, dtype=float)
    ...     def embed_text(self, y): return np.array([[float(len(c))] for c in y])
    >>> X, y = np.arange(12.0).reshape(-1, 1), ["x" * (i + 1) for i in range(12)]
    >>> # caption i lies on clip i + 1 and 1 away from its clip: R@1 = 1/12, R@5 = R@10 = 1
    >>> text_to_audio_score(Toy().fit(X, y), X, y)
    0.6944...
    """
    options = _check_options(batch_size=batch_size)
    sim, relevant = _scores(retriever, X, y, groups, options, relevance, labels)[:2]
    return float(np.mean([recall_at_k(sim, relevant, k) for k in (1, 5, 10)]))


_METRIC_PATTERN = re.compile(r"^(R|mAP)@([1-9][0-9]*)$")
_RANK_METRICS = {"neg_median_rank": median_rank, "neg_mean_rank": mean_rank}


def _check_metric(metric) -> str:
    if not isinstance(metric, str) or not (
        _METRIC_PATTERN.match(metric) or metric in _RANK_METRICS
    ):
        raise ValueError(
            f"metric={metric!r} is not known; accepted: 'R@k' or 'mAP@k' with an int k >= 1 "
            "(e.g. 'R@1', 'mAP@10'), 'neg_median_rank', 'neg_mean_rank'."
        )
    return metric


def _check_direction(direction) -> str:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not known; accepted: 't2a', 'a2t'.")
    return direction


def _metric_value(sim, relevant, metric: str) -> float:
    if metric in _RANK_METRICS:
        return -_RANK_METRICS[metric](sim, relevant)
    kind, k = _METRIC_PATTERN.match(metric).groups()
    if kind == "R":
        return recall_at_k(sim, relevant, int(k))
    return mean_average_precision_at_k(sim, relevant, int(k))


class _RetrievalScorer:
    """Callable ``scorer(estimator, X, y)`` for scikit-learn model selection (picklable).

    ``estimator`` is a fitted retriever or a fitted Pipeline ending in one.
    """

    def __init__(self, pairs, single, options):
        self._pairs = tuple(pairs)  # ((direction, metric), ...)
        self._single = single
        self._options = _check_options(**options)

    def __call__(self, estimator, X, y):
        sim, relevant = _scores(estimator, X, y, None, self._options)[:2]
        values = {}
        for direction, metric in self._pairs:
            s, r = (sim, relevant) if direction == "t2a" else (sim.T, relevant.T)
            values[f"{direction}_{metric}"] = _metric_value(s, r, metric)
        return next(iter(values.values())) if self._single else values

    def __repr__(self):
        defaults = _check_options()
        options = "".join(f", {k}={v!r}" for k, v in self._options.items() if v != defaults[k])
        if self._single:
            (direction, metric), = self._pairs
            return f"make_retrieval_scorer(metric={metric!r}, direction={direction!r}{options})"
        names = [f"{d}_{m}" for d, m in self._pairs]
        return f"make_multi_retrieval_scorer(<{', '.join(names)}>{options})"


def make_retrieval_scorer(metric="R@1", direction="t2a", *, transductive=False, epsilon=0.05,
                          max_iter=1000, tol=1e-6, chunk_size=1024, batch_size=None):
    """One retrieval metric as a scorer for ``GridSearchCV(scoring=...)`` and ``cross_validate``.

    The scorer is called as ``scorer(estimator, X, y)`` on held-out pairs, infers the clips
    from equal rows or paths of ``X``, and returns a float where greater is better. The
    estimator is a retriever or a :class:`~sklearn.pipeline.Pipeline` whose last step is one
    (the audio goes through the earlier steps). Equal captions are one item relevant to all
    their clips, as in :func:`evaluate`.

    Parameters
    ----------
    metric : str, default="R@1"
        ``"R@k"`` (recall), ``"mAP@k"``, ``"neg_median_rank"`` or ``"neg_mean_rank"`` (ranks
        negated so that greater is better).
    direction : {"t2a", "a2t"}, default="t2a"
        Text-to-audio (captions query clips) or audio-to-text.
    transductive, epsilon, max_iter, tol, chunk_size, batch_size
        As in :func:`evaluate`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``.

    See Also
    --------
    make_multi_retrieval_scorer : several metrics from one embedding pass.
    get_retrieval_scorers : the ready-made scorers.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Toy(BaseEstimator):  # clips are their features; a caption is its length
    ...     def fit(self, X, y): self.fitted_ = True; return self
    ...     def transform(self, X): return np.asarray(X, dtype=float)
    ...     def embed_text(self, y): return np.array([[float(len(c))] for c in y])
    >>> X, y = np.array([[1.0], [2.0], [3.0]]), ["a", "bb", "ccc"]
    >>> scorer = make_retrieval_scorer("R@1", "a2t")
    >>> scorer
    make_retrieval_scorer(metric='R@1', direction='a2t')
    >>> scorer(Toy().fit(X, y), X, y)
    1.0
    """
    pairs = [(_check_direction(direction), _check_metric(metric))]
    options = dict(transductive=transductive, epsilon=epsilon, max_iter=max_iter, tol=tol,
                   chunk_size=chunk_size, batch_size=batch_size)
    return _RetrievalScorer(pairs, True, options)


def make_multi_retrieval_scorer(metrics=("R@1", "R@5", "R@10", "mAP@10"),
                                directions=("t2a", "a2t"), *, transductive=False, epsilon=0.05,
                                max_iter=1000, tol=1e-6, chunk_size=1024, batch_size=None):
    """Several retrieval metrics from one embedding pass, for multi-metric model selection.

    Use as ``GridSearchCV(scoring=scorer, refit="t2a_R@1")``: scikit-learn accepts a callable
    returning a dict. Cheaper than a dict of single scorers, which embeds once per metric.

    Parameters
    ----------
    metrics : sequence of str, default=("R@1", "R@5", "R@10", "mAP@10")
        Metric names as in :func:`make_retrieval_scorer`.
    directions : sequence of {"t2a", "a2t"}, default=("t2a", "a2t")
        Directions; every metric is computed in every direction.
    transductive, epsilon, max_iter, tol, chunk_size, batch_size
        As in :func:`evaluate`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> dict`` with keys ``"{direction}_{metric}"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> class Toy(BaseEstimator):  # clips are their features; a caption is its length
    ...     def fit(self, X, y): self.fitted_ = True; return self
    ...     def transform(self, X): return np.asarray(X, dtype=float)
    ...     def embed_text(self, y): return np.array([[float(len(c))] for c in y])
    >>> X, y = np.array([[1.0], [2.0], [9.0]]), ["a", "bb", "bbb"]
    >>> make_multi_retrieval_scorer(["R@1", "neg_mean_rank"], ["t2a"])(Toy().fit(X, y), X, y)
    {'t2a_R@1': 0.666..., 't2a_neg_mean_rank': -1.666...}
    """
    if isinstance(metrics, str) or isinstance(directions, str):
        raise TypeError("metrics and directions must be sequences of str, e.g. ['R@1'], ['t2a'].")
    pairs = [(_check_direction(d), _check_metric(m)) for d in directions for m in metrics]
    if not pairs:
        raise ValueError("metrics and directions must not be empty.")
    options = dict(transductive=transductive, epsilon=epsilon, max_iter=max_iter, tol=tol,
                   chunk_size=chunk_size, batch_size=batch_size)
    return _RetrievalScorer(pairs, False, options)


def get_retrieval_scorers() -> dict:
    """A fresh dict of the ready-made scorers: R@1, R@5, R@10 and mAP@10 in each direction.

    Returns
    -------
    dict of str to callable
        Keys ``"t2a_R@1"``, ..., ``"a2t_mAP@10"``; each value is a
        :func:`make_retrieval_scorer`. Pass it as ``GridSearchCV(scoring=...)``.

    Examples
    --------
    >>> sorted(get_retrieval_scorers())  # doctest: +NORMALIZE_WHITESPACE
    ['a2t_R@1', 'a2t_R@10', 'a2t_R@5', 'a2t_mAP@10',
     't2a_R@1', 't2a_R@10', 't2a_R@5', 't2a_mAP@10']
    """
    return {
        f"{direction}_{metric}": make_retrieval_scorer(metric, direction)
        for direction in _DIRECTIONS
        for metric in ("R@1", "R@5", "R@10", "mAP@10")
    }


#: The scorers of :func:`get_retrieval_scorers`, for ``GridSearchCV(scoring=RETRIEVAL_SCORERS)``.
RETRIEVAL_SCORERS = get_retrieval_scorers()
