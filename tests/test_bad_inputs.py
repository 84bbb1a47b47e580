"""The catalogue of hostile and careless inputs (issue 13): every one answered by one clear error.

Each API case asserts the exception type, that the message names the bad value, and that
the inputs (arrays, lists, frames, files) are unchanged. Each CLI case runs
``sklearn_ltm.cli.main`` in-process and asserts exit status 2, one line on stderr naming the
bad value, no traceback, unchanged input files and nothing written; a few of them run again
as real subprocesses, end to end. Inputs that must *work* (pandas frames read as values,
one-shot iterables, a CSV with a byte-order mark, a folder holding a directory named
``x.wav`` or a corrupt file) are tested after the catalogue.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from sklearn_ltm import LTMRetriever
from sklearn_ltm._checks import check_writable_path, load_checkpoint_safely
from sklearn_ltm._utils import atomic_write
from sklearn_ltm.cli import main, read_pairs_csv
from sklearn_ltm.encoders import AudioFileError, check_audio_files, load_audio
from sklearn_ltm.training import Checkpoint

REPO = Path(__file__).resolve().parents[1]
FAST = dict(embedding_dim=8, batch_size=8, max_epochs=2, learning_rate=1e-2,
            validation_fraction=0.0, random_state=0)
SR = 16000


class Evil:
    """Unpickling this creates a file: proof that code from the file ran."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _wav(path, seconds=0.25, freq=440.0, nan=False):
    t = np.arange(int(seconds * SR)) / SR
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if nan:
        x[len(x) // 2] = np.nan
    sf.write(str(path), x, SR, subtype="FLOAT" if nan else "PCM_16")
    return path


def _tampered(src, dst, change):
    payload = torch.load(src, weights_only=True)
    change(payload)
    torch.save(payload, dst)
    return dst


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 6)), rng.normal(size=(12, 5))
    e = SimpleNamespace(root=root, X=X, Y=Y, captions=[f"caption number {i}" for i in range(12)])
    model = LTMRetriever(**FAST, callbacks=[Checkpoint(str(root / "run.ckpt"))]).fit(X, Y)
    e.model, e.model_file, e.ckpt = model, root / "model.pt", root / "run.ckpt"
    model.save(e.model_file)
    LTMRetriever(**{**FAST, "embedding_dim": 4},
                 callbacks=[Checkpoint(str(root / "other.ckpt"))]).fit(X, Y)
    e.other_ckpt = root / "other.ckpt"
    e.sentinel = root / "PWNED"
    e.malicious = root / "malicious.pt"
    torch.save({"format": "sklearn-ltm-model", "x": Evil(e.sentinel)}, e.malicious)
    e.truncated_ckpt = root / "truncated.ckpt"
    e.truncated_ckpt.write_bytes(e.ckpt.read_bytes()[:200])
    e.truncated_model = root / "truncated.pt"
    e.truncated_model.write_bytes(e.model_file.read_bytes()[: e.model_file.stat().st_size // 2])
    e.garbage = root / "garbage.bin"
    e.garbage.write_bytes(bytes(range(256)) * 8)
    e.empty = root / "empty.bin"
    e.empty.write_bytes(b"")
    e.keyless_ckpt = root / "keyless.ckpt"
    torch.save({"model": {"w": torch.zeros(2)}}, e.keyless_ckpt)
    e.a_file = root / "a_file.txt"
    e.a_file.write_text("not a folder")
    e.folder = root / "a_folder"
    e.folder.mkdir()
    tampered = {
        "no_state": lambda p: p.pop("state_dict"),
        "bad_shape": lambda p: p["state_dict"].__setitem__("audio_head.fc1.weight",
                                                           torch.zeros(3, 3)),
        "unknown_param": lambda p: p["params"].__setitem__("bogus_option", 1),
        "batch_size0": lambda p: p["params"].__setitem__("batch_size", 0),
        "bad_dims": lambda p: p["architecture"].update(audio_dim=-1),
        "nan_weights": lambda p: p["state_dict"]["audio_head.fc1.weight"].fill_(float("nan")),
        "params_str": lambda p: p.__setitem__("params", "lots"),
        "kind_video": lambda p: p.__setitem__("audio_input_kind", "video"),
        "history_str": lambda p: p.__setitem__("history", "long ago"),
        "weight_int": lambda p: p["state_dict"].__setitem__("audio_head.fc1.bias", 7),
        "epsilon_neg": lambda p: p["params"].__setitem__("epsilon", -0.5),
        "n_features_neg": lambda p: p.__setitem__("n_features_in", -3),
    }
    e.tampered = {k: _tampered(e.model_file, root / f"tampered_{k}.pt", f)
                  for k, f in tampered.items()}
    audio = root / "audio"
    audio.mkdir()
    e.wavs = [_wav(audio / f"clip{i}.wav", freq=300 + 200 * i) for i in range(4)]
    e.nan_wav = _wav(root / "nan.wav", nan=True)
    e.corrupt_wav = root / "corrupt.wav"
    e.corrupt_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    e.empty_wav = root / "empty.wav"
    e.empty_wav.write_bytes(b"")
    e.dir_wav = root / "folder.wav"
    e.dir_wav.mkdir()
    e.csv = root / "pairs.csv"
    e.csv.write_text("audio_path,caption\n" + "".join(
        f"audio/clip{i}.wav,a tone number {i}\n" for i in range(4)))
    return e


# ---------------------------------------------------------------------- snapshots
def _snapshot(value):
    """A copy of ``value`` to compare with after the call (files: their bytes)."""
    if isinstance(value, Path):
        return ("file", value.read_bytes()) if value.is_file() else ("path", value.exists())
    if type(value).__module__.startswith("pandas"):
        return value.copy(deep=True)
    return copy.deepcopy(value)


def _same(before, value) -> bool:
    if isinstance(value, Path):
        return before == _snapshot(value)
    if isinstance(value, np.ndarray):
        return (before.dtype == value.dtype and before.shape == value.shape
                and bool(np.array_equal(before, value, equal_nan=value.dtype.kind in "fc")))
    if type(value).__module__.startswith("pandas"):
        return before.equals(value) and list(before.columns if hasattr(before, "columns")
                                             else [before.name]) == list(
            value.columns if hasattr(value, "columns") else [value.name])
    if isinstance(value, (list, tuple)):
        return len(before) == len(value) and all(_same(b, v) for b, v in zip(before, value))
    if isinstance(value, torch.Tensor):
        return torch.equal(before, value)
    try:
        return bool(before == value)
    except Exception:  # objects without equality: identity of type is what we can say
        return type(before) is type(value)


def _fit(X, y, groups=None, resume_from=None, **params):
    kwargs = {} if resume_from is None else {"resume_from": resume_from}
    nested = {k: params.pop(k) for k in list(params) if "__" in k}  # component settings
    return lambda: LTMRetriever(**{**FAST, **params}).set_params(**nested).fit(
        X, y, groups=groups, **kwargs)


# ---------------------------------------------------------------------- the API catalogue
def _load_tampered(key):
    return lambda e: (lambda: LTMRetriever.load(e.tampered[key]), [e.tampered[key]])


def _evaluate_tampered(key):
    return lambda e: (["evaluate", "--model", str(e.tampered[key]), "--dataset", "csv", "--csv",
                       str(e.csv)], [e.tampered[key], e.csv])


def _pd():
    return pytest.importorskip("pandas")


API_CASES = {
    # --- X, the audio side
    "X is None": (ValueError, r"X is None", lambda e: (_fit(None, e.Y), [e.Y])),
    "X empty list": (ValueError, r"X is empty \(0 samples\)", lambda e: (_fit([], e.Y), [e.Y])),
    "X 1-D": (ValueError, r"X has shape \(12,\)", lambda e: (_fit(e.X[:, 0].copy(), e.Y), [e.Y])),
    "X 3-D": (ValueError, r"X has shape \(12, 3, 2\)",
              lambda e: ((lambda X: (_fit(X, e.Y), [X]))(e.X.reshape(12, 3, 2)))),
    "X complex": (ValueError, r"X has dtype complex128",
                  lambda e: ((lambda X: (_fit(X, e.Y), [X]))(e.X + 1j))),
    "X strings": (ValueError, r"X has dtype <U\d+ \(strings are not features\)",
                  lambda e: ((lambda X: (_fit(X, e.Y), [X]))(e.X.astype(str)))),
    "X numeric strings in object array": (
        TypeError, r"non-numeric value at \[0, 0\]: '0.1'",
        lambda e: ((lambda X: (_fit(X, e.Y), [X]))(np.array([["0.1"] * 6] * 12, dtype=object)))),
    "X None in object array": (
        TypeError, r"non-numeric value at \[0, 2\]: None",
        lambda e: ((lambda X: (_fit(X, e.Y), [X]))([[0.0, 1.0, None]] * 12))),
    "X NaN": (ValueError, r"NaN or infinity \(first at row 2, column 1: np.float64\(nan\)\)",
              lambda e: ((lambda X: (_fit(X, e.Y), [X]))(
                  np.where(np.arange(72).reshape(12, 6) == 13, np.nan, e.X)))),
    "X inf": (ValueError, r"row 0, column 0: np.float64\(inf\)",
              lambda e: ((lambda X: (_fit(X, e.Y), [X]))(
                  np.where(np.arange(72).reshape(12, 6) == 0, np.inf, e.X)))),
    "X beyond float32": (ValueError, r"1e\+300.*float32 range",
                         lambda e: ((lambda X: (_fit(X, e.Y), [X]))(
                             np.where(np.arange(72).reshape(12, 6) == 5, 1e300, e.X)))),
    "X sparse": (TypeError, r"X is a sparse matrix",
                 lambda e: ((lambda X: (_fit(X, e.Y), [e.Y]))(
                     __import__("scipy.sparse").sparse.csr_matrix(e.X)))),
    "X dok_matrix (also a dict)": (TypeError, r"X is a sparse matrix",
                                   lambda e: ((lambda X: (_fit(X, e.Y), [e.Y]))(
                                       __import__("scipy.sparse").sparse.dok_matrix(e.X)))),
    "y sparse": (TypeError, r"y is a sparse matrix",
                 lambda e: ((lambda y: (_fit(e.X, y), [e.X]))(
                     __import__("scipy.sparse").sparse.csr_matrix(e.Y)))),
    "X ragged": (ValueError, r"X could not be read as an array",
                 lambda e: ((lambda X: (_fit(X, e.Y), [X]))([[1.0, 2.0], [3.0]] * 6))),
    "X a set": (TypeError, r"X is a set: it has no order",
                lambda e: ((lambda X: (_fit(X, e.Y), [X]))({"a.wav", "b.wav"}))),
    "X datetime": (ValueError, r"X has dtype datetime64",
                   lambda e: ((lambda X: (_fit(X, e.Y), [X]))(
                       np.zeros((12, 2), dtype="datetime64[s]")))),
    "X no columns": (ValueError, r"0 feature\(s\) \(shape=\(12, 0\)\)",
                     lambda e: ((lambda X: (_fit(X, e.Y), [X]))(np.zeros((12, 0))))),
    "X scalar": (ValueError, r"X has shape \(\)", lambda e: (_fit(3.0, e.Y), [e.Y])),
    "X path with NUL": (ValueError, r"X\[1\]='a\\x00.wav' holds a NUL",
                        lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="cnn10"),
                                               [X]))(["b.wav", "a\0.wav"]))),
    "X blank path": (ValueError, r"X\[0\]='  ' is an empty path",
                     lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="cnn10"),
                                            [X]))(["  ", "b.wav"]))),
    "X paths with features encoder": (
        ValueError, r"audio_encoder='features' expects",
        lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="features"), [X]))(
            ["a.wav", "b.wav"]))),
    "X DataFrame with NaN": (ValueError, r"row 1, column 0: np.float64\(nan\)",
                             lambda e: ((lambda X: (_fit(X, e.Y[:3]), [X]))(
                                 _pd().DataFrame({"u": [1.0, None, 2.0], "v": [0.0, 1.0, 2.0]})))),
    "X DataFrame with a text column": (
        TypeError, r"non-numeric value at \[0, 1\]: 'loud'",
        lambda e: ((lambda X: (_fit(X, e.Y[:2]), [X]))(
            _pd().DataFrame({"u": [1.0, 2.0], "kind": ["loud", "soft"]})))),
    "X nullable ints with NA": (ValueError, r"row 1, column 0: np.float64\(nan\)",
                                lambda e: ((lambda X: (_fit(X, e.Y[:3]), [X]))(
                                    _pd().DataFrame({"n": _pd().array([1, None, 3],
                                                                     dtype="Int64")})))),
    # --- y, the captions
    "y is None": (ValueError, r"the target y is None", lambda e: (_fit(e.X, None), [e.X])),
    "y empty list": (ValueError, r"y is empty: no captions were given",
                     lambda e: (_fit(e.X, []), [e.X])),
    "y empty array": (ValueError, r"y is empty", lambda e: (_fit(e.X, np.zeros((0, 5))), [e.X])),
    "y single string": (ValueError, r"y='a dog barks' is a single string",
                        lambda e: (_fit(e.X, "a dog barks"), [e.X])),
    "y bytes captions": (ValueError, r"y\[0\]=b'a dog' is not a string",
                         lambda e: ((lambda y: (_fit(e.X[:2], y), [y]))([b"a dog", b"rain"]))),
    "y mixes strings and numbers": (
        ValueError, r"y\[1\]=3 is not a string",
        lambda e: ((lambda y: (_fit(e.X[:2], y), [y]))(["a dog", 3]))),
    "y number first then strings": (
        ValueError, r"y\[0\]=1.5 is not a string",
        lambda e: ((lambda y: (_fit(e.X[:2], y), [y]))([1.5, "rain"]))),
    "y blank caption": (ValueError, r"y\[1\]='   ' is empty or whitespace-only",
                        lambda e: ((lambda y: (_fit(e.X[:3], y), [y]))(["a", "   ", "c"]))),
    "y 1-D numbers": (ValueError, r"y is a 1-D numeric array of shape \(12,\)",
                      lambda e: (_fit(e.X, np.arange(12.0)), [e.X])),
    "y a number": (TypeError, r"y of type int is not a sequence", lambda e: (_fit(e.X, 5), [e.X])),
    "y 0-d array": (ValueError, r"y=array\(2.5\) is a scalar array",
                    lambda e: (_fit(e.X, np.array(2.5)), [e.X])),
    "y a dict": (TypeError, r"y is a dict: it has no order",
                 lambda e: ((lambda y: (_fit(e.X[:2], y), [y]))({"a": "dog", "b": "rain"}))),
    "y numeric strings as features": (
        TypeError, r"y has dtype object with a non-numeric value at \[0, 0\]: '1'",
        lambda e: ((lambda y: (_fit(e.X, y), [y]))(np.array([["1", "2"]] * 12, dtype=object)))),
    "y strings with features encoder": (
        ValueError, r"y holds strings but text_encoder='features'",
        lambda e: (_fit(e.X, e.captions, text_encoder="features"), [e.captions])),
    "y features with scratch encoder": (
        ValueError, r"text_encoder='scratch' expects caption strings",
        lambda e: (_fit(e.X, e.Y, text_encoder="scratch"), [e.Y])),
    "y NaN feature": (ValueError, r"NaN or infinity \(first at row 0, column 0",
                      lambda e: ((lambda y: (_fit(e.X, y), [y]))(
                          np.where(np.arange(60).reshape(12, 5) == 0, np.nan, e.Y)))),
    # --- pairs
    "lengths differ": (ValueError, r"X has 12 rows but y has 11",
                       lambda e: (_fit(e.X, e.Y[:11]), [e.X, e.Y])),
    "one pair": (ValueError, r"n_samples = 1", lambda e: (_fit(e.X[:1], e.Y[:1]), [e.X])),
    "groups wrong shape": (ValueError, r"groups has shape \(3,\); expected \(12,\)",
                           lambda e: (_fit(e.X, e.Y, groups=[0, 1, 2]), [e.X, e.Y])),
    # --- parameters
    "embedding_dim 10**9": (ValueError, r"embedding_dim=1000000000 with hidden_dim=2000000000 \(audio_dim=6, "
                                                       r"text_dim=5\) needs about [\d,.]+ GiB",
                            lambda e: (_fit(e.X, e.Y, embedding_dim=10**9), [e.X, e.Y])),
    "hidden_dim 10**10": (ValueError, r"hidden_dim=10000000000",
                          lambda e: (_fit(e.X, e.Y, hidden_dim=10**10), [e.X, e.Y])),
    "batch_size 0": (ValueError, r"'batch_size' parameter of LTMRetriever must be an int in "
                                 r"the range \[2, inf\)\. Got 0",
                     lambda e: (_fit(e.X, e.Y, batch_size=0), [e.X])),
    "epsilon NaN": (ValueError, r"'epsilon' parameter .* Got nan", lambda e: (_fit(e.X, e.Y, epsilon=float("nan")),
                                                           [e.X])),
    "learning_rate negative": (ValueError, r"'learning_rate' parameter .* Got -1",
                               lambda e: (_fit(e.X, e.Y, learning_rate=-1), [e.X])),
    "validation_fraction 1": (ValueError, r"'validation_fraction' parameter .* Got 1",
                              lambda e: (_fit(e.X, e.Y, validation_fraction=1), [e.X])),
    "learning_rate beyond float32": (ValueError, r"learning_rate=1e\+39 is beyond the float32",
                                     lambda e: (_fit(e.X, e.Y, learning_rate=1e39), [e.X])),
    "weight_decay beyond float32": (ValueError, r"optimizer__weight_decay=1e\+300 is beyond "
                                                r"the float32",
                                    lambda e: (_fit(e.X, e.Y, optimizer__weight_decay=1e300),
                                               [e.X])),
    "metric learning_rate beyond float32": (
        ValueError, r"metric__learning_rate=1e\+39 is beyond the float32",
        lambda e: (_fit(e.X, e.Y, metric="mahalanobis", metric__learning_rate=1e39), [e.X])),
    "random_state negative": (ValueError, r"'random_state' parameter .* Got -1",
                              lambda e: (_fit(e.X, e.Y, random_state=-1), [e.X])),
    "metric unknown": (ValueError, r"'metric' parameter .* Got 'manhattan'",
                       lambda e: (_fit(e.X, e.Y, metric="manhattan"), [e.X])),
    "on_bad_file unknown": (ValueError, r"'on_bad_file' parameter .* Got 'ignore'",
                            lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="cnn10",
                                                        audio_encoder__on_bad_file="ignore"),
                                                   [X]))([str(e.wavs[0]), str(e.wavs[1])]))),
    "Checkpoint path a directory": (
        ValueError, r"Checkpoint\(path\)='.*a_folder' is a directory",
        lambda e: (_fit(e.X, e.Y, callbacks=[Checkpoint(str(e.folder))]), [e.X, e.folder])),
    "Checkpoint path under a file": (
        ValueError, r"Checkpoint\(path\)='.*a_file.txt/run.ckpt' cannot be written: .* is a "
                    r"file",
        lambda e: (_fit(e.X, e.Y, callbacks=[Checkpoint(str(e.a_file / "run.ckpt"))]),
                   [e.a_file])),
    "Checkpoint path empty": (ValueError, r"Checkpoint\(path\)='' is empty",
                              lambda e: (_fit(e.X, e.Y, callbacks=[Checkpoint("")]), [e.X])),
    "Checkpoint path a number": (TypeError, r"'path' parameter of Checkpoint .* Got 42",
                                 lambda e: (_fit(e.X, e.Y, callbacks=[Checkpoint(42)]), [e.X])),
    # --- resume_from
    "resume missing": (ValueError, r"resume_from='.*nope.ckpt'.*does not exist",
                       lambda e: (_fit(e.X, e.Y, resume_from=e.root / "nope.ckpt"), [e.X])),
    "resume a directory": (ValueError, r"resume_from='.*a_folder'.*is a directory",
                           lambda e: (_fit(e.X, e.Y, resume_from=e.folder), [e.X])),
    "resume truncated": (ValueError, r"resume_from='.*truncated.ckpt'.*cannot be read",
                         lambda e: (_fit(e.X, e.Y, resume_from=e.truncated_ckpt),
                                    [e.truncated_ckpt])),
    "resume malicious": (ValueError, r"resume_from='.*malicious.pt'.*refused for safety",
                         lambda e: (_fit(e.X, e.Y, resume_from=e.malicious), [e.malicious])),
    "resume a model file": (ValueError, r"resume_from='.*model.pt'.*is a saved model",
                            lambda e: (_fit(e.X, e.Y, resume_from=e.model_file), [e.model_file])),
    "resume garbage": (ValueError, r"resume_from='.*garbage.bin'.*cannot be read",
                       lambda e: (_fit(e.X, e.Y, resume_from=e.garbage), [e.garbage])),
    "resume empty file": (ValueError, r"resume_from='.*empty.bin'.*empty \(0 bytes\)",
                          lambda e: (_fit(e.X, e.Y, resume_from=e.empty), [e.empty])),
    "resume lacking keys": (ValueError, r"resume_from='.*keyless.ckpt'.*lacks the keys "
                                        r"\['optimizer'",
                            lambda e: (_fit(e.X, e.Y, resume_from=e.keyless_ckpt),
                                       [e.keyless_ckpt])),
    "resume another model's checkpoint": (
        ValueError, r"resume_from='.*other.ckpt'.*written for another model \(weight "
                    r"'audio_head.fc1.weight' has shape",
        lambda e: (_fit(e.X, e.Y, resume_from=e.other_ckpt), [e.other_ckpt, e.X])),
    # --- load
    **{f"load tampered: {k}": (ValueError, rf"tampered_{k}.pt' is not a valid sklearn-ltm "
                                           rf"model file: .*{m}", _load_tampered(k))
       for k, m in [("no_state", r"lacks the keys \['state_dict'\]"),
                    ("bad_shape", r"'audio_head.fc1.weight' has shape \(3, 3\)"),
                    ("unknown_param", r"unknown parameter\(s\) \['bogus_option'\]"),
                    ("batch_size0", r"bad parameter: The 'batch_size' parameter .* Got 0"),
                    ("bad_dims", r"'architecture' has dimensions \{'audio_dim': -1"),
                    ("nan_weights", r"state_dict\['audio_head.fc1.weight'\] holds NaN"),
                    ("params_str", r"'params' is str"),
                    ("kind_video", r"audio_input_kind='video'"),
                    ("history_str", r"'history' is str"),
                    ("weight_int", r"state_dict\['audio_head.fc1.bias'\] is int"),
                    ("epsilon_neg", r"bad parameter: The 'epsilon' parameter .* Got -0.5"),
                    ("n_features_neg", r"n_features_in=-3")]},
    "load truncated": (ValueError, r"truncated.pt' is not a sklearn-ltm model file",
                       lambda e: (lambda: LTMRetriever.load(e.truncated_model),
                                  [e.truncated_model])),
    "load malicious": (ValueError, r"malicious.pt' is not a sklearn-ltm model file",
                       lambda e: (lambda: LTMRetriever.load(e.malicious), [e.malicious])),
    "load a checkpoint": (ValueError, r"run.ckpt' is not a sklearn-ltm model file",
                          lambda e: (lambda: LTMRetriever.load(e.ckpt), [e.ckpt])),
    "load a directory": (ValueError, r"a_folder' is a directory",
                         lambda e: (lambda: LTMRetriever.load(e.folder), [e.folder])),
    # --- inference on the fitted model
    "transform wrong width": (ValueError, r"X has 5 features, but LTMRetriever is expecting 6",
                              lambda e: ((lambda X: (lambda: e.model.transform(X), [X]))(
                                  e.X[:, :5].copy()))),
    "transform NaN": (ValueError, r"NaN or infinity",
                      lambda e: ((lambda X: (lambda: e.model.transform(X), [X]))(
                          np.full((2, 6), np.nan)))),
    "transform paths on a feature model": (
        ValueError, r"X is a sequence of file paths but audio_encoder='features' expects",
        lambda e: ((lambda X: (lambda: e.model.transform(X), [X]))(["a.wav"]))),
    "embed_text strings on a feature model": (
        ValueError, r"text_encoder='features'",
        lambda e: ((lambda y: (lambda: e.model.embed_text(y), [y]))(["a dog"]))),
    "retrieve k=0": (ValueError, r"'k' parameter of LTMRetriever.retrieve .* Got 0",
                     lambda e: (lambda: e.model.retrieve(e.Y, e.X, k=0), [e.X, e.Y])),
    "retrieve direction": (ValueError, r"direction='sideways'",
                           lambda e: (lambda: e.model.retrieve(e.Y, e.X, direction="sideways"),
                                      [e.X])),
    "save onto a directory": (IsADirectoryError, r"a_folder' is a directory",
                              lambda e: (lambda: e.model.save(e.folder), [e.folder])),
    "save under a file": (OSError, r"a_file.txt",
                          lambda e: (lambda: e.model.save(e.a_file / "m.pt"), [e.a_file])),
    # --- audio files
    "fit on a directory named x.wav": (
        AudioFileError, r"folder.wav' is a directory",
        lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="cnn10"), [X]))(
            [str(e.wavs[0]), str(e.dir_wav)]))),
    "fit on a NaN file": (AudioFileError, r"nan.wav' is corrupt: it holds NaN",
                          lambda e: ((lambda X: (_fit(X, e.captions[:2], audio_encoder="cnn10"),
                                                 [X, e.nan_wav]))([str(e.wavs[0]),
                                                                   str(e.nan_wav)]))),
    "fit on a missing file": (AudioFileError, r"gone.wav' does not exist",
                              lambda e: ((lambda X: (_fit(X, e.captions[:2],
                                                          audio_encoder="cnn10"), [X]))(
                                  [str(e.wavs[0]), str(e.root / "gone.wav")]))),
    "fit on an empty file": (AudioFileError, r"empty.wav' is empty \(0 bytes\)",
                             lambda e: ((lambda X: (_fit(X, e.captions[:2],
                                                         audio_encoder="cnn10"), [X]))(
                                 [str(e.empty_wav), str(e.wavs[0])]))),
    "fit on a corrupt file": (AudioFileError, r"corrupt.wav' could not be decoded",
                              lambda e: ((lambda X: (_fit(X, e.captions[:2],
                                                          audio_encoder="cnn10"),
                                                     [X, e.corrupt_wav]))(
                                  [str(e.wavs[0]), str(e.corrupt_wav)]))),
    "check_audio_files one string": (TypeError, r"paths='clip.wav' is not a sequence",
                                     lambda e: (lambda: check_audio_files("clip.wav"), [])),
    "check_audio_files bad mode": (ValueError, r"'on_error' parameter of check_audio_files .* "
                                               r"Got 'ignore'",
                                   lambda e: (lambda: check_audio_files([e.wavs[0]], "ignore"),
                                              [e.wavs[0]])),
    "load_audio a directory": (AudioFileError, r"folder.wav' is a directory",
                               lambda e: (lambda: load_audio(e.dir_wav, SR), [e.dir_wav])),
    # --- helpers that guard files
    "atomic_write mode": (ValueError, r"mode='a'",
                          lambda e: (lambda: atomic_write(e.root / "x", "a").__enter__(), [])),
    "check_writable_path a list": (TypeError, r"--output=\['m.pt'\] is not a path",
                                   lambda e: (lambda: check_writable_path(["m.pt"], "--output"),
                                              [])),
    "load_checkpoint_safely a number": (TypeError, r"resume_from=3 is not a path",
                                        lambda e: (lambda: load_checkpoint_safely(3), [])),
}


