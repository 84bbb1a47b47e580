"""Two CPU processes with gloo: the global-batch loss equals one process; failures fail fast.

Each test starts real processes (torchrun, or plain processes with torchrun's environment)
bounded by a wall-clock timeout; the whole file takes about half a minute.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from sklearn_ltm import distributed

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "_distributed_worker.py"
LAUNCH_TIMEOUT = 150

pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.timeout(2 * LAUNCH_TIMEOUT),
]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def torchrun_results(tmp_path_factory):
    """Run the 'train' scenario under torchrun with 2 processes; load each rank's results."""
    out = tmp_path_factory.mktemp("torchrun")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(WORKER), "train", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def reference():
    """The same training in this single process, no process group (world size 1)."""
    sys.path.insert(0, str(TESTS))
    import _distributed_worker

    assert not distributed.is_distributed()
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _distributed_worker.train("manual")
        finally:
            torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["manual", "ddp", "two_pass"])
def test_two_ranks_equal_one_process_with_the_same_global_batch(torchrun_results, reference,
                                                                 mode):
    for rank, results in enumerate(torchrun_results):
        assert results["world_size"] == 2
        got = results[mode]
        np.testing.assert_allclose(got["losses"], reference["losses"], atol=1e-5, rtol=0)
        for name, grad in reference["first_grads"].items():
            torch.testing.assert_close(got["first_grads"][name], grad, atol=1e-5, rtol=0,
                                       msg=f"rank {rank}, {mode}: gradient of {name}")
        for name, value in reference["state"].items():
            torch.testing.assert_close(got["state"][name], value, atol=1e-5, rtol=0,
                                       msg=f"rank {rank}, {mode}: weight {name}")
    # each rank's loss is the same global loss; training did move the weights
    assert torchrun_results[0][mode]["losses"] == torchrun_results[1][mode]["losses"]
    assert reference["losses"][-1] < reference["losses"][0]


def test_ranks_disagreeing_on_data_length_fail_with_a_clear_error(torchrun_results):
    for results in torchrun_results:
        assert "disagree on n_pairs (rank 0: 40, rank 1: 41)" in results["disagree"]
        assert results["agree"] == "<no error>"


def test_sharded_cache_is_gathered_in_order(torchrun_results):
    assert [results["cache_ok"] for results in torchrun_results] == [True, True]


def test_rank_zero_decision_reaches_every_rank(torchrun_results):
    assert [r["decision"] for r in torchrun_results] == [{"stop": True, "from": 0}] * 2


def test_global_batch_below_two_per_rank_fails(torchrun_results):
    for results in torchrun_results:
        assert results["small_batch"].startswith(
            "a global batch of 3 pairs over 2 ranks gives fewer than 2 pairs per rank")


def _launch_plain(scenario, out, timeout_s):
    """Two processes with torchrun's environment but no elastic agent to kill the survivor."""
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), scenario, str(out)],
        env=_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                 LTM_TEST_TIMEOUT=timeout_s),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    return procs


def _wait(proc, timeout):
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("scenario, timeout_s", [("dead", 20), ("stuck", 4)])
def test_a_failed_rank_makes_the_other_exit_with_a_clear_error(tmp_path, scenario, timeout_s):
    procs = _launch_plain(scenario, tmp_path, timeout_s)
    t0 = time.monotonic()
    try:
        _, err = _wait(procs[0], LAUNCH_TIMEOUT)
        elapsed = time.monotonic() - t0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert procs[0].returncode != 0
    assert "DistributedError" in err
    assert "another rank died, exited early or did not reach" in err
    record = json.loads((tmp_path / "rank0.json").read_text())
    assert "average_gradients (all_reduce) failed on rank 0 of 2" in record["error"]
    # it failed within the collective timeout (plus start-up), not after a hang
    assert record["seconds"] < timeout_s + 10
    assert elapsed < LAUNCH_TIMEOUT
    if scenario == "dead":
        assert procs[1].returncode == 3


def test_single_process_helpers_without_a_process_group():
    x = torch.arange(6.0).reshape(3, 2).requires_grad_()
    assert distributed.all_gather_with_grad(x) is x
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    assert distributed.is_main_process()
    distributed.check_consistent(anything=np.arange(3))
    batches = distributed.global_batch_order(np.arange(100, 110), 4, seed=1, epoch=2,
                                             world_size=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(100, 110))
    assert [len(b) for b in batches] == [5, 5]


def test_fingerprints_compare_values_not_identities():
    fp = distributed._fingerprint
    params = {"epsilon": 0.05, "audio_encoder": torch.nn.Linear(2, 3), "ks": (1, 5)}
    same = {"epsilon": 0.05, "audio_encoder": torch.nn.Linear(2, 3), "ks": (1, 5)}
    assert fp(params) == fp(same)  # another module object with the same structure
    assert fp(params) != fp(dict(same, epsilon=0.1))
    assert fp(np.arange(5)) == fp(np.arange(5)) != fp(np.arange(1, 6))
    assert fp(torch.ones(3)) == fp(np.ones(3, dtype=np.float32))
    assert "sha1=" in fp(list(range(100)))


def test_batch_order_is_independent_of_world_size_and_shards_rebuild_it():
    one = distributed.global_batch_order(37, 8, seed=3, epoch=1, world_size=1)
    four = distributed.global_batch_order(37, 8, seed=3, epoch=1, world_size=4)
    assert all(np.array_equal(a, b) for a, b in zip(one, four))
    other_epoch = distributed.global_batch_order(37, 8, seed=3, epoch=2, world_size=1)
    assert not np.array_equal(np.concatenate(one), np.concatenate(other_epoch))
    for batch in four:
        shards = [distributed.shard_batch(batch, r, 4) for r in range(4)]
        assert np.array_equal(np.concatenate(shards), batch)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("call, match", [
    (lambda: distributed.global_batch_order(40, 3, seed=0, epoch=0, world_size=2),
     "a global batch of 3 pairs over 2 ranks gives fewer than 2 pairs per rank"),
    (lambda: distributed.global_batch_order(3, 4, seed=0, epoch=0, world_size=2),
     "3 training pairs over 2 ranks give fewer than 2 pairs per rank"),
    (lambda: distributed.global_batch_order(np.ones(8), 4, seed=0, epoch=0, world_size=1),
     "pairs must be integer indices"),
    (lambda: distributed.shard_batch(np.arange(2), 0, 3), "cannot be split over 3 ranks"),
    (lambda: distributed.shard_batch(np.arange(6), 3, 3), r"rank=3 is outside \[0, 3\)"),
    (lambda: distributed.init_from_env("mpi"), "backend='mpi' is not accepted"),
    (lambda: distributed.init_from_env(timeout=0), "timeout=0 is not accepted"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_init_from_env_reports_bad_variables(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        distributed.init_from_env("gloo")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="need 0 <= RANK < WORLD_SIZE"):
        distributed.init_from_env("gloo")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR is not set"):
        distributed.init_from_env("gloo")
    assert not distributed.is_distributed()
