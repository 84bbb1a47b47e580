r"""The m-LTM paper's *code*, as published: its cost, its POT plan and its evaluation protocol.

The paper's text describes a PSD Mahalanobis metric and a learned plan; its reference code
computes something slightly different, and this module reproduces that code so that the
two objectives can be compared on the same data (``loss="mltm-reference"``,
``evaluate(..., protocol="reference")``):

- **Cost.** ``einsum("ijk,ikj,kk->ij", D, D^T, M)`` on the differences
  :math:`D_{ij} = t_i - a_j`: only the diagonal of :math:`M` enters, so the metric is in
  effect diagonal, :math:`C_{ij} = \sum_k M_{kk} (t_{ik} - a_{jk})^2`, and :math:`M` is not
  kept PSD. The cost is then **square-rooted** and divided by its maximum
  (:func:`reference_cost`, :func:`root_normalized_cost`).
- **Plan.** POT's ``ot.sinkhorn`` (plain, not log-domain, at most 1000 iterations, stopping
  threshold ``1e-9``) on uniform marginals, differentiated by autograd through every
  iteration (:func:`reference_plan`); ``ot.partial.entropic_partial_wasserstein`` for a
  mass fraction below 1, as the code's partial variant.
- **Evaluation.** A transductive plan over the whole test set at epsilon 0.03 with only 10
  Sinkhorn iterations, on the square-rooted cost; queries rank the gallery by the plan
  (:func:`reference_transductive_scores`); the median rank is
  :math:`\lfloor \mathrm{median}(r - 1) \rfloor + 1` for 1-based ranks :math:`r`
  (:func:`reference_median_rank`); :func:`reference_protocol_metrics` gives every figure.

POT (``pot``, a dependency of the project) is the solver throughout. Nothing here depends
on the estimator.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .retrieval_metrics import _check_embeddings, _check_ks, _first_relevant_rank, retrieval_metrics

__all__ = [
    "REFERENCE_EVALUATION",
    "REFERENCE_TRAINING",
    "reference_cost",
    "reference_median_rank",
    "reference_plan",
    "reference_protocol_metrics",
    "reference_transductive_scores",
    "root_normalized_cost",
]

#: The reference code's training settings, as :class:`~sklearn_ltm.LTMRetriever` parameters:
#: ``LTMRetriever(**REFERENCE_TRAINING)``. Only names (no component instances) are held, so
#: the dict is never changed by ``set_params`` on an estimator built from it. The loss
#: component :class:`~sklearn_ltm.components.MLTMReference` defaults to the code's solver
#: settings (``max_iter=1000``, POT's ``stopThr``); captions of one clip count as negatives;
#: the diagonal metric trains at the heads' rate. The code's encoder rate is 5e-5: with a
#: pretrained audio encoder pass it on the component, e.g.
#: ``LTMRetriever(PANNs("cnn14", learning_rate=5e-5), **REFERENCE_TRAINING)``. The code's
#: ``drop_last`` batching is not an estimator option: the estimator spreads the remainder
#: of an epoch over its batches instead of dropping it.
REFERENCE_TRAINING = {
    "loss": "mltm-reference",
    "metric": "diagonal",
    "epsilon": 0.03,
    "mass_fraction": 1.0,
    "learning_rate": 5e-5,
    "optimizer": "adam",
    "lr_schedule": "constant",
    "batch_size": 256,
}

#: The reference code's evaluation settings (:func:`reference_protocol_metrics`).
REFERENCE_EVALUATION = {"epsilon": 0.03, "max_iter": 10}


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a real number.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is not accepted; it must be a finite number > 0.")
    return float(value)


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is not accepted; it must be an integer >= 1.")
    return int(value)


def _check_square_cost(cost, name="cost"):
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(cost).__name__}.")
    if not cost.is_floating_point():
        raise TypeError(f"{name} has dtype {cost.dtype}; a floating-point dtype is required.")
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError(f"{name} has shape {tuple(cost.shape)}; expected a non-empty 2-D matrix.")
    if not bool(torch.isfinite(cost).all()):
        raise ValueError(f"{name} contains non-finite values; every cost must be finite.")


def root_normalized_cost(squared_cost):
    r"""Square root of a squared cost, divided by its maximum: the reference code's cost.

    .. math:: C = \sqrt{S} / \max_{ij} \sqrt{S_{ij}}

    Parameters
    ----------
    squared_cost : Tensor of shape (n, m)
        A quadratic-form cost, >= 0 (e.g. a ground metric's output).

    Returns
    -------
    Tensor of shape (n, m)
        Values in ``[0, 1]``; the gradient flows through the root and the maximum.

    Raises
    ------
    ValueError
        If an entry is negative (the reference code would produce NaN there).

    Examples
    --------
    >>> import torch
    >>> root_normalized_cost(torch.tensor([[0.0, 4.0], [1.0, 16.0]]))
    tensor([[0.0000, 0.5000],
            [0.2500, 1.0000]])
    """
    _check_square_cost(squared_cost, "squared_cost")
    if bool((squared_cost < 0).any()):
        raise ValueError(
            f"squared_cost has negative entries (min {squared_cost.min().item():.3g}); its "
            "square root is undefined (the reference code would give NaN)."
        )
    root = torch.sqrt(squared_cost)
    return root / root.max().clamp_min(torch.finfo(root.dtype).tiny)


def reference_cost(text, audio, M):
    r"""The reference code's Mahalanobis cost: ``einsum("ijk,ikj,kk->ij")``, rooted, normalised.

    With :math:`D_{ij} = t_i - a_j`, the einsum sums :math:`D_{ijk}^2 M_{kk}` over ``k``:
    **only the diagonal of** :math:`M` is used. The result is square-rooted and divided by
    its maximum (:func:`root_normalized_cost`). Memory is :math:`O(n\,m\,d)`, as in the code.

    Parameters
    ----------
    text : Tensor of shape (n, d)
        Caption embeddings (rows of the cost).
    audio : Tensor of shape (m, d)
        Audio embeddings (columns).
    M : Tensor of shape (d, d)
        The metric parameter; its off-diagonal entries have no effect.

    Returns
    -------
    Tensor of shape (n, m)

    Examples
    --------
    >>> import torch
    >>> text, audio = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    >>> M = torch.tensor([[3.0, 7.0], [7.0, 1.0]])  # off-diagonal ignored
    >>> reference_cost(text, audio, M)  # sqrt(3 + 1) = 2 and sqrt(3 * 4) = 3.46
    tensor([[0.5774, 1.0000]])
    """
    for value, name in ((text, "text"), (audio, "audio"), (M, "M")):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor.")
    if text.ndim != 2 or audio.ndim != 2 or text.shape[1] != audio.shape[1]:
        raise ValueError(
            f"text and audio must be (n, d) and (m, d) with the same d; got shapes "
            f"{tuple(text.shape)} and {tuple(audio.shape)}."
        )
    d = text.shape[1]
    if M.shape != (d, d):
        raise ValueError(f"M has shape {tuple(M.shape)}; expected ({d}, {d}).")
    diff = text[:, None, :] - audio[None, :, :]
    squared = torch.einsum("ijk,ikj,kk->ij", diff, diff.transpose(1, 2), M)
    return root_normalized_cost(squared)


def reference_plan(cost, epsilon=0.03, *, mass_fraction=1.0, max_iter=1000, tol=None):
    r"""POT's entropic plan between uniform marginals, differentiable through every iteration.

    ``ot.sinkhorn(a, b, cost, reg=epsilon, numItermax=max_iter, stopThr=tol)`` (the plain
    Sinkhorn-Knopp scaling of the reference code) with the torch backend, so that autograd
    differentiates the unrolled iterations; for ``mass_fraction < 1``,
    ``ot.partial.entropic_partial_wasserstein(a, b, cost, reg=epsilon, m=mass_fraction)``.
    A plan that stops at ``max_iter`` gives one :class:`~sklearn.exceptions.ConvergenceWarning`.

    Parameters
    ----------
    cost : Tensor of shape (n, m)
        Ground cost (the reference uses :func:`root_normalized_cost`, values in [0, 1]).
    epsilon : float, default=0.03
        Entropic regularisation (POT's ``reg``), > 0.
    mass_fraction : float, default=1.0
        Transported mass in (0, 1]; < 1: entropic partial OT.
    max_iter : int, default=1000
        POT's ``numItermax``.
    tol : float or None, default=None
        POT's ``stopThr`` (full OT: the 2-norm of the column-marginal error). ``None``:
        POT's default of the solver, ``1e-9`` for ``ot.sinkhorn`` and ``1e-100`` for the
        partial solver, as the reference code calls them.

    Returns
    -------
    Tensor of shape (n, m)
        The plan, with the dtype and device of ``cost`` and its autograd graph.

    Examples
    --------
    >>> import torch
    >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    >>> plan = reference_plan(cost, 0.1)
    >>> plan.sum(1)
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    import ot

    _check_square_cost(cost)
    epsilon = _check_positive(epsilon, "epsilon")
    mass_fraction = _check_positive(mass_fraction, "mass_fraction")
    if mass_fraction > 1:
        raise ValueError(f"mass_fraction={mass_fraction!r} is not accepted; it must be in (0, 1].")
    max_iter = _check_count(max_iter, "max_iter")
    if tol is None:
        tol = 1e-100 if mass_fraction < 1 else 1e-9
    tol = _check_positive(tol, "tol")
    n, m = cost.shape
    a = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=cost.dtype, device=cost.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if mass_fraction < 1:
            plan = ot.partial.entropic_partial_wasserstein(
                a, b, cost, reg=epsilon, m=mass_fraction, numItermax=max_iter, stopThr=tol)
        else:
            plan = ot.sinkhorn(a, b, cost, reg=epsilon, numItermax=max_iter, stopThr=tol)
    for item in caught:
        text = str(item.message)
        if "converge" in text:
            warnings.warn(f"POT's Sinkhorn stopped at max_iter={max_iter} before reaching "
                          f"tol={tol:g} (epsilon={epsilon:g}).", ConvergenceWarning, stacklevel=2)
        else:
            warnings.warn(f"POT: {text}", item.category, stacklevel=2)
    return plan


def _numpy_plan(cost, epsilon, max_iter):
    import ot

    n, m = cost.shape
    with warnings.catch_warnings():
        # 10 iterations is the protocol, not a failure to converge.
        warnings.simplefilter("ignore")
        return ot.sinkhorn(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost, reg=epsilon,
                           numItermax=max_iter)


def reference_transductive_scores(text_embeddings, audio_embeddings, *, epsilon=0.03, max_iter=10):
    r"""The reference evaluation's transductive plans, one per direction.

    The cost between every caption and every clip is the square root of their squared
    Euclidean distance divided by its maximum (embeddings from
    :meth:`~sklearn_ltm.LTMRetriever.transform` / ``embed_text``, where that distance is the
    learned metric). Text-to-audio scores are POT's plain Sinkhorn plan with uniform
    marginals (``numItermax=max_iter``); audio-to-text scores are the plan of the transposed
    problem, solved on its own as in the reference (after a few iterations it is not the
    transpose of the first).

    Parameters
    ----------
    text_embeddings : array-like of shape (n_captions, d)
    audio_embeddings : array-like of shape (n_clips, d)
    epsilon : float, default=0.03
        Entropic regularisation.
    max_iter : int, default=10
        Sinkhorn iterations (the protocol's 10; no early stop is reached in practice).

    Returns
    -------
    t2a : ndarray of shape (n_captions, n_clips)
        Greater is better.
    a2t : ndarray of shape (n_clips, n_captions)

    Examples
    --------
    >>> import numpy as np
    >>> text = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> audio = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> t2a, a2t = reference_transductive_scores(text, audio)
    >>> t2a.argmax(1), a2t.argmax(1)
    (array([1, 0]), array([1, 0]))
    """
    text = _check_embeddings(text_embeddings, "text_embeddings")
    audio = _check_embeddings(audio_embeddings, "audio_embeddings")
    if text.shape[1] != audio.shape[1]:
        raise ValueError(f"text_embeddings have dimension {text.shape[1]} but audio_embeddings "
                         f"{audio.shape[1]}; they must share one space.")
    epsilon = _check_positive(epsilon, "epsilon")
    max_iter = _check_count(max_iter, "max_iter")
    squared = ((text * text).sum(1)[:, None] + (audio * audio).sum(1)[None, :]
               - 2.0 * text @ audio.T)
    root = np.sqrt(np.clip(squared, 0.0, None))
    cost = root / max(float(root.max()), np.finfo(np.float64).tiny)
    return _numpy_plan(cost, epsilon, max_iter), _numpy_plan(cost.T.copy(), epsilon, max_iter)


def reference_median_rank(similarity, relevant):
    r"""The reference code's median rank: :math:`\lfloor \mathrm{median}(r - 1) \rfloor + 1`.

    ``r`` is the 1-based rank of each query's best relevant item (ties broken
    pessimistically, see :func:`sklearn_ltm.retrieval_metrics.first_relevant_rank`). For an odd
    number of queries it equals the plain median; for an even number the half-integer
    median is rounded down.

    Parameters
    ----------
    similarity : array-like of shape (n_queries, n_gallery)
        Scores, greater is better.
    relevant : array-like of bool, shape (n_queries, n_gallery)

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> similarity = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> reference_median_rank(similarity, np.array([[True, False], [True, False]]))  # ranks 1, 2
    1.0
    """
    from .retrieval_metrics import _check_similarity_relevant

    sim, rel = _check_similarity_relevant(similarity, relevant)
    ranks = _first_relevant_rank(sim, rel)
    return float(np.floor(np.median(ranks - 1)) + 1)


def reference_protocol_metrics(text_embeddings, audio_embeddings, clip_of_caption, *,
                               ks=(1, 5, 10), map_k=10, epsilon=0.03, max_iter=10):
    """Every retrieval metric under the reference evaluation protocol, both directions.

    Scores come from :func:`reference_transductive_scores`; recalls, mAP and mean rank are
    those of :func:`sklearn_ltm.retrieval_metrics.retrieval_metrics`, and ``median_rank`` is
    :func:`reference_median_rank`.

    Parameters
    ----------
    text_embeddings : array-like of shape (n_captions, d)
    audio_embeddings : array-like of shape (n_clips, d)
    clip_of_caption : array-like of int, shape (n_captions,)
        The clip (row of ``audio_embeddings``) each caption describes.
    ks : sequence of int, default=(1, 5, 10)
    map_k : int, default=10
    epsilon : float, default=0.03
    max_iter : int, default=10

    Returns
    -------
    dict of str to float
        ``"t2a_R@k"``, ``"t2a_mAP@{map_k}"``, ``"t2a_median_rank"``, ``"t2a_mean_rank"`` and
        the same for ``"a2t"``.

    Examples
    --------
    >>> import numpy as np
    >>> text = np.array([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0]])
    >>> audio = np.array([[0.0, 1.0], [1.0, 0.1]])
    >>> out = reference_protocol_metrics(text, audio, [0, 0, 1], ks=(1,))
    >>> out["t2a_R@1"], out["a2t_R@1"], out["t2a_median_rank"]
    (1.0, 1.0, 1.0)
    """
    ks = _check_ks(ks)
    clips = np.asarray(clip_of_caption)
    n_text = len(np.asarray(text_embeddings))
    n_audio = len(np.asarray(audio_embeddings))
    if clips.shape != (n_text,) or clips.dtype.kind not in "iu":
        raise ValueError(f"clip_of_caption must hold one integer per caption ({n_text}); got "
                         f"shape {clips.shape} and dtype {clips.dtype}.")
    if n_text and (clips.min() < 0 or clips.max() >= n_audio):
        raise ValueError(f"clip_of_caption has values outside [0, {n_audio - 1}] (one per clip).")
    t2a, a2t = reference_transductive_scores(text_embeddings, audio_embeddings,
                                             epsilon=epsilon, max_iter=max_iter)
    relevant = clips[:, None] == np.arange(n_audio)[None, :]
    out = {}
    for direction, scores, rel in (("t2a", t2a, relevant), ("a2t", a2t, relevant.T)):
        for name, value in retrieval_metrics(scores, rel, ks=ks, map_k=map_k).items():
            out[f"{direction}_{name}"] = value
        out[f"{direction}_median_rank"] = reference_median_rank(scores, rel)
    return out
