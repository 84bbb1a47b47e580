"""Tests of ZeroShotAudioClassifier on a fitted retriever with fixed embeddings."""

import csv
from pathlib import Path

import numpy as np
import ot
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import cross_val_score

from sklearn_ltm.zero_shot import ZeroShotAudioClassifier

ESC50 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "esc50-subset"

CLASS_POINTS = {"dog": [1.0, 0.0], "rain": [0.0, 1.0], "chirping birds": [-1.0, 0.0]}


class PromptRetriever(BaseEstimator):
    """A fitted retriever: audio rows are their embeddings; a caption embeds as the point of the
    class name it contains plus ``template_shift`` times a fixed vector per template wording;
    ``unit`` re-normalises the caption embeddings."""

    def __init__(self, class_points=None, template_shift=0.0, unit=False):
        self.class_points = class_points
        self.template_shift = template_shift
        self.unit = unit

    def fit(self, X, y):
        self.fitted_ = True
        self.captions_seen_ = []
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)

    def embed_text(self, y):
        self.captions_seen_.extend(y)
        out = []
        for caption in y:
            name = max((n for n in self.class_points if n in caption), key=len)
            wording = caption.replace(name, "{}")
            shift = np.random.default_rng(sum(map(ord, wording))).normal(size=2)
            out.append(np.asarray(self.class_points[name]) + self.template_shift * shift)
        out = np.array(out)
        if self.unit:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def _fitted(template="This is a sound of {}.", **params):
    retriever = PromptRetriever(CLASS_POINTS).fit(None, None)
    X = np.array([[0.9, 0.2], [0.1, 0.7], [-0.8, -0.3], [0.5, 0.45]])
    labels = ["dog", "rain", "chirping_birds", "rain"]
    return ZeroShotAudioClassifier(retriever, template, **params).fit(X, labels), X, labels


def _squared_distances(X, points):
    return ((X[:, None, :] - points[None, :, :]) ** 2).sum(-1)