@pytest.mark.parametrize("case", list(API_CASES), ids=list(API_CASES))
def test_api_catalogue(env, case):
    error, pattern, build = API_CASES[case]
    call, inputs = build(env)
    before = [_snapshot(v) for v in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=pattern) as info:
            call()
    message = str(info.value)
    assert "\n" not in message, f"message spans several lines: {message!r}"
    for b, v in zip(before, inputs):
        assert _same(b, v), f"{case}: input {type(v).__name__} was modified"
    assert not env.sentinel.exists(), "code from a malicious file ran"
    assert not list(env.root.glob(".*.tmp")), "a temporary file was left behind"


def test_catalogue_is_large_enough():
    assert len(API_CASES) >= 60 and len(CLI_CASES) >= 30


# ---------------------------------------------------------------------- the CLI catalogue
def _train(e, *extra, csv=None, output=None):
    return ["train", "--dataset", "csv", "--csv", str(csv or e.csv),
            "--output", str(output or e.root / "cli-out" / "m.pt"), "--audio-encoder", "cnn10",
            "--embedding-dim", "8", "--batch-size", "4", "--max-epochs", "1",
            "--validation-fraction", "0", "--audio-encoder-max-seconds", "0.25", "--verbose", "0", *extra]


def _csv(e, name, content, encoding="utf-8"):
    path = e.root / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


