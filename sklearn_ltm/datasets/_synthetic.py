"""make_sound_captions: a procedural corpus of sound-event clips and their captions.

A clip is a sequence of one to three sound events. Each event has a kind (tone,
chirp, noise burst, clicks, harmonic stack), a pitch register, a loudness, a duration
and, when short, a count of repetitions with a rhythm. Its captions describe the events
in order with varied words ("three quick loud high beeps, then a soft deep hum").

The description is sampled first (cheap, in Python), then all the audio is rendered
at once: the repetitions ("units") of every event of every clip are grouped by kind
and length and synthesised as padded matrices, then written into the clips.

Some clips are *twins* of the clip before them: the same events in another order, or
the same events with one attribute (pitch, loudness or sweep direction) swapped
between two of them. A twin's captions use exactly the words of its original's
captions, so a bag of words cannot tell the two apart; only order and binding can.
"""

from __future__ import annotations

import math
import numbers
import random

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_sound_captions"]

KINDS = ("tone", "chirp", "noise", "clicks", "harmonic")
PITCHES = ("low", "mid", "high")
LOUDNESSES = ("quiet", "loud")

# --- captions: word pools. Every leading word is consonant-initial, so "a" never turns
# into "an" when a twin moves words around.
_NOUNS = {  # (kind, duration) -> [(singular, plural)]
    ("tone", "short"): [("beep", "beeps"), ("bleep", "bleeps"), ("blip", "blips"), ("pip", "pips")],
    ("tone", "long"): [
        ("tone", "tones"), ("hum", "hums"), ("whistle", "whistles"),
        ("steady tone", "steady tones"), ("note", "notes"),
    ],
    ("chirp", "short"): [("chirp", "chirps"), ("tweet", "tweets"), ("swoop", "swoops")],
    ("chirp", "long"): [
        ("sweep", "sweeps"), ("glide", "glides"), ("slide", "slides"),
        ("siren-like slide", "siren-like slides"),
    ],
    ("noise", "short"): [
        ("burst of noise", "bursts of noise"), ("burst of static", "bursts of static"),
        ("noise burst", "noise bursts"), ("puff of noise", "puffs of noise"),
    ],
    ("noise", "long"): [
        ("hiss", "hisses"), ("rush of noise", "rushes of noise"),
        ("stretch of static", "stretches of static"), ("whoosh", "whooshes"),
    ],
    ("clicks", "short"): [("click", "clicks"), ("tick", "ticks"), ("tap", "taps"), ("knock", "knocks")],
    ("harmonic", "short"): [("buzz", "buzzes"), ("honk", "honks"), ("buzzy blast", "buzzy blasts")],
    ("harmonic", "long"): [
        ("chord", "chords"), ("buzzing drone", "buzzing drones"),
        ("organ-like chord", "organ-like chords"), ("droning buzz", "droning buzzes"),
    ],
}
_PITCH_WORDS = {
    "low": ["low", "deep", "low-pitched", "bass"],
    "mid": ["mid-pitched", "medium-pitched", "middle", "mid-range"],
    "high": ["high", "high-pitched", "shrill"],
}
_LOUDNESS_WORDS = {"quiet": ["quiet", "soft", "faint"], "loud": ["loud", "strong", "booming"]}
_DIRECTION_WORDS = {"up": ["rising", "upward", "ascending"], "down": ["falling", "downward", "descending"]}
_DURATION_WORDS = {"long": ["long", "sustained", "", "drawn-out"], "short": ["short", "brief", "", ""]}
_RHYTHM_WORDS = {"quick": ["quick", "rapid", "fast"], "slow": ["slow", "spaced-out", "unhurried"]}
_RHYTHM_PHRASES = {
    "quick": ["in quick succession", "rapidly"],
    "slow": ["slowly", "with long pauses between them"],
}
_COUNT_WORDS = {2: ["two", "a pair of"], 3: ["three"]}
_TIMES_WORDS = {2: ["twice"], 3: ["three times"]}
_TEMPLATES = {
    1: ["{0}", "the sound of {0}", "{0} can be heard", "you can hear {0}", "just {0}"],
    2: ["{0}, then {1}", "{0} followed by {1}", "first {0}, then {1}", "{1} after {0}",
        "{0}, and then {1}", "{0} before {1}"],
    3: ["{0}, then {1}, then {2}", "{0}, followed by {1} and then {2}",
        "first {0}, then {1}, and finally {2}", "{0}, then {1}, followed by {2}",
        "{1} after {0}, then {2}"],
}
_SLOTS = ("noun", "pitch", "loudness", "direction", "duration", "rhythm", "count", "style")

