"""The search and export commands: index files, several queries, audio queries, windows,
JSON output, reuse, and the user mistakes (one line, exit 2, nothing written)."""

import json

import numpy as np
import pytest
import soundfile as sf
from _search_helpers import PITCHES, SR, fit_tone_model, tone

from sklearn_ltm.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    clips = root / "clips"
    clips.mkdir()
    for i, (name, freq) in enumerate(PITCHES.items()):
        for j in range(2):
            sf.write(clips / f"{name.replace(' ', '_')}_{j}.wav", tone(freq * (1 + 0.01 * j),
                                                                         seed=10 * i + j), SR)
    model = root / "model.pt"
    fit_tone_model().save(model)
    return root, clips, model


@pytest.fixture(autouse=True)
def _load_with_module(monkeypatch):
    """The tone model has a user audio module: the CLI loads it with that module passed in."""
    from _search_helpers import BandEnergy

    from sklearn_ltm import LTMRetriever, cli

    monkeypatch.setattr(cli, "_load_model",
                        lambda path: LTMRetriever.load(path, audio_encoder=BandEnergy()))


def _hits(out):
    return [ln.split() for ln in out.splitlines() if ln[:3].strip().isdigit()]


def test_index_is_built_then_reused(setup, tmp_path, capsys):
    root, clips, model = setup
    index = tmp_path / "clips.idx"
    argv = ["search", "--model", str(model), "--audio-dir", str(clips), "--index", str(index),
            "--query", "a whistle", "--query", "a high squeal", "-k", "2",
            "--cache", str(tmp_path / "cache"), "--verbose", "0"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert index.is_file()
    assert "top 2 clips for 'a whistle':" in first and "top 2 clips for 'a high squeal':" in first
    hits = _hits(first)
    assert len(hits) == 4
    assert {h[2].rsplit("/", 1)[1] for h in hits[:2]} == {"a_whistle_0.wav", "a_whistle_1.wav"}
    mtime = index.stat().st_mtime_ns
    assert main(argv) == 0  # same folder, same model: the index file is reused as it is
    assert capsys.readouterr().out == first and index.stat().st_mtime_ns == mtime
    # without --audio-dir the index alone answers
    assert main(["search", "--model", str(model), "--index", str(index), "--query",
                 "a whistle", "-k", "2"]) == 0
    assert _hits(capsys.readouterr().out) == hits[:2]
    # a changed folder is noticed: the index is rebuilt
    sf.write(clips / "new.wav", tone(1000, seed=99), SR)
    try:
        assert main(argv) == 0
        capsys.readouterr()
        assert index.stat().st_mtime_ns != mtime
    finally:
        (clips / "new.wav").unlink()


def test_queries_file_audio_query_and_json(setup, tmp_path, capsys):
    root, clips, model = setup
    queries = tmp_path / "q.txt"
    queries.write_text("a low hum\n\na beep\n")
    target = clips / "a_beep_0.wav"
    assert main(["search", "--model", str(model), "--audio-dir", str(clips),
                 "--queries-file", str(queries), "--audio-query", str(target), "-k", "3",
                 "--format", "json", "--cache", str(tmp_path / "c"), "--verbose", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in out] == ["text", "text", "audio"]
    assert [r["query"] for r in out[:2]] == ["a low hum", "a beep"]
    assert all(len(r["hits"]) == 3 for r in out)
    assert out[2]["hits"][0]["source"] == str(target)  # a clip is nearest to itself
    assert out[2]["hits"][0]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert "a_low_hum" in out[0]["hits"][0]["source"]
    assert out[0]["hits"][0]["start_s"] is None


def test_windows_give_times(setup, tmp_path, capsys):
    root, _, model = setup
    long = tmp_path / "long"
    long.mkdir()
    rec = np.concatenate([tone(PITCHES[c], seed=i) for i, c in
                          enumerate(["a beep", "a low hum", "a high squeal"])])
    sf.write(long / "street.wav", rec, SR, subtype="FLOAT")
    assert main(["search", "--model", str(model), "--audio-dir", str(long), "--query",
                 "a high squeal", "-k", "1", "--window-seconds", "0.5", "--hop-seconds", "0.25",
                 "--cache", str(tmp_path / "c"), "--verbose", "0"]) == 0
    (hit,) = _hits(capsys.readouterr().out)
    assert hit[2].endswith("street.wav") and hit[3] == "1.00-1.50s"
    # an index of windows is reused for the same windows only
    index = tmp_path / "long.idx"
    argv = ["search", "--model", str(model), "--audio-dir", str(long), "--index", str(index),
            "--query", "a beep", "-k", "1", "--cache", str(tmp_path / "c"), "--verbose", "0"]
    assert main(argv + ["--window-seconds", "0.5", "--hop-seconds", "0.25"]) == 0
    mtime = index.stat().st_mtime_ns
    assert main(argv + ["--window-seconds", "0.5", "--hop-seconds", "0.25"]) == 0
    assert index.stat().st_mtime_ns == mtime
    assert main(argv + ["--window-seconds", "0.5"]) == 0  # another hop: rebuilt
    assert index.stat().st_mtime_ns != mtime
    mtime = index.stat().st_mtime_ns
    assert main(argv) == 0  # whole clips: rebuilt
    assert index.stat().st_mtime_ns != mtime
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].endswith("street.wav")  # no times for a whole clip


def test_faiss_backend(setup, tmp_path, capsys):
    pytest.importorskip("faiss")
    root, clips, model = setup
    base = ["search", "--model", str(model), "--audio-dir", str(clips), "--query", "a beep",
            "-k", "3", "--cache", str(tmp_path / "c"), "--verbose", "0"]
    assert main(base) == 0
    exact = _hits(capsys.readouterr().out)
    assert main(base + ["--backend", "faiss", "--factory", "HNSW8"]) == 0
    assert [h[2] for h in _hits(capsys.readouterr().out)] == [h[2] for h in exact]
    index = tmp_path / "bad.idx"
    assert main(base + ["--backend", "faiss", "--factory", "Nonsense9", "--index",
                        str(index)]) == 2
    err = capsys.readouterr().err
    assert "factory='Nonsense9' is not a FAISS index factory string" in err
    assert len(err.strip().splitlines()) == 1 and not index.exists()


def test_export_command(setup, tmp_path, capsys):
    import torch

    root, clips, model = setup
    assert main(["export", "--model", str(model), "--output", str(tmp_path / "out" / "m"),
                 "--towers", "audio"]) == 0
    out = capsys.readouterr().out
    assert "audio:" in out and "manifest:" in out and "text:" not in out
    audio = torch.jit.load(str(tmp_path / "out" / "m.audio.pt"))
    from _search_helpers import BandEnergy

    from sklearn_ltm import LTMRetriever

    est = LTMRetriever.load(model, audio_encoder=BandEnergy())
    wave = tone(1000, seed=3)[None]
    np.testing.assert_allclose(audio(torch.from_numpy(wave)).detach().numpy(),
                               est.transform(wave), atol=1e-5)


@pytest.mark.parametrize("extra, message", [
    ([], "give --query TEXT"),
    (["--query", "x", "--hop-seconds", "1"], "--hop-seconds needs --window-seconds"),
    (["--query", "x", "--factory", "HNSW8"], "--factory HNSW8 needs --backend faiss"),
    (["--audio-query", "nope.wav"], "--audio-query nope.wav does not exist"),
    (["--query", "x", "--index", "none.idx"], "--index none.idx does not exist yet"),
    (["--query", "x", "--audio-dir", "CLIPS", "--window-seconds", "0.01"],
     "window_seconds=0.01 is shorter than the audio encoder's receptive field"),
    (["--query", "x", "--audio-dir", "CLIPS", "--window-seconds", "0.5", "--hop-seconds", "0"],
     "hop_seconds=0.0 is not accepted"),
])
def test_search_mistakes(setup, tmp_path, capsys, monkeypatch, extra, message):
    root, clips, model = setup
    monkeypatch.chdir(tmp_path)
    extra = [str(clips) if e == "CLIPS" else e for e in extra]
    before = sorted(p.name for p in clips.iterdir())
    assert main(["search", "--model", str(model), "--cache", str(tmp_path / "c")] + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [] and sorted(p.name for p in clips.iterdir()) == before


def test_index_of_another_model_is_refused(setup, tmp_path, capsys):
    root, clips, model = setup
    index = tmp_path / "clips.idx"
    argv = ["search", "--model", str(model), "--audio-dir", str(clips), "--index", str(index),
            "--query", "a beep", "--cache", str(tmp_path / "c"), "--verbose", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    other = tmp_path / "other.pt"
    fit_tone_model(random_state=3, max_epochs=2).save(other)
    argv[2] = str(other)
    mtime = index.stat().st_mtime_ns
    assert main(argv) == 2
    assert "built with another model" in capsys.readouterr().err
    assert index.stat().st_mtime_ns == mtime


def test_folder_with_a_directory_named_like_audio_and_a_corrupt_file(setup, tmp_path, capsys):
    """A directory named x.wav is not a recording (left out silently); a corrupt file is
    skipped with one warning line, and the search answers from the rest."""
    root, clips, model = setup
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in clips.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "x.wav").mkdir()
    (folder / "x.wav" / "inner.txt").write_text("not audio")
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file" * 4)
    assert main(["search", "--model", str(model), "--audio-dir", str(folder), "--query",
                 "a whistle", "-k", "20", "--cache", str(tmp_path / "c"), "--verbose", "0"]) == 0
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err) == 1 and "warning: skipped 1 of" in err[0] and "broken.wav" in err[0]
    assert "x.wav" not in captured.err
    sources = {h[2].rsplit("/", 1)[1] for h in _hits(captured.out)}
    assert sources == {f.name for f in clips.iterdir()}  # every good clip, nothing else


def test_folder_with_only_a_directory_named_like_audio(tmp_path, setup, capsys):
    root, clips, model = setup
    (tmp_path / "d" / "x.wav").mkdir(parents=True)
    assert main(["search", "--model", str(model), "--audio-dir", str(tmp_path / "d"),
                 "--query", "a beep", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no audio files" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["file", "inside-file"])
def test_cache_that_is_a_file_is_one_line_error(setup, tmp_path, capsys, where):
    root, clips, model = setup
    blocker = tmp_path / "cache"
    blocker.write_text("I am a file")
    cache = blocker if where == "file" else blocker / "sub"
    index = tmp_path / "clips.idx"
    assert main(["search", "--model", str(model), "--audio-dir", str(clips), "--index",
                 str(index), "--query", "a beep", "--cache", str(cache), "--verbose", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"cache_dir={str(cache)!r}" in err and "a file, not a folder" in err
    assert not index.exists() and blocker.read_text() == "I am a file"


def test_unwritable_cache_warns_once_and_searches(setup, tmp_path, capsys, monkeypatch):
    from sklearn_ltm.search import SearchIndex

    root, clips, model = setup
    calls = []

    def refuse(folder, entries):
        calls.append(len(entries))
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(SearchIndex, "_write_shard", staticmethod(refuse))
    assert main(["search", "--model", str(model), "--audio-dir", str(clips), "--query",
                 "a whistle", "-k", "2", "--cache", str(tmp_path / "ro"), "--verbose", "0"]) == 0
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err) == 1 and "cannot be written (Permission denied)" in err[0]
    assert len(calls) == 1  # no further attempts after the first failure
    assert {h[2].rsplit("/", 1)[1] for h in _hits(captured.out)} == \
        {"a_whistle_0.wav", "a_whistle_1.wav"}


# ------------------------------------------------------- cached text search (query towers)
def _distances(out):
    return [float(h[1]) for h in _hits(out)]


def _build_then_search(setup, tmp_path, capsys, *extra):
    root, clips, model = setup
    index, cache = tmp_path / "clips.idx", tmp_path / "cache"
    argv = ["search", "--model", str(model), "--audio-dir", str(clips), "--index", str(index),
            "--query", "a whistle", "--query", "a low hum", "-k", "3", "--cache", str(cache),
            "--verbose", "0", *extra]
    assert main(argv) == 0
    return argv, capsys.readouterr().out, cache


def test_cached_text_search_answers_without_the_estimator(setup, tmp_path, capsys,
                                                          monkeypatch):
    from sklearn_ltm import LTMRetriever, cli

    argv, first, cache = _build_then_search(setup, tmp_path, capsys)
    towers = list((cache / "query-towers").iterdir())
    assert len(towers) == 1 and (towers[0] / "identity.json").is_file()
    assert not [p for p in (cache / "query-towers").iterdir() if p.name.startswith(".tmp")]

    def refuse(*args, **kwargs):
        raise AssertionError("the estimator was loaded")

    monkeypatch.setattr(cli, "_load_model", refuse)
    monkeypatch.setattr(LTMRetriever, "load", refuse)
    assert main(argv) == 0  # the index and the cached text tower answer alone
    again = capsys.readouterr().out
    assert [h[2] for h in _hits(again)] == [h[2] for h in _hits(first)]
    np.testing.assert_allclose(_distances(again), _distances(first), rtol=0, atol=2e-4)
    assert [ln for ln in again.splitlines() if ln.startswith("top")] == [
        ln for ln in first.splitlines() if ln.startswith("top")]


@pytest.mark.parametrize("change", ["other-model-tower", "audio-query", "folder-changed",
                                    "other-model-file"])
def test_cached_text_search_falls_back_to_the_usual_path(setup, tmp_path, capsys, monkeypatch,
                                                         change):
    from sklearn_ltm import cli

    argv, first, cache = _build_then_search(setup, tmp_path, capsys)
    root, clips, model = setup
    loaded = []
    usual = cli._load_model
    monkeypatch.setattr(cli, "_load_model", lambda path: loaded.append(path) or usual(path))
    extra_file = None
    if change == "other-model-tower":  # a tower whose model is not the index's
        identity = next((cache / "query-towers").iterdir()) / "identity.json"
        meta = json.loads(identity.read_text())
        identity.write_text(json.dumps({**meta, "model_id": "0" * 64}))
    elif change == "audio-query":
        argv = [*argv, "--audio-query", str(clips / "a_beep_0.wav")]
    elif change == "other-model-file":  # the index's tower exists, but not for this file
        other = tmp_path / "other.pt"
        fit_tone_model(random_state=1).save(other)
        argv = [a if a != str(model) else str(other) for a in argv]
        assert main(argv) == 2  # the usual path: the index was built with another model
        assert loaded == [other]
        assert "built with another model" in capsys.readouterr().err
        return
    else:
        extra_file = clips / "extra.wav"
        sf.write(extra_file, tone(1000, seed=98), SR)
    try:
        assert main(argv) == 0
    finally:
        if extra_file is not None:
            extra_file.unlink()
    out = capsys.readouterr().out
    assert loaded == [model]  # the estimator answered
    assert "top 3 clips for 'a whistle':" in out


def test_cached_text_search_imports_neither_sklearn_nor_torchaudio(setup, tmp_path, capsys):
    import os
    import subprocess
    import sys

    argv, first, _ = _build_then_search(setup, tmp_path, capsys, "--format", "json")
    code = ("import sys, json; from sklearn_ltm.cli import main; "
            f"rc = main({argv!r}); "
            "print(json.dumps([rc, sorted(m for m in ('sklearn', 'torchaudio', "
            "'sklearn_ltm.retriever') if m in sys.modules)]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    *printed, status = proc.stdout.strip().splitlines()
    assert json.loads(status) == [0, []]
    hits = json.loads("\n".join(printed))
    assert [h["source"] for q in hits for h in q["hits"]] == [
        h["source"] for q in json.loads(first) for h in q["hits"]]


def test_a_tower_that_cannot_be_cached_does_not_fail_the_search(setup, tmp_path, capsys,
                                                                monkeypatch):
    from sklearn_ltm import _query_towers

    def broken(*args, **kwargs):
        raise TypeError("cannot trace this encoder")

    monkeypatch.setattr(_query_towers, "save_tower", broken)
    root, clips, model = setup
    assert main(["search", "--model", str(model), "--audio-dir", str(clips), "--index",
                 str(tmp_path / "i.idx"), "--query", "a whistle", "-k", "2", "--cache",
                 str(tmp_path / "c"), "--verbose", "1"]) == 0
    captured = capsys.readouterr()
    assert "top 2 clips for 'a whistle':" in captured.out
    assert "query tower not cached (cannot trace this encoder)" in captured.err
    assert not (tmp_path / "c" / "query-towers").exists()
