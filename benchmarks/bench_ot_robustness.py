"""Convergence fuzz of the OT solvers: ours against POT's log-domain solvers, same problems.

Generates ``--n-problems`` (default 10,000) random entropic OT problems from ``--seed``: sizes
n, m in 2..64, epsilon log-uniform in [1e-3, 1], costs ``offset + scale * U(0, 1)`` with the
largest cost log-uniform in [0.1, 1e3] (2 % of problems up to 1e5), float32 or float64,
non-uniform marginals (log-normal weights) of which 30 % have some exact zeros, half balanced
and half partial (capacities with unequal totals, mass a random fraction of the smaller one).

Each problem is solved with the same budget of ``--max-iter`` iterations (default 1000) and
``--tol`` (default 1e-6) by

- ours: :func:`sklearn_ltm.transport.sinkhorn` / :func:`~sklearn_ltm.transport.partial_sinkhorn`
  (its epsilon-annealing iterations are on top of ``max_iter``: they are counted in the
  reported iterations);
- POT, balanced: ``ot.sinkhorn_log`` (log domain);
- POT, partial: ``ot.partial.entropic_partial_wasserstein(..., method="sinkhorn_log")``, the
  log-domain Dykstra iterations (the default ``method="sinkhorn"`` is multiplicative and
  underflows to NaN once ``cost / epsilon`` passes about 700; POT issue #723). POT's partial
  solver has no marginal stopping test (``stopThr`` is on the change of the log-plan), so it
  runs with ``stopThr=0`` and spends the whole budget.

A solve *converges* when its plan (in float64) is finite and its marginal error is at most
``tol``: ``|P 1 - a|_1 + |P^T 1 - b|_1`` for balanced problems and, for partial ones,
``|(P 1 - a)_+|_1 + |(P^T 1 - b)_+|_1 + |1^T P 1 - s|`` (feasibility; it does not measure
optimality, which for ours is checked by the solver's own KKT residual, reported too). The
report gives the miss rates side by side, overall and by ``max cost / epsilon`` bucket, dtype
and kind, and the number of problems POT solved and ours did not.

Usage::

    .venv/bin/python benchmarks/bench_ot_robustness.py            # 10,000 problems
    .venv/bin/python benchmarks/bench_ot_robustness.py --quick    # 500 problems
    .venv/bin/python benchmarks/bench_ot_robustness.py --n-problems 2000 --no-write

Writes ``benchmarks/results/ot_robustness.json`` and ``ot_robustness.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import ot  # noqa: E402
from _common import markdown_table, positive_int, provenance, set_threads, write_results  # noqa: E402

from sklearn_ltm.transport import partial_sinkhorn, sinkhorn  # noqa: E402

#: ``max cost / epsilon`` bucket edges.
BUCKETS = (0.0, 1e1, 1e2, 1e3, 1e4, 1e5, math.inf)


def make_problem(seed, index):
    """Problem ``index`` of the fuzz seeded by ``seed`` (a dict; numpy arrays)."""
    rng = np.random.default_rng([seed, index])
    n, m = (int(x) for x in rng.integers(2, 65, size=2))
    epsilon = float(10 ** rng.uniform(-3, 0))
    top = float(10 ** rng.uniform(3, 5)) if rng.random() < 0.02 else float(10 ** rng.uniform(-1, 3))
    offset = top * rng.uniform(0, 0.5) if rng.random() < 0.5 else 0.0
    cost = offset + (top - offset) * rng.random((n, m))
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    partial = bool(rng.random() < 0.5)

    def weights(size):
        w = np.exp(rng.normal(0.0, 1.0, size))
        if rng.random() < 0.3 and size > 1:
            zeros = rng.choice(size, size=int(rng.integers(1, max(2, size // 2))), replace=False)
            w[zeros] = 0.0
        return w / w.sum()

    a, b = weights(n), weights(m)
    mass = None
    if partial:
        b = b * float(rng.uniform(0.5, 1.5))
        mass = float(rng.uniform(0.1, 1.0) * min(a.sum(), b.sum()))
    return {
        "index": index,
        "n": n,
        "m": m,
        "epsilon": epsilon,
        "cost": cost.astype(dtype),
        "a": a.astype(dtype),
        "b": b.astype(dtype),
        "mass": mass,
        "dtype": np.dtype(dtype).name,
        "ratio": float(cost.max() / epsilon),
    }


def marginal_error(plan, a, b, mass):
    """Float64 marginal error of a plan (see the module docstring); inf if not finite."""
    plan = np.asarray(plan, dtype=np.float64)
    if not np.isfinite(plan).all():
        return math.inf
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rows, cols = plan.sum(1) - a, plan.sum(0) - b
    if mass is None:
        return float(np.abs(rows).sum() + np.abs(cols).sum())
    excess = np.clip(rows, 0, None).sum() + np.clip(cols, 0, None).sum()
    return float(excess + abs(plan.sum() - mass))


def solve_ours(problem, max_iter, tol):
    cost = torch.from_numpy(problem["cost"])
    a, b = torch.from_numpy(problem["a"]), torch.from_numpy(problem["b"])
    options = dict(max_iter=max_iter, tol=tol, return_info=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if problem["mass"] is None:
            plan, info = sinkhorn(cost, problem["epsilon"], a, b, **options)
        else:
            plan, info = partial_sinkhorn(cost, problem["epsilon"], problem["mass"], a, b, **options)
    return plan.numpy(), info


def solve_pot(problem, max_iter, tol):
    cost, a, b = problem["cost"], problem["a"], problem["b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if problem["mass"] is None:
            plan, log = ot.sinkhorn(
                a, b, cost, problem["epsilon"], method="sinkhorn_log", numItermax=max_iter,
                stopThr=tol, log=True,
            )
            n_iter = int(log["niter"]) + 1
        else:
            plan = ot.partial.entropic_partial_wasserstein(
                a, b, cost, problem["epsilon"], m=problem["mass"], method="sinkhorn_log",
                numItermax=max_iter, stopThr=0.0,
            )
            n_iter = max_iter
    return np.asarray(plan), n_iter


def bucket_of(ratio):
    for low, high in zip(BUCKETS[:-1], BUCKETS[1:]):
        if low <= ratio < high:
            return f"{low:.0e}-{high:.0e}" if math.isfinite(high) else f">= {low:.0e}"
    return "?"


def run(args):
    records = []
    start = time.perf_counter()
    for index in range(args.n_problems):
        problem = make_problem(args.seed, index)
        t0 = time.perf_counter()
        plan, info = solve_ours(problem, args.max_iter, args.tol)
        t1 = time.perf_counter()
        pot_plan, pot_iter = solve_pot(problem, args.max_iter, args.tol)
        t2 = time.perf_counter()
        args_m = (problem["a"], problem["b"], problem["mass"])
        ours_error = marginal_error(plan, *args_m)
        pot_error = marginal_error(pot_plan, *args_m)
        records.append(
            {
                "index": index,
                "kind": "balanced" if problem["mass"] is None else "partial",
                "n": problem["n"],
                "m": problem["m"],
                "dtype": problem["dtype"],
                "epsilon": problem["epsilon"],
                "ratio": problem["ratio"],
                "zeros": int((problem["a"] == 0).sum() + (problem["b"] == 0).sum()),
                "ours_error": ours_error,
                "ours_converged": bool(ours_error <= args.tol),
                "ours_flag": bool(info["converged"]),
                "ours_reported_error": float(np.max(info["marginal_error"])),
                "ours_iter": int(info["n_iter"]),
                "ours_newton": int(info["n_newton"]),
                "ours_s": t1 - t0,
                "pot_error": pot_error,
                "pot_converged": bool(pot_error <= args.tol),
                "pot_iter": pot_iter,
                "pot_s": t2 - t1,
            }
        )
        if args.progress and (index + 1) % args.progress == 0:
            done = records
            print(
                f"{index + 1:6d} problems, {time.perf_counter() - start:7.1f} s: misses ours "
                f"{sum(not r['ours_converged'] for r in done)}, POT "
                f"{sum(not r['pot_converged'] for r in done)}",
                flush=True,
            )
    return records


def summarise(records, key=None):
    """Miss-rate rows: overall, then grouped by ``key(record)``."""
    groups = {"all": records} if key is None else {}
    if key is not None:
        for r in records:
            groups.setdefault(key(r), []).append(r)
    rows = []
    for name in sorted(groups, key=str) if key is not None else groups:
        group = groups[name]
        count = len(group)
        ours = sum(not r["ours_converged"] for r in group)
        pot = sum(not r["pot_converged"] for r in group)
        pot_only = sum(r["pot_converged"] and not r["ours_converged"] for r in group)
        ours_only = sum(r["ours_converged"] and not r["pot_converged"] for r in group)
        rows.append(
            {
                "group": name,
                "problems": count,
                "ours_miss_rate": ours / count,
                "pot_miss_rate": pot / count,
                "pot_converged_ours_not": pot_only,
                "ours_converged_pot_not": ours_only,
                "ours_mean_iter": float(np.mean([r["ours_iter"] for r in group])),
                "pot_mean_iter": float(np.mean([r["pot_iter"] for r in group])),
                "ours_seconds": float(sum(r["ours_s"] for r in group)),
                "pot_seconds": float(sum(r["pot_s"] for r in group)),
            }
        )
    return rows


def tables(records):
    sections = {
        "overall": summarise(records),
        "by kind": summarise(records, lambda r: r["kind"]),
        "by dtype": summarise(records, lambda r: r["dtype"]),
        "by kind and max cost / epsilon": summarise(
            records, lambda r: f"{r['kind']} {bucket_of(r['ratio'])}"
        ),
        "by zero weights": summarise(records, lambda r: "some zeros" if r["zeros"] else "none"),
    }
    headers = [
        "group", "problems", "ours miss", "POT miss", "POT conv., ours not",
        "ours conv., POT not", "ours mean iter", "POT mean iter",
    ]
    out = {}
    for title, rows in sections.items():
        out[title] = (
            rows,
            markdown_table(
                headers,
                [
                    [
                        r["group"], r["problems"], f"{100 * r['ours_miss_rate']:.2f} %",
                        f"{100 * r['pot_miss_rate']:.2f} %", r["pot_converged_ours_not"],
                        r["ours_converged_pot_not"], f"{r['ours_mean_iter']:.0f}",
                        f"{r['pot_mean_iter']:.0f}",
                    ]
                    for r in rows
                ],
            ),
        )
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-problems", type=positive_int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iter", type=positive_int, default=1000)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--progress", type=int, default=500, help="print every N problems")
    parser.add_argument("--quick", action="store_true", help="500 problems")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_problems = 500
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)
    start = time.perf_counter()
    records = run(args)
    elapsed = time.perf_counter() - start
    sections = tables(records)
    for title, (_, table) in sections.items():
        print(f"\n{title}\n{table}")
    pot_only = [r for r in records if r["pot_converged"] and not r["ours_converged"]]
    flag_mismatch = sum(r["ours_flag"] != r["ours_converged"] for r in records)
    print(f"\n{len(records)} problems in {elapsed:.0f} s; ours' own flag disagrees with the "
          f"measured error on {flag_mismatch}")
    payload = {
        "provenance": provenance(threads=threads),
        "config": {
            "n_problems": args.n_problems,
            "seed": args.seed,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "pot": ot.__version__,
            "seconds": elapsed,
        },
        "summary": {title: rows for title, (rows, _) in sections.items()},
        "flag_mismatch": flag_mismatch,
        "pot_converged_ours_not": pot_only,
        "ours_misses": [r for r in records if not r["ours_converged"]][:200],
    }
    if not args.no_write:
        prov = payload["provenance"]
        parts = [
            "# OT convergence fuzz (benchmarks/bench_ot_robustness.py)",
            f"`{prov['command']}` on {prov['machine']}, {threads} torch thread(s), "
            f"{prov['date']}; POT {ot.__version__}; {args.n_problems} problems, seed "
            f"{args.seed}, max_iter {args.max_iter}, tol {args.tol:g}; {elapsed:.0f} s.",
            "Miss = the plan's float64 marginal error above tol (or a non-finite plan). POT: "
            "`ot.sinkhorn(method='sinkhorn_log')` (balanced) and "
            "`ot.partial.entropic_partial_wasserstein(method='sinkhorn_log')` (partial, "
            "log-domain Dykstra, runs the whole budget). Ours' iterations include its "
            "epsilon-annealing iterations.",
        ]
        parts += [f"## {title}\n\n{table}" for title, (_, table) in sections.items()]
        parts.append(
            f"Problems POT solved and ours did not: {len(pot_only)}. Ours' own convergence "
            f"flag disagrees with the measured error on {flag_mismatch} problems."
        )
        for path in write_results("ot_robustness", payload, "\n\n".join(parts)):
            print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