def _search_dir(e, name, extra):
    folder = e.root / name
    if not folder.exists():
        folder.mkdir()
        for item in extra:
            item(folder)
    return folder


CLI_CASES = {
    # train: outputs refused before any work
    "train --output a directory": (r"--output='.*a_folder' is a directory",
                                   lambda e: (_train(e, output=e.folder),
                                              [e.csv, e.root / "a_folder.ckpt"])),
    "train --output under a file": (r"--output='.*a_file.txt/m.pt' cannot be written",
                                    lambda e: (_train(e, output=e.a_file / "m.pt"),
                                               [e.csv, e.a_file])),
    "train --checkpoint a directory": (
        r"Checkpoint\(path\)='.*a_folder' is a directory",
        lambda e: (_train(e, "--checkpoint", str(e.folder)), [e.csv])),
    # train --resume
    "train --resume truncated": (r"truncated.ckpt'.*cannot be read",
                                 lambda e: (_train(e, "--resume", str(e.truncated_ckpt)),
                                            [e.truncated_ckpt])),
    "train --resume malicious": (r"malicious.pt'.*refused for safety",
                                 lambda e: (_train(e, "--resume", str(e.malicious)),
                                            [e.malicious])),
    "train --resume a model file": (r"model.pt'.*is a saved model",
                                    lambda e: (_train(e, "--resume", str(e.model_file)),
                                               [e.model_file])),
    "train --resume garbage": (r"garbage.bin'.*cannot be read",
                               lambda e: (_train(e, "--resume", str(e.garbage)), [e.garbage])),
    "train --resume a directory": (r"--resume .*a_folder is a directory",
                                   lambda e: (_train(e, "--resume", str(e.folder)), [e.csv])),
    "train --resume missing": (r"--resume .*nope.ckpt does not exist",
                               lambda e: (_train(e, "--resume", str(e.root / "nope.ckpt")),
                                          [e.csv])),
    "train --resume another model's checkpoint": (
        r"run.ckpt'.*written for another model",
        lambda e: (_train(e, "--resume", str(e.ckpt)), [e.ckpt])),
    # train: data
    "train csv without header": (r"no-header.csv needs a header with columns audio_path,caption",
                                 lambda e: (_train(e, csv=_csv(e, "no-header.csv",
                                                               "a.wav,a dog\n")), [])),
    "train csv empty": (r"empty.csv needs a header.*found None",
                        lambda e: (_train(e, csv=_csv(e, "empty.csv", "")), [])),
    "train csv not UTF-8": (r"latin.csv is not UTF-8 text",
                            lambda e: (_train(e, csv=_csv(e, "latin.csv",
                                                          "audio_path,caption\naudio/clip0.wav,"
                                                          "caf\u00e9 noise\n", "latin-1")), [])),
    "train csv empty caption": (r"blank.csv row 3 has an empty audio_path or caption",
                                lambda e: (_train(e, csv=_csv(e, "blank.csv",
                                                              "audio_path,caption\n"
                                                              "audio/clip0.wav,a tone\n"
                                                              "audio/clip1.wav,  \n")), [])),
    "train csv short row": (r"short.csv row 2 has an empty audio_path or caption: "
                            r"'audio/clip0.wav', None",
                            lambda e: (_train(e, csv=_csv(e, "short.csv",
                                                          "audio_path,caption\n"
                                                          "audio/clip0.wav\n")), [])),
    "train csv missing audio": (r"1 audio files listed in .*missing.csv are missing, e.g. "
                                r"\['.*gone.wav'\]",
                                lambda e: (_train(e, csv=_csv(e, "missing.csv",
                                                              "audio_path,caption\n"
                                                              "audio/clip0.wav,a tone\n"
                                                              "gone.wav,nothing\n")), [])),
    "train csv lists a directory": (r"are missing, e.g. \['.*folder.wav'\]",
                                    lambda e: (_train(e, csv=_csv(e, "dir.csv",
                                                                  "audio_path,caption\n"
                                                                  "audio/clip0.wav,a tone\n"
                                                                  "folder.wav,a folder\n")),
                                               [])),
    "train csv lists a NaN file": (r"nan.wav' is corrupt: it holds NaN",
                                   lambda e: (_train(e, csv=_csv(e, "nan.csv",
                                                                 "audio_path,caption\n"
                                                                 "audio/clip0.wav,a tone\n"
                                                                 "nan.wav,broken\n")), [e.nan_wav])),
    "train --csv a directory": (r"CSV file .*a_folder is a directory",
                                lambda e: (_train(e, csv=e.folder), [])),
    "evaluate an empty model file": (r"model file .*empty.bin' is empty",
                                     lambda e: (["evaluate", "--model", str(e.empty), "--dataset",
                                                 "csv", "--csv", str(e.csv)], [e.empty])),
    "train csv missing file": (r"CSV file .*absent.csv does not exist",
                               lambda e: (_train(e, csv=e.root / "absent.csv"), [])),
    "train --epsilon -1": (r"'epsilon' parameter of LTMRetriever .* Got -1.0",
                           lambda e: (_train(e, "--epsilon", "-1"), [e.csv])),
    "train --batch-size 0": (r"'batch_size' parameter of LTMRetriever .* Got 0",
                             lambda e: (_train(e, "--batch-size", "0"), [e.csv])),
    "train --embedding-dim 10**9": (r"embedding_dim=1000000000 with .* needs about",
                                    lambda e: (_train(e, "--embedding-dim", "1000000000"),
                                               [e.csv])),
    "train --max-epochs 0": (r"'max_epochs' parameter of LTMRetriever .* Got 0",
                             lambda e: (_train(e, "--max-epochs", "0"), [e.csv])),
    "train --metric manhattan": (r"'metric' parameter of LTMRetriever .* Got 'manhattan'",
                                 lambda e: (_train(e, "--metric", "manhattan"), [e.csv])),
    "train --loss hinge": (r"'loss' parameter of LTMRetriever .* Got 'hinge'",
                           lambda e: (_train(e, "--loss", "hinge"), [e.csv])),
    "train --device tpu": (r"device='tpu'", lambda e: (_train(e, "--device", "tpu"), [e.csv])),
    "train --audio-encoder-on-bad-file maybe": (
        r"'on_bad_file' parameter .* Got 'maybe'",
        lambda e: (_train(e, "--audio-encoder-on-bad-file", "maybe"), [e.csv])),
    "train --root not a folder": (r"--root .*a_file.txt is not a folder",
                                  lambda e: (["train", "--dataset", "clotho", "--root",
                                              str(e.a_file), "--output",
                                              str(e.root / "cli-out" / "m.pt")], [e.a_file])),
    # evaluate: tampered and wrong model files
    **{f"evaluate tampered: {k}": (rf"tampered_{k}.pt' is not a valid sklearn-ltm model "
                                   rf"file: .*{m}", _evaluate_tampered(k))
       for k, m in [("no_state", "lacks the keys"), ("bad_shape", "has shape"),
                    ("unknown_param", "bogus_option"), ("batch_size0", "'batch_size' parameter .* Got 0"),
                    ("nan_weights", "holds NaN")]},
    "evaluate tampered audio_config": (
        r"tampered_acfg.pt' is not a valid sklearn-ltm model file: 'architecture' is refused by "
        r"the encoder: .*'bogus'",
        lambda e: ((lambda f: (["evaluate", "--model", str(f), "--dataset", "csv", "--csv",
                                str(e.csv)], [f]))(
            _tampered(e.path_model, e.root / "tampered_acfg.pt",
                      lambda p: p["architecture"]["audio_config"].__setitem__("bogus", 1))))),
    "zero-shot tampered text_config": (
        r"tampered_tcfg.pt' is not a valid sklearn-ltm model file: 'architecture' is refused by "
        r"the encoder: .*max_length",
        lambda e: ((lambda f: (["zero-shot", "--model", str(f), "--labels", "a,b",
                                str(e.wavs[0])], [f]))(
            _tampered(e.path_model, e.root / "tampered_tcfg.pt",
                      lambda p: p["architecture"]["text_config"].__setitem__("max_length", -5))))),
    "evaluate truncated model": (r"truncated.pt' is not a sklearn-ltm model file",
                                 lambda e: (["evaluate", "--model", str(e.truncated_model),
                                             "--dataset", "csv", "--csv", str(e.csv)],
                                            [e.truncated_model])),
    "evaluate malicious model": (r"malicious.pt' is not a sklearn-ltm model file",
                                 lambda e: (["evaluate", "--model", str(e.malicious),
                                             "--dataset", "csv", "--csv", str(e.csv)],
                                            [e.malicious])),
    "evaluate a checkpoint": (r"run.ckpt' is not a sklearn-ltm model file",
                              lambda e: (["evaluate", "--model", str(e.ckpt), "--dataset", "csv",
                                          "--csv", str(e.csv)], [e.ckpt])),
    "evaluate --model a directory": (r"model file .*a_folder is a directory",
                                     lambda e: (["evaluate", "--model", str(e.folder),
                                                 "--dataset", "csv", "--csv", str(e.csv)], [])),
    # search
    "search --cache a file": (r"a_file.txt",
                                   lambda e: (["search", "--model", str(e.path_model),
                                               "--audio-dir", str(e.root / "audio"), "--query",
                                               "a tone", "--cache", str(e.a_file)],
                                              [e.path_model])),
    "search --audio-dir a file": (r"a_file.txt is not a folder",
                                  lambda e: (["search", "--model", str(e.path_model),
                                              "--audio-dir", str(e.a_file), "--query", "x"],
                                             [e.a_file])),
    "search a folder without audio": (r"no audio files \(.wav, .flac, .ogg\) under .*a_folder",
                                      lambda e: (["search", "--model", str(e.path_model),
                                                  "--audio-dir", str(e.folder), "--query", "x"],
                                                 [])),
    "search a folder of only broken files": (
        r"none of the 2 audio files under .*all-broken could be read, e.g. .*a.wav",
        lambda e: (["search", "--model", str(e.path_model), "--audio-dir",
                    str(_search_dir(e, "all-broken", [
                        lambda f: (f / "a.wav").write_bytes(b"RIFFjunk"),
                        lambda f: (f / "b.wav").write_bytes(b"")])),
                    "--query", "x", "--cache", str(e.root / "broken-cache.npz")], [])),
    "search --audio-file missing": (r"--audio-file .*nope.wav does not exist",
                                    lambda e: (["search", "--model", str(e.path_model),
                                                "--audio-file", str(e.root / "nope.wav"),
                                                "--captions", str(e.csv)], [])),
    "search --captions missing": (r"--captions .*nope.txt does not exist",
                                  lambda e: (["search", "--model", str(e.path_model),
                                              "--audio-file", str(e.wavs[0]), "--captions",
                                              str(e.root / "nope.txt")], [])),
    "search tampered model": (r"tampered_batch_size0.pt' is not a valid",
                              lambda e: (["search", "--model", str(e.tampered["batch_size0"]),
                                          "--audio-dir", str(e.root / "audio"), "--query", "x"],
                                         [e.tampered["batch_size0"]])),
    # zero-shot
    "zero-shot one label": (r"at least 2 distinct labels; got \['dog', 'dog'\]",
                            lambda e: (["zero-shot", "--model", str(e.path_model), "--labels",
                                        "dog,dog", str(e.wavs[0])], [])),
    "zero-shot missing file": (r"nope.wav does not exist",
                               lambda e: (["zero-shot", "--model", str(e.path_model), "--labels",
                                           "dog,rain", str(e.root / "nope.wav")], [])),
    "zero-shot a NaN file": (r"nan.wav' is corrupt",
                             lambda e: (["zero-shot", "--model", str(e.path_model), "--labels",
                                         "dog,rain", str(e.nan_wav)], [e.nan_wav])),
    "zero-shot tampered model": (r"tampered_unknown_param.pt' is not a valid",
                                 lambda e: (["zero-shot", "--model",
                                             str(e.tampered["unknown_param"]), "--labels",
                                             "a,b", str(e.wavs[0])], [])),
}
#: Parser-level mistakes: argparse prints its usage line, then one error line; exit 2.
USAGE_CASES = {
    "train --batch-size abc": (r"--batch-size: invalid int value: 'abc'",
                               lambda e: _train(e, "--batch-size", "abc")),
    "search -k 0": (r"-k 0: must be >= 1",
                    lambda e: ["search", "--model", "m.pt", "--query", "x", "-k", "0"]),
    "unknown command": (r"invalid choice: 'fly'", lambda e: ["fly"]),
    "train without --output": (r"the following arguments are required: --output",
                               lambda e: ["train", "--dataset", "csv"]),
}


