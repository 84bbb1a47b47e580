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
                 "--audio-encoder-max-seconds", "1.0", "--verbose", "0"])
    assert code == 0
    return out


def test_help_of_every_subcommand_has_examples(capsys):
    for cmd in ("demo", "train", "evaluate", "search", "export", "zero-shot"):
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
                 "--audio-encoder-max-seconds", "1.0", "--verbose", "0",
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


def test_search_ranks_all_clips_and_caches_them(corpus, model_file, tmp_path, capsys):
    root, _, _ = corpus
    cache = tmp_path / "cache"
    args = ["search", "--model", str(model_file), "--audio-dir", str(root),
            "--query", "a pure tone", "-k", "3", "--cache", str(cache), "--verbose", "0"]
    assert main(args) == 0
    first = capsys.readouterr().out
    lines = [ln for ln in first.splitlines() if ln.strip().startswith(("1", "2", "3"))]
    assert len(lines) == 3
    shards = sorted(cache.rglob("shard-*.npz"))
    keys = set()
    for shard in shards:  # one shard per batch of files embedded
        with np.load(shard) as npz:
            keys.update(npz["keys"].tolist())
    assert len(keys) == 8
    mtimes = [s.stat().st_mtime_ns for s in shards]
    assert main(args) == 0  # second run: everything from the cache
    assert capsys.readouterr().out == first
    assert sorted(cache.rglob("shard-*.npz")) == shards
    assert [s.stat().st_mtime_ns for s in shards] == mtimes


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
                 str(tmp_path / "m.pt"), "--epsilon", "-1", "--verbose", "0"])
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
                 "--output", str(tmp_path / "a-file" / "m.pt"), "--verbose", "0"])
    assert code == 2
    err = capsys.readouterr().err
    # the output is checked first: the missing CSV is not even reached
    assert "--output" in err and "a-file" in err and "absent.csv" not in err


def test_unknown_component_option_for_the_chosen_component(corpus, tmp_path, capsys):
    _, csv, _ = corpus
    code = main(["train", "--dataset", "csv", "--csv", str(csv), "--output",
                 str(tmp_path / "m.pt"), "--loss-temperature", "0.1", "--verbose", "0"])
    assert code == 2  # m-LTM has no temperature: said before training
    assert "Invalid parameter 'temperature' for estimator MLTM" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


# ---------------------------------------------------------------------- issue 14: the CLI surface
def _all_options():
    """(command, action) for every option of every subcommand."""
    import argparse

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for command, p in sub.choices.items():
        for action in p._actions:
            if not isinstance(action, argparse._HelpAction):
                yield command, action


def test_no_option_of_any_command_lacks_a_help_text():
    options = list(_all_options())
    assert len(options) > 60  # the generated estimator and component options are there
    for command, action in options:
        text = (action.help or "").split("(default:")[0].strip()
        assert text and not text.startswith("["), (command, action.option_strings)


def test_option_help_is_the_first_sentence_of_the_docstring():
    from sklearn_ltm import LTMRetriever
    from sklearn_ltm._docstrings import parameter_help
    from sklearn_ltm.components import Contrastive, HuggingFaceText
    from sklearn_ltm.evaluation import evaluate

    helps = {(c, a.option_strings[0]): a.help for c, a in _all_options() if a.option_strings}
    for name, text in parameter_help(LTMRetriever).items():
        if name not in ("callbacks", "verbose"):
            flag = "--" + name.replace("_", "-")
            assert helps[("train", flag)].startswith(text.replace("%", "%%")), flag
    assert helps[("train", "--embedding-dim")].startswith("Size of the shared embedding space.")
    assert helps[("train", "--loss-temperature")].startswith(
        parameter_help(Contrastive)["temperature"])
    pooling = helps[("train", "--text-encoder-pooling")]
    assert pooling.startswith(parameter_help(HuggingFaceText)["pooling"]) and '"auto"' in pooling
    assert "[Hugging Face model]" in pooling
    assert helps[("evaluate", "--epsilon")].startswith(parameter_help(evaluate)["epsilon"])
    # references like "As in :class:`PANNs`" are followed
    assert helps[("train", "--audio-encoder-freeze")].startswith("Keep the encoder fixed")


def test_one_verbosity_switch_on_by_default_on_a_terminal(monkeypatch):
    import io

    from sklearn_ltm.cli import resolve_verbosity

    flags = {(c, s) for c, a in _all_options() for s in a.option_strings}
    assert not any(s == "--quiet" for _, s in flags)
    for command in ("demo", "train", "evaluate", "zero-shot"):
        assert (command, "--verbose") in flags and (command, "-v") in flags

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert resolve_verbosity(None, Terminal()) == 1
    assert resolve_verbosity(None, io.StringIO()) == 0  # a pipe or a file: quiet
    assert resolve_verbosity(0, Terminal()) == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--model", "m.pt", "--dataset", "csv",
                                   "--verbose", "-1"])


