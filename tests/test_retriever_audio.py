"""LTMRetriever on raw audio: file paths, waveforms, frozen-encoder caching, real clips."""

import numpy as np
import pytest
import soundfile as sf
import torch

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import ModuleAudio, PANNs

SR = 16000
SMALL = dict(embedding_dim=8, batch_size=4, max_epochs=2, validation_fraction=0.0,
             random_state=0, device="cpu")


def cnn10(**kw):
    """The PANNs CNN10 on 1-second crops."""
    return PANNs("cnn10", max_seconds=1.0, **kw)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    paths, captions = [], []
    rng = np.random.default_rng(0)
    for i in range(6):
        t = np.arange(SR) / SR
        wave = 0.4 * np.sin(2 * np.pi * (300 + 200 * i) * t) if i % 2 == 0 else \
            0.2 * rng.normal(size=SR).clip(-2, 2) / 2
        path = root / f"c{i}.{'wav' if i < 4 else 'flac'}"
        sf.write(path, np.stack([wave, wave], 1), SR)  # stereo: downmixed when read
        for j in range(2):  # two captions per clip
            paths.append(str(path))
            captions.append(f"{'a tone' if i % 2 == 0 else 'static noise'} variant {j} id {i}")
    return paths, captions


def test_fits_on_file_paths_and_caption_strings_end_to_end(clips):
    paths, captions = clips
    est = LTMRetriever(audio_encoder=cnn10(), text_encoder="scratch", **SMALL)
    est.fit(paths, captions)
    assert est.audio_input_kind_ == "paths" and est.text_input_kind_ == "strings"
    emb = est.transform(paths[::2])
    assert emb.shape == (6, 8) and np.isfinite(emb).all()
    # eval mode: no SpecAugment or dropout at transform time
    np.testing.assert_array_equal(emb, est.transform(paths[::2]))
    assert len(est.history_) == 2 and np.isfinite(est.history_[-1]["train_loss"])


def test_worker_processes_read_files_with_the_same_result(clips):
    paths, captions = clips
    main = LTMRetriever(audio_encoder=cnn10(), **SMALL).fit(paths, captions)
    workers = LTMRetriever(audio_encoder=cnn10(num_workers=2), **SMALL).fit(paths, captions)
    np.testing.assert_allclose(workers.transform(paths[:4]), main.transform(paths[:4]),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"'num_workers' parameter of PANNs .*Got -1 instead"):
        LTMRetriever(audio_encoder=cnn10(num_workers=-1)).fit(paths, captions)


def test_default_audio_encoder_for_paths_is_cnn10(clips):
    paths, captions = clips
    est = LTMRetriever(**{**SMALL, "max_epochs": 1}).fit(paths, captions)
    assert type(est.model_.audio_encoder).__name__.lower().startswith("cnn10")
    assert repr(est.audio_encoder_) == "PANNs()"  # "auto" on files resolves to CNN10


def test_waveform_arrays_resampled_from_sample_rate(clips):
    paths, captions = clips
    import soundfile

    waves = np.stack([soundfile.read(p)[0].mean(1) for p in paths[::2]]).astype(np.float32)
    waves = np.repeat(waves, 2, axis=0)
    # a frozen encoder, so that tiny resampling differences are not amplified by training
    est = LTMRetriever(audio_encoder=cnn10(sample_rate=SR, freeze=True),
                       **SMALL).fit(waves, captions)
    assert est.audio_input_kind_ == "waveforms"
    from_files = LTMRetriever(audio_encoder=cnn10(freeze=True), **SMALL).fit(paths, captions)
    # the same audio at the same model rate: files and arrays give the same embeddings
    expected = from_files.transform(paths[:4:2])
    np.testing.assert_allclose(est.transform(waves[:4:2]), expected, atol=1e-2)
    # control: the same arrays taken as if already at the model rate give other embeddings
    unresampled = LTMRetriever(audio_encoder=cnn10(freeze=True), **SMALL).fit(waves, captions)
    assert np.abs(unresampled.transform(waves[:4:2]) - expected).max() > 0.05


