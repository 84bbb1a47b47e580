"""The sklearn-ltm command: every subcommand end to end on files made here, and its errors."""

import json

import numpy as np
import pytest
import soundfile as sf

from sklearn_ltm.cli import build_parser, main

SR = 16000


def _tone(freq, seconds=1.0, noise=False, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    if noise:
        return 0.3 * np.random.default_rng(seed).normal(size=t.size).clip(-3, 3) / 3
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for i in range(8):
        kind = "noise" if i % 2 else "tone"
        sf.write(root / f"clip{i}.wav", _tone(200 + 150 * i, noise=i % 2 == 1, seed=i), SR)
        rows.append((f"clip{i}.wav", f"a {'hiss of static' if i % 2 else 'pure tone'} "
                                     f"number {i}"))
    csv = root / "pairs.csv"
    csv.write_text("audio_path,caption\n" + "".join(f"{a},{c}\n" for a, c in rows))
    return root, csv, kind


@pytest.fixture(scope="module")
def model_file(corpus, tmp_path_factory):
    root, csv, _ = corpus
    out = tmp_path_factory.mktemp("model") / "model.pt"
    code = main(["train", "--dataset", "csv", "--csv", str(csv), "--output", str(out),
                 "--audio-encoder", "cnn10", "--embedding-dim", "8", "--batch-size", "4",
                 "--max-epochs", "2", "--validation-fraction", "0", "--random-state", "0",
                 "--audio-encoder-max-seconds", "1.0", "--quiet"])
    assert code == 0
    return out


def test_help_of_every_subcommand_has_examples(capsys):
    for cmd in ("demo", "train", "evaluate", "search", "zero-shot"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"sklearn-ltm {cmd}" in text


def test_train_exposes_every_estimator_parameter():
    from sklearn_ltm import LTMRetriever

    parser = build_parser()
    args = parser.parse_args(["train", "--dataset", "csv", "--output", "m.pt",
                              "--epsilon", "0.1", "--no-early-stopping",
                              "--hidden-dim", "32", "--mass-fraction", "0.8",
                              "--loss", "contrastive", "--loss-temperature", "0.1",
                              "--audio-encoder-weights", "w.pth", "--metric-rank", "4",
                              "--no-audio-encoder-freeze"])
    # every parameter, nested ones included; callbacks are --checkpoint / --checkpoint-every
    for name in LTMRetriever().get_params(deep=True):
        assert name == "callbacks" or hasattr(args, name), name
    for name in LTMRetriever(loss="contrastive", text_encoder="scratch",
                             audio_encoder="aisfx").get_params(deep=True):
        assert name == "callbacks" or hasattr(args, name), name
    assert args.epsilon == 0.1 and args.early_stopping is False
    assert args.hidden_dim == 32 and args.mass_fraction == 0.8
    assert args.loss == "contrastive" and args.loss__temperature == 0.1
    assert args.audio_encoder__weights == "w.pth" and args.metric__rank == 4
    assert args.audio_encoder__freeze is False
    assert args.loss__margin is None  # nested options are set only when given


def test_train_writes_model_and_checkpoint(model_file):
    from sklearn_ltm import LTMRetriever

    assert model_file.is_file()
    assert model_file.with_suffix(".ckpt").is_file()
    est = LTMRetriever.load(model_file)
    assert est.audio_input_kind_ == "paths" and est.n_epochs_ == 2


def test_train_resumes_from_checkpoint(corpus, model_file, tmp_path, capsys):
    root, csv, _ = corpus
    out = tmp_path / "more.pt"
    code = main(["train", "--dataset", "csv", "--csv", str(csv), "--output", str(out),
                 "--audio-encoder", "cnn10", "--embedding-dim", "8", "--batch-size", "4",
                 "--max-epochs", "3", "--validation-fraction", "0", "--random-state", "0",
                 "--audio-encoder-max-seconds", "1.0", "--quiet",
                 "--resume", str(model_file.with_suffix(".ckpt"))])
    assert code == 0
    assert "trained 3 epochs" in capsys.readouterr().out


def test_evaluate_json_has_both_directions(corpus, model_file, capsys):
    _, csv, _ = corpus
    assert main(["evaluate", "--model", str(model_file), "--dataset", "csv", "--csv", str(csv),
                 "--format", "json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("t2a_R@1", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_mAP@10"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["t2a_R@10"] == 1.0  # 8 clips: every clip is in the top 10


def test_search_caches_by_content_and_ranks_all_clips(corpus, model_file, tmp_path, capsys):
    root, _, _ = corpus
    cache = tmp_path / "cache.npz"
    args = ["search", "--model", str(model_file), "--audio-dir", str(root),
            "--query", "a pure tone", "-k", "3", "--cache", str(cache)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert cache.is_file()
    lines = [ln for ln in first.splitlines() if ln.strip().startswith(("1", "2", "3"))]
    assert len(lines) == 3
    mtime = cache.stat().st_mtime_ns
    assert main(args) == 0  # second run: everything from the cache
    assert capsys.readouterr().out == first
    assert cache.stat().st_mtime_ns == mtime
    with np.load(cache) as npz:
        assert len(npz["keys"]) == 8


def test_search_audio_to_text(corpus, model_file, tmp_path, capsys):
    root, _, _ = corpus
    captions = tmp_path / "caps.txt"
    captions.write_text("a pure tone\na hiss of static\nsilence\n")
    assert main(["search", "--model", str(model_file), "--audio-file",
                 str(root / "clip0.wav"), "--captions", str(captions), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 3 and "top 2 captions" in out


def test_zero_shot_prints_one_label_per_file(corpus, model_file, capsys):
    root, _, _ = corpus
    assert main(["zero-shot", "--model", str(model_file), "--labels", "pure tone,hiss of static",
                 str(root / "clip0.wav"), str(root / "clip1.wav")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        path, label, proba = line.split("\t")
        assert label in ("pure tone", "hiss of static") and 0.5 <= float(proba) <= 1.0


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "missing.pt", "--dataset", "csv", "--csv", "x.csv"],
     "missing.pt does not exist"),
    (["train", "--dataset", "audiocaps", "--output", "m.pt"], "needs --root"),
    (["train", "--dataset", "csv", "--csv", "nope.csv", "--output", "m.pt"],
     "nope.csv does not exist"),
    (["demo", "--n-clips", "3", "--output", "OUT"], "n_clips=3"),
])
def test_user_mistakes_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_option_value_is_rejected_before_training(corpus, tmp_path, capsys):
    _, csv, _ = corpus
    code = main(["train", "--dataset", "csv", "--csv", str(csv), "--output",
                 str(tmp_path / "m.pt"), "--epsilon", "-1", "--quiet"])
    assert code == 2
    assert "The 'epsilon' parameter of LTMRetriever must be" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_model_from_another_format_version(model_file, tmp_path, capsys):
    import torch

    payload = torch.load(model_file, weights_only=True)
    payload["format_version"] = 999
    bad = tmp_path / "future.pt"
    torch.save(payload, bad)
    assert main(["zero-shot", "--model", str(bad), "--labels", "a,b", "x.wav"]) == 2
    assert "format 999" in capsys.readouterr().err


def test_unwritable_output_is_refused_before_reading_data(corpus, tmp_path, capsys):
    _, csv, _ = corpus
    (tmp_path / "a-file").write_text("not a folder")
    code = main(["train", "--dataset", "csv", "--csv", str(tmp_path / "absent.csv"),
                 "--output", str(tmp_path / "a-file" / "m.pt"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    # the output is checked first: the missing CSV is not even reached
    assert "--output" in err and "a-file" in err and "absent.csv" not in err


def test_unknown_component_option_for_the_chosen_component(corpus, tmp_path, capsys):
    _, csv, _ = corpus
    code = main(["train", "--dataset", "csv", "--csv", str(csv), "--output",
                 str(tmp_path / "m.pt"), "--loss-temperature", "0.1", "--quiet"])
    assert code == 2  # m-LTM has no temperature: said before training
    assert "Invalid parameter 'temperature' for estimator MLTM" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
