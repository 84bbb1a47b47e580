"""Training steps beyond one pass on one process: micro-batched (two-pass) and distributed.

A step is the ``step(trainer, batch) -> detached loss`` of a :class:`~sklearn_ltm.training.Trainer`
(see :func:`~sklearn_ltm.training.backprop_step`). :class:`LargeBatchStep` combines

- the two-pass gradient-cache step of :mod:`sklearn_ltm.gradient_cache`: the clips and the
  captions of the batch are embedded ``micro_batch_size`` rows at a time, the loss, the cost
  and the OT plan cover the whole batch, and each micro-batch is re-embedded with a graph to
  back-propagate its slice of the embedding gradient;
- the distributed step of :mod:`sklearn_ltm.distributed`: under ``torchrun`` each rank embeds
  its contiguous shard of the global batch, the embeddings are all-gathered with gradient so
  that the plan covers the global batch, and the parameter gradients are averaged over the
  ranks (every rank then takes the same optimizer step).

The frozen-encoder cache, mixed precision and the NaN guard work as in the default step: the
embeddings come from :meth:`Trainer.embed_audio` / :meth:`Trainer.embed_text`.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import distributed
from ..gradient_cache import two_pass_step
from .trainer import Batch

__all__ = ["LargeBatchStep"]


class LargeBatchStep:
    """A Trainer step: micro-batched embedding and/or a batch sharded over the ranks.

    Parameters
    ----------
    micro_batch_size : int or None, default=None
        Rows (clips, captions) embedded at once; ``None``: one pass over the (local) batch.
    distributed : bool, default=False
        Shard each batch over the ranks of the process group, gather the embeddings with
        gradient and average the gradients. Without a process group it acts as one rank.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm.batching import AudioBatcher, TextBatcher
    >>> from sklearn_ltm.losses import MLTMLoss
    >>> from sklearn_ltm.model import RetrievalModel
    >>> from sklearn_ltm.training import Trainer, TrainingData, param_groups
    >>> rng = np.random.default_rng(0)
    >>> audio, text = rng.normal(size=(8, 5)).astype("f4"), rng.normal(size=(8, 3)).astype("f4")
    >>> model = RetrievalModel(None, None, 5, 3, embedding_dim=4, metric="mahalanobis")
    >>> data = TrainingData(AudioBatcher("features", audio), TextBatcher("features", text),
    ...                     clip_of_pair=np.arange(8), train_pairs=np.arange(8))
    >>> opt = torch.optim.Adam(param_groups(model, dict.fromkeys(
    ...     ["head", "metric", "audio_encoder", "text_encoder"], 1e-2)))
    >>> trainer = Trainer(model, MLTMLoss(), opt, batch_size=8, max_epochs=1,
    ...                   device=torch.device("cpu"), rng=rng, step=LargeBatchStep(3))
    >>> len(trainer.fit(data))
    1
    """

    def __init__(self, micro_batch_size=None, distributed=False):
        self.micro_batch_size = micro_batch_size
        self.distributed = bool(distributed)

    def __repr__(self):
        return (f"LargeBatchStep(micro_batch_size={self.micro_batch_size!r}, "
                f"distributed={self.distributed!r})")

    def local_batch(self, batch: Batch) -> Batch:
        """This rank's contiguous shard of ``batch`` (the whole batch in one process)."""
        if not self.distributed or distributed.get_world_size() == 1:
            return batch
        rows = distributed.shard_batch(np.arange(len(batch.pairs)))
        groups = batch.groups[rows]
        clips, inverse = np.unique(groups, return_inverse=True)
        audio = batch.audio
        if audio is not None:
            pos = torch.as_tensor(np.searchsorted(batch.clips, clips))
            raw, lengths = audio
            audio = (raw[pos], None if lengths is None else lengths[pos])
        return Batch(pairs=batch.pairs[rows], clips=clips, inverse=inverse, groups=groups,
                     audio=audio)

    def __call__(self, trainer, batch: Batch) -> torch.Tensor:
        local = self.local_batch(batch)
        device = trainer.device
        inverse = torch.as_tensor(local.inverse, device=device)
        groups = torch.as_tensor(batch.groups, device=device)  # global: shards in rank order

        def embed_audio(rows):
            audio = local.audio
            if audio is not None:
                index = torch.as_tensor(rows)
                audio = (audio[0][index], None if audio[1] is None else audio[1][index])
            return trainer.embed_audio(Batch(pairs=local.pairs, clips=local.clips[rows],
                                             inverse=None, groups=None, audio=audio))

        def embed_text(rows):
            return trainer.embed_text(local, pairs=local.pairs[rows])

        def loss_from_embeddings(text, audio_of_clips, _):
            audio = audio_of_clips[inverse]
            if self.distributed:
                text = distributed.all_gather_with_grad(text)
                audio = distributed.all_gather_with_grad(audio)
            return trainer.loss_from_embeddings(text, audio, groups)

        micro = self.micro_batch_size
        if micro is not None:  # a last (or local) batch smaller than one micro-batch
            micro = min(int(micro), max(len(local.clips), len(local.pairs)))
        no_grad_before = [p for p in trainer.model.parameters() if p.grad is None]
        loss = two_pass_step(embed_audio, embed_text, loss_from_embeddings,
                             np.arange(len(local.clips)), np.arange(len(local.pairs)),
                             micro, modules=trainer.model)
        if self.distributed:
            untouched = [p for p in no_grad_before if p.grad is None]
            distributed.average_gradients(trainer.model)
            for p in untouched:  # as in one process: no gradient, no update
                p.grad = None
        return loss