def test_evaluate_progress_follows_the_verbosity(corpus, model_file, capsys):
    _, csv, _ = corpus
    argv = ["evaluate", "--model", str(model_file), "--dataset", "csv", "--csv", str(csv)]
    assert main(argv) == 0  # stderr is not a terminal under pytest: quiet by default
    quiet = capsys.readouterr()
    assert "embedding" not in quiet.err
    assert main([*argv, "--verbose", "1"]) == 0
    loud = capsys.readouterr()
    assert "evaluate: embedding clips" in loud.err and loud.out == quiet.out


def test_train_final_line_names_the_files_their_sizes_and_the_scores(corpus, tmp_path, capsys):
    _, csv, _ = corpus
    out = tmp_path / "val.pt"
    assert main(["train", "--dataset", "csv", "--csv", str(csv), "--output", str(out),
                 "--audio-encoder", "cnn10", "--embedding-dim", "8", "--batch-size", "4",
                 "--max-epochs", "1", "--validation-fraction", "0.25", "--random-state", "0",
                 "--audio-encoder-max-seconds", "1.0"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    ckpt = out.with_suffix(".ckpt")
    assert f"the model {out} (" in last and f"the resumable checkpoint {ckpt} (" in last
    import re

    sizes = re.findall(r"\((\d+(?:\.\d)?) (B|KiB|MiB|GiB)", last)
    assert len(sizes) == 2
    scale = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
    for (value, unit), path in zip(sizes, (out, ckpt)):
        assert abs(float(value) * scale[unit] - path.stat().st_size) <= 0.05 * scale[unit] + 1
    assert "last validation t2a_R@1 " in last and "a2t_R@10 " in last
    assert "trained 1 epochs on 8 pairs" in last


def test_search_cache_defaults_to_the_user_cache_dir(corpus, model_file, tmp_path, monkeypatch,
                                                     capsys):
    from sklearn_ltm.cli import embedding_cache_dir, user_cache_dir

    root, csv, _ = corpus
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "sklearn-ltm"
    before = sorted(p.name for p in root.iterdir())
    assert main(["search", "--model", str(model_file), "--audio-dir", str(root),
                 "--query", "a pure tone", "-k", "2"]) == 0
    cache = embedding_cache_dir()
    assert cache.is_dir() and cache.parent == tmp_path / "xdg" / "sklearn-ltm"
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written in the folder
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "sklearn-ltm"


def test_evaluate_and_zero_shot_reuse_the_embeddings_search_cached(corpus, model_file, tmp_path,
                                                                   monkeypatch, capsys):
    import sklearn_ltm.retriever as retriever_module

    root, csv, _ = corpus
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "shared-cache"
    assert main(["search", "--model", str(model_file), "--audio-dir", str(root), "--query",
                 "a pure tone", "-k", "2", "--cache", str(cache), "--verbose", "0"]) == 0
    capsys.readouterr()
    fresh = main(["evaluate", "--model", str(model_file), "--dataset", "csv", "--csv", str(csv),
                  "--format", "json", "--verbose", "0"])  # no --cache given: embeds anew
    uncached = json.loads(capsys.readouterr().out)
    assert fresh == 0
    calls = []
    real = retriever_module.LTMRetriever.transform
    monkeypatch.setattr(retriever_module.LTMRetriever, "transform",
                        lambda self, X, **kw: calls.append(len(X)) or real(self, X, **kw))
    assert main(["evaluate", "--model", str(model_file), "--dataset", "csv", "--csv", str(csv),
                 "--format", "json", "--cache", str(cache), "--verbose", "0"]) == 0
    cached = json.loads(capsys.readouterr().out)
    assert calls == []  # every clip came from the cache that search wrote
    assert cached.keys() == uncached.keys()
    for key, value in uncached.items():
        assert cached[key] == pytest.approx(value, abs=1e-5), key
    assert main(["zero-shot", "--model", str(model_file), "--labels", "tone,noise", "--cache",
                 str(cache), "--verbose", "0", str(root)]) == 0
    assert calls == [] and capsys.readouterr().out.count("\t") >= 2


@pytest.mark.parametrize("content, message", [
    (b"audio_path,caption\nclip0.wav,a tone\n", "is a CSV file, not a sklearn-ltm model file"),
    (b"", "is empty"),
    (bytes(range(7, 200)), "is not a sklearn-ltm model file (not a torch file)"),
    (b"PK\x03\x04 broken zip", "is not a sklearn-ltm model file (torch could not read it: "),
])
def test_a_file_that_is_not_a_model_gets_a_clear_message(content, message, tmp_path, capsys):
    bad = tmp_path / "model.csv"
    bad.write_bytes(content)
    assert main(["zero-shot", "--model", str(bad), "--labels", "a,b", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "pop from empty list" not in err
    assert len(err.splitlines()) == 1 and err.endswith(".") and not err.endswith("..")


def test_an_unreadable_audio_file_is_reported_with_one_full_stop(tmp_path, capsys):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all.")
    csv = tmp_path / "pairs.csv"
    csv.write_text("audio_path,caption\nbad.wav,a tone\nbad.wav,another tone\n")
    assert main(["train", "--dataset", "csv", "--csv", str(csv), "--output",
                 str(tmp_path / "m.pt"), "--audio-encoder", "cnn10", "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.wav" in err and "could not be decoded" in err
    assert err.endswith(".") and ".." not in err
