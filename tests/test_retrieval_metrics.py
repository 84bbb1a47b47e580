"""Tests of sklearn_ltm.retrieval_metrics against a brute-force reference and hand-computed cases."""

import numpy as np
import pytest
import torch

from sklearn_ltm.retrieval_metrics import (
    first_relevant_rank,
    mean_average_precision_at_k,
    mean_rank,
    median_rank,
    modality_gap,
    recall_at_k,
    retrieval_metrics,
)

# ---------------------------------------------------------------- brute-force reference


def _ranked_relevance(scores, rel):
    """Relevance flags of one query in pessimistic rank order (ties: non-relevant first)."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], bool(rel[j])))
    return [bool(rel[j]) for j in order]


def _reference(sim, rel, k):
    ranks, hits_at_k, aps = [], [], []
    for scores, flags in zip(sim.tolist(), rel.tolist()):
        ranked = _ranked_relevance(scores, flags)
        first = ranked.index(True) + 1
        ranks.append(first)
        hits_at_k.append(first <= k)
        n_hit, total = 0, 0.0
        for i, is_rel in enumerate(ranked[:k], start=1):
            if is_rel:
                n_hit += 1
                total += n_hit / i
        aps.append(total / min(k, sum(flags)))
    return np.array(ranks), float(np.mean(hits_at_k)), float(np.mean(aps))


def _random_case(seed, n_queries, n_gallery, max_relevant, n_levels):
    """Integer scores with few levels (many ties) and 1..max_relevant relevant items a row."""
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, n_levels, size=(n_queries, n_gallery)).astype(float)
    rel = np.zeros((n_queries, n_gallery), dtype=bool)
    for i in range(n_queries):
        n_rel = rng.integers(1, min(max_relevant, n_gallery) + 1)
        rel[i, rng.choice(n_gallery, size=n_rel, replace=False)] = True
    return sim, rel


CASES = [
    # seed, n_queries, n_gallery, max_relevant, n_levels
    (0, 30, 12, 1, 3),  # one relevant item (text-to-audio), heavy ties
    (1, 25, 20, 5, 4),  # several relevant (audio-to-text), ties
    (2, 40, 15, 15, 2),  # up to every item relevant, two score levels
    (3, 20, 30, 3, 1000),  # few ties
    (4, 10, 3, 2, 2),  # gallery smaller than k
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_matches_brute_force_reference(case, k):
    sim, rel = _random_case(*case)
    ranks, recall, ap = _reference(sim, rel, k)
    np.testing.assert_array_equal(first_relevant_rank(sim, rel), ranks)
    assert recall_at_k(sim, rel, k) == pytest.approx(recall, abs=1e-12)
    assert mean_average_precision_at_k(sim, rel, k) == pytest.approx(ap, abs=1e-12)
    assert median_rank(sim, rel) == np.median(ranks)
    assert mean_rank(sim, rel) == pytest.approx(ranks.mean())


@pytest.mark.parametrize("case", CASES[:3])
def test_gallery_order_does_not_matter(case):
    # Pessimistic ties make every metric independent of the order of tied gallery items.
    sim, rel = _random_case(*case)
    perm = np.random.default_rng(9).permutation(sim.shape[1])
    assert retrieval_metrics(sim, rel) == retrieval_metrics(sim[:, perm], rel[:, perm])


# ---------------------------------------------------------------- hand-computed cases


def test_hand_computed_single_relevant():
    sim = np.array([
        [0.9, 0.1, 0.3, 0.2],  # relevant 0: rank 1
        [0.9, 0.1, 0.3, 0.2],  # relevant 2: rank 2
        [0.9, 0.1, 0.3, 0.2],  # relevant 1: rank 4
    ])
    rel = np.eye(3, 4, dtype=bool)[[0, 2, 1]]
    np.testing.assert_array_equal(first_relevant_rank(sim, rel), [1, 2, 4])
    assert recall_at_k(sim, rel, 1) == pytest.approx(1 / 3)
    assert recall_at_k(sim, rel, 2) == pytest.approx(2 / 3)
    assert recall_at_k(sim, rel, 4) == 1.0
    # one relevant item: AP@k = 1 / rank within the cut-off
    assert mean_average_precision_at_k(sim, rel, 10) == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert mean_average_precision_at_k(sim, rel, 3) == pytest.approx((1 + 1 / 2) / 3)
    assert median_rank(sim, rel) == 2.0
    assert mean_rank(sim, rel) == pytest.approx(7 / 3)


def test_hand_computed_several_relevant():
    # ranking: items 0..5 in order; relevant at ranks 1, 3, 6
    sim = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    rel = np.array([[True, False, True, False, False, True]])
    # AP@10 = (1/1 + 2/3 + 3/6) / min(10, 3)
    assert mean_average_precision_at_k(sim, rel, 10) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    # AP@2 = (1/1) / min(2, 3)
    assert mean_average_precision_at_k(sim, rel, 2) == pytest.approx(0.5)
    assert recall_at_k(sim, rel, 1) == 1.0  # best of the relevant items counts


@pytest.mark.parametrize("n_relevant", [1, 2, 3])
def test_ties_are_pessimistic(n_relevant):
    n_gallery = 5
    sim = np.zeros((1, n_gallery))  # a constant scorer
    rel = np.zeros((1, n_gallery), dtype=bool)
    rel[0, :n_relevant] = True
    # every non-relevant item goes first
    assert first_relevant_rank(sim, rel)[0] == n_gallery - n_relevant + 1
    assert recall_at_k(sim, rel, n_gallery - n_relevant) == 0.0
    assert recall_at_k(sim, rel, n_gallery - n_relevant + 1) == 1.0


def test_tie_between_relevant_items_only():
    sim = np.array([[1.0, 1.0, 0.0]])
    rel = np.array([[True, True, False]])
    assert first_relevant_rank(sim, rel)[0] == 1
    assert mean_average_precision_at_k(sim, rel, 2) == 1.0


def test_infinite_scores_are_ranked():
    sim = np.array([[-np.inf, 0.0, np.inf]])
    rel = np.array([[True, False, False]])
    assert first_relevant_rank(sim, rel)[0] == 3


def test_retrieval_metrics_equals_single_functions():
    sim, rel = _random_case(5, 30, 10, 4, 5)
    out = retrieval_metrics(sim, rel, ks=(1, 3), map_k=4)
    assert list(out) == ["R@1", "R@3", "mAP@4", "median_rank", "mean_rank"]
    assert out["R@1"] == recall_at_k(sim, rel, 1)
    assert out["R@3"] == recall_at_k(sim, rel, 3)
    assert out["mAP@4"] == mean_average_precision_at_k(sim, rel, 4)
    assert out["median_rank"] == median_rank(sim, rel)
    assert out["mean_rank"] == mean_rank(sim, rel)


def test_accepts_torch_and_01_relevance_and_leaves_inputs_alone():
    sim, rel = _random_case(6, 12, 7, 3, 3)
    sim_copy, rel_copy = sim.copy(), rel.copy()
    expected = retrieval_metrics(sim, rel)
    assert retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(rel)) == expected
    assert retrieval_metrics(sim.astype(np.float32), rel.astype(int)) == expected
    np.testing.assert_array_equal(sim, sim_copy)
    np.testing.assert_array_equal(rel, rel_copy)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "sim, rel, k, error, match",
    [
        (np.zeros(3), np.ones(3, bool), 1, ValueError, "2-D"),
        (np.zeros((2, 3)), np.ones((3, 2), bool), 1, ValueError, r"shape \(3, 2\)"),
        (np.array([[0.0, np.nan]]), np.array([[True, False]]), 1, ValueError, "NaN"),
        (np.zeros((2, 2)), np.array([[True, False], [False, False]]), 1, ValueError,
         r"no relevant.*rows \[1\]"),
        (np.zeros((1, 2)), np.array([[2, 0]]), 1, ValueError, "boolean"),
        (np.zeros((1, 2)), np.array([[True, False]]), 0, ValueError, "k=0"),
        (np.zeros((1, 2)), np.array([[True, False]]), 1.5, TypeError, "k=1.5"),
        (np.zeros((1, 2)), np.array([[True, False]]), True, TypeError, "k=True"),
        (np.zeros((0, 2)), np.zeros((0, 2), bool), 1, ValueError, "at least one"),
        (np.array([["a", "b"]]), np.array([[True, False]]), 1, TypeError, "real numbers"),
    ],
)
def test_bad_input_raises(sim, rel, k, error, match):
    with pytest.raises(error, match=match):
        recall_at_k(sim, rel, k)


def test_bad_ks_raise():
    sim, rel = np.zeros((1, 2)), np.array([[True, False]])
    with pytest.raises(TypeError, match="ks"):
        retrieval_metrics(sim, rel, ks=5)
    with pytest.raises(ValueError, match="map_k=0"):
        retrieval_metrics(sim, rel, map_k=0)


# ---------------------------------------------------------------- modality gap


def test_modality_gap_hand_computed():
    audio = np.array([[2.0, 0.0], [0.0, 2.0]])  # mean (1, 1); unit mean (0.5, 0.5)
    text = np.array([[-1.0, 0.0], [-3.0, 0.0]])  # mean (-2, 0); unit mean (-1, 0)
    gap = modality_gap(audio, text)
    assert gap["centroid_distance"] == pytest.approx(np.sqrt(9 + 1))
    assert gap["mean_direction_cosine"] == pytest.approx(-1 / np.sqrt(2))


def test_modality_gap_of_identical_sets_and_of_a_shift():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 5))
    same = modality_gap(emb, emb[::-1])
    assert same["centroid_distance"] == pytest.approx(0.0, abs=1e-12)
    assert same["mean_direction_cosine"] == pytest.approx(1.0)
    shift = np.array([0.0, 3.0, 4.0, 0.0, 0.0])
    assert modality_gap(emb, emb + shift)["centroid_distance"] == pytest.approx(5.0)


@pytest.mark.parametrize(
    "audio, text, match",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), "dimension 3.*4"),
        (np.zeros((0, 3)), np.zeros((2, 3)), "audio_embeddings must be a non-empty"),
        (np.zeros((2, 3)), np.full((2, 3), np.nan), "text_embeddings contains NaN"),
    ],
)
def test_modality_gap_bad_input(audio, text, match):
    with pytest.raises(ValueError, match=match):
        modality_gap(audio, text)
