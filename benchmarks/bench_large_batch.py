"""Peak memory of the exact two-pass large-batch step against one pass, for B up to 4096.

What it does
------------
One training step (m-LTM loss, Adam) of a small but real audio-text model whose memory is
dominated by the audio encoder's activations: a log-mel front end on 0.5 s waveforms at
16 kHz, SpecAugment, two convolutions (16 and 32 channels) with pooling, the projection heads
and the Mahalanobis metric of :class:`sklearn_ltm.model.RetrievalModel`; the text side is
precomputed 384-dimensional features. For each batch size ``B`` it runs
:func:`sklearn_ltm.gradient_cache.two_pass_step` with ``--micro-batch`` rows per micro-batch,
and one ordinary pass (``micro_batch_size=None``) at every ``B`` whose predicted peak fits
``--budget-gib`` (the prediction is the two-pass peak at that ``B`` plus the activations of
the rows beyond one micro-batch, measured at the largest ``B`` run so far): one pass is shown at the
largest ``B`` that fits, and the rest are named as not run, never as measured.

Every configuration runs in a fresh subprocess, so a peak is that configuration's own:
``ru_maxrss`` (peak resident set size) on the CPU, ``torch.cuda.max_memory_allocated`` on a
GPU. The table also gives the step's increase over the process's peak before the step
(model, data, torch itself) and the step time (a ratio between rows of one run; the machine
is shared).

Run
---
``.venv/bin/python benchmarks/bench_large_batch.py`` (a few minutes on 2 CPU cores);
``--device cuda`` on a GPU; ``--help`` for the options.

Writes
------
``benchmarks/results/large_batch.json`` and ``large_batch.md`` (or under ``--results-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common
import torch
from torch import nn

TEXT_DIM = 384
EMBEDDING_DIM = 128
SAMPLE_RATE = 16000


class ConvAudioEncoder(nn.Module):
    """Log-mel, SpecAugment, conv(16) + ReLU + max-pool, conv(32) + ReLU, mean over time and
    frequency: activations of about 1 MB per 0.5 s clip, so memory grows with the batch."""

    def __init__(self):
        super().__init__()
        from sklearn_ltm.encoders.frontend import LogMelFrontEnd, SpecAugment

        self.frontend = LogMelFrontEnd(sample_rate=SAMPLE_RATE, n_fft=512, hop_length=160,
                                       n_mels=64, f_max=8000.0)
        self.augment = SpecAugment(time_masks=2, time_mask_width=10, freq_masks=2,
                                   freq_mask_width=8)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.output_dim = 32

    def forward(self, waveforms, lengths=None):
        mel, _ = self.frontend(waveforms, lengths)
        x = self.augment(mel[:, None])
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        return torch.relu(self.conv2(x)).mean(dim=(2, 3))


def measure(batch: int, micro_batch: int | None, clip_seconds: float, device: str) -> dict:
    """One step in this process; returns peak memory and time (call in a fresh process)."""
    import resource

    from sklearn_ltm.gradient_cache import two_pass_step
    from sklearn_ltm.losses import MLTMLoss
    from sklearn_ltm.model import RetrievalModel

    device = torch.device(device)
    torch.manual_seed(0)
    encoder = ConvAudioEncoder()
    model = RetrievalModel(encoder, None, encoder.output_dim, TEXT_DIM,
                           embedding_dim=EMBEDDING_DIM, metric="mahalanobis").to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = MLTMLoss(epsilon=0.05)
    gen = torch.Generator().manual_seed(1)
    waves = (0.1 * torch.randn(batch, int(clip_seconds * SAMPLE_RATE), generator=gen)).to(device)
    text = torch.randn(batch, TEXT_DIM, generator=gen).to(device)
    groups = torch.arange(batch, device=device)

    def embed_audio(rows):
        return model.embed_audio(model.encode_audio(rows))

    def loss_from_embeddings(t, a, extra):
        return loss_fn(model.cost(t, a), extra)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.max_memory_allocated(device)
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = two_pass_step(embed_audio, model.embed_text, loss_from_embeddings, waves, text,
                         micro_batch, extra=groups, modules=model)
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"batch": batch, "micro_batch": micro_batch, "device": str(device),
            "peak_bytes": int(peak), "before_step_bytes": int(before),
            "step_seconds": time.perf_counter() - t0, "loss": float(loss)}


def _run_fresh(batch, micro_batch, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--device", args.device,
           "--clip-seconds", str(args.clip_seconds), "--threads", str(args.threads),
           "--batch-sizes", str(batch), "--micro-batch", str(micro_batch or 0)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"configuration B={batch} micro={micro_batch} failed:\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args, log=print) -> list[dict]:
    rows = []
    budget = args.budget_gib * 2**30
    slope = None  # activation bytes per row beyond one micro-batch, from the largest B run
    for batch in sorted(args.batch_sizes):
        micro = min(args.micro_batch, batch)
        two = _run_fresh(batch, micro, args)
        two["mode"] = "two-pass"
        rows.append(two)
        log(f"  B={batch:5d} two-pass (micro {micro}): peak {two['peak_bytes'] / 2**30:.2f} GiB, "
            f"{two['step_seconds']:.1f} s")
        predicted = None if slope is None else two["peak_bytes"] + slope * (batch - micro)
        if predicted is not None and predicted > budget:
            rows.append({"batch": batch, "micro_batch": None, "mode": "one pass",
                         "not_run": True, "predicted_peak_bytes": int(predicted)})
            log(f"  B={batch:5d} one pass: not run, predicted {predicted / 2**30:.2f} GiB > "
                f"budget {args.budget_gib} GiB")
            continue
        one = _run_fresh(batch, None, args)
        one["mode"] = "one pass"
        rows.append(one)
        log(f"  B={batch:5d} one pass: peak {one['peak_bytes'] / 2**30:.2f} GiB, "
            f"{one['step_seconds']:.1f} s")
        if batch > micro:
            slope = max(0.0, (one["peak_bytes"] - two["peak_bytes"]) / (batch - micro))
    return rows


def render(payload: dict) -> str:
    cfg, prov = payload["config"], payload["provenance"]
    unit = "peak GPU memory allocated" if cfg["device"].startswith("cuda") else "peak RSS"
    table = []
    for r in payload["results"]:
        if r.get("not_run"):
            table.append([r["batch"], r["mode"], "-", "not run: predicted "
                          f"{r['predicted_peak_bytes'] / 2**30:.2f} GiB > budget "
                          f"{cfg['budget_gib']} GiB", "-", "-"])
            continue
        table.append([r["batch"], r["mode"], r["micro_batch"] or r["batch"],
                      f"{r['peak_bytes'] / 2**30:.2f}",
                      f"{(r['peak_bytes'] - r['before_step_bytes']) / 2**30:.2f}",
                      f"{r['step_seconds']:.1f}"])
    return "\n".join([
        "# Exact large batches: two-pass step vs one pass", "",
        f"Produced by `{prov['command']}` on {prov['date']}, torch {prov['torch']}, "
        f"{prov['machine']}, {cfg['threads']} torch thread(s), device {cfg['device']}.", "",
        f"One m-LTM training step (epsilon 0.05, Adam) of a log-mel + SpecAugment + 2-layer "
        f"conv audio encoder on {cfg['clip_seconds']} s clips at {SAMPLE_RATE} Hz, 384-d text "
        f"features, embedding {EMBEDDING_DIM}, Mahalanobis metric. Each row is a fresh "
        f"process; {unit} over the whole process, and its increase during the step. The "
        "two-pass step gives the gradient of one pass (tests/test_gradient_cache.py).", "",
        _common.markdown_table(["B", "step", "rows per pass", f"{unit} GiB",
                                "increase in the step GiB", "step s"], table), "",
        "Step times are from one shared machine: compare rows of this run only.",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Peak memory of the two-pass large-batch "
                                                 "step against one pass.")
    parser.add_argument("--batch-sizes", type=_common.positive_int, nargs="+",
                        default=[256, 1024, 4096])
    parser.add_argument("--micro-batch", type=int, default=128,
                        help="rows per micro-batch (0 with --worker: one pass)")
    parser.add_argument("--clip-seconds", type=float, default=0.5)
    parser.add_argument("--budget-gib", type=float, default=3.0,
                        help="run one pass only where its predicted peak fits this")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=_common.positive_int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per configuration")
    parser.add_argument("--results-dir", type=Path, default=_common.RESULTS_DIR)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"bench_large_batch: --device {args.device} asked for CUDA, which is not "
              "available here; nothing was measured.")
        return 0
    if args.micro_batch < (0 if args.worker else 1):
        parser.error(f"--micro-batch={args.micro_batch} must be >= 1")
    torch.set_num_threads(args.threads)
    if args.worker:
        (batch,) = args.batch_sizes
        print(json.dumps(measure(batch, args.micro_batch or None, args.clip_seconds,
                                 args.device)))
        return 0
    print(f"bench_large_batch on {args.device}, micro-batch {args.micro_batch}:")
    results = run(args)
    cfg = {"batch_sizes": args.batch_sizes, "micro_batch": args.micro_batch,
           "clip_seconds": args.clip_seconds, "budget_gib": args.budget_gib,
           "device": args.device, "threads": args.threads}
    payload = {"benchmark": "two-pass large-batch step: peak memory",
               "provenance": _common.provenance(__file__, argv, threads=args.threads),
               "config": cfg, "results": results}
    _common.publish("large_batch", payload, render(payload), args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
