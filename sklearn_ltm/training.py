"""The training loop of :class:`~sklearn_ltm.LTMRetriever`.

Batching of (caption, clip) pairs, frozen-encoder caching, optimisation (Adam, separate
learning rates for encoders and heads, gradient clipping, optional bf16 autocast on CUDA),
per-epoch validation with early stopping and restore of the best weights, checkpoints and a
progress bar. The estimator builds the pieces; this module runs them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._utils import atomic_write

__all__ = ["TrainingConfig", "AudioBatcher", "TextBatcher", "encode_all", "train_model"]


@dataclass
class TrainingConfig:
    """Settings of one training run (validated by the estimator)."""

    batch_size: int = 128
    max_epochs: int = 20
    learning_rate: float = 1e-3
    audio_encoder_learning_rate: float = 1e-5
    text_encoder_learning_rate: float = 1e-5
    metric_learning_rate: float | None = None
    weight_decay: float = 0.0
    gradient_clip: float | None = 2.0
    early_stopping: bool = True
    patience: int = 5
    freeze_audio_encoder: bool = False
    freeze_text_encoder: bool = False
    cache_frozen_encoders: bool = True
    num_workers: int = 0
    mixed_precision: bool = False
    verbose: int = 0
    checkpoint_path: str | None = None
    extra: dict = field(default_factory=dict)


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)


class AudioBatcher:
    """Raw audio batches, one row per clip: features, waveforms or files read on demand.

    Parameters
    ----------
    kind : {"features", "waveforms", "paths"}
    data : ndarray or list of str
        One row (or path) per clip.
    sample_rate : int or None
        Model rate, for files.
    max_seconds : float or None
        Crop length for files.
    """

    def __init__(self, kind: str, data, *, sample_rate=None, max_seconds=None):
        self.kind = kind
        self.data = data
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds

    def __len__(self):
        return len(self.data)

    def __call__(self, clip_indices):
        """Return ``(audio, lengths)`` for the clips ``clip_indices`` (lengths may be None)."""
        idx = np.asarray(clip_indices, dtype=np.int64)
        if self.kind == "paths":
            from .encoders import load_audio_batch

            waves, lengths, _ = load_audio_batch(
                [self.data[i] for i in idx], self.sample_rate, max_seconds=self.max_seconds,
                on_error="raise",
            )
            return torch.from_numpy(np.ascontiguousarray(waves)), torch.from_numpy(lengths)
        return torch.from_numpy(np.ascontiguousarray(self.data[idx])), None


class TextBatcher:
    """Raw caption batches: feature rows, or tokens from the text encoder's tokenizer."""

    def __init__(self, kind: str, data, tokenizer: Callable | None = None):
        self.kind = kind
        self.data = data
        self.tokenizer = tokenizer

    def __len__(self):
        return len(self.data)

    def __call__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        if self.kind == "strings":
            return self.tokenizer([self.data[i] for i in idx])
        return torch.from_numpy(np.ascontiguousarray(self.data[idx]))


def _autocast(device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


@torch.no_grad()
def encode_all(model, batcher, *, side: str, batch_size: int, device, embed: bool = True,
               mixed_precision: bool = False, cache: torch.Tensor | None = None,
               indices=None, progress: bool = False) -> torch.Tensor:
    """Encoder outputs (``embed=False``) or head embeddings of all rows, in eval mode.

    Parameters
    ----------
    model : RetrievalModel
    batcher : AudioBatcher or TextBatcher
    side : {"audio", "text"}
    batch_size : int
    device : torch.device
    embed : bool
        Apply the projection head after the encoder.
    mixed_precision : bool
        bf16 autocast for the encoder on CUDA.
    cache : Tensor or None
        Precomputed encoder outputs for all rows (frozen encoder): used instead of the encoder.
    indices : array-like or None
        Rows to encode (default all).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Tensor of shape (n, dim), on ``device``, float32.
    """
    was_training = model.training
    model.eval()
    n = len(batcher) if indices is None else len(indices)
    rows = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    out = []
    chunks = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"encoding {side}", unit="batch", leave=False)
    try:
        for start in chunks:
            sel = rows[start:start + batch_size]
            if cache is not None:
                enc = cache[torch.as_tensor(sel, device=cache.device)].to(device)
            else:
                raw = batcher(sel)
                with _autocast(device, mixed_precision):
                    if side == "audio":
                        audio, lengths = raw
                        enc = model.encode_audio(
                            audio.to(device), None if lengths is None else lengths.to(device)
                        )
                    else:
                        enc = model.encode_text(_to_device(raw, device))
                enc = enc.float()
            if embed:
                enc = model.embed_audio(enc) if side == "audio" else model.embed_text(enc)
            out.append(enc.float())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("nothing to encode: the input is empty.")
    return torch.cat(out)


