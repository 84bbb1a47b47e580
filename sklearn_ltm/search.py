"""Search at scale: a persistent index of audio embeddings, exact or FAISS, text or audio queries.

:meth:`~sklearn_ltm.LTMRetriever.transform` maps audio by the learned metric's ``L``, so the
learned distance is the Euclidean distance between embeddings and any Euclidean index ranks
exactly as the model does. :class:`SearchIndex` uses that: it embeds audio once (files
through a resumable on-disk cache keyed by content and model), keeps the vectors, and answers
many text or audio queries at once with

- ``backend="exact"``: :func:`topk_nearest`, a chunked top-k that holds one block of scores
  at a time and selects with ``argpartition`` instead of sorting;
- ``backend="faiss"``: any FAISS index factory string (``"Flat"``, ``"IVF1024,Flat"``,
  ``"HNSW32"``), with the optional ``faiss-cpu`` package.

Long recordings can be indexed window by window (``add(..., window_seconds=...)``): the hits
then say where in a recording the sound is, ``(file, start_s, end_s, distance)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._utils import atomic_write

__all__ = ["SearchIndex", "SearchResults", "topk_nearest", "model_identity", "file_digest",
           "BACKENDS"]

#: Accepted ``backend`` values of :class:`SearchIndex`.
BACKENDS = ("exact", "faiss")
_FORMAT = "sklearn-ltm-search-index"
_FORMAT_VERSION = 1
_FAISS_HINT = "install the optional extra with pip install 'sklearn-ltm[faiss]' (faiss-cpu)"


# ---------------------------------------------------------------------- small checks
def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r} is not accepted; give an int >= {low}.")
    return int(value)


def _as_vectors(x, name, dim=None, check_finite=True) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} has shape {arr.shape} and dtype {arr.dtype}; give a 2-D float "
                         "array (n, dim).")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} columns; this index holds vectors of "
                         f"dimension {dim}.")
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float32)


# ---------------------------------------------------------------------- exact top-k
def topk_nearest(queries, gallery, k, *, chunk_size=16384, query_chunk_size=256,
                 gallery_sq_norms=None):
    """The ``k`` gallery rows nearest each query in squared Euclidean distance, chunked.

    The gallery is scanned in blocks of ``chunk_size`` rows and the queries in blocks of
    ``query_chunk_size``: at most ``query_chunk_size x chunk_size`` scores exist at any time
    (never the whole query-by-gallery matrix). Each block keeps its ``k`` best with
    ``argpartition`` (linear time) and merges them with the best so far; only the final
    ``k`` are sorted. Distances of the winners are recomputed directly in float64, so they
    are exact, not the rounded ``|q|^2 - 2 q.g + |g|^2`` used to select them.

    Parameters
    ----------
    queries : array-like of shape (n_queries, dim)
    gallery : array-like of shape (n_gallery, dim)
    k : int
        Neighbours per query, >= 1; capped at ``n_gallery``.
    chunk_size : int, default=16384
        Gallery rows per block.
    query_chunk_size : int, default=256
        Queries per block.
    gallery_sq_norms : ndarray of shape (n_gallery,) or None
        Precomputed ``(gallery ** 2).sum(1)`` (an index keeps them).

    Returns
    -------
    indices : ndarray of shape (n_queries, min(k, n_gallery)), int64
        Gallery rows, nearest first (ties: lower row first).
    distances : ndarray of the same shape, float64
        Squared Euclidean distances, ascending.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    >>> idx, dist = topk_nearest(np.array([[0.9, 0.0]]), g, 2, chunk_size=2)
    >>> idx, dist.round(2)
    (array([[1, 0]]), array([[0.01, 0.81]]))
    """
    k = _check_int(k, "k", 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    query_chunk_size = _check_int(query_chunk_size, "query_chunk_size", 1)
    gallery = _as_vectors(gallery, "gallery", check_finite=False)
    for g0 in range(0, len(gallery), chunk_size):  # block by block: no gallery-sized mask
        if not np.isfinite(gallery[g0:g0 + chunk_size]).all():
            raise ValueError("gallery contains NaN or infinity.")
    queries = _as_vectors(queries, "queries", gallery.shape[1])
    if len(gallery) == 0:
        raise ValueError("the gallery is empty: add vectors before searching.")
    return _topk_exact(queries, gallery, k, chunk_size, query_chunk_size, gallery_sq_norms)


def _topk_exact(queries, gallery, k, chunk_size, query_chunk_size, gallery_sq_norms=None):
    """:func:`topk_nearest` on validated arrays (the index validates once, at ``add``)."""
    n, nq = len(gallery), len(queries)
    k = min(k, n)
    dtype = np.result_type(queries.dtype, gallery.dtype, np.float32)
    if gallery_sq_norms is None:
        gallery_sq_norms = np.einsum("ij,ij->i", gallery, gallery, dtype=dtype)
    out_idx = np.empty((nq, k), dtype=np.int64)
    out_dist = np.empty((nq, k), dtype=np.float64)
    for q0 in range(0, nq, query_chunk_size):
        q = np.asarray(queries[q0:q0 + query_chunk_size], dtype=dtype)
        best_s = best_i = None
        for g0 in range(0, n, chunk_size):
            g = gallery[g0:g0 + chunk_size]
            scores = q @ np.asarray(g, dtype=dtype).T  # the one block of scores
            scores *= -2.0
            scores += gallery_sq_norms[g0:g0 + len(g)][None, :]
            kk = min(k, scores.shape[1])
            if kk < scores.shape[1]:
                part = np.argpartition(scores, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(kk), (len(q), kk))
            cand_s = np.take_along_axis(scores, part, axis=1)
            cand_i = part + g0
            del scores
            if best_s is None:
                best_s, best_i = cand_s, cand_i
            else:
                best_s = np.concatenate([best_s, cand_s], axis=1)
                best_i = np.concatenate([best_i, cand_i], axis=1)
                if best_s.shape[1] > k:
                    keep = np.argpartition(best_s, k - 1, axis=1)[:, :k]
                    best_s = np.take_along_axis(best_s, keep, axis=1)
                    best_i = np.take_along_axis(best_i, keep, axis=1)
        diff = q.astype(np.float64)[:, None, :] - gallery[best_i].astype(np.float64)
        dist = np.einsum("qkd,qkd->qk", diff, diff)
        order = np.lexsort((best_i, dist), axis=-1)
        out_idx[q0:q0 + len(q)] = np.take_along_axis(best_i, order, axis=1)
        out_dist[q0:q0 + len(q)] = np.take_along_axis(dist, order, axis=1)
    return out_idx, out_dist


def _check_cache_dir(cache_dir) -> Path:
    """``cache_dir`` as a Path; a ValueError when it (or a parent) is a file, not a folder."""
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir={cache_dir!r} is not accepted; give a folder path or None.")
    path = Path(cache_dir).expanduser()
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is" if folder == path else f"is inside {str(folder)!r}, which is"
                raise ValueError(f"cache_dir={str(path)!r} {what} a file, not a folder; give a "
                                 "folder for the embedding cache (created when absent).")
            break
    return path


# ---------------------------------------------------------------------- identities
def file_digest(path) -> str:
    """SHA-256 of a file's content (hex), read in 1 MiB blocks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> file_digest(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(retriever) -> str:
    """A fingerprint of a fitted retriever: equal exactly when it embeds the same way.

    SHA-256 over every tensor of its ``state_dict`` (names, dtypes, shapes, values), its
    encoders' configurations (a scratch text encoder's vocabulary included), the input
    kinds and the encoder components' settings that change embeddings (the audio
    encoder's ``sample_rate`` and ``max_seconds``, the text encoder's ``max_length`` and
    ``pooling``). A saved and reloaded model
    keeps its identity; a model trained once more does not.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 4))
    >>> a = LTMRetriever(embedding_dim=4, max_epochs=1, batch_size=10,
    ...                  validation_fraction=0.0, random_state=0).fit(X, y)
    >>> b = LTMRetriever(embedding_dim=4, max_epochs=1, batch_size=10,
    ...                  validation_fraction=0.0, random_state=1).fit(X, y)
    >>> model_identity(a) == model_identity(a), model_identity(a) == model_identity(b)
    (True, False)
    """
    model = getattr(retriever, "model_", None)
    if model is None:
        raise ValueError(f"{type(retriever).__name__} is not fitted: fit it (or load a saved "
                         "model) before building a search index.")
    h = hashlib.sha256()
    meta = {
        "audio_input_kind": getattr(retriever, "audio_input_kind_", None),
        "text_input_kind": getattr(retriever, "text_input_kind_", None),
        "n_features_in": getattr(retriever, "n_features_in_", None),
        "settings": {side: _embedding_settings(getattr(retriever, f"{side}_", None), keys)
                     for side, keys in _EMBEDDING_SETTINGS.items()},
    }
    for side in ("audio_encoder", "text_encoder"):
        get_config = getattr(getattr(model, side, None), "get_config", None)
        meta[side] = get_config() if callable(get_config) else None
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


