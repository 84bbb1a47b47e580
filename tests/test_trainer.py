"""The Trainer on its own: the loop, events, parameter groups and the pluggable step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn_ltm.batching import AudioBatcher, TextBatcher
from sklearn_ltm.losses import MLTMLoss
from sklearn_ltm.model import RetrievalModel
from sklearn_ltm.training import (
    Batch,
    Callback,
    Trainer,
    TrainingData,
    backprop_step,
    param_groups,
)

RATES = {"head": 1e-2, "metric": 5e-3, "audio_encoder": 1e-4, "text_encoder": 1e-4}


def _setup(n=24, seed=0, batch_size=8, max_epochs=3, callbacks=(), step=None):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    audio = (z @ rng.normal(size=(4, 6))).astype(np.float32)
    text = (z @ rng.normal(size=(4, 5))).astype(np.float32)
    torch.manual_seed(seed)
    model = RetrievalModel(None, None, 6, 5, embedding_dim=4, metric="mahalanobis")
    data = TrainingData(AudioBatcher("features", audio), TextBatcher("features", text),
                        clip_of_pair=np.arange(n), train_pairs=np.arange(n))
    optimizer = torch.optim.Adam(param_groups(model, RATES))
    trainer = Trainer(model, MLTMLoss(), optimizer, batch_size=batch_size,
                      max_epochs=max_epochs, device=torch.device("cpu"),
                      rng=np.random.default_rng(seed), callbacks=callbacks, step=step)
    return trainer, data


def test_fit_runs_epochs_of_batches_and_records_each_group_rate():
    trainer, data = _setup()
    history = trainer.fit(data)
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert trainer.step_count == 9 == 3 * trainer.steps_per_epoch()
    assert history[0]["lr_head"] == 1e-2 and history[0]["lr_metric"] == 5e-3
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_param_groups_name_each_part_and_leave_out_frozen_encoders():
    class Enc(torch.nn.Module):
        output_dim = 3

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 3)

        def forward(self, x, lengths=None):
            return self.lin(x)

    model = RetrievalModel(Enc(), None, 3, 5, embedding_dim=4, metric="mahalanobis")
    names = [g["name"] for g in param_groups(model, RATES)]
    assert names == ["head", "audio_encoder", "metric"]
    frozen = param_groups(model, RATES, frozen={"audio"})
    assert [g["name"] for g in frozen] == ["head", "metric"]
    head = {id(p) for p in frozen[0]["params"]}
    assert head == {id(p) for n, p in model.named_parameters() if "_head." in n}


def test_callbacks_receive_every_event_with_history_and_model():
    events = []

    class Recorder(Callback):
        def on_train_begin(self, trainer, *, history, model, **kw):
            events.append(("train_begin", len(history), model is trainer.model))

        def on_epoch_begin(self, trainer, *, epoch, **kw):
            events.append(("epoch_begin", epoch))

        def on_batch_end(self, trainer, *, epoch, step, loss, history, **kw):
            events.append(("batch_end", epoch, step, np.isfinite(loss)))

        def on_epoch_end(self, trainer, *, epoch, record, history, **kw):
            events.append(("epoch_end", epoch, record is history[-1]))

        def on_train_end(self, trainer, *, history, **kw):
            events.append(("train_end", len(history)))

    trainer, data = _setup(max_epochs=2, batch_size=12)
    trainer.callbacks = [Recorder()]
    trainer.fit(data)
    assert events == [
        ("train_begin", 0, True),
        ("epoch_begin", 0), ("batch_end", 0, 1, True), ("batch_end", 0, 2, True),
        ("epoch_end", 0, True),
        ("epoch_begin", 1), ("batch_end", 1, 3, True), ("batch_end", 1, 4, True),
        ("epoch_end", 1, True),
        ("train_end", 2),
    ]


def test_a_callback_can_stop_training():
    class StopAfterFirst(Callback):
        def on_epoch_end(self, trainer, **kw):
            trainer.stop_training = True

    trainer, data = _setup(callbacks=[StopAfterFirst()])
    assert len(trainer.fit(data)) == 1


def test_the_step_is_pluggable():
    """A custom step replaces how a batch's gradients are computed: here a two-pass step
    (embed without a graph, loss gradient w.r.t. the embeddings, re-embed each half with a
    graph and back-propagate its slice) gives the same update as the default step."""
    calls = []

    def counting_step(trainer, batch):
        calls.append(len(batch.pairs))
        return backprop_step(trainer, batch)

    trainer, data = _setup(step=counting_step, max_epochs=1)
    trainer.fit(data)
    assert calls == [8, 8, 8]

    def two_pass_step(trainer: Trainer, batch: Batch):
        with torch.no_grad():
            text, audio, groups = trainer.embed_batch(batch)
        text.requires_grad_(True)
        audio.requires_grad_(True)
        loss = trainer.loss_from_embeddings(text, audio, groups)
        loss.backward()
        halves = np.array_split(np.arange(len(batch.pairs)), 2)
        for rows in halves:
            part = Batch(pairs=batch.pairs[rows], clips=batch.clips, inverse=batch.inverse[rows],
                         groups=batch.groups[rows], audio=batch.audio)
            t = trainer.embed_text(part)
            a = trainer.embed_audio(part)[torch.as_tensor(part.inverse)]
            torch.autograd.backward([t, a], [text.grad[rows], audio.grad[rows]])
        return loss.detach()

    default, data = _setup(max_epochs=2)
    default.fit(data)
    custom, data = _setup(max_epochs=2, step=two_pass_step)
    custom.fit(data)
    for (name, a), b in zip(default.model.state_dict().items(),
                            custom.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_state_dict_round_trip_restores_position_and_weights():
    trainer, data = _setup(max_epochs=1)
    trainer.fit(data)
    state = trainer.state_dict()
    assert state["epoch"] == 1 and state["step_count"] == 3 and state["batch_in_epoch"] == 0
    other, _ = _setup(seed=5, max_epochs=1)
    other.load_state_dict(state)
    for a, b in zip(trainer.model.parameters(), other.model.parameters()):
        assert torch.equal(a, b)
    assert other.history == trainer.history and other.step_count == 3
    with pytest.raises(ValueError, match="not a sklearn-ltm training checkpoint"):
        other.load_state_dict({"model": {}})