def test_frozen_encoder_runs_once_per_clip_and_is_not_trained(clips):
    paths, captions = clips
    calls = {"n": 0}

    class Counting(torch.nn.Module):
        sample_rate = 32000
        output_dim = 16

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(64, 16)

        def forward(self, waves, lengths=None):
            calls["n"] += waves.shape[0]
            frames = waves[:, : 64 * (waves.shape[1] // 64)].reshape(waves.shape[0], -1, 64)
            return self.proj(frames.abs().mean(1))

    est = LTMRetriever(audio_encoder=ModuleAudio(Counting(), freeze=True, max_seconds=1.0),
                       **{**SMALL, "max_epochs": 4})
    before = {k: v.clone() for k, v in est.audio_encoder.module.state_dict().items()}
    est.fit(paths, captions)
    assert calls["n"] == 6  # 6 distinct clips, encoded once for 4 epochs
    calls["n"] = 0
    uncached = LTMRetriever(audio_encoder=ModuleAudio(Counting(), freeze=True, cache=False,
                                                      max_seconds=1.0),
                            **{**SMALL, "max_epochs": 4})
    uncached.fit(paths, captions)
    assert calls["n"] >= 4 * 6  # every epoch encodes every clip again
    # same initial weights, same batches: the cache changes the cost, not the result
    shared = Counting()
    cached = LTMRetriever(audio_encoder=ModuleAudio(shared, freeze=True, max_seconds=1.0),
                          **{**SMALL, "max_epochs": 4}).fit(paths, captions)
    recomputed = LTMRetriever(audio_encoder=ModuleAudio(shared, freeze=True, cache=False,
                                                        max_seconds=1.0),
                              **{**SMALL, "max_epochs": 4}).fit(paths, captions)
    np.testing.assert_allclose(cached.transform(paths[:4]), recomputed.transform(paths[:4]),
                               rtol=1e-4, atol=1e-5)
    for k, v in est.model_.audio_encoder.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_unfrozen_encoder_is_trained_on_a_copy(clips):
    from sklearn_ltm.encoders import build_audio_encoder

    paths, captions = clips
    torch.manual_seed(0)
    module = build_audio_encoder("cnn10")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    est = LTMRetriever(audio_encoder=ModuleAudio(module, learning_rate=1e-3, max_seconds=1.0),
                       **SMALL)
    est.fit(paths, captions)
    after = est.model_.audio_encoder.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before
               if before[k].is_floating_point())
    for k, v in module.state_dict().items():  # the user's module is untouched
        torch.testing.assert_close(v, before[k])


def test_missing_and_corrupt_files_named_before_training(clips, tmp_path):
    paths, captions = clips
    with pytest.raises(ValueError, match="nope.wav"):
        LTMRetriever(audio_encoder=cnn10(), **SMALL).fit(paths[:-1] + [str(tmp_path / "nope.wav")],
                                                         captions)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    with pytest.raises(ValueError, match="bad.wav"):
        LTMRetriever(audio_encoder=cnn10(), **SMALL).fit(paths[:-1] + [str(bad)], captions)


def test_bad_files_can_be_skipped_with_one_warning(clips, tmp_path):
    paths, captions = clips
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable audio file\(s\) \(3 pairs\)"):
        est = LTMRetriever(audio_encoder=cnn10(on_bad_file="skip"),
                           **{**SMALL, "max_epochs": 1}).fit(
            paths + [str(bad), str(bad), str(tmp_path / "gone.wav")],
            captions + ["x", "y", "z"])
    assert est.n_epochs_ == 1


def test_save_load_with_a_named_audio_encoder(clips, tmp_path):
    paths, captions = clips
    est = LTMRetriever(audio_encoder=cnn10(), **{**SMALL, "max_epochs": 1}).fit(paths, captions)
    est.save(tmp_path / "m.pt")
    other = LTMRetriever.load(tmp_path / "m.pt")
    np.testing.assert_allclose(other.transform(paths[:2]), est.transform(paths[:2]),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_real_audiocaps_clips(shared_data):
    import warnings

    from sklearn_ltm.datasets import load_audiocaps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 962 clips of the CSV are not here
        data = load_audiocaps(shared_data / "audiocaps", "test", on_missing="drop")
    est = LTMRetriever(audio_encoder=PANNs("cnn10", freeze=True, max_seconds=2.0),
                       embedding_dim=16, batch_size=16, max_epochs=2, validation_fraction=0.0,
                       random_state=0, device="cpu")
    est.fit(data.audio, data.captions)
    emb = est.transform(sorted(set(data.audio)))
    assert emb.shape == (13, 16) and np.isfinite(emb).all()
