"""Components and registries: nested parameters, clone, GridSearchCV, user registrations
(in-process and through the command line from outside the package), inapplicable settings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _synthetic_features import planted_pairs
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import (
    LOSSES,
    MLTM,
    Contrastive,
    CosineLR,
    HuggingFaceText,
    Mahalanobis,
    PANNs,
    ScratchText,
    registry_of,
    resolve_component,
)
from sklearn_ltm.training import EarlyStopping

REPO = Path(__file__).resolve().parents[1]
FAST = dict(embedding_dim=8, batch_size=30, max_epochs=4, validation_fraction=0.0,
            random_state=0, device="cpu")


def test_top_level_parameters_are_at_most_22():
    assert len(LTMRetriever().get_params(deep=False)) <= 22


def test_deep_params_show_the_default_component_of_a_name():
    params = LTMRetriever(audio_encoder="cnn14", text_encoder="scratch").get_params(deep=True)
    assert params["loss__max_iter"] == 1000 and params["metric__rank"] is None
    assert params["audio_encoder__architecture"] == "cnn14"
    assert params["audio_encoder__weights"] is None
    assert params["text_encoder__max_length"] == 64
    assert params["early_stopping__patience"] == 5
    assert params["lr_schedule"] == "constant" and "optimizer__weight_decay" in params
    # "auto" is resolved from the data in fit: nothing nested yet
    assert not any(k.startswith("audio_encoder__") for k in LTMRetriever().get_params())


def test_set_params_turns_a_name_into_its_component():
    est = LTMRetriever().set_params(loss="contrastive", loss__temperature=0.2,
                                    metric__rank=4, early_stopping__patience=2)
    assert repr(est.loss) == "Contrastive(temperature=0.2)"
    assert repr(est.metric) == "Mahalanobis(rank=4)"
    assert est.early_stopping.patience == 2
    assert est.get_params()["loss__temperature"] == 0.2
    with pytest.raises(ValueError, match="Invalid parameter 'temperature' for estimator MLTM"):
        LTMRetriever().set_params(loss__temperature=0.1)
    with pytest.raises(ValueError, match="audio_encoder='auto' has no parameters"):
        LTMRetriever().set_params(audio_encoder__weights="w.pth")


def test_clone_copies_components_and_keeps_their_parameters():
    est = LTMRetriever(loss=MLTM(max_iter=50), text_encoder=HuggingFaceText("x", pooling="mean"))
    other = clone(est)
    assert other.loss is not est.loss and other.loss.get_params() == est.loss.get_params()
    assert other.get_params()["text_encoder__pooling"] == "mean"


def test_strings_resolve_through_one_registry_per_kind():
    for kind, name, cls in [("audio_encoder", "resnet38", PANNs), ("loss", "mltm", MLTM),
                            ("metric", "mahalanobis", Mahalanobis),
                            ("lr_schedule", "cosine", CosineLR),
                            ("text_encoder", "scratch", ScratchText)]:
        component = resolve_component(kind, name)
        assert isinstance(component, cls) and name in registry_of(kind)
        assert component.registered_name() == name
    with pytest.raises(ValueError, match="loss='hinge' is not accepted; use one of 'mltm'"):
        resolve_component("loss", "hinge")


def test_component_parameters_are_validated_before_training():
    audio, text, _ = planted_pairs(n_clips=20, seed=0)
    with pytest.raises(ValueError, match=r"'temperature' parameter of Contrastive .*Got 0"):
        LTMRetriever(**FAST, loss=Contrastive(temperature=0)).fit(audio, text)
    with pytest.raises(ValueError, match=r"'patience' parameter of EarlyStopping"):
        LTMRetriever(**FAST, early_stopping=EarlyStopping(patience=0)).fit(audio, text)
    with pytest.raises(ValueError, match=r"'monitor' parameter of EarlyStopping"):
        LTMRetriever(**FAST, early_stopping=EarlyStopping(monitor="accuracy")).fit(audio, text)


def test_a_setting_that_does_not_apply_warns():
    audio, text, _ = planted_pairs(n_clips=30, seed=0)
    with pytest.warns(UserWarning, match=r"epsilon=0\.2 does not apply to loss=Contrastive"):
        LTMRetriever(**{**FAST, "max_epochs": 1}, loss="contrastive", epsilon=0.2).fit(audio, text)
    with pytest.warns(UserWarning, match=r"mass_fraction=0\.8 does not apply to loss=Triplet"):
        LTMRetriever(**{**FAST, "max_epochs": 1}, loss="triplet", mass_fraction=0.8).fit(
            audio, text)
    with pytest.warns(UserWarning, match="mixed_precision=True applies to CUDA only"):
        LTMRetriever(**{**FAST, "max_epochs": 1}, mixed_precision=True).fit(audio, text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults with another loss: nothing to say
        LTMRetriever(**{**FAST, "max_epochs": 1}, loss="contrastive").fit(audio, text)


def test_frozen_encoder_learning_rate_warns():
    component = ScratchText(freeze=True, learning_rate=1e-3)
    assert any("does not apply to a frozen encoder" in n
               for n in component.inapplicable_settings())
    assert any("applies only to a frozen encoder" in n
               for n in ScratchText(cache=False).inapplicable_settings())
    assert PANNs(sample_rate=16000).input_settings_notes("paths")
    assert PANNs(num_workers=2).input_settings_notes("waveforms")
    assert not PANNs(sample_rate=16000).input_settings_notes("waveforms")


def test_grid_search_over_mission_and_loss_parameters_in_a_pipeline():
    """epsilon x mass_fraction x noise_ratio for m-LTM, and loss__temperature x noise_ratio
    for the contrastive loss, through a Pipeline's nested names."""
    audio, text, groups = planted_pairs(n_clips=90, seed=4)
    pipe = Pipeline([("scale", StandardScaler()), ("ltm", LTMRetriever(**FAST))])
    grid = GridSearchCV(pipe, [
        {"ltm__loss": ["mltm"], "ltm__epsilon": [0.05, 0.1], "ltm__mass_fraction": [1.0, 0.8],
         "ltm__noise_ratio": [0.0, 0.5]},
        {"ltm__loss": ["contrastive"], "ltm__loss__temperature": [0.05, 0.1],
         "ltm__noise_ratio": [0.0, 0.5]},
    ], cv=GroupKFold(n_splits=2))
    grid.fit(audio, text, groups=groups)
    scores = grid.cv_results_["mean_test_score"]
    assert scores.shape == (12,) and np.all((scores >= 0) & (scores <= 1))
    temps = [p.get("ltm__loss__temperature") for p in grid.cv_results_["params"]]
    assert temps.count(0.05) == 2 and temps.count(0.1) == 2
    assert grid.best_params_["ltm__noise_ratio"] == 0.0
    # the contrastive candidates were really trained with their temperature
    best = grid.best_estimator_.named_steps["ltm"]
    assert best.loss_.get_params() == resolve_component(
        "loss", grid.best_params_["ltm__loss"]).set_params(**(
            {"temperature": grid.best_params_["ltm__loss__temperature"]}
            if "ltm__loss__temperature" in grid.best_params_ else {})).get_params()


