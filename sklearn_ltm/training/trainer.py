"""The training loop: ``Trainer.fit`` -> ``run_epoch`` -> ``train_step`` -> loss.

Everything around the loop (validation, early stopping, checkpoints, LR schedule, frozen
encoder cache, progress bar, NaN guard) is a callback (:mod:`sklearn_ltm.training.callbacks`).
The loop itself knows batches, the optimizer and the random state, and can save and restore
all of it (:meth:`Trainer.state_dict`), so that a run resumed from a checkpoint continues
bitwise as the uninterrupted run would have.

Extension points
----------------
- ``step``: a callable ``step(trainer, batch) -> loss`` that computes the batch loss and
  its gradients (calls ``backward``) and returns the detached loss. The default,
  :func:`backprop_step`, is ``trainer.compute_loss(batch).backward()``; a two-pass large
  batch step (embed without graph, loss from embeddings, re-embed chunks) replaces it.
- :meth:`Trainer.embed_audio` / :meth:`Trainer.embed_text` / :meth:`Trainer.embed_batch`
  and :meth:`Trainer.loss_from_embeddings` are the two halves of :meth:`compute_loss`.
- subclass and override :meth:`train_step` or :meth:`run_epoch` for anything else.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..batching import AudioBatcher, TextBatcher, audio_stream, autocast, epoch_batches, to_device

__all__ = ["Batch", "Trainer", "TrainingData", "backprop_step", "param_groups"]

_CHECKPOINT_FORMAT = "sklearn-ltm-checkpoint"
_CHECKPOINT_VERSION = 2


@dataclass
class TrainingData:
    """What a :class:`Trainer` trains on.

    Parameters
    ----------
    audio : AudioBatcher
        One row per clip.
    text : TextBatcher
        One row per pair (captions already corrupted when ``noise_ratio > 0``).
    clip_of_pair : ndarray of int
        Clip (row of ``audio``) of each pair.
    train_pairs : ndarray of int
        The pairs trained on.
    """

    audio: AudioBatcher
    text: TextBatcher
    clip_of_pair: np.ndarray
    train_pairs: np.ndarray


@dataclass
class Batch:
    """One mini-batch.

    Attributes
    ----------
    pairs : ndarray of int
        The pairs (rows of the text batcher).
    clips : ndarray of int
        The distinct clips of those pairs (rows of the audio batcher), sorted.
    inverse : ndarray of int
        For each pair, its clip's position in ``clips``.
    groups : ndarray of int
        Clip id of each pair (``clips[inverse]``), what the loss calls groups.
    audio : tuple or None
        ``(raw audio of clips, lengths or None)``; ``None`` when the audio encoder's
        outputs are cached.
    """

    pairs: np.ndarray
    clips: np.ndarray
    inverse: np.ndarray
    groups: np.ndarray
    audio: tuple | None


def param_groups(model: nn.Module, learning_rates: dict, frozen=()) -> list[dict]:
    """Optimizer parameter groups of a RetrievalModel, one per part, with its rate.

    Parameters
    ----------
    model : RetrievalModel
    learning_rates : dict
        Rate of ``"head"``, ``"metric"``, ``"audio_encoder"`` and ``"text_encoder"``.
    frozen : collection of {"audio", "text"}
        Encoders left out (not trained).

    Returns
    -------
    list of dict
        ``{"params", "lr", "name"}`` for each part that has trainable parameters (the
        heads always come first).

    Examples
    --------
    >>> from sklearn_ltm.model import RetrievalModel
    >>> model = RetrievalModel(None, None, 4, 3, embedding_dim=2, metric="mahalanobis")
    >>> [(g["name"], g["lr"]) for g in param_groups(model, {"head": 0.1, "metric": 0.01,
    ...                                                      "audio_encoder": 0, "text_encoder": 0})]
    [('head', 0.1), ('metric', 0.01)]
    """
    params = {"audio_encoder": [], "text_encoder": [], "metric": [], "head": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = name.split(".")[0]
        if part in ("audio_encoder", "text_encoder") and part.split("_")[0] in frozen:
            continue
        params[part if part in params else "head"].append(p)
    groups = [{"params": params["head"], "lr": float(learning_rates["head"]), "name": "head"}]
    for key in ("audio_encoder", "text_encoder", "metric"):
        if params[key]:
            groups.append({"params": params[key], "lr": float(learning_rates[key]),
                           "name": key})
    return groups


def backprop_step(trainer: Trainer, batch: Batch) -> torch.Tensor:
    """The default step: the batch loss, back-propagated; returns it detached.

    Parameters
    ----------
    trainer : Trainer
    batch : Batch

    Returns
    -------
    Tensor
        Scalar.
    """
    loss = trainer.compute_loss(batch)
    loss.backward()
    return loss.detach()


def _rng_state(rng: np.random.Generator) -> dict:
    state = {
        "numpy_generator": rng.bit_generator.state,
        "numpy_global": _numpy_global_state(),
        "python": _python_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_global_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _python_state():
    version, internal, gauss_next = random.getstate()
    return {"version": version, "internal": list(internal), "gauss_next": gauss_next}


def _set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy_generator"]
    g = state["numpy_global"]
    np.random.set_state((g["name"], g["keys"].numpy().astype(np.uint32), g["pos"],
                         g["has_gauss"], g["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains a RetrievalModel on (caption, clip) pairs with callbacks.

    Parameters
    ----------
    model : RetrievalModel
    loss_fn : torch.nn.Module
        ``loss_fn(cost, groups) -> scalar`` (built by a loss component).
    optimizer : torch.optim.Optimizer
        Over :func:`param_groups` of ``model`` (each group has a ``name``).
    batch_size : int
    max_epochs : int
    device : torch.device
    rng : numpy.random.Generator
        Draws each epoch's batch order.
    callbacks : sequence of Callback
        Run in order of their ``order`` attribute (then as given).
    frozen : collection of {"audio", "text"}
        Encoders kept fixed (eval mode, no gradients).
    gradient_clip : float or None
        Maximum gradient norm before each optimizer step.
    mixed_precision : bool
        bf16 autocast of the encoders on CUDA.
    num_workers : int
        Worker processes reading audio files.
    step : callable or None
        ``step(trainer, batch) -> detached loss``, computing the gradients; default
        :func:`backprop_step`.
    is_main_process : bool
        False on the other ranks of a distributed run: callbacks that write files or
        print check it.
    verbose : int

    Attributes
    ----------
    history : list of dict
        One record per finished epoch.
    epoch : int
        The epoch running (or next to run).
    step_count : int
        Optimizer steps taken.
    encoder_cache : dict
        ``"audio"`` / ``"text"``: precomputed encoder outputs (set by FrozenEncoderCache).
    stop_training : bool
        Set by a callback to end training after the current epoch.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm.batching import AudioBatcher, TextBatcher
    >>> from sklearn_ltm.losses import MLTMLoss
    >>> from sklearn_ltm.model import RetrievalModel
    >>> rng = np.random.default_rng(0)
    >>> audio, text = rng.normal(size=(8, 5)).astype("f4"), rng.normal(size=(8, 3)).astype("f4")
    >>> model = RetrievalModel(None, None, 5, 3, embedding_dim=4, metric="mahalanobis")
    >>> data = TrainingData(AudioBatcher("features", audio), TextBatcher("features", text),
    ...                     clip_of_pair=np.arange(8), train_pairs=np.arange(8))
    >>> opt = torch.optim.Adam(param_groups(model, dict.fromkeys(
    ...     ["head", "metric", "audio_encoder", "text_encoder"], 1e-2)))
    >>> trainer = Trainer(model, MLTMLoss(), opt, batch_size=4, max_epochs=2,
    ...                   device=torch.device("cpu"), rng=rng)
    >>> [sorted(r) for r in trainer.fit(data)][0]
    ['epoch', 'lr_head', 'lr_metric', 'time', 'train_loss']
    """

    def __init__(self, model, loss_fn, optimizer, *, batch_size: int, max_epochs: int, device,
                 rng: np.random.Generator, callbacks=(), frozen=(), gradient_clip=None,
                 mixed_precision: bool = False, num_workers: int = 0, step=None,
                 is_main_process: bool = True, verbose: int = 0):
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.max_epochs = int(max_epochs)
        self.device = torch.device(device)
        self.rng = rng
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 50))
        self.frozen = frozenset(frozen)
        self.gradient_clip = gradient_clip
        self.mixed_precision = bool(mixed_precision)
        self.num_workers = int(num_workers)
        self.step = backprop_step if step is None else step
        self.is_main_process = bool(is_main_process)
        self.verbose = int(verbose)
        self.history: list[dict] = []
        self.epoch = 0
        self.step_count = 0
        self.batch_in_epoch = 0
        self.encoder_cache: dict = {}
        self.stop_training = False
        self.data: TrainingData | None = None
        self._epoch_order = None
        self._epoch_losses: list[float] = []

    # ------------------------------------------------------------------ events
    def notify(self, event: str, **info) -> None:
        """Call ``event`` on every callback with ``history``, ``model`` and ``info``."""
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(self, history=self.history, model=self.model, **info)

    # ------------------------------------------------------------------ the loop
    def fit(self, data: TrainingData, resume_state: dict | None = None) -> list[dict]:
        """Train ``self.model`` in place on ``data``; return the history.

        Parameters
        ----------
        data : TrainingData
        resume_state : dict or None
            A :meth:`state_dict` (a checkpoint): training continues exactly from it.

        Returns
        -------
        list of dict
            One record per epoch: ``epoch``, ``train_loss``, the callbacks' scores
            (``val_*``), ``time`` and ``lr_<group>`` (the rate of the epoch's last batch).
        """
        self.data = data
        self.model.to(self.device)
        for side in ("audio", "text"):
            for p in getattr(self.model, f"{side}_encoder").parameters():
                p.requires_grad_(side not in self.frozen)
        if resume_state is not None:
            self.load_state_dict(resume_state)
        try:
            self.notify("on_train_begin")
            if resume_state is not None:
                # after on_train_begin, whose work (the frozen cache) draws nothing, so
                # the next batch sees the random state the interrupted run had
                _set_rng_state(self.rng, resume_state["rng"])
            while self.epoch < self.max_epochs and not self.stop_training:
                self.run_epoch()
            self.notify("on_train_end")
        finally:
            for cb in self.callbacks:
                teardown = getattr(cb, "teardown", None)
                if teardown is not None:
                    teardown(self)
        return self.history

    def _set_train_mode(self):
        self.model.train()
        for side in self.frozen:
            getattr(self.model, f"{side}_encoder").eval()

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch."""
        return len(epoch_batches(np.asarray(self.data.train_pairs), self.batch_size))

    def run_epoch(self) -> dict:
        """Run (or finish, after a resume) one epoch; return its history record."""
        epoch, data = self.epoch, self.data
        if self.batch_in_epoch == 0:
            self._epoch_order = self.rng.permutation(data.train_pairs)
            self._epoch_losses = []
        t0 = time.perf_counter()
        self.notify("on_epoch_begin", epoch=epoch)
        self._set_train_mode()
        batches = epoch_batches(self._epoch_order, self.batch_size)[self.batch_in_epoch:]
        clip_of_pair = data.clip_of_pair
        clip_batches = None if "audio" in self.encoder_cache else [
            np.unique(clip_of_pair[b]) for b in batches]
        for pairs, loaded in zip(batches, audio_stream(data.audio, clip_batches,
                                                       self.num_workers, self.device)):
            groups = clip_of_pair[pairs]
            clips, inverse = np.unique(groups, return_inverse=True)
            batch = Batch(pairs=pairs, clips=clips, inverse=inverse, groups=groups, audio=loaded)
            self.notify("on_batch_begin", epoch=epoch, step=self.step_count, batch=batch)
            loss = self.train_step(batch)
            self._epoch_losses.append(loss)
            self.step_count += 1
            self.batch_in_epoch += 1
            self.notify("on_batch_end", epoch=epoch, step=self.step_count, loss=loss,
                        batch=batch)
        losses = self._epoch_losses
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan}
        self.notify("on_epoch_scores", epoch=epoch, record=record)
        record["time"] = time.perf_counter() - t0
        for group in self.optimizer.param_groups:
            record[f"lr_{group.get('name', 'group')}"] = float(group["lr"])
        self.history.append(record)
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        self.notify("on_epoch_end", epoch=epoch, record=record)
        return record

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on ``batch``: gradients by ``self.step``, clipping, update.

        Returns
        -------
        float
            The batch loss.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.step(self, batch)
        self.notify("on_after_backward", loss=loss, epoch=self.epoch)
        if self.gradient_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.gradient_clip)
        self.optimizer.step()
        return float(loss)

    # ------------------------------------------------------------------ the loss
    def embed_audio(self, batch: Batch) -> torch.Tensor:
        """Head embeddings of the batch's clips, ``(len(batch.clips), d)``, with graph."""
        model, device = self.model, self.device
        with autocast(device, self.mixed_precision):
            if "audio" in self.encoder_cache:
                enc = self.encoder_cache["audio"][torch.as_tensor(batch.clips, device=device)]
            else:
                raw, lengths = batch.audio
                with torch.set_grad_enabled(torch.is_grad_enabled() and "audio" not in self.frozen):
                    enc = model.encode_audio(raw.to(device),
                                             None if lengths is None else lengths.to(device))
        return model.embed_audio(enc.float())

    def embed_text(self, batch: Batch, pairs=None) -> torch.Tensor:
        """Head embeddings of the batch's captions (or of ``pairs``), ``(B, d)``."""
        model, device = self.model, self.device
        pairs = batch.pairs if pairs is None else pairs
        with autocast(device, self.mixed_precision):
            if "text" in self.encoder_cache:
                enc = self.encoder_cache["text"][torch.as_tensor(pairs, device=device)]
            else:
                with torch.set_grad_enabled(torch.is_grad_enabled() and "text" not in self.frozen):
                    enc = model.encode_text(to_device(self.data.text(pairs), device))
        return model.embed_text(enc.float())

    def embed_batch(self, batch: Batch):
        """``(text embeddings (B, d), audio embeddings per pair (B, d), groups (B,))``."""
        audio = self.embed_audio(batch)
        text = self.embed_text(batch)
        audio = audio[torch.as_tensor(batch.inverse, device=self.device)]
        return text, audio, torch.as_tensor(batch.groups, device=self.device)

    def loss_from_embeddings(self, text_embeddings, audio_embeddings, groups) -> torch.Tensor:
        """The batch loss from embeddings: ``loss_fn(model.cost(text, audio), groups)``."""
        return self.loss_fn(self.model.cost(text_embeddings, audio_embeddings), groups)

    def compute_loss(self, batch: Batch) -> torch.Tensor:
        """The loss of ``batch``, with graph."""
        return self.loss_from_embeddings(*self.embed_batch(batch))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything needed to resume bitwise: weights, optimizer, position, random
        states (numpy generator and global, Python, torch, CUDA) and callback states.
        Plain data and tensors only (readable with ``torch.load(weights_only=True)``)."""
        callbacks = {}
        for key, cb in self._callback_keys():
            state = getattr(cb, "state_dict", None)
            if state is not None:
                callbacks[key] = state()
        return {
            "format": _CHECKPOINT_FORMAT,
            "format_version": _CHECKPOINT_VERSION,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "history": [dict(r) for r in self.history],
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step_count": self.step_count,
            "stop_training": self.stop_training,
            "epoch_order": None if self._epoch_order is None or self.batch_in_epoch == 0
            else torch.as_tensor(np.asarray(self._epoch_order, dtype=np.int64)),
            "epoch_losses": list(self._epoch_losses) if self.batch_in_epoch else [],
            "rng": _rng_state(self.rng),
            "callbacks": callbacks,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (random states are restored by :meth:`fit`)."""
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            version = state.get("format_version") if isinstance(state, dict) else None
            raise ValueError(
                "this file is not a sklearn-ltm training checkpoint of format "
                f"{_CHECKPOINT_VERSION} (found format version {version!r}); checkpoints of "
                "sklearn-ltm 0.1 cannot be resumed by this version: start the run again.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [dict(r) for r in state["history"]]
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step_count = int(state["step_count"])
        self.stop_training = bool(state["stop_training"])
        order = state["epoch_order"]
        self._epoch_order = None if order is None else order.numpy()
        self._epoch_losses = list(state["epoch_losses"])
        saved = state.get("callbacks", {})
        for key, cb in self._callback_keys():
            if key in saved and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved[key])

    def _callback_keys(self):
        """``("EarlyStopping:0", callback), ...``: stable names of the callbacks' states."""
        seen: dict = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, -1) + 1
            yield f"{name}:{seen[name]}", cb
