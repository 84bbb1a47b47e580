"""The PANNs audio encoders (Cnn10, Cnn14, ResNet38), written to load the public checkpoints.

Our own modules whose parameter names and shapes are those of the PANNs checkpoints
``Cnn10_mAP=0.380.pth``, ``Cnn14_mAP=0.431.pth`` and ``ResNet38_mAP=0.434.pth`` (Kong et
al., 2020). As in the paper, the checkpoint's spectrogram, log-mel and fully connected
(``fc1``, ``fc_audioset``) entries are skipped, and the clip embedding is the last conv
feature map averaged over frequency, then max-pooled plus mean-pooled over time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import (
    ConvBlock,
    channels_last,
    halve,
    init_conv_block_weights,
    mask_time,
    max_plus_mean_over_time,
    prepare_waveforms,
    use_channels_last,
)
from ._serialization import extract_state_dict, safe_torch_load
from .frontend import LogMelFrontEnd, SpecAugment, log_mel_config

__all__ = [
    "PANNsEncoder",
    "Cnn10Encoder",
    "Cnn14Encoder",
    "ResNet38Encoder",
    "load_panns_checkpoint",
    "SKIPPED_CHECKPOINT_PREFIXES",
]

#: Checkpoint entries that are not part of the encoders (as in the paper): the fixed STFT
#: and mel matrices, and the AudioSet classifier layers.
SKIPPED_CHECKPOINT_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.", "fc1.",
                               "fc_audioset.")


class PANNsEncoder(nn.Module):
    """Base of the PANNs encoders: log-mel front end, ``bn0``, a CNN trunk, clip pooling.

    Subclasses set ``name``, ``output_dim``, ``n_time_halvings`` and build the trunk.
    Do not instantiate this class; use :class:`Cnn10Encoder`, :class:`Cnn14Encoder`,
    :class:`ResNet38Encoder` or :func:`~sklearn_ltm.encoders.build_audio_encoder`.

    Parameters
    ----------
    sample_rate : int, default=32000
    n_fft : int, default=1024
    hop_length : int, default=320
    n_mels : int, default=64
        Must be 64 to load a public checkpoint.
    f_min, f_max : float, default=50.0, 14000.0
    spec_augment : bool, default=True
        Apply SpecAugment to the log-mel input in training mode (never in eval mode).
    time_mask_width, freq_mask_width : int, default=64, 8
        Maximum SpecAugment stripe widths (2 stripes each).
    dropout : float, default=0.2
        Dropout after each conv stage (training mode only).

    Attributes
    ----------
    sample_rate : int
    output_dim : int
    frontend : LogMelFrontEnd

    Examples
    --------
    >>> issubclass(Cnn10Encoder, PANNsEncoder)
    True
    >>> Cnn10Encoder(hop_length=160, sample_rate=16000, f_max=8000.0).min_samples
    2400
    """

    name = "panns"
    output_dim = 0
    n_time_halvings = 0

    def __init__(self, *, sample_rate=32000, n_fft=1024, hop_length=320, n_mels=64,
                 f_min=50.0, f_max=14000.0, spec_augment=True, time_mask_width=64,
                 freq_mask_width=8, dropout=0.2):
        super().__init__()
        if type(self) is PANNsEncoder:
            raise TypeError("PANNsEncoder is a base class; use Cnn10Encoder, Cnn14Encoder or "
                            "ResNet38Encoder.")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout={dropout!r} is not accepted; give a float in [0, 1).")
        self.frontend = LogMelFrontEnd(sample_rate=sample_rate, n_fft=n_fft,
                                       hop_length=hop_length, n_mels=n_mels, f_min=f_min,
                                       f_max=f_max)
        self.sample_rate = self.frontend.sample_rate
        self.spec_augment = bool(spec_augment)
        self.spec_augmenter = SpecAugment(time_mask_width=time_mask_width,
                                          freq_mask_width=freq_mask_width)
        self.dropout = float(dropout)
        self.bn0 = nn.BatchNorm2d(self.frontend.n_mels)
        # Fewest samples whose frame count survives every time halving of the trunk.
        self.min_samples = max((2 ** self.n_time_halvings - 1) * self.frontend.hop_length,
                               self.frontend.n_fft // 2 + 1)

    def _trunk(self, x, lengths):
        raise NotImplementedError

    def _drop(self, x):
        return F.dropout(x, p=self.dropout, training=self.training)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Clip embeddings of a batch of waveforms at ``self.sample_rate``.

        Parameters
        ----------
        waveforms : torch.Tensor of shape (batch, n_samples), float
        lengths : torch.Tensor of int, shape (batch,), or None
            Real samples of each row; what follows is padding and does not change the
            row's embedding. None: every row is real audio.

        Returns
        -------
        torch.Tensor of shape (batch, output_dim)

        Examples
        --------
        >>> import torch
        >>> encoder = Cnn10Encoder().eval()
        >>> clips = torch.zeros(2, 32000)
        >>> with torch.no_grad():
        ...     out = encoder(clips, lengths=torch.tensor([32000, 12000]))
        >>> tuple(out.shape)
        (2, 512)
        """
        waveforms, lengths = prepare_waveforms(waveforms, lengths, self.min_samples)
        mel, frame_lengths = self.frontend(waveforms, lengths)
        x = self.bn0(mel.unsqueeze(1).transpose(1, 3)).transpose(1, 3)
        if self.training and self.spec_augment:
            x = self.spec_augmenter(x, frame_lengths)
        x, frame_lengths = self._trunk(channels_last(x), frame_lengths)
        return max_plus_mean_over_time(x.mean(dim=3), frame_lengths)

    def get_config(self) -> dict:
        """The arguments that rebuild this architecture with ``build_audio_encoder(**config)``.

        Weights are not included: load them from a ``state_dict``.

        Examples
        --------
        >>> from sklearn_ltm.encoders import build_audio_encoder
        >>> config = Cnn10Encoder().get_config()
        >>> config["name"], config["sample_rate"]
        ('cnn10', 32000)
        >>> type(build_audio_encoder(**config)).__name__
        'Cnn10Encoder'
        """
        return {"name": self.name, **log_mel_config(self.frontend),
                "spec_augment": self.spec_augment,
                "time_mask_width": self.spec_augmenter.time_mask_width,
                "freq_mask_width": self.spec_augmenter.freq_mask_width,
                "dropout": self.dropout}


