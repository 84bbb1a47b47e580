r"""Training over several processes (torchrun, DistributedDataParallel) with a global OT plan.

Each rank embeds its shard of a global batch; :func:`all_gather_with_grad` collects the
embeddings of every rank so that the cost matrix and the OT plan cover the whole global batch,
and its backward pass sends every rank the gradient of its own rows. The helpers here are
thin layers over :mod:`torch.distributed`:

- :func:`init_from_env` joins the process group that ``torchrun`` describes in the
  environment (gloo on CPU, NCCL on CUDA) with a timeout, so that a dead or stuck rank makes
  the others fail with :class:`DistributedError` instead of hanging;
- :func:`get_rank`, :func:`get_world_size`, :func:`is_main_process`, :func:`barrier`;
- :func:`check_consistent`: a collective at start that fails on every rank when the ranks
  disagree on the data or the parameters;
- :func:`global_batch_order` and :func:`shard_batch`: the same batch order on every rank
  (from a seed and the epoch, independent of the world size) and each rank's contiguous shard;
- :func:`global_batch_loss`: gather, global cost, global plan, loss (the same value on every
  rank);
- :func:`average_gradients` and :func:`broadcast_parameters`: what DistributedDataParallel
  does, for steps that back-propagate more than once (the two-pass step of
  :mod:`sklearn_ltm.gradient_cache`).

Without a process group every helper acts as the single process of a world of size 1.

Gradient scale. Every rank computes the same global loss :math:`L`. The backward pass of
:func:`all_gather_with_grad` sums, over ranks, the gradients that arrive for each rank's rows,
so rank :math:`r` receives :math:`W\, \partial L / \partial e_r` for its embeddings
:math:`e_r`. Averaging the parameter gradients over the :math:`W` ranks (what DDP does, or
:func:`average_gradients`) then gives exactly :math:`\partial L / \partial \theta`, the
gradient of one process that holds the whole global batch.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "DistributedError",
    "all_gather_with_grad",
    "average_gradients",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "check_consistent",
    "check_global_batch_size",
    "get_rank",
    "get_world_size",
    "global_batch_loss",
    "gather_sharded",
    "global_batch_order",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "shard_batch",
    "shutdown",
]

#: Default timeout of collectives, in seconds.
DEFAULT_TIMEOUT = 600.0
_BACKENDS = ("auto", "gloo", "nccl")


class DistributedError(RuntimeError):
    """A collective failed: another rank died, exited early or did not answer in time."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run.

    Attributes
    ----------
    rank : int
        Global rank (0 is the main process).
    world_size : int
        Number of processes.
    local_rank : int
        Rank on this node (the GPU index with one process per GPU).
    backend : str or None
        ``"gloo"`` or ``"nccl"``; ``None`` for a single process without a process group.
    device : torch.device
        ``cuda:local_rank`` with NCCL, else the CPU.
    timeout : float
        Collective timeout in seconds.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device
    timeout: float

    @property
    def is_main_process(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised.

    Examples
    --------
    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank (0 without a process group).

    Examples
    --------
    >>> get_rank()
    0
    """
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group).

    Examples
    --------
    >>> get_world_size()
    1
    """
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, and in a single process: where validation, checkpoints, progress bars
    and saving happen.

    Examples
    --------
    >>> is_main_process()
    True
    """
    return get_rank() == 0


def _seconds(timeout) -> float:
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout={timeout!r} is not accepted; give a number of seconds > 0 "
                         "or a datetime.timedelta.")
    return float(timeout)


@contextlib.contextmanager
def _collective(what: str):
    """Turn the backend's error of a failed collective into a :class:`DistributedError`."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as exc:  # DistBackendError, gloo's "Connection closed by peer", timeouts
        raise DistributedError(
            f"{what} failed on rank {get_rank()} of {get_world_size()}: another rank died, "
            f"exited early or did not reach {what} within the timeout. Look at the other ranks' "
            f"logs for the first error. Backend error: {exc}"
        ) from exc


def _env_int(name: str, default=None) -> int:
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise ValueError(f"the environment variable {name} is not set; launch with torchrun "
                             "(which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and "
                             "MASTER_PORT) or set them yourself.")
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"the environment variable {name}={text!r} is not an integer.") from None


