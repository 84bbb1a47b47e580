"""Reading audio files (WAV, FLAC, OGG) and bringing waveforms to a model's sample rate.

Files are read with :mod:`soundfile`, downmixed to mono by averaging the channels,
resampled with :func:`torchaudio.functional.resample` and cropped to a maximum length.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "AudioFileError",
    "AudioFilesSkippedWarning",
    "check_audio_files",
    "load_audio",
    "load_audio_batch",
    "pad_batch",
    "resample_waveforms",
]

CROP_MODES = ("start", "center", "random")
ON_ERROR_MODES = ("raise", "skip")


class AudioFileError(OSError, ValueError):
    """An audio file is missing, empty or cannot be decoded.

    The message names the file; the attribute ``path`` holds it.

    Examples
    --------
    >>> err = AudioFileError("audio file 'a.wav' does not exist.", path="a.wav")
    >>> err.path
    'a.wav'
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)

    def __reduce__(self):
        return (type(self), (str(self), self.path))


class AudioFilesSkippedWarning(UserWarning):
    """Some audio files could not be read and were left out (``on_error="skip"``).

    Examples
    --------
    >>> issubclass(AudioFilesSkippedWarning, UserWarning)
    True
    """


# --------------------------------------------------------------------------- validation
def check_sample_rate(sample_rate, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as a positive int, or raise naming the bad value."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(f"{name}={sample_rate!r} is not a number; give a positive int in Hz.")
    if not math.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"{name}={sample_rate!r} is not accepted; give a positive int in Hz.")
    return int(sample_rate)


def _check_max_seconds(max_seconds) -> float | None:
    if max_seconds is None:
        return None
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, numbers.Real):
        raise TypeError(f"max_seconds={max_seconds!r} is not a number; give None or seconds > 0.")
    if not math.isfinite(max_seconds) or max_seconds <= 0:
        raise ValueError(f"max_seconds={max_seconds!r} is not accepted; give None or seconds > 0.")
    return float(max_seconds)


def _check_choice(value, name: str, accepted: tuple, caller: str) -> str:
    from .._validation import StrOptions, check_value

    return check_value(value, name, [StrOptions(set(accepted))], caller)


def _check_n_jobs(n_jobs, caller: str):
    from .._validation import check_value, positive_int

    # a bool passes scikit-learn's Interval(Integral) but is no thread count: refuse it
    check_value(repr(n_jobs) if isinstance(n_jobs, bool) else n_jobs, "n_jobs",
                [positive_int(), None], caller)
    return n_jobs


def _check_path(path, name: str = "path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}={path!r} is not a path; give a str or path-like.")
    return os.fspath(path)


# --------------------------------------------------------------------------- resampling
@functools.lru_cache(maxsize=16)
def _resampler(orig_sr: int, target_sr: int):
    """A cached torchaudio ``Resample`` (its sinc kernel is computed once per rate pair)."""
    import torchaudio

    return torchaudio.transforms.Resample(orig_sr, target_sr)


def resample_waveforms(waveforms, orig_sr, target_sr):
    """Resample waveforms from ``orig_sr`` to ``target_sr`` along the last axis.

    Band-limited sinc interpolation (:func:`torchaudio.functional.resample`): a tone
    below both Nyquist frequencies keeps its frequency and amplitude.

    Parameters
    ----------
    waveforms : ndarray or torch.Tensor of shape (n_samples,) or (..., n_samples)
        The audio, float or int. Not modified.
    orig_sr, target_sr : int
        Sample rates in Hz.

    Returns
    -------
    ndarray of float32 or torch.Tensor
        Of shape ``(..., ceil(n_samples * target_sr / orig_sr))``; a numpy input gives a
        float32 array, a tensor input a tensor of the same floating dtype and device.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    >>> y = resample_waveforms(x, 22050, 32000)
    >>> y.shape, y.dtype
    ((32000,), dtype('float32'))
    """
    import torch

    orig_sr = check_sample_rate(orig_sr, "orig_sr")
    target_sr = check_sample_rate(target_sr, "target_sr")
    is_tensor = isinstance(waveforms, torch.Tensor)
    if is_tensor:
        x = waveforms if waveforms.is_floating_point() else waveforms.float()
    else:
        arr = np.asarray(waveforms)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"waveforms of dtype {arr.dtype} are not audio; give float or int samples.")
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if x.ndim == 0:
        raise ValueError("waveforms is a scalar; give an array of shape (n_samples,) or (..., n_samples).")
    if orig_sr == target_sr or x.shape[-1] == 0:
        y = x.clone()
    elif x.dtype == torch.float32 and x.device.type == "cpu":
        with torch.no_grad():
            y = _resampler(orig_sr, target_sr)(x)
    else:
        import torchaudio

        y = torchaudio.functional.resample(x, orig_sr, target_sr)
    return y if is_tensor else y.numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------- reading