#: Settings of the fitted encoder components (``audio_encoder_``, ``text_encoder_``) that
#: change the embeddings without changing a weight.
_EMBEDDING_SETTINGS = {"audio_encoder": ("sample_rate", "max_seconds"),
                       "text_encoder": ("max_length", "pooling")}


def _embedding_settings(component, keys):
    if component is None:
        return None
    return {"component": type(component).__name__,
            **{key: getattr(component, key, None) for key in keys}}


def _byte_dtype():
    import torch

    return torch.uint8


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class SearchResults:
    """The hits of a batch of queries, best first.

    Attributes
    ----------
    indices : ndarray of shape (n_queries, k), int64
        Rows of the index.
    distances : ndarray of shape (n_queries, k), float64
        Learned squared distances, ascending along each row.
    sources : ndarray of shape (n_queries, k), str
        The item of each hit: its file path, or the id given to ``add``.
    start_s, end_s : ndarray of shape (n_queries, k), float64
        Window bounds in seconds of windowed items; NaN for whole clips.

    Examples
    --------
    >>> import numpy as np
    >>> index = SearchIndex().add_vectors([[0.0, 0.0], [1.0, 0.0]], ids=["quiet", "loud"],
    ...                                   start_s=[0.0, 2.0], end_s=[1.0, 3.0])
    >>> res = index.search_vectors([[0.9, 0.0], [0.0, 0.1]], k=5)
    >>> res.k, res.hits(0)[0]
    (2, ('loud', 2.0, 3.0, 0.01...))
    >>> res.to_records(["q1", "q2"])[1]["hits"][0]["source"]
    'quiet'
    """

    indices: np.ndarray
    distances: np.ndarray
    sources: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray

    @property
    def k(self) -> int:
        """Hits per query (the requested ``k`` capped at the index size)."""
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return len(self.indices)

    def hits(self, query: int = 0):
        """``[(source, start_s, end_s, distance), ...]`` of one query, best first.

        ``start_s`` and ``end_s`` are None for whole clips.
        """
        out = []
        for j in range(self.k):
            start, end = self.start_s[query, j], self.end_s[query, j]
            out.append((str(self.sources[query, j]),
                        None if math.isnan(start) else float(start),
                        None if math.isnan(end) else float(end),
                        float(self.distances[query, j])))
        return out

    def to_records(self, queries=None):
        """JSON-ready: one dict per query with its ``hits`` (dicts of rank, source, ...)."""
        records = []
        for i in range(len(self)):
            hits = [{"rank": r + 1, "source": s, "start_s": a, "end_s": b, "distance": d,
                     "index": int(self.indices[i, r])}
                    for r, (s, a, b, d) in enumerate(self.hits(i))]
            rec = {"query": queries[i] if queries is not None else i, "hits": hits}
            records.append(rec)
        return records


