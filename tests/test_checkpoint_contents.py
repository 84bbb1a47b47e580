"""What a training checkpoint holds: no frozen pretrained encoder (the model file has it) and
no optimizer state of frozen parameters; resuming rebuilds the encoder and checks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import ModuleAudio
from sklearn_ltm.training import Checkpoint


class Pretrained(nn.Module):
    """A 'pretrained' waveform encoder: a fixed linear map of the first 64 samples."""

    sample_rate, output_dim = 16000, 16

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(64, 16)

    def forward(self, waveforms, lengths=None):
        return self.proj(waveforms[:, :64])


def _data():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(24, 4))
    waves = (z @ rng.normal(size=(4, 400))).astype(np.float32)
    text = (z @ rng.normal(size=(4, 6))).astype(np.float32)
    return waves, text


def _estimator(module, ckpt, max_epochs, freeze=True, pretrained=True):
    return LTMRetriever(audio_encoder=ModuleAudio(module, freeze=freeze, pretrained=pretrained,
                                                  cache=not freeze),
                        embedding_dim=4, batch_size=8, max_epochs=max_epochs,
                        validation_fraction=0.0, random_state=0, device="cpu",
                        callbacks=[Checkpoint(str(ckpt))])


def test_checkpoint_leaves_out_the_frozen_pretrained_encoder(tmp_path):
    waves, text = _data()
    ckpt = tmp_path / "run.ckpt"
    est = _estimator(Pretrained(), ckpt, 2).fit(waves, text)
    state = torch.load(ckpt, weights_only=True)
    assert not [k for k in state["model"] if k.startswith("audio_encoder.")]
    assert "audio_encoder." in state["excluded_fingerprints"]
    # the optimizer holds state for the trainable parameters only, none of the frozen ones
    trainable = sum(1 for n, p in est.model_.named_parameters()
                    if not n.startswith("audio_encoder."))
    assert len(state["optimizer"]["state"]) == trainable
    n_params = sum(len(g["params"]) for g in state["optimizer"]["param_groups"])
    assert n_params == trainable
    # the model file still has the encoder
    est.save(tmp_path / "m.pt")
    loaded = LTMRetriever.load(tmp_path / "m.pt", audio_encoder=Pretrained())
    np.testing.assert_allclose(loaded.transform(waves), est.transform(waves), atol=1e-6)


def test_resume_rebuilds_the_excluded_encoder_and_matches_the_full_run(tmp_path):
    waves, text = _data()
    full = _estimator(Pretrained(), tmp_path / "full.ckpt", 3).fit(waves, text)
    _estimator(Pretrained(), tmp_path / "part.ckpt", 1).fit(waves, text)
    resumed = _estimator(Pretrained(), tmp_path / "resumed.ckpt", 3).fit(
        waves, text, resume_from=str(tmp_path / "part.ckpt"))
    for (name, a), b in zip(full.model_.state_dict().items(),
                            resumed.model_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_with_another_frozen_encoder_is_refused(tmp_path):
    waves, text = _data()
    _estimator(Pretrained(seed=0), tmp_path / "part.ckpt", 1).fit(waves, text)
    with pytest.raises(ValueError, match="frozen audio encoder differs"):
        _estimator(Pretrained(seed=1), tmp_path / "other.ckpt", 2).fit(
            waves, text, resume_from=str(tmp_path / "part.ckpt"))


def test_a_trained_or_scratch_encoder_stays_in_the_checkpoint(tmp_path):
    waves, text = _data()
    for freeze, pretrained in ((False, True), (True, False)):
        ckpt = tmp_path / f"{freeze}-{pretrained}.ckpt"
        _estimator(Pretrained(), ckpt, 1, freeze=freeze, pretrained=pretrained).fit(waves, text)
        state = torch.load(ckpt, weights_only=True)
        assert any(k.startswith("audio_encoder.") for k in state["model"])
        assert state["excluded_fingerprints"] == {}
