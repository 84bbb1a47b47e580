"""Building blocks shared by the CNN audio encoders: masked conv blocks and input checks.

Padding never changes a clip's embedding: before every 3x3 convolution the time steps past
a clip's own length are zeroed, which is exactly the zero padding the convolution would see
if the clip were alone in its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mask_time(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero the time steps of ``x`` (batch, channels, time, freq) at or past ``lengths``."""
    if lengths is None:
        return x
    keep = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
    return x * keep[:, None, :, None].to(x.dtype)


def use_channels_last(module: nn.Module) -> nn.Module:
    """Store the 4-D conv weights channels-last (NHWC); about 25 % faster convolutions on CPU.

    ``module.to(device)`` and ``load_state_dict`` keep the layout; the inputs are made
    channels-last in ``forward`` with :func:`channels_last`.
    """
    return module.to(memory_format=torch.channels_last)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, channels, time, freq) in channels-last layout (same values)."""
    return x.contiguous(memory_format=torch.channels_last)


def halve(lengths: torch.Tensor | None) -> torch.Tensor | None:
    """Valid time steps after a floor-mode pooling of size 2."""
    return None if lengths is None else torch.div(lengths, 2, rounding_mode="floor")


def init_conv_block_weights(module: nn.Module) -> None:
    """Xavier-uniform convolutions and linears, unit batch norms (the PANNs initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch norm + ReLU layers, then a pooling (PANNs ``ConvBlock`` names).

    Parameters
    ----------
    in_channels, out_channels : int
    pool_type : {"avg", "max"}, default="avg"
    """

    def __init__(self, in_channels: int, out_channels: int, pool_type: str = "avg"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool_type = pool_type

    def forward(self, x, lengths=None, pool_size=(2, 2)):
        x = F.relu(self.bn1(self.conv1(mask_time(x, lengths))), inplace=True)
        x = F.relu(self.bn2(self.conv2(mask_time(x, lengths))), inplace=True)
        if pool_size != (1, 1):
            pool = F.avg_pool2d if self.pool_type == "avg" else F.max_pool2d
            x = pool(x, kernel_size=pool_size)
            if lengths is not None and pool_size[0] != 1:
                lengths = torch.div(lengths, pool_size[0], rounding_mode="floor")
        return x, lengths


def max_plus_mean_over_time(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Clip embedding of (batch, channels, time): max over time plus mean over time.

    Only each clip's first ``lengths`` steps count.
    """
    if lengths is None:
        return x.amax(dim=2) + x.mean(dim=2)
    keep = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None])[:, None, :]
    peak = x.masked_fill(~keep, float("-inf")).amax(dim=2)
    mean = (x * keep.to(x.dtype)).sum(dim=2) / lengths[:, None].clamp_min(1).to(x.dtype)
    return peak + mean


def prepare_waveforms(waveforms, lengths, min_samples: int):
    """Check a (batch, n_samples) float tensor and its lengths; pad to ``min_samples``.

    Returns ``(waveforms, lengths)``: samples past a row's length are zeroed (on a copy),
    rows shorter than ``min_samples`` are treated as zero-padded to it, and ``lengths`` is
    None when no row is padded.
    """
    if not isinstance(waveforms, torch.Tensor):
        raise TypeError(
            f"waveforms is a {type(waveforms).__name__}; give a torch.Tensor of shape "
            "(batch, n_samples)."
        )
    if waveforms.ndim != 2:
        raise ValueError(
            f"waveforms has shape {tuple(waveforms.shape)}; expected (batch, n_samples)."
        )
    if not waveforms.is_floating_point():
        raise TypeError(f"waveforms has dtype {waveforms.dtype}; give float samples.")
    batch, n_total = waveforms.shape
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.shape != (batch,) or lengths.is_floating_point():
            raise ValueError(
                f"lengths has shape {tuple(lengths.shape)} and dtype {lengths.dtype}; expected "
                f"integers of shape ({batch},)."
            )
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        if batch and (int(lengths.min()) < 0 or int(lengths.max()) > n_total):
            raise ValueError(
                f"lengths range over [{int(lengths.min())}, {int(lengths.max())}]; each must be "
                f"in [0, n_samples={n_total}]."
            )
        if bool((lengths < n_total).any()):
            keep = torch.arange(n_total, device=waveforms.device)[None, :] < lengths[:, None]
            waveforms = waveforms * keep.to(waveforms.dtype)
    if n_total < min_samples:
        waveforms = F.pad(waveforms, (0, min_samples - n_total))
    if lengths is not None:
        lengths = lengths.clamp_min(min_samples)
        if bool((lengths == waveforms.shape[1]).all()):
            lengths = None
    return waveforms, lengths