def init_from_env(backend: str = "auto", timeout=DEFAULT_TIMEOUT) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    Without ``RANK`` and ``WORLD_SIZE`` in the environment (a plain ``python`` run) nothing is
    initialised and the context of a single process is returned. Calling it again in an
    initialised process returns the current context.

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}, default="auto"
        ``"auto"``: NCCL when CUDA is available, else gloo. With NCCL each process uses
        the GPU ``LOCAL_RANK`` (one process per GPU).
    timeout : float or datetime.timedelta, default=600
        Seconds a collective waits for the other ranks before it fails with
        :class:`DistributedError` (on NCCL, asynchronous error handling is switched on so
        that the timeout also aborts a stuck GPU collective).

    Returns
    -------
    DistributedContext

    Raises
    ------
    ValueError
        An unknown backend, NCCL without CUDA, a bad timeout, or malformed torchrun variables.

    Examples
    --------
    >>> context = init_from_env()  # not under torchrun: one process, nothing initialised
    >>> context.world_size, context.rank, context.backend
    (1, 0, None)
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend={backend!r} is not accepted; use one of "
                         f"{', '.join(map(repr, _BACKENDS))}.")
    seconds = _seconds(timeout)
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs CUDA, which is not available here; use 'gloo' "
                         "on the CPU.")
    if is_distributed():
        backend = dist.get_backend()
        local_rank = _env_int("LOCAL_RANK", get_rank())
        device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        return DistributedContext(get_rank(), get_world_size(), local_rank, backend, device,
                                  seconds)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(0, 1, 0, None, torch.device("cpu"), seconds)
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world_size} are inconsistent: need "
                         "0 <= RANK < WORLD_SIZE.")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"the environment variable {name} is not set; launch with torchrun "
                             "or set MASTER_ADDR and MASTER_PORT (the rendezvous of rank 0).")
    device = torch.device("cpu")
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} "
                             "GPUs are visible; start one process per GPU "
                             "(torchrun --nproc-per-node=<number of GPUs>).")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    with _collective("joining the process group (init_process_group)"):
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=seconds))
    return DistributedContext(rank, world_size, local_rank, backend, device, seconds)


def shutdown() -> None:
    """Leave the process group (no-op without one).

    Examples
    --------
    >>> shutdown()
    """
    if is_distributed():
        dist.destroy_process_group()


