"""Tests of sklearn_ltm.encoders.audio_io: reading, downmixing, resampling, cropping, errors."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sklearn_ltm.encoders import (
    AudioFileError,
    AudioFilesSkippedWarning,
    check_audio_files,
    load_audio,
    load_audio_batch,
    pad_batch,
    resample_waveforms,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_dir(sub):
    folder = DATA / sub
    if not folder.is_dir():
        pytest.skip(f"real audio not found at {folder} (the ../shared/data folder of the repo)")
    return folder


def _sine(freq, sr, seconds, amplitude=0.5, phase=0.0):
    t = np.arange(int(round(sr * seconds))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def _peak_frequency(x, sr):
    """Dominant frequency of ``x`` (Hann window, parabolic interpolation of the peak bin)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * sr / len(x)


def _write(path, data, sr, fmt=None, subtype=None):
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


# --------------------------------------------------------------------------- formats, downmix
@pytest.mark.parametrize("fmt, ext, tol", [("WAV", "wav", 1e-4), ("FLAC", "flac", 1e-4),
                                           ("OGG", "ogg", None)])
def test_formats_are_read_and_downmixed(tmp_path, fmt, ext, tol):
    sr = 16000
    left, right = _sine(440, sr, 1.0, 0.4), _sine(1000, sr, 1.0, 0.2)
    path = _write(tmp_path / f"stereo.{ext}", np.stack([left, right], axis=1), sr, fmt)
    mono = load_audio(path, sr)
    assert mono.dtype == np.float32 and mono.shape == (sr,)
    both = load_audio(path, sr, mono=False)
    assert both.shape == (2, sr)
    if tol is not None:  # lossless formats: the downmix is the channel mean
        np.testing.assert_allclose(mono, (left + right) / 2, atol=tol)
        np.testing.assert_allclose(both[1], right, atol=tol)
    else:  # lossy OGG: both tones survive in the mono mix at half amplitude
        spectrum = np.abs(np.fft.rfft(mono)) / (sr / 2)
        assert spectrum[440] == pytest.approx(0.2, abs=0.03)
        assert spectrum[1000] == pytest.approx(0.1, abs=0.03)


@pytest.mark.parametrize("orig_sr, target_sr", [(22050, 32000), (44100, 32000), (48000, 44100),
                                                (32000, 16000), (16000, 44100)])
@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_sine_frequency_and_amplitude_survive_resampling(tmp_path, orig_sr, target_sr, freq):
    path = _write(tmp_path / "tone.wav", _sine(freq, orig_sr, 1.0), orig_sr, subtype="FLOAT")
    y = load_audio(path, target_sr)
    assert y.shape == (target_sr,)
    assert _peak_frequency(y, target_sr) == pytest.approx(freq, abs=0.5)
    core = y[target_sr // 10 : -target_sr // 10]  # away from the edges
    assert np.sqrt(np.mean(core**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_waveforms_types_and_no_in_place_change():
    x = np.stack([_sine(500, 8000, 0.5), _sine(700, 8000, 0.5)]).astype(np.float64)
    before = x.copy()
    y = resample_waveforms(x, 8000, 16000)
    assert y.dtype == np.float32 and y.shape == (2, 8000)
    np.testing.assert_array_equal(x, before)
    assert _peak_frequency(y[1], 16000) == pytest.approx(700, abs=1)
    t = torch.from_numpy(x[0])
    out = resample_waveforms(t, 8000, 16000)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), y[0], atol=1e-5)
    same = resample_waveforms(x, 8000, 8000)
    np.testing.assert_array_equal(same, x.astype(np.float32))
    assert not np.shares_memory(same, x)
    int_audio = (x[0] * 10000).astype(np.int16)
    assert resample_waveforms(int_audio, 8000, 4000).dtype == np.float32


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-16000, ValueError), (44.1, ValueError),
                                        ("32000", TypeError), (True, TypeError)])
def test_bad_sample_rate_is_refused_before_reading(bad, error):
    with pytest.raises(error, match="sample_rate"):
        load_audio("never/read.wav", bad)
    with pytest.raises(error, match="target_sr"):
        resample_waveforms(np.zeros(10), 8000, bad)


