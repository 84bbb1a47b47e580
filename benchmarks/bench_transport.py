"""Forward + backward time of the m-LTM loss on one batch: ours against POT, same tensors.

For each batch size B (default 64, 128, 256, 512, 1024, 2048, 4096) one batch of B caption and B audio
embeddings (d = 1024, L2-normalised, paired by a shared code) goes through a Mahalanobis
ground metric (``L`` of shape d x d, requires grad), the cost is divided by its maximum, an
entropic plan is computed with epsilon = 0.03 and the loss ``-sum P_hat log P`` is
back-propagated to the metric. The plan comes from

- ``ours-full``: :func:`sklearn_ltm.losses.mltm_loss` (log-domain Sinkhorn, implicit
  gradients);
- ``ours-partial``: the same with ``mass_fraction`` (partial OT, default 0.8);
- ``pot-sinkhorn`` / ``pot-sinkhorn_log``: ``ot.sinkhorn`` (default method and
  ``method="sinkhorn_log"``), gradients through POT's iterations (torch backend);
- ``pot-partial``: ``ot.partial.entropic_partial_wasserstein`` (defaults);

plus ``info-nce`` (symmetric InfoNCE on the same cost) for scale. Every method runs on the
same tensors, interleaved, in one run; the time is the best of ``--repeats`` runs after a
warm-up (``--large-repeats`` above B = 1024; the median is in the JSON too: on a shared
machine the best is the least noisy). ``--clock cpu`` measures the process CPU time instead
of the wall time (steadier on a loaded machine; with several threads it adds them up). A
second table gives each loss's time over InfoNCE's at every B, and the growth of the time
with B (the log-log slope between consecutive sizes).
Each plan's marginal error is measured in float64 on the plan itself:
``|P 1 - a|_1 + |P^T 1 - b|_1`` for balanced plans, ``|(P 1 - a)_+|_1 + |(P^T 1 - b)_+|_1 +
|1^T P 1 - s|`` for partial ones. Ours runs with ``--tol`` (default 1e-7, below POT's reached
error in float32). POT's partial and ``sinkhorn_log`` solvers (seconds to minutes per run)
are skipped above ``--max-pot-slow`` (default 256), and every POT solver above ``--max-pot``
(default 512).

Usage::

    .venv/bin/python benchmarks/bench_transport.py                  # full run, 2 threads
    .venv/bin/python benchmarks/bench_transport.py --quick          # smoke run (B = 64, 128)
    .venv/bin/python benchmarks/bench_transport.py --sizes 256 --repeats 5

Run from the shell, the script re-runs itself with large glibc mmap/trim thresholds, so that
freed B x B temporaries stay in the process instead of faulting in fresh pages at every use
(which makes the timings of both m-LTM and InfoNCE vary by tens of percent);
``--system-malloc`` keeps glibc's defaults. The allocator is recorded with the results.

Prints a table and writes ``benchmarks/results/transport.json`` and ``transport.md``.
Runs on CPU, and on CUDA as well when a GPU is present.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import ot  # noqa: E402
from _common import (  # noqa: E402
    add_allocator_option,
    markdown_table,
    positive_int,
    provenance,
    set_threads,
    steady_allocator,
    write_results,
)

from sklearn_ltm.ground_metrics import MahalanobisMetric  # noqa: E402
from sklearn_ltm.losses import ground_truth_plan, info_nce_loss, mltm_loss  # noqa: E402
from sklearn_ltm.transport import partial_sinkhorn, sinkhorn  # noqa: E402

METHODS = (
    "ours-full",
    "ours-partial",
    "pot-sinkhorn",
    "pot-sinkhorn_log",
    "pot-partial",
    "info-nce",
)
TARGETS = {  # (method, reference, minimum speed-up at B = 256 on CPU)
    "pot-sinkhorn": ("ours-full", 3.0),
    "pot-partial": ("ours-partial", 10.0),
}


def make_batch(size, dim, device, dtype, seed=0):
    """Paired, L2-normalised caption and audio embeddings and a metric near the identity."""
    generator = torch.Generator().manual_seed(seed)
    code = torch.randn(size, dim, generator=generator)
    audio = torch.nn.functional.normalize(code + 0.8 * torch.randn(size, dim, generator=generator))
    text = torch.nn.functional.normalize(code + 0.8 * torch.randn(size, dim, generator=generator))
    metric = MahalanobisMetric(dim)
    with torch.no_grad():
        metric.L.add_(0.02 * torch.randn(dim, dim, generator=generator))
    return text.to(device, dtype), audio.to(device, dtype), metric.to(device, dtype)


def _normalized_cost(metric, text, audio):
    cost = metric(text, audio)
    return cost / cost.max()


def _pot_loss(plan, groups, mass=1.0):
    target = ground_truth_plan(groups, dtype=plan.dtype, device=plan.device)
    return -(target * torch.log(plan / mass)).sum()


def build_methods(args, groups):
    """``name -> (loss_fn(metric, text, audio), plan_fn(normalized_cost), mass)``."""
    eps, frac, tol = args.epsilon, args.mass_fraction, args.tol

    def uniform(cost):
        size = cost.shape[0]
        return torch.full((size,), 1.0 / size, dtype=cost.dtype, device=cost.device)

    return {
        "ours-full": (
            lambda m, t, a: mltm_loss(m(t, a), groups, epsilon=eps, tol=tol),
            lambda c: sinkhorn(c, eps, tol=tol),
            None,
        ),
        "ours-partial": (
            lambda m, t, a: mltm_loss(m(t, a), groups, epsilon=eps, mass_fraction=frac, tol=tol),
            lambda c: partial_sinkhorn(c, eps, frac, tol=tol),
            frac,
        ),
        "pot-sinkhorn": (
            lambda m, t, a: _pot_loss(ot.sinkhorn(*_pot_args(m, t, a, uniform), eps), groups),
            lambda c: ot.sinkhorn(uniform(c), uniform(c), c, eps),
            None,
        ),
        "pot-sinkhorn_log": (
            lambda m, t, a: _pot_loss(
                ot.sinkhorn(*_pot_args(m, t, a, uniform), eps, method="sinkhorn_log"), groups
            ),
            lambda c: ot.sinkhorn(uniform(c), uniform(c), c, eps, method="sinkhorn_log"),
            None,
        ),
        "pot-partial": (
            lambda m, t, a: _pot_loss(
                ot.partial.entropic_partial_wasserstein(*_pot_args(m, t, a, uniform), eps, m=frac),
                groups,
                frac,
            ),
            lambda c: ot.partial.entropic_partial_wasserstein(
                uniform(c), uniform(c), c, eps, m=frac
            ),
            frac,
        ),
        "info-nce": (lambda m, t, a: info_nce_loss(m(t, a), groups), None, None),
    }


def _pot_args(metric, text, audio, uniform):
    cost = _normalized_cost(metric, text, audio)
    return uniform(cost), uniform(cost), cost


def marginal_error(plan, mass=None):
    """L1 marginal error of a plan (float64); partial plans count excess and mass gap."""
    plan = plan.detach().to(torch.float64)
    n, m = plan.shape
    rows, cols = plan.sum(1) - 1.0 / n, plan.sum(0) - 1.0 / m
    if mass is None:
        return (rows.abs().sum() + cols.abs().sum()).item()
    excess = rows.clamp_min(0).sum() + cols.clamp_min(0).sum()
    return (excess + (plan.sum() - mass).abs()).item()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(loss_fn, metric, text, audio, device, clock=time.perf_counter):
    metric.zero_grad(set_to_none=True)
    _sync(device)
    start = clock()
    loss = loss_fn(metric, text, audio)
    loss.backward()
    _sync(device)
    elapsed = clock() - start
    finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(metric.L.grad).all())
    return elapsed, loss.item(), finite


def run_size(size, device, args):
    text, audio, metric = make_batch(size, args.dim, device, args.dtype)
    groups = torch.arange(size, device=device)
    methods = {k: v for k, v in build_methods(args, groups).items() if k in args.methods}
    slow = ("pot-partial", "pot-sinkhorn_log")
    skipped = {k for k in methods if k in slow and size > args.max_pot_slow}
    skipped |= {k for k in methods if k.startswith("pot-") and size > args.max_pot}
    runs = {name: [] for name in methods if name not in skipped}
    losses, finite = {}, {}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    repeats = args.repeats if size <= 1024 else args.large_repeats
    for repeat in range(repeats + 1):  # the first round is a warm-up
        for name in runs:
            elapsed, loss, ok = time_step(
                methods[name][0], metric, text, audio, device, clock
            )
            if repeat:
                runs[name].append(elapsed)
            losses[name], finite[name] = loss, ok
    with torch.no_grad():
        cost = _normalized_cost(metric, text, audio)
    rows = []
    for name, times in runs.items():
        _, plan_fn, mass = methods[name]
        error = None
        if plan_fn is not None:
            with torch.no_grad():
                error = marginal_error(plan_fn(cost), mass)
        rows.append(
            {
                "device": str(device),
                "B": size,
                "method": name,
                "time_ms": 1e3 * min(times),
                "median_ms": 1e3 * statistics.median(times),
                "times_ms": [1e3 * t for t in times],
                "marginal_error": error,
                "loss": losses[name],
                "finite": finite[name],
            }
        )
    return rows


def speedups(results):
    out = []
    for device in sorted({r["device"] for r in results}):
        for size in sorted({r["B"] for r in results if r["device"] == device}):
            by_method = {
                r["method"]: r for r in results if r["device"] == device and r["B"] == size
            }
            for reference, (ours, target) in TARGETS.items():
                if reference in by_method and ours in by_method:
                    ref, mine = by_method[reference], by_method[ours]
                    out.append(
                        {
                            "device": device,
                            "B": size,
                            "ours": ours,
                            "reference": reference,
                            "speedup": ref["time_ms"] / mine["time_ms"],
                            "target": target if size == 256 and device == "cpu" else None,
                            "error_ours": mine["marginal_error"],
                            "error_reference": ref["marginal_error"],
                            "error_ok": mine["marginal_error"] <= ref["marginal_error"],
                        }
                    )
    return out


def versus_info_nce(results):
    """Each loss's time over InfoNCE's at the same B, and the growth of the time with B."""
    out = []
    for device in sorted({r["device"] for r in results}):
        rows = [r for r in results if r["device"] == device]
        base = {r["B"]: r["time_ms"] for r in rows if r["method"] == "info-nce"}
        for method in sorted({r["method"] for r in rows}):
            series = sorted((r["B"], r["time_ms"]) for r in rows if r["method"] == method)
            for k, (size, ms) in enumerate(series):
                slope = None
                if k:
                    (s0, t0), (s1, t1) = series[k - 1], (size, ms)
                    slope = math.log(t1 / t0) / math.log(s1 / s0)
                out.append(
                    {
                        "device": device,
                        "B": size,
                        "method": method,
                        "time_ms": ms,
                        "over_info_nce": ms / base[size] if size in base else None,
                        "growth_exponent": slope,
                    }
                )
    return out


def _fmt_error(value):
    return "-" if value is None else f"{value:.1e}"


def report(results, ratios):
    headers = ["device", "B", "method", "fwd+bwd ms", "marginal error", "loss"]
    rows = [
        [
            r["device"],
            r["B"],
            r["method"],
            f"{r['time_ms']:.1f}",
            _fmt_error(r["marginal_error"]),
            f"{r['loss']:.4f}" + ("" if r["finite"] else " (non-finite)"),
        ]
        for r in results
    ]
    table = markdown_table(headers, rows)
    ratio_rows = [
        [
            q["device"],
            q["B"],
            f"{q['reference']} / {q['ours']}",
            f"{q['speedup']:.1f}x",
            "-" if q["target"] is None else f">= {q['target']:g}x",
            f"{_fmt_error(q['error_ours'])} vs {_fmt_error(q['error_reference'])}"
            + ("" if q["error_ok"] else " (ours larger)"),
        ]
        for q in ratios
    ]
    ratio_table = markdown_table(
        ["device", "B", "ratio", "speed-up", "target", "marginal error"], ratio_rows
    )
    return table, ratio_table


def growth_report(growth):
    rows = [
        [
            g["device"],
            g["method"],
            g["B"],
            f"{g['time_ms']:.1f}",
            "-" if g["over_info_nce"] is None else f"{g['over_info_nce']:.2f}x",
            "-" if g["growth_exponent"] is None else f"{g['growth_exponent']:.2f}",
        ]
        for g in growth
        if g["method"] != "info-nce" or g["growth_exponent"] is not None
    ]
    return markdown_table(
        ["device", "method", "B", "ms", "/ InfoNCE", "growth exponent (vs previous B)"], rows
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=positive_int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096]
    )
    parser.add_argument("--dim", type=positive_int, default=1024)
    parser.add_argument("--epsilon", type=float, default=0.03)
    parser.add_argument("--mass-fraction", type=float, default=0.8)
    parser.add_argument("--tol", type=float, default=1e-7, help="our solvers' tolerance")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument(
        "--large-repeats", type=positive_int, default=1, help="repeats above B = 1024"
    )
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, and cuda when available"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--max-pot-slow",
        type=positive_int,
        default=256,
        help="skip POT's partial and sinkhorn_log solvers above this batch size (slow)",
    )
    parser.add_argument(
        "--max-pot",
        type=positive_int,
        default=512,
        help="skip every POT solver above this batch size",
    )
    parser.add_argument("--quick", action="store_true", help="B = 64, 128 and one repeat")
    parser.add_argument("--no-write", action="store_true", help="print only")
    add_allocator_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [64, 128], 1
    args.dtype = getattr(torch, args.dtype)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")  # POT's default run
    results = []
    for device_name in args.devices:
        device = torch.device(device_name)
        for size in args.sizes:
            rows = run_size(size, device, args)
            results.extend(rows)
            for r in rows:
                print(
                    f"{r['device']:>5} B={r['B']:<4} {r['method']:<17} {r['time_ms']:9.1f} ms  "
                    f"error {_fmt_error(r['marginal_error'])}",
                    flush=True,
                )
    ratios = speedups(results)
    growth = versus_info_nce(results)
    table, ratio_table = report(results, ratios)
    growth_table = growth_report(growth)
    print()
    print(table)
    print()
    print(ratio_table)
    print()
    print(growth_table)
    payload = {
        "provenance": provenance(threads=threads),
        "config": {
            "sizes": args.sizes,
            "dim": args.dim,
            "epsilon": args.epsilon,
            "mass_fraction": args.mass_fraction,
            "tol": args.tol,
            "repeats": args.repeats,
            "large_repeats": args.large_repeats,
            "clock": args.clock,
            "max_pot": args.max_pot,
            "dtype": str(args.dtype).replace("torch.", ""),
            "devices": args.devices,
            "pot": ot.__version__,
            "max_pot_slow": args.max_pot_slow,
        },
        "results": results,
        "speedups": ratios,
        "versus_info_nce": growth,
    }
    if not args.no_write:
        markdown = "\n\n".join(
            [
                "# m-LTM loss, forward + backward (benchmarks/bench_transport.py)",
                f"`{payload['provenance']['command']}` on {payload['provenance']['machine']}, "
                f"{threads} torch threads, {payload['provenance']['date']}; POT {ot.__version__}; "
                f"{args.clock} clock; allocator: {payload['provenance']['allocator']}.",
                table,
                ratio_table,
                "Time over InfoNCE's at the same B, and growth with B:",
                growth_table,
            ]
        )
        for path in write_results("transport", payload, markdown):
            print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    steady_allocator()
    main()