def barrier(timeout=None) -> None:
    """Wait until every rank gets here; fail with :class:`DistributedError` after ``timeout``.

    On gloo this is :func:`torch.distributed.monitored_barrier`, whose error names the ranks
    that did not arrive; on NCCL a device barrier bounded by the process group's timeout.

    Parameters
    ----------
    timeout : float or datetime.timedelta, optional
        Seconds (default: the process group's timeout). Gloo only; NCCL uses the group's.

    Examples
    --------
    >>> barrier()  # a single process: returns at once
    """
    if not is_distributed() or get_world_size() == 1:
        return
    with _collective("barrier"):
        if dist.get_backend() == "gloo":
            wait = None if timeout is None else datetime.timedelta(seconds=_seconds(timeout))
            dist.monitored_barrier(timeout=wait, wait_all_ranks=True)
        elif dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _fingerprint(value):
    """A small, comparable summary of a value: arrays and tensors by shape, dtype and hash."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            digest = hashlib.sha1(repr(value.tolist()).encode()).hexdigest()[:12]
        else:
            digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:12]
        return f"array(shape={value.shape}, dtype={value.dtype}, sha1={digest})"
    if isinstance(value, dict):
        return {str(k): _fingerprint(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) > 16:
            digest = hashlib.sha1(repr(value).encode()).hexdigest()[:12]
            return f"{type(value).__name__}(len={len(value)}, sha1={digest})"
        return type(value)(_fingerprint(v) for v in value)
    if value is None or isinstance(value, bool | int | float | str | bytes | np.generic):
        return value
    return f"{type(value).__name__}: {repr(value)[:200]}"  # e.g. a module: by its repr


def check_consistent(**values) -> None:
    """Fail on every rank when the ranks do not pass equal values (a collective at start).

    Call it on every rank before training with what must agree: the data length, a hash of
    the data, the parameters (``estimator.get_params()``), the seed. Arrays and tensors are
    compared by shape, dtype and content hash, dicts and short sequences entry by entry,
    numbers and strings by value, other objects (a torch module) by type and ``repr``.

    Parameters
    ----------
    **values
        Named values that must be equal on every rank.

    Raises
    ------
    ValueError
        Naming each disagreeing value and what every rank passed.

    Examples
    --------
    >>> check_consistent(n_pairs=1000, epsilon=0.05)  # a single process always agrees
    """
    if not is_distributed() or get_world_size() == 1:
        return
    mine = {key: _fingerprint(value) for key, value in sorted(values.items())}
    gathered = [None] * get_world_size()
    with _collective("check_consistent (all_gather_object)"):
        dist.all_gather_object(gathered, mine)
    problems = []
    for key in sorted(set().union(*gathered)):
        per_rank = [g.get(key, "<missing>") for g in gathered]
        if any(v != per_rank[0] for v in per_rank[1:]):
            shown = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(per_rank))
            problems.append(f"{key} ({shown})")
    if problems:
        raise ValueError("the ranks of this distributed run disagree on "
                         + "; ".join(problems)
                         + ". Every rank must get the same data and parameters (same files, "
                           "same command line, same random_state).")


def check_global_batch_size(batch_size, world_size=None) -> int:
    """Validate a global batch size: an integer with at least 2 pairs per rank.

    Parameters
    ----------
    batch_size : int
        Pairs per global batch (all ranks together).
    world_size : int, optional
        Default: :func:`get_world_size`.

    Returns
    -------
    int

    Examples
    --------
    >>> check_global_batch_size(16, world_size=8)
    16
    >>> check_global_batch_size(12, world_size=8)
    Traceback (most recent call last):
        ...
    ValueError: a global batch of 12 pairs over 8 ranks gives fewer than 2 pairs per rank; use batch_size >= 16 (2 per rank) or fewer processes.
    """
    world_size = get_world_size() if world_size is None else world_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(f"batch_size={batch_size!r} is not an integer.")
    if batch_size < 2 * world_size:
        raise ValueError(f"a global batch of {batch_size} pairs over {world_size} ranks gives "
                         f"fewer than 2 pairs per rank; use batch_size >= {2 * world_size} "
                         "(2 per rank) or fewer processes.")
    return int(batch_size)


def global_batch_order(pairs, batch_size: int, *, seed: int, epoch: int,
                       world_size: int | None = None) -> list[np.ndarray]:
    """The global batches of one epoch: the same on every rank and for every world size.

    The pairs are shuffled by a generator seeded with ``(seed, epoch)`` and split into
    ``max(1, n // batch_size)`` batches of nearly equal size (the remainder is spread, not
    dropped). The order depends on ``seed``, ``epoch`` and ``batch_size`` only, so a run
    resumed on another number of processes sees the same global batches.

    Parameters
    ----------
    pairs : int or array-like of int
        The training pair indices (or their number ``n``: ``range(n)``).
    batch_size : int
        Pairs per global batch, at least 2 per rank.
    seed : int
        Shared seed (check it with :func:`check_consistent`).
    epoch : int
        Epoch number.
    world_size : int, optional
        Default: :func:`get_world_size`; only used to check the sizes.

    Returns
    -------
    list of ndarray of int

    Raises
    ------
    ValueError
        A global batch (or the whole training set) with fewer than 2 pairs per rank.

    Examples
    --------
    >>> [b.tolist() for b in global_batch_order(10, 4, seed=0, epoch=0, world_size=2)]
    [[4, 6, 2, 7, 3], [5, 9, 0, 8, 1]]
    """
    world_size = get_world_size() if world_size is None else int(world_size)
    check_global_batch_size(batch_size, world_size)
    pairs = np.arange(pairs) if np.ndim(pairs) == 0 else np.asarray(pairs)
    if pairs.dtype.kind not in "iu":
        raise ValueError(f"pairs must be integer indices; got dtype {pairs.dtype}.")
    if len(pairs) < 2 * world_size:
        raise ValueError(f"{len(pairs)} training pairs over {world_size} ranks give fewer than "
                         "2 pairs per rank; use more data or fewer processes.")
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = pairs[rng.permutation(len(pairs))]
    return np.array_split(order, max(1, len(order) // batch_size))


def shard_batch(batch, rank: int | None = None, world_size: int | None = None) -> np.ndarray:
    """This rank's contiguous part of a global batch (sizes differ by at most one).

    Concatenating the shards in rank order gives the global batch back, which is the order
    :func:`all_gather_with_grad` returns.

    Examples
    --------
    >>> import numpy as np
    >>> [shard_batch(np.arange(5), r, 2).tolist() for r in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    rank = get_rank() if rank is None else int(rank)
    world_size = get_world_size() if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is outside [0, {world_size}).")
    batch = np.asarray(batch)
    if len(batch) < world_size:
        raise ValueError(f"a batch of {len(batch)} items cannot be split over {world_size} "
                         "ranks; every rank needs at least one item.")
    return np.array_split(batch, world_size)[rank]


_MAX_DIMS = 8


def _gather_shapes(tensor: torch.Tensor) -> list[tuple[int, ...]]:
    if tensor.ndim > _MAX_DIMS or tensor.ndim == 0:
        raise ValueError(f"all_gather_with_grad takes tensors of 1 to {_MAX_DIMS} dimensions; "
                         f"got shape {tuple(tensor.shape)}.")
    code = torch.full((_MAX_DIMS + 1,), -1, dtype=torch.long, device=tensor.device)
    code[0] = tensor.ndim
    code[1:tensor.ndim + 1] = torch.tensor(tensor.shape, dtype=torch.long)
    codes = [torch.empty_like(code) for _ in range(get_world_size())]
    with _collective("all_gather_with_grad (shapes)"):
        dist.all_gather(codes, code)
    shapes = [tuple(int(v) for v in c[1:int(c[0]) + 1]) for c in codes]
    trailing = {s[1:] for s in shapes}
    if len(trailing) != 1:
        raise ValueError(f"all_gather_with_grad: the ranks' tensors differ beyond the first "
                         f"dimension: shapes {shapes}.")
    return shapes


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        shapes = _gather_shapes(tensor)
        sizes = [s[0] for s in shapes]
        longest = max(sizes)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[:tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        with _collective("all_gather_with_grad"):
            dist.all_gather(parts, padded.contiguous())
        ctx.sizes = sizes
        ctx.rank = get_rank()
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        with _collective("all_gather_with_grad (backward all_reduce)"):
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along the first dimension, keeping the gradient.

    Ranks may hold different numbers of rows (the tensors are padded to the longest, gathered
    and trimmed; the other dimensions must agree). The result, in rank order, is the same on
    every rank. Backward sums over ranks the gradient that each rank's loss sends to a rank's
    rows and returns its own rows' part: with the same loss on every rank, a rank receives
    ``world_size`` times the gradient of its rows, which averaging the parameter gradients
    (DDP, :func:`average_gradients`) turns into the exact gradient of the global loss. Every
    rank must call backward. Without a process group it returns ``tensor`` itself.

    Parameters
    ----------
    tensor : Tensor of shape (n_local, ...)

    Returns
    -------
    Tensor of shape (sum of n_local over ranks, ...)

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(3, 2)
    >>> all_gather_with_grad(x) is x  # a single process
    True
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"all_gather_with_grad takes a torch.Tensor; got {type(tensor).__name__}.")
    if not is_distributed() or get_world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)


