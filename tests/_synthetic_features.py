"""Paired features with a planted shared structure, for estimator tests."""

import numpy as np


def planted_pairs(n_clips=120, captions_per_clip=1, latent=8, audio_dim=24, text_dim=16,
                  noise=0.1, seed=0):
    """Audio and text features that share a latent code per clip.

    Returns ``(audio, text, groups)``: one row per (clip, caption) pair; captions of the
    same clip share the clip's latent code plus their own noise.
    """
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n_clips, latent))
    A = rng.normal(size=(latent, audio_dim))
    B = rng.normal(size=(latent, text_dim))
    groups = np.repeat(np.arange(n_clips), captions_per_clip)
    audio = (Z @ A + noise * rng.normal(size=(n_clips, audio_dim)))[groups]
    text = (Z @ B)[groups] + noise * rng.normal(size=(len(groups), text_dim))
    return audio.astype(np.float64), text.astype(np.float64), groups