# --------------------------------------------------------------------------- cropping
@pytest.mark.parametrize("crop", ["start", "center", "random"])
def test_max_seconds_crops_to_exact_length(tmp_path, crop):
    sr = 8000
    ramp = np.linspace(-0.9, 0.9, 3 * sr).astype(np.float32)  # tells where a crop comes from
    path = _write(tmp_path / "ramp.wav", ramp, sr, subtype="FLOAT")
    y = load_audio(path, sr, max_seconds=1.0, crop=crop, random_state=0)
    assert y.shape == (sr,)
    start = int(np.argmin(np.abs(ramp - y[0])))
    expected = {"start": 0, "center": sr, "random": None}[crop]
    if expected is not None:
        assert start == expected
    np.testing.assert_allclose(y, ramp[start : start + sr], atol=1e-6)
    # shorter than max_seconds: kept whole, not padded
    assert load_audio(path, sr, max_seconds=10.0).shape == (3 * sr,)


def test_random_crop_is_seeded(tmp_path):
    sr = 8000
    path = _write(tmp_path / "noise.wav", np.random.RandomState(0).uniform(-1, 1, 5 * sr), sr)
    a = load_audio(path, sr, max_seconds=1, crop="random", random_state=3)
    b = load_audio(path, sr, max_seconds=1, crop="random", random_state=3)
    c = load_audio(path, sr, max_seconds=1, crop="random", random_state=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, match", [({"max_seconds": 0}, "max_seconds"),
                                           ({"max_seconds": float("nan")}, "max_seconds"),
                                           ({"crop": "middle"}, "crop")])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_audio("never/read.wav", 16000, **kwargs)


