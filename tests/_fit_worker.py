"""Run under torchrun by tests/test_distributed_fit.py: LTMRetriever.fit in feature mode.

``python -m torch.distributed.run --nproc-per-node=2 _fit_worker.py train OUT_DIR`` writes
each rank's history and trained weights (a full run, and an interrupted run resumed from its
checkpoint) to ``OUT_DIR/fit_rank<r>.pt``; ``failures`` runs the error scenarios.
"""

import os
import sys
from pathlib import Path

import torch

from sklearn_ltm import LTMRetriever, distributed
from sklearn_ltm.training import Callback, Checkpoint


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 4))
    return z @ rng.normal(size=(4, 7)), z @ rng.normal(size=(4, 5))


def estimator(**params):
    return LTMRetriever(**{**dict(embedding_dim=4, batch_size=16, max_epochs=3,
                                  learning_rate=1e-2, noise_ratio=0.2, validation_fraction=0.25,
                                  random_state=0, device="cpu"), **params})


class Crash(Callback):
    """Fail on every rank after ``step`` optimizer steps (an interrupted run)."""

    def __init__(self, step=5, exit_code=None):
        self.step = step
        self.exit_code = exit_code

    def on_batch_end(self, trainer, *, step, **kw):
        if step == self.step:
            if self.exit_code is not None:  # this rank dies
                os._exit(self.exit_code)
            raise KeyboardInterrupt("interrupted")


def _results(est):
    return {"history": est.history_, "state": est.model_.state_dict(),
            "noisy": est.noisy_pairs_, "val": est.validation_pairs_,
            "world": distributed.get_world_size()}


def train(out: Path) -> None:
    """Fit; then an interrupted run with checkpoints, resumed on the same world size."""
    audio, text = data()
    results = {"full": _results(estimator().fit(audio, text))}
    micro = estimator().set_params(optimizer__micro_batch_size=3)  # 8 pairs per rank
    results["micro"] = _results(micro.fit(audio, text))
    ckpt = str(out / "run.ckpt")
    try:
        estimator(callbacks=[Checkpoint(ckpt, every_n_steps=2), Crash(5)]).fit(audio, text)
    except KeyboardInterrupt:
        pass
    resumed = estimator(callbacks=[Checkpoint(ckpt, every_n_steps=2)])
    results["resumed"] = _results(resumed.fit(audio, text, resume_from=ckpt))
    torch.save(results, out / f"fit_rank{distributed.get_rank()}.pt")
    distributed.shutdown()


def failures(out: Path) -> None:
    """Plain processes with torchrun's environment: ranks that disagree, then a dead rank."""
    rank = int(os.environ["RANK"])
    audio, text = data()
    result = {}
    try:  # rank 1 has another batch size: both ranks refuse before training
        estimator(batch_size=16 + 2 * rank).fit(audio, text)
    except ValueError as exc:
        result["disagree"] = str(exc)
    (out / f"disagree{rank}.txt").write_text(result.get("disagree", "no error"))
    crash = Crash(3 if rank == 1 else 10**9, exit_code=3)  # rank 1 dies after step 3
    try:
        estimator(callbacks=[crash]).fit(audio, text)
        (out / f"dead{rank}.txt").write_text("no error")
    except distributed.DistributedError as exc:
        (out / f"dead{rank}.txt").write_text(str(exc))
        raise SystemExit(5) from None


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"train": train, "failures": failures}[sys.argv[1]](Path(sys.argv[2]))
