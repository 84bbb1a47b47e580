"""LTMRetriever.fit and ``sklearn-ltm train`` under torchrun (2 CPU processes, gloo) equal
a single-process run with the same global batch. Two torchrun launches, bounded."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from test_cli import corpus  # noqa: F401  (the fixture: 8 wav files and a csv)

TESTS = Path(__file__).resolve().parent
LAUNCH_TIMEOUT = 240

pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.timeout(2 * LAUNCH_TIMEOUT),
]


def _torchrun(*args):
    from test_distributed import _env

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           *map(str, args)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _assert_same_model(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= atol, worst
    return worst


def test_fit_on_two_ranks_equals_one_process(tmp_path):
    sys.path.insert(0, str(TESTS))
    import _fit_worker

    _torchrun(TESTS / "_fit_worker.py", "train", tmp_path)
    ranks = [torch.load(tmp_path / f"fit_rank{r}.pt", weights_only=False) for r in range(2)]
    audio, text = _fit_worker.data()
    single = _fit_worker.estimator().fit(audio, text)
    for r in ranks:
        # resumed: interrupted at step 5, from the checkpoint of step 4; micro: two-pass step
        for run in ("full", "resumed", "micro"):
            got = r[run]
            assert got["world"] == 2
            np.testing.assert_array_equal(got["noisy"], single.noisy_pairs_)
            np.testing.assert_array_equal(got["val"], single.validation_pairs_)
            assert len(got["history"]) == len(single.history_) == 3
            loss_gap = max(abs(mine["train_loss"] - ref["train_loss"])
                           for mine, ref in zip(got["history"], single.history_))
            assert loss_gap <= 1e-5
            for mine, ref in zip(got["history"], single.history_):
                assert abs(mine["val_t2a_mean_recall"] - ref["val_t2a_mean_recall"]) <= 1e-9
            weight_gap = _assert_same_model(got["state"], single.model_.state_dict())
            print(f"{run}: max |loss diff| {loss_gap:.3g}, max |weight diff| {weight_gap:.3g}")
    # every rank took the same steps: bitwise the same weights
    _assert_same_model(ranks[0]["full"]["state"], ranks[1]["full"]["state"], atol=0)


def test_ranks_that_disagree_or_die_fail_with_a_clear_error(tmp_path):
    from test_distributed import _env, _free_port, _wait

    port = _free_port()  # plain processes: no elastic agent that would kill the survivor
    procs = [subprocess.Popen(
        [sys.executable, str(TESTS / "_fit_worker.py"), "failures", str(tmp_path)],
        env=_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                 SKLEARN_LTM_DISTRIBUTED_TIMEOUT=10),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        _wait(procs[0], LAUNCH_TIMEOUT)
    finally:
        for proc in procs:
            _wait(proc, 30)
    for rank in range(2):
        text = (tmp_path / f"disagree{rank}.txt").read_text()
        assert "disagree on batch_size (rank 0: 16, rank 1: 18)" in text, text
    assert procs[1].returncode == 3  # the rank that died
    assert procs[0].returncode == 5, procs[0].returncode  # the survivor: DistributedError
    assert "another rank died" in (tmp_path / "dead0.txt").read_text()


def test_cli_train_under_torchrun_saves_a_plain_model_equal_to_one_process(corpus, tmp_path):  # noqa: F811
    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.cli import main

    _, csv, _ = corpus
    args = ["train", "--dataset", "csv", "--csv", csv, "--audio-encoder", "cnn10",
            "--embedding-dim", "8", "--batch-size", "4", "--max-epochs", "2",
            "--validation-fraction", "0", "--random-state", "0",
            "--audio-encoder-max-seconds", "1.0", "--audio-encoder-freeze",
            "--text-encoder", "scratch", "--text-encoder-freeze", "--quiet"]  # frozen and cached: no random layer trains
    out = tmp_path / "dist.pt"
    proc = _torchrun("-m", "sklearn_ltm.cli", *args, "--output", out)
    assert proc.stdout.count("model saved to") == 1  # rank 0 only
    assert out.is_file() and not list(tmp_path.glob("*.tmp*"))
    single = tmp_path / "single.pt"
    assert main([*map(str, args), "--output", str(single)]) == 0
    got, want = LTMRetriever.load(out), LTMRetriever.load(single)
    assert got.n_epochs_ == want.n_epochs_ == 2
    loss_gap = max(abs(a["train_loss"] - b["train_loss"])
                   for a, b in zip(got.history_, want.history_))
    assert loss_gap <= 1e-5
    weight_gap = _assert_same_model(got.model_.state_dict(), want.model_.state_dict())
    print(f"cli: max |loss diff| {loss_gap:.3g}, max |weight diff| {weight_gap:.3g}")