@pytest.fixture(scope="module")
def cli_env(env):
    """``env`` plus a tiny model trained through the CLI on files (a CSV with a BOM)."""
    bom = _csv(env, "pairs-bom.csv", "\ufeffaudio_path,caption\n" + "".join(
        f"audio/clip{i}.wav,a tone number {i}\n" for i in range(4)), "utf-8")
    env.path_model = env.root / "path-model.pt"
    code = main(_train(env, "--random-state", "0", csv=bom, output=env.path_model))
    assert code == 0, "training on a CSV with a byte-order mark failed"
    return env


def _err_lines(text):
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("case", list(CLI_CASES), ids=list(CLI_CASES))
def test_cli_catalogue(cli_env, case, capsys):
    e = cli_env
    pattern, build = CLI_CASES[case]
    argv, inputs = build(e)
    before = [_snapshot(v) for v in inputs]
    out_dir = e.root / "cli-out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{case}: exit {code}, stderr {err!r}"
    lines = _err_lines(err)
    assert len(lines) == 1, f"{case}: stderr is not one line: {err!r}"
    assert "Traceback" not in err and lines[0].startswith(f"sklearn-ltm {argv[0]}: error: ")
    assert re.search(pattern, lines[0]), f"{case}: {lines[0]!r} does not match {pattern!r}"
    for b, v in zip(before, inputs):
        assert _same(b, v), f"{case}: {v} was modified"
    assert not (out_dir.exists() and any(out_dir.iterdir())), f"{case}: something was written"
    assert not e.sentinel.exists()


