"""make_sound_captions: determinism, audio that matches its events, captions that need binding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import cross_val_score

from sklearn_ltm.datasets import make_sound_captions
from sklearn_ltm.datasets._synthetic import (
    _COUNT_WORDS,
    _DIRECTION_WORDS,
    _LOUDNESS_WORDS,
    _NOUNS,
    _PITCH_WORDS,
    _REGISTER,
    _TIMES_WORDS,
)

SR = 16000


@pytest.fixture(scope="module")
def corpus():
    return make_sound_captions(300, captions_per_clip=2, random_state=7)


def _segment(data, clip, event, pad=0.0):
    sr = data.sample_rate
    row = int(np.flatnonzero(data.clip_ids == clip)[0])
    start = max(0, int((event["onset"] - pad) * sr))
    return data.audio[row, start:int((event["offset"] + pad) * sr)]


def _peak_frequency(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return np.fft.rfftfreq(8 * len(x), 1 / sr)[np.argmax(spectrum)]


# ---------------------------------------------------------------------- shape, seed


@pytest.mark.parametrize("n_samples, per_clip", [(1, 1), (5, 3), (17, 2)])
def test_shapes_and_row_pairing(n_samples, per_clip):
    data = make_sound_captions(n_samples, captions_per_clip=per_clip, random_state=0)
    n_rows = n_samples * per_clip
    assert data.audio.shape == (n_rows, 2 * SR) and data.audio.dtype == np.float32
    assert len(data.captions) == n_rows and len(data.events) == n_samples
    assert data.clip_ids.tolist() == np.repeat(np.arange(n_samples), per_clip).tolist()
    for clip in range(n_samples):  # the rows of a clip share its audio
        rows = np.flatnonzero(data.clip_ids == clip)
        assert all(np.array_equal(data.audio[rows[0]], data.audio[r]) for r in rows)
    if per_clip > 1:  # each caption of a clip has its own wording
        assert len(set(data.captions)) > n_samples
    assert data.twin_of.shape == (n_samples,) and data.noisy_mask.shape == (n_rows,)
    audio, captions = make_sound_captions(n_samples, captions_per_clip=per_clip,
                                          random_state=0, return_X_y=True)
    assert np.array_equal(audio, data.audio) and captions == data.captions


def test_same_seed_same_corpus_other_seed_other_corpus():
    a = make_sound_captions(20, random_state=3)
    b = make_sound_captions(20, random_state=np.random.RandomState(3))
    c = make_sound_captions(20, random_state=4)
    assert np.array_equal(a.audio, b.audio) and a.captions == b.captions and a.events == b.events
    assert a.captions != c.captions
    assert not np.allclose(a.audio, c.audio)


@pytest.mark.parametrize("sample_rate, duration", [(8000, 0.5), (16000, 2.0), (22050, 3.0)])
def test_amplitudes_bounded_and_events_inside_the_clip(sample_rate, duration):
    data = make_sound_captions(60, sample_rate=sample_rate, duration=duration, random_state=1)
    assert data.audio.shape[1] == round(sample_rate * duration)
    assert np.isfinite(data.audio).all() and np.abs(data.audio).max() <= 1.0
    for events in data.events:
        times = [t for e in events for t in (e["onset"], e["offset"])]
        assert times == sorted(times) and times[0] > 0 and times[-1] < duration
        assert 1 <= len(events) <= 3


# ------------------------------------------------------------ audio matches events


def test_events_are_audible_over_a_quiet_floor(corpus):
    for clip, events in enumerate(corpus.events[:80]):
        row = clip * 2
        lead = corpus.audio[row, : int(events[0]["onset"] * SR) - 10]
        floor = np.sqrt(np.mean(lead**2))
        assert floor < 0.01
        for event in events:
            peak = np.abs(_segment(corpus, clip, event)).max()
            assert 0.9 * event["amplitude"] - 0.01 < peak < event["amplitude"] + 0.02
            assert peak > 10 * floor


def test_loud_and_quiet_events_differ_in_level(corpus):
    level = {"quiet": [], "loud": []}
    for clip, events in enumerate(corpus.events):
        for event in events:
            level[event["loudness"]].append(np.abs(_segment(corpus, clip, event)).max())
    assert max(level["quiet"]) < 0.14 and min(level["loud"]) > 0.45


def test_tones_sound_at_their_pitch_register(corpus):
    checked = Counter()
    for clip, events in enumerate(corpus.events):
        for event in events:
            if event["kind"] != "tone":
                continue
            heard = _peak_frequency(_segment(corpus, clip, event), SR)
            low, high = _REGISTER[event["pitch"]]
            assert low * 0.97 <= heard <= high * 1.03
            assert heard == pytest.approx(event["frequency"], rel=0.03)
            checked[event["pitch"]] += 1
    assert min(checked[p] for p in ("low", "mid", "high")) >= 5


def test_chirps_sweep_in_their_direction(corpus):
    checked = Counter()
    for clip, events in enumerate(corpus.events):
        for event in events:
            if event["kind"] != "chirp" or event["count"] > 1:
                continue
            x = _segment(corpus, clip, event)
            third = len(x) // 3
            first, last = _peak_frequency(x[:third], SR), _peak_frequency(x[-third:], SR)
            assert (last > 1.3 * first) if event["direction"] == "up" else (first > 1.3 * last)
            checked[event["direction"]] += 1
    assert checked["up"] >= 5 and checked["down"] >= 5


def _bursts(x, floor, sr):
    """Sound bursts in ``x``: runs of 5 ms frames louder than the floor, split by 25 ms gaps."""
    hop = sr // 200
    rms = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms > 3 * floor)
    return 1 + int(np.sum(np.diff(loud) > 5)) if len(loud) else 0


def test_repetitions_are_counted_and_durations_told_apart(corpus):
    counts = Counter()
    for clip, events in enumerate(corpus.events):
        lead = corpus.audio[2 * clip, : int(events[0]["onset"] * SR) - 10]
        floor = np.sqrt(np.mean(lead**2))
        for event in events:
            heard = _bursts(_segment(corpus, clip, event), floor, SR)
            assert heard == event["count"], (event, heard)
            counts[event["count"]] += 1
            span = event["offset"] - event["onset"]
            if event["duration"] == "long":
                assert span > 0.3
            elif event["count"] == 1:
                assert span < 0.11
    assert min(counts[c] for c in (1, 2, 3)) >= 10


def _descriptors(x, sr):
    """Shift-invariant spectrogram descriptors of one event: flatness, peak concentration,
    number of spectral peaks, pitch slope, mean log pitch, active frames."""
    x = np.pad(x, 256)
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::128] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1))[:, 2:] ** 2 + 1e-12
    freqs = np.fft.rfftfreq(512, 1 / sr)[2:]
    energy = power.sum(1)
    active = power[energy > 0.1 * energy.max()]
    flatness = np.mean(np.log(active).mean(1) - np.log(active.mean(1)))
    concentration = (np.sort(active, axis=1)[:, -3:].sum(1) / active.sum(1)).mean()
    mean_db = 10 * np.log10(active.mean(0))
    middle = mean_db[1:-1]
    n_peaks = np.sum((middle > mean_db[:-2]) & (middle >= mean_db[2:]) & (middle > middle.max() - 25))
    pitch = np.log(freqs[active.argmax(1)])
    slope = np.polyfit(np.arange(len(pitch)), pitch, 1)[0] if len(pitch) > 1 else 0.0
    return [flatness, concentration, n_peaks, slope, pitch.mean(), len(active)]


def test_event_kinds_and_pitches_are_distinct_in_a_spectrogram(corpus):
    features, kinds, pitches = [], [], []
    for clip, events in enumerate(corpus.events):
        for event in events:
            features.append(_descriptors(_segment(corpus, clip, event), SR))
            kinds.append(event["kind"] + (event["direction"] or ""))
            pitches.append(event["pitch"])
    model = RandomForestClassifier(n_estimators=100, random_state=0)
    assert len(set(kinds)) == 6 and len(features) > 500
    assert cross_val_score(model, features, kinds, cv=3).mean() > 0.93
    assert cross_val_score(model, features, pitches, cv=3).mean() > 0.95


# ---------------------------------------------------------------------- captions


def test_single_event_captions_name_its_attributes(corpus):
    checked = 0
    for clip, events in enumerate(corpus.events):
        if len(events) != 1:
            continue
        (event,) = events
        for caption in (corpus.captions[2 * clip], corpus.captions[2 * clip + 1]):
            text = caption.lower()
            assert any(w in text for w in _LOUDNESS_WORDS[event["loudness"]])
            other = "quiet" if event["loudness"] == "loud" else "loud"
            assert not any(f" {w} " in f" {text} " for w in _LOUDNESS_WORDS[other])
            assert any(w in text for w in _PITCH_WORDS[event["pitch"]])
            nouns = [n for pair in _NOUNS[(event["kind"], event["duration"])] for n in pair]
            assert any(n in text for n in nouns)
            if event["direction"]:
                assert any(w in text for w in _DIRECTION_WORDS[event["direction"]])
            if event["count"] > 1:
                numbers = _COUNT_WORDS[event["count"]] + _TIMES_WORDS[event["count"]]
                assert any(n in text for n in numbers)
            checked += 1
    assert checked >= 40


def test_captions_use_varied_words_and_order_connectives(corpus):
    text = " ".join(c.lower() for c in corpus.captions)
    for connective in (" then ", " followed by ", " after ", " before ", "first "):
        assert connective in text
    vocabulary = set(CountVectorizer().fit(corpus.captions).vocabulary_)
    assert {"beep", "hum", "chirp", "hiss", "clicks", "chord", "rising", "falling"} <= vocabulary
    assert len(vocabulary) > 100


def test_twins_defeat_a_bag_of_words(corpus):
    """Twin captions have identical bags of words, differ as text, and describe other clips."""
    twins = np.flatnonzero(corpus.twin_of >= 0)
    assert len(twins) >= 0.15 * len(corpus.events)
    bow = CountVectorizer().fit(corpus.captions)
    kinds = Counter()
    for twin in twins:
        original = corpus.twin_of[twin]
        a, b = corpus.events[original], corpus.events[twin]
        assert a != b and len(a) == len(b) >= 2
        same_order = [e["kind"] for e in a] == [e["kind"] for e in b]
        kinds["binding" if same_order and Counter(map(repr, a)) != Counter(map(repr, b))
              else "order"] += 1
        for k in range(2):
            cap_a, cap_b = corpus.captions[2 * original + k], corpus.captions[2 * twin + k]
            assert cap_a != cap_b
            vec = bow.transform([cap_a, cap_b]).toarray()
            assert np.array_equal(vec[0], vec[1])
    assert kinds["order"] >= 10 and kinds["binding"] >= 10
    # a bag-of-words retriever scores each twin caption equally against both clips
    vectors = bow.transform(corpus.captions).toarray().astype(float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    for twin in twins[:20]:
        original = corpus.twin_of[twin]
        assert sims[2 * twin, 2 * twin] == pytest.approx(sims[2 * twin, 2 * original])


def test_order_twins_hold_the_same_events_reordered(corpus):
    found = 0
    for twin in np.flatnonzero(corpus.twin_of >= 0):
        a, b = corpus.events[corpus.twin_of[twin]], corpus.events[twin]
        keys = ("kind", "pitch", "loudness", "duration", "count", "rhythm", "direction")
        spec_a = sorted(tuple(e[k] or "" for k in keys) for e in a)
        spec_b = sorted(tuple(e[k] or "" for k in keys) for e in b)
        if spec_a == spec_b:
            found += 1
            assert [e["kind"] for e in a] != [e["kind"] for e in b] or a != b
    assert found >= 10


# ------------------------------------------------------------------------- noise


@pytest.mark.parametrize("noise_ratio, per_clip", [(0.1, 1), (0.3, 1), (0.25, 3)])
def test_noise_ratio_moves_captions_to_other_clips(noise_ratio, per_clip):
    clean = make_sound_captions(80, captions_per_clip=per_clip, random_state=5)
    noisy = make_sound_captions(80, captions_per_clip=per_clip, noise_ratio=noise_ratio,
                                random_state=5)
    n_rows = 80 * per_clip
    assert np.array_equal(clean.audio, noisy.audio) and clean.events == noisy.events
    assert noisy.noisy_mask.sum() == round(noise_ratio * n_rows)
    assert not clean.noisy_mask.any()
    assert Counter(noisy.captions) == Counter(clean.captions)  # shuffled among themselves
    for row in range(n_rows):
        if noisy.noisy_mask[row]:
            sources = [r for r in range(n_rows) if clean.captions[r] == noisy.captions[row]]
            assert all(clean.clip_ids[r] != noisy.clip_ids[row] for r in sources)
        else:
            assert noisy.captions[row] == clean.captions[row]


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_samples": 0}, ValueError, r"n_samples=0 is below 1"),
        ({"n_samples": 2.5}, TypeError, r"n_samples=2.5 is not an int"),
        ({"n_samples": True}, TypeError, r"n_samples=True is not an int"),
        ({"captions_per_clip": 0}, ValueError, r"captions_per_clip=0 is below 1"),
        ({"noise_ratio": 1.0}, ValueError, r"noise_ratio=1.0 is not a number in \[0, 1\)"),
        ({"noise_ratio": -0.1}, ValueError, r"noise_ratio=-0.1"),
        ({"sample_rate": 4000}, ValueError, r"sample_rate=4000 is below 8000"),
        ({"duration": 0.2}, ValueError, r"duration=0.2 is not a number of seconds >= 0.5"),
        ({"duration": float("nan")}, ValueError, r"duration=nan"),
        ({"return_X_y": "yes"}, TypeError, r"return_X_y='yes' is not a bool"),
        ({"random_state": "seed"}, ValueError, r"seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    kwargs.setdefault("n_samples", 3)
    with pytest.raises(error, match=match):
        make_sound_captions(**kwargs)
