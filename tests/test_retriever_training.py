"""LTMRetriever's training controls: the fit steps, eval_set and monitors, warm starts,
LR schedules per group, path checks, and models saved in format 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _synthetic_features import planted_pairs

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import MLTM, AudioFeatures, Mahalanobis, ScratchText, TextFeatures
from sklearn_ltm.evaluation import evaluate
from sklearn_ltm.fitting import (
    build_encoders,
    build_model,
    corrupt_training_captions,
    make_pairs,
    split_validation,
)
from sklearn_ltm.training import Callback, Checkpoint, EarlyStopping

FAST = dict(embedding_dim=16, batch_size=32, max_epochs=6, learning_rate=3e-3,
            validation_fraction=0.0, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def data():
    return planted_pairs(n_clips=200, seed=1)


# ------------------------------------------------------------------ the fit steps
def test_make_pairs_groups_clips_and_resolves_auto():
    X = np.repeat(np.eye(4), 2, axis=0)
    pairs, audio, text = make_pairs(X, [f"caption {i}" for i in range(8)])
    assert pairs.n_clips == 4 and pairs.clip_of_pair.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert isinstance(audio, AudioFeatures) and isinstance(text, ScratchText)
    np.testing.assert_array_equal(pairs.clip_audio.data, np.eye(4))
    with pytest.raises(ValueError, match="8 rows but y has 7"):
        make_pairs(X, ["c"] * 7)
    with pytest.raises(ValueError, match="groups has shape"):
        make_pairs(X, ["c"] * 8, groups=[0, 1])


def test_split_validation_holds_out_whole_clips():
    clip_of_pair = np.repeat(np.arange(20), 3)
    train, val = split_validation(clip_of_pair, 0.25, np.random.default_rng(0))
    assert len(val) == 15 and not set(clip_of_pair[train]) & set(clip_of_pair[val])
    train, val = split_validation(clip_of_pair[:9], 0.25, np.random.default_rng(0))
    assert len(val) == 0  # 3 clips: holding out 1 would leave too few on one side


def test_caption_noise_is_clip_aware_and_spares_validation_pairs():
    clip_of_pair = np.repeat(np.arange(30), 3)  # 3 captions per clip
    train = np.arange(60)
    rows, noisy = corrupt_training_captions(clip_of_pair, train, 0.5, np.random.default_rng(0))
    assert len(noisy) == 30
    assert np.all(clip_of_pair[rows[noisy]] != clip_of_pair[noisy])  # from another clip
    np.testing.assert_array_equal(rows[60:], np.arange(60, 90))
    assert sorted(rows[:60]) == list(range(60))  # shuffled among themselves


def test_fit_and_load_build_the_model_through_build_model(data, tmp_path, monkeypatch):
    import sklearn_ltm.retriever as retriever_module

    calls = []
    real = retriever_module.build_model

    def spy(*args, **kwargs):
        calls.append(kwargs.get("audio_module") is not None or
                     kwargs.get("text_module") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(retriever_module, "build_model", spy)
    audio, text, _ = data
    captions = [f"word{i % 9} word{i % 4}" for i in range(60)]
    est = LTMRetriever(**{**FAST, "max_epochs": 1}).fit(audio[:60], captions)
    est.save(tmp_path / "m.pt")
    other = LTMRetriever.load(tmp_path / "m.pt")
    assert calls == [True, False]  # fit passes its built encoders, load rebuilds them
    np.testing.assert_array_equal(other.embed_text(captions[:5]), est.embed_text(captions[:5]))
    _, _, arch = build_encoders(AudioFeatures(), TextFeatures(), audio_dim=12, text_dim=10)
    model = build_model(arch, audio=AudioFeatures(), text=TextFeatures(),
                        metric=Mahalanobis(rank=3), embedding_dim=5)
    assert tuple(model.metric.L.shape) == (3, 5)


# ------------------------------------------------------------------ eval_set and monitor
def test_eval_set_is_the_validation_set_and_the_monitor_picks_the_best(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 12, "validation_fraction": 0.1},
                       early_stopping=EarlyStopping(monitor="a2t_R@1", patience=3))
    est.fit(audio[:120], text[:120], eval_set=(audio[160:], text[160:]))
    assert len(est.validation_pairs_) == 0  # nothing held out of the training pairs
    history = est.history_
    assert {"val_t2a_R@1", "val_a2t_R@1", "val_a2t_mAP@10", "val_t2a_median_rank"} <= set(
        history[0])
    best = max(h["val_a2t_R@1"] for h in history)
    assert evaluate(est, audio[160:], text[160:])["a2t_R@1"] == pytest.approx(best)
    with pytest.warns(UserWarning, match="validation_fraction=0.3 is not used"):
        LTMRetriever(**{**FAST, "max_epochs": 1, "validation_fraction": 0.3}).fit(
            audio[:60], text[:60], eval_set=(audio[160:], text[160:]))
    with pytest.raises(ValueError, match="eval_set must be"):
        LTMRetriever(**FAST).fit(audio[:60], text[:60], eval_set=(audio[160:],))


# ------------------------------------------------------------------ warm starts
def test_warm_start_continues_the_fitted_model(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 4}).fit(audio[:160], text[:160])
    first = [h["train_loss"] for h in est.history_]
    weights = {k: v.clone() for k, v in est.model_.state_dict().items()}
    est.set_params(warm_start=True, max_epochs=3).fit(audio[:160], text[:160])
    assert [h["epoch"] for h in est.history_] == list(range(7)) and est.n_epochs_ == 7
    again = est.history_[4]["train_loss"]
    assert again < first[0] and abs(again - first[-1]) < abs(again - first[0]) / 3
    assert any(not torch.equal(v, weights[k]) for k, v in est.model_.state_dict().items())
    cold = LTMRetriever(**{**FAST, "max_epochs": 3}).fit(audio[:160], text[:160])
    assert cold.history_[0]["train_loss"] > again  # a new model starts from scratch


def test_fine_tuning_a_loaded_model_keeps_the_scratch_vocabulary(data, tmp_path):
    audio, _, groups = data
    words = ["dog", "cat", "rain", "car", "bell", "bird", "wind", "door"]
    captions = [f"a {words[g % 8]} then {words[(g // 8) % 8]}" for g in groups]
    est = LTMRetriever(**{**FAST, "max_epochs": 4}, text_encoder="scratch")
    est.fit(audio[:100], captions[:100])
    vocabulary = list(est.model_.text_encoder.get_config()["vocabulary"])
    est.save(tmp_path / "m.pt")
    loaded = LTMRetriever.load(tmp_path / "m.pt").set_params(warm_start=True, max_epochs=2)
    # the same pairs, a few with a word never seen in the first fit
    new_captions = [c + " loudly" if i < 10 else c for i, c in enumerate(captions[:100])]
    loaded.fit(audio[:100], new_captions)
    assert loaded.model_.text_encoder.get_config()["vocabulary"] == vocabulary
    assert "loudly" not in vocabulary
    assert loaded.n_epochs_ == 6
    first, last, again = (est.history_[0]["train_loss"], est.history_[-1]["train_loss"],
                          loaded.history_[4]["train_loss"])
    assert again < first and abs(again - last) < abs(again - first)  # goes on from the end
    with pytest.raises(ValueError, match="built with embedding_dim=16; embedding_dim is now 8"):
        loaded.set_params(embedding_dim=8).fit(audio[:10], captions[:10])
    with pytest.raises(ValueError, match=r"whose metric is Euclidean\(\); metric is now Cosine"):
        loaded.set_params(embedding_dim=16, metric="cosine").fit(audio[:10], captions[:10])


# ------------------------------------------------------------------ schedules and paths
def test_history_records_each_group_rate_under_a_cosine_schedule(data):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 5}, lr_schedule="cosine",
                       metric=Mahalanobis(learning_rate=1e-3))
    est.set_params(lr_schedule__warmup_fraction=0.2).fit(audio[:160], text[:160])
    heads = [h["lr_head"] for h in est.history_]
    metric = [h["lr_metric"] for h in est.history_]
    assert heads[0] == pytest.approx(3e-3) and heads[-1] < 1e-4  # warm-up done, decayed
    assert all(b < a for a, b in zip(heads[1:], heads[2:]))
    np.testing.assert_allclose(np.array(metric) / np.array(heads), 1e-3 / 3e-3)


def test_unwritable_checkpoint_path_is_refused_before_training(data, tmp_path):
    audio, text, _ = data
    started = []

    class Started(Callback):
        def on_train_begin(self, trainer, **kw):
            started.append(True)

    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=r"Checkpoint\(path\)=.* cannot be written"):
        LTMRetriever(**FAST, callbacks=[Started(), Checkpoint(a_file / "c.ckpt")]).fit(
            audio[:60], text[:60])
    assert started == []


# ------------------------------------------------------------------ format 1
def _v1_payload(est):
    """A model file as sklearn-ltm 0.1 wrote it (format 1: 41 flat parameters)."""
    old_params = dict(
        audio_encoder="auto", text_encoder="auto", audio_encoder_weights=None,
        metric="mahalanobis", metric_rank=None, loss="mltm", epsilon=0.05, mass_fraction=1.0,
        sinkhorn_max_iter=1000, sinkhorn_tol=1e-6, noise_ratio=0.0, embedding_dim=16,
        hidden_dim=None, normalize_cost=True, group_aware=True, temperature=0.07, margin=0.2,
        batch_size=32, max_epochs=6, learning_rate=3e-3, encoder_learning_rate=None,
        metric_learning_rate=None, weight_decay=0.0, gradient_clip=2.0, validation_fraction=0.0,
        early_stopping=True, patience=5, freeze_audio_encoder=False, freeze_text_encoder=False,
        cache_frozen_encoders=True, sample_rate=None, max_audio_seconds=10.0,
        text_max_length=64, text_pooling="cls", on_bad_audio="raise", num_workers=0,
        mixed_precision=False, checkpoint_path=None, device="cpu", random_state=0, verbose=0)
    return {
        "format": "sklearn-ltm-model", "format_version": 1, "sklearn_ltm_version": "0.1.0",
        "params": old_params, "audio_config": None, "text_config": None,
        "dims": {"audio_dim": est._architecture["audio_dim"],
                 "text_dim": est._architecture["text_dim"]}, "audio_input_kind": "features",
        "text_input_kind": "features", "n_features_in": est.n_features_in_,
        "history": est.history_,
        "state_dict": {k: v.detach().cpu() for k, v in est.model_.state_dict().items()},
    }


def test_format_1_models_still_load(data, tmp_path):
    audio, text, _ = data
    # format 1 models were trained with the former defaults (Mahalanobis, squared cost)
    est = LTMRetriever(**FAST, metric="mahalanobis", epsilon=0.05,
                       loss=MLTM(sqrt_cost=False)).fit(audio[:100], text[:100])
    torch.save(_v1_payload(est), tmp_path / "v1.pt")
    old = LTMRetriever.load(tmp_path / "v1.pt")
    np.testing.assert_array_equal(old.transform(audio[:20]), est.transform(audio[:20]))
    np.testing.assert_array_equal(old.embed_text(text[:20]), est.embed_text(text[:20]))
    params = old.get_params()
    assert params["loss__max_iter"] == 1000 and params["early_stopping__patience"] == 5
    assert params["optimizer__gradient_clip"] == 2.0 and params["epsilon"] == 0.05
    # the squared cost they were trained on, not today's default root
    assert params["loss__sqrt_cost"] is False and old.loss_.sqrt_cost is False
    assert old.metric_.registered_name() == "mahalanobis"
    payload = _v1_payload(est)
    payload["format_version"] = 7
    torch.save(payload, tmp_path / "v7.pt")
    with pytest.raises(ValueError, match="model format 7 .*reads formats 1, 2"):
        LTMRetriever.load(tmp_path / "v7.pt")


def test_models_saved_before_sqrt_cost_keep_the_squared_cost(data, tmp_path):
    audio, text, _ = data
    est = LTMRetriever(**{**FAST, "max_epochs": 1}, loss=MLTM(sqrt_cost=False)).fit(
        audio[:40], text[:40])
    est.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    # as a file of format 2 written before the option existed: loss="mltm", no sqrt_cost
    payload["params"]["loss"] = "mltm"
    del payload["fitted_components"]["loss"]["params"]["sqrt_cost"]
    torch.save(payload, tmp_path / "old.pt")
    old = LTMRetriever.load(tmp_path / "old.pt")
    assert old.get_params()["loss__sqrt_cost"] is False and old.loss_.sqrt_cost is False
    # a file that names the loss with today's default keeps today's default
    assert LTMRetriever.load(tmp_path / "m.pt").loss_.sqrt_cost is False
    LTMRetriever(**{**FAST, "max_epochs": 1}).fit(audio[:40], text[:40]).save(tmp_path / "n.pt")
    assert LTMRetriever.load(tmp_path / "n.pt").get_params()["loss__sqrt_cost"] is True


def test_loss_component_parameters_reach_the_loss(data):
    audio, text, _ = data
    from sklearn.exceptions import ConvergenceWarning

    # the former defaults, on which 7 iterations are known to miss tol=1e-3
    est = LTMRetriever(**{**FAST, "max_epochs": 1}, metric="mahalanobis", epsilon=0.05,
                       loss=MLTM(max_iter=7, tol=1e-3, sqrt_cost=False))
    with pytest.warns(ConvergenceWarning, match="max_iter=7"):
        est.fit(audio[:64], text[:64])
    assert est.loss_.max_iter == 7