@pytest.mark.parametrize("case", list(USAGE_CASES), ids=list(USAGE_CASES))
def test_cli_usage_mistakes(env, case, capsys):
    pattern, build = USAGE_CASES[case]
    with pytest.raises(SystemExit) as info:
        main(build(env))
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    lines = _err_lines(err)
    assert lines[0].startswith("usage: ") and re.search(pattern, lines[-1]), err


#: Run end to end as real processes (imports, entry point, stderr as a user sees it).
SUBPROCESS_CASES = ["train --output a directory", "train --resume malicious",
                    "evaluate tampered: bad_shape"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_catalogue_as_subprocesses(cli_env):
    e = cli_env
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    procs = {}
    for case in SUBPROCESS_CASES:  # started together: the imports overlap
        argv, _ = CLI_CASES[case][1](e)
        procs[case] = subprocess.Popen([sys.executable, "-m", "sklearn_ltm.cli", *argv],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=env, cwd=e.root)
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=280)
        assert proc.returncode == 2, f"{case}: exit {proc.returncode}: {err}"
        assert "Traceback" not in err
        lines = _err_lines(err)
        assert len(lines) == 1 and re.search(CLI_CASES[case][0], lines[0]), err
    assert not e.sentinel.exists()


# ---------------------------------------------------------------------- what must work
def test_dataframe_y_is_read_by_values_not_column_labels(env):
    pd = pytest.importorskip("pandas")
    # as many rows as columns, string column labels: the old dispatch trained on the labels
    X = env.X[:5]
    Y = pd.DataFrame(env.Y[:5], columns=[f"dim {i}" for i in range(5)])
    Xdf = pd.DataFrame(X, columns=list("abcdef"), index=[10, 20, 30, 40, 50])
    before_y, before_x = Y.copy(deep=True), Xdf.copy(deep=True)
    est = LTMRetriever(**FAST).fit(Xdf, Y)
    ref = LTMRetriever(**FAST).fit(X, env.Y[:5])
    assert est.text_input_kind_ == "features"
    np.testing.assert_array_equal(est.transform(Xdf), ref.transform(X))
    np.testing.assert_array_equal(est.embed_text(Y), ref.embed_text(env.Y[:5]))
    assert Y.equals(before_y) and Xdf.equals(before_x)
    # a Series of captions and a one-column frame of captions are their values too
    s = pd.Series([f"caption {i}" for i in range(5)], index=list("vwxyz"))
    assert LTMRetriever(**FAST).fit(X, s).text_input_kind_ == "strings"
    assert LTMRetriever(**FAST).fit(X, s.to_frame("text")).text_input_kind_ == "strings"
    from sklearn_ltm.evaluation import evaluate

    assert evaluate(est, Xdf, Y) == evaluate(ref, X, env.Y[:5])