class _VGGLikeEncoder(PANNsEncoder):
    """Cnn10 / Cnn14: a stack of ConvBlocks, the last one without pooling for Cnn14."""

    channels: tuple = ()
    last_pool = (2, 2)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        in_ch = 1
        for i, out_ch in enumerate(self.channels, start=1):
            setattr(self, f"conv_block{i}", ConvBlock(in_ch, out_ch))
            in_ch = out_ch
        init_conv_block_weights(self)
        use_channels_last(self)

    def _trunk(self, x, lengths):
        n_blocks = len(self.channels)
        for i in range(1, n_blocks + 1):
            pool = self.last_pool if i == n_blocks else (2, 2)
            x, lengths = getattr(self, f"conv_block{i}")(x, lengths, pool_size=pool)
            x = self._drop(x)
        return x, lengths


class Cnn10Encoder(_VGGLikeEncoder):
    """PANNs Cnn10 audio encoder (4 conv blocks, 512-d clip embedding, ~4.9 M parameters).

    Parameters and attributes as in :class:`PANNsEncoder`; ``output_dim = 512``.

    Examples
    --------
    >>> import torch
    >>> encoder = Cnn10Encoder().eval()
    >>> with torch.no_grad():
    ...     out = encoder(torch.zeros(2, 16000), lengths=torch.tensor([16000, 8000]))
    >>> tuple(out.shape)
    (2, 512)
    """

    name = "cnn10"
    output_dim = 512
    channels = (64, 128, 256, 512)
    n_time_halvings = 4


class Cnn14Encoder(_VGGLikeEncoder):
    """PANNs Cnn14 audio encoder (6 conv blocks, 2048-d clip embedding, ~75 M parameters).

    Parameters and attributes as in :class:`PANNsEncoder`; ``output_dim = 2048``.

    Examples
    --------
    >>> Cnn14Encoder.name, Cnn14Encoder.output_dim
    ('cnn14', 2048)
    """

    name = "cnn14"
    output_dim = 2048
    channels = (64, 128, 256, 512, 1024, 2048)
    last_pool = (1, 1)
    n_time_halvings = 5