# ---------------------------------------------------------------------- FAISS
def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(f"backend='faiss' needs the faiss package, which is not installed: "
                          f"{_FAISS_HINT}.") from exc
    return faiss


def _make_faiss_index(faiss, dim, factory):
    try:
        return faiss.index_factory(int(dim), factory, faiss.METRIC_L2)
    except Exception as exc:  # faiss raises RuntimeError with its own message
        message = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in message if line.strip())[:400]
        raise ValueError(f"factory={factory!r} is not a FAISS index factory string that FAISS "
                         f"accepts for dimension {dim} (e.g. 'Flat', 'IVF1024,Flat', "
                         f"'HNSW32'); FAISS says: {detail}") from exc


# ---------------------------------------------------------------------- the index
class SearchIndex:
    """A persistent index of audio embeddings answering text and audio queries.

    Build it from a fitted retriever, :meth:`add` audio in batches (file paths, waveforms
    or features, whichever the retriever takes; long recordings window by window), then
    :meth:`search` with many captions at once or :meth:`search_audio` with audio.
    :meth:`save` writes one file (atomically, no pickle, with a checksum and the model's
    identity); :meth:`load` refuses a file that is truncated, modified or was built with
    another model.

    Parameters
    ----------
    retriever : LTMRetriever or None
        Fitted. None only for an index that searches precomputed vectors
        (:meth:`search_vectors`), such as one loaded without its model.
    backend : {"exact", "faiss"}, default="exact"
        ``"exact"``: :func:`topk_nearest` (exact, memory bounded by one block of scores).
        ``"faiss"``: a FAISS index built from ``factory`` (needs ``faiss-cpu``: ``pip install
        'sklearn-ltm[faiss]'``).
    factory : str, default="Flat"
        FAISS index factory string (``"Flat"``, ``"IVF1024,Flat"``, ``"HNSW32"``,
        ``"IVF4096,PQ32"``, ...); trained on the added vectors when it needs training.
    nprobe : int, default=16
        IVF lists visited per query (more: better recall, slower). FAISS IVF indexes only.
    ef_search : int, default=128
        HNSW candidate list size per query (more: better recall, slower).
    train_size : int or None, default=None
        Vectors (a seeded random sample) that train an index that needs training (IVF, PQ);
        None: all of them (FAISS itself subsamples to 256 per IVF list).
    chunk_size : int, default=16384
        Gallery rows per block of the exact search.
    cache_dir : str, path-like or None, default=None
        Folder of the on-disk embedding cache of audio files (content hash + model identity);
        an interrupted :meth:`add` resumes from it. None: no cache. A path that is a file is
        refused (ValueError); a folder that cannot be written gives one warning, and the
        files are embedded without the cache.
    batch_size : int or None, default=None
        Files embedded per call of the retriever (None: its ``batch_size``); each batch is
        written to the cache as soon as it is done.
    verbose : int, default=0
        ``> 0``: a progress bar while embedding files.

    Attributes
    ----------
    model_id_ : str or None
        :func:`model_identity` of the retriever.
    embeddings_ : ndarray of shape (n_items, dim), float32
        The indexed vectors.
    sources_ : ndarray of shape (n_items,), str
        File path or id of each item.
    start_s_, end_s_ : ndarray of shape (n_items,), float64
        Window bounds of windowed items (NaN for whole clips).
    n_skipped_ : int
        Audio files left out so far because they could not be read.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 6))
    >>> audio, text = Z @ rng.normal(size=(6, 10)), Z @ rng.normal(size=(6, 8))
    >>> est = LTMRetriever(embedding_dim=6, max_epochs=8, batch_size=20,
    ...                    learning_rate=1e-2, validation_fraction=0.0,
    ...                    random_state=0).fit(audio, text)
    >>> index = SearchIndex(est).add(audio[:30]).add(audio[30:])
    >>> len(index)
    60
    >>> res = index.search(text[:5], k=3)
    >>> res.indices.shape, res.sources[0, 0] == str(res.indices[0, 0])
    ((5, 3), True)
    >>> float((res.indices[:, 0] == np.arange(5)).mean()) >= 0.8
    True
    """

    def __init__(self, retriever=None, *, backend="exact", factory="Flat", nprobe=16,
                 ef_search=128, train_size=None, chunk_size=16384, cache_dir=None,
                 batch_size=None, verbose=0):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not accepted; use one of {list(BACKENDS)}.")
        if not isinstance(factory, str) or not factory.strip():
            raise ValueError(f"factory={factory!r} is not accepted; give a FAISS index factory "
                             "string such as 'Flat', 'IVF1024,Flat' or 'HNSW32'.")
        self.nprobe = _check_int(nprobe, "nprobe", 1)
        self.ef_search = _check_int(ef_search, "ef_search", 1)
        self.train_size = None if train_size is None else _check_int(train_size, "train_size", 1)
        self.chunk_size = _check_int(chunk_size, "chunk_size", 1)
        if batch_size is not None:
            batch_size = _check_int(batch_size, "batch_size", 1)
        self.verbose = _check_int(verbose, "verbose", 0)
        if retriever is not None:
            missing = [m for m in ("transform", "embed_text") if not
                       callable(getattr(retriever, m, None))]
            if missing:
                raise TypeError(f"retriever {type(retriever).__name__} has no method "
                                f"{' or '.join(missing)}; give a fitted LTMRetriever.")
        self.retriever = retriever
        self.backend, self.factory = backend, factory
        self.cache_dir = None if cache_dir is None else _check_cache_dir(cache_dir)
        self.batch_size = batch_size
        self.model_id_ = None if retriever is None else model_identity(retriever)
        self._dim = None if retriever is None else self._embedding_dim(retriever)
        if backend == "faiss":
            faiss = _import_faiss()
            if self._dim is not None:
                _make_faiss_index(faiss, self._dim, factory)  # reject a bad string now
        self._parts = []  # (embeddings, sources, start_s, end_s, keys) per add
        self._faiss = None
        self._cat = None
        self.n_skipped_ = 0

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _embedding_dim(retriever):
        import torch

        metric = retriever.model_.metric
        param = next(metric.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            return int(metric.map(torch.zeros(1, metric.dim, device=device)).shape[1])

    def _require_retriever(self, what):
        if self.retriever is None:
            raise ValueError(f"{what} needs the retriever that built this index, and this index "
                             "has none (it holds vectors only): pass retriever= to "
                             "SearchIndex.load, or search embeddings with search_vectors.")

    def _joined(self):
        if self._cat is None:
            if not self._parts:
                raise ValueError("the index is empty: add audio before searching.")
            cols = list(zip(*self._parts))
            emb = np.concatenate(cols[0]).astype(np.float32, copy=False)
            self._cat = (emb, np.concatenate(cols[1]), np.concatenate(cols[2]),
                         np.concatenate(cols[3]), np.concatenate(cols[4]),
                         np.einsum("ij,ij->i", emb, emb))
        return self._cat

    @property
    def embeddings_(self):
        return self._joined()[0]

    @property
    def sources_(self):
        return self._joined()[1]

    @property
    def start_s_(self):
        return self._joined()[2]

    @property
    def end_s_(self):
        return self._joined()[3]

    @property
    def dim(self):
        """Dimension of the indexed vectors (None before the first :meth:`add`)."""
        return self._dim

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts)

    def __repr__(self) -> str:
        return (f"SearchIndex(n_items={len(self)}, dim={self._dim}, backend={self.backend!r}"
                + (f", factory={self.factory!r}" if self.backend == "faiss" else "") + ")")

    def _append(self, emb, sources, start, end, keys):
        emb = np.asarray(emb, dtype=np.float32)
        if len(emb) == 0:
            return
        if self._dim is None:
            self._dim = int(emb.shape[1])
        elif emb.shape[1] != self._dim:
            raise ValueError(f"vectors of dimension {emb.shape[1]} cannot join an index of "
                             f"dimension {self._dim}.")
        n = len(emb)
        self._parts.append((emb, np.asarray(sources, dtype=str).reshape(n),
                            np.asarray(start, dtype=np.float64).reshape(n),
                            np.asarray(end, dtype=np.float64).reshape(n),
                            np.asarray(keys, dtype=str).reshape(n)))
        self._cat = None
        self._faiss = None

    # ------------------------------------------------------------------ adding
    def add(self, audio, *, ids=None, window_seconds=None, hop_seconds=None):
        """Embed audio and add it to the index.

        Parameters
        ----------
        audio : sequence of path, or array-like
            Audio files, or waveforms / features as the retriever takes them (with
            ``window_seconds``: a sequence of 1-D waveforms of any lengths, or files).
        ids : sequence of str or None
            A name for each item of ``audio`` (default: the file path, or the item's row
            number in the index).
        window_seconds : float or None
            Index windows of this length instead of whole clips (the hits then carry
            ``start_s``/``end_s``).
        hop_seconds : float or None
            Step between windows, > 0 (None: ``window_seconds``).

        Returns
        -------
        self
        """
        self._require_retriever("add")
        if window_seconds is None and hop_seconds is not None:
            raise ValueError(f"hop_seconds={hop_seconds!r} was given without window_seconds; "
                             "give window_seconds too (or neither).")
        if window_seconds is not None:
            from .windows import check_window_options

            window_seconds, hop_seconds = check_window_options(
                self.retriever, window_seconds, hop_seconds)
        is_paths = _is_paths(audio)
        n_items = len(audio)
        if ids is not None:
            ids = [str(i) for i in ids]
            if len(ids) != n_items:
                raise ValueError(f"ids has {len(ids)} names for {n_items} items of audio.")
        if n_items == 0:
            raise ValueError("audio is empty; give at least one file path, waveform or row.")
        if is_paths:
            self._add_files([os.fspath(p) for p in audio], ids, window_seconds, hop_seconds)
            return self
        start = len(self)
        names = ids if ids is not None else [str(start + i) for i in range(n_items)]
        if window_seconds is None:
            emb = self._embed_arrays(audio)
            nan = np.full(len(emb), np.nan)
            self._append(emb, names, nan, nan, [""] * len(emb))
        else:
            from .windows import embed_windows

            win = embed_windows(self.retriever, audio, window_seconds=window_seconds,
                                hop_seconds=hop_seconds, batch_size=self.batch_size,
                                progress=self.verbose > 0)
            self._append(win.embeddings, np.asarray(names)[win.recording], win.start_s,
                         win.end_s, [""] * len(win))
        return self

    def add_vectors(self, embeddings, *, ids=None, start_s=None, end_s=None):
        """Add precomputed embeddings (rows in the learned space, e.g. from an exported tower).

        Parameters
        ----------
        embeddings : array-like of shape (n, dim)
        ids : sequence of str or None
            A name for each row (default: its row number in the index).
        start_s, end_s : array-like of shape (n,) or None
            Window bounds in seconds, for rows that are windows of recordings.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> index = SearchIndex().add_vectors(np.eye(3), ids=["a", "b", "c"])
        >>> index.search_vectors([[0.0, 0.9, 0.1]], k=2).hits(0)[0][0]
        'b'
        """
        emb = _as_vectors(embeddings, "embeddings", self._dim)
        n = len(emb)
        if n == 0:
            raise ValueError("embeddings is empty; give at least one row.")
        names = [str(len(self) + i) for i in range(n)] if ids is None else [str(i) for i in ids]
        if len(names) != n:
            raise ValueError(f"ids has {len(names)} names for {n} embeddings.")
        bounds = []
        for name, value in (("start_s", start_s), ("end_s", end_s)):
            arr = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}; expected ({n},).")
            bounds.append(arr)
        self._append(emb, names, bounds[0], bounds[1], [""] * n)
        return self

    def _embed_arrays(self, audio):
        batch = self.batch_size or len(audio)
        data = audio if isinstance(audio, np.ndarray) else np.asarray(audio)
        out = []
        steps = range(0, len(data), batch)
        if self.verbose and len(steps) > 1:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="embedding audio", unit="batch")
        for b in steps:
            out.append(np.asarray(self.retriever.transform(data[b:b + batch])))
        return np.concatenate(out)

    def _cache_folder(self, setting):
        return self.cache_dir / self.model_id_[:32] / setting

    def _read_cache(self, folder):
        cache = {}
        if folder is None or not folder.is_dir():
            return cache
        for shard in sorted(folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as npz:
                    keys, counts = npz["keys"], npz["counts"]
                    emb, start, end = npz["embeddings"], npz["start_s"], npz["end_s"]
            except Exception:  # a damaged shard is ignored: its files are embedded again
                continue
            offsets = np.concatenate([[0], np.cumsum(counts)])
            for j, key in enumerate(keys.tolist()):
                sl = slice(offsets[j], offsets[j + 1])
                cache[key] = (emb[sl], start[sl], end[sl])
        return cache

    @staticmethod
    def _write_shard(folder, entries):
        keys = list(entries)
        counts = np.array([len(entries[k][0]) for k in keys], dtype=np.int64)
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / f"shard-{name}.npz", "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype=str), counts=counts,
                     embeddings=np.concatenate([entries[k][0] for k in keys]).astype(np.float32),
                     start_s=np.concatenate([entries[k][1] for k in keys]),
                     end_s=np.concatenate([entries[k][2] for k in keys]))

    def _embed_file_batch(self, paths, window_seconds, hop_seconds):
        """Embeddings of each file, or an exception for a file that cannot be read."""
        if window_seconds is not None:
            from .windows import embed_windows

            def one(group):
                win = embed_windows(self.retriever, group, window_seconds=window_seconds,
                                    hop_seconds=hop_seconds, batch_size=self.batch_size)
                return [(win.embeddings[win.recording == j], win.start_s[win.recording == j],
                         win.end_s[win.recording == j]) for j in range(len(group))]
        else:
            def one(group):
                emb = np.asarray(self.retriever.transform(group), dtype=np.float32)
                nan = np.full(1, np.nan)
                return [(emb[j:j + 1], nan, nan) for j in range(len(group))]
        bad_file = (OSError, ValueError, RuntimeError)
        try:
            return one(paths)
        except bad_file as exc:
            if len(paths) == 1:
                return [exc]
        results = []
        for p in paths:  # find the bad file(s): one at a time
            try:
                results.extend(one([p]))
            except bad_file as exc:
                results.append(exc)
        return results

    def _add_files(self, paths, ids, window_seconds, hop_seconds):
        setting = "clip" if window_seconds is None else f"w{window_seconds!r}-h{hop_seconds!r}"
        folder = None if self.cache_dir is None else self._cache_folder(setting)
        cache = self._read_cache(folder)
        keys, problems = [], {}
        for p in paths:
            try:
                keys.append(file_digest(p) if os.path.isfile(p) else None)
            except OSError as exc:
                keys.append(None)
                problems[p] = str(exc)
            if keys[-1] is None and p not in problems:
                problems[p] = "does not exist" if not os.path.exists(p) else "is not a file"
        todo = []
        seen = set()
        for p, key in zip(paths, keys):
            if key is not None and key not in cache and key not in seen:
                todo.append((p, key))
                seen.add(key)
        batch = self.batch_size or int(getattr(self.retriever, "batch_size", None) or 32)
        steps = range(0, len(todo), batch)
        if self.verbose:
            from tqdm.auto import tqdm

            steps = tqdm(steps, total=len(steps), desc="embedding files", unit="batch")
        for b in steps:
            group = todo[b:b + batch]
            results = self._embed_file_batch([p for p, _ in group], window_seconds, hop_seconds)
            fresh = {}
            for (p, key), res in zip(group, results):
                if isinstance(res, Exception):
                    problems[p] = str(res)
                else:
                    fresh[key] = res
            cache.update(fresh)
            if folder is not None and fresh:
                try:
                    self._write_shard(folder, fresh)
                except OSError as exc:  # unwritable, full disk: search on, without the cache
                    warnings.warn(f"the embedding cache {str(self.cache_dir)!r} cannot be "
                                  f"written ({exc.strerror or exc}); embeddings of this run "
                                  "are not cached.", UserWarning, stacklevel=3)
                    folder = None
        emb, src, start, end, kept_keys = [], [], [], [], []
        for i, (p, key) in enumerate(zip(paths, keys)):
            if key is None or key not in cache:
                continue
            e, a, z = cache[key]
            emb.append(e)
            src.extend([ids[i] if ids is not None else p] * len(e))
            start.append(a)
            end.append(z)
            kept_keys.extend([key] * len(e))
        bad = [p for p in paths if p in problems]
        if bad:
            self.n_skipped_ += len(bad)
            warnings.warn(f"skipped {len(bad)} of {len(paths)} audio files that could not be "
                          f"read or embedded, e.g. {bad[0]!r}: {problems[bad[0]]}",
                          UserWarning, stacklevel=3)
        if emb:
            self._append(np.concatenate(emb), src, np.concatenate(start), np.concatenate(end),
                         kept_keys)

    # ------------------------------------------------------------------ searching
    def _faiss_index(self):
        if self._faiss is None:
            faiss = _import_faiss()
            emb = np.ascontiguousarray(self._joined()[0], dtype=np.float32)
            index = _make_faiss_index(faiss, self._dim, self.factory)
            if not index.is_trained:
                n_lists = getattr(faiss.extract_index_ivf(index), "nlist", 0) \
                    if "IVF" in self.factory else 0
                if n_lists and len(emb) < n_lists:
                    raise ValueError(f"factory={self.factory!r} has {n_lists} IVF lists but the "
                                     f"index holds only {len(emb)} vectors to train them; add "
                                     f"at least {n_lists} items or use fewer lists.")
                sample = emb
                if self.train_size is not None and self.train_size < len(emb):
                    rows = np.random.default_rng(0).choice(len(emb), self.train_size,
                                                           replace=False)
                    sample = emb[np.sort(rows)]
                index.train(sample)
            index.add(emb)
            self._faiss = index
        self._set_faiss_params(self._faiss)
        return self._faiss

    def _set_faiss_params(self, index):
        faiss = _import_faiss()
        try:
            faiss.extract_index_ivf(index).nprobe = self.nprobe
        except (RuntimeError, AttributeError, TypeError):
            pass
        hnsw = getattr(index, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = self.ef_search

    def search_vectors(self, queries, k=10):
        """Hits of precomputed query embeddings (rows in the learned space).

        Parameters
        ----------
        queries : array-like of shape (n_queries, dim)
        k : int, default=10
            Hits per query, >= 1 (capped at the index size).

        Returns
        -------
        SearchResults
        """
        k = _check_int(k, "k", 1)
        emb, src, start, end, _, norms = self._joined()
        q = _as_vectors(queries, "queries", self._dim)
        k = min(k, len(emb))
        if self.backend == "exact":
            idx, dist = _topk_exact(q, emb, k, self.chunk_size, 256, norms)
        else:
            index = self._faiss_index()
            dist, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
            idx = idx.astype(np.int64)
            missing = idx < 0  # an approximate index may return fewer than k hits
            dist = np.where(missing, np.inf, dist.astype(np.float64))
            idx = np.where(missing, 0, idx)
        out = SearchResults(idx, dist, src[idx], start[idx], end[idx])
        if self.backend == "faiss" and missing.any():
            out = SearchResults(np.where(missing, -1, idx), dist,
                                np.where(missing, "", out.sources),
                                np.where(missing, np.nan, out.start_s),
                                np.where(missing, np.nan, out.end_s))
        return out

    def _check_text(self, queries):
        kind = getattr(self.retriever, "text_input_kind_", None)
        if isinstance(queries, str):
            raise TypeError(f"text_queries={queries!r} is a single string; pass a list of "
                            "captions, e.g. [query].")
        if isinstance(queries, np.ndarray):
            is_strings = queries.ndim == 1 and (queries.dtype.kind in "US" or (
                queries.dtype.kind == "O" and all(isinstance(q, str) for q in queries)))
        else:
            is_strings = isinstance(queries, (list, tuple)) and len(queries) > 0 and \
                all(isinstance(q, str) for q in queries)
        if kind == "features" and is_strings:
            raise TypeError("this index's retriever was fitted on text features, so it cannot "
                            "embed caption strings: pass text feature rows (a 2-D float "
                            "array), or search audio with search_audio.")
        if kind == "strings" and not is_strings:
            raise TypeError(f"text_queries holds {type(queries).__name__} values, not caption "
                            "strings; this index's retriever embeds text from strings (use "
                            "search_audio for audio queries, search_vectors for embeddings).")

    def search(self, text_queries, k=10):
        """The ``k`` items nearest each caption (text-to-audio), many captions at once.

        Parameters
        ----------
        text_queries : sequence of str or array-like
            Captions (or text features, for a retriever fitted on them).
        k : int, default=10
            Hits per query, >= 1 (capped at the index size: ``results.k``).

        Returns
        -------
        SearchResults
        """
        k = _check_int(k, "k", 1)
        self._require_retriever("search with text")
        self._check_text(text_queries)
        self._joined()
        return self.search_vectors(self.retriever.embed_text(text_queries), k)

    def search_audio(self, audio_queries, k=10):
        """The ``k`` items nearest each audio query (audio-to-audio).

        Parameters
        ----------
        audio_queries : sequence of path or array-like
            Audio of the kind the retriever takes (files, waveforms or features).
        k : int, default=10
            Hits per query, >= 1 (capped at the index size).

        Returns
        -------
        SearchResults
        """
        k = _check_int(k, "k", 1)
        self._require_retriever("search with audio")
        if isinstance(audio_queries, (str, os.PathLike)):
            raise TypeError(f"audio_queries={audio_queries!r} is a single path; pass a list "
                            "of files, e.g. [path].")
        kind = getattr(self.retriever, "audio_input_kind_", None)
        if _is_paths(audio_queries) and kind == "features":
            raise TypeError("this index's retriever was fitted on audio features, so it cannot "
                            "read audio files: pass feature rows (a 2-D float array).")
        if not _is_paths(audio_queries):
            arr = np.asarray(audio_queries)
            n_in = getattr(self.retriever, "n_features_in_", None)
            if arr.ndim != 2:
                raise ValueError(f"audio_queries has shape {arr.shape}; give a 2-D array "
                                 "(n_queries, n_features) or a list of files.")
            if kind != "paths" and n_in is not None and arr.shape[1] != n_in:
                what = "features" if kind == "features" else "samples"
                raise ValueError(f"audio_queries has {arr.shape[1]} {what} per row; this "
                                 f"index's retriever expects {n_in}.")
        self._joined()
        return self.search_vectors(self.retriever.transform(audio_queries), k)

    # ------------------------------------------------------------------ persistence
    def _arrays(self):
        emb, src, start, end, keys, _ = self._joined()
        arrays = {"embeddings": emb, "sources": src, "start_s": start, "end_s": end,
                  "keys": keys}
        if self.backend == "faiss":
            faiss = _import_faiss()
            arrays["faiss_index"] = faiss.serialize_index(self._faiss_index())
        return arrays

    @staticmethod
    def _checksum(arrays):
        h = hashlib.sha256()
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def save(self, path):
        """Write the index to one ``.npz`` file, atomically.

        The file holds plain arrays and a JSON header (read back with
        ``allow_pickle=False``), a SHA-256 checksum of the arrays and the model identity.
        A FAISS index is stored trained, so loading does not train it again.

        Parameters
        ----------
        path : str or path-like
        """
        arrays = self._arrays()
        header = {"format": _FORMAT, "format_version": _FORMAT_VERSION,
                  "model_id": self.model_id_, "backend": self.backend, "factory": self.factory,
                  "nprobe": self.nprobe, "ef_search": self.ef_search,
                  "chunk_size": self.chunk_size, "dim": self._dim, "n_items": len(self),
                  "n_skipped": self.n_skipped_, "checksum": self._checksum(arrays)}
        from . import __version__

        header["sklearn_ltm_version"] = __version__
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                 **arrays)
        with atomic_write(path, "wb") as fh:
            fh.write(buf.getbuffer())

    @classmethod
    def load(cls, path, retriever=None, *, backend=None, nprobe=None, ef_search=None,
             cache_dir=None, verbose=0):
        """Read an index written by :meth:`save`, safely (no pickle), and check it.

        Parameters
        ----------
        path : str or path-like
        retriever : LTMRetriever or None
            The model the index was built with (checked by :func:`model_identity`); None
            gives an index for :meth:`search_vectors` only.
        backend : {"exact", "faiss"} or None
            Override the saved backend (None: keep it).
        nprobe, ef_search : int or None
            Override the saved FAISS search settings.
        cache_dir : str, path-like or None
            Embedding cache for later :meth:`add` calls.
        verbose : int

        Returns
        -------
        SearchIndex

        Raises
        ------
        ValueError
            The file is missing, not an index, truncated, modified (checksum), of another
            format version, or built with another model than ``retriever``.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"search index file {os.fspath(path)!r} does not exist.")
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode())
                names = [n for n in npz.files if n != "header"]
                arrays = {n: npz[n] for n in names}
        except Exception as exc:
            raise ValueError(f"{os.fspath(path)!r} is not a readable sklearn-ltm search index "
                             f"(truncated or damaged?): {type(exc).__name__}: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a sklearn-ltm search index.")
        if header.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{os.fspath(path)!r} has index format "
                             f"{header.get('format_version')}; this version reads format "
                             f"{_FORMAT_VERSION}.")
        if cls._checksum(arrays) != header.get("checksum"):
            raise ValueError(f"{os.fspath(path)!r} is corrupt or was modified: its checksum does "
                             "not match its content. Rebuild the index.")
        if retriever is not None:
            mine = model_identity(retriever)
            if mine != header["model_id"]:
                raise ValueError(
                    f"{os.fspath(path)!r} was built with another model (model id "
                    f"{str(header['model_id'])[:12]}...) than the given retriever "
                    f"({mine[:12]}...); its embeddings would not match this model's queries. "
                    "Rebuild the index with this model.")
        backend = header["backend"] if backend is None else backend
        index = cls.__new__(cls)
        SearchIndex.__init__(
            index, None, backend=backend, factory=header["factory"],
            nprobe=header["nprobe"] if nprobe is None else nprobe,
            ef_search=header["ef_search"] if ef_search is None else ef_search,
            chunk_size=header["chunk_size"], cache_dir=cache_dir, verbose=verbose)
        index.retriever = retriever
        index.model_id_ = header["model_id"]
        index._dim = header["dim"]
        index.n_skipped_ = int(header.get("n_skipped", 0))
        index._append(arrays["embeddings"], arrays["sources"], arrays["start_s"],
                      arrays["end_s"], arrays["keys"])
        if backend == "faiss" and "faiss_index" in arrays and header["backend"] == "faiss":
            index._faiss = _import_faiss().deserialize_index(arrays["faiss_index"])
        return index

    # ------------------------------------------------------------------ inspection
    def keys(self):
        """Content hash of each file item ('' for arrays): what the CLI compares to reuse."""
        return self._joined()[4]


def _is_paths(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and x.dtype.kind in "US"
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(
        isinstance(p, (str, os.PathLike)) for p in x)
