"""SearchIndex and the chunked exact top-k: results, persistence, caching, FAISS, bad input."""

import json
import pathlib
import sys
import warnings
import zipfile

import numpy as np
import pytest
import soundfile as sf
from _search_helpers import SR, fit_tone_model, tone

from sklearn_ltm import LTMRetriever, SearchIndex
from sklearn_ltm import search as search_module
from sklearn_ltm.search import file_digest, model_identity, topk_nearest


def _brute(q, g, k):
    d = ((q[:, None, :].astype(np.float64) - g[None].astype(np.float64)) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


# ---------------------------------------------------------------------- topk_nearest
@pytest.mark.parametrize("chunk, qchunk", [(7, 3), (64, 256), (1000, 1)])
def test_topk_matches_brute_force(chunk, qchunk):
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(300, 5)), rng.normal(size=(20, 5))
    idx, dist = topk_nearest(q, g, 9, chunk_size=chunk, query_chunk_size=qchunk)
    ref_idx, ref_dist = _brute(q, g, 9)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_topk_caps_k_and_breaks_ties_by_row():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # all at distance 1 from the origin
    idx, dist = topk_nearest(np.zeros((1, 2)), g, 10, chunk_size=2)
    assert idx.tolist() == [[0, 1, 2]] and dist.shape == (1, 3)
    np.testing.assert_allclose(dist, 1.0)


def test_topk_holds_one_block_of_scores(monkeypatch):
    seen = []
    real = np.argpartition

    def spy(a, kth, axis=-1):
        seen.append(a.shape)
        return real(a, kth, axis=axis)

    monkeypatch.setattr(search_module.np, "argpartition", spy)
    rng = np.random.default_rng(1)
    g, q = rng.normal(size=(5000, 4)), rng.normal(size=(40, 4))
    idx, _ = topk_nearest(q, g, 5, chunk_size=512, query_chunk_size=16)
    monkeypatch.undo()
    np.testing.assert_array_equal(idx, _brute(q, g, 5)[0])
    assert seen and max(r * c for r, c in seen) <= 16 * 512  # never more than one block


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k=0"), ({"k": 2.5}, "k=2.5"), ({"k": 3, "chunk_size": 0}, "chunk_size=0"),
])
def test_topk_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        topk_nearest(np.zeros((1, 2)), np.zeros((3, 2)), **kwargs)


def test_topk_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="3 columns.*dimension 2"):
        topk_nearest(np.zeros((1, 3)), np.zeros((4, 2)), 1)


# ---------------------------------------------------------------------- feature-mode index
@pytest.fixture(scope="module")
def feature_model():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(120, 6))
    audio, text = Z @ rng.normal(size=(6, 10)), Z @ rng.normal(size=(6, 8))
    est = LTMRetriever(embedding_dim=6, max_epochs=15, batch_size=30, learning_rate=1e-2,
                       validation_fraction=0.0, random_state=0).fit(audio, text)
    return est, audio, text


def test_index_search_is_the_models_ranking(feature_model):
    est, audio, text = feature_model
    index = SearchIndex(est, chunk_size=17).add(audio[:50]).add(audio[50:])
    assert len(index) == 120 and index.dim == 6
    res = index.search(text[:10], k=4)
    ref_idx, ref_dist = _brute(est.embed_text(text[:10]), est.transform(audio), 4)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_allclose(res.distances, ref_dist, rtol=1e-6)
    assert res.sources[0, 0] == str(ref_idx[0, 0]) and np.isnan(res.start_s).all()
    # the estimator's retrieve ranks the same way
    idx, dist = est.retrieve(text[:10], audio, k=4)
    np.testing.assert_array_equal(idx, ref_idx)


def test_search_audio_and_retrieve_audio_to_audio(feature_model):
    est, audio, _ = feature_model
    index = SearchIndex(est).add(audio, ids=[f"clip{i}" for i in range(len(audio))])
    res = index.search_audio(audio[:5], k=3)
    assert res.indices[:, 0].tolist() == list(range(5))  # each clip finds itself first
    np.testing.assert_allclose(res.distances[:, 0], 0.0, atol=1e-9)
    assert res.hits(2)[0][0] == "clip2"
    idx, _ = est.retrieve(audio[:5], audio, k=3, direction="audio-to-audio")
    np.testing.assert_array_equal(idx, res.indices)


