"""LTMRetriever in feature mode: fitting, embedding, scoring, validation, persistence."""

import pickle

import joblib
import numpy as np
import pytest
import torch
from _synthetic_features import planted_pairs
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import MLTM, Mahalanobis, ModuleAudio, ScratchText
from sklearn_ltm.training import Checkpoint, EarlyStopping

FAST = dict(embedding_dim=16, batch_size=32, max_epochs=15, learning_rate=3e-3,
            validation_fraction=0.0, random_state=0)


@pytest.fixture(scope="module")
def data():
    audio, text, groups = planted_pairs(n_clips=200, seed=1)
    return audio, text, groups


@pytest.fixture(scope="module")
def fitted(data):
    audio, text, _ = data
    return LTMRetriever(**FAST).fit(audio[:160], text[:160])


def test_recovers_planted_pairing_on_held_out_pairs(fitted, data):
    audio, text, _ = data
    # 40 held-out clips: chance R@1 is 1/40.
    score = fitted.score(audio[160:], text[160:])
    from sklearn_ltm.evaluation import evaluate

    metrics = evaluate(fitted, audio[160:], text[160:])
    assert metrics["t2a_R@1"] > 0.5, metrics
    assert score > 0.7


@pytest.mark.parametrize("loss", ["mltm", "contrastive", "triplet"])
@pytest.mark.parametrize("metric", ["mahalanobis", "diagonal", "euclidean", "cosine"])
def test_every_loss_and_metric_learns(data, loss, metric):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 8}, loss=loss, metric=metric)
    est.fit(audio[:160], text[:160])
    assert est.score(audio[160:], text[160:]) > 0.3  # chance mean recall ~ 0.13
    assert np.isfinite(est.history_[-1]["train_loss"])


def test_partial_ot_learns(data):
    audio, text, _ = data
    est = LTMRetriever(**FAST, mass_fraction=0.8).fit(audio[:160], text[:160])
    assert est.score(audio[160:], text[160:]) > 0.5