# --------------------------------------------------------------------------- broken files
def _make_bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return path
    if kind == "empty_bytes":
        path.write_bytes(b"")
    elif kind == "no_samples":
        sf.write(str(path), np.zeros((0, 1), dtype=np.float32), 16000)
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    elif kind == "nan_samples":
        sf.write(str(path), np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("kind, reason", [("missing", "does not exist"), ("empty_bytes", "empty"),
                                          ("no_samples", "empty"), ("corrupt", "could not be decoded"),
                                          ("nan_samples", "NaN")])
def test_bad_file_error_names_the_file(tmp_path, kind, reason):
    path = _make_bad_file(tmp_path, kind)
    with pytest.raises(AudioFileError, match=reason) as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    clone = pickle.loads(pickle.dumps(info.value))  # survives worker processes
    assert str(clone) == str(info.value) and clone.path == str(path)


def test_silent_file_gives_zeros_not_nan(tmp_path):
    path = _write(tmp_path / "silence.wav", np.zeros(22050, dtype=np.float32), 22050)
    y = load_audio(path, 32000)
    assert np.isfinite(y).all() and not y.any()


# --------------------------------------------------------------------------- batches
def test_load_audio_batch_pads_and_reports_lengths(tmp_path):
    sr = 16000
    paths = [_write(tmp_path / f"c{i}.wav", _sine(300 * (i + 1), sr, s), sr)
             for i, s in enumerate([0.5, 1.0, 0.25])]
    waves, lengths, kept = load_audio_batch(paths, sr, n_jobs=2)
    assert waves.shape == (3, sr) and waves.dtype == np.float32
    np.testing.assert_array_equal(lengths, [sr // 2, sr, sr // 4])
    np.testing.assert_array_equal(kept, [0, 1, 2])
    assert lengths.dtype == np.int64 and kept.dtype == np.int64
    for row, n, p in zip(waves, lengths, paths):
        np.testing.assert_array_equal(row[:n], load_audio(p, sr))
        assert not row[n:].any()
    capped, capped_lengths, _ = load_audio_batch(paths, sr, max_seconds=0.3)
    assert capped.shape == (3, int(0.3 * sr))
    np.testing.assert_array_equal(capped_lengths, [int(0.3 * sr)] * 2 + [sr // 4])


def test_load_audio_batch_skip_warns_with_count(tmp_path):
    sr = 16000
    good = [_write(tmp_path / f"ok{i}.wav", _sine(440, sr, 0.1), sr) for i in range(3)]
    bad = [_make_bad_file(tmp_path, "missing"), _make_bad_file(tmp_path, "corrupt")]
    paths = [good[0], bad[0], good[1], bad[1], good[2]]
    with pytest.warns(AudioFilesSkippedWarning, match="skipped 2 of 5") as record:
        waves, lengths, kept = load_audio_batch(paths, sr, on_error="skip")
    assert len(record) == 1 and str(bad[0]) in str(record[0].message)
    np.testing.assert_array_equal(kept, [0, 2, 4])
    assert waves.shape == (3, int(0.1 * sr))
    with pytest.raises(AudioFileError, match="missing.wav"):
        load_audio_batch(paths, sr)


def test_load_audio_batch_all_failing_gives_empty_arrays(tmp_path):
    with pytest.warns(AudioFilesSkippedWarning, match="skipped 1 of 1"):
        waves, lengths, kept = load_audio_batch([tmp_path / "nope.wav"], 16000, on_error="skip")
    assert waves.shape == (0, 0) and lengths.shape == (0,) and kept.shape == (0,)


@pytest.mark.parametrize("paths, error, match", [("one.wav", TypeError, "sequence of paths"),
                                                 ([1, 2], TypeError, r"paths\[0\]"),
                                                 (["a.wav"], ValueError, "on_error")])
def test_load_audio_batch_bad_arguments(paths, error, match):
    kwargs = {"on_error": "ignore"} if error is ValueError else {}
    with pytest.raises(error, match=match):
        load_audio_batch(paths, 16000, **kwargs)


def test_pad_batch_crops_pads_and_copies():
    clips = [np.ones(5, dtype=np.float32), np.arange(3, dtype=np.float32)]
    batch, lengths = pad_batch(clips, length=4)
    np.testing.assert_array_equal(batch, [[1, 1, 1, 1], [0, 1, 2, 0]])
    np.testing.assert_array_equal(lengths, [4, 3])
    batch[0, 0] = 7
    assert clips[0][0] == 1
    with pytest.raises(ValueError, match=r"waveforms\[0\]"):
        pad_batch([np.zeros((2, 3))])


# --------------------------------------------------------------------------- real clips
@pytest.mark.shared_data
def test_real_audiocaps_stereo_clips(tmp_path):
    folder = _data_dir("audiocaps/audio/test")
    stereo = [p for p in sorted(folder.glob("*.wav")) if sf.info(str(p)).channels == 2][:2]
    assert stereo, "expected stereo AudioCaps clips"
    for path in stereo:
        info = sf.info(str(path))
        assert info.samplerate == 22050
        y = load_audio(path, 32000, max_seconds=10)
        expected = min(math.ceil(info.frames * 32000 / 22050), 320000)
        assert abs(y.shape[0] - expected) <= 1 and np.isfinite(y).all()
        channels = load_audio(path, 32000, max_seconds=10, mono=False)
        assert channels.shape == (2, y.shape[0])
        np.testing.assert_allclose(y, channels.mean(axis=0), atol=1e-5)  # downmix commutes
    waves, lengths, kept = load_audio_batch(stereo, 32000, max_seconds=10)
    assert waves.shape[0] == 2 and waves.shape[1] <= 320000


@pytest.mark.shared_data
def test_real_clotho_clip_resampled_and_cropped():
    folder = _data_dir("clotho/evaluation")
    path = sorted(folder.glob("*.wav"))[0]
    info = sf.info(str(path))
    assert info.samplerate == 44100 and info.channels == 1 and info.duration > 15
    y = load_audio(path, 32000, max_seconds=30)
    assert y.shape == (min(math.ceil(info.frames * 32000 / 44100), 30 * 32000),)
    ten = load_audio(path, 32000, max_seconds=10)
    assert ten.shape == (320000,)
    np.testing.assert_allclose(ten[: 300000], y[: 300000], atol=1e-4)  # same start, same audio
    native, _ = sf.read(str(path), dtype="float32", frames=44100)
    rms_native, rms_resampled = np.sqrt(np.mean(native**2)), np.sqrt(np.mean(y[:32000] ** 2))
    assert rms_resampled == pytest.approx(rms_native, rel=0.05)



# --------------------------------------------------------------------------- check_audio_files
def test_check_audio_files_decodes_each_distinct_file_once(tmp_path, monkeypatch):
    from sklearn_ltm.encoders import audio_io

    sr = 16000
    good = [_write(tmp_path / f"ok{i}.wav", _sine(440, sr, 0.2), sr) for i in range(2)]
    calls = []
    real = audio_io._validate_file
    monkeypatch.setattr(audio_io, "_validate_file",
                        lambda p, s, d=True: (calls.append(p), real(p, s, d))[1])
    keep = check_audio_files([good[0], good[1], good[0], str(good[0])])
    assert keep.tolist() == [True] * 4 and sorted(calls) == sorted(map(str, good))


@pytest.mark.parametrize("kind, reason", [("missing", "does not exist"), ("empty_bytes", "empty"),
                                          ("no_samples", "empty"), ("corrupt", "could not be decoded"),
                                          ("nan_samples", "NaN"), ("directory", "is a directory")])
def test_check_audio_files_raises_naming_every_kind_of_bad_file(tmp_path, kind, reason):
    if kind == "directory":
        path = tmp_path / "looks_like.wav"
        path.mkdir()
    else:
        path = _make_bad_file(tmp_path, kind)
    with pytest.raises(AudioFileError, match=reason) as info:
        check_audio_files([path])
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_check_audio_files_skip_counts_files_and_entries_in_one_warning(tmp_path):
    sr = 16000
    good = _write(tmp_path / "ok.wav", _sine(440, sr, 0.2), sr)
    nan = _make_bad_file(tmp_path, "nan_samples")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    paths = [good, nan, folder, nan, good]
    with pytest.warns(AudioFilesSkippedWarning) as record:
        keep = check_audio_files(paths, "skip", count_as="pairs", n_jobs=2)
    assert len(record) == 1
    assert "skipped 2 unreadable audio file(s) (3 pairs) of 3" in str(record[0].message)
    assert keep.tolist() == [True, False, False, False, True]


def test_check_audio_files_reads_only_what_will_be_used(tmp_path):
    """NaN after max_seconds is never read by load_audio, so it does not count as bad."""
    sr = 16000
    x = _sine(440, sr, 1.0)
    x[int(0.8 * sr)] = np.nan
    path = _write(tmp_path / "late_nan.wav", x, sr, subtype="FLOAT")
    assert check_audio_files([path], max_seconds=0.5).tolist() == [True]
    assert load_audio(path, sr, max_seconds=0.5).shape == (sr // 2,)
    with pytest.raises(AudioFileError, match="NaN"):
        check_audio_files([path])
    with pytest.raises(AudioFileError, match="NaN"):
        load_audio(path, sr)


def test_a_directory_is_reported_as_a_directory(tmp_path):
    folder = tmp_path / "clip.wav"
    folder.mkdir()
    with pytest.raises(AudioFileError, match="is a directory, not a file"):
        load_audio(folder, 16000)
    with pytest.raises(AudioFileError, match="is a directory, not a file"):
        load_audio_batch([folder], 16000)


def test_check_audio_files_header_only_mode(tmp_path):
    """decode=False finds missing, empty and headerless files, not NaN samples (cheap)."""
    nan = _make_bad_file(tmp_path, "nan_samples")
    assert check_audio_files([nan], decode=False).tolist() == [True]
    for kind, reason in [("missing", "does not exist"), ("no_samples", "empty"),
                         ("corrupt", "could not be decoded")]:
        with pytest.raises(AudioFileError, match=reason):
            check_audio_files([_make_bad_file(tmp_path, kind)], decode=False)


def test_bench_audio_check_quick_run(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_audio_check

    assert bench_audio_check.main(["--n-files", "3", "--seconds", "0.5", "--repeats", "1",
                                   "--results-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "audio_check.json").read_text())
    for fmt in ("flac", "wav"):
        per = payload["results"][fmt]
        assert per["load_audio"]["ratio_to_load_audio"] == pytest.approx(1.0)
        assert 0 < per["header"]["ms_per_file"] and 0 < per["decode"]["ms_per_file"]
    assert "bench_audio_check.py --n-files 3" in payload["provenance"]["command"]
