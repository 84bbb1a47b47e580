"""Tests of evaluate(), the scorers and text_to_audio_score on a retriever with fixed embeddings.

``TableRetriever`` is a real fitted object honouring the retriever contract (transform,
embed_text, smaller squared distance = better match) whose embeddings are fixed tables, so the
expected metrics can be computed independently.
"""

import pickle

import numpy as np
import ot
import pytest
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_ltm.evaluation import (
    RETRIEVAL_SCORERS,
    evaluate,
    get_retrieval_scorers,
    make_multi_retrieval_scorer,
    make_retrieval_scorer,
    text_to_audio_score,
)
from sklearn_ltm.retrieval_metrics import modality_gap, retrieval_metrics


class TableRetriever(BaseEstimator):
    """Audio rows (or paths, via ``audio_table``) and captions map to fixed embeddings.

    ``blur`` pulls every caption embedding towards the origin by that fraction plus a fixed
    offset, so larger values retrieve worse: a parameter for model selection.
    """

    def __init__(self, caption_table=None, audio_table=None, blur=0.0):
        self.caption_table = caption_table
        self.audio_table = audio_table
        self.blur = blur

    def fit(self, X, y):
        self.n_pairs_seen_ = len(y)
        self.calls_ = []
        return self

    def transform(self, X, batch_size=None):
        self.calls_.append(("transform", list(map(str, X)), batch_size))
        if self.audio_table is not None:
            return np.stack([self.audio_table[x] for x in X])
        return np.asarray(X, dtype=float)

    def embed_text(self, y, batch_size=None):
        self.calls_.append(("embed_text", list(y), batch_size))
        emb = np.stack([self.caption_table[c] for c in y])
        return (1 - self.blur) * emb + self.blur * 0.5


def _pairs(seed, n_clips=8, dim=5, noise=0.6):
    """Random clips with 1..5 captions each, rows shuffled; returns X, y, groups, table."""
    rng = np.random.default_rng(seed)
    clips = rng.normal(size=(n_clips, dim))
    rows, captions, table = [], [], {}
    for g in range(n_clips):
        for c in range(rng.integers(1, 6)):
            name = f"clip {g} caption {c}"
            table[name] = clips[g] + noise * rng.normal(size=dim)
            rows.append(g)
            captions.append(name)
    order = rng.permutation(len(rows))
    groups = np.array(rows)[order]
    return clips[groups], [captions[i] for i in order], groups, table, clips


def _expected(X, y, groups, table, clips, transductive=False):
    """The metrics computed densely from the tables, independently of evaluate's wiring."""
    text = np.stack([table[c] for c in y])
    cost = ((text[:, None, :] - clips[None, :, :]) ** 2).sum(-1)
    relevant = groups[:, None] == np.arange(len(clips))[None, :]
    if transductive:
        a, b = np.full(len(text), 1 / len(text)), np.full(len(clips), 1 / len(clips))
        plan = ot.sinkhorn(a, b, cost / cost.max(), reg=0.05, method="sinkhorn_log",
                           numItermax=5000, stopThr=1e-12)
        score = np.log(plan)
    else:
        score = -cost
    out = {f"t2a_{k}": v for k, v in retrieval_metrics(score, relevant).items()}
    out.update({f"a2t_{k}": v for k, v in retrieval_metrics(score.T, relevant.T).items()})
    gap = modality_gap(clips[groups], text)
    out.update({f"modality_gap_{k}": v for k, v in gap.items()})
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("transductive", [False, True])
def test_evaluate_matches_dense_reference(seed, transductive):
    X, y, groups, table, clips = _pairs(seed)
    retriever = TableRetriever(table).fit(X, y)
    got = evaluate(retriever, X, y, transductive=transductive, max_iter=5000, tol=1e-12,
                   chunk_size=3)
    expected = _expected(X, y, groups, table, clips, transductive)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_transductive_reranking_changes_the_scores():
    X, y, groups, table, clips = _pairs(3, n_clips=10, noise=1.0)
    retriever = TableRetriever(table).fit(X, y)
    plain = evaluate(retriever, X, y)
    reranked = evaluate(retriever, X, y, transductive=True)
    assert plain != reranked  # same keys, other values: the option is not ignored
    assert plain["modality_gap_centroid_distance"] == reranked["modality_gap_centroid_distance"]


