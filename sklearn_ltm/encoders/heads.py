"""Projection heads mapping encoder outputs to the shared, L2-normalised embedding space."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear, ReLU, (dropout), Linear to ``out_dim``, then L2 normalisation (as the paper).

    Parameters
    ----------
    in_dim : int
        Encoder output size.
    out_dim : int
        Embedding size (``embedding_dim`` of the estimator).
    hidden_dim : int or None, default=None
        Size of the hidden layer; None: ``2 * out_dim``.
    dropout : float, default=0.0
        Dropout after the ReLU (training mode only).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> head = ProjectionHead(512, 128)
    >>> z = head(torch.randn(4, 512))
    >>> tuple(z.shape), torch.allclose(z.norm(dim=1), torch.ones(4))
    ((4, 128), True)
    """

    def __init__(self, in_dim, out_dim, hidden_dim=None, dropout=0.0):
        super().__init__()
        for value, name in [(in_dim, "in_dim"), (out_dim, "out_dim")] + (
                [] if hidden_dim is None else [(hidden_dim, "hidden_dim")]):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{name}={value!r} is not accepted; give an int > 0.")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout!r} is not accepted; give a float in [0, 1).")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.hidden_dim = 2 * self.out_dim if hidden_dim is None else int(hidden_dim)
        self.dropout = float(dropout)
        self.fc1 = nn.Linear(self.in_dim, self.hidden_dim)
        self.fc2 = nn.Linear(self.hidden_dim, self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of shape (batch, out_dim).

        Examples
        --------
        >>> import torch
        >>> ProjectionHead(3, 2)(torch.ones(1, 3)).norm().item()
        1.0
        """
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"input has {x.shape[-1]} features; this head expects {self.in_dim}.")
        h = F.dropout(F.relu(self.fc1(x)), p=self.dropout, training=self.training)
        return F.normalize(self.fc2(h), dim=-1)

    def get_config(self) -> dict:
        """The constructor arguments (JSON-serialisable).

        Examples
        --------
        >>> ProjectionHead(8, 4).get_config()
        {'in_dim': 8, 'out_dim': 4, 'hidden_dim': 8, 'dropout': 0.0}
        """
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "hidden_dim": self.hidden_dim,
                "dropout": self.dropout}