# --- audio: nominal timings in seconds (squeezed when a clip would not fit).
_SHORT_UNIT = (0.07, 0.10)
_LONG_UNIT = (0.35, 0.45)
_CLICK_UNIT = 0.015
_GAP = {"quick": (0.05, 0.07), "slow": (0.13, 0.16)}
_EVENT_GAP = (0.12, 0.18)
_MARGIN = 0.05  # silence kept at each end of a clip
_REGISTER = {"low": (110.0, 200.0), "mid": (400.0, 650.0), "high": (1300.0, 2000.0)}
_AMPLITUDE = {"quiet": (0.08, 0.12), "loud": (0.5, 0.7)}
_BACKGROUND = (0.002, 0.004)  # standard deviation of the noise floor
_SWEEP = 1.6  # chirps sweep from f / 1.6 to f * 1.6 (or back)
_NOISE_BAND = 2.0  # noise bursts fill [f / 2, f * 2]
_RAMP = 0.008  # raised-cosine fade in and out, seconds
_N_EVENTS_P = (0.2, 0.4, 0.4)  # probability of 1, 2, 3 events
_TWIN_P = 0.5  # chance that a multi-event clip is followed by its twin

_DESCR = """Procedural sound-caption corpus (make_sound_captions)
-----------------------------------------------------
Each clip holds 1-3 sound events in sequence: pure tones (beeps, hums), chirps sweeping
up or down, band-limited noise bursts, clicks and harmonic stacks (buzzes, chords), each
with a pitch register (low/mid/high), a loudness (quiet/loud), a duration (short/long)
and, when short, 1-3 repetitions at a quick or slow rhythm, over a faint noise floor.
Captions name the events in order with varied words and connectives ("then",
"followed by", "after"). About a third of the multi-event clips are twins of the clip
before them (``twin_of``): the same events reordered, or one attribute swapped between
two events, captioned with exactly the same words, so that only order and the binding
of attributes to events tell them apart. Generated, not recorded: no licence applies.
"""


