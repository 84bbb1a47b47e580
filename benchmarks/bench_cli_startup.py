"""Start-up time of a cached ``sklearn-ltm search`` (issue 12's target: 400 clips, <= 3 s).

What it does
------------
Writes ``--clips`` (default 400) half-second clips (tones and noise) into a work folder,
fits a small model on 40 of them (CNN10 audio encoder from scratch, the scratch text
encoder, one epoch) and saves it, then runs the command once to build the index and its
cache::

    sklearn-ltm search --model model.pt --audio-dir clips --index clips.idx --query "a pure tone"

That first run embeds the clips, writes the index and caches the text tower. Each later run
of the same command is a *cached search*: the index still holds exactly the folder's files
(each one is hashed to check it), so the command answers from the index file and the cached
tower. Each repeat times, in a fresh interpreter and side by side, the cached search and two
floors: ``python -c "import torch, numpy"`` (what the cached search cannot avoid) and
``python -c "import torch, torchaudio, sklearn.base"`` (what the command imported before the
cached path existed). Wall time of the whole process, best and median of ``--repeats``.

Run
---
``.venv/bin/python benchmarks/bench_cli_startup.py`` (``--clips``, ``--repeats``,
``--workdir`` to keep the files). Writes ``benchmarks/results/cli_startup.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

TARGET_SECONDS = 3.0
SR = 16000


def make_clips(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """``n`` half-second clips: even ones tones, odd ones noise; their paths and captions."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    paths, captions = [], []
    for i in range(n):
        if i % 2:
            x, caption = 0.1 * rng.normal(size=t.size).clip(-3, 3), f"a hiss of static {i}"
        else:
            x, caption = 0.5 * np.sin(2 * np.pi * (200 + 3 * i) * t), f"a pure tone {i}"
        path = folder / f"c{i:04d}.wav"
        sf.write(path, x.astype("float32"), SR)
        paths.append(str(path))
        captions.append(caption)
    return paths, captions


def fit_model(paths, captions, out: Path) -> None:
    from sklearn_ltm import LTMRetriever

    model = LTMRetriever(audio_encoder="cnn10", max_epochs=1, batch_size=8,
                         validation_fraction=0.0, random_state=0)
    model.fit(paths[:40], captions[:40])
    model.save(out)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=_common.positive_int, default=400)
    parser.add_argument("--repeats", type=_common.positive_int, default=5)
    parser.add_argument("--workdir", default=None, help="keep the files here (default: temp)")
    parser.add_argument("--results-dir", default=None, help="default: benchmarks/results")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(work / "cache"),
               "PYTHONPATH": os.pathsep.join([str(_common.REPO_ROOT),
                                              os.environ.get("PYTHONPATH", "")])}
        paths, captions = make_clips(work / "clips", args.clips)
        model = work / "model.pt"
        fit_model(paths, captions, model)
        py = sys.executable
        search = [py, "-m", "sklearn_ltm.cli", "search", "--model", str(model), "--audio-dir",
                  str(work / "clips"), "--index", str(work / "clips.idx"), "--query",
                  "a pure tone", "-k", "3"]
        first = timed(search, env)
        runs = {"cached search": search,
                "floor: import torch, numpy": [py, "-c", "import torch, numpy"],
                "floor: import torch, torchaudio, sklearn.base":
                    [py, "-c", "import torch, torchaudio, sklearn.base"]}
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, cmd in runs.items():  # side by side, taking turns
                times[name].append(timed(cmd, env))
    rows = {name: {"best_s": min(v), "median_s": statistics.median(v), "all_s": v}
            for name, v in times.items()}
    payload = {
        "benchmark": "start-up of a cached sklearn-ltm search",
        "provenance": _common.provenance(__file__, argv),
        "config": {"clips": args.clips, "repeats": args.repeats, "target_s": TARGET_SECONDS},
        "first_search_s": first,
        "results": rows,
        "under_target": rows["cached search"]["best_s"] <= TARGET_SECONDS,
    }
    prov = payload["provenance"]
    table = _common.markdown_table(
        ["run", "best s", "median s"],
        [[name, f"{r['best_s']:.2f}", f"{r['median_s']:.2f}"] for name, r in rows.items()])
    markdown = "\n".join([
        "# Start-up of a cached sklearn-ltm search", "",
        f"Produced by `{prov['command']}` on {prov['date']} ({prov['machine']}).", "",
        f"{args.clips} half-second clips; the first search (embed, index, cache the text tower) "
        f"took {first:.1f} s. Each repeat runs, in fresh processes and taking turns, the same "
        "search again (the folder's files are hashed and matched to the index, the query is "
        f"embedded by the cached tower) and the two import floors. Target: <= "
        f"{TARGET_SECONDS:.0f} s wall.", "", table])
    _common.publish("cli_startup", payload, markdown, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
