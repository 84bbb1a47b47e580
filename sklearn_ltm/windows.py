"""Long recordings: one embedding per window, with its start and end time, and pooling.

A model trained on clips of a few seconds embeds a long recording either by cropping it
(what :meth:`~sklearn_ltm.LTMRetriever.transform` does by default) or window by window:
:func:`embed_windows` cuts each recording into windows of ``window_seconds`` every
``hop_seconds``, embeds every window in the learned space and returns the windows' times;
:func:`pool_windows` turns them into one vector per recording (mean or max), and
:class:`~sklearn_ltm.search.SearchIndex` can index the windows themselves to say *where* in
a recording a sound happens.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["WindowEmbeddings", "embed_windows", "pool_windows", "window_bounds",
           "check_window_options", "POOLINGS"]

#: Accepted ``pooling`` values.
POOLINGS = ("mean", "max")


@dataclass(frozen=True)
class WindowEmbeddings:
    """Embeddings of the windows of several recordings.

    Attributes
    ----------
    embeddings : ndarray of shape (n_windows, dim), float32
        In the learned space (Euclidean distance is the learned distance).
    recording : ndarray of shape (n_windows,), int64
        Position of the window's recording in the input.
    start_s, end_s : ndarray of shape (n_windows,), float64
        Window bounds in seconds from the start of its recording.
    n_recordings : int
        Number of recordings that were windowed.

    Examples
    --------
    >>> import numpy as np
    >>> w = WindowEmbeddings(np.zeros((3, 2), np.float32), np.array([0, 0, 1]),
    ...                      np.array([0.0, 1.0, 0.0]), np.array([2.0, 3.0, 2.0]), 2)
    >>> len(w), w.end_s[w.recording == 0]
    (3, array([2., 3.]))
    """

    embeddings: np.ndarray
    recording: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    n_recordings: int

    def __len__(self) -> int:
        return len(self.embeddings)


def _positive_seconds(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is not accepted; give a number of seconds > 0.")
    return float(value)


def window_bounds(n_samples, sample_rate, window_seconds, hop_seconds=None):
    """Sample bounds of the windows of one recording.

    Windows start every ``hop_seconds``; when the last one stops short of the end, one more
    window ending at the last sample is added, so every sample is covered. A recording
    shorter than a window is one window, the whole recording.

    Parameters
    ----------
    n_samples : int
        Length of the recording.
    sample_rate : int
        Its rate in Hz.
    window_seconds : float
        Window length, > 0.
    hop_seconds : float or None
        Step between window starts, > 0 (None: ``window_seconds``, no overlap).

    Returns
    -------
    starts, stops : ndarray of int64
        ``recording[starts[i]:stops[i]]`` is window ``i``.

    Examples
    --------
    >>> window_bounds(10, 1, 4, 3)
    (array([0, 3, 6]), array([ 4,  7, 10]))
    >>> window_bounds(11, 1, 4, 4)
    (array([0, 4, 7]), array([ 4,  8, 11]))
    >>> window_bounds(3, 1, 4)
    (array([0]), array([3]))
    """
    window_seconds = _positive_seconds(window_seconds, "window_seconds")
    hop_seconds = window_seconds if hop_seconds is None else \
        _positive_seconds(hop_seconds, "hop_seconds")
    n = int(n_samples)
    win = max(1, int(round(window_seconds * sample_rate)))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    if n <= win:
        return np.array([0], dtype=np.int64), np.array([n], dtype=np.int64)
    starts = np.arange(0, n - win + 1, hop, dtype=np.int64)
    if starts[-1] + win < n:
        starts = np.append(starts, n - win)
    return starts, starts + win


def _input_rate(retriever, encoder_rate):
    # the rate of waveform arrays is a setting of the fitted audio encoder component
    rate = getattr(getattr(retriever, "audio_encoder_", None), "sample_rate", None)
    return int(rate) if rate is not None else int(encoder_rate)


def check_window_options(retriever, window_seconds, hop_seconds=None):
    """Validate window options against a fitted retriever, before any audio is read.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted on waveforms or audio files.
    window_seconds : float
        Window length: a number of seconds, at least the audio encoder's receptive field
        (its ``min_samples``, else its front end's ``n_fft``).
    hop_seconds : float or None
        Step between windows, > 0 (None: ``window_seconds``).

    Returns
    -------
    window_seconds, hop_seconds : float

    Raises
    ------
    ValueError
        For a feature-mode retriever (no waveform to cut), a window or hop that is not a
        positive number of seconds, or a window shorter than the receptive field.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm import LTMRetriever
    >>> class Stats(torch.nn.Module):
    ...     sample_rate, output_dim, min_samples = 100, 2, 10
    ...     def forward(self, w, lengths=None):
    ...         return torch.stack([w.mean(1), w.std(1)], 1)
    >>> rng = np.random.default_rng(0)
    >>> est = LTMRetriever(Stats(), embedding_dim=2, max_epochs=1, batch_size=4,
    ...                    validation_fraction=0.0).fit(rng.normal(size=(8, 100)),
    ...                                                 rng.normal(size=(8, 3)))
    >>> check_window_options(est, 1.0)
    (1.0, 1.0)
    >>> check_window_options(est, 0.05)
    Traceback (most recent call last):
    ...
    ValueError: window_seconds=0.05 is shorter than the audio encoder's receptive field (10 samples = 0.100 s at 100 Hz); give window_seconds >= 0.100.
    """
    from .export import AudioTower

    window_seconds = _positive_seconds(window_seconds, "window_seconds")
    hop_seconds = window_seconds if hop_seconds is None else \
        _positive_seconds(hop_seconds, "hop_seconds")
    if getattr(retriever, "audio_input_kind_", None) == "features":
        raise ValueError("windows need audio (file paths or waveforms), but this retriever was "
                         "fitted on audio features: cut your recordings into windows and "
                         "compute their features yourself, then call transform.")
    tower = AudioTower(retriever)
    shortest = tower.min_samples / tower.sample_rate
    if window_seconds * tower.sample_rate < tower.min_samples:
        raise ValueError(
            f"window_seconds={window_seconds!r} is shorter than the audio encoder's receptive "
            f"field ({tower.min_samples} samples = {shortest:.3f} s at {tower.sample_rate} Hz); "
            f"give window_seconds >= {shortest:.3f}."
        )
    return window_seconds, hop_seconds


def _recordings(retriever, recordings, rate):
    """Yield (index, float32 1-D waveform at ``rate``) for paths, a 2-D array or 1-D arrays."""
    if isinstance(recordings, (str, bytes, os.PathLike)):
        raise TypeError(f"recordings={recordings!r} is a single path; pass a list of paths.")
    if isinstance(recordings, np.ndarray) and recordings.ndim == 2:
        items = list(recordings)
    else:
        items = list(recordings)
    if not items:
        raise ValueError("recordings is empty; give at least one file path or waveform.")
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            continue
        arr = np.asarray(item)
        if arr.ndim != 1 or arr.dtype.kind not in "fiu" or arr.size == 0:
            raise ValueError(f"recordings[{i}] has shape {arr.shape} and dtype {arr.dtype}; each "
                             "recording must be a file path or a non-empty 1-D float waveform.")
        if not np.isfinite(arr).all():
            raise ValueError(f"recordings[{i}] contains NaN or infinity.")
    return items


def _read(item, rate, retriever):
    if isinstance(item, (str, os.PathLike)):
        from .encoders import load_audio

        return load_audio(item, rate)
    wave = np.asarray(item, dtype=np.float32)
    source = _input_rate(retriever, rate)
    if source != rate:
        from .encoders import resample_waveforms

        wave = resample_waveforms(wave, source, rate)
    return wave


def _head_windows(retriever, recordings, window_seconds, hop_seconds, batch_size, progress):
    """Head outputs (before the metric map) of every window, and the tower."""
    import torch

    from .export import AudioTower

    window_seconds, hop_seconds = check_window_options(retriever, window_seconds, hop_seconds)
    if batch_size is None:
        batch_size = int(getattr(retriever, "batch_size", None) or 32)
    elif isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or \
            batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not accepted; give an int >= 1.")
    tower = AudioTower(retriever).eval()
    rate = int(tower.sample_rate)
    items = _recordings(retriever, recordings, rate)
    device = next(tower.parameters()).device
    head, rec, starts_s, stops_s = [], [], [], []
    loop = enumerate(items)
    if progress:
        from tqdm.auto import tqdm

        loop = tqdm(loop, total=len(items), desc="embedding windows", unit="recording")
    with torch.no_grad():
        for i, item in loop:
            wave = _read(item, rate, retriever)
            starts, stops = window_bounds(len(wave), rate, window_seconds, hop_seconds)
            win = int(stops[0] - starts[0])
            if len(starts) == 1:
                views = wave[None, :win]
            else:  # strided views: only one batch of windows is copied at a time
                views = np.lib.stride_tricks.sliding_window_view(wave, win)[starts]
            for b in range(0, len(views), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(views[b:b + batch_size]))
                head.append(tower.encode(x.to(device)).float())
            rec.append(np.full(len(starts), i, dtype=np.int64))
            starts_s.append(starts / rate)
            stops_s.append(stops / rate)
    windows = WindowEmbeddings(np.zeros((0, 0), np.float32), np.concatenate(rec),
                               np.concatenate(starts_s), np.concatenate(stops_s), len(items))
    return torch.cat(head), windows, tower


def embed_windows(retriever, recordings, *, window_seconds, hop_seconds=None, batch_size=None,
                  progress=False):
    """One embedding per window of each recording, with the window's start and end time.

    Each window is embedded as a clip of its own (front end, encoder, head, metric map), so
    a window that equals a whole clip gets that clip's
    :meth:`~sklearn_ltm.LTMRetriever.transform` embedding.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted on waveforms or audio files.
    recordings : sequence of path or of 1-D array, or 2-D array
        Audio files (read whole, at the encoder's rate) or waveforms at the retriever's
        input ``sample_rate`` (the encoder's rate when it is None).
    window_seconds : float
        Window length; at least the encoder's receptive field.
    hop_seconds : float or None
        Step between windows, > 0 (None: ``window_seconds``).
    batch_size : int or None
        Windows per forward pass (None: the retriever's ``batch_size``).
    progress : bool
        Show a progress bar over recordings.

    Returns
    -------
    WindowEmbeddings

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm import LTMRetriever
    >>> class Stats(torch.nn.Module):
    ...     sample_rate, output_dim, min_samples = 100, 2, 10
    ...     def forward(self, w, lengths=None):
    ...         return torch.stack([w.mean(1), w.std(1)], 1)
    >>> rng = np.random.default_rng(0)
    >>> est = LTMRetriever(Stats(), embedding_dim=2, max_epochs=1, batch_size=4,
    ...                    validation_fraction=0.0).fit(rng.normal(size=(8, 100)),
    ...                                                 rng.normal(size=(8, 3)))
    >>> win = embed_windows(est, [rng.normal(size=350)], window_seconds=1.0, hop_seconds=0.5)
    >>> win.embeddings.shape, win.start_s, win.end_s
    ((6, 2), array([0. , 0.5, 1. , 1.5, 2. , 2.5]), array([1. , 1.5, 2. , 2.5, 3. , 3.5]))
    """
    import torch

    head, windows, tower = _head_windows(retriever, recordings, window_seconds, hop_seconds,
                                         batch_size, progress)
    with torch.no_grad():
        emb = tower.metric.map(head).cpu().numpy().astype(np.float32, copy=False)
    return WindowEmbeddings(emb, windows.recording, windows.start_s, windows.end_s,
                            windows.n_recordings)


def pool_windows(retriever, recordings, *, window_seconds, hop_seconds=None, pooling="mean",
                 batch_size=None, progress=False):
    """One vector per recording, pooled over its windows.

    The windows' head outputs (unit vectors, before the metric map) are averaged
    (``"mean"``) or maximised coordinate-wise (``"max"``) per recording, and the result is
    mapped by the learned metric, so it lives in the same space as
    :meth:`~sklearn_ltm.LTMRetriever.transform`.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted on waveforms or audio files.
    recordings : sequence of path or of 1-D array, or 2-D array
        As in :func:`embed_windows`.
    window_seconds : float
    hop_seconds : float or None
    pooling : {"mean", "max"}, default="mean"
    batch_size : int or None
    progress : bool

    Returns
    -------
    ndarray of shape (n_recordings, dim), float32

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm import LTMRetriever
    >>> class Stats(torch.nn.Module):
    ...     sample_rate, output_dim, min_samples = 100, 2, 10
    ...     def forward(self, w, lengths=None):
    ...         return torch.stack([w.mean(1), w.std(1)], 1)
    >>> rng = np.random.default_rng(0)
    >>> est = LTMRetriever(Stats(), embedding_dim=2, max_epochs=1, batch_size=4,
    ...                    validation_fraction=0.0).fit(rng.normal(size=(8, 100)),
    ...                                                 rng.normal(size=(8, 3)))
    >>> pool_windows(est, [rng.normal(size=350), rng.normal(size=90)],
    ...              window_seconds=1.0, pooling="max").shape
    (2, 2)
    """
    import torch

    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not accepted; use one of {list(POOLINGS)}.")
    head, windows, tower = _head_windows(retriever, recordings, window_seconds, hop_seconds,
                                         batch_size, progress)
    rec = torch.as_tensor(windows.recording, device=head.device)
    n = windows.n_recordings
    index = rec[:, None].expand_as(head)
    if pooling == "mean":
        pooled = torch.zeros(n, head.shape[1], device=head.device).scatter_add_(0, index, head)
        pooled /= torch.bincount(rec, minlength=n).clamp_min(1)[:, None].to(head.dtype)
    else:
        pooled = torch.full((n, head.shape[1]), -torch.inf, device=head.device)
        pooled = pooled.scatter_reduce(0, index, head, reduce="amax")
    with torch.no_grad():
        return tower.metric.map(pooled).cpu().numpy().astype(np.float32, copy=False)
