"""Cosine learning rate with linear warm-up against a constant rate, on ESC-50 features.

What it does
------------
On the cached aisfx + MiniLM features of ESC-50 fold 4 (``reproduce_esc50.py`` writes the
cache; without it this script encodes the clips first), it trains m-LTM
(``LTMRetriever(loss="mltm")``, feature mode, the settings of ``reproduce_esc50.py``: 10
epochs, batch 128, embedding 256, learning rate 1e-3, no early stopping) twice per seed and
split, with the same seed: ``lr_schedule="constant"`` and ``lr_schedule="cosine"``
(``CosineLR(warmup_fraction=0.1)``: linear warm-up over the first 10 % of the optimizer
steps, then cosine decay to 0). It reports held-out text-to-audio R@1 (relevant: the
caption's own clip) on the test clips of each split, per seed and as mean and standard
deviation. One thread.

Run
---
``.venv/bin/python benchmarks/bench_schedules.py`` (about 2 minutes on one core);
``--seeds`` and ``--splits`` change the repetitions.

Writes
------
``benchmarks/results/schedules.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common
import numpy as np
import reproduce_esc50 as esc50


def run(seeds, n_splits, data, base, log=print):
    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.components import CosineLR
    from sklearn_ltm.evaluation import evaluate

    X, Y, clip = data["X"], data["Y"], data["clip"]
    rows = []
    for seed in seeds:
        folds = esc50.clip_folds(data["clip_labels"], 5, seed)[:n_splits]
        for split, (train_clips, test_clips) in enumerate(folds):
            tr, te = esc50.pair_rows(clip, train_clips), esc50.pair_rows(clip, test_clips)
            for name, schedule in (("constant", "constant"),
                                   ("cosine", CosineLR(warmup_fraction=0.1))):
                model = LTMRetriever(**base, loss="mltm", lr_schedule=schedule,
                                     random_state=seed)
                t0 = time.perf_counter()
                model.fit(X[tr], Y[tr], groups=clip[tr])
                seconds = time.perf_counter() - t0
                score = evaluate(model, X[te], Y[te], groups=clip[te])["t2a_R@1"]
                rows.append({"seed": seed, "split": split, "schedule": name,
                             "t2a_R@1": float(score), "fit_seconds": seconds,
                             "final_lr_head": model.history_[-1]["lr_head"]})
                log(f"  seed {seed} split {split} {name:<8} t2a R@1 {score:.4f} "
                    f"({seconds:.1f} s)")
    return rows


def render(payload) -> str:
    rows = payload["rows"]
    lines = ["# Cosine learning rate with warm-up against a constant rate", "",
             f"Command: `{payload['command']}`. {payload['scope']}. Held-out text-to-audio "
             "R@1 of m-LTM, the same seeds and splits for both schedules.", "",
             "| schedule | t2a R@1 (mean ± std) | runs |", "|---|---|---|"]
    for name in ("constant", "cosine"):
        values = [r["t2a_R@1"] for r in rows if r["schedule"] == name]
        lines.append(f"| {name} | {np.mean(values):.4f} ± {np.std(values):.4f} | {len(values)} |")
    wins = sum(c["t2a_R@1"] > k["t2a_R@1"] for c, k in zip(
        [r for r in rows if r["schedule"] == "cosine"],
        [r for r in rows if r["schedule"] == "constant"]))
    lines += ["", f"Cosine better in {wins} of {len(rows) // 2} paired runs.", "",
              "| seed | split | constant | cosine |", "|---|---|---|---|"]
    for c, k in zip([r for r in rows if r["schedule"] == "constant"],
                    [r for r in rows if r["schedule"] == "cosine"]):
        lines.append(f"| {c['seed']} | {c['split']} | {c['t2a_R@1']:.4f} | {k['t2a_R@1']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--splits", type=_common.positive_int, default=2,
                        help="test splits (of 5 stratified ones) per seed")
    parser.add_argument("--data", type=Path, default=esc50.DATA_ROOT)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path.home() / ".cache" / "sklearn_ltm")
    parser.add_argument("--output", default="schedules")
    args = parser.parse_args(argv)
    if not (args.data / "meta" / "esc50.csv").is_file():
        print(f"ESC-50 data not found at {args.data}; nothing to run.", file=sys.stderr)
        return 2
    _common.set_threads(1)
    config = esc50.make_config(False, 1, 0)
    data = esc50.build_data(args.data, args.cache_dir, config)
    base = {k: v for k, v in config["base_params"].items() if k != "random_state"}
    rows = run(args.seeds, args.splits, data, base)
    payload = {"command": " ".join(["python benchmarks/bench_schedules.py",
                                    *(sys.argv[1:] if argv is None else argv)]),
               "scope": esc50.SCOPE, "base_params": base, "rows": rows}
    _common.publish(args.output, payload, render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
