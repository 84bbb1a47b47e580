"""Exact large batches wired into the estimator: ``optimizer__micro_batch_size`` and the
Trainer's :class:`~sklearn_ltm.training.LargeBatchStep`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sklearn_ltm import LTMRetriever
from sklearn_ltm.batching import AudioBatcher, TextBatcher
from sklearn_ltm.losses import MLTMLoss
from sklearn_ltm.model import RetrievalModel
from sklearn_ltm.training import Batch, LargeBatchStep, Trainer, TrainingData, param_groups


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return z @ rng.normal(size=(4, 7)), z @ rng.normal(size=(4, 5))


def _fit(**params):
    audio, text = _data()
    est = LTMRetriever(embedding_dim=4, batch_size=16, max_epochs=3, learning_rate=1e-2,
                       random_state=0, device="cpu")
    return est.set_params(**params).fit(audio, text)


def test_micro_batched_fit_trains_the_same_weights():
    one = _fit()
    micro = _fit(optimizer__micro_batch_size=5)
    assert micro.get_params()["optimizer__micro_batch_size"] == 5
    loss_gap = max(abs(a["train_loss"] - b["train_loss"])
                   for a, b in zip(micro.history_, one.history_))
    ref, got = one.model_.state_dict(), micro.model_.state_dict()
    weight_gap = max(float((got[k] - ref[k]).abs().max()) for k in ref)
    print(f"micro-batch 5 of 16: max |loss diff| {loss_gap:.3g}, max |weight diff| "
          f"{weight_gap:.3g}")
    assert loss_gap <= 1e-5 and weight_gap <= 1e-5


@pytest.mark.parametrize("micro, match", [(17, "micro_batch_size=17 is larger than "
                                                "batch_size=16"),
                                          (0, "micro_batch_size=0 is below 1")])
def test_micro_batch_size_out_of_range_is_refused_before_any_work(micro, match):
    est = LTMRetriever(batch_size=16).set_params(optimizer__micro_batch_size=micro)
    with pytest.raises(ValueError, match=match):
        est.fit(np.zeros((3, 2)), ["a", "b"])  # bad data too: the parameter is checked first
    assert not hasattr(est, "model_")


def test_micro_batch_size_is_a_nested_parameter_that_clones_and_saves(tmp_path):
    est = LTMRetriever(optimizer="adamw").set_params(optimizer__micro_batch_size=8)
    assert clone(est).get_params()["optimizer__micro_batch_size"] == 8
    est.set_params(optimizer__micro_batch_size=None)
    assert est.optimizer.micro_batch_size is None
    fitted = _fit(optimizer__micro_batch_size=8, max_epochs=1)
    fitted.save(tmp_path / "m.pt")
    loaded = LTMRetriever.load(tmp_path / "m.pt")
    assert loaded.get_params()["optimizer__micro_batch_size"] == 8


def _trainer(step, seed=0):
    rng = np.random.default_rng(seed)
    audio, text = rng.normal(size=(12, 6)), rng.normal(size=(12, 5))
    torch.manual_seed(seed)
    model = RetrievalModel(None, None, 6, 5, embedding_dim=4, metric="mahalanobis",
                           dropout=0.3).double()
    data = TrainingData(AudioBatcher("features", audio), TextBatcher("features", text),
                        clip_of_pair=np.repeat(np.arange(6), 2), train_pairs=np.arange(12))
    optimizer = torch.optim.SGD(param_groups(model, dict.fromkeys(
        ["head", "metric", "audio_encoder", "text_encoder"], 0.1)))
    trainer = Trainer(model, MLTMLoss(), optimizer, batch_size=12, max_epochs=1,
                      device=torch.device("cpu"), rng=rng, step=step)
    trainer.data = data
    trainer._set_train_mode()
    pairs = np.arange(12)
    groups = data.clip_of_pair[pairs]
    clips, inverse = np.unique(groups, return_inverse=True)
    return trainer, Batch(pairs=pairs, clips=clips, inverse=inverse, groups=groups,
                          audio=data.audio(clips))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_the_two_pass_step_gives_the_gradient_of_one_pass_with_dropout_in_float64():
    """Dropout draws the same masks in both passes: the gradient equals that of one pass
    with a graph over the same micro-batches (audio first, then text) to 1e-5."""
    micro = 4
    trainer, batch = _trainer(LargeBatchStep(micro))
    torch.manual_seed(1)
    loss = trainer.step(trainer, batch)
    got = _grads(trainer.model)
    assert next(iter(got.values())).dtype == torch.float64

    reference, batch = _trainer(None)
    torch.manual_seed(1)
    raw = batch.audio[0]
    audio = torch.cat([reference.embed_audio(Batch(batch.pairs, batch.clips[s], None, None,
                                                   (raw[s], None)))
                       for s in (slice(0, 4), slice(4, 6))])
    text = torch.cat([reference.embed_text(batch, pairs=batch.pairs[s])
                      for s in (slice(0, 4), slice(4, 8), slice(8, 12))])
    ref_loss = reference.loss_from_embeddings(text, audio[torch.as_tensor(batch.inverse)],
                                              torch.as_tensor(batch.groups))
    ref_loss.backward()
    want = _grads(reference.model)
    assert float(abs(loss - ref_loss.detach())) < 1e-10
    assert set(got) == set(want) and len(got) > 4
    gap = max(float((got[name] - want[name]).abs().max()) for name in want)
    print(f"two-pass gradient vs one pass (float64, dropout): max |diff| {gap:.3g}")
    assert gap <= 1e-5
    # dropout is really random here: another seed gives another gradient
    other, batch = _trainer(LargeBatchStep(micro))
    torch.manual_seed(2)
    other.step(other, batch)
    assert any(not torch.allclose(g, _grads(other.model)[n]) for n, g in got.items())


def test_the_cli_has_the_option_and_passes_it_to_the_estimator():
    from sklearn_ltm.cli import _component_params, build_parser

    args = build_parser().parse_args(["train", "--dataset", "csv", "--output", "m.pt",
                                      "--optimizer-micro-batch-size", "8"])
    assert _component_params(args) == {"optimizer__micro_batch_size": 8}
    est = LTMRetriever().set_params(**_component_params(args))
    assert est.get_params()["optimizer__micro_batch_size"] == 8
