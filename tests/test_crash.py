"""Crashes survived: atomic writes under SIGKILL, stale temporaries, resumed training.

- ``atomic_write`` and ``LTMRetriever.save`` are killed (SIGKILL) at random points while
  saving, many times: the target is always a complete old or new version, and the next save
  leaves no temporary behind.
- A feature-mode training run is killed at a random epoch; ``fit(resume_from=...)`` on its
  checkpoint gives exactly the weights of the uninterrupted run.
- The unit behaviour of ``atomic_write``: temporaries named per target and cleaned when their
  writer is dead, none left on a handled error, the umask respected, the folder fsynced.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_ltm import LTMRetriever
from sklearn_ltm._utils import _writer_tag, atomic_write, remove_stale_temporaries
from sklearn_ltm.training import Checkpoint

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "sklearn_ltm" / "_utils.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore"}


def _temporaries(target: Path):
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def _start(script: str, *args, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line the child prints (it prints 'ready' once set up)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise AssertionError(f"the child printed nothing in {timeout} s: {proc.stderr.read()}")
    return proc.stdout.readline().strip()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()


# ---------------------------------------------------------------------- atomic_write under kills
N_BYTES = 8 << 20
N_SAVE_KILLS = 3
N_TRAIN_KILLS = 3
WRITER = """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("u", sys.argv[1])
    u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)
    target, n = sys.argv[2], int(sys.argv[3])
    block = 1 << 20
    print("ready", flush=True)
    v = int(sys.argv[4])
    while True:
        v += 1
        with u.atomic_write(target, "wb") as fh:
            fh.write(b"%08d\\n" % v)
            body = bytes([v % 251]) * block
            for _ in range(n // block):
                fh.write(body)
        print(v, flush=True)
"""


def _version(target: Path) -> int:
    """The version in ``target``; fails unless the file is one complete version."""
    data = target.read_bytes()
    v = int(data[:8])
    assert len(data) == 9 + N_BYTES and data[9:] == bytes([v % 251]) * N_BYTES, \
        f"{target} is torn: {len(data)} bytes"
    return v


def _write_version(target: Path, v: int) -> None:
    with atomic_write(target, "wb") as fh:
        fh.write(b"%08d\n" % v + bytes([v % 251]) * N_BYTES)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_atomic_write_survives_sigkill_at_random_points(tmp_path):
    rng = np.random.default_rng(0)
    target = tmp_path / "payload.bin"
    _write_version(target, 0)
    kills, stale_seen, versions, deadline = 0, 0, [], time.monotonic() + 150
    while kills < 15 and time.monotonic() < deadline:
        last = _version(target)
        proc = _start(WRITER, UTILS, target, N_BYTES, last)
        assert _wait_line(proc, 60) == "ready"
        time.sleep(float(rng.uniform(0.0, 0.5)))
        _kill(proc)
        kills += 1
        done = [int(x) for x in proc.stdout.read().split()]
        now = _version(target)  # complete, whatever the moment of the kill
        newest = max(done, default=last)
        assert now in (newest, newest + 1), (now, newest)  # the old or the new version
        stale_seen += len(_temporaries(target))
        versions.append(now)
        _write_version(target, now + 1)  # the next save cleans what the killed one left
        assert _temporaries(target) == []
        assert _version(target) == now + 1
    assert kills >= 10, f"only {kills} kills in the time budget"
    print(f"{kills} kills; versions {versions}; {stale_seen} stale temporaries cleaned")


MODEL_SAVER = """
    import sys, torch
    torch.set_num_threads(1)
    from sklearn_ltm import LTMRetriever
    models = [LTMRetriever.load(p, device="cpu") for p in sys.argv[1:3]]
    target = sys.argv[3]
    print("ready", flush=True)
    i = 0
    while True:
        models[i % 2].save(target)
        print(i % 2, flush=True)
        i += 1
"""


def _weights(est):
    return {k: v.clone() for k, v in est.model_.state_dict().items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_retriever_save_survives_sigkill(tmp_path):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(16, 600)), rng.normal(size=(16, 500))
    files, weights = [], []
    for seed in (0, 1):  # two models of about 6 MB each: the kill often lands mid-write
        est = LTMRetriever(embedding_dim=384, batch_size=16, max_epochs=1,
                           validation_fraction=0.0, random_state=seed).fit(X, Y)
        files.append(tmp_path / f"model{seed}.pt")
        est.save(files[-1])
        weights.append(_weights(est))
    targets = [tmp_path / f"target{i}.pt" for i in range(N_SAVE_KILLS)]
    for t in targets:
        LTMRetriever.load(files[0]).save(t)
    # the savers run side by side (their start-up overlaps), each killed at its own moment
    procs = [_start(MODEL_SAVER, files[0], files[1], t) for t in targets]
    for proc in procs:
        assert _wait_line(proc, 120) == "ready"
    stale_seen = 0
    for i, (proc, target) in enumerate(zip(procs, targets)):
        time.sleep(float(rng.uniform(0.0, 0.4)))
        _kill(proc)
        got = _weights(LTMRetriever.load(target))  # loads: never half a file
        assert _same_weights(got, weights[0]) or _same_weights(got, weights[1])
        stale_seen += len(_temporaries(target))
        LTMRetriever.load(files[i % 2]).save(target)
        assert _temporaries(target) == []
    print(f"{len(procs)} kills of LTMRetriever.save; {stale_seen} stale temporaries cleaned")


# ---------------------------------------------------------------------- training under kills
TRAIN_PARAMS = dict(embedding_dim=16, batch_size=32, max_epochs=20, learning_rate=3e-3,
                    validation_fraction=0.0, early_stopping=False, random_state=0)
TRAINER = """
    import sys, json, numpy as np, torch
    torch.set_num_threads(1)
    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.training import Checkpoint
    data = np.load(sys.argv[1])
    params = json.loads(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # start when told: the runs start together, are killed apart
    LTMRetriever(**params, callbacks=[Checkpoint(sys.argv[3])]).fit(data["X"], data["Y"])
    print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_killed_at_random_epochs_resumes_exactly(tmp_path):
    import json

    rng = np.random.default_rng(2)
    Z = rng.normal(size=(96, 6))
    X, Y = Z @ rng.normal(size=(6, 20)), Z @ rng.normal(size=(6, 12))
    data = tmp_path / "data.npz"
    np.savez(data, X=X, Y=Y)
    ckpts = [tmp_path / f"run{i}.ckpt" for i in range(N_TRAIN_KILLS)]
    t0 = time.monotonic()
    reference = LTMRetriever(**TRAIN_PARAMS).fit(X, Y)
    duration = time.monotonic() - t0  # the kills land anywhere in a run of this length
    procs = [_start(TRAINER, data, json.dumps(TRAIN_PARAMS), c, stdin=True) for c in ckpts]
    ref_weights = _weights(reference)
    for proc in procs:
        assert _wait_line(proc, 120) == "ready"
    # one run at a time, killed at a random moment of its training
    outcomes = []
    for proc, ckpt in zip(procs, ckpts):
        proc.stdin.write("go\n")
        proc.stdin.flush()
        t0 = time.monotonic()
        while not ckpt.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.01)  # the first epoch's checkpoint is written
        time.sleep(float(rng.uniform(0.0, duration)))
        if proc.poll() is None:
            _kill(proc)
        else:
            proc.wait()
        epoch = int(torch.load(ckpt, weights_only=True)["epoch"])  # a complete checkpoint
        # resumed as a user would: checkpointing on into the same file
        resumed = LTMRetriever(**TRAIN_PARAMS, callbacks=[Checkpoint(str(ckpt))])
        resumed.fit(X, Y, resume_from=ckpt)
        assert _temporaries(ckpt) == []  # what the killed run left is cleaned
        assert _same_weights(_weights(resumed), ref_weights), f"killed after epoch {epoch}"
        assert [h["train_loss"] for h in resumed.history_] == \
            [h["train_loss"] for h in reference.history_]
        np.testing.assert_array_equal(resumed.transform(X), reference.transform(X))
        outcomes.append(epoch)
    print(f"killed after epochs {outcomes} of {TRAIN_PARAMS['max_epochs']}: resumed runs equal")


# ---------------------------------------------------------------------- atomic_write, unit
def test_temporaries_are_named_per_target(tmp_path):
    target = tmp_path / "model.pt"
    with atomic_write(target, "wb") as fh:
        fh.write(b"x")
        (tmp,) = _temporaries(target)
        assert tmp.name.startswith(f".model.pt.{_writer_tag()}.") and tmp.parent == tmp_path
    assert _temporaries(target) == [] and target.read_bytes() == b"x"


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    target = tmp_path / "model.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = _writer_tag().partition("-")[2]
    stale = tmp_path / f".model.pt.{dead}-{host}.abc123.tmp"
    stale.write_bytes(b"half")
    live = tmp_path / f".model.pt.{os.getppid()}-{host}.live99.tmp"  # a writer still running
    live.write_bytes(b"busy")
    ancient = tmp_path / f".model.pt.{os.getppid()}-{host}.old000.tmp"
    ancient.write_bytes(b"old")
    os.utime(ancient, (time.time() - 3 * 86400,) * 2)  # pid may have been reused
    remote = tmp_path / f".model.pt.{dead}-elsewhere.rem000.tmp"  # pid of another machine
    remote.write_bytes(b"theirs")
    other = tmp_path / f".other.pt.{dead}-{host}.abc123.tmp"  # another target's
    other.write_bytes(b"not ours")
    lookalike = tmp_path / ".model.pt.notes.tmp"  # not the pattern of a temporary
    lookalike.write_bytes(b"user file")
    with atomic_write(target, "wb") as fh:
        fh.write(b"new")
    assert not stale.exists() and not ancient.exists()
    assert live.exists() and other.exists() and lookalike.exists() and remote.exists()
    assert target.read_bytes() == b"new"
    assert remove_stale_temporaries(target) == []  # the live one stays


def test_no_temporary_is_left_on_a_handled_error(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_write(target, "wb") as fh:
            fh.write(b"partial")
            raise Boom
    assert target.read_bytes() == b"old" and _temporaries(target) == []
    with pytest.raises(TypeError):
        with atomic_write(target, "w") as fh:
            fh.write(b"bytes into a text file")
    assert target.read_bytes() == b"old" and _temporaries(target) == []
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_write(tmp_path, "wb"):
            pass
    assert list(tmp_path.parent.glob(f".{tmp_path.name}.*.tmp")) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_respect_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "atomic.bin", "wb") as fh:
            fh.write(b"x")
        with open(tmp_path / "plain.bin", "wb") as fh:
            fh.write(b"x")
        torch.save({"a": 1}, tmp_path / "torch.pt")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o666 & ~umask
    assert mode == stat.S_IMODE((tmp_path / "torch.pt").stat().st_mode)


def test_replacing_keeps_the_mode_of_the_existing_file(tmp_path):
    target = tmp_path / "secret.pt"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with atomic_write(target, "wb") as fh:
        fh.write(b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"new"


def test_file_and_folder_are_fsynced_after_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_write(target, "wb") as fh:
        fh.write(b"data")
    # the data before the rename (target not there yet), the folder after it
    assert synced == [("file", False), ("dir", True)]