# ------------------------------------------------------------------ user registrations
PLUGIN = textwrap.dedent('''
    """A user's components, registered once (outside sklearn_ltm)."""
    import torch
    from sklearn.utils import Bunch

    from sklearn_ltm._validation import Integral, Interval, Real
    from sklearn_ltm.components import (Contrastive, WaveformEncoder, register_audio_encoder,
                                        register_loss)
    from sklearn_ltm.datasets import register_dataset


    class BandEnergies(torch.nn.Module):
        """Log energies of frequency bands: a tiny audio encoder."""

        sample_rate = 16000

        def __init__(self, n_bands=8):
            super().__init__()
            self.output_dim = n_bands
            self.n_bands = n_bands
            self.scale = torch.nn.Parameter(torch.ones(n_bands))

        def forward(self, waveforms, lengths=None):
            spec = torch.fft.rfft(waveforms, dim=1).abs() ** 2
            bands = torch.stack([c.mean(1) for c in spec.chunk(self.n_bands, dim=1)], 1)
            return torch.log1p(bands) * self.scale

        def get_config(self):
            return {"n_bands": self.n_bands}


    @register_audio_encoder("band-energies")
    class BandEnergiesEncoder(WaveformEncoder):
        _parameter_constraints = {**WaveformEncoder._parameter_constraints,
                                  "n_bands": [Interval(Integral, 1, None, closed="left")]}

        def __init__(self, *, n_bands=8, **kwargs):
            super().__init__(**kwargs)
            self.n_bands = n_bands

        def build(self):
            return BandEnergies(self.n_bands)

        def rebuild(self, config):
            return BandEnergies(**config)


    @register_loss("scaled-contrastive")
    class ScaledContrastive(Contrastive):
        _parameter_constraints = {**Contrastive._parameter_constraints,
                                  "scale": [Interval(Real, 0, None, closed="neither")]}

        def __init__(self, *, scale=2.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def build(self, *, epsilon, mass_fraction):
            inner = super().build(epsilon=epsilon, mass_fraction=mass_fraction)
            scale = self.scale
            return lambda cost, groups: scale * inner(cost, groups)


    @register_dataset("tone-folder")
    def read_tones(root, *, split=None, folds=None, on_missing="raise"):
        import pathlib
        files = sorted(str(p) for p in pathlib.Path(root).glob("*.wav"))
        return Bunch(audio=files, captions=[pathlib.Path(f).stem.replace("_", " ")
                                            for f in files])
''')


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    (tmp_path / "ltm_user_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("ltm_user_plugin")
    yield tmp_path
    from sklearn_ltm.components import AUDIO_ENCODERS
    from sklearn_ltm.datasets import DATASETS

    AUDIO_ENCODERS.unregister("band-energies")
    LOSSES.unregister("scaled-contrastive")
    DATASETS.unregister("tone-folder")
    sys.modules.pop(module.__name__, None)


def _tones(folder, n=6, sr=16000):
    folder.mkdir()
    t = np.arange(sr // 2) / sr
    for i in range(n):
        sf.write(folder / f"tone_{'low' if i % 2 else 'high'}_{i}.wav",
                 0.4 * np.sin(2 * np.pi * (300 + 500 * i) * t), sr)
    return folder


def test_registered_components_work_by_name_in_the_estimator(plugin, tmp_path):
    waves = np.random.default_rng(0).normal(size=(12, 8000)).astype(np.float32)
    captions = [f"sound {i % 6} number {i}" for i in range(12)]
    est = LTMRetriever(audio_encoder="band-energies", loss="scaled-contrastive",
                       text_encoder="scratch", embedding_dim=4, batch_size=4, max_epochs=2,
                       validation_fraction=0.0, random_state=0, device="cpu")
    est.set_params(audio_encoder__n_bands=6, loss__scale=3.0)
    est.fit(waves, captions)
    assert est.model_.audio_encoder.output_dim == 6 and est.loss_.scale == 3.0
    est.save(tmp_path / "m.pt")
    other = LTMRetriever.load(tmp_path / "m.pt")
    assert other.get_params()["audio_encoder__n_bands"] == 6
    np.testing.assert_array_equal(other.transform(waves), est.transform(waves))
    with pytest.raises(ValueError, match=r"'scale' parameter of ScaledContrastive"):
        clone(est).set_params(loss__scale=-1.0).fit(waves, captions)


def test_registered_components_work_by_name_on_the_command_line(plugin, tmp_path):
    """From outside the package: a subprocess runs the CLI with --plugin."""
    sounds = _tones(tmp_path / "sounds")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)]),
           "OMP_NUM_THREADS": "1"}
    model = tmp_path / "m.pt"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sklearn_ltm.cli", "--plugin",
                               "ltm_user_plugin", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    out = cli("train", "--dataset", "tone-folder", "--root", str(sounds), "--output", str(model),
              "--audio-encoder", "band-energies", "--audio-encoder-n-bands", "4",
              "--loss", "scaled-contrastive", "--loss-scale", "1.5", "--embedding-dim", "4",
              "--batch-size", "3", "--max-epochs", "2", "--validation-fraction", "0",
              "--random-state", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "trained 2 epochs on 6 pairs" in out.stdout
    out = cli("evaluate", "--model", str(model), "--dataset", "tone-folder", "--root",
              str(sounds), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert '"t2a_R@10": 1.0' in out.stdout
    # without the plugin the names are unknown, and the message says how to fix it
    bare = subprocess.run([sys.executable, "-m", "sklearn_ltm.cli", "evaluate", "--model",
                           str(model), "--dataset", "csv", "--csv", str(tmp_path / "x.csv")],
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert bare.returncode == 2
    assert "band-energies" in bare.stderr and "import the module that registers it" in bare.stderr