def test_each_distinct_clip_and_caption_is_embedded_once():
    X, y, groups, table, _ = _pairs(4)
    retriever = TableRetriever(table).fit(X, y)
    evaluate(retriever, X, y, batch_size=16)
    (kind_a, audio_rows, bs_a), (kind_t, texts, bs_t) = retriever.calls_
    assert (kind_a, kind_t, bs_a, bs_t) == ("transform", "embed_text", 16, 16)
    assert len(audio_rows) == len(set(groups)) == len(set(audio_rows))
    assert texts == y


def test_hand_computed_case_with_two_captions_per_clip():
    # clip A at 0, clip B at 10 (1-D). Captions: A1 at 0 (hits A), A2 at 9 (nearer B),
    # B1 at 10, B2 at 6 (nearer B).
    X = np.array([[0.0], [0.0], [10.0], [10.0]])
    y = ["A1", "A2", "B1", "B2"]
    table = {"A1": [0.0], "A2": [9.0], "B1": [10.0], "B2": [6.0]}
    scores = evaluate(TableRetriever(table).fit(X, y), X, y, ks=(1, 2))
    # t2a: ranks of the true clip are 1, 2, 1, 1
    assert scores["t2a_R@1"] == 0.75
    assert scores["t2a_R@2"] == 1.0
    assert scores["t2a_mAP@10"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert scores["t2a_median_rank"] == 1.0
    assert scores["t2a_mean_rank"] == 1.25
    # a2t: A ranks A1 (0), B2 (6), A2 (9), B1 -> AP = (1 + 2/3) / 2; B ranks B1, A2, B2 -> (1 + 2/3)/2
    assert scores["a2t_R@1"] == 1.0
    assert scores["a2t_mAP@10"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["a2t_mean_rank"] == 1.0
    # centroids over the pairs: audio 5, text 25/4
    assert scores["modality_gap_centroid_distance"] == pytest.approx(1.25)


def test_paths_and_explicit_groups():
    X, y, groups, table, clips = _pairs(5)
    paths = [f"clip_{g}.wav" for g in groups]
    audio_table = {f"clip_{g}.wav": clips[g] for g in range(len(clips))}
    on_arrays = evaluate(TableRetriever(table).fit(X, y), X, y)
    on_paths = evaluate(TableRetriever(table, audio_table).fit(paths, y), paths, y)
    assert on_paths == on_arrays
    # explicit groups override what the rows say: relabel the pairs of clip 0 as clip 1
    merged = np.where(groups == 0, 1, groups)
    explicit = evaluate(TableRetriever(table).fit(X, y), X, y, groups=merged)
    assert explicit != on_arrays
    assert explicit == evaluate(TableRetriever(table).fit(X, y), X, y, groups=merged * 7 + 3)


def test_precomputed_text_features_are_passed_through():
    X, y, groups, table, _ = _pairs(6)
    features = np.stack([table[c] for c in y])

    class FeatureRetriever(TableRetriever):
        def embed_text(self, y, batch_size=None):
            return np.asarray(y, dtype=float)

    assert evaluate(FeatureRetriever().fit(X, y), X, features) == evaluate(
        TableRetriever(table).fit(X, y), X, y)


def test_inputs_are_not_modified():
    X, y, _, table, _ = _pairs(7)
    X0, y0 = X.copy(), list(y)
    evaluate(TableRetriever(table).fit(X, y), X, y, transductive=True)
    np.testing.assert_array_equal(X, X0)
    assert y == y0


# ---------------------------------------------------------------- scorers


def test_ready_scorers_equal_evaluate():
    X, y, _, table, _ = _pairs(8)
    retriever = TableRetriever(table).fit(X, y)
    full = evaluate(retriever, X, y)
    scorers = get_retrieval_scorers()
    assert set(scorers) == set(RETRIEVAL_SCORERS) == {
        f"{d}_{m}" for d in ("t2a", "a2t") for m in ("R@1", "R@5", "R@10", "mAP@10")}
    for name, scorer in scorers.items():
        assert scorer(retriever, X, y) == full[name], name
    multi = make_multi_retrieval_scorer(metrics=("R@1", "mAP@10", "neg_median_rank"))
    assert multi(retriever, X, y) == {
        "t2a_R@1": full["t2a_R@1"], "t2a_mAP@10": full["t2a_mAP@10"],
        "t2a_neg_median_rank": -full["t2a_median_rank"],
        "a2t_R@1": full["a2t_R@1"], "a2t_mAP@10": full["a2t_mAP@10"],
        "a2t_neg_median_rank": -full["a2t_median_rank"]}


@pytest.mark.parametrize("metric, key, sign", [("R@3", "t2a_R@3", 1), ("mAP@2", "t2a_mAP@2", 1),
                                               ("neg_mean_rank", "t2a_mean_rank", -1)])
def test_custom_scorer_values(metric, key, sign):
    X, y, _, table, _ = _pairs(9)
    retriever = TableRetriever(table).fit(X, y)
    full = evaluate(retriever, X, y, ks=(3,), map_k=2, transductive=True)
    scorer = make_retrieval_scorer(metric, "t2a", transductive=True)
    assert scorer(retriever, X, y) == sign * full[key]


def test_text_to_audio_score_is_mean_of_recalls():
    X, y, _, table, _ = _pairs(10, n_clips=14, noise=1.2)
    retriever = TableRetriever(table).fit(X, y)
    full = evaluate(retriever, X, y)
    expected = (full["t2a_R@1"] + full["t2a_R@5"] + full["t2a_R@10"]) / 3
    assert 0 < expected < 1
    assert text_to_audio_score(retriever, X, y) == pytest.approx(expected)


def test_scorers_drive_grid_search_and_pickle():
    X, y, groups, table, _ = _pairs(11, n_clips=12, noise=0.3)
    search = GridSearchCV(TableRetriever(table), {"blur": [0.9, 0.0, 0.6]},
                          scoring=RETRIEVAL_SCORERS, refit="t2a_R@1", cv=GroupKFold(2))
    search.fit(X, y, groups=groups)
    assert search.best_params_ == {"blur": 0.0}
    assert np.all(np.isfinite(search.cv_results_["mean_test_a2t_mAP@10"]))
    multi = make_multi_retrieval_scorer(directions=("t2a",), max_iter=50)
    search = GridSearchCV(TableRetriever(table), {"blur": [0.9, 0.0]}, scoring=multi,
                          refit="t2a_R@5", cv=GroupKFold(2)).fit(X, y, groups=groups)
    assert search.best_params_ == {"blur": 0.0}
    restored = pickle.loads(pickle.dumps(multi))
    assert repr(restored) == repr(multi)
    assert "max_iter=50" in repr(multi)
    retriever = TableRetriever(table).fit(X, y)
    assert restored(retriever, X, y) == multi(retriever, X, y)


# ---------------------------------------------------------------- validation


def test_unfitted_retriever_raises_sklearn_error():
    X, y, _, table, _ = _pairs(12)
    with pytest.raises(NotFittedError, match="TableRetriever instance is not fitted yet"):
        evaluate(TableRetriever(table), X, y)


class _NoBatchSize(TableRetriever):
    def transform(self, X):
        return np.asarray(X, dtype=float)


class _WrongRows(TableRetriever):
    def transform(self, X, batch_size=None):
        return np.zeros((len(X) + 1, 5))


@pytest.mark.parametrize(
    "make, call, error, match",
    [
        (lambda t: object(), lambda r, X, y: evaluate(r, X, y), TypeError,
         "has no method transform or embed_text"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y[:-1]), ValueError,
         r"X has \d+ rows but y has \d+ captions"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, "a caption"), TypeError,
         "sequence of captions"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, [""] * len(y)), ValueError, "empty"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, groups=[0, 1]), ValueError,
         "groups has shape"),
        (TableRetriever, lambda r, X, y: evaluate(r, X[:0], y[:0]), ValueError, "X is empty"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, ks=(0,)), ValueError,
         r"ks=\(0,\) holds 0"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, map_k=0), ValueError, "map_k=0"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, transductive=True, epsilon=-1),
         ValueError, "epsilon=-1"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, transductive="yes"), TypeError,
         "transductive='yes'"),
        (TableRetriever, lambda r, X, y: evaluate(r, X, y, batch_size=0), ValueError,
         "batch_size=0"),
        (_NoBatchSize, lambda r, X, y: evaluate(r, X, y, batch_size=8), TypeError,
         "takes no batch_size"),
        (_WrongRows, lambda r, X, y: evaluate(r, X, y), ValueError, "one row each expected"),
    ],
)
def test_bad_input_raises_before_work(make, call, error, match):
    X, y, _, table, _ = _pairs(13)
    retriever = make(table)
    if hasattr(retriever, "fit"):
        retriever.fit(X, y)
    with pytest.raises(error, match=match):
        call(retriever, X, y)
    if error is not ValueError or "one row each" not in match:
        assert getattr(retriever, "calls_", []) == []  # nothing was embedded


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "R@0"}, "metric='R@0'"),
        ({"metric": "median_rank"}, "neg_median_rank"),
        ({"direction": "text"}, "direction='text'"),
        ({"max_iter": 0}, "max_iter=0"),
    ],
)
def test_bad_scorer_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_retrieval_scorer(**kwargs)
