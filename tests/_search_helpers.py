"""Cheap audio for the search, window and export tests: tones of a few pitches and a tiny
band-energy encoder (a user module, as the estimator accepts), so models train in seconds."""

import numpy as np
import torch

SR = 8000
CLIP_SECONDS = 0.5
PITCHES = {"a low hum": 250.0, "a whistle": 1000.0, "a beep": 2000.0, "a high squeal": 3200.0}


def tone(freq, seconds=CLIP_SECONDS, seed=0):
    """A tone with a little noise, float32 at SR."""
    t = np.arange(int(seconds * SR)) / SR
    noise = 0.02 * np.random.default_rng(seed).normal(size=t.size)
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


class BandEnergy(torch.nn.Module):
    """Log energy in 16 frequency bands of 256-sample frames, averaged over a clip's frames."""

    sample_rate = SR
    output_dim = 16
    min_samples = 256

    def forward(self, waveforms, lengths=None):
        x = waveforms.float()
        if x.shape[1] < self.min_samples:
            x = torch.nn.functional.pad(x, (0, self.min_samples - x.shape[1]))
        frames = x.unfold(1, 256, 128)  # (batch, n_frames, 256)
        power = torch.fft.rfft(frames, dim=-1).abs().square()[..., :128]
        bands = torch.log1p(power.reshape(*power.shape[:2], 16, 8).sum(-1))
        if lengths is None:
            return bands.mean(dim=1)
        n_frames = ((lengths.clamp_min(256) - 256) // 128 + 1).to(x.device)
        keep = (torch.arange(bands.shape[1], device=x.device)[None, :] < n_frames[:, None])
        keep = keep.float()[..., None]
        return (bands * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def tone_corpus(n_per_class=6, seed=0):
    """Waveforms (n, SR * CLIP_SECONDS) and captions of the PITCHES classes."""
    waves, captions = [], []
    for c, (caption, freq) in enumerate(PITCHES.items()):
        for i in range(n_per_class):
            waves.append(tone(freq * (1 + 0.01 * i), seed=seed + 100 * c + i))
            captions.append(caption)
    return np.stack(waves), captions


def fit_tone_model(**params):
    """An LTMRetriever trained to match tones to their captions (a few seconds)."""
    from sklearn_ltm import LTMRetriever

    waves, captions = tone_corpus()
    options = dict(embedding_dim=8, max_epochs=40, batch_size=8, learning_rate=1e-2,
                   validation_fraction=0.0, random_state=0, loss="contrastive")
    options.update(params)
    return LTMRetriever(BandEnergy(), "scratch", **options).fit(waves, captions)
