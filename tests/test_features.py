"""Feature extractors for feature mode."""

import numpy as np
import pytest
import soundfile as sf

from sklearn_ltm.features import LogMelSegmentFeatures, PretrainedAudioFeatures


def _sine(freq, n=16000, sr=16000):
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_segment_features_keep_event_order():
    low, high = _sine(200, 8000), _sine(3000, 8000)
    a = np.concatenate([low, high])[None]
    b = np.concatenate([high, low])[None]
    feats = LogMelSegmentFeatures(n_segments=2, standardize=False).fit(np.vstack([a, b]))
    fa, fb = feats.transform(a)[0], feats.transform(b)[0]
    # same bag of frames, opposite order: the two segments swap
    n_mels = feats.n_mels
    # per segment: [mean over frames (n_mels), max over frames (n_mels)]
    seg_a = fa.reshape(2, 2, n_mels)[:, 0]
    seg_b = fb.reshape(2, 2, n_mels)[:, 0]
    assert seg_a[0].argmax() < seg_a[1].argmax()  # low event first
    assert seg_b[0].argmax() > seg_b[1].argmax()  # high event first
    assert seg_a[0].argmax() == seg_b[1].argmax() and seg_a[1].argmax() == seg_b[0].argmax()
    # the same events: the swapped segments agree far better than the unswapped ones
    swapped = np.abs(seg_a - seg_b[::-1]).mean()
    unswapped = np.abs(seg_a - seg_b).mean()
    assert swapped < 0.2 * unswapped


def test_segment_features_pitch_lands_in_the_right_band():
    feats = LogMelSegmentFeatures(n_mels=32, n_segments=1, standardize=False)
    out = feats.fit_transform(np.vstack([_sine(300)[None], _sine(4000)[None]]))
    mean_low, mean_high = out[0, :32], out[1, :32]
    assert mean_low.argmax() < mean_high.argmax()


def test_standardisation_learned_in_fit_only():
    rng = np.random.default_rng(0)
    train = (0.1 * rng.normal(size=(6, 16000))).astype(np.float32)
    feats = LogMelSegmentFeatures(n_segments=4).fit(train)
    z = feats.transform(train)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    other = feats.transform(train * 3.0)
    assert not np.allclose(other.mean(0), 0.0, atol=1e-2)  # not re-fitted on new data


def test_silence_and_files(tmp_path):
    silence = np.zeros((2, 16000), dtype=np.float32)
    out = LogMelSegmentFeatures().fit_transform(silence)
    assert np.isfinite(out).all()
    path = tmp_path / "a.wav"
    sf.write(path, _sine(440, 32000, 32000), 32000)  # resampled to 16 kHz when read
    from_file = LogMelSegmentFeatures(standardize=False).fit_transform([str(path)])
    from_array = LogMelSegmentFeatures(standardize=False).fit_transform(_sine(440)[None])
    loud = from_array > -30.0  # resampling only moves the near-silent bands
    np.testing.assert_allclose(from_file[loud], from_array[loud], atol=1.0)
    assert np.median(np.abs(from_file - from_array)) < 0.5


def test_bad_parameters_and_inputs():
    with pytest.raises(ValueError, match=r"'n_segments' parameter of LogMelSegmentFeatures must be an int in the range \[1, inf\)\. Got 0"):
        LogMelSegmentFeatures(n_segments=0).fit(np.zeros((1, 16000), np.float32))
    with pytest.raises(ValueError, match="fewer than n_segments=500"):
        LogMelSegmentFeatures(n_segments=500).fit(np.zeros((1, 1600), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        LogMelSegmentFeatures().fit(np.full((1, 16000), np.nan, np.float32))


def test_pretrained_audio_features_match_the_encoder():
    import torch

    from sklearn_ltm.encoders import build_audio_encoder

    waves = (0.1 * np.random.default_rng(1).normal(size=(3, 16000))).astype(np.float32)
    torch.manual_seed(0)
    feats = PretrainedAudioFeatures(encoder="cnn10", sample_rate=32000, batch_size=2).fit()
    out = feats.transform(waves)
    with torch.no_grad():
        ref = feats.encoder_(torch.from_numpy(waves)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert out.shape == (3, 512)
    enc = build_audio_encoder("cnn10")
    assert enc.output_dim == 512