def test_transform_matches_learned_metric(fitted, data):
    audio, text, _ = data
    a = fitted.transform(audio[:10])
    t = fitted.embed_text(text[:10])
    model = fitted.model_
    with torch.no_grad():
        ea = model.embed_audio(torch.as_tensor(audio[:10], dtype=torch.float32))
        et = model.embed_text(torch.as_tensor(text[:10], dtype=torch.float32))
        cost = model.cost(et, ea).numpy()
    d2 = ((t[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(d2, cost, rtol=1e-4, atol=1e-5)


def test_transform_deterministic_and_same_seed_same_embeddings(data):
    audio, text, _ = data
    a = LTMRetriever(**{**FAST, "max_epochs": 3}).fit(audio[:100], text[:100])
    b = LTMRetriever(**{**FAST, "max_epochs": 3}).fit(audio[:100], text[:100])
    np.testing.assert_array_equal(a.transform(audio[:20]), a.transform(audio[:20]))
    np.testing.assert_array_equal(a.transform(audio[:20]), b.transform(audio[:20]))
    c = LTMRetriever(**{**FAST, "max_epochs": 3, "random_state": 1}).fit(audio[:100], text[:100])
    assert not np.allclose(a.transform(audio[:20]), c.transform(audio[:20]))


def test_inputs_not_modified(data):
    audio, text, _ = data
    a0, t0 = audio[:64].copy(), text[:64].copy()
    a1, t1 = audio[:64].copy(), text[:64].copy()
    LTMRetriever(**{**FAST, "max_epochs": 2}, noise_ratio=0.5).fit(a1, t1)
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(t0, t1)


def test_noise_ratio_shuffles_the_requested_fraction(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 1}, noise_ratio=0.4).fit(audio[:100], text[:100])
    assert len(est.noisy_pairs_) == 40
    again = LTMRetriever(**{**FAST, "max_epochs": 1}, noise_ratio=0.4).fit(audio[:100], text[:100])
    np.testing.assert_array_equal(est.noisy_pairs_, again.noisy_pairs_)
    clean = LTMRetriever(**{**FAST, "max_epochs": 1}).fit(audio[:100], text[:100])
    assert len(clean.noisy_pairs_) == 0


def test_noise_hurts_but_training_still_uses_clean_validation(data):
    audio, text, _ = data
    clean = LTMRetriever(**FAST).fit(audio[:160], text[:160])
    noisy = LTMRetriever(**FAST, noise_ratio=0.9).fit(audio[:160], text[:160])
    assert noisy.score(audio[160:], text[160:]) < clean.score(audio[160:], text[160:])


def test_history_validation_and_early_stopping(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "validation_fraction": 0.2, "max_epochs": 30,
                          "early_stopping": EarlyStopping(patience=2)}).fit(audio[:160],
                                                                           text[:160])
    assert {"epoch", "train_loss", "val_t2a_R@1", "val_t2a_mean_recall", "time"} <= set(
        est.history_[0])
    assert est.n_epochs_ == len(est.history_) <= 30
    scores = [h["val_t2a_mean_recall"] for h in est.history_]
    # the restored weights are those of the best epoch
    val = est.validation_pairs_
    from sklearn_ltm.evaluation import evaluate

    best = max(scores)
    got = evaluate(est, audio[:160][val], text[:160][val])
    got_mean = np.mean([got["t2a_R@1"], got["t2a_R@5"], got["t2a_R@10"]])
    assert got_mean == pytest.approx(best, abs=1e-6)


def test_multi_caption_groups_from_equal_rows():
    audio, text, groups = planted_pairs(n_clips=60, captions_per_clip=3, seed=3)
    est = LTMRetriever(**{**FAST, "max_epochs": 10}).fit(audio, text)
    assert est.transform(audio).shape == (180, 16)
    # explicit groups equal to the inferred ones give the same model
    est2 = LTMRetriever(**{**FAST, "max_epochs": 10}).fit(audio, text, groups=groups * 7)
    np.testing.assert_allclose(est.transform(audio[:5]), est2.transform(audio[:5]))


def test_retrieve_both_directions(fitted, data):
    audio, text, _ = data
    idx, dist = fitted.retrieve(text[160:170], audio[160:], k=5)
    assert idx.shape == dist.shape == (10, 5)
    assert np.all(np.diff(dist, axis=1) >= 0)
    t = fitted.embed_text(text[160:170])
    a = fitted.transform(audio[160:])
    brute = ((t[:, None] - a[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx[:, 0], brute.argmin(1))
    np.testing.assert_allclose(dist[:, 0], brute.min(1), rtol=1e-4, atol=1e-5)
    idx2, _ = fitted.retrieve(audio[160:165], text[160:], k=3, direction="audio-to-text")
    assert idx2.shape == (5, 3)
    with pytest.raises(ValueError, match="direction"):
        fitted.retrieve(text[:2], audio[:4], direction="sideways")


@pytest.mark.parametrize("param, value, match", [
    ("batch_size", 1, r"'batch_size' parameter of LTMRetriever must be an int in the range "
                      r"\[2, inf\)\. Got 1 instead"),
    ("epsilon", 0.0, r"'epsilon' parameter .* range \(0\.0, inf\)\. Got 0\.0 instead"),
    ("epsilon", -1, r"'epsilon' parameter .*Got -1 instead"),
    ("mass_fraction", 0.0, r"'mass_fraction' parameter .* range \(0\.0, 1\.0\]\. Got 0\.0"),
    ("mass_fraction", 1.5, r"'mass_fraction' parameter .*Got 1\.5 instead"),
    ("noise_ratio", 1.0, r"'noise_ratio' parameter .* range \[0\.0, 1\.0\)\. Got 1\.0"),
    ("noise_ratio", -0.1, r"'noise_ratio' parameter .*Got -0\.1 instead"),
    ("metric", "manhattan", "mahalanobis"),
    ("loss", "hinge", "contrastive"),
    ("audio_encoder", "vggish", "cnn14"),
    ("device", "tpu", "device"),
])
def test_bad_parameters_raise_before_training(data, param, value, match):
    audio, text, _ = data
    with pytest.raises(ValueError, match=match):
        LTMRetriever(**{**FAST, param: value}).fit(audio[:10], text[:10])


def test_bad_inputs():
    X = np.random.default_rng(0).normal(size=(6, 4))
    est = LTMRetriever(**FAST)
    with pytest.raises(ValueError, match="6 rows but y has 5"):
        est.fit(X, ["a b"] * 5)
    with pytest.raises(ValueError, match="at least 2"):
        est.fit(X[:1], ["a"])
    with pytest.raises(ValueError, match="empty or whitespace"):
        est.fit(X, ["a", "b", "  ", "c", "d", "e"])
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        est.fit(Xn, ["a", "b", "c", "d", "e", "f"])
    with pytest.raises(ValueError, match="1-D numeric"):
        est.fit(X, np.arange(6.0))
    with pytest.raises(NotFittedError):
        LTMRetriever().transform(X)


def test_feature_count_checked_at_transform(fitted, data):
    audio, text, _ = data
    with pytest.raises(ValueError, match="is expecting"):
        fitted.transform(audio[:, :5])
    with pytest.raises(ValueError, match="is expecting"):
        fitted.embed_text(text[:, :5])


def test_string_captions_scratch_encoder():
    audio, _, groups = planted_pairs(n_clips=40, seed=5)
    words = np.array(["dog", "cat", "rain", "car", "bell", "bird", "wind", "door"])
    rng = np.random.default_rng(0)
    # captions determined by the clip: a two-word code
    codes = rng.integers(0, len(words), size=(40, 2))
    captions = [f"a {words[a]} then a {words[b]}" for a, b in codes[groups]]
    est = LTMRetriever(**{**FAST, "max_epochs": 3}).fit(audio, captions)
    emb = est.embed_text(captions[:4])
    assert emb.shape == (4, 16) and np.isfinite(emb).all()
    with pytest.raises(ValueError, match="strings"):
        est.embed_text(np.zeros((3, 4)))


def test_clone_and_custom_module_not_trained_in_place():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(24, 12)
            self.output_dim = 12
            self.sample_rate = 16000

        def forward(self, x, lengths=None):
            return self.lin(x)

    module = Tiny()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    audio, text, _ = planted_pairs(n_clips=40, seed=2)
    est = LTMRetriever(audio_encoder=ModuleAudio(module, learning_rate=1e-2),
                       **{**FAST, "max_epochs": 2})
    est.fit(audio, text)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert est.model_.audio_encoder is not module
    assert est.get_params()["audio_encoder__module"] is module
    assert est.audio_input_kind_ == "waveforms"
    c = clone(est)
    assert not hasattr(c, "model_")
    assert c.get_params()["epsilon"] == est.epsilon


@pytest.mark.parametrize("how", ["pickle", "joblib", "save"])
def test_round_trips_give_identical_embeddings(fitted, data, tmp_path, how):
    audio, text, _ = data
    if how == "pickle":
        other = pickle.loads(pickle.dumps(fitted))
    elif how == "joblib":
        joblib.dump(fitted, tmp_path / "m.joblib")
        other = joblib.load(tmp_path / "m.joblib")
    else:
        fitted.save(tmp_path / "m.pt")
        other = LTMRetriever.load(tmp_path / "m.pt", device="cpu")
        assert other.get_params()["epsilon"] == fitted.epsilon
    np.testing.assert_array_equal(other.transform(audio[:30]), fitted.transform(audio[:30]))
    np.testing.assert_array_equal(other.embed_text(text[:30]), fitted.embed_text(text[:30]))


def test_load_is_safe_and_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match="not a sklearn-ltm model"):
        LTMRetriever.load(bad)
    with pytest.raises(ValueError, match="does not exist"):
        LTMRetriever.load(tmp_path / "missing.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "sklearn-ltm-model", "x": Evil()}, evil)
    with pytest.raises(ValueError, match="not a sklearn-ltm model file"):
        LTMRetriever.load(evil)


def test_save_and_load_string_captions(tmp_path):
    audio, _, groups = planted_pairs(n_clips=30, seed=6)
    captions = [f"clip number {g % 7} sound" for g in groups]
    est = LTMRetriever(**{**FAST, "max_epochs": 2}).fit(audio, captions)
    est.save(tmp_path / "m.pt")
    other = LTMRetriever.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(other.embed_text(captions[:5]), est.embed_text(captions[:5]))


def test_checkpoint_and_resume(tmp_path, data):
    audio, text, _ = data
    ckpt = tmp_path / "ckpt.pt"
    full = LTMRetriever(**{**FAST, "max_epochs": 4, "early_stopping": False}).fit(
        audio[:100], text[:100])
    part = LTMRetriever(**{**FAST, "max_epochs": 2, "early_stopping": False},
                        callbacks=[Checkpoint(str(ckpt))]).fit(audio[:100], text[:100])
    assert ckpt.is_file() and part.n_epochs_ == 2
    resumed = LTMRetriever(**{**FAST, "max_epochs": 4, "early_stopping": False}).fit(
        audio[:100], text[:100], resume_from=str(ckpt))
    assert resumed.n_epochs_ == 4
    np.testing.assert_allclose(resumed.transform(audio[:10]), full.transform(audio[:10]),
                               rtol=1e-5, atol=1e-6)


def test_scratch_text_encoder_trains_at_the_head_learning_rate_by_default():
    audio, _, groups = planted_pairs(n_clips=40, seed=9)
    captions = [f"sound {g % 5} then sound {g % 3}" for g in groups]

    def moved(**kw):
        est = LTMRetriever(**{**FAST, "max_epochs": 3}, text_encoder=ScratchText(**kw))
        est.fit(audio, captions)
        enc = est.model_.text_encoder
        # the same seed builds the same initial encoder: rebuild it to compare
        init = LTMRetriever(**{**FAST, "max_epochs": 1, "learning_rate": 1e-12},
                            text_encoder=ScratchText(learning_rate=0.0))
        init.fit(audio, captions)
        return sum(float((a - b).abs().sum()) for a, b in zip(
            enc.parameters(), init.model_.text_encoder.parameters()))

    default, pretrained_rate = moved(), moved(learning_rate=1e-5)
    assert default > 20 * pretrained_rate > 0


def test_low_rank_mahalanobis_metric(data, tmp_path):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 8}, metric=Mahalanobis(rank=4)).fit(
        audio[:160], text[:160])
    assert tuple(est.model_.metric.L.shape) == (4, 16)
    assert est.transform(audio[:3]).shape == (3, 4)  # mapped by L: rank-sized embeddings
    assert est.score(audio[160:], text[160:]) > 0.3
    est.save(tmp_path / "m.pt")
    np.testing.assert_array_equal(LTMRetriever.load(tmp_path / "m.pt").transform(audio[:3]),
                                  est.transform(audio[:3]))
    # a rank exists only on the Mahalanobis metric: asking another metric for one is an error
    with pytest.raises(ValueError, match="Invalid parameter 'rank' for estimator Cosine"):
        LTMRetriever(**FAST, metric="cosine").set_params(metric__rank=4)
    with pytest.raises(ValueError, match=r"metric__rank=17 is outside the accepted range "
                                         r"\[1, embedding_dim=16\]"):
        LTMRetriever(**FAST).set_params(metric__rank=17).fit(audio[:10], text[:10])


def test_sinkhorn_iteration_cap_is_honoured(data):
    from sklearn.exceptions import ConvergenceWarning

    audio, text, _ = data
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        LTMRetriever(**{**FAST, "max_epochs": 1}, loss=MLTM(max_iter=2, tol=1e-12)).fit(
            audio[:64], text[:64])
    with pytest.raises(ValueError, match=r"'tol' parameter of MLTM .*Got 0 instead"):
        LTMRetriever(**FAST, loss=MLTM(tol=0)).fit(audio[:10], text[:10])


def test_metric_learning_rate_zero_keeps_the_identity_metric(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 3}, metric=Mahalanobis(learning_rate=0.0))
    est.fit(audio[:100], text[:100])
    torch.testing.assert_close(est.model_.metric.L.detach(), torch.eye(16))
    moved = LTMRetriever(**{**FAST, "max_epochs": 3}).fit(audio[:100], text[:100])
    assert not torch.allclose(moved.model_.metric.L.detach(), torch.eye(16))
