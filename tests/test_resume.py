"""Resume after SIGKILL: bitwise the weights of the uninterrupted run, in every mode.

A subprocess trains with a step checkpoint and kills itself (SIGKILL) in the middle of an
epoch; the run is resumed here from the checkpoint and compared, tensor by tensor, with the
same fit run without interruption. Dropout (scratch text encoder) and SpecAugment (CNN10 on
waveforms) draw from torch's random state, which the checkpoint holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

SETUP = textwrap.dedent('''
    import os, signal
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.components import PANNs, ScratchText
    from sklearn_ltm.training import Callback, Checkpoint, EarlyStopping

    def data(mode):
        rng = np.random.default_rng(0)
        if mode == "scratch":
            z = rng.normal(size=(40, 6))
            audio = (z @ rng.normal(size=(6, 10))).astype(np.float32)
            words = ["dog", "rain", "bell", "car", "bird", "wind"]
            captions = [f"a {words[i % 6]} and a {words[(i // 6) % 6]}" for i in range(40)]
            return audio, captions
        t = np.arange(8000) / 16000
        waves = np.stack([0.4 * np.sin(2 * np.pi * (200 + 90 * i) * t) for i in range(6)])
        return waves.astype(np.float32), [f"tone number {i}" for i in range(6)]

    def estimator(mode, ckpt, extra=()):
        if mode == "scratch":
            params = dict(text_encoder=ScratchText(), embedding_dim=8, batch_size=8,
                          max_epochs=3, validation_fraction=0.25,
                          early_stopping=EarlyStopping(patience=10, restore_best=False),
                          lr_schedule="cosine")
        else:
            params = dict(audio_encoder=PANNs("cnn10", sample_rate=16000),
                          text_encoder="scratch", embedding_dim=8, batch_size=2, max_epochs=2,
                          validation_fraction=0.0, lr_schedule="step")
        return LTMRetriever(**params, random_state=0, device="cpu",
                            callbacks=[Checkpoint(ckpt, every_n_steps=1), *extra])

    class KillAt(Callback):
        def __init__(self, step):
            self.step = step
        def on_batch_end(self, trainer, *, step, **kw):
            if step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)
''')

# (mode, step at which the subprocess dies): both are in the middle of the last epoch
CASES = [("scratch", 6), ("cnn10", 5)]


def _namespace():
    ns: dict = {}
    exec(SETUP, ns)  # noqa: S102 (the same code the subprocess runs)
    return ns


@pytest.mark.parametrize("mode, kill_step", CASES)
def test_resume_after_sigkill_is_bitwise_identical(tmp_path, mode, kill_step):
    torch.set_num_threads(1)
    ns = _namespace()
    X, y = ns["data"](mode)
    ckpt = tmp_path / "run.ckpt"
    script = tmp_path / "killed_run.py"
    script.write_text(SETUP + textwrap.dedent(f'''
        X, y = data({mode!r})
        estimator({mode!r}, {str(ckpt)!r}, [KillAt({kill_step})]).fit(X, y)
        raise SystemExit("not killed")
    '''))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = torch.load(ckpt, weights_only=True)
    # the kill came before that step's checkpoint: the last one is of the step before, mid-epoch
    assert state["step_count"] == kill_step - 1
    assert 0 < state["batch_in_epoch"] < 3 and state["epoch"] >= 1

    resumed = ns["estimator"](mode, str(tmp_path / "resumed.ckpt")).fit(X, y, resume_from=ckpt)
    full = ns["estimator"](mode, str(tmp_path / "full.ckpt")).fit(X, y)
    a, b = resumed.model_.state_dict(), full.model_.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    def scores(est):  # every history entry but the wall-clock time
        return [{k: v for k, v in r.items() if k != "time"} for r in est.history_]

    assert scores(resumed) == scores(full)
    np.testing.assert_array_equal(resumed.transform(X), full.transform(X))


def test_resuming_without_the_random_state_would_diverge(tmp_path):
    """Control: the same resume with torch's random state replaced differs (dropout), so
    the bitwise test above does test the saved random state."""
    torch.set_num_threads(1)
    ns = _namespace()
    X, y = ns["data"]("scratch")
    ckpt = tmp_path / "part.ckpt"

    class Crash(ns["Callback"]):
        def on_batch_end(self, trainer, *, step, **kw):
            if step == 6:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        ns["estimator"]("scratch", str(ckpt), [Crash()]).fit(X, y)
    state = torch.load(ckpt, weights_only=True)
    assert state["step_count"] == 5  # the crash came before step 6's checkpoint
    full = ns["estimator"]("scratch", str(tmp_path / "f.ckpt")).fit(X, y)
    same = ns["estimator"]("scratch", str(tmp_path / "s.ckpt")).fit(X, y, resume_from=ckpt)
    state["rng"]["torch"] = torch.Generator().manual_seed(123).get_state()
    tampered = tmp_path / "tampered.ckpt"
    torch.save(state, tampered)
    other = ns["estimator"]("scratch", str(tmp_path / "o.ckpt")).fit(X, y, resume_from=tampered)
    ref = full.model_.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in same.model_.state_dict().items())
    assert any(not torch.equal(ref[k], v) for k, v in other.model_.state_dict().items())


def test_old_checkpoints_are_refused_with_their_version(tmp_path):
    ns = _namespace()
    X, y = ns["data"]("scratch")
    old = tmp_path / "old.ckpt"
    torch.save({"model": {}, "epoch": 0, "history": []}, old)  # the 0.1 layout
    with pytest.raises(ValueError, match="not a sklearn-ltm training checkpoint of format 2"):
        ns["estimator"]("scratch", str(tmp_path / "x.ckpt")).fit(X, y, resume_from=old)