def _check_is_file(path: str) -> None:
    """Raise :class:`AudioFileError` unless ``path`` is a non-empty regular file."""
    if os.path.isdir(path):
        raise AudioFileError(f"audio file {path!r} is a directory, not a file.", path)
    if not os.path.exists(path):
        raise AudioFileError(f"audio file {path!r} does not exist.", path)
    if not os.path.isfile(path):
        raise AudioFileError(f"audio file {path!r} is not a regular file.", path)
    if os.path.getsize(path) == 0:
        raise AudioFileError(f"audio file {path!r} is empty (0 bytes).", path)


_CHECK_BLOCK_FRAMES = 1 << 16


def _validate_file(path: str, max_seconds: float | None, decode: bool = True) -> None:
    """Decode the part of ``path`` that :func:`load_audio` would read (the first
    ``max_seconds``, or all), block by block; raise :class:`AudioFileError` on any failure.
    ``decode=False``: only the file and its header are checked."""
    import soundfile as sf

    _check_is_file(path)
    if not decode:
        try:
            frames = sf.info(path).frames
        except (RuntimeError, sf.SoundFileError, TypeError, ValueError, OSError) as exc:
            raise AudioFileError(f"audio file {path!r} could not be decoded: {exc}", path) from exc
        if frames == 0:
            raise AudioFileError(f"audio file {path!r} is empty: it holds no audio samples.",
                                 path)
        return
    n_read = 0
    try:
        with sf.SoundFile(path) as fh:
            limit = None
            if max_seconds is not None:
                limit = math.ceil(max_seconds * fh.samplerate)
            while limit is None or n_read < limit:
                want = _CHECK_BLOCK_FRAMES if limit is None else min(_CHECK_BLOCK_FRAMES,
                                                                     limit - n_read)
                block = fh.read(want, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                if not np.isfinite(block).all():
                    raise AudioFileError(
                        f"audio file {path!r} is corrupt: it holds NaN or infinite samples.", path)
                n_read += block.shape[0]
    except AudioFileError:
        raise
    except (RuntimeError, sf.SoundFileError, TypeError, ValueError, OSError) as exc:
        raise AudioFileError(f"audio file {path!r} could not be decoded: {exc}", path) from exc
    if n_read == 0:
        raise AudioFileError(f"audio file {path!r} is empty: it holds no audio samples.", path)


def check_audio_files(paths, on_error="raise", *, max_seconds=None, decode=True, n_jobs=None,
                      count_as="entries", stacklevel=2):
    """Decode every distinct file of ``paths`` once and say which entries are readable.

    Each file is read as :func:`load_audio` reads it (the first ``max_seconds``, or all of
    it), in blocks, so a file that is missing, a directory, empty, undecodable or holds NaN
    or infinite samples is found before any work starts, at the cost of one decode.

    Parameters
    ----------
    paths : sequence of str or path-like
        The files; a file listed several times is decoded once.
    on_error : {"raise", "skip"}, default="raise"
        Raise :class:`AudioFileError` naming the first bad file, or mark its entries as
        unreadable and warn once (:class:`AudioFilesSkippedWarning`) with the counts.
    max_seconds : float or None, default=None
        Decode only this much of each file (what will be used).
    decode : bool, default=True
        Decode the samples (finds NaN samples and corrupt data); ``False`` checks only that
        each file is there and has a readable header with samples (much faster: no sample is read;
        :func:`load_audio` still refuses a corrupt file when it reads it).
    n_jobs : int or None, default=None
        Threads decoding at the same time (None: 1).
    count_as : str, default="entries"
        Word for the entries in the warning (e.g. ``"pairs"``).
    stacklevel : int, default=2
        Stack level of the warning.

    Returns
    -------
    keep : ndarray of bool, shape (len(paths),)
        ``True`` where the entry's file is readable.

    Examples
    --------
    >>> import tempfile, os, warnings, numpy as np, soundfile as sf
    >>> folder = tempfile.mkdtemp()
    >>> good, nan = os.path.join(folder, "good.wav"), os.path.join(folder, "nan.wav")
    >>> sf.write(good, np.zeros(1600, dtype="float32"), 16000)
    >>> sf.write(nan, np.full(1600, np.nan, dtype="float32"), 16000, subtype="FLOAT")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     check_audio_files([good, nan, good, folder], on_error="skip")
    array([ True, False,  True, False])
    """
    if isinstance(paths, (str, bytes, os.PathLike)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths={paths!r} is not a sequence of paths; give a list of file paths.")
    paths = [_check_path(p, f"paths[{i}]") for i, p in enumerate(paths)]
    _check_choice(on_error, "on_error", ON_ERROR_MODES, "check_audio_files")
    max_seconds = _check_max_seconds(max_seconds)
    _check_n_jobs(n_jobs, "check_audio_files")
    distinct = list(dict.fromkeys(paths))

    def check(path):
        try:
            _validate_file(path, max_seconds, decode)
        except AudioFileError as exc:
            if on_error == "raise":
                raise
            return exc
        return None

    if n_jobs is None or n_jobs == 1 or len(distinct) < 2:
        verdicts = [check(p) for p in distinct]
    else:
        with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
            verdicts = list(pool.map(check, distinct))
    failed = {p: v for p, v in zip(distinct, verdicts) if v is not None}
    keep = np.array([p not in failed for p in paths], dtype=bool)
    if failed:
        first = next(iter(failed.values()))
        warnings.warn(
            f"skipped {len(failed)} unreadable audio file(s) ({int((~keep).sum())} {count_as}) "
            f"of {len(distinct)}, e.g. {list(failed)[:3]}; first: {first}",
            AudioFilesSkippedWarning,
            stacklevel=stacklevel,
        )
    return keep


def _read_file(path: str, max_frames_at: float | None, crop: str, rng):
    """Read (a crop of) ``path``: returns (float32 array (channels, n), file sample rate)."""
    import soundfile as sf

    _check_is_file(path)
    try:
        info = sf.info(path)
        start, stop = 0, None
        if max_frames_at is not None and info.frames > 0:
            keep = math.ceil(max_frames_at * info.samplerate)
            if info.frames > keep:
                if crop == "center":
                    start = (info.frames - keep) // 2
                elif crop == "random":
                    start = int(rng.randint(0, info.frames - keep + 1))
                stop = start + keep
        data, file_sr = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except (RuntimeError, sf.SoundFileError, TypeError, ValueError) as exc:
        raise AudioFileError(f"audio file {path!r} could not be decoded: {exc}", path) from exc
    if data.size == 0:
        raise AudioFileError(f"audio file {path!r} is empty: it holds no audio samples.", path)
    if not np.isfinite(data).all():
        raise AudioFileError(f"audio file {path!r} is corrupt: it holds NaN or infinite samples.", path)
    return np.ascontiguousarray(data.T), int(file_sr)


def load_audio(path, sample_rate, *, max_seconds=None, mono=True, crop="start", random_state=None):
    """Read an audio file, downmix it, resample it to ``sample_rate`` and crop it.

    Parameters
    ----------
    path : str or path-like
        A WAV, FLAC or OGG file (any format libsndfile reads).
    sample_rate : int
        The model's sample rate in Hz (32000 for the PANNs encoders).
    max_seconds : float or None, default=None
        Keep at most this many seconds (the paper: 10 s for AudioCaps, 30 s for Clotho).
        Only the kept part is read from disk.
    mono : bool, default=True
        Average the channels into one.
    crop : {"start", "center", "random"}, default="start"
        Which part of a longer file to keep.
    random_state : int, RandomState instance or None
        Seeds ``crop="random"``.

    Returns
    -------
    waveform : ndarray of float32, shape (n_samples,) or (n_channels, n_samples)
        The second shape when ``mono=False``.

    Raises
    ------
    AudioFileError
        When the file is missing, empty, undecodable or holds NaN samples; the message
        names the file.

    Examples
    --------
    >>> import tempfile, os, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> stereo = np.zeros((22050, 2), dtype="float32")
    >>> sf.write(path, stereo, 22050)
    >>> load_audio(path, 32000).shape
    (32000,)
    >>> load_audio(path, 32000, max_seconds=0.5).shape
    (16000,)
    """
    from sklearn.utils import check_random_state

    path = _check_path(path)
    sample_rate = check_sample_rate(sample_rate)
    max_seconds = _check_max_seconds(max_seconds)
    _check_choice(crop, "crop", CROP_MODES, "load_audio")
    rng = check_random_state(random_state) if crop == "random" else None
    data, file_sr = _read_file(path, max_seconds, crop, rng)
    if mono:
        data = data.mean(axis=0, keepdims=True)
    data = resample_waveforms(data, file_sr, sample_rate)
    if max_seconds is not None:
        data = data[:, : int(round(max_seconds * sample_rate))]
    data = np.ascontiguousarray(data, dtype=np.float32)
    return data[0] if mono else data


def pad_batch(waveforms, *, length=None):
    """Stack 1-D waveforms of different lengths into one zero-padded array.

    Parameters
    ----------
    waveforms : sequence of array-like of shape (n_samples_i,)
        The clips. Not modified.
    length : int or None, default=None
        The output length: longer clips are cropped to it, shorter ones padded. Default:
        the longest clip.

    Returns
    -------
    batch : ndarray of float32, shape (n_clips, length)
    lengths : ndarray of int64, shape (n_clips,)
        The number of real (unpadded) samples of each row.

    Examples
    --------
    >>> batch, lengths = pad_batch([[1.0, 2.0, 3.0], [4.0]])
    >>> batch
    array([[1., 2., 3.],
           [4., 0., 0.]], dtype=float32)
    >>> lengths
    array([3, 1])
    """
    arrays = []
    for i, w in enumerate(waveforms):
        arr = np.asarray(w, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"waveforms[{i}] has shape {arr.shape}; each clip must be 1-D (n_samples,).")
        arrays.append(arr)
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
            raise ValueError(f"length={length!r} is not accepted; give None or an int >= 0.")
        length = int(length)
    else:
        length = max((a.shape[0] for a in arrays), default=0)
    batch = np.zeros((len(arrays), length), dtype=np.float32)
    lengths = np.zeros(len(arrays), dtype=np.int64)
    for i, arr in enumerate(arrays):
        n = min(arr.shape[0], length)
        batch[i, :n] = arr[:n]
        lengths[i] = n
    return batch, lengths


def load_audio_batch(paths, sample_rate, *, max_seconds=None, on_error="raise", crop="start",
                     random_state=None, n_jobs=None):
    """Read many audio files into one zero-padded batch with their true lengths.

    Parameters
    ----------
    paths : sequence of str or path-like
        The files.
    sample_rate : int
        The model's sample rate in Hz.
    max_seconds : float or None, default=None
        Crop each clip to at most this many seconds.
    on_error : {"raise", "skip"}, default="raise"
        What a missing, empty or corrupt file does: raise :class:`AudioFileError` naming
        it, or leave it out and warn once (:class:`AudioFilesSkippedWarning`) with the
        number of files skipped.
    crop : {"start", "center", "random"}, default="start"
        Which part of a longer file to keep.
    random_state : int, RandomState instance or None
        Seeds ``crop="random"`` (one seed per file, drawn in order).
    n_jobs : int or None, default=None
        Threads reading files at the same time (None: 1).

    Returns
    -------
    waveforms : ndarray of float32, shape (n_kept, max_length)
        Zero-padded mono clips.
    lengths : ndarray of int64, shape (n_kept,)
        Real samples of each row.
    kept_indices : ndarray of int64, shape (n_kept,)
        Position in ``paths`` of each row.

    Examples
    --------
    >>> import tempfile, os, numpy as np, soundfile as sf
    >>> folder = tempfile.mkdtemp()
    >>> for name, n in [("a.wav", 8000), ("b.wav", 4000)]:
    ...     sf.write(os.path.join(folder, name), np.zeros(n, dtype="float32"), 16000)
    >>> paths = [os.path.join(folder, n) for n in ["a.wav", "missing.wav", "b.wav"]]
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     waves, lengths, kept = load_audio_batch(paths, 16000, on_error="skip")
    >>> waves.shape, lengths, kept
    ((2, 8000), array([8000, 4000]), array([0, 2]))
    """
    from sklearn.utils import check_random_state

    if isinstance(paths, (str, bytes, os.PathLike)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths={paths!r} is not a sequence of paths; give a list of file paths.")
    paths = [_check_path(p, f"paths[{i}]") for i, p in enumerate(paths)]
    sample_rate = check_sample_rate(sample_rate)
    max_seconds = _check_max_seconds(max_seconds)
    _check_choice(on_error, "on_error", ON_ERROR_MODES, "load_audio_batch")
    _check_choice(crop, "crop", CROP_MODES, "load_audio_batch")
    _check_n_jobs(n_jobs, "load_audio_batch")
    rng = check_random_state(random_state)
    seeds = rng.randint(0, 2**31 - 1, size=len(paths)) if crop == "random" else [None] * len(paths)

    def read(i):
        try:
            return load_audio(paths[i], sample_rate, max_seconds=max_seconds, crop=crop,
                              random_state=seeds[i])
        except AudioFileError as exc:
            if on_error == "raise":
                raise
            return exc

    if n_jobs is None or n_jobs == 1 or len(paths) < 2:
        results = [read(i) for i in range(len(paths))]
    else:
        with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
            results = list(pool.map(read, range(len(paths))))
    kept = [i for i, r in enumerate(results) if not isinstance(r, AudioFileError)]
    failures = [r for r in results if isinstance(r, AudioFileError)]
    if failures:
        warnings.warn(
            f"skipped {len(failures)} of {len(paths)} audio files that could not be read; "
            f"first: {failures[0]}",
            AudioFilesSkippedWarning,
            stacklevel=2,
        )
    waveforms, lengths = pad_batch([results[i] for i in kept])
    return waveforms, lengths, np.asarray(kept, dtype=np.int64)
