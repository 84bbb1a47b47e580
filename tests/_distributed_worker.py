"""The per-rank program of tests/test_distributed.py (run under torchrun or as plain processes).

``python tests/_distributed_worker.py SCENARIO OUT_DIR`` with torchrun's environment:

- ``train``: trains a feature-mode RetrievalModel on a global batch three ways (one pass with
  averaged gradients, one pass under DistributedDataParallel, the two-pass step) and saves the
  losses and weights to ``OUT_DIR/rank{R}.pt``; then records the errors of ranks that
  disagree on the data length and of a global batch below 2 pairs per rank.
- ``dead``: rank 1 exits in the middle of training; rank 0 must fail with DistributedError.
- ``stuck``: rank 1 stops answering; rank 0 must fail with DistributedError after the timeout.

:func:`train` with no process group is the single-process reference.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn_ltm import distributed  # noqa: E402
from sklearn_ltm.gradient_cache import two_pass_step  # noqa: E402
from sklearn_ltm.losses import MLTMLoss  # noqa: E402
from sklearn_ltm.model import RetrievalModel  # noqa: E402

N_CLIPS, CAPTIONS, AUDIO_DIM, TEXT_DIM = 20, 2, 12, 8
GLOBAL_BATCH, EPOCHS, SEED = 15, 3, 7  # 15 over 2 ranks: unequal shards of 8 and 7


def make_data():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(N_CLIPS, 4))
    audio = (latent @ rng.normal(size=(4, AUDIO_DIM))).astype(np.float32)
    clip_of_pair = np.repeat(np.arange(N_CLIPS), CAPTIONS)
    text = (latent[clip_of_pair] @ rng.normal(size=(4, TEXT_DIM))
            + 0.1 * rng.normal(size=(len(clip_of_pair), TEXT_DIM))).astype(np.float32)
    return torch.from_numpy(audio), torch.from_numpy(text), clip_of_pair


class Towers(torch.nn.Module):
    """What DDP wraps: forward embeds both sides, so DDP sees every parameter's use."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, audio, text):
        return self.model.embed_audio(audio), self.model.embed_text(text)


def train(mode: str) -> dict:
    """Train with ``mode`` in {"manual", "ddp", "two_pass"}; return losses and weights."""
    torch.manual_seed(0)
    model = RetrievalModel(None, None, AUDIO_DIM, TEXT_DIM, embedding_dim=6,
                           metric="mahalanobis")
    distributed.broadcast_parameters(model)
    ddp = None
    if mode == "ddp" and distributed.is_distributed():
        ddp = torch.nn.parallel.DistributedDataParallel(Towers(model))
    loss_fn = MLTMLoss(epsilon=0.1, mass_fraction=0.9, tol=1e-9)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    audio, text, clip_of_pair = make_data()
    losses, first_grads = [], None
    for epoch in range(EPOCHS):
        for batch in distributed.global_batch_order(len(text), GLOBAL_BATCH, seed=SEED,
                                                    epoch=epoch):
            local = distributed.shard_batch(batch)
            clips = clip_of_pair[local]
            uniq, inverse = np.unique(clips, return_inverse=True)
            inverse, groups = torch.as_tensor(inverse), torch.as_tensor(clips)
            a_in, t_in = audio[torch.as_tensor(uniq)], text[torch.as_tensor(local)]

            def loss_from_embeddings(t, a, extra, inverse=inverse, groups=groups):
                return distributed.global_batch_loss(t, a[inverse], groups,
                                                     cost_fn=model.cost, loss_fn=loss_fn)

            optimizer.zero_grad(set_to_none=True)
            if mode == "two_pass":
                loss = two_pass_step(model.embed_audio, model.embed_text, loss_from_embeddings,
                                     a_in, t_in, 3)
                distributed.average_gradients(model)
            else:
                if ddp is not None:
                    a_emb, t_emb = ddp(a_in, t_in)
                else:
                    a_emb, t_emb = model.embed_audio(a_in), model.embed_text(t_in)
                loss = loss_from_embeddings(t_emb, a_emb, None)
                loss.backward()
                if ddp is None:
                    distributed.average_gradients(model)
            if first_grads is None:  # Adam is blind to a gradient's scale: compare it too
                first_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            optimizer.step()
            losses.append(float(loss.detach()))
    return {"losses": losses, "first_grads": first_grads, "state": {k: v.clone() for k, v in model.state_dict().items()}}


def _error_of(fn) -> str:
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return "<no error>"


def scenario_train(out: Path, context) -> None:
    results = {mode: train(mode) for mode in ("manual", "ddp", "two_pass")}
    n_pairs = len(make_data()[1]) + (1 if context.rank == 1 else 0)
    results["disagree"] = _error_of(
        lambda: distributed.check_consistent(n_pairs=n_pairs, epsilon=0.05))
    results["agree"] = _error_of(lambda: distributed.check_consistent(n_pairs=40, epsilon=0.05))
    results["small_batch"] = _error_of(
        lambda: distributed.global_batch_order(40, 3, seed=0, epoch=0))
    audio = make_data()[0]
    needed = np.array([3, 17, 0, 5, 11])  # 3 rows on rank 0, 2 on rank 1
    cache = distributed.gather_sharded(lambda idx: 2 * audio[torch.as_tensor(idx)], needed)
    results["cache_ok"] = bool(torch.equal(cache, 2 * audio[torch.as_tensor(needed)]))
    results["decision"] = distributed.broadcast_object(
        {"stop": context.rank == 0, "from": context.rank})
    results["world_size"] = distributed.get_world_size()
    torch.save(results, out / f"rank{context.rank}.pt")
    distributed.barrier(timeout=30)


def scenario_failure(out: Path, context, kind: str) -> None:
    model = torch.nn.Linear(4, 2)
    for step in range(3):
        model(torch.randn(5, 4)).sum().backward()
        if context.rank == 1 and step == 1:
            if kind == "dead":
                os._exit(3)
            time.sleep(120)  # stuck: never reaches the collective
        t0 = time.monotonic()
        try:
            distributed.average_gradients(model)
        except distributed.DistributedError as exc:
            (out / f"rank{context.rank}.json").write_text(json.dumps(
                {"error": str(exc), "seconds": time.monotonic() - t0}))
            raise


def main(argv) -> int:
    scenario, out = argv[0], Path(argv[1])
    torch.set_num_threads(1)
    timeout = float(os.environ.get("LTM_TEST_TIMEOUT", "60"))
    context = distributed.init_from_env("gloo", timeout=timeout)
    try:
        if scenario == "train":
            scenario_train(out, context)
        else:
            scenario_failure(out, context, scenario)
    finally:
        if scenario == "train":
            distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