def make_sound_captions(
    n_samples: int,
    *,
    captions_per_clip: int = 1,
    noise_ratio: float = 0.0,
    sample_rate: int = 16000,
    duration: float = 2.0,
    random_state=None,
    return_X_y: bool = False,
):
    """Generate clips of synthetic sound events with captions that describe them.

    Each clip is one to three events in sequence, of the kinds tone (beep, hum), chirp
    (sweeping up or down), noise burst (static, hiss), clicks and harmonic stack (buzz,
    chord), each with a pitch register, a loudness, a duration and, when short, one to
    three repetitions at a quick or slow rhythm. The captions name the events in order
    with synonyms and varied connectives, e.g. "Three quick loud high beeps, then a soft
    deep hum." Some clips are twins of the clip before them (same events reordered, or
    an attribute swapped between two events) whose captions use the very same words:
    a bag of words cannot separate them.

    Parameters
    ----------
    n_samples : int
        Number of clips, at least 1.
    captions_per_clip : int, default=1
        Captions per clip, each with its own wording; the audio row of a clip is
        repeated so that row ``i`` of ``audio`` pairs with ``captions[i]``.
    noise_ratio : float, default=0.0
        Fraction in [0, 1) of the rows whose captions are shuffled among themselves
        (``round(noise_ratio * n_rows)`` rows; none when that is below 2), so that they
        describe another clip: misaligned pairs for partial transport. The clean corpus
        does not depend on ``noise_ratio``.
    sample_rate : int, default=16000
        Samples per second, at least 8000.
    duration : float, default=2.0
        Seconds per clip, at least 0.5; events are squeezed in time when a clip is too
        short for them.
    random_state : int, RandomState instance or None, default=None
        Seeds everything: the same value gives the same corpus.
    return_X_y : bool, default=False
        Return ``(audio, captions)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``n_rows = n_samples * captions_per_clip``:

        - ``audio``: float32 ndarray of shape (n_rows, round(duration * sample_rate)),
          values in [-1, 1].
        - ``captions``: list of str, n_rows captions.
        - ``clip_ids``: int64 ndarray of shape (n_rows,), the clip of each row.
        - ``events``: list of n_samples lists of dicts, the events of each clip in order,
          with keys ``kind``, ``pitch``, ``loudness``, ``duration``, ``count``,
          ``rhythm`` (None for one repetition), ``direction`` (``"up"``/``"down"`` for
          chirps, else None), ``onset`` and ``offset`` (seconds), ``frequency`` (Hz,
          the register's frequency drawn) and ``amplitude`` (peak).
        - ``noisy_mask``: bool ndarray of shape (n_rows,), rows whose caption was moved
          from another clip.
        - ``twin_of``: int64 ndarray of shape (n_samples,), the clip a twin mirrors, or -1.
        - ``sample_rate``: int.
        - ``DESCR``: str.
    (audio, captions) : tuple
        When ``return_X_y`` is True.

    See Also
    --------
    load_audiocaps : Real captioned audio from AudioSet.
    load_clotho : Real captioned audio from Freesound.

    Examples
    --------
    >>> data = make_sound_captions(4, captions_per_clip=2, random_state=0)
    >>> data.audio.shape, data.audio.dtype, len(data.captions)
    ((8, 32000), dtype('float32'), 8)
    >>> data.clip_ids.tolist()
    [0, 0, 1, 1, 2, 2, 3, 3]
    >>> sorted(data.events[0][0])[:4]
    ['amplitude', 'count', 'direction', 'duration']
    """
    _check_int(n_samples, "n_samples", 1)
    _check_int(captions_per_clip, "captions_per_clip", 1)
    _check_int(sample_rate, "sample_rate", 8000)
    if (isinstance(noise_ratio, bool) or not isinstance(noise_ratio, numbers.Real)
            or not 0.0 <= noise_ratio < 1.0):
        raise ValueError(f"noise_ratio={noise_ratio!r} is not a number in [0, 1).")
    if (isinstance(duration, bool) or not isinstance(duration, numbers.Real)
            or not math.isfinite(duration) or duration < 0.5):
        raise ValueError(f"duration={duration!r} is not a number of seconds >= 0.5.")
    if not isinstance(return_X_y, (bool, np.bool_)):
        raise TypeError(f"return_X_y={return_X_y!r} is not a bool; pass True or False.")
    rs = check_random_state(random_state)
    spec_seed, audio_seed, noise_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=3))

    specs, phrasings, twin_of = _sample_specs(n_samples, captions_per_clip, random.Random(spec_seed))
    n_time = int(round(duration * sample_rate))
    audio, events = _render(specs, float(duration), int(sample_rate), n_time, audio_seed)
    captions = [_caption(spec, p) for spec, clip_phrasings in zip(specs, phrasings)
                for p in clip_phrasings]
    clip_ids = np.repeat(np.arange(n_samples, dtype=np.int64), captions_per_clip)
    captions, noisy_mask = _shuffle_captions(captions, clip_ids, noise_ratio, noise_seed)
    if captions_per_clip > 1:
        audio = np.repeat(audio, captions_per_clip, axis=0)
    if return_X_y:
        return audio, captions
    return Bunch(
        audio=audio,
        captions=captions,
        clip_ids=clip_ids,
        events=events,
        noisy_mask=noisy_mask,
        twin_of=np.asarray(twin_of, dtype=np.int64),
        sample_rate=int(sample_rate),
        DESCR=_DESCR,
    )


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} is not an int; pass an int >= {low}.")
    if value < low:
        raise ValueError(f"{name}={value!r} is below {low}; pass an int >= {low}.")


# ------------------------------------------------------------------- descriptions