def _param_groups(model: nn.Module, config: TrainingConfig):
    params = {"audio": [], "text": [], "metric": [], "head": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        side = name.split(".")[0].replace("_encoder", "")
        if side in ("audio", "text") and getattr(config, f"freeze_{side}_encoder"):
            continue
        params[side if side in params else "head"].append(p)
    groups = [{"params": params["head"], "lr": config.learning_rate}]
    rates = {"audio": config.audio_encoder_learning_rate,
             "text": config.text_encoder_learning_rate,
             "metric": config.learning_rate if config.metric_learning_rate is None
             else config.metric_learning_rate}
    for key, rate in rates.items():
        if params[key]:
            groups.append({"params": params[key], "lr": rate})
    return groups


class _ClipBatches(torch.utils.data.Dataset):
    """The audio of each batch's clips, so a DataLoader can read files in workers."""

    def __init__(self, audio: AudioBatcher, clip_batches):
        self.audio = audio
        self.clip_batches = clip_batches

    def __len__(self):
        return len(self.clip_batches)

    def __getitem__(self, i):
        return self.audio(self.clip_batches[i])


def _audio_stream(audio: AudioBatcher, clip_batches, num_workers: int, device):
    """Yield ``(audio, lengths)`` per batch: read in ``num_workers`` worker processes when
    the audio is files (pinned memory on CUDA), else in this process; ``None`` forever
    when the audio comes from a cache."""
    if clip_batches is None:
        while True:
            yield None
    if audio.kind != "paths" or num_workers == 0:
        for clips in clip_batches:
            yield audio(clips)
        return
    loader = torch.utils.data.DataLoader(
        _ClipBatches(audio, clip_batches), batch_size=None, shuffle=False,
        num_workers=num_workers, pin_memory=device.type == "cuda",
        # its own generator: starting workers must not consume the global torch RNG that
        # SpecAugment and dropout draw from, or the workers would change the model
        generator=torch.Generator().manual_seed(0),
    )
    yield from loader


def _epoch_batches(train_pairs: np.ndarray, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(train_pairs)
    n_batches = max(1, len(order) // batch_size)
    # Spread the remainder over the batches instead of dropping it or making a tiny batch.
    return [b for b in np.array_split(order, n_batches) if len(b) >= 2]


def _save_checkpoint(path, state: dict) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)


def train_model(model, *, audio: AudioBatcher, text: TextBatcher, clip_of_pair: np.ndarray,
                train_pairs: np.ndarray, loss_fn: nn.Module, config: TrainingConfig,
                device, rng: np.random.Generator,
                validate: Callable[[], dict] | None = None, monitor: str | None = None,
                resume_state: dict | None = None) -> list[dict]:
    """Train ``model`` in place and return the per-epoch history.

    Parameters
    ----------
    model : RetrievalModel
        On ``device`` already.
    audio : AudioBatcher
        One row per clip.
    text : TextBatcher
        One row per pair.
    clip_of_pair : ndarray of int
        Clip index of each pair (into ``audio``).
    train_pairs : ndarray of int
        Pairs used for training (noise already applied by the caller).
    loss_fn : torch.nn.Module
        ``loss_fn(cost, groups) -> scalar``.
    config : TrainingConfig
    device : torch.device
    rng : numpy.random.Generator
        Batch order.
    validate : callable or None
        Returns a dict of validation metrics (greater is better for ``monitor``).
    monitor : str or None
        Key of ``validate()``'s dict used for early stopping and best-weights restore.
    resume_state : dict or None
        A checkpoint written by a previous run (``config.checkpoint_path``): training goes
        on from the epoch after it.

    Returns
    -------
    history : list of dict
        One dict per epoch: ``epoch``, ``train_loss``, validation metrics, ``time``.
    """
    frozen_cache = {}
    model.to(device)
    needed_clips = np.unique(clip_of_pair[train_pairs])
    if config.freeze_audio_encoder and audio.kind != "features" and config.cache_frozen_encoders:
        enc = encode_all(model, audio, side="audio", batch_size=config.batch_size, device=device,
                         embed=False, mixed_precision=config.mixed_precision,
                         indices=needed_clips, progress=config.verbose > 0)
        cache = torch.zeros((len(audio), enc.shape[1]), device=device)
        cache[torch.as_tensor(needed_clips, device=device)] = enc
        frozen_cache["audio"] = cache
    if config.freeze_text_encoder and text.kind == "strings" and config.cache_frozen_encoders:
        enc = encode_all(model, text, side="text", batch_size=config.batch_size, device=device,
                         embed=False, mixed_precision=config.mixed_precision,
                         indices=train_pairs, progress=config.verbose > 0)
        cache = torch.zeros((len(text), enc.shape[1]), device=device)
        cache[torch.as_tensor(train_pairs, device=device)] = enc
        frozen_cache["text"] = cache
    for side, flag in (("audio", config.freeze_audio_encoder), ("text", config.freeze_text_encoder)):
        for p in getattr(model, f"{side}_encoder").parameters():
            p.requires_grad_(not flag)

    optimizer = torch.optim.Adam(_param_groups(model, config), weight_decay=config.weight_decay)
    history: list[dict] = []
    best_score, best_state, bad_epochs, start_epoch = -math.inf, None, 0, 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        history = list(resume_state["history"])
        best_score = float(resume_state["best_score"])
        best_state = resume_state.get("best_model")
        bad_epochs = int(resume_state["bad_epochs"])
        start_epoch = int(resume_state["epoch"]) + 1
        rng.bit_generator.state = resume_state["rng_state"]

    progress = None
    if config.verbose > 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.max_epochs, initial=start_epoch, desc="m-LTM training",
                        unit="epoch")
    try:
        for epoch in range(start_epoch, config.max_epochs):
            t0 = time.perf_counter()
            model.train()
            for side, frozen in (("audio", config.freeze_audio_encoder),
                                 ("text", config.freeze_text_encoder)):
                if frozen:
                    getattr(model, f"{side}_encoder").eval()
            losses = []
            batches = _epoch_batches(train_pairs, config.batch_size, rng)
            need_audio = "audio" not in frozen_cache
            for batch, loaded in zip(batches, _audio_stream(
                    audio, [np.unique(clip_of_pair[b]) for b in batches] if need_audio else None,
                    config.num_workers, device)):
                clips = clip_of_pair[batch]
                uniq, inverse = np.unique(clips, return_inverse=True)
                with _autocast(device, config.mixed_precision):
                    if "audio" in frozen_cache:
                        a_enc = frozen_cache["audio"][torch.as_tensor(uniq, device=device)]
                    else:
                        raw, lengths = loaded
                        with torch.set_grad_enabled(not config.freeze_audio_encoder):
                            a_enc = model.encode_audio(
                                raw.to(device), None if lengths is None else lengths.to(device)
                            )
                    if "text" in frozen_cache:
                        t_enc = frozen_cache["text"][torch.as_tensor(batch, device=device)]
                    else:
                        with torch.set_grad_enabled(not config.freeze_text_encoder):
                            t_enc = model.encode_text(_to_device(text(batch), device))
                a_emb = model.embed_audio(a_enc.float())[torch.as_tensor(inverse, device=device)]
                t_emb = model.embed_text(t_enc.float())
                cost = model.cost(t_emb, a_emb)
                groups = torch.as_tensor(clips, device=device)
                loss = loss_fn(cost, groups)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the training loss became {loss.item()} at epoch {epoch}; lower "
                        "learning_rate or raise epsilon."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.gradient_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
                optimizer.step()
                losses.append(loss.item())
            record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan}
            if validate is not None:
                record.update({f"val_{k}": float(v) for k, v in validate().items()})
            record["time"] = time.perf_counter() - t0
            history.append(record)
            improved = False
            if monitor is not None and f"val_{monitor}" in record:
                score = record[f"val_{monitor}"]
                if score > best_score:
                    best_score, improved, bad_epochs = score, True, 0
                    best_state = copy.deepcopy({k: v.detach().cpu()
                                                for k, v in model.state_dict().items()})
                else:
                    bad_epochs += 1
            if progress is not None:
                progress.update(1)
                shown = {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "time")}
                progress.set_postfix(shown)
            if config.checkpoint_path:
                _save_checkpoint(config.checkpoint_path, {
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "best_score": best_score,
                    "best_model": best_state,
                    "bad_epochs": bad_epochs,
                    "epoch": epoch,
                    "rng_state": rng.bit_generator.state,
                })
            if config.early_stopping and monitor is not None and not improved \
                    and bad_epochs >= config.patience:
                break
    finally:
        if progress is not None:
            progress.close()
    if best_state is not None and config.early_stopping:
        model.load_state_dict(best_state)
    return history