class _BasicBlock(nn.Module):
    """ResNet basic block of PANNs: stride 2 is an average pooling before ``conv1``."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2),
                                            nn.Conv2d(inplanes, planes, 1, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x, lengths):
        out, out_lengths = x, lengths
        if self.stride == 2:
            out, out_lengths = F.avg_pool2d(x, kernel_size=(2, 2)), halve(lengths)
        out = F.relu(self.bn1(self.conv1(mask_time(out, out_lengths))), inplace=True)
        out = F.dropout(out, p=0.1, training=self.training)
        out = self.bn2(self.conv2(mask_time(out, out_lengths)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity), out_lengths


class _ResNetLayers(nn.Module):
    """``layer1`` .. ``layer4`` of basic blocks with 64, 128, 256, 512 channels."""

    def __init__(self, blocks_per_layer=(3, 4, 6, 3)):
        super().__init__()
        inplanes = 64
        for i, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_layer), 1):
            stride = 1 if i == 1 else 2
            blocks = [_BasicBlock(inplanes, planes, stride)]
            blocks += [_BasicBlock(planes, planes) for _ in range(1, n_blocks)]
            setattr(self, f"layer{i}", nn.ModuleList(blocks))
            inplanes = planes

    def forward(self, x, lengths):
        for i in range(1, 5):
            for block in getattr(self, f"layer{i}"):
                x, lengths = block(x, lengths)
        return x, lengths


class ResNet38Encoder(PANNsEncoder):
    """PANNs ResNet38 audio encoder (the paper's choice; 2048-d clip embedding, ~73 M params).

    Parameters and attributes as in :class:`PANNsEncoder`; ``output_dim = 2048``.

    Examples
    --------
    >>> ResNet38Encoder.name, ResNet38Encoder.output_dim
    ('resnet38', 2048)
    """

    name = "resnet38"
    output_dim = 2048
    n_time_halvings = 5

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv_block1 = ConvBlock(1, 64)
        self.resnet = _ResNetLayers((3, 4, 6, 3))
        self.conv_block_after1 = ConvBlock(512, 2048)
        init_conv_block_weights(self)
        for block in self.resnet.modules():
            if isinstance(block, _BasicBlock):  # zero-initialised residual branches
                nn.init.zeros_(block.bn2.weight)
        use_channels_last(self)

    def _trunk(self, x, lengths):
        x, lengths = self.conv_block1(x, lengths, pool_size=(2, 2))
        x, lengths = self.resnet(self._drop(x), lengths)
        x, lengths = self._drop(F.avg_pool2d(x, kernel_size=(2, 2))), halve(lengths)
        x, lengths = self.conv_block_after1(x, lengths, pool_size=(1, 1))
        return self._drop(x), lengths


PANNS_ENCODERS = {cls.name: cls for cls in (Cnn10Encoder, Cnn14Encoder, ResNet38Encoder)}


# --------------------------------------------------------------------------- checkpoints
def _guess_architecture(keys) -> str | None:
    keys = set(keys)
    if any(k.startswith("resnet.layer") for k in keys):
        return "resnet38" if "resnet.layer3.5.conv1.weight" in keys else None
    if "conv_block6.conv1.weight" in keys:
        return "cnn14"
    if "conv_block4.conv1.weight" in keys and "conv_block5.conv1.weight" not in keys:
        return "cnn10"
    return None


def _module_of(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "resnet" and len(parts) > 2 else parts[0]


def _summarise(keys, limit=6) -> str:
    """Keys grouped by module, e.g. ``conv_block5.* (10), conv_block6.* (10)``."""
    groups: dict = {}
    for key in sorted(keys):
        groups.setdefault(_module_of(key), []).append(key)
    shown = [f"{name}.* ({len(members)})" if len(members) > 1 else members[0]
             for name, members in list(groups.items())[:limit]]
    extra = f", and {len(groups) - limit} more modules" if len(groups) > limit else ""
    return ", ".join(shown) + extra + f"; e.g. {min(keys)}"


def load_panns_checkpoint(module: nn.Module, path_or_state_dict) -> dict:
    """Load a PANNs checkpoint into one of our PANNs encoders, checking every key.

    The checkpoint's ``spectrogram_extractor.*``, ``logmel_extractor.*``, ``fc1.*`` and
    ``fc_audioset.*`` entries are skipped (see :data:`SKIPPED_CHECKPOINT_PREFIXES`); every
    other entry must match a parameter or buffer of ``module`` in name and shape, and
    every parameter and buffer of ``module`` must be given (batch-norm
    ``num_batches_tracked`` counters may be absent). Nothing is loaded unless all match.

    Parameters
    ----------
    module : torch.nn.Module
        The encoder, e.g. from ``build_audio_encoder("resnet38")``.
    path_or_state_dict : str, path-like or mapping
        A ``.pth`` file as published by PANNs (a dict with a ``"model"`` entry), read with
        ``torch.load(weights_only=True)``, or a state dict.

    Returns
    -------
    report : dict
        ``{"loaded": [keys], "skipped": [keys]}``.

    Raises
    ------
    ValueError
        Naming the missing, unexpected and wrongly shaped keys (and the architecture the
        checkpoint looks like, when it is another PANNs model).

    Examples
    --------
    >>> encoder = Cnn10Encoder()
    >>> checkpoint = {"model": {**encoder.state_dict(),
    ...                         "fc_audioset.weight": torch.zeros(527, 512)}}
    >>> report = load_panns_checkpoint(encoder, checkpoint)
    >>> report["skipped"]
    ['fc_audioset.weight']
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = f"checkpoint file {os.fspath(path_or_state_dict)!r}"
        raw = safe_torch_load(path_or_state_dict)
    elif isinstance(path_or_state_dict, Mapping):
        source, raw = "the given state dict", path_or_state_dict
    else:
        raise TypeError(
            f"path_or_state_dict is a {type(path_or_state_dict).__name__}; give a file path or "
            "a state dict."
        )
    state = extract_state_dict(raw, source)
    skipped = sorted(k for k in state if k.startswith(SKIPPED_CHECKPOINT_PREFIXES))
    given = {k: v for k, v in state.items() if not k.startswith(SKIPPED_CHECKPOINT_PREFIXES)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    wrong_shape = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in given and given[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        name = getattr(module, "name", type(module).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys in {_summarise(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys in {_summarise(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} shape mismatches ({', '.join(wrong_shape[:4])}"
                         + (", ...)" if len(wrong_shape) > 4 else ")"))
        message = f"{source} does not match the {name!r} encoder: " + "; ".join(parts) + "."
        guess = _guess_architecture(state)
        if guess is not None and guess != name:
            message += f" It looks like a {guess!r} checkpoint: use audio_encoder={guess!r}."
        raise ValueError(message)
    module.load_state_dict(given, strict=False)
    return {"loaded": sorted(given), "skipped": skipped}
