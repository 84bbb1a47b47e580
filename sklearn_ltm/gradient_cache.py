r"""Exact large-batch training steps by gradient caching (the two-pass step).

The m-LTM plan couples every pair of a batch, so gradient accumulation over small batches
optimises a different objective. :func:`two_pass_step` keeps the objective of one batch of
``B`` pairs while only one micro-batch of activations is alive at a time:

1. embed the audio and the text of the batch in micro-batches of ``micro_batch_size`` without
   an autograd graph;
2. compute the cost, the plan and the loss on the full ``B x B`` problem from those
   embeddings (detached leaf tensors that require grad) and back-propagate it to them (and to
   whatever parameters the loss uses directly, such as the ground metric);
3. re-run each micro-batch with a graph and back-propagate its slice of the embedding
   gradient into the encoders.

Peak memory is one micro-batch of encoder activations plus the ``B x B`` problem, and the
parameter gradients are those of one pass over the whole batch.

Randomness. Dropout and SpecAugment draw from torch's global generators. Before the first
pass of each micro-batch the CPU generator state (and, when CUDA is initialised, the state of
every CUDA device's generator) is saved and it is restored for that micro-batch's second pass,
so both passes draw the same masks. After the step the generators are where a single forward
of the same micro-batches with a graph, followed by the loss, would have left them. What is
*not* reproduced is the layout of one call over the whole batch: a dropout layer called once on
``B`` rows draws its mask in another order than ``B / m`` calls on ``m`` rows, so such a mask
is a different (equally distributed) sample. Without random layers the gradients equal those of
one pass over the whole batch; with random layers they equal those of one pass that embeds the
same micro-batches with a graph. Other random sources (NumPy, Python's ``random``, explicit
``torch.Generator`` objects) are not saved: draw from torch's global generator, or pass
``check_replay`` to detect a mismatch.

Batch normalisation in training mode normalises each micro-batch by its own statistics (a
property of micro-batching, as on several GPUs); pass ``modules`` so that its running
statistics are updated once per micro-batch, not twice.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["check_micro_batch_size", "micro_batch_slices", "slice_batch", "two_pass_step"]


def check_micro_batch_size(micro_batch_size, batch_size):
    """Validate ``micro_batch_size`` against ``batch_size``; return it as an int (or None).

    Parameters
    ----------
    micro_batch_size : int or None
        Rows embedded at once; ``None`` means one pass over the whole batch.
    batch_size : int
        Rows (pairs) per batch.

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        When ``micro_batch_size`` is not an integer in ``[1, batch_size]``.

    Examples
    --------
    >>> check_micro_batch_size(128, 1024)
    128
    >>> check_micro_batch_size(None, 1024) is None
    True
    >>> check_micro_batch_size(2048, 1024)
    Traceback (most recent call last):
        ...
    ValueError: micro_batch_size=2048 is larger than batch_size=1024; give an integer in [1, 1024] or None (one pass).
    """
    if micro_batch_size is None:
        return None
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, numbers.Integral):
        raise ValueError(f"micro_batch_size={micro_batch_size!r} is not an integer; give an "
                         f"integer in [1, {batch_size}] or None (one pass).")
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size={micro_batch_size!r} is below 1; give an integer in "
                         f"[1, {batch_size}] or None (one pass).")
    if micro_batch_size > batch_size:
        raise ValueError(f"micro_batch_size={micro_batch_size!r} is larger than "
                         f"batch_size={batch_size}; give an integer in [1, {batch_size}] or "
                         "None (one pass).")
    return int(micro_batch_size)


def micro_batch_slices(n: int, micro_batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``micro_batch_size`` rows covering ``range(n)``.

    Examples
    --------
    >>> micro_batch_slices(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(start, min(start + micro_batch_size, n))
            for start in range(0, n, micro_batch_size)]


def _batch_len(batch) -> int:
    if isinstance(batch, Mapping):
        lengths = {key: _batch_len(value) for key, value in batch.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"the entries of a dict batch have different lengths {lengths}; "
                             "every entry must have one row per item.")
        return next(iter(lengths.values()))
    if isinstance(batch, tuple):
        lengths = [_batch_len(value) for value in batch if value is not None]
        if not lengths or len(set(lengths)) != 1:
            raise ValueError(f"the entries of a tuple batch have lengths {lengths}; every "
                             "entry that is not None must have one row per item.")
        return lengths[0]
    if isinstance(batch, torch.Tensor | np.ndarray):
        if batch.ndim == 0:
            raise ValueError("a batch tensor must have at least one dimension (the rows).")
        return int(batch.shape[0])
    try:
        return len(batch)
    except TypeError:
        raise TypeError(f"a batch must be a tensor, an array, a sequence, or a dict or tuple of "
                        f"those; got {type(batch).__name__}.") from None


def slice_batch(batch, rows: slice):
    """Rows ``rows`` of a batch: a tensor, array or sequence, or a dict or tuple of those.

    Dicts (token batches) and tuples (``(waveforms, lengths)``) are sliced entry by entry;
    ``None`` entries of a tuple stay ``None``.

    Examples
    --------
    >>> import torch
    >>> slice_batch({"input_ids": torch.arange(6).reshape(3, 2)}, slice(1, 3))
    {'input_ids': tensor([[2, 3],
            [4, 5]])}
    >>> slice_batch((torch.arange(4), None), slice(0, 2))
    (tensor([0, 1]), None)
    """
    if isinstance(batch, Mapping):
        return {key: slice_batch(value, rows) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(None if value is None else slice_batch(value, rows) for value in batch)
    return batch[rows]


def _rng_state():
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return torch.get_rng_state(), cuda


def _set_rng_state(state) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _buffers(modules) -> list[torch.Tensor]:
    if modules is None:
        return []
    if isinstance(modules, nn.Module):
        modules = [modules]
    seen, out = set(), []
    for module in modules:
        if not isinstance(module, nn.Module):
            raise TypeError(f"modules must be torch.nn.Module objects; got {type(module).__name__}.")
        for buffer in module.buffers():
            if id(buffer) not in seen:
                seen.add(id(buffer))
                out.append(buffer)
    return out


def _check_embeddings(out, rows: int, side: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"the {side} embedding function must return a floating-point tensor; got "
                        f"{type(out).__name__}{'' if not isinstance(out, torch.Tensor) else ' of dtype ' + str(out.dtype)}.")
    if out.ndim < 1 or out.shape[0] != rows:
        raise ValueError(f"the {side} embedding function returned shape {tuple(out.shape)} for "
                         f"a micro-batch of {rows} rows; it must return one row per item.")
    return out


def _first_pass(embed, batch, slices, side):
    states, chunks = [], []
    with torch.no_grad():
        for rows in slices:
            states.append(_rng_state())
            out = _check_embeddings(embed(slice_batch(batch, rows)), rows.stop - rows.start, side)
            chunks.append(out.detach())
    return states, torch.cat(chunks)


def _second_pass(embed, batch, slices, states, first, grad, side, check_replay):
    for rows, state in zip(slices, states):
        _set_rng_state(state)
        with torch.enable_grad():
            out = _check_embeddings(embed(slice_batch(batch, rows)), rows.stop - rows.start, side)
            if check_replay is not None:
                with torch.no_grad():
                    gap = float((out - first[rows]).abs().max()) if out.numel() else 0.0
                if not gap <= check_replay:
                    raise RuntimeError(
                        f"the second pass of the {side} micro-batch {rows.start}:{rows.stop} "
                        f"differs from its first pass by {gap:.3g} (> check_replay="
                        f"{check_replay:g}): the embedding function is not repeatable. Draw "
                        "randomness from torch's global generator (saved and restored per "
                        "micro-batch), not from NumPy, Python's random or your own "
                        "torch.Generator.")
            if out.requires_grad:
                out.backward(grad[rows].to(out.dtype))


def two_pass_step(embed_audio_fn: Callable, embed_text_fn: Callable,
                  loss_from_embeddings_fn: Callable, audio_batch, text_batch,
                  micro_batch_size: int | None, *, extra=None,
                  modules: nn.Module | Iterable[nn.Module] | None = None,
                  check_replay: float | None = None) -> torch.Tensor:
    """One exact large-batch training step: loss on the whole batch, activations per micro-batch.

    Back-propagates into ``.grad`` like ``loss.backward()`` (gradients accumulate: zero them
    before, step the optimiser after) and returns the detached loss. Audio is embedded before
    text, in order, micro-batch by micro-batch.

    Parameters
    ----------
    embed_audio_fn : callable
        ``embed_audio_fn(audio_rows) -> Tensor (n_rows, d)``: embeddings of a slice of
        ``audio_batch`` (same type as ``audio_batch``, see :func:`slice_batch`). It must
        depend on the slice only (the same rows twice give the same result under the same
        torch RNG state).
    embed_text_fn : callable
        ``embed_text_fn(text_rows) -> Tensor (n_rows, d)``, likewise for ``text_batch``.
    loss_from_embeddings_fn : callable
        ``loss_from_embeddings_fn(text_embeddings, audio_embeddings, extra) -> scalar Tensor``
        on the whole batch (for m-LTM: the cost, the OT plan and the KL loss; e.g. expand the
        clips' embeddings to pairs and call the loss with the clip ids carried in ``extra``).
    audio_batch, text_batch : Tensor, ndarray, sequence, or dict / tuple of those
        The batch, sliced along the first dimension; their lengths may differ (one row per
        clip and one per caption). An array of indices works too: the embedding function then
        loads those rows.
    micro_batch_size : int or None
        Rows embedded at once, in ``[1, max(len(audio_batch), len(text_batch))]``. ``None``,
        or a size covering both batches, runs one ordinary pass with a graph.
    extra : object, optional
        Passed to ``loss_from_embeddings_fn`` unchanged (for instance clip ids).
    modules : torch.nn.Module or iterable of them, optional
        Modules whose buffers (batch-norm running statistics) the first pass must leave
        unchanged, so that they are updated once per micro-batch, by the second pass.
    check_replay : float or None, default=None
        When a float, raise ``RuntimeError`` if a micro-batch's second-pass embeddings differ
        from its first-pass ones by more than this (a non-repeatable embedding function).

    Returns
    -------
    Tensor
        The loss, detached (0-dim).

    Raises
    ------
    ValueError
        ``micro_batch_size`` out of range (before any work), or an embedding function that
        returns the wrong number of rows.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ltm.losses import info_nce_loss
    >>> from sklearn_ltm.metric import pairwise_sq_euclidean
    >>> _ = torch.manual_seed(0)
    >>> audio_net, text_net = torch.nn.Linear(6, 3), torch.nn.Linear(5, 3)
    >>> audio, text = torch.randn(10, 6), torch.randn(10, 5)
    >>> def loss(t, a, groups):
    ...     return info_nce_loss(pairwise_sq_euclidean(t, a), groups)
    >>> value = two_pass_step(audio_net, text_net, loss, audio, text, 4, extra=torch.arange(10))
    >>> cached = audio_net.weight.grad.clone()
    >>> audio_net.weight.grad = None
    >>> loss(text_net(text), audio_net(audio), torch.arange(10)).backward()
    >>> torch.allclose(cached, audio_net.weight.grad, atol=1e-6)
    True
    """
    n_audio, n_text = _batch_len(audio_batch), _batch_len(text_batch)
    micro_batch_size = check_micro_batch_size(micro_batch_size, max(n_audio, n_text))
    if check_replay is not None and (isinstance(check_replay, bool)
                                     or not isinstance(check_replay, numbers.Real)
                                     or not check_replay >= 0):
        raise ValueError(f"check_replay={check_replay!r} is not accepted; give a float >= 0 "
                         "or None.")
    buffers = _buffers(modules)
    if micro_batch_size is None or micro_batch_size >= max(n_audio, n_text):
        audio_emb = _check_embeddings(embed_audio_fn(audio_batch), n_audio, "audio")
        text_emb = _check_embeddings(embed_text_fn(text_batch), n_text, "text")
        loss = loss_from_embeddings_fn(text_emb, audio_emb, extra)
        loss.backward()
        return loss.detach()

    saved_buffers = [b.detach().clone() for b in buffers]
    audio_slices = micro_batch_slices(n_audio, micro_batch_size)
    text_slices = micro_batch_slices(n_text, micro_batch_size)
    audio_states, audio_emb = _first_pass(embed_audio_fn, audio_batch, audio_slices, "audio")
    text_states, text_emb = _first_pass(embed_text_fn, text_batch, text_slices, "text")
    with torch.no_grad():
        for buffer, saved in zip(buffers, saved_buffers):
            buffer.copy_(saved)

    audio_leaf = audio_emb.requires_grad_(True)
    text_leaf = text_emb.requires_grad_(True)
    loss = loss_from_embeddings_fn(text_leaf, audio_leaf, extra)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError("loss_from_embeddings_fn must return a scalar (0-dim) tensor; got "
                         f"{type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}.")
    loss.backward()
    after_loss = _rng_state()
    # a side the loss does not use gets a zero gradient (its second pass still runs, so that
    # batch-norm statistics and the RNG end where a one-pass step leaves them)
    audio_grad = audio_leaf.grad if audio_leaf.grad is not None else torch.zeros_like(audio_leaf)
    text_grad = text_leaf.grad if text_leaf.grad is not None else torch.zeros_like(text_leaf)
    try:
        _second_pass(embed_audio_fn, audio_batch, audio_slices, audio_states, audio_emb,
                     audio_grad, "audio", check_replay)
        _second_pass(embed_text_fn, text_batch, text_slices, text_states, text_emb,
                     text_grad, "text", check_replay)
    finally:
        _set_rng_state(after_loss)
    return loss.detach()

