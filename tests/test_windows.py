"""Long recordings: windows, their times, pooling, windowed search, and bad window options."""

import numpy as np
import pytest
import soundfile as sf
from _search_helpers import CLIP_SECONDS, PITCHES, SR, fit_tone_model, tone

from sklearn_ltm import LTMRetriever, SearchIndex
from sklearn_ltm.windows import embed_windows, pool_windows, window_bounds


@pytest.fixture(scope="module")
def model():
    return fit_tone_model()


def test_window_bounds_cover_the_recording():
    starts, stops = window_bounds(1000, 100, 3.0, 2.5)
    assert starts.tolist() == [0, 250, 500, 700] and stops.tolist() == [300, 550, 800, 1000]
    assert window_bounds(80, 100, 1.0)[1].tolist() == [80]  # shorter: one window, all of it


def test_a_window_equal_to_a_clip_gets_the_clips_embedding(model):
    clips = np.stack([tone(250, seed=1), tone(2000, seed=2)])
    win = embed_windows(model, list(clips), window_seconds=CLIP_SECONDS)
    assert len(win) == 2 and win.recording.tolist() == [0, 1]
    np.testing.assert_allclose(win.embeddings, model.transform(clips), atol=1e-5)
    np.testing.assert_allclose(win.start_s, [0.0, 0.0])
    np.testing.assert_allclose(win.end_s, [CLIP_SECONDS, CLIP_SECONDS])


def test_windows_of_a_file_and_of_its_waveform_agree(model, tmp_path):
    wave = np.concatenate([tone(250, seed=3), tone(3200, seed=4), tone(1000, seed=5)])
    path = tmp_path / "long.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    from_file = model.transform_windows([str(path)], window_seconds=0.5, hop_seconds=0.25)
    from_wave = model.transform_windows([wave], window_seconds=0.5, hop_seconds=0.25)
    np.testing.assert_allclose(from_file.embeddings, from_wave.embeddings, atol=1e-5)
    np.testing.assert_allclose(from_file.start_s, np.arange(5) * 0.25)
    np.testing.assert_allclose(from_file.end_s, np.arange(5) * 0.25 + 0.5)


def test_transform_pools_windows(model):
    rec = [np.concatenate([tone(250, seed=6), tone(2000, seed=7)]), tone(1000, seed=8)]
    win = model.transform_windows(rec, window_seconds=0.5)
    mean = model.transform(rec, window_seconds=0.5, pooling="mean")
    assert mean.shape == (2, win.embeddings.shape[1])
    # the metric map is linear here (Mahalanobis), so mean pooling = mean of the windows
    np.testing.assert_allclose(mean[0], win.embeddings[win.recording == 0].mean(0), atol=1e-5)
    np.testing.assert_allclose(mean[1], win.embeddings[win.recording == 1][0], atol=1e-5)
    top = model.transform(rec, window_seconds=0.5, pooling="max")
    np.testing.assert_allclose(top[1], mean[1], atol=1e-5)  # one window: max = mean
    assert not np.allclose(top[0], mean[0])
    direct = pool_windows(model, rec, window_seconds=0.5, pooling="max")
    np.testing.assert_allclose(direct, top, atol=1e-6)


def test_the_window_holding_the_target_ranks_first(model, tmp_path):
    """A recording made of clips; the query's clip is found, and where it is."""
    order = ["a beep", "a low hum", "a high squeal", "a whistle", "a beep"]
    recording = np.concatenate([tone(PITCHES[c] * 1.005, seed=20 + i)
                                for i, c in enumerate(order)])
    path = tmp_path / "street.wav"
    sf.write(path, recording, SR, subtype="FLOAT")
    other = tmp_path / "other.wav"  # a second recording without the target sound
    sf.write(other, np.concatenate([tone(PITCHES["a beep"], seed=40),
                                    tone(PITCHES["a low hum"], seed=41)]), SR, subtype="FLOAT")
    index = SearchIndex(model).add([str(path), str(other)], window_seconds=CLIP_SECONDS,
                                   hop_seconds=CLIP_SECONDS / 4)
    assert len(index) == 4 * 4 + 1 + 4 + 1  # both files: every quarter clip, to the end
    for target in ("a whistle", "a high squeal"):
        hit = index.search([target], k=3).hits(0)[0]
        source, start, end, distance = hit
        at = order.index(target) * CLIP_SECONDS
        assert source == str(path) and start == pytest.approx(at) and distance >= 0
        assert end == pytest.approx(at + CLIP_SECONDS)


@pytest.mark.parametrize("kwargs, match", [
    ({"window_seconds": 0.01}, r"shorter than the audio encoder's receptive field \(256 "
                               r"samples = 0.032 s"),
    ({"window_seconds": 0.5, "hop_seconds": 0}, "hop_seconds=0 is not accepted"),
    ({"window_seconds": 0.5, "hop_seconds": -1.0}, "hop_seconds=-1.0 is not accepted"),
    ({"window_seconds": -2}, "window_seconds=-2 is not accepted"),
])
def test_bad_window_options_are_refused_before_any_work(model, tmp_path, kwargs, match,
                                                         monkeypatch):
    cache = tmp_path / "cache"
    calls = []
    monkeypatch.setattr(model, "transform", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match=match):
        SearchIndex(model, cache_dir=cache).add([tone(250)], **kwargs)
    with pytest.raises(ValueError, match=match):
        embed_windows(model, [tone(250)], **kwargs)
    assert not cache.exists() and calls == []


def test_feature_models_cannot_window():
    rng = np.random.default_rng(0)
    est = LTMRetriever(embedding_dim=3, max_epochs=1, batch_size=10,
                       validation_fraction=0.0).fit(rng.normal(size=(20, 5)),
                                                    rng.normal(size=(20, 4)))
    with pytest.raises(ValueError, match="fitted on audio features"):
        est.transform(rng.normal(size=(2, 5)), window_seconds=1.0)
    with pytest.raises(ValueError, match="hop_seconds=0.5 needs window_seconds"):
        est.transform(rng.normal(size=(2, 5)), hop_seconds=0.5)


def test_bad_recordings_and_pooling(model):
    with pytest.raises(ValueError, match=r"recordings\[1\] has shape \(2, 2\)"):
        embed_windows(model, [tone(250), np.zeros((2, 2))], window_seconds=0.5)
    with pytest.raises(ValueError, match="pooling='median'"):
        model.transform([tone(250)], window_seconds=0.5, pooling="median")
    with pytest.raises(TypeError, match="single path"):
        embed_windows(model, "one.wav", window_seconds=0.5)