def _sample_event(rng: random.Random) -> dict:
    kind = rng.choice(KINDS)
    length = "short" if kind == "clicks" or rng.random() < 0.5 else "long"
    count = rng.choice((1, 2, 3)) if length == "short" else 1
    return {
        "kind": kind,
        "pitch": rng.choice(PITCHES),
        "loudness": rng.choice(LOUDNESSES),
        "duration": length,
        "count": count,
        "rhythm": rng.choice(("quick", "slow")) if count > 1 else None,
        "direction": rng.choice(("up", "down")) if kind == "chirp" else None,
    }


def _sample_clip(rng: random.Random) -> list[dict]:
    n_events = rng.choices((1, 2, 3), weights=_N_EVENTS_P)[0]
    clip = [_sample_event(rng)]
    while len(clip) < n_events:
        event = _sample_event(rng)
        if event != clip[-1]:  # two identical events in a row would read as one
            clip.append(event)
    return clip


def _sample_phrasing(rng: random.Random, n_events: int) -> dict:
    """Word choices for one caption: a template and, per event, one draw per slot."""
    return {
        "template": rng.randrange(1 << 30),
        "period": rng.random() < 0.7,
        "events": [{slot: rng.randrange(1 << 30) for slot in _SLOTS} for _ in range(n_events)],
    }


def _make_twin(clip: list[dict], phrasings: list[dict], rng: random.Random):
    """A different clip captioned with the same words, or None when there is none."""
    options = []
    for perm in _permutations(len(clip)):
        if [clip[i] for i in perm] != clip:
            options.append(("order", perm))
    for attribute in ("pitch", "loudness", "direction"):
        for i in range(len(clip)):
            for j in range(i + 1, len(clip)):
                a, b = clip[i][attribute], clip[j][attribute]
                if a is not None and b is not None and a != b:
                    options.append((attribute, (i, j)))
    if not options:
        return None
    how, arg = options[rng.randrange(len(options))]
    if how == "order":
        twin = [dict(clip[i]) for i in arg]
        twin_phrasings = [
            {**p, "events": [dict(p["events"][i]) for i in arg]} for p in phrasings
        ]
        return twin, twin_phrasings
    i, j = arg
    twin = [dict(e) for e in clip]
    twin[i][how], twin[j][how] = clip[j][how], clip[i][how]
    twin_phrasings = []
    for p in phrasings:
        words = [dict(w) for w in p["events"]]
        words[i][how], words[j][how] = p["events"][j][how], p["events"][i][how]
        twin_phrasings.append({**p, "events": words})
    return twin, twin_phrasings


def _permutations(n: int) -> list[tuple[int, ...]]:
    from itertools import permutations

    return [p for p in permutations(range(n)) if p != tuple(range(n))]


def _sample_specs(n_samples: int, captions_per_clip: int, rng: random.Random):
    specs, phrasings, twin_of = [], [], []
    for index in range(n_samples):
        twin = None
        if index and twin_of[-1] < 0 and len(specs[-1]) > 1 and rng.random() < _TWIN_P:
            twin = _make_twin(specs[-1], phrasings[-1], rng)
        if twin is not None:
            specs.append(twin[0])
            phrasings.append(twin[1])
            twin_of.append(index - 1)
            continue
        clip = _sample_clip(rng)
        specs.append(clip)
        phrasings.append([_sample_phrasing(rng, len(clip)) for _ in range(captions_per_clip)])
        twin_of.append(-1)
    return specs, phrasings, twin_of


def _pick(pool: list, draw: int):
    return pool[draw % len(pool)]


