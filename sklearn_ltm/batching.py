"""Batches of raw audio and captions, and encoding whole inputs: shared by training and
inference.

:class:`AudioBatcher` and :class:`TextBatcher` turn row indices into model inputs
(features, waveforms, files read on demand, tokens); :func:`encode_all` runs a model's
encoders (and heads) over every row in eval mode; :func:`audio_stream` reads the audio of
a sequence of batches, in worker processes for files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["AudioBatcher", "TextBatcher", "encode_all", "audio_stream", "epoch_batches",
           "to_device", "autocast"]


def to_device(batch, device):
    """A tensor or a dict of tensors moved to ``device``."""
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


class AudioBatcher:
    """Raw audio batches, one row per clip: features, waveforms or files read on demand.

    Parameters
    ----------
    kind : {"features", "waveforms", "paths"}
    data : ndarray or list of str
        One row (or path) per clip.
    sample_rate : int or None
        Model rate, for files.
    max_seconds : float or None
        Crop length for files.
    """

    def __init__(self, kind: str, data, *, sample_rate=None, max_seconds=None):
        self.kind = kind
        self.data = data
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds

    def __len__(self):
        return len(self.data)

    def __call__(self, clip_indices):
        """Return ``(audio, lengths)`` for the clips ``clip_indices`` (lengths may be None)."""
        idx = np.asarray(clip_indices, dtype=np.int64)
        if self.kind == "paths":
            from .encoders import load_audio_batch

            waves, lengths, _ = load_audio_batch(
                [self.data[i] for i in idx], self.sample_rate, max_seconds=self.max_seconds,
                on_error="raise",
            )
            return torch.from_numpy(np.ascontiguousarray(waves)), torch.from_numpy(lengths)
        return torch.from_numpy(np.ascontiguousarray(self.data[idx])), None


class TextBatcher:
    """Raw caption batches: feature rows, or tokens from the text encoder's tokenizer."""

    def __init__(self, kind: str, data, tokenizer: Callable | None = None):
        self.kind = kind
        self.data = data
        self.tokenizer = tokenizer

    def __len__(self):
        return len(self.data)

    def __call__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        if self.kind == "strings":
            return self.tokenizer([self.data[i] for i in idx])
        return torch.from_numpy(np.ascontiguousarray(self.data[idx]))


def autocast(device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``, else a disabled autocast context."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


@torch.no_grad()
def encode_all(model, batcher, *, side: str, batch_size: int, device, embed: bool = True,
               mixed_precision: bool = False, cache: torch.Tensor | None = None,
               indices=None, progress: bool = False) -> torch.Tensor:
    """Encoder outputs (``embed=False``) or head embeddings of all rows, in eval mode.

    Parameters
    ----------
    model : RetrievalModel
    batcher : AudioBatcher or TextBatcher
    side : {"audio", "text"}
    batch_size : int
    device : torch.device
    embed : bool
        Apply the projection head after the encoder.
    mixed_precision : bool
        bf16 autocast for the encoder on CUDA.
    cache : Tensor or None
        Precomputed encoder outputs for all rows (frozen encoder): used instead of the encoder.
    indices : array-like or None
        Rows to encode (default all).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Tensor of shape (n, dim), on ``device``, float32.
    """
    was_training = model.training
    model.eval()
    n = len(batcher) if indices is None else len(indices)
    rows = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    out = []
    chunks = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"encoding {side}", unit="batch", leave=False)
    try:
        for start in chunks:
            sel = rows[start:start + batch_size]
            if cache is not None:
                enc = cache[torch.as_tensor(sel, device=cache.device)].to(device)
            else:
                raw = batcher(sel)
                with autocast(device, mixed_precision):
                    if side == "audio":
                        audio, lengths = raw
                        enc = model.encode_audio(
                            audio.to(device), None if lengths is None else lengths.to(device)
                        )
                    else:
                        enc = model.encode_text(to_device(raw, device))
                enc = enc.float()
            if embed:
                enc = model.embed_audio(enc) if side == "audio" else model.embed_text(enc)
            out.append(enc.float())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("nothing to encode: the input is empty.")
    return torch.cat(out)


class _ClipBatches(torch.utils.data.Dataset):
    """The audio of each batch's clips, so a DataLoader can read files in workers."""

    def __init__(self, audio: AudioBatcher, clip_batches):
        self.audio = audio
        self.clip_batches = clip_batches

    def __len__(self):
        return len(self.clip_batches)

    def __getitem__(self, i):
        return self.audio(self.clip_batches[i])


def audio_stream(audio: AudioBatcher, clip_batches, num_workers: int, device):
    """Yield ``(audio, lengths)`` per batch: read in ``num_workers`` worker processes when
    the audio is files (pinned memory on CUDA), else in this process; ``None`` forever
    when the audio comes from a cache."""
    if clip_batches is None:
        while True:
            yield None
    if audio.kind != "paths" or num_workers == 0:
        for clips in clip_batches:
            yield audio(clips)
        return
    loader = torch.utils.data.DataLoader(
        _ClipBatches(audio, clip_batches), batch_size=None, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda",
        # its own generator: starting workers must not consume the global torch RNG that
        # SpecAugment and dropout draw from, or the workers would change the model
        generator=torch.Generator().manual_seed(0),
    )
    yield from loader


def epoch_batches(order: np.ndarray, batch_size: int):
    """Split an epoch's pair order into batches of about ``batch_size`` pairs (>= 2)."""
    n_batches = max(1, len(order) // batch_size)
    # Spread the remainder over the batches instead of dropping it or making a tiny batch.
    return [b for b in np.array_split(order, n_batches) if len(b) >= 2]
