"""Transductive re-ranking at AudioCaps test size: chunked Sinkhorn vs POT's dense log-domain solver.

Each solver runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own.
Prints a table and writes --out (default benchmarks/results/transductive.json, from the cwd).

    .venv/bin/python benchmarks/bench_transductive.py [--queries 4875 --gallery 975 --dim 256]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _data(n_q, n_g, dim, seed=0):
    rng = np.random.default_rng(seed)
    clips = rng.normal(size=(n_g, dim)).astype(np.float32)
    clips /= np.linalg.norm(clips, axis=1, keepdims=True)
    text = clips[np.arange(n_q) % n_g] + rng.normal(size=(n_q, dim)).astype(np.float32) / np.sqrt(dim)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return text, clips


def _child(solver, n_q, n_g, dim, epsilon, n_iter, tol, chunk_size):
    import torch

    torch.set_num_threads(1)
    text, clips = _data(n_q, n_g, dim)
    start = time.perf_counter()
    if solver == "chunked":
        from sklearn_ltm.rerank import sinkhorn_potentials, transductive_log_plan

        log_plan = transductive_log_plan(text, clips, epsilon=epsilon, n_iter=n_iter, tol=tol,
                                         chunk_size=chunk_size)
        seconds = time.perf_counter() - start  # the potentials again, untimed, for the count
        iters = sinkhorn_potentials(text, clips, epsilon=epsilon, n_iter=n_iter, tol=tol,
                                    chunk_size=chunk_size).n_iter
    else:
        import ot

        t, c = text, clips  # float32, as the chunked solver gets them
        cost = (t * t).sum(1)[:, None] + (c * c).sum(1)[None] - 2 * t @ c.T
        cost = np.maximum(cost, 0) / cost.max()
        a = np.full(n_q, 1 / n_q, dtype=np.float32)
        b = np.full(n_g, 1 / n_g, dtype=np.float32)
        plan, log = ot.sinkhorn(a, b, cost, reg=epsilon,
                                method="sinkhorn_log", numItermax=n_iter, stopThr=tol, log=True)
        log_plan = np.log(np.maximum(plan, 1e-300))
        iters = int(log["niter"])
        seconds = time.perf_counter() - start
    top1 = log_plan.argmax(axis=1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"solver": solver, "seconds": seconds, "peak_rss_mb": peak_mb,
                      "iterations": iters, "top1": top1.tolist()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=4875)
    parser.add_argument("--gallery", type=int, default=975)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--n-iter", type=int, default=1000)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--out", default="benchmarks/results/transductive.json")
    parser.add_argument("--child", choices=["chunked", "dense"])
    args = parser.parse_args()
    common = (args.queries, args.gallery, args.dim, args.epsilon, args.n_iter, args.tol,
              args.chunk_size)
    if args.child:
        _child(args.child, *common)
        return
    rows = {}
    for solver in ("chunked", "dense"):
        out = subprocess.run([sys.executable, __file__, "--child", solver,
                              *sys.argv[1:]], capture_output=True, text=True, check=True)
        rows[solver] = json.loads(out.stdout.strip().splitlines()[-1])
    agree = float(np.mean(np.array(rows["chunked"].pop("top1")) == np.array(rows["dense"].pop("top1"))))
    naive_gb = args.queries * args.gallery * args.dim * 4 / 1e9
    print(f"{args.queries} queries x {args.gallery} gallery x d={args.dim}, epsilon={args.epsilon}, "
          f"tol={args.tol}, chunk_size={args.chunk_size}, 1 thread")
    print(f"{'solver':<10}{'seconds':>10}{'peak RSS MB':>14}{'iterations':>12}")
    for name, r in rows.items():
        print(f"{name:<10}{r['seconds']:>10.2f}{r['peak_rss_mb']:>14.0f}{r['iterations']:>12}")
    print(f"time ratio chunked/dense: {rows['chunked']['seconds'] / rows['dense']['seconds']:.2f}; "
          f"top-1 agreement: {agree:.4f}; a queries x gallery x d float32 tensor would take "
          f"{naive_gb:.1f} GB")
    result = {"config": vars(args), "rows": rows, "top1_agreement": agree,
              "naive_tensor_gb": naive_gb}
    from sklearn_ltm._utils import atomic_write

    with atomic_write(Path(args.out), "w") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
