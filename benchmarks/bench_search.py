"""Search at scale: exact chunked top-k against FAISS Flat / IVF / HNSW and a dense sort.

Synthetic 256-d embeddings (a mixture of clusters, like a learned space where similar sounds
gather) at 10k, 100k and 1M items; 256 held-out queries from the same mixture. For each
method: build time, memory (the index, and for the exact search the peak of temporary
arrays during a search, measured with tracemalloc), ms per query at batch 1 and batch 256,
and recall@10 against the exact top-10.

Targets (issue 12): at 1M an approximate backend answers in < 5 ms per query with
recall@10 >= 0.95; the exact search never holds more than one block of scores
(``query_chunk_size x chunk_size`` floats).

    .venv/bin/python benchmarks/bench_search.py                   # 10k, 100k, 1M (~6 min)
    .venv/bin/python benchmarks/bench_search.py --sizes 10000 --n-queries 32   # seconds
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: one BLAS thread by default

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, positive_int, provenance, publish  # noqa: E402

from sklearn_ltm.search import SearchIndex  # noqa: E402

DIM = 256
K = 10


def make_embeddings(n, n_queries, *, dim=DIM, n_clusters=2000, spread=0.6, seed=0):
    """Gallery and query rows drawn from one mixture of ``n_clusters`` Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    gallery = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):  # in blocks: no float64 temporaries of the whole gallery
        m = min(step, n - s)
        gallery[s:s + m] = centres[rng.integers(n_clusters, size=m)]
        gallery[s:s + m] += spread * rng.standard_normal((m, dim), dtype=np.float32)
    queries = centres[rng.integers(n_clusters, size=n_queries)] + \
        spread * rng.standard_normal((n_queries, dim), dtype=np.float32)
    return gallery, queries.astype(np.float32)