def test_k_larger_than_the_index_is_capped(feature_model):
    est, audio, text = feature_model
    res = SearchIndex(est).add(audio[:7]).search(text[:2], k=50)
    assert res.k == 7 and res.indices.shape == (2, 7)
    assert sorted(res.indices[0].tolist()) == list(range(7))


@pytest.mark.parametrize("call, exc, match", [
    (lambda i, t, a: i.search(t[:2], k=0), ValueError, "k=0"),
    (lambda i, t, a: i.search(["a dog"], k=3), TypeError, "fitted on text features"),
    (lambda i, t, a: i.search("a dog", k=3), TypeError, "single string"),
    (lambda i, t, a: i.search_audio(["dog.wav"], k=3), TypeError, "fitted on audio features"),
    (lambda i, t, a: i.search_audio(a[:2, :7], k=3), ValueError, "7 features per row.*10"),
    (lambda i, t, a: i.search(t[:2, :3], k=3), ValueError, "3 features"),
    (lambda i, t, a: i.search_vectors(np.zeros((1, 4)), k=3), ValueError, "dimension 6"),
])
def test_wrong_queries_are_refused(feature_model, tmp_path, monkeypatch, call, exc, match):
    est, audio, text = feature_model
    index = SearchIndex(est).add(audio)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        call(index, text, audio)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_empty_index_and_bad_options(feature_model):
    est, _, text = feature_model
    with pytest.raises(ValueError, match="empty"):
        SearchIndex(est).search(text[:1])
    with pytest.raises(ValueError, match="backend='annoy'"):
        SearchIndex(est, backend="annoy")
    with pytest.raises(ValueError, match="nprobe=0"):
        SearchIndex(est, nprobe=0)
    with pytest.raises(ValueError, match="hop_seconds=1.0 was given without window_seconds"):
        SearchIndex(est).add(np.zeros((2, 10)), hop_seconds=1.0)


# ---------------------------------------------------------------------- persistence
def test_save_load_round_trip(feature_model, tmp_path):
    est, audio, text = feature_model
    index = SearchIndex(est).add(audio)
    path = tmp_path / "index.npz"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporary left
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        header = json.loads(npz["header"].tobytes())
    assert header["model_id"] == model_identity(est) and header["n_items"] == 120
    again = SearchIndex.load(path, est)
    a, b = index.search(text[:6], k=5), again.search(text[:6], k=5)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.distances, b.distances)
    vectors_only = SearchIndex.load(path)
    with pytest.raises(ValueError, match="needs the retriever"):
        vectors_only.search(text[:1])
    np.testing.assert_array_equal(
        vectors_only.search_vectors(est.embed_text(text[:6]), k=5).indices, a.indices)


def test_identity_survives_save_and_load_of_the_model(feature_model, tmp_path):
    est = feature_model[0]
    est.save(tmp_path / "m.pt")
    assert model_identity(LTMRetriever.load(tmp_path / "m.pt")) == model_identity(est)