def _noun_phrase(event: dict, words: dict) -> str:
    singular, plural = _pick(_NOUNS[(event["kind"], event["duration"])], words["noun"])
    pitch = _pick(_PITCH_WORDS[event["pitch"]], words["pitch"])
    loudness = _pick(_LOUDNESS_WORDS[event["loudness"]], words["loudness"])
    direction = _pick(_DIRECTION_WORDS[event["direction"]], words["direction"]) if event["direction"] else ""
    count = event["count"]
    if count == 1:
        length = _pick(_DURATION_WORDS[event["duration"]], words["duration"])
        return _join("a", loudness, length, pitch, direction, singular)
    if words["style"] % 3:  # "three quick loud high beeps"
        number = _pick(_COUNT_WORDS[count], words["count"])
        rhythm = _pick(_RHYTHM_WORDS[event["rhythm"]], words["rhythm"])
        return _join(number, rhythm, loudness, pitch, direction, plural)
    times = _pick(_TIMES_WORDS[count], words["count"])  # "a loud high beep, twice, rapidly"
    rhythm = _pick(_RHYTHM_PHRASES[event["rhythm"]], words["rhythm"])
    return _join("a", loudness, pitch, direction, singular, "repeated", times, rhythm)


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _caption(clip: list[dict], phrasing: dict) -> str:
    phrases = [_noun_phrase(e, w) for e, w in zip(clip, phrasing["events"])]
    text = _pick(_TEMPLATES[len(clip)], phrasing["template"]).format(*phrases)
    text = text[0].upper() + text[1:]
    return text + "." if phrasing["period"] else text


# -------------------------------------------------------------------------- audio


