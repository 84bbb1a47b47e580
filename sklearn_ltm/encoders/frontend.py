"""Log-mel front end and SpecAugment, as torch modules.

Defaults follow the paper (PANNs front end): 32 kHz, ``n_fft = window = 1024``, hop 320,
64 mel bands from 50 Hz to 14 kHz, power in decibels. Clips of different lengths in one
batch are handled exactly: each clip's frames are computed from its own samples only.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .._validation import check_value, positive_int

__all__ = ["LogMelFrontEnd", "SpecAugment", "num_frames"]

MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", "unit_sum", None)
COMPRESSIONS = ("db", "log10_shift")
PAD_MODES = ("reflect", "constant")


def num_frames(n_samples, hop_length: int, n_fft: int, center: bool = True):
    """Number of STFT frames for clips of ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int or torch.Tensor of int
        Clip lengths.
    hop_length, n_fft : int
        STFT hop and size.
    center : bool, default=True
        Whether frames are centred (the signal padded by ``n_fft // 2`` each side).

    Returns
    -------
    int or torch.Tensor
        ``1 + n_samples // hop_length`` when centred, else
        ``1 + (n_samples - n_fft) // hop_length`` (at least 0).

    Examples
    --------
    >>> num_frames(320000, 320, 1024)
    1001
    """
    if center:
        return 1 + n_samples // hop_length
    out = 1 + (n_samples - n_fft) // hop_length
    return out.clamp_min(0) if isinstance(out, torch.Tensor) else max(out, 0)


def _positive_int(value, name: str, caller: str = "LogMelFrontEnd") -> int:
    return int(check_value(value, name, [positive_int()], caller))


def _nonnegative_int(value, name: str, caller: str = "SpecAugment") -> int:
    return int(check_value(value, name, [positive_int(0)], caller))


class LogMelFrontEnd(nn.Module):
    """Waveforms to log-mel spectrograms (a torch module without parameters).

    Parameters
    ----------
    sample_rate : int, default=32000
        Input sample rate in Hz.
    n_fft : int, default=1024
        FFT size; also the Hann window length.
    hop_length : int, default=320
        Samples between frames (10 ms at 32 kHz).
    n_mels : int, default=64
        Mel bands.
    f_min, f_max : float, default=50.0, 14000.0
        Band edges in Hz; ``f_max`` at most ``sample_rate / 2``.
    mel_scale : {"slaney", "htk"}, default="slaney"
        Mel formula (PANNs and librosa use "slaney"; aisfx uses "htk").
    mel_norm : {"slaney", "unit_sum", None}, default="slaney"
        Filter normalisation: "slaney" equal area, "unit_sum" each filter sums to one.
    compression : {"db", "log10_shift"}, default="db"
        ``10 log10(max(power, amin))`` (PANNs) or ``log10(1 + 10^4 power)`` (aisfx).
    center : bool, default=True
        Centre the frames.
    pad_mode : {"reflect", "constant"}, default="reflect"
        Padding of the signal edges when ``center=True``.
    amin : float, default=1e-10
        Floor of the power before the decibel log (silence gives -100 dB, never NaN).

    Attributes
    ----------
    mel_fb : torch.Tensor of shape (n_fft // 2 + 1, n_mels)
        The mel filterbank (a non-persistent buffer: it is not in ``state_dict``).

    Examples
    --------
    >>> import torch
    >>> frontend = LogMelFrontEnd()
    >>> mel, frame_lengths = frontend(torch.zeros(2, 32000))
    >>> tuple(mel.shape), frame_lengths
    ((2, 101, 64), None)
    >>> float(mel.min())
    -100.0
    """

    def __init__(self, sample_rate=32000, n_fft=1024, hop_length=320, n_mels=64, f_min=50.0,
                 f_max=14000.0, mel_scale="slaney", mel_norm="slaney", compression="db",
                 center=True, pad_mode="reflect", amin=1e-10):
        super().__init__()
        import torchaudio

        self.sample_rate = _positive_int(sample_rate, "sample_rate")
        self.n_fft = _positive_int(n_fft, "n_fft")
        self.hop_length = _positive_int(hop_length, "hop_length")
        self.n_mels = _positive_int(n_mels, "n_mels")
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"f_min={f_min!r}, f_max={f_max!r} are not accepted; need "
                f"0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}."
            )
        for value, name, accepted in [(mel_scale, "mel_scale", MEL_SCALES),
                                      (mel_norm, "mel_norm", MEL_NORMS),
                                      (compression, "compression", COMPRESSIONS),
                                      (pad_mode, "pad_mode", PAD_MODES)]:
            if value not in accepted:
                raise ValueError(f"{name}={value!r} is not accepted; use one of {accepted}.")
        if not (isinstance(amin, numbers.Real) and amin > 0):
            raise ValueError(f"amin={amin!r} is not accepted; give a float > 0.")
        self.f_min, self.f_max = float(f_min), float(f_max)
        self.mel_scale, self.mel_norm, self.compression = mel_scale, mel_norm, compression
        self.center, self.pad_mode, self.amin = bool(center), pad_mode, float(amin)
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1, f_min=self.f_min, f_max=self.f_max, n_mels=self.n_mels,
            sample_rate=self.sample_rate, norm="slaney" if mel_norm == "slaney" else None,
            mel_scale=mel_scale,
        )
        if mel_norm == "unit_sum":
            fb = fb / fb.sum(dim=0, keepdim=True).clamp_min(1e-12)
        self.register_buffer("mel_fb", fb.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True),
                             persistent=False)

    def frame_counts(self, n_samples):
        """Frames of clips of ``n_samples`` samples (int or tensor), see :func:`num_frames`.

        Examples
        --------
        >>> LogMelFrontEnd().frame_counts(32000)
        101
        """
        return num_frames(n_samples, self.hop_length, self.n_fft, self.center)

    def _log_mel(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):  # always float32
            return self._log_mel_fp32(x.float())

    def _log_mel_fp32(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length, window=self.window,
                          center=self.center, pad_mode=self.pad_mode, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb)
        if self.compression == "db":
            return 10.0 * torch.log10(mel.clamp_min(self.amin))
        return torch.log10(1.0 + 1e4 * mel)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Log-mel spectrograms of a batch.

        Parameters
        ----------
        waveforms : torch.Tensor of shape (batch, n_samples)
        lengths : torch.Tensor of int, shape (batch,), or None
            Real samples of each row; the padding after them is ignored. None: all real.

        Returns
        -------
        log_mel : torch.Tensor of shape (batch, n_frames, n_mels)
            Frames past a clip's own frame count are 0.
        frame_lengths : torch.Tensor of int64, shape (batch,), or None
            Frames of each clip; None when ``lengths`` is None or no row is padded.

        Examples
        --------
        >>> import torch
        >>> mel, frames = LogMelFrontEnd()(torch.zeros(2, 3200), torch.tensor([3200, 1000]))
        >>> tuple(mel.shape), frames.tolist()
        ((2, 11, 64), [11, 4])
        """
        if waveforms.ndim != 2:
            raise ValueError(
                f"waveforms has shape {tuple(waveforms.shape)}; expected (batch, n_samples)."
            )
        x = waveforms.float()
        n_total = x.shape[1]
        if lengths is None or bool((lengths == n_total).all()):
            return self._log_mel(x), None
        lengths = lengths.to(device=x.device, dtype=torch.long)
        frame_lengths = self.frame_counts(lengths)
        out = x.new_zeros(x.shape[0], int(self.frame_counts(n_total)), self.n_mels)
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero(as_tuple=True)[0]
            mel = self._log_mel(x[rows, :n])
            out[rows, : mel.shape[1]] = mel
        return out, frame_lengths

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min}, "
                f"f_max={self.f_max}, mel_scale={self.mel_scale!r}, "
                f"compression={self.compression!r}")