def test_one_shot_iterables_are_read_once(env):
    captions = env.captions[:6]
    est = LTMRetriever(**FAST).fit(env.X[:6], (c for c in captions))
    ref = LTMRetriever(**FAST).fit(env.X[:6], captions)
    assert est.text_input_kind_ == "strings"
    np.testing.assert_array_equal(est.embed_text(iter(captions)), ref.embed_text(captions))
    np.testing.assert_array_equal(est.transform(iter(env.X[:6])), ref.transform(env.X[:6]))
    assert est.score(env.X[:6], map(str, captions)) == ref.score(env.X[:6], captions)


def test_on_bad_audio_skip_covers_nan_and_directories_in_one_warning(env):
    from sklearn_ltm.encoders import AudioFilesSkippedWarning

    X = [str(w) for w in env.wavs] + [str(env.nan_wav), str(env.dir_wav), str(env.nan_wav),
                                      str(env.corrupt_wav)]
    captions = env.captions[: len(X)]
    keep_before = list(X)
    with pytest.warns(AudioFilesSkippedWarning) as record:
        est = LTMRetriever(**{**FAST, "max_epochs": 1}, audio_encoder="cnn10",
                           ).set_params(audio_encoder__max_seconds=0.25,
                                        audio_encoder__on_bad_file="skip").fit(X, captions)
    skipped = [w for w in record if issubclass(w.category, AudioFilesSkippedWarning)]
    assert len(skipped) == 1
    assert re.search(r"skipped 3 unreadable audio file\(s\) \(4 pairs\)", str(skipped[0].message))
    assert est.n_epochs_ == 1 and X == keep_before


