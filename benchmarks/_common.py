"""Shared helpers of the benchmark scripts: threads, provenance, planted data, result files.

Not a public module: the scripts in this folder import it as ``_common`` (they put their own
folder first on ``sys.path`` by being run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


# The training objectives the scripts compare (display name -> LTMRetriever parameters).
LOSS_SETTINGS = {
    "m-LTM (full OT)": {"loss": "mltm", "mass_fraction": 1.0},
    "m-LTM (partial OT, s=0.8)": {"loss": "mltm", "mass_fraction": 0.8},
    "contrastive (InfoNCE)": {"loss": "contrastive"},
    "triplet": {"loss": "triplet"},
}


def timed_fit(model, *args, **kwargs) -> tuple[float, int]:
    """``model.fit(*args, **kwargs)``; return (seconds, Sinkhorn solves that hit max_iter).

    The ConvergenceWarnings of the Sinkhorn solves are counted, not printed.
    """
    import time
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(*args, **kwargs)
    seconds = time.perf_counter() - t0
    return seconds, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def set_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads (``None``: all cores); return the number in use."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads={threads} is not accepted; give an integer >= 1.")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


#: glibc settings that keep freed large blocks in the process (no mmap/munmap per tensor):
#: without them every large temporary is a fresh mapping whose pages fault in on first touch,
#: which makes timings of B x B work vary by tens of percent from run to run.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def allocator() -> str:
    """The allocator settings this process runs under (recorded with the results)."""
    if all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items()):
        return "glibc, mmap/trim thresholds 4 GiB"
    return "glibc defaults"


def add_allocator_option(parser) -> None:
    """``--system-malloc``: keep glibc's defaults instead of :data:`STEADY_MALLOC`."""
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's default allocator settings (run from the shell, "
                             "the script otherwise re-runs itself with large mmap/trim "
                             "thresholds: steadier timings)")


def steady_allocator() -> None:
    """Re-run this script (``__main__`` only) under :data:`STEADY_MALLOC`.

    Not when ``--system-malloc`` is on the command line or the settings are in place already.
    Both sides of every ratio run in the same process, so they get the same allocator.
    """
    if "--system-malloc" in sys.argv[1:] or allocator() != "glibc defaults":
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} is not an integer >= 1")
    return value


def provenance(script: str | None = None, args: list[str] | None = None,
               threads: int | None = None) -> dict:
    """Where and how a result was produced: command, date, versions, machine.

    ``script`` and ``args`` default to ``sys.argv`` (pass them when ``main(argv)`` is called
    from Python, so that the recorded command is the one that ran).
    """
    import sklearn
    import torch

    import sklearn_ltm

    script = sys.argv[0] if script is None else script
    args = sys.argv[1:] if args is None else list(args)
    script = os.path.relpath(os.path.abspath(script), REPO_ROOT)
    return {
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", script, *args]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sklearn_ltm": sklearn_ltm.__version__,
        "torch": torch.__version__,
        "scikit_learn": sklearn.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible",
        "torch_threads": torch.get_num_threads() if threads is None else threads,
        "allocator": allocator(),
    }


def planted_features(n_clips: int, *, captions_per_clip: int = 1, audio_dim: int = 512,
                     text_dim: int = 384, latent_dim: int = 32, noise: float = 1.5,
                     seed: int = 0):
    """Paired features that share a planted latent code per clip.

    Audio row = ``tanh(z A) + noise``, text row = ``z B + noise`` (its own noise per caption),
    with ``z`` a standard normal code of ``latent_dim`` per clip: a nonlinear audio side, a
    linear text side, so a retriever must learn to map both into one space.

    Returns
    -------
    audio : ndarray of float32, shape (n_clips * captions_per_clip, audio_dim)
    text : ndarray of float32, same rows, text_dim columns
    groups : ndarray of int, the clip of each row
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_clips, latent_dim))
    a_map = rng.normal(size=(latent_dim, audio_dim)) / np.sqrt(latent_dim)
    t_map = rng.normal(size=(latent_dim, text_dim)) / np.sqrt(latent_dim)
    groups = np.repeat(np.arange(n_clips), captions_per_clip)
    audio = np.tanh(z @ a_map) + noise * rng.normal(size=(n_clips, audio_dim))
    text = (z @ t_map)[groups] + noise * rng.normal(size=(len(groups), text_dim))
    return audio[groups].astype(np.float32), text.astype(np.float32), groups


def mean_std(values) -> dict:
    """``{"mean", "std", "values"}`` of a list of numbers (population std, 0 for one value)."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": arr.tolist()}


def fmt_pm(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    """``"12.3 ± 0.4"`` from a :func:`mean_std` dict (scaled, e.g. to percent)."""
    if len(stat["values"]) == 1:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def write_results(stem: str, payload: dict, markdown: str | None = None,
                  results_dir: Path | str | None = None) -> list[Path]:
    """Write ``{stem}.json`` (and ``{stem}.md``) atomically under ``results_dir``."""
    from sklearn_ltm._utils import atomic_write

    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    written = []
    path = folder / f"{stem}.json"
    with atomic_write(path, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=False, allow_nan=True)
        fh.write("\n")
    written.append(path)
    if markdown is not None:
        path = folder / f"{stem}.md"
        with atomic_write(path, "w") as fh:
            fh.write(markdown.rstrip() + "\n")
        written.append(path)
    return written


def publish(stem: str, payload: dict, markdown: str, results_dir=None) -> list[Path]:
    """Print the Markdown report and write ``{stem}.json`` / ``.md``; say where."""
    print(markdown)
    written = write_results(stem, payload, markdown, results_dir)
    print("wrote " + ", ".join(map(str, written)))
    return written
