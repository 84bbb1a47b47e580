"""scikit-learn integration: common estimator checks, GridSearchCV, Pipeline."""

import numpy as np
import pytest
from _synthetic_features import planted_pairs
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ltm import LTMRetriever

# Every expected failure of scikit-learn's common checks, with its reason.
_Y_IS_CAPTIONS = ("y holds captions (strings) or 2-D text features; this check fits with a "
                  "1-D vector of class labels, which the retriever rejects with a ValueError")
EXPECTED_FAILED_CHECKS = {
    "check_transformer_general": _Y_IS_CAPTIONS,
    "check_transformer_general(readonly_memmap=True)": _Y_IS_CAPTIONS,
    "check_transformer_data_not_an_array": _Y_IS_CAPTIONS,
}


def _check_estimator():
    return LTMRetriever(embedding_dim=4, batch_size=16, max_epochs=2, validation_fraction=0.0,
                        random_state=0, device="cpu")


@parametrize_with_checks([_check_estimator()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_common_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_noise_epsilon_mass(n_jobs):
    audio, text, groups = planted_pairs(n_clips=90, seed=4)
    grid = GridSearchCV(
        LTMRetriever(embedding_dim=8, batch_size=30, max_epochs=4, validation_fraction=0.0,
                     random_state=0, device="cpu"),
        {"noise_ratio": [0.0, 0.5], "epsilon": [0.05], "mass_fraction": [1.0, 0.8]},
        cv=GroupKFold(n_splits=3), n_jobs=n_jobs,
    )
    grid.fit(audio, text, groups=groups)
    assert set(grid.best_params_) == {"noise_ratio", "epsilon", "mass_fraction"}
    scores = grid.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    # the best model was trained without shuffled captions
    assert grid.best_params_["noise_ratio"] == 0.0


def test_grid_search_with_string_captions_and_scorers():
    from sklearn_ltm.evaluation import get_retrieval_scorers

    audio, _, groups = planted_pairs(n_clips=60, seed=7)
    names = ["dog", "cat", "rain", "bell", "car", "bird"]
    captions = [f"{names[g % 6]} and {names[(g // 6) % 6]}" for g in groups]
    scorers = get_retrieval_scorers()
    grid = GridSearchCV(
        LTMRetriever(embedding_dim=8, batch_size=20, max_epochs=2, validation_fraction=0.0,
                     random_state=0, device="cpu"),
        {"epsilon": [0.05, 0.1]}, cv=GroupKFold(n_splits=2),
        scoring={"t2a_R@1": scorers["t2a_R@1"], "a2t_mAP@10": scorers["a2t_mAP@10"]},
        refit="t2a_R@1",
    )
    grid.fit(audio, captions, groups=groups)
    assert "mean_test_a2t_mAP@10" in grid.cv_results_
    assert grid.best_estimator_.text_input_kind_ == "strings"


def test_inside_a_pipeline():
    audio, text, _ = planted_pairs(n_clips=120, seed=8)
    pipe = make_pipeline(StandardScaler(), LTMRetriever(
        embedding_dim=8, batch_size=30, max_epochs=10, learning_rate=3e-3,
        validation_fraction=0.0, random_state=0, device="cpu"))
    pipe.fit(audio[:90], text[:90])
    emb = pipe.transform(audio[90:])
    assert emb.shape == (30, 8)
    assert pipe.score(audio[90:], text[90:]) > 0.4