def test_validation_that_holds_out_nothing_warns(env):
    with pytest.warns(UserWarning, match=r"validation_fraction=0.99 holds out no clips"):
        est = LTMRetriever(**{**FAST, "validation_fraction": 0.99}).fit(env.X, env.Y)
    assert not any(k.startswith("val_") for k in est.history_[0])


def test_a_single_clip_repeated_warns(env):
    X = np.repeat(env.X[:1], 8, axis=0)
    with pytest.warns(UserWarning, match=r"all 8 pairs have the same clip"):
        LTMRetriever(**FAST).fit(X, env.Y[:8])


def test_score_on_one_pair_warns(env):
    from sklearn.exceptions import UndefinedMetricWarning

    with pytest.warns(UndefinedMetricWarning, match=r"gallery holds 1 distinct clip"):
        assert env.model.score(env.X[:1], env.Y[:1]) == 1.0


def test_search_skips_directories_and_corrupt_files(cli_env, capsys):
    e = cli_env
    folder = _search_dir(e, "mixed", [
        lambda f: _wav(f / "good1.wav", freq=500), lambda f: _wav(f / "good2.wav", freq=900),
        lambda f: (f / "looks-like.wav").mkdir(),
        lambda f: (f / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk"),
        lambda f: _wav(f / "nan.wav", nan=True)])
    cache = e.root / "mixed-cache"
    argv = ["search", "--model", str(e.path_model), "--audio-dir", str(folder), "--query",
            "a tone", "-k", "10", "--cache", str(cache)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warn = _err_lines(captured.err)
    assert len(warn) == 1 and re.search(r"warning: skipped 2 of 4 audio files",
                                        warn[0]), captured.err
    results = [ln for ln in captured.out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(results) == 2 and all("good" in ln for ln in results)
    cached = set()
    for shard in cache.rglob("shard-*.npz"):
        with np.load(shard) as npz:
            cached.update(npz["keys"].tolist())
    assert len(cached) == 2  # the broken files are not cached
    assert main(argv) == 0  # again, from the cache: same answer
    assert capsys.readouterr().out == captured.out


def test_bom_csv_is_read(env):
    path = _csv(env, "bom-only.csv", "\ufeffaudio_path,caption\naudio/clip0.wav,a tone\n")
    audio, captions = read_pairs_csv(path)
    assert captions == ["a tone"] and audio[0].endswith("clip0.wav")


def test_malicious_pickle_never_runs(env):
    with pytest.raises(ValueError):
        LTMRetriever.load(env.malicious)
    with pytest.raises(ValueError):
        load_checkpoint_safely(env.malicious)
    assert not env.sentinel.exists()
    assert pickle.loads(pickle.dumps(Evil(env.root / "x"))) is not None  # the payload is live
    os.unlink(env.root / "x")


def test_an_unwritable_folder_is_refused_before_training(env, monkeypatch, tmp_path):
    import sklearn_ltm._checks as checks

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checks.tempfile, "TemporaryFile", denied)  # as a non-root user would see
    fits = []
    monkeypatch.setattr(LTMRetriever, "_build", lambda self, *a, **k: fits.append(a))
    with pytest.raises(ValueError, match=r"Checkpoint\(path\)='.*run.ckpt' cannot be written: "
                                         r"no file can be created in .*Permission denied"):
        LTMRetriever(**FAST, callbacks=[Checkpoint(str(tmp_path / "run.ckpt"))]).fit(env.X,
                                                                                    env.Y)
    assert fits == []  # refused before any model was built
    assert main(_train(env, output=tmp_path / "m.pt")) == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere")
def test_a_read_only_folder_is_refused(env, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="cannot be written"):
            check_writable_path(folder / "m.pt", "--output")
        with pytest.raises(ValueError, match="no permission to create folders"):
            check_writable_path(folder / "sub" / "m.pt", "--output")
    finally:
        folder.chmod(0o700)


def test_other_array_likes_are_read_by_values(env):
    class ColumnFrame:  # like a polars frame: iterating gives column names, __array__ values
        def __init__(self, values):
            self.values = values

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.values, dtype=dtype)

        def __iter__(self):
            return iter([f"column {i}" for i in range(self.values.shape[1])])

        def __len__(self):
            return len(self.values)

    ref = LTMRetriever(**FAST).fit(env.X[:5], env.Y[:5])
    est = LTMRetriever(**FAST).fit(ColumnFrame(env.X[:5]), ColumnFrame(env.Y[:5]))
    assert est.text_input_kind_ == "features"
    np.testing.assert_array_equal(est.embed_text(torch.from_numpy(env.Y[:5])),
                                  ref.embed_text(env.Y[:5]))
