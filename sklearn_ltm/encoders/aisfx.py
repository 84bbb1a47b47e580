"""The aisfx sound-effects CNN (Ma et al., ISMIR 2021) as an audio encoder.

Our own module; the pretrained weights are read from the checkpoint file shipped inside
the PyPI package ``aisfx`` (install with ``pip install --no-deps aisfx``) with
``torch.load(weights_only=True)`` and an allow-list of numpy scalar types. The package's
code is never imported.

The package's own front end is honoured: 44.1 kHz, peak-normalised audio, 2048-sample
Hann frames with hop 1024, 96 HTK mel bands (0 Hz - 22.05 kHz, unit-sum filters),
``log10(1 + 10^4 power)`` scaled by the package's constant, 100-frame blocks (about
2.3 s) with hop 50. The network embeds each block (512-d); the clip embedding pools the
block embeddings (mean by default).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ._layers import (
    ConvBlock,
    channels_last,
    init_conv_block_weights,
    prepare_waveforms,
    use_channels_last,
)
from ._serialization import extract_state_dict, safe_torch_load
from .frontend import LogMelFrontEnd, SpecAugment

__all__ = ["AisfxEncoder", "aisfx_checkpoint_path", "load_aisfx_state_dict"]

AISFX_INSTALL_HINT = (
    "The 'aisfx' audio encoder reads its pretrained weights from the PyPI package aisfx, "
    "which is not installed. Install it with `pip install --no-deps aisfx` (its own "
    "dependencies are not needed), or build the encoder with pretrained=False."
)
#: The package's spectrogram scaling ("original" normalisation: min 0, max 9.4578...).
AISFX_SPEC_MAX = 9.457798957824707
POOLINGS = ("mean", "max")


def aisfx_checkpoint_path() -> Path:
    """Where the installed aisfx package keeps its checkpoint (found without importing it).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ImportError
        When aisfx is not installed (the message says how to install it).

    Examples
    --------
    >>> try:
    ...     aisfx_checkpoint_path().name
    ... except ImportError:
    ...     'checkpoint.pth'
    'checkpoint.pth'
    """
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(AISFX_INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / "checkpoint.pth"
        if path.is_file():
            return path
    raise ImportError(f"aisfx is installed but its models/checkpoint.pth is missing. "
                      f"{AISFX_INSTALL_HINT}")


def load_aisfx_state_dict(path=None) -> dict:
    """The aisfx embedding network's weights, named as in :class:`AisfxEncoder`.

    Parameters
    ----------
    path : str, path-like or None
        An aisfx checkpoint (a tuple of a state dict and a class map, keys
        ``embedding_net.conv_block*``). None: the installed package's checkpoint.

    Returns
    -------
    dict of str to torch.Tensor
        The ``conv_block1`` .. ``conv_block4`` entries; the classifier heads are dropped.

    Examples
    --------
    >>> try:
    ...     state = load_aisfx_state_dict()
    ...     tuple(state["conv_block1.conv1.weight"].shape)
    ... except ImportError:
    ...     (64, 1, 3, 3)
    (64, 1, 3, 3)
    """
    path = aisfx_checkpoint_path() if path is None else path
    raw = safe_torch_load(path)
    state = extract_state_dict(raw, f"aisfx checkpoint {os.fspath(path)!r}")
    prefix = "embedding_net."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class AisfxEncoder(nn.Module):
    """The pretrained aisfx sound-effects CNN as an audio encoder (512-d, 44.1 kHz input).

    Parameters
    ----------
    pretrained : bool, default=True
        Load the weights of the installed aisfx package (``ImportError`` with the install
        command when it is missing). False: random weights and no need for the package
        (rebuild, then load a ``state_dict``).
    spec_augment : bool, default=True
        SpecAugment on the scaled spectrogram in training mode (never in eval mode).
    pooling : {"mean", "max"}, default="mean"
        How block embeddings are pooled into the clip embedding.
    block_frames, block_hop : int, default=100, 50
        Spectrogram blocks the network sees (the package's values).
    time_mask_width, freq_mask_width : int, default=64, 8
        Maximum SpecAugment stripe widths (2 stripes each).

    Attributes
    ----------
    sample_rate : int
        44100.
    output_dim : int
        512.

    Examples
    --------
    >>> import torch
    >>> encoder = AisfxEncoder(pretrained=False).eval()
    >>> with torch.no_grad():
    ...     out = encoder(torch.zeros(2, 44100))
    >>> tuple(out.shape)
    (2, 512)
    """

    name = "aisfx"
    output_dim = 512

    def __init__(self, *, pretrained=True, spec_augment=True, pooling="mean", block_frames=100,
                 block_hop=50, time_mask_width=64, freq_mask_width=8):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not accepted; use one of {POOLINGS}.")
        for value, label in [(block_frames, "block_frames"), (block_hop, "block_hop")]:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{label}={value!r} is not accepted; give an int > 0.")
        self.frontend = LogMelFrontEnd(sample_rate=44100, n_fft=2048, hop_length=1024,
                                       n_mels=96, f_min=0.0, f_max=22050.0, mel_scale="htk",
                                       mel_norm="unit_sum", compression="log10_shift",
                                       center=True, pad_mode="constant")
        self.sample_rate = self.frontend.sample_rate
        self.spec_augment = bool(spec_augment)
        self.spec_augmenter = SpecAugment(time_mask_width=time_mask_width,
                                          freq_mask_width=freq_mask_width)
        self.pooling = pooling
        self.block_frames, self.block_hop = block_frames, block_hop
        for i, (c_in, c_out) in enumerate([(1, 64), (64, 128), (128, 256), (256, 512)], 1):
            setattr(self, f"conv_block{i}", ConvBlock(c_in, c_out, pool_type="max"))
        init_conv_block_weights(self)
        use_channels_last(self)
        if pretrained:
            self.load_state_dict(load_aisfx_state_dict())

    # ---------------------------------------------------------------- pieces
    def n_blocks(self, n_frames: int) -> int:
        """Blocks of a clip of ``n_frames`` frames (the package's rule: drop a partial one).

        Examples
        --------
        >>> AisfxEncoder(pretrained=False).n_blocks(431)  # a 10 s clip
        7
        """
        over = n_frames - self.block_frames
        count = -(-over // self.block_hop) + 1  # ceil(over / hop) + 1
        if over % self.block_hop != 0:
            count -= 1
        return max(count, 1)

    def spectrogram(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Peak-normalised, scaled log-mel spectrograms: ((batch, frames, 96), frame counts).

        Frames past a clip's own count are 0.

        Examples
        --------
        >>> import torch
        >>> spec, frames = AisfxEncoder(pretrained=False).spectrogram(torch.zeros(1, 44100))
        >>> tuple(spec.shape), frames.tolist()
        ((1, 44, 96), [44])
        """
        waveforms, lengths = prepare_waveforms(waveforms, lengths, 1)
        peak = waveforms.abs().amax(dim=1, keepdim=True)
        waveforms = waveforms / torch.where(peak > 0, peak, torch.ones_like(peak))
        spec, frame_lengths = self.frontend(waveforms, lengths)
        if frame_lengths is None:
            frame_lengths = torch.full((spec.shape[0],), spec.shape[1], dtype=torch.long,
                                       device=spec.device)
        return spec / AISFX_SPEC_MAX, frame_lengths

    def embed_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Network output for blocks of shape (n_blocks, block_frames, 96): (n_blocks, 512).

        Examples
        --------
        >>> import torch
        >>> encoder = AisfxEncoder(pretrained=False).eval()
        >>> tuple(encoder.embed_blocks(torch.zeros(3, 100, 96)).shape)
        (3, 512)
        """
        x = channels_last(blocks.unsqueeze(1))
        for i in range(1, 5):
            x, _ = getattr(self, f"conv_block{i}")(x, None, pool_size=(2, 2) if i < 4 else (1, 1))
        return x.mean(dim=3).amax(dim=2)

    def block_embeddings(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Per-block embeddings of each clip, as the aisfx package computes them.

        Parameters
        ----------
        waveforms : torch.Tensor of shape (batch, n_samples) at 44.1 kHz
        lengths : torch.Tensor of int, shape (batch,), or None

        Returns
        -------
        list of torch.Tensor of shape (n_blocks_i, 512)

        Examples
        --------
        >>> import torch
        >>> encoder = AisfxEncoder(pretrained=False).eval()
        >>> with torch.no_grad():
        ...     blocks = encoder.block_embeddings(torch.zeros(2, 176400),
        ...                                       lengths=torch.tensor([176400, 44100]))
        >>> [tuple(b.shape) for b in blocks]  # 4 s: 2 full blocks; 1 s: 1 padded block
        [(2, 512), (1, 512)]
        """
        spec, frame_lengths = self.spectrogram(waveforms, lengths)
        if self.training and self.spec_augment:
            spec = self.spec_augmenter(spec.unsqueeze(1), frame_lengths).squeeze(1)
        counts = [self.n_blocks(int(n)) for n in frame_lengths.tolist()]
        padded = torch.nn.functional.pad(spec, (0, 0, 0, self.block_frames + self.block_hop))
        blocks = padded.unfold(1, self.block_frames, self.block_hop).transpose(2, 3)
        chosen = torch.cat([blocks[i, :c] for i, c in enumerate(counts)])
        return list(torch.split(self.embed_blocks(chosen), counts))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Clip embeddings (batch, 512): block embeddings pooled by ``self.pooling``.

        Parameters
        ----------
        waveforms : torch.Tensor of shape (batch, n_samples), float, at 44.1 kHz
        lengths : torch.Tensor of int, shape (batch,), or None
            Real samples of each row (padding does not change a row's embedding).

        Returns
        -------
        torch.Tensor of shape (batch, 512)

        Examples
        --------
        >>> import torch
        >>> encoder = AisfxEncoder(pretrained=False, pooling="max").eval()
        >>> with torch.no_grad():
        ...     out = encoder(torch.zeros(1, 88200))
        >>> tuple(out.shape)
        (1, 512)
        """
        per_clip = self.block_embeddings(waveforms, lengths)
        reduce = (lambda e: e.mean(dim=0)) if self.pooling == "mean" else (lambda e: e.amax(dim=0))
        return torch.stack([reduce(e) for e in per_clip])

    def get_config(self) -> dict:
        """Arguments rebuilding this architecture with ``build_audio_encoder(**config)``.

        ``pretrained`` is False in the config, so rebuilding never needs the aisfx package;
        load the weights from a ``state_dict`` afterwards.

        Examples
        --------
        >>> AisfxEncoder(pretrained=False).get_config()["pretrained"]
        False
        """
        return {"name": self.name, "pretrained": False, "spec_augment": self.spec_augment,
                "pooling": self.pooling, "block_frames": self.block_frames,
                "block_hop": self.block_hop,
                "time_mask_width": self.spec_augmenter.time_mask_width,
                "freq_mask_width": self.spec_augmenter.freq_mask_width}

    def load_aisfx_checkpoint(self, path_or_state_dict) -> None:
        """Load weights from an aisfx-format checkpoint file or state dict (checked keys).

        Examples
        --------
        >>> encoder = AisfxEncoder(pretrained=False)
        >>> encoder.load_aisfx_checkpoint(
        ...     {"embedding_net." + k: v for k, v in encoder.state_dict().items()})
        """
        if isinstance(path_or_state_dict, Mapping):
            state = extract_state_dict(path_or_state_dict, "the given state dict")
            prefix = "embedding_net."
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        else:
            state = load_aisfx_state_dict(path_or_state_dict)
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint does not match the aisfx encoder: {exc}") from exc
