"""The torch module behind :class:`~sklearn_ltm.LTMRetriever`: two branches and a ground metric.

Each branch is an encoder (a pretrained or from-scratch network, or the identity for
precomputed features) followed by a projection head; the ground metric compares the two
branches' embeddings. Nothing here knows about scikit-learn.
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders.heads import ProjectionHead
from .ground_metrics import make_metric

__all__ = ["RetrievalModel"]


class RetrievalModel(nn.Module):
    """Audio branch, text branch and learned ground metric.

    Parameters
    ----------
    audio_encoder : torch.nn.Module or None
        Maps a batch of raw audio (waveforms, or features) to ``(B, audio_dim)``; ``None``
        means precomputed features (identity).
    text_encoder : torch.nn.Module or None
        Maps a batch of tokens (a dict of tensors) to ``(B, text_dim)``; ``None`` means
        precomputed features.
    audio_dim, text_dim : int
        Output sizes of the encoders (or of the features).
    embedding_dim : int
        Size of the shared space.
    metric : str or callable
        Ground metric name (see :func:`sklearn_ltm.ground_metrics.make_metric`), or a
        callable ``metric(embedding_dim) -> torch.nn.Module`` (a metric component's
        ``build``), called after the heads are made.
    hidden_dim : int or None
        Hidden size of the projection heads (``None``: ``2 * embedding_dim``).
    dropout : float
        Dropout inside the heads.
    metric_rank : int or None
        Rank of the Mahalanobis matrix (rows of ``L``); ``None``: full rank.

    Examples
    --------
    >>> import torch
    >>> model = RetrievalModel(None, None, 6, 4, embedding_dim=3, metric="mahalanobis")
    >>> a = model.embed_audio(model.encode_audio(torch.randn(5, 6)))
    >>> t = model.embed_text(model.encode_text(torch.randn(5, 4)))
    >>> model.metric(t, a).shape
    torch.Size([5, 5])
    """

    def __init__(self, audio_encoder, text_encoder, audio_dim: int, text_dim: int, *,
                 embedding_dim: int, metric, hidden_dim=None, dropout: float = 0.0,
                 metric_rank=None):
        super().__init__()
        self.audio_encoder = audio_encoder if audio_encoder is not None else nn.Identity()
        self.text_encoder = text_encoder if text_encoder is not None else nn.Identity()
        self.audio_head = ProjectionHead(audio_dim, embedding_dim, hidden_dim=hidden_dim,
                                         dropout=dropout)
        self.text_head = ProjectionHead(text_dim, embedding_dim, hidden_dim=hidden_dim,
                                        dropout=dropout)
        if callable(metric):
            self.metric = metric(embedding_dim)
        else:
            self.metric = make_metric(metric, embedding_dim,
                                      **({"rank": metric_rank} if metric_rank is not None else {}))

    def encode_audio(self, audio, lengths=None) -> torch.Tensor:
        """Encoder output for a batch of raw audio (identity in feature mode)."""
        if isinstance(self.audio_encoder, nn.Identity):
            return audio
        if lengths is None:
            return self.audio_encoder(audio)
        return self.audio_encoder(audio, lengths)

    def encode_text(self, text) -> torch.Tensor:
        """Encoder output for a batch of tokens (identity in feature mode)."""
        if isinstance(self.text_encoder, nn.Identity):
            return text
        return self.text_encoder(text)

    def embed_audio(self, encoded: torch.Tensor) -> torch.Tensor:
        """Head output (L2-normalised) for encoder outputs."""
        return self.audio_head(_in_dtype_of(encoded, self.audio_head))

    def embed_text(self, encoded: torch.Tensor) -> torch.Tensor:
        """Head output (L2-normalised) for encoder outputs."""
        return self.text_head(_in_dtype_of(encoded, self.text_head))

    def cost(self, text_embeddings: torch.Tensor, audio_embeddings: torch.Tensor) -> torch.Tensor:
        """Ground cost between captions (rows) and clips (columns)."""
        return self.metric(_in_dtype_of(text_embeddings, self.metric),
                           _in_dtype_of(audio_embeddings, self.metric))


def _in_dtype_of(tensor: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``tensor`` in the dtype of ``module``'s parameters (float32 after bf16 autocast, float64
    for a double model); at least float32 for a module without parameters."""
    param = next(module.parameters(), None)
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32) if param is None
                     else param.dtype)