def _render(specs, duration: float, sr: int, n_time: int, seed: int):
    """All clips' audio, and the events with their drawn times and values."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    units = {"clip": [], "start": [], "length": [], "kind": [], "freq": [], "amp": [], "dir": []}
    events_out = []
    for clip_index, clip in enumerate(specs):
        plans = [_plan_event(e, rng) for e in clip]
        gaps = [rng.uniform(*_EVENT_GAP) for _ in clip[1:]]
        needed = sum(sum(p["units"]) + sum(p["gaps"]) for p in plans) + sum(gaps)
        room = duration - 2 * _MARGIN
        scale = min(1.0, room / needed)
        slack = room - needed * scale
        spare = [rng.random() for _ in range(len(clip) + 1)]
        extra = [slack * s / sum(spare) for s in spare]  # spread the slack around events
        t = _MARGIN + extra[0]
        clip_events = []
        for k, (event, plan) in enumerate(zip(clip, plans)):
            onset = t
            for u, unit in enumerate(plan["units"]):
                start = int(round(t * sr))
                length = max(2, int(round(unit * scale * sr)))
                units["clip"].append(clip_index)
                units["start"].append(start)
                units["length"].append(length)
                units["kind"].append(event["kind"])
                units["freq"].append(plan["frequency"])
                units["amp"].append(plan["amplitude"] * rng.uniform(0.92, 1.0))
                units["dir"].append(1.0 if event["direction"] == "down" else 0.0)
                t += unit * scale
                if u < len(plan["gaps"]):
                    t += plan["gaps"][u] * scale
            clip_events.append({
                **event, "onset": round(onset, 4), "offset": round(t, 4),
                "frequency": round(plan["frequency"], 2), "amplitude": round(plan["amplitude"], 4),
            })
            t += (gaps[k] * scale if k < len(gaps) else 0.0) + extra[k + 1]
        events_out.append(clip_events)

    out = _background(len(specs), n_time, gen)
    arrays = {k: np.asarray(v) for k, v in units.items()}
    arrays["length"] = np.minimum(arrays["length"], n_time - arrays["start"])
    flat = out.reshape(-1)
    for kind in KINDS:
        for long_units in (False, True):
            sel = (arrays["kind"] == kind) & ((arrays["length"] > 0.25 * sr) == long_units)
            if not sel.any():
                continue
            lengths = arrays["length"][sel]
            waves = _synthesise(kind, arrays["freq"][sel], arrays["dir"][sel], lengths, sr, gen)
            waves *= arrays["amp"][sel, None].astype(np.float32)
            cols = np.arange(waves.shape[1])
            inside = cols < lengths[:, None]
            where = (arrays["clip"][sel] * n_time + arrays["start"][sel])[:, None] + cols
            flat[where[inside]] += waves[inside]
    np.clip(out, -1.0, 1.0, out=out)
    return out, events_out


def _plan_event(event: dict, rng: random.Random) -> dict:
    if event["kind"] == "clicks":
        unit = _CLICK_UNIT
    else:
        unit = rng.uniform(*(_LONG_UNIT if event["duration"] == "long" else _SHORT_UNIT))
    count = event["count"]
    gap = rng.uniform(*_GAP[event["rhythm"]]) if count > 1 else 0.0
    return {
        "units": [unit] * count,
        "gaps": [gap] * (count - 1),
        "frequency": rng.uniform(*_REGISTER[event["pitch"]]),
        "amplitude": rng.uniform(*_AMPLITUDE[event["loudness"]]),
    }


def _background(n_clips: int, n_time: int, gen: np.random.Generator) -> np.ndarray:
    """A faint noise floor: windows of one shared noise bank at random offsets."""
    bank = gen.standard_normal(2 * n_time, dtype=np.float32)
    offsets = gen.integers(0, n_time, size=n_clips)
    windows = np.lib.stride_tricks.sliding_window_view(bank, n_time)
    levels = gen.uniform(*_BACKGROUND, size=(n_clips, 1)).astype(np.float32)
    return windows[offsets] * levels


def _synthesise(kind, freq, down, lengths, sr, gen) -> np.ndarray:
    """Unit waveforms of one kind, one row each, peak 1, zero past each length."""
    n_cols = int(lengths.max())
    idx = np.arange(n_cols, dtype=np.float32)
    t = idx / np.float32(sr)
    f = freq.astype(np.float32)[:, None]
    nyquist = 0.45 * sr
    if kind == "tone":
        wave = np.sin(2 * np.pi * f * t)
    elif kind == "chirp":
        span = lengths.astype(np.float32)[:, None] / np.float32(sr)
        ratio = np.float32(_SWEEP**2)
        start = np.where(down[:, None] > 0, f * _SWEEP, f / _SWEEP).astype(np.float32)
        rate = np.where(down[:, None] > 0, 1 / ratio, ratio).astype(np.float32)
        start = np.minimum(start, nyquist / np.maximum(rate, 1))
        progress = np.minimum(t / span, 1.0)  # exponential sweep: f(t) = start * rate**progress
        wave = np.sin(2 * np.pi * start * span / np.log(rate) * (rate**progress - 1))
    elif kind == "harmonic":
        wave = np.zeros((len(freq), n_cols), dtype=np.float32)
        for h in range(1, 9):
            audible = (h * f < nyquist).astype(np.float32)
            wave += audible * np.sin(2 * np.pi * h * f * t) / h
    elif kind == "noise":
        white = gen.standard_normal((len(freq), n_cols), dtype=np.float32)
        spectrum = np.fft.rfft(white, axis=1)
        bins = np.fft.rfftfreq(n_cols, 1.0 / sr)[None, :]
        band = (bins >= f / _NOISE_BAND) & (bins <= np.minimum(f * _NOISE_BAND, nyquist))
        wave = np.fft.irfft(spectrum * band, n=n_cols, axis=1).astype(np.float32)
    else:  # clicks: a sharp noisy transient and a ring at twice the register
        decay = np.exp(-t / np.float32(0.003))
        ring = np.sin(2 * np.pi * np.minimum(2 * f, nyquist) * t) * decay
        crack = gen.standard_normal((len(freq), n_cols), dtype=np.float32) * np.exp(-t / 0.001)
        wave = ring + 0.5 * crack
    wave = np.asarray(wave, dtype=np.float32)
    inside = idx[None, :] < lengths[:, None]
    if kind != "clicks":  # raised-cosine fades at both ends
        ramp = np.float32(max(1.0, _RAMP * sr))
        edge = np.minimum(idx[None, :], lengths[:, None] - 1 - idx[None, :]) / ramp
        wave *= 0.5 - 0.5 * np.cos(np.pi * np.clip(edge, 0.0, 1.0)).astype(np.float32)
    wave *= inside
    peak = np.abs(wave).max(axis=1, keepdims=True)
    return wave / np.maximum(peak, np.float32(1e-8))


def _shuffle_captions(captions, clip_ids, noise_ratio, seed):
    """Move ``round(noise_ratio * n)`` captions among their rows, away from their clip
    (:func:`sklearn_ltm.noise.corrupt_captions`)."""
    from ..noise import corrupt_captions

    source, noisy = corrupt_captions(clip_ids, noise_ratio, np.random.RandomState(seed))
    return [captions[i] for i in source], noisy