class SpecAugment(nn.Module):
    """Random time and frequency masks on spectrograms, in training mode only.

    Each example gets ``time_masks`` stripes of ``0 <= width < time_mask_width`` frames and
    ``freq_masks`` stripes of ``0 <= width < freq_mask_width`` bins set to zero (the PANNs
    recipe; the paper: 2 masks of up to 64 frames, 2 of up to 8 bins). Time stripes fall
    inside each clip's real frames. In eval mode the input is returned unchanged; the
    input is never modified in place. Draws from torch's global generator.

    Parameters
    ----------
    time_masks : int, default=2
    time_mask_width : int, default=64
    freq_masks : int, default=2
    freq_mask_width : int, default=8

    Examples
    --------
    >>> import torch
    >>> augment = SpecAugment()
    >>> x = torch.ones(1, 1, 500, 64)
    >>> bool(torch.equal(augment.eval()(x), x))
    True
    >>> _ = torch.manual_seed(0)
    >>> float(augment.train()(x).mean()) < 1.0
    True
    """

    def __init__(self, time_masks=2, time_mask_width=64, freq_masks=2, freq_mask_width=8):
        super().__init__()
        self.time_masks = _nonnegative_int(time_masks, "time_masks")
        self.time_mask_width = _positive_int(time_mask_width, "time_mask_width", "SpecAugment")
        self.freq_masks = _nonnegative_int(freq_masks, "freq_masks")
        self.freq_mask_width = _positive_int(freq_mask_width, "freq_mask_width", "SpecAugment")

    @staticmethod
    def _stripes(totals: torch.Tensor, n_stripes: int, max_width: int, size: int) -> torch.Tensor:
        """Boolean (batch, size): True inside one of ``n_stripes`` random stripes."""
        batch, device = totals.shape[0], totals.device
        width = (torch.rand(batch, n_stripes, device=device) * max_width).long()
        width = torch.minimum(width, totals[:, None])
        start = (torch.rand(batch, n_stripes, device=device)
                 * (totals[:, None] - width + 1)).long()
        pos = torch.arange(size, device=device)
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
        return inside.any(dim=1)

    def forward(self, x: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mask ``x`` of shape (batch, channels, time, freq); identity in eval mode.

        ``frame_lengths`` (batch,) limits the time stripes to each clip's real frames.

        Examples
        --------
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> x = torch.ones(1, 1, 10, 4)
        >>> y = SpecAugment(freq_masks=0, time_mask_width=5).train()(x, torch.tensor([6]))
        >>> bool(y[0, 0, 6:].eq(1).all())  # frames 6.. are padding: never masked
        True
        """
        if not self.training or (self.time_masks == 0 and self.freq_masks == 0):
            return x
        batch, _, n_time, n_freq = x.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), n_time, device=x.device, dtype=torch.long)
        drop_t = self._stripes(frame_lengths.to(x.device), self.time_masks,
                               self.time_mask_width, n_time)
        drop_f = self._stripes(torch.full((batch,), n_freq, device=x.device, dtype=torch.long),
                               self.freq_masks, self.freq_mask_width, n_freq)
        keep = ~(drop_t[:, None, :, None] | drop_f[:, None, None, :])
        return x * keep.to(x.dtype)

    def get_config(self) -> dict:
        """The constructor arguments (JSON-serialisable).

        Examples
        --------
        >>> SpecAugment().get_config()["time_mask_width"]
        64
        """
        return {"time_masks": self.time_masks, "time_mask_width": self.time_mask_width,
                "freq_masks": self.freq_masks, "freq_mask_width": self.freq_mask_width}


def log_mel_config(frontend: LogMelFrontEnd) -> dict:
    """The PANNs-relevant constructor arguments of ``frontend`` (JSON-serialisable)."""
    return {"sample_rate": frontend.sample_rate, "n_fft": frontend.n_fft,
            "hop_length": frontend.hop_length, "n_mels": frontend.n_mels,
            "f_min": frontend.f_min, "f_max": frontend.f_max}

