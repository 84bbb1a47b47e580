"""Each training callback on its own."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from test_trainer import _setup

from sklearn_ltm.components import ConstantLR, CosineLR, StepLR
from sklearn_ltm.training import (
    Checkpoint,
    EarlyStopping,
    FrozenEncoderCache,
    LRScheduler,
    NaNGuard,
    ProgressBar,
    ValidationScoring,
    check_writable,
)


def test_nan_guard_stops_on_a_non_finite_loss():
    trainer, data = _setup(callbacks=[NaNGuard()])
    trainer.loss_fn = lambda cost, groups: cost.sum() * float("nan")
    with pytest.raises(FloatingPointError, match="became nan at epoch 0"):
        trainer.fit(data)


@pytest.mark.parametrize("schedule", [ConstantLR(), CosineLR(warmup_fraction=0.25),
                                      StepLR(step_epochs=1, gamma=0.5)])
def test_lr_scheduler_scales_every_group_per_batch(schedule):
    seen = []

    class Spy:
        order = 1  # after the scheduler, before the step

        def on_batch_begin(self, trainer, *, step, **kw):
            seen.append({g["name"]: g["lr"] for g in trainer.optimizer.param_groups})

    trainer, data = _setup(max_epochs=4, callbacks=[LRScheduler(schedule), Spy()])
    history = trainer.fit(data)
    total, per_epoch = 12, 3
    for step, rates in enumerate(seen):
        factor = schedule.factor(step, total, per_epoch)
        assert rates["head"] == pytest.approx(1e-2 * factor)
        assert rates["metric"] == pytest.approx(5e-3 * factor)  # each from its own base
    # history holds each group's rate of the epoch's last batch
    for epoch, record in enumerate(history):
        assert record["lr_metric"] == pytest.approx(seen[3 * epoch + 2]["metric"])
    if isinstance(schedule, CosineLR):
        assert seen[0]["head"] == pytest.approx(1e-2 / 3) and seen[2]["head"] == 1e-2
        assert seen[-1]["head"] < 1e-3
    if isinstance(schedule, StepLR):
        assert [r["lr_head"] for r in history] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])


def _scripted(scores):
    it = iter(scores)
    return ValidationScoring(lambda model: {"t2a_mean_recall": next(it),
                                            "t2a_median_rank": 1.0})


def test_validation_scoring_adds_prefixed_scores():
    trainer, data = _setup(max_epochs=2, callbacks=[_scripted([0.1, 0.2])])
    history = trainer.fit(data)
    assert [r["val_t2a_mean_recall"] for r in history] == [0.1, 0.2]


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    snapshots = []

    class Snap:
        order = 30

        def on_epoch_end(self, trainer, *, model, **kw):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    stopper = EarlyStopping(patience=2)
    trainer, data = _setup(max_epochs=10,
                           callbacks=[_scripted([0.1, 0.5, 0.4, 0.3, 0.9]), stopper, Snap()])
    history = trainer.fit(data)
    assert len(history) == 4  # best at epoch 1, two epochs without improvement
    assert stopper.best_epoch_ == 1
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k


def test_early_stopping_on_a_rank_prefers_lower_and_names_missing_monitors():
    ranks = iter([5.0, 3.0, 4.0, 6.0])
    scorer = ValidationScoring(lambda model: {"a2t_median_rank": next(ranks)})
    stopper = EarlyStopping(monitor="a2t_median_rank", patience=2, restore_best=False)
    trainer, data = _setup(max_epochs=10, callbacks=[scorer, stopper])
    assert len(trainer.fit(data)) == 4 and stopper.best_epoch_ == 1
    trainer, data = _setup(max_epochs=2, callbacks=[_scripted([0.1, 0.2]),
                                                    EarlyStopping(monitor="a2t_R@1")])
    with pytest.raises(ValueError, match="'val_a2t_R@1' is not among the validation scores"):
        trainer.fit(data)
    trainer, data = _setup(max_epochs=2, callbacks=[EarlyStopping()])
    assert len(trainer.fit(data)) == 2  # no validation: nothing to monitor


def test_checkpoint_every_n_steps_and_each_epoch_atomically(tmp_path):
    path = tmp_path / "run.ckpt"
    written = []

    class Watch:
        order = 90

        def on_epoch_begin(self, trainer, *, epoch, **kw):
            if epoch == 1:  # the checkpoint of epoch 0's end
                state = torch.load(path, weights_only=True)
                written.append(("epoch 1 begins", state["epoch"], state["step_count"]))

        def on_batch_end(self, trainer, *, step, **kw):
            if path.exists():
                written.append((step, torch.load(path, weights_only=True)["step_count"]))

    trainer, data = _setup(max_epochs=2, callbacks=[Checkpoint(path, every_n_steps=2), Watch()])
    trainer.fit(data)
    # 3 steps an epoch: step checkpoints at 2, 4, 6 and one at each epoch end
    assert written == [(2, 2), (3, 2), ("epoch 1 begins", 1, 3), (4, 4), (5, 4), (6, 6)]
    final = torch.load(path, weights_only=True)
    assert final["epoch"] == 2 and final["batch_in_epoch"] == 0
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]  # no temporary files left


def test_unwritable_checkpoint_paths_are_refused_before_training(tmp_path):
    Checkpoint(tmp_path / "missing" / "x.ckpt").check()  # a missing folder is created
    assert not (tmp_path / "missing").exists()  # ... when the file is written, not before
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path, "Checkpoint(path)")
    with pytest.raises(ValueError, match="is a directory"):
        Checkpoint(tmp_path).check()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(ValueError, match="cannot be written"):
            Checkpoint(locked / "x.ckpt").check()
    finally:
        locked.chmod(0o700)


def test_frozen_encoder_cache_encodes_once_and_the_loop_uses_it():
    from sklearn_ltm.batching import AudioBatcher, TextBatcher
    from sklearn_ltm.losses import MLTMLoss
    from sklearn_ltm.model import RetrievalModel
    from sklearn_ltm.training import Trainer, TrainingData, param_groups

    calls = {"n": 0}

    class Words(torch.nn.Module):
        output_dim = 3

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 3)

        def tokenize(self, texts):
            return {"ids": torch.tensor([[len(t) % 10] for t in texts])}

        def forward(self, tokens):
            calls["n"] += tokens["ids"].shape[0]
            return self.emb(tokens["ids"]).mean(1)

    rng = np.random.default_rng(0)
    captions = [f"caption {'x' * i}" for i in range(12)]
    model = RetrievalModel(None, Words(), 4, 3, embedding_dim=2, metric="euclidean")
    data = TrainingData(AudioBatcher("features", rng.normal(size=(12, 4)).astype("f4")),
                        TextBatcher("strings", captions, model.text_encoder.tokenize),
                        np.arange(12), np.arange(12))
    trainer = Trainer(model, MLTMLoss(), torch.optim.Adam(param_groups(model, dict.fromkeys(
        ["head", "metric", "audio_encoder", "text_encoder"], 1e-2), frozen={"text"})),
        batch_size=4, max_epochs=3, device="cpu", rng=rng, frozen={"text"},
        callbacks=[FrozenEncoderCache()])
    before = model.text_encoder.emb.weight.clone()
    trainer.fit(data)
    assert calls["n"] == 12  # once per caption, not once per epoch
    assert torch.equal(model.text_encoder.emb.weight, before)
    assert trainer.encoder_cache == {}  # released at the end


def test_progress_bar_shows_epochs_on_the_main_process_only(capsys):
    trainer, data = _setup(max_epochs=2, callbacks=[ProgressBar()])
    trainer.fit(data)
    err = capsys.readouterr().err
    assert "m-LTM training" in err and "2/2" in err
    trainer, data = _setup(max_epochs=2, callbacks=[ProgressBar()])
    trainer.is_main_process = False
    trainer.fit(data)
    assert "m-LTM training" not in capsys.readouterr().err


def test_lr_schedule_factors():
    assert CosineLR(warmup_fraction=0.0).factor(0, 10, 5) == 1.0
    assert math.isclose(CosineLR(warmup_fraction=0.0, min_factor=0.1).factor(10, 10, 5), 0.1)
    assert StepLR(step_epochs=2, gamma=0.1).factor(3, 100, 2) == 0.1 ** 0
    assert StepLR(step_epochs=2, gamma=0.1).factor(4, 100, 2) == pytest.approx(0.1)