def recall_at_k(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def bench_exact(gallery, queries, batch1, chunk_size):
    t_build, index = _timed(lambda: SearchIndex(chunk_size=chunk_size).add_vectors(gallery))
    index.search_vectors(queries[:1], K)  # joins the parts and computes the norms once
    tracemalloc.start()
    t_batch, res = _timed(index.search_vectors, queries, K)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    t_one = sum(_timed(index.search_vectors, queries[i:i + 1], K)[0] for i in range(batch1))
    block = 256 * chunk_size * 4
    return index, res.indices, {
        "build_s": t_build, "index_mb": gallery.nbytes / 2**20,
        "search_peak_mb": peak / 2**20, "score_block_mb": block / 2**20,
        "ms_per_query_batch1": 1e3 * t_one / batch1,
        "ms_per_query_batch256": 1e3 * t_batch / len(queries), "recall@10": 1.0,
    }


def bench_dense(gallery, queries):
    """Today's ``retrieve`` before the change: one dense score matrix, a full stable sort."""
    from sklearn_ltm.retrieval_metrics import negative_squared_distances

    def run(q):
        d = np.maximum(-negative_squared_distances(q, gallery), 0.0)
        return np.argsort(d, axis=1, kind="stable")[:, :K]

    tracemalloc.start()
    t_batch, idx = _timed(run, queries)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return idx, {"build_s": 0.0, "index_mb": gallery.nbytes / 2**20,
                 "search_peak_mb": peak / 2**20,
                 "ms_per_query_batch256": 1e3 * t_batch / len(queries)}


def bench_faiss(gallery, queries, truth, batch1, factory, probes=(None,), **settings):
    """Build one FAISS-backed SearchIndex, then time it at each search setting of ``probes``
    (IVF ``nprobe`` values; None: the index's own)."""
    import faiss

    def build():
        index = SearchIndex(backend="faiss", factory=factory, **settings)
        index.add_vectors(gallery)
        return index, index._faiss_index()  # train (IVF) and add now, inside the timing

    t_build, (index, faiss_index) = _timed(build)
    size = faiss.serialize_index(faiss_index).nbytes
    rows = []
    for nprobe in probes:
        if nprobe is not None:
            index.nprobe = nprobe
        t_batch, res = _timed(index.search_vectors, queries, K)
        t_one = sum(_timed(index.search_vectors, queries[i:i + 1], K)[0] for i in range(batch1))
        rows.append({"build_s": t_build, "index_mb": size / 2**20,
                     "ms_per_query_batch1": 1e3 * t_one / batch1,
                     "ms_per_query_batch256": 1e3 * t_batch / len(queries),
                     "recall@10": recall_at_k(res.indices, truth)})
    return rows


def _ivf_lists(n):
    """About 4 sqrt(n) lists (a power of 2), at most 2048 so that training stays short."""
    return int(min(2048, max(16, 2 ** round(np.log2(4 * np.sqrt(n))))))


def run(sizes, n_queries, batch1, chunk_size, hnsw_max, dense_max, seed):
    try:
        import faiss

        faiss.omp_set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ImportError:
        faiss = None
    results = []
    for n in sizes:
        gallery, queries = make_embeddings(n, n_queries, seed=seed)
        _, truth, row = bench_exact(gallery, queries, batch1, chunk_size)
        results.append({"n": n, "method": "exact (chunked top-k)", **row})
        if n * n_queries <= dense_max:
            idx, row = bench_dense(gallery, queries)
            row["recall@10"] = recall_at_k(idx, truth)
            results.append({"n": n, "method": "dense matrix + full sort (old retrieve)", **row})
        if faiss is None:
            continue
        (row,) = bench_faiss(gallery, queries, truth, batch1, "Flat")
        results.append({"n": n, "method": "faiss Flat", **row})
        lists = _ivf_lists(n)
        probes = (2, 8, 32)
        rows = bench_faiss(gallery, queries, truth, batch1, f"IVF{lists},Flat", probes=probes,
                           train_size=min(n, 16 * lists))  # k-means on 16 per list
        for nprobe, row in zip(probes, rows):
            results.append({"n": n, "method": f"faiss IVF{lists},Flat nprobe={nprobe}", **row})
        if n <= hnsw_max:
            (row,) = bench_faiss(gallery, queries, truth, batch1, "HNSW32", ef_search=64)
            results.append({"n": n, "method": "faiss HNSW32 efSearch=64", **row})
        del gallery
    return results


def render(payload):
    def f(r, key, digits=2):
        v = r.get(key)
        return "-" if v is None else f"{v:.{digits}f}"

    rows = [[f"{r['n']:,}", r["method"], f(r, "build_s"), f(r, "index_mb", 0),
             f(r, "search_peak_mb", 1), f(r, "ms_per_query_batch1"),
             f(r, "ms_per_query_batch256"), f(r, "recall@10", 3)] for r in payload["results"]]
    p = payload["provenance"]
    c = payload["config"]
    lines = [
        "# Search at scale (benchmarks/bench_search.py)", "",
        f"`{p['command']}` on {p['machine']}, {c['threads']} thread(s), {p['date']}; "
        f"{c['n_queries']} queries (batch-1 timing over {c['batch1_queries']}), dimension "
        f"{DIM}, k = {K}, exact blocks of {c['query_chunk_size']} x {c['chunk_size']} scores "
        f"({c['score_block_mb']:.0f} MB).", "",
        markdown_table(["n", "method", "build s", "index MB", "search peak MB",
                        "ms/query (batch 1)", "ms/query (batch 256)", "recall@10"], rows),
        "",
        "- *search peak MB*: the most memory held by temporary arrays during one batch "
        "search (tracemalloc), on top of the index; for the exact search it stays near one "
        "block of scores (plus its argpartition indices) whatever n is, while the dense sort "
        "holds the whole queries x n matrix and its sort order.",
        "- *recall@10*: fraction of the exact top-10 found. Timings are wall-clock on a shared "
        "machine: compare rows of one run, not runs.",
        "- The synthetic mixture has well-separated clusters, which suits IVF: on real "
        "embeddings the same nprobe finds fewer of the exact top-10, so tune nprobe (or "
        "ef_search for HNSW) on your own data. HNSW is skipped above --hnsw-max-n (its build "
        "takes minutes on one thread at 1M).",
    ]
    best = [r for r in payload["results"] if r["n"] == max(c["sizes"])
            and r["method"].startswith("faiss") and r["method"] != "faiss Flat"]
    if best:
        ok = [r for r in best if r["ms_per_query_batch1"] < 5 and r["recall@10"] >= 0.95]
        verdict = ", ".join(f"{r['method']} ({r['ms_per_query_batch1']:.2f} ms, recall "
                            f"{r['recall@10']:.3f})" for r in ok) or "none"
        lines.append(f"- Target at n = {max(c['sizes']):,} (< 5 ms per query at batch 1, "
                     f"recall@10 >= 0.95): met by {verdict}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=positive_int, nargs="+",
                        default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--n-queries", type=positive_int, default=256)
    parser.add_argument("--batch1-queries", type=positive_int, default=20)
    parser.add_argument("--chunk-size", type=positive_int, default=16384)
    parser.add_argument("--hnsw-max-n", type=positive_int, default=100_000,
                        help="skip HNSW above this size (its build is slow on 1 thread)")
    parser.add_argument("--dense-max", type=positive_int, default=30_000_000,
                        help="run the dense sort only while n_queries x n is at most this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    results = run(args.sizes, args.n_queries, args.batch1_queries, args.chunk_size,
                  args.hnsw_max_n, args.dense_max, args.seed)
    payload = {
        "config": {"sizes": args.sizes, "n_queries": args.n_queries, "dim": DIM, "k": K,
                   "batch1_queries": args.batch1_queries, "chunk_size": args.chunk_size,
                   "query_chunk_size": 256, "score_block_mb": 256 * args.chunk_size * 4 / 2**20,
                   "threads": threads, "seed": args.seed},
        "provenance": provenance(__file__, argv if argv is not None else sys.argv[1:],
                                 threads=threads),
        "results": results,
    }
    publish("search", payload, render(payload), args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
