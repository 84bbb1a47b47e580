"""Audio front end, audio encoders, text encoders and projection heads.

Audio encoders are ``torch.nn.Module`` with ``sample_rate``, ``output_dim``,
``forward(waveforms, lengths=None) -> (batch, output_dim)`` and ``get_config()``; text
encoders have ``output_dim``, ``tokenize(texts)``, ``forward(tokens)`` and
``get_config()``. All are deterministic in eval mode.
"""

from .aisfx import AisfxEncoder, aisfx_checkpoint_path, load_aisfx_state_dict
from .audio_io import (
    AudioFileError,
    AudioFilesSkippedWarning,
    check_audio_files,
    load_audio,
    load_audio_batch,
    pad_batch,
    resample_waveforms,
)
from .frontend import LogMelFrontEnd, SpecAugment, num_frames
from .heads import ProjectionHead
from .panns import (
    SKIPPED_CHECKPOINT_PREFIXES,
    Cnn10Encoder,
    Cnn14Encoder,
    PANNsEncoder,
    ResNet38Encoder,
    load_panns_checkpoint,
)
from .registry import (
    AUDIO_ENCODER_NAMES,
    build_audio_encoder,
    build_text_encoder,
    check_audio_encoder,
)
from .text import (
    MINILM_NAME,
    HFTextEncoder,
    ScratchTextEncoder,
    resolve_text_model_path,
    resolve_text_pooling,
)

__all__ = [
    "AUDIO_ENCODER_NAMES",
    "MINILM_NAME",
    "SKIPPED_CHECKPOINT_PREFIXES",
    "AisfxEncoder",
    "AudioFileError",
    "AudioFilesSkippedWarning",
    "check_audio_files",
    "Cnn10Encoder",
    "Cnn14Encoder",
    "HFTextEncoder",
    "LogMelFrontEnd",
    "PANNsEncoder",
    "ProjectionHead",
    "ResNet38Encoder",
    "ScratchTextEncoder",
    "SpecAugment",
    "aisfx_checkpoint_path",
    "build_audio_encoder",
    "build_text_encoder",
    "check_audio_encoder",
    "load_aisfx_state_dict",
    "load_audio",
    "load_audio_batch",
    "load_panns_checkpoint",
    "num_frames",
    "pad_batch",
    "resample_waveforms",
    "resolve_text_model_path",
    "resolve_text_pooling",
]
