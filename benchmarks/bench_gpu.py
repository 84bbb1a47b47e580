"""GPU training throughput of the paper-sized model, and the m-LTM loss on the GPU.

What it does
------------
1. A short training run of the paper-sized model on synthetic data: PANNs ResNet38 (random
   weights) for audio, a BERT-base-sized text encoder (``transformers.BertConfig()`` defaults,
   random weights, nothing downloaded), projection heads and the Mahalanobis metric of
   :class:`sklearn_ltm.model.RetrievalModel`, the m-LTM loss, Adam; batch 256 of 10 s clips at
   32 kHz and 32-token captions. For bf16 autocast off and on: step time, clips per second and
   peak GPU memory. A configuration that runs out of memory is retried at half the batch (the
   table says which batch ran).
2. The m-LTM loss alone (cost -> entropic OT plan -> KL to the ground truth, forward and
   backward) at batch 256, 512 and 1024, full OT and partial OT (mass fraction 0.8).
   ``benchmarks/bench_transport.py --devices cuda`` compares it with POT.

3. ``--distributed``: the training step of 1. under torchrun with one process per GPU (NCCL):
   each rank embeds its shard of the global batch ``--batch-size``, the embeddings are
   gathered with gradient (:func:`sklearn_ltm.distributed.global_batch_loss`) so the OT plan
   covers the global batch, DistributedDataParallel averages the gradients (with
   ``--micro-batch``, the two-pass step of :mod:`sklearn_ltm.gradient_cache` and
   :func:`~sklearn_ltm.distributed.average_gradients` instead). It reports the step time and
   peak GPU memory of every rank. Started without torchrun, it launches itself with
   ``torchrun --standalone --nproc-per-node=<GPUs>`` (``--nproc`` to choose).

Without CUDA it prints why and exits 0 (nothing measured). ``--device cpu --tiny`` runs the
same code with tiny sizes on the CPU, to check that it works (with ``--distributed``: gloo,
2 processes).

Run
---
``.venv/bin/python benchmarks/bench_gpu.py`` on a CUDA machine (under 5 minutes on an H100);
``--help`` for the options.

Writes
------
``benchmarks/results/gpu.json`` and ``gpu.md`` on CUDA (``gpu_distributed.*`` with
``--distributed``; or where ``--output`` says); nothing with ``--tiny`` unless ``--output`` is
given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common
import torch
from torch import nn


class RandomBertTextEncoder(nn.Module):
    """A randomly initialised BERT wrapped to sklearn-ltm's text-encoder interface.

    ``tokenize(texts) -> dict`` (words hashed into the vocabulary: a stand-in tokenizer, no
    download) and ``forward(tokens) -> (batch, hidden_size)`` (the first token's state).
    """

    def __init__(self, config=None, max_length: int = 32):
        super().__init__()
        from transformers import BertConfig, BertModel

        self.config = config if config is not None else BertConfig()
        self.model = BertModel(self.config)
        self.output_dim = int(self.config.hidden_size)
        self.max_length = max_length

    def tokenize(self, texts) -> dict:
        vocab = self.config.vocab_size
        ids = [[101] + [1000 + hash(w) % (vocab - 1000) for w in t.split()][:self.max_length - 2]
               + [102] for t in texts]
        width = max(map(len, ids))
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward(self, tokens: dict) -> torch.Tensor:
        return self.model(**tokens).last_hidden_state[:, 0]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def build_model(cfg: dict, device):
    from transformers import BertConfig

    from sklearn_ltm.encoders import build_audio_encoder
    from sklearn_ltm.model import RetrievalModel

    audio = build_audio_encoder("resnet38")
    bert = BertConfig(**cfg["bert"])
    text = RandomBertTextEncoder(bert, max_length=cfg["n_tokens"])
    model = RetrievalModel(audio, text, audio.output_dim, text.output_dim,
                           embedding_dim=cfg["embedding_dim"], metric="mahalanobis")
    n_params = sum(p.numel() for p in model.parameters())
    return model.to(device), n_params


def synthetic_inputs(model, batch: int, cfg: dict, device, rows=None):
    """Waveforms and tokens of a synthetic batch (seeded: the same on every call); only the
    rows ``rows`` of it when given (a rank's shard)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    n_samples = int(cfg["clip_seconds"] * model.audio_encoder.sample_rate)
    waves = 0.1 * torch.randn(batch, n_samples, generator=gen)
    vocab = model.text_encoder.config.vocab_size
    tokens = {"input_ids": torch.randint(1000, vocab, (batch, cfg["n_tokens"]), generator=gen),
              "attention_mask": torch.ones(batch, cfg["n_tokens"], dtype=torch.long)}
    if rows is not None:
        waves, tokens = waves[rows], {k: v[rows] for k, v in tokens.items()}
    return waves.to(device), {k: v.to(device) for k, v in tokens.items()}


def _reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_steps(model, batch: int, bf16: bool, cfg: dict, device) -> dict:
    """Time ``cfg['steps']`` training steps after ``cfg['warmup']`` untimed ones."""
    from sklearn_ltm.losses import make_loss

    loss_fn = make_loss("mltm", epsilon=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    waves, tokens = synthetic_inputs(model, batch, cfg, device)
    groups = torch.arange(batch, device=device)
    model.train()
    _reset_peak_memory(device)
    times = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            a_enc = model.encode_audio(waves)
            t_enc = model.encode_text(tokens)
        cost = model.cost(model.embed_text(t_enc.float()), model.embed_audio(a_enc.float()))
        loss = loss_fn(cost, groups)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    out = {"batch": batch, "bf16": bf16, "step_seconds": step_s, "clips_per_second": batch / step_s,
           "final_loss": float(loss.detach())}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def training_benchmark(cfg: dict, device, log=print) -> list[dict]:
    rows = []
    for bf16 in (False, True):
        batch = cfg["batch_size"]
        while True:
            model, n_params = build_model(cfg, device)
            try:
                row = train_steps(model, batch, bf16, cfg, device)
                row["n_parameters"] = n_params
                row["requested_batch"] = cfg["batch_size"]
                rows.append(row)
                log(f"  bf16={bf16} batch {batch}: {row['step_seconds'] * 1e3:.0f} ms/step, "
                    f"{row['clips_per_second']:.0f} clips/s")
                break
            except RuntimeError as exc:
                if not _is_oom(exc) or batch <= 8:
                    raise
                log(f"  bf16={bf16} batch {batch}: out of memory, retrying at {batch // 2}")
                batch //= 2
            finally:
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def transport_benchmark(cfg: dict, device, log=print) -> list[dict]:
    from sklearn_ltm.losses import make_loss

    rows = []
    for size in cfg["transport_sizes"]:
        gen = torch.Generator(device="cpu").manual_seed(size)
        text = nn.functional.normalize(torch.randn(size, cfg["embedding_dim"], generator=gen), dim=1)
        audio = nn.functional.normalize(text + 0.5 * torch.randn(text.shape, generator=gen), dim=1)
        text, audio = text.to(device), audio.to(device).requires_grad_(True)
        groups = torch.arange(size, device=device)
        for mass in (1.0, 0.8):
            loss_fn = make_loss("mltm", epsilon=0.05, mass_fraction=mass)
            times = []
            for rep in range(cfg["transport_repeats"] + 1):
                audio.grad = None
                _sync(device)
                t0 = time.perf_counter()
                cost = ((text[:, None, :] - audio[None, :, :]) ** 2).sum(-1)
                loss_fn(cost, groups).backward()
                _sync(device)
                if rep:  # the first call warms up
                    times.append(time.perf_counter() - t0)
            rows.append({"batch": size, "mass_fraction": mass,
                         "forward_backward_ms": 1e3 * statistics.median(times)})
            log(f"  B={size} mass {mass}: {rows[-1]['forward_backward_ms']:.1f} ms")
    return rows


class _Towers(nn.Module):
    """What DDP wraps: ``forward`` embeds both sides, so DDP sees every parameter's use."""

    def __init__(self, model, bf16: bool):
        super().__init__()
        self.model, self.bf16 = model, bf16

    def embed_audio(self, waves):
        with torch.autocast(waves.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            enc = self.model.encode_audio(waves)
        return self.model.embed_audio(enc.float())

    def embed_text(self, tokens):
        with torch.autocast(tokens["input_ids"].device.type, dtype=torch.bfloat16,
                            enabled=self.bf16):
            enc = self.model.encode_text(tokens)
        return self.model.embed_text(enc.float())

    def forward(self, waves, tokens):
        return self.embed_audio(waves), self.embed_text(tokens)


def distributed_steps(cfg: dict, context, micro_batch, bf16: bool) -> dict:
    """Time ``cfg['steps']`` global-batch steps on this rank (under torchrun)."""
    import numpy as np

    from sklearn_ltm import distributed
    from sklearn_ltm.gradient_cache import two_pass_step
    from sklearn_ltm.losses import make_loss

    device = context.device
    torch.manual_seed(0)
    model, n_params = build_model(cfg, device)
    distributed.broadcast_parameters(model)
    towers = _Towers(model, bf16)
    ddp = None
    if micro_batch is None and context.world_size > 1:
        # DDP needs every trainable parameter to get a gradient, and find_unused_parameters
        # does not fit the metric, which is used after forward (in the gathered loss): keep
        # BERT's pooler, which the text encoder's forward does not use, out of training.
        pooler = getattr(model.text_encoder.model, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)
        ddp = torch.nn.parallel.DistributedDataParallel(
            towers, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = make_loss("mltm", epsilon=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    global_batch = distributed.check_global_batch_size(cfg["batch_size"])
    rows = torch.as_tensor(distributed.shard_batch(np.arange(global_batch)))
    waves, tokens = synthetic_inputs(model, global_batch, cfg, device, rows)  # this rank's shard
    groups = rows.to(device)

    def loss_from_embeddings(t, a, extra):
        return distributed.global_batch_loss(t, a, groups, cost_fn=model.cost, loss_fn=loss_fn)

    model.train()
    _reset_peak_memory(device)
    times = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        distributed.barrier()
        _sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        if micro_batch is not None:
            loss = two_pass_step(towers.embed_audio, towers.embed_text, loss_from_embeddings,
                                 waves, tokens, micro_batch, modules=model)
            distributed.average_gradients(model)
        else:
            a_emb, t_emb = (ddp or towers)(waves, tokens)
            loss = loss_from_embeddings(t_emb, a_emb, None)
            loss.backward()
            if ddp is None:
                distributed.average_gradients(model)
        optimizer.step()
        _sync(device)
        if step >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
    out = {"rank": context.rank, "world_size": context.world_size, "local_batch": len(rows),
           "global_batch": global_batch, "micro_batch": micro_batch, "bf16": bf16,
           "step_seconds": statistics.median(times), "final_loss": float(loss.detach()),
           "n_parameters": n_params,
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def render_distributed(payload: dict) -> str:
    cfg, prov = payload["config"], payload["provenance"]
    rows = [[r["rank"], r["local_batch"], r["global_batch"], r["micro_batch"] or "-",
             "on" if r["bf16"] else "off", f"{1e3 * r['step_seconds']:.0f}",
             f"{r['global_batch'] / r['step_seconds']:.0f}",
             f"{r.get('peak_memory_gib', float('nan')):.1f}"] for r in payload["ranks"]]
    return "\n".join([
        f"# Distributed training step ({payload['world_size']} x {payload['device_name']})", "",
        f"Produced by `{prov['command']}` on {prov['date']}, torch {prov['torch']}.", "",
        f"ResNet38 + BERT-base-sized encoder (random weights), {cfg['clip_seconds']} s clips, "
        f"{cfg['n_tokens']} tokens; m-LTM loss on the global batch (embeddings all-gathered "
        f"with gradient), Adam; median of {cfg['steps']} steps after {cfg['warmup']} warm-up "
        "steps.", "",
        _common.markdown_table(["rank", "rows on this rank", "global batch", "micro-batch",
                                "bf16", "ms / step", "global clips / s",
                                "peak GPU memory GiB"], rows),
    ])


def _emit(payload: dict, markdown: str, output, default_stem: str, publish_default: bool):
    """Write to ``output`` (a stem), else to ``results/<default_stem>`` when
    ``publish_default`` (a real GPU run), else only print."""
    if output is None and publish_default:
        output = _common.RESULTS_DIR / default_stem
    if output is None:
        print(markdown)
    else:
        _common.publish(output.name, payload, markdown, output.parent)


def _relaunch_under_torchrun(argv, nproc: int) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", os.path.abspath(__file__), *argv]
    print("bench_gpu: launching " + " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd).returncode


def distributed_main(args, argv, cfg) -> int:
    from sklearn_ltm import distributed

    if "RANK" not in os.environ:
        nproc = args.nproc or (torch.cuda.device_count() if args.device != "cpu" else 2)
        return _relaunch_under_torchrun(argv, nproc)
    context = distributed.init_from_env("gloo" if args.device == "cpu" else "nccl",
                                        timeout=args.timeout)
    try:
        if context.rank == 0:
            print(f"bench_gpu --distributed: {context.world_size} ranks, backend "
                  f"{context.backend}, global batch {cfg['batch_size']}", flush=True)
        row = distributed_steps(cfg, context, args.micro_batch, args.bf16)
        ranks = [None] * context.world_size
        torch.distributed.all_gather_object(ranks, row)
        if distributed.is_main_process():
            payload = {"benchmark": "distributed training step", "world_size": context.world_size,
                       "device_name": row["device_name"], "backend": context.backend,
                       "provenance": _common.provenance(__file__, argv),
                       "config": cfg, "ranks": ranks}
            _emit(payload, render_distributed(payload), args.output, "gpu_distributed",
                  context.backend == "nccl" and not args.tiny)
        distributed.barrier()
    finally:
        distributed.shutdown()
    return 0


def render(payload: dict) -> str:
    cfg, prov = payload["config"], payload["provenance"]
    train_rows = [[r["requested_batch"], r["batch"], "on" if r["bf16"] else "off",
                   f"{1e3 * r['step_seconds']:.0f}", f"{r['clips_per_second']:.0f}",
                   f"{r.get('peak_memory_gib', float('nan')):.1f}"] for r in payload["training"]]
    ot_rows = [[r["batch"], r["mass_fraction"], f"{r['forward_backward_ms']:.2f}"]
               for r in payload["transport"]]
    return "\n".join([
        f"# GPU benchmark ({payload['device_name']})", "",
        f"Produced by `{prov['command']}` on {prov['date']}, torch {prov['torch']}.", "",
        f"Training step: ResNet38 + BERT-base-sized encoder (random weights, "
        f"{payload['training'][0]['n_parameters'] / 1e6:.0f} M parameters), "
        f"{cfg['clip_seconds']} s clips, {cfg['n_tokens']} tokens, m-LTM loss, Adam; median of "
        f"{cfg['steps']} steps after {cfg['warmup']} warm-up steps.", "",
        _common.markdown_table(["requested batch", "batch run", "bf16", "ms / step", "clips / s",
                                "peak GPU memory GiB"], train_rows), "",
        "m-LTM loss alone (cost, entropic OT plan, KL; forward + backward), epsilon 0.05, "
        f"d = {cfg['embedding_dim']}, median of {cfg['transport_repeats']}:", "",
        _common.markdown_table(["batch", "mass fraction", "ms"], ot_rows),
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="GPU training throughput (ResNet38 + BERT-base, "
                                                 "bf16 off/on) and m-LTM loss timings.")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N "
                                                         "or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes (to check the code path, e.g. with --device cpu)")
    parser.add_argument("--batch-size", type=_common.positive_int, default=256)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=_common.positive_int, default=5)
    parser.add_argument("--warmup", type=_common.positive_int, default=2)
    parser.add_argument("--threads", type=_common.positive_int, default=None,
                        help="CPU torch threads (default: all cores)")
    parser.add_argument("--output", type=Path, default=None,
                        help="output stem (default on CUDA: benchmarks/results/gpu, or "
                             "gpu_distributed)")
    parser.add_argument("--distributed", action="store_true",
                        help="the training step under torchrun, one process per GPU, global "
                             "OT plan; step time and memory per rank")
    parser.add_argument("--nproc", type=_common.positive_int, default=None,
                        help="--distributed: processes (default: the GPUs; 2 with --device cpu)")
    parser.add_argument("--micro-batch", type=_common.positive_int, default=None,
                        help="--distributed: two-pass step with this many rows per micro-batch")
    parser.add_argument("--bf16", action="store_true", help="--distributed: bf16 autocast")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="--distributed: collective timeout in seconds")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.device == "auto":
        if not torch.cuda.is_available():
            print("bench_gpu: CUDA is not available on this machine; nothing was measured. "
                  "Run it on a CUDA machine, or check the code path with --device cpu --tiny.")
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench_gpu: --device {args.device} asked for CUDA, which is not available here.",
              file=sys.stderr)
        return 2
    threads = _common.set_threads(args.threads)
    cfg = {"batch_size": args.batch_size, "clip_seconds": args.clip_seconds,
           "steps": args.steps, "warmup": args.warmup, "n_tokens": 32, "embedding_dim": 1024,
           "bert": {}, "transport_sizes": [256, 512, 1024], "transport_repeats": 5,
           "tiny": args.tiny}
    if args.tiny:
        cfg.update(batch_size=min(args.batch_size, 4), clip_seconds=min(args.clip_seconds, 1.0),
                   steps=1, warmup=1, n_tokens=8, embedding_dim=32, transport_sizes=[16, 32],
                   transport_repeats=1,
                   bert={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 64, "vocab_size": 2000})
    if args.distributed:
        cfg.update(micro_batch=args.micro_batch, bf16=args.bf16)
        return distributed_main(args, argv, cfg)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"bench_gpu on {name}{' (tiny sizes)' if args.tiny else ''}")
    print("training steps:")
    training = training_benchmark(cfg, device)
    print("m-LTM loss:")
    transport = transport_benchmark(cfg, device)
    payload = {"benchmark": "GPU training throughput and m-LTM loss",
               "provenance": _common.provenance(__file__, argv, threads=threads), "device_name": name,
               "config": cfg, "training": training, "transport": transport}
    _emit(payload, render(payload), args.output, "gpu", device.type == "cuda" and not args.tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