def test_truncated_tampered_and_foreign_files_are_refused(feature_model, tmp_path):
    est, audio, text = feature_model
    path = tmp_path / "index.npz"
    SearchIndex(est).add(audio).save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or damaged"):
        SearchIndex.load(truncated, est)
    # tampered: same header, one embedding changed, a valid zip all the same
    tampered = tmp_path / "tampered.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["embeddings"] = arrays["embeddings"].copy()
    arrays["embeddings"][3, 0] += 0.5
    np.savez(tampered, **arrays)
    with pytest.raises(ValueError, match="corrupt or was modified"):
        SearchIndex.load(tampered, est)
    other = LTMRetriever(embedding_dim=6, max_epochs=2, batch_size=30,
                         validation_fraction=0.0, random_state=5).fit(audio, text)
    with pytest.raises(ValueError, match="built with another model"):
        SearchIndex.load(path, other)
    not_index = tmp_path / "plain.npz"
    np.savez(not_index, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a readable sklearn-ltm search index"):
        SearchIndex.load(not_index, est)
    with pytest.raises(ValueError, match="does not exist"):
        SearchIndex.load(tmp_path / "missing.npz", est)
    assert zipfile.is_zipfile(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # nothing written by the refusals
        "index.npz", "plain.npz", "tampered.npz", "truncated.npz"]


# ---------------------------------------------------------------------- files and the cache
@pytest.fixture(scope="module")
def tone_model():
    return fit_tone_model()


@pytest.fixture()
def tone_files(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    paths = []
    for i, f in enumerate([250, 1000, 2000, 3200, 260, 1010, 2020]):
        p = folder / f"c{i}.wav"
        sf.write(p, tone(f, seed=i), SR)
        paths.append(str(p))
    return paths


def test_files_are_embedded_once_and_cached_by_content(tone_model, tone_files, tmp_path,
                                                        monkeypatch):
    cache = tmp_path / "cache"
    first = SearchIndex(tone_model, cache_dir=cache, batch_size=3).add(tone_files)
    np.testing.assert_allclose(first.embeddings_, tone_model.transform(tone_files), atol=1e-5)
    assert first.sources_.tolist() == tone_files
    assert first.keys().tolist() == [file_digest(p) for p in tone_files]
    shards = sorted(cache.rglob("shard-*.npz"))
    assert len(shards) == 3  # 7 files in batches of 3, each batch saved when done

    def no_embedding(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(tone_model, "transform", no_embedding)
    again = SearchIndex(tone_model, cache_dir=cache).add(tone_files)
    np.testing.assert_array_equal(again.embeddings_, first.embeddings_)


class _Stopped(BaseException):
    pass


def test_an_interrupted_add_resumes_from_the_cache(tone_model, tone_files, tmp_path,
                                                   monkeypatch):
    cache = tmp_path / "cache"
    calls, resumed = [], False
    real = tone_model.transform

    def flaky(X, **kwargs):
        calls.append(len(X))
        if len(calls) == 2 and not resumed:
            raise _Stopped  # the run dies in its second batch (a crash, ^C, a power cut)
        return real(X, **kwargs)

    monkeypatch.setattr(tone_model, "transform", flaky)
    with pytest.raises(_Stopped):
        SearchIndex(tone_model, cache_dir=cache, batch_size=3).add(tone_files)
    calls.clear()
    resumed = True
    index = SearchIndex(tone_model, cache_dir=cache, batch_size=3).add(tone_files)
    assert sum(calls) == 4  # only the 4 files not cached by the first run
    monkeypatch.undo()
    np.testing.assert_allclose(index.embeddings_, tone_model.transform(tone_files), atol=1e-5)


def test_bad_files_are_skipped_with_one_warning(tone_model, tone_files, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 10)
    files = [tone_files[0], str(empty), tone_files[1], str(garbage), str(tmp_path / "gone.wav")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = SearchIndex(tone_model, batch_size=4).add(files)
    mine = [w for w in caught if "skipped 3 of 5 audio files" in str(w.message)]
    assert len(mine) == 1
    assert index.n_skipped_ == 3 and index.sources_.tolist() == tone_files[:2]


def test_search_over_files_finds_the_matching_tone(tone_model, tone_files):
    index = SearchIndex(tone_model).add(tone_files)
    res = index.search(["a low hum", "a high squeal"], k=2)
    assert {res.sources[0, 0], res.sources[0, 1]} == {tone_files[0], tone_files[4]}
    assert res.sources[1, 0] == tone_files[3]
    with pytest.raises(TypeError, match="not caption strings"):
        index.search(np.zeros((1, 4)), k=1)
    with pytest.raises(TypeError, match="single path"):
        index.search_audio(tone_files[0], k=1)


# ---------------------------------------------------------------------- FAISS
def test_faiss_missing_raises_import_error_naming_the_extra(feature_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now fails
    with pytest.raises(ImportError, match=r"sklearn-ltm\[faiss\]"):
        SearchIndex(feature_model[0], backend="faiss")


def test_faiss_flat_ivf_hnsw_agree_with_exact(feature_model, tmp_path):
    pytest.importorskip("faiss")
    est, audio, text = feature_model
    exact = SearchIndex(est).add(audio).search(text[:20], k=5)
    flat = SearchIndex(est, backend="faiss", factory="Flat").add(audio)
    np.testing.assert_array_equal(flat.search(text[:20], k=5).indices, exact.indices)
    for factory in ("IVF4,Flat", "HNSW8"):
        index = SearchIndex(est, backend="faiss", factory=factory, nprobe=4).add(audio)
        res = index.search(text[:20], k=5)
        recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(res.indices, exact.indices)])
        assert recall >= 0.95, (factory, recall)
        path = tmp_path / f"{factory}.npz"
        index.save(path)
        loaded = SearchIndex.load(path, est)
        assert loaded.backend == "faiss"
        np.testing.assert_array_equal(loaded.search(text[:20], k=5).indices, res.indices)


def test_faiss_rejects_a_bad_factory_string(feature_model, tmp_path, monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"factory='IVFx,Flat' is not a FAISS.*FAISS says: \S+"):
        SearchIndex(feature_model[0], backend="faiss", factory="IVFx,Flat")
    assert list(tmp_path.iterdir()) == []


def test_faiss_ivf_needs_enough_vectors(feature_model):
    pytest.importorskip("faiss")
    est, audio, text = feature_model
    index = SearchIndex(est, backend="faiss", factory="IVF256,Flat").add(audio)
    with pytest.raises(ValueError, match="256 IVF lists.*only 120 vectors"):
        index.search(text[:1])


# ---------------------------------------------------------------------- the benchmark script
def test_bench_search_tiny_run(tmp_path):
    pytest.importorskip("faiss")
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_search

    assert bench_search.main(["--sizes", "3000", "--n-queries", "16", "--batch1-queries", "2",
                              "--chunk-size", "500", "--hnsw-max-n", "3000",
                              "--results-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "search.json").read_text())
    rows = {r["method"]: r for r in payload["results"]}
    assert rows["exact (chunked top-k)"]["recall@10"] == 1.0
    assert rows["faiss Flat"]["recall@10"] == 1.0
    assert rows["dense matrix + full sort (old retrieve)"]["recall@10"] == 1.0
    assert any(m.startswith("faiss IVF") for m in rows) and "faiss HNSW32 efSearch=64" in rows
    # the exact search's temporaries stay within a few blocks of 16 x 500 scores
    assert rows["exact (chunked top-k)"]["search_peak_mb"] < 2.0
    assert "| 3,000 | exact (chunked top-k) |" in (tmp_path / "search.md").read_text()


def test_cache_dir_that_is_a_file_is_refused_before_any_work(tone_model, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("x")
    for cache in (blocker, blocker / "deeper"):
        with pytest.raises(ValueError, match="a file, not a folder"):
            SearchIndex(tone_model, cache_dir=cache)
    assert blocker.read_text() == "x"
    with pytest.raises(TypeError, match="cache_dir=3"):
        SearchIndex(tone_model, cache_dir=3)
    assert SearchIndex(tone_model, cache_dir="~/x").cache_dir == pathlib.Path.home() / "x"


def test_unwritable_cache_warns_once_and_embeds_everything(tone_model, tone_files, tmp_path,
                                                           monkeypatch):
    calls = []

    def refuse(folder, entries):
        calls.append(len(entries))
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(SearchIndex, "_write_shard", staticmethod(refuse))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = SearchIndex(tone_model, cache_dir=tmp_path / "c", batch_size=3).add(tone_files)
    mine = [w for w in caught if "cannot be written" in str(w.message)]
    assert len(mine) == 1 and len(calls) == 1  # 3 batches, one failed write, no retries
    assert index.sources_.tolist() == tone_files
    np.testing.assert_allclose(index.embeddings_, tone_model.transform(tone_files), atol=1e-5)
