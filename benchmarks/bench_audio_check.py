"""What checking audio files before training costs, against reading them once.

``LTMRetriever.fit`` on file paths checks every distinct file before any work starts
(:func:`sklearn_ltm.encoders.check_audio_files`): ``decode=True`` decodes the part that
training reads (the first ``audio_encoder__max_seconds``), so that a file with NaN samples is found
(and skipped with ``audio_encoder__on_bad_file="skip"``); inference checks only the header
(``decode=False``). This script writes ``--n-files`` clips of ``--seconds`` seconds (FLAC and
WAV, 32 kHz mono noise) into a temporary folder and times, interleaved in one run:

- ``header``: ``check_audio_files(decode=False)``;
- ``decode``: ``check_audio_files(decode=True, max_seconds=...)``;
- ``load_audio``: reading every file as one training epoch does (``load_audio`` with
  resampling to 32 kHz and the same crop).

The figures are milliseconds per file (best of ``--repeats``) and ratios to ``load_audio``.

Usage::

    .venv/bin/python benchmarks/bench_audio_check.py            # 40 files of 10 s
    .venv/bin/python benchmarks/bench_audio_check.py --quick    # 8 files of 2 s

Prints a table and writes ``benchmarks/results/audio_check.json`` and ``audio_check.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import markdown_table, positive_int, provenance, publish, set_threads  # noqa: E402

from sklearn_ltm.encoders import check_audio_files, load_audio  # noqa: E402

SR = 32000


def _write_clips(folder: Path, n_files: int, seconds: float, fmt: str) -> list[str]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_files):
        path = folder / f"clip{i}.{fmt}"
        sf.write(str(path), (0.1 * rng.normal(size=int(seconds * SR))).astype(np.float32), SR)
        paths.append(str(path))
    return paths


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-files", type=positive_int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 files of 2 s, 2 repeats")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_files, args.seconds, args.repeats = 8, 2.0, 2
    threads = set_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("flac", "wav"):
            folder = Path(tmp) / fmt
            folder.mkdir()
            paths = _write_clips(folder, args.n_files, args.seconds, fmt)
            runs = {
                "header": lambda p=paths: check_audio_files(p, decode=False),
                "decode": lambda p=paths: check_audio_files(p, max_seconds=args.seconds),
                "load_audio": lambda p=paths: [load_audio(x, SR, max_seconds=args.seconds)
                                               for x in p],
            }
            times = {name: 0.0 for name in runs}
            for name in runs:  # warm-up (caches, resampler kernels)
                runs[name]()
            for name in runs:
                times[name] = _best(runs[name], args.repeats)
            base = times["load_audio"]
            results[fmt] = {name: {"ms_per_file": 1000 * t / args.n_files,
                                   "ratio_to_load_audio": t / base}
                            for name, t in times.items()}
    rows = [[fmt, name, f"{r['ms_per_file']:.2f}", f"{r['ratio_to_load_audio']:.3f}"]
            for fmt, per in results.items() for name, r in per.items()]
    markdown = "\n".join([
        f"# Audio file checks: {args.n_files} files of {args.seconds:g} s, 32 kHz mono", "",
        markdown_table(["format", "check", "ms / file", "time / load_audio"], rows), "",
        "`decode` is what `fit` adds before training (once per distinct file); `header` is "
        "what `transform` adds; `load_audio` is one epoch's reading of the same files.",
    ])
    payload = {"config": {"n_files": args.n_files, "seconds": args.seconds,
                          "repeats": args.repeats, "threads": threads},
               "results": results,
               "provenance": provenance(__file__, sys.argv[1:] if argv is None else argv,
                                        threads=threads)}
    publish("audio_check", payload, markdown, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