def test_classes_prompts_and_nearest_caption_prediction():
    clf, X, labels = _fitted()
    assert clf.classes_.tolist() == ["chirping_birds", "dog", "rain"]  # sorted, names kept
    assert clf.prompts_ == [["This is a sound of chirping birds."], ["This is a sound of dog."],
                            ["This is a sound of rain."]]
    points = np.array([CLASS_POINTS[n] for n in ("chirping birds", "dog", "rain")])
    np.testing.assert_allclose(clf.class_embeddings_, points)
    dist = _squared_distances(X, points)
    assert clf.predict(X).tolist() == clf.classes_[dist.argmin(axis=1)].tolist() == [
        "dog", "rain", "chirping_birds", "dog"]
    np.testing.assert_allclose(clf.decision_function(X), -dist)
    assert clf.score(X, labels) == 0.75


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_predict_proba_is_softmax_of_distances(temperature):
    clf, X, _ = _fitted(temperature=temperature)
    proba = clf.predict_proba(X)
    expected = softmax(-_squared_distances(X, clf.class_embeddings_) / temperature, axis=1)
    np.testing.assert_allclose(proba, expected, rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.classes_[proba.argmax(axis=1)].tolist() == clf.predict(X).tolist()


def test_fit_needs_only_the_class_names():
    retriever = PromptRetriever(CLASS_POINTS).fit(None, None)
    clf = ZeroShotAudioClassifier(retriever).fit(None, ["rain", "dog"])
    assert clf.classes_.tolist() == ["dog", "rain"]
    assert clf.predict(np.array([[0.1, 0.9]])).tolist() == ["rain"]


def test_underscores_can_be_kept():
    retriever = PromptRetriever({**CLASS_POINTS, "chirping_birds": [5.0, 5.0]}).fit(None, None)
    clf = ZeroShotAudioClassifier(retriever, underscores_as_spaces=False)
    clf.fit(np.zeros((2, 2)), ["chirping_birds", "dog"])
    assert clf.prompts_[0] == ["This is a sound of chirping_birds."]
    np.testing.assert_allclose(clf.class_embeddings_[0], [5.0, 5.0])


@pytest.mark.parametrize("unit", [False, True])
def test_several_templates_are_averaged(unit):
    templates = ["This is a sound of {}.", "A recording of {}", "{} can be heard"]
    retriever = PromptRetriever(CLASS_POINTS, template_shift=0.3, unit=unit).fit(None, None)
    clf = ZeroShotAudioClassifier(retriever, templates).fit(np.zeros((2, 2)), ["rain", "dog"])
    assert clf.prompts_[1] == ["This is a sound of rain.", "A recording of rain",
                               "rain can be heard"]
    per_prompt = retriever.embed_text(clf.prompts_[1])
    expected = per_prompt.mean(axis=0)
    if unit:  # unit-norm caption embeddings: the average is re-normalised
        expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(clf.class_embeddings_[1], expected, rtol=1e-12)
    assert np.isclose(np.linalg.norm(clf.class_embeddings_[1]), 1.0) == unit


def test_balanced_assignment_shares_clips_between_classes():
    points = {"cat": [0.0, 0.0], "cow": [3.0, 0.0], "owl": [0.0, 3.0]}
    retriever = PromptRetriever(points).fit(None, None)
    # every clip is nearest to the cat; two clips "belong" to each class
    X = np.array([[0.2, 0.0], [0.0, 0.3], [1.4, 0.0], [1.3, 0.1], [0.0, 1.4], [0.1, 1.4]])
    y = ["cat", "cat", "cow", "cow", "owl", "owl"]
    plain = ZeroShotAudioClassifier(retriever).fit(X, y)
    assert plain.predict(X).tolist() == ["cat"] * 6
    balanced = ZeroShotAudioClassifier(retriever, balanced=True, epsilon=0.1).fit(X, y)
    assert balanced.predict(X).tolist() == y
    assert balanced.score(X, y) == 1.0
    cost = _squared_distances(X, balanced.class_embeddings_)
    plan = ot.sinkhorn(np.full(6, 1 / 6), np.full(3, 1 / 3), cost / cost.max(), reg=0.1,
                       method="sinkhorn_log", numItermax=5000, stopThr=1e-12)
    np.testing.assert_allclose(balanced.predict_proba(X), plan * 6, atol=1e-6)


def test_clone_get_params_and_frozen_retriever_in_cross_validation():
    clf, X, labels = _fitted(temperature=0.2)
    params = clf.get_params(deep=False)
    assert params["temperature"] == 0.2 and params["template"] == "This is a sound of {}."
    copy = clone(clf)
    assert copy.get_params(deep=False)["temperature"] == 0.2
    assert not hasattr(copy, "classes_")
    # a plain retriever is cloned unfitted; FrozenEstimator keeps the fitted one
    with pytest.raises(NotFittedError):
        copy.fit(X, labels)
    frozen = ZeroShotAudioClassifier(FrozenEstimator(clf.retriever))
    X_cv = np.repeat(X, 3, axis=0)
    y_cv = np.repeat(clf.predict(X), 3)
    scores = cross_val_score(frozen, X_cv, y_cv, cv=3)
    np.testing.assert_allclose(scores, 1.0)
    clf.set_params(temperature=5.0)
    flatter = clf.predict_proba(X)
    assert flatter.max() < _fitted(temperature=0.2)[0].predict_proba(X).max()


@pytest.mark.skipif(not (ESC50 / "meta" / "esc50.csv").is_file(),
                    reason="the real ESC-50 subset is not at ../shared/data/esc50-subset")
@pytest.mark.shared_data
def test_esc50_category_names_become_classes_and_prompts():
    with open(ESC50 / "meta" / "esc50.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "4"]
    labels = [r["category"] for r in rows]
    names = sorted(set(labels))
    points = {n.replace("_", " "): [np.cos(i), np.sin(i)] for i, n in enumerate(names)}
    retriever = PromptRetriever(points).fit(None, None)
    clf = ZeroShotAudioClassifier(retriever).fit([r["filename"] for r in rows], labels)
    assert len(clf.classes_) == 50 and clf.classes_.tolist() == names
    assert clf.prompts_[names.index("chirping_birds")] == ["This is a sound of chirping birds."]
    assert len(retriever.captions_seen_) == 50  # one caption per class, embedded once


# ---------------------------------------------------------------- validation


def test_unfitted_retriever_raises_sklearn_error_before_embedding():
    retriever = PromptRetriever(CLASS_POINTS)
    with pytest.raises(NotFittedError, match="PromptRetriever instance is not fitted yet"):
        ZeroShotAudioClassifier(retriever).fit(np.zeros((1, 2)), ["dog"])


def test_predict_before_fit_raises():
    retriever = PromptRetriever(CLASS_POINTS).fit(None, None)
    with pytest.raises(NotFittedError, match="ZeroShotAudioClassifier"):
        ZeroShotAudioClassifier(retriever).predict(np.zeros((1, 2)))


@pytest.mark.parametrize(
    "params, X, y, error, match",
    [
        ({"template": "A sound"}, np.zeros((1, 2)), ["dog"], ValueError, "exactly one '{}'"),
        ({"template": []}, np.zeros((1, 2)), ["dog"], ValueError, "non-empty list"),
        ({"template": ["{} {}"]}, np.zeros((1, 2)), ["dog"], ValueError, "'{} {}'"),
        ({}, np.zeros((2, 2)), [3, 4], ValueError, r"y\[0\]=3 is not a class name"),
        ({}, np.zeros((2, 2)), ["dog", " "], ValueError, r"y\[1\]=' '"),
        ({}, np.zeros((3, 2)), ["dog"], ValueError, "X has 3 samples but y has 1"),
        ({}, np.zeros((1, 2)), "dog", TypeError, "sequence of class names"),
        ({}, 3, ["dog"], TypeError, "X must be None, an array"),
        ({"temperature": 0}, np.zeros((1, 2)), ["dog"], ValueError,
         r"'temperature' parameter of ZeroShotAudioClassifier .*Got 0 instead"),
        ({"balanced": "yes"}, np.zeros((1, 2)), ["dog"], TypeError,
         r"'balanced' parameter .* must be an instance of 'bool'.*Got 'yes' instead"),
        ({"epsilon": -0.1}, np.zeros((1, 2)), ["dog"], ValueError,
         r"'epsilon' parameter .*Got -0.1 instead"),
        ({"max_iter": 0}, np.zeros((1, 2)), ["dog"], ValueError,
         r"'max_iter' parameter .*Got 0 instead"),
        ({"retriever": object()}, np.zeros((1, 2)), ["dog"], TypeError, "has no method"),
    ],
)
def test_bad_input_raises_before_embedding(params, X, y, error, match):
    retriever = PromptRetriever(CLASS_POINTS).fit(None, None)
    clf = ZeroShotAudioClassifier(retriever).set_params(**params)
    with pytest.raises(error, match=match):
        clf.fit(X, y)
    assert retriever.captions_seen_ == []