def gather_sharded(fn, items) -> torch.Tensor:
    """``fn(items)`` computed in parts: each rank runs ``fn`` on its shard, all get the whole.

    For the frozen-encoder cache: every rank encodes ``1 / world_size`` of the clips (or
    captions) and receives the outputs of all of them, in the order of ``items``, without
    gradient.

    Parameters
    ----------
    items : array-like of shape (n,)
        What to compute (indices of clips or captions); the same on every rank, at least one
        per rank.
    fn : callable
        ``fn(shard) -> Tensor (len(shard), ...)``, with the same trailing shape on every rank.

    Returns
    -------
    Tensor of shape (n, ...)

    Examples
    --------
    >>> import numpy as np, torch
    >>> gather_sharded(lambda idx: torch.as_tensor(idx)[:, None] * 2.0, np.arange(3))
    tensor([[0.],
            [2.],
            [4.]])
    """
    shard = shard_batch(items)
    with torch.no_grad():
        out = fn(shard)
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != len(shard):
            raise ValueError(f"fn must return a tensor with one row per item of its shard "
                             f"({len(shard)} rows); got {getattr(out, 'shape', type(out))}.")
        return all_gather_with_grad(out.detach())


def global_batch_loss(text_embeddings, audio_embeddings, groups, *, cost_fn, loss_fn):
    """The loss of the global batch from this rank's embeddings: gather, cost, plan, loss.

    Parameters
    ----------
    text_embeddings, audio_embeddings : Tensor of shape (n_local, d)
        This rank's captions and the clip of each caption (one row per pair, in the order of
        :func:`shard_batch`).
    groups : int Tensor of shape (n_local,)
        Global clip ids of the pairs (equal ids on two ranks mean the same clip).
    cost_fn : callable
        ``cost_fn(text, audio) -> (B, B)`` on the gathered embeddings (the model's ground
        metric).
    loss_fn : callable
        ``loss_fn(cost, groups) -> scalar`` (an m-LTM, InfoNCE or triplet loss).

    Returns
    -------
    Tensor
        The global loss, identical on every rank. See the module notes for the gradient scale.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ltm.losses import MLTMLoss
    >>> from sklearn_ltm.metric import pairwise_sq_euclidean
    >>> t, a = torch.eye(4), torch.eye(4)
    >>> loss = global_batch_loss(t, a, torch.arange(4), cost_fn=pairwise_sq_euclidean,
    ...                          loss_fn=MLTMLoss(epsilon=0.01))
    >>> round(float(loss), 3)  # log 4: the plan is the ground truth
    1.386
    """
    if len(text_embeddings) != len(audio_embeddings) or len(groups) != len(text_embeddings):
        raise ValueError(f"text_embeddings ({len(text_embeddings)} rows), audio_embeddings "
                         f"({len(audio_embeddings)}) and groups ({len(groups)}) must have one "
                         "row per pair.")
    text = all_gather_with_grad(text_embeddings)
    audio = all_gather_with_grad(audio_embeddings)
    all_groups = all_gather_with_grad(torch.as_tensor(groups, device=text_embeddings.device))
    return loss_fn(cost_fn(text, audio), all_groups)


def _grad_buckets(parameters):
    buckets: dict = {}
    for p in parameters:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p)
    return buckets.values()


def average_gradients(parameters) -> None:
    """Average the parameter gradients over the ranks, in place (what DDP does in backward).

    Use it after a step that back-propagates several times (the two-pass step), where DDP's
    per-backward synchronisation does not fit. Parameters that require grad but got none get
    a zero gradient first, so that every rank reduces the same tensors. No-op in a single
    process.

    Parameters
    ----------
    parameters : torch.nn.Module or iterable of Parameter

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(2, 1)
    >>> layer(torch.ones(1, 2)).sum().backward()
    >>> average_gradients(layer)  # a single process: unchanged
    >>> layer.bias.grad
    tensor([1.])
    """
    params = parameters.parameters() if isinstance(parameters, torch.nn.Module) else parameters
    params = list(params)
    if not is_distributed() or get_world_size() == 1:
        return
    world = get_world_size()
    for bucket in _grad_buckets(params):
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        with _collective("average_gradients (all_reduce)"):
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for p in bucket:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (a picklable value: an early-stopping decision,
    a validation score, a checkpoint path).

    Examples
    --------
    >>> broadcast_object({"stop": True})  # a single process: the object itself
    {'stop': True}
    """
    if not is_distributed() or get_world_size() == 1:
        return obj
    box = [obj if get_rank() == src else None]
    with _collective("broadcast_object"):
        dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy the parameters and buffers of rank ``src`` to every rank (DDP does this at start).

    Examples
    --------
    >>> import torch
    >>> broadcast_parameters(torch.nn.Linear(2, 1))  # a single process: no-op
    """
    if not is_distributed() or get_world_size() == 1:
        return
    with torch.no_grad(), _collective("broadcast_parameters"):
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)
