r"""Entropic optimal transport in the log domain: balanced and partial, batched, differentiable.

Both solvers work on a batch of problems (any leading dimensions of ``cost``), keep the dtype
and device of ``cost``, and are differentiable with torch autograd. The iterations run on the
log-plan itself (log-domain Sinkhorn with absorption): every update adds a row or a column
offset to :math:`\log P`, so no kernel :math:`e^{-C/\varepsilon}` is ever formed and nothing
underflows, even in float32 with :math:`C/\varepsilon` around :math:`10^6`.

Without an autograd tape the scalings are applied to :math:`e^{\log P}` by matrix-vector
products and absorbed into :math:`\log P` whenever they grow (stabilised scaling), so an
iteration costs two products with the plan.

Gradients are obtained, by default, by implicit differentiation of the optimality conditions
(``differentiation="implicit"``): the iterations run without an autograd tape and the backward
pass solves one linear system of size ``min(n, m)`` (plus one for the partial problem): dense
up to 256, by conjugate gradients above. ``"truncated"`` back-propagates through the last few iterations only and
``"unrolled"`` through all of them (memory grows with the iteration count).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from . import _ot_scaling as _engine

__all__ = ["DIFFERENTIATION_MODES", "sinkhorn", "partial_sinkhorn"]

#: Accepted values of the ``differentiation`` argument.
DIFFERENTIATION_MODES = ("implicit", "truncated", "unrolled")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _check_cost(cost):
    """Return ``(cost_tensor, was_numpy)`` after checking type, shape and finiteness."""
    was_numpy = isinstance(cost, np.ndarray)
    if was_numpy:
        if cost.dtype.kind != "f":
            raise TypeError(
                f"cost has dtype {cost.dtype}; a floating-point array or tensor is required."
            )
        cost = torch.from_numpy(np.ascontiguousarray(cost))
    elif not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor or a numpy array; got {type(cost).__name__}.")
    if not cost.is_floating_point():
        raise TypeError(f"cost has dtype {cost.dtype}; a floating-point dtype is required.")
    if cost.ndim < 2 or cost.shape[-1] == 0 or cost.shape[-2] == 0:
        raise ValueError(
            f"cost has shape {tuple(cost.shape)}; expected (..., n, m) with n >= 1 and m >= 1."
        )
    finite = torch.isfinite(cost)
    if not bool(finite.all()):
        index = tuple(int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"cost contains a non-finite value ({cost[index].item()} at index {index}); "
            "every cost must be finite."
        )
    return cost, was_numpy


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a real number.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is not accepted; it must be finite and > 0.")
    return value


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer.")
    if value < minimum:
        raise ValueError(f"{name}={value!r} is not accepted; it must be >= {minimum}.")
    return int(value)


def _check_options(
    max_iter, tol, check_every, differentiation, backprop_iter, epsilon_scaling, newton
):
    max_iter = _check_int(max_iter, "max_iter", 1)
    check_every = _check_int(check_every, "check_every", 1)
    backprop_iter = _check_int(backprop_iter, "backprop_iter", 1)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol={tol!r} must be a real number.")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol={tol!r} is not accepted; it must be finite and >= 0.")
    if differentiation not in DIFFERENTIATION_MODES:
        raise ValueError(
            f"differentiation={differentiation!r} is not accepted; "
            f"use one of {', '.join(map(repr, DIFFERENTIATION_MODES))}."
        )
    return dict(
        max_iter=max_iter,
        tol=float(tol),
        check_every=check_every,
        differentiation=differentiation,
        backprop_iter=backprop_iter,
        epsilon_scaling=bool(epsilon_scaling),
        newton=bool(newton),
    )


def _check_weights(weights, name, shape, work):
    """Marginal weights broadcast to ``shape`` in dtype/device of ``work`` (graph kept)."""
    if weights is None:
        n = shape[-1]
        return torch.full(shape, 1.0 / n, dtype=work.dtype, device=work.device)
    if not isinstance(weights, torch.Tensor):
        try:
            weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a tensor or array of numbers; got {weights!r}."
            ) from exc
    if not (weights.is_floating_point() or weights.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} has dtype {weights.dtype}; numeric weights are required.")
    try:
        if torch.broadcast_shapes(weights.shape, shape) != torch.Size(shape):
            raise RuntimeError
    except RuntimeError:
        raise ValueError(
            f"{name} has shape {tuple(weights.shape)}, which does not match the cost: "
            f"expected a shape that broadcasts to {tuple(shape)}."
        ) from None
    bad = ~torch.isfinite(weights) | (weights < 0)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} contains {weights[index].item()} at index {index}; "
            "weights must be finite and >= 0."
        )
    weights = weights.to(dtype=work.dtype, device=work.device).expand(shape)
    total = weights.detach().sum(-1)
    if bool((total <= 0).any()):
        raise ValueError(f"{name} sums to 0 in at least one problem; some mass is required.")
    return weights


def _sum_rtol(dtype):
    return 1e-10 if dtype == torch.float64 else 1e-5


def _working_dtype(dtype):
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# --------------------------------------------------------------------------------------------
# solving one group of problems (flat batch, every weight > 0)
# --------------------------------------------------------------------------------------------
def _solve(cost, a, b, epsilon, mass, options):
    """Solve without recording a graph; return ``(log_plan, f, g, info)``."""
    with torch.no_grad():
        return _engine.iterate(
            cost.detach(),
            _engine.log_weights(a.detach()),
            _engine.log_weights(b.detach()),
            epsilon,
            mass,
            options,
        )


class _ImplicitLogPlan(torch.autograd.Function):
    """``log P`` from ``(cost, a, b)``; backward by implicit differentiation."""

    @staticmethod
    def forward(ctx, cost, a, b, epsilon, mass, options, info):
        log_plan, f, g, solve_info = _solve(cost, a, b, epsilon, mass, options)
        info.update(solve_info)
        ctx.epsilon, ctx.partial, ctx.dtype = epsilon, mass is not None, cost.dtype
        if mass is None:
            ctx.save_for_backward(log_plan)
        else:
            ctx.save_for_backward(log_plan, f, g)
        return log_plan

    @staticmethod
    def backward(ctx, grad_log_plan):
        saved = ctx.saved_tensors
        log_plan = saved[0]
        plan = log_plan.to(torch.float64).exp()
        grad = grad_log_plan.to(torch.float64)
        f, g = (saved[1], saved[2]) if ctx.partial else (None, None)
        row_active, col_active = _engine._active_sets(plan, f, g)
        u, v, t = _engine._solve_gram(
            plan,
            grad.sum(-1),
            grad.sum(-2),
            grad.sum((-1, -2)),
            row_active,
            col_active,
            ctx.partial,
        )
        grad_cost = None
        if ctx.needs_input_grad[0]:
            grad_cost = plan * (u[..., :, None] + v[..., None, :] + t[..., None, None]) - grad
            grad_cost = (grad_cost / ctx.epsilon).to(ctx.dtype)
        grad_a = u.to(ctx.dtype) if ctx.needs_input_grad[1] else None
        grad_b = v.to(ctx.dtype) if ctx.needs_input_grad[2] else None
        return grad_cost, grad_a, grad_b, None, None, None, None


def _solve_group(work, a, b, epsilon, mass, options):
    """``(log_plan, info)`` of a flat batch ``(k, n, m)`` of problems with positive weights."""
    mode = options["differentiation"]
    needs_graph = torch.is_grad_enabled() and (
        work.requires_grad or a.requires_grad or b.requires_grad
    )
    if not needs_graph:
        log_plan, _, _, info = _solve(work, a, b, epsilon, mass, options)
    elif mode == "implicit":
        info = {}
        log_plan = _ImplicitLogPlan.apply(work, a, b, epsilon, mass, options, info)
    elif mode == "unrolled":
        log_plan, _, _, info = _engine.iterate(
            work, _engine.log_weights(a), _engine.log_weights(b), epsilon, mass, options
        )
    else:  # truncated: converge without a tape, then a few recorded iterations
        log_plan, f, g, info = _solve(work, a, b, epsilon, mass, options)
        log_plan = log_plan + ((work.detach() - work) / epsilon).to(log_plan.dtype)
        log_a, log_b = _engine.log_weights(a), _engine.log_weights(b)
        for _ in range(options["backprop_iter"]):
            log_plan, f, g = _engine.sweep(log_plan, log_a, log_b, mass, f, g)
        info["n_iter"] += options["backprop_iter"]
        info["n_iter_per_problem"] = info["n_iter_per_problem"] + options["backprop_iter"]
    return log_plan, info


def _support_groups(a, b):
    """Split a flat batch by its pattern of positive weights.

    Returns None when every weight is positive, else a list of ``(problems, rows, cols)``
    index tensors: each group is solved on its support, zero-weight rows and columns get
    no mass (``log P = -inf``), so no logarithm of a zero weight enters the iterations.
    """
    row_support, col_support = a.detach() > 0, b.detach() > 0
    if bool(row_support.all()) and bool(col_support.all()):
        return None
    patterns, inverse = torch.unique(
        torch.cat([row_support, col_support], -1), dim=0, return_inverse=True
    )
    n = a.shape[-1]
    return [
        (
            (inverse == k).nonzero()[:, 0],
            pattern[:n].nonzero()[:, 0],
            pattern[n:].nonzero()[:, 0],
        )
        for k, pattern in enumerate(patterns)
    ]


def _merge_info(parts, count):
    """One info dict from those of the support groups (per-problem entries in batch order)."""
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    errors = torch.empty(count, dtype=torch.float64)
    iters = torch.empty(count, dtype=torch.int64)
    for problems, info in parts:
        errors[problems.cpu()] = info["marginal_error_per_problem"]
        iters[problems.cpu()] = info["n_iter_per_problem"]
    converged = torch.zeros(count, dtype=torch.bool)
    for problems, info in parts:
        converged[problems.cpu()] = info["converged_per_problem"]
    return {
        "n_iter": int(iters.max()),
        "n_newton": sum(info["n_newton"] for _, info in parts),
        "marginal_error": float(errors.max()),
        "converged": bool(converged.all()),
        "marginal_error_per_problem": errors,
        "converged_per_problem": converged,
        "n_iter_per_problem": iters,
    }


def _solve_flat(work, a, b, epsilon, mass, options):
    """Solve a flat batch, removing zero weights from each problem first."""
    groups = _support_groups(a, b)
    if groups is None:
        log_plan, info = _solve_group(work, a, b, epsilon, mass, options)
        return log_plan, _merge_info([(None, info)], work.shape[0])
    pieces, parts = [], []
    for problems, rows, cols in groups:
        sub = work[problems][:, rows][:, :, cols]
        log_plan, info = _solve_group(
            sub, a[problems][:, rows], b[problems][:, cols], epsilon, mass, options
        )
        pieces.append((problems, rows, cols, log_plan))
        parts.append((problems, info))
    dtype = max((p[3].dtype for p in pieces), key=lambda d: torch.finfo(d).bits)
    out = torch.full(work.shape, -math.inf, dtype=dtype, device=work.device)
    for problems, rows, cols, log_plan in pieces:
        out = out.index_put(
            (problems[:, None, None], rows[None, :, None], cols[None, None, :]),
            log_plan.to(dtype),
        )
    return out, _merge_info(parts, work.shape[0])


# --------------------------------------------------------------------------------------------
# public solvers
# --------------------------------------------------------------------------------------------
def _transport(cost, epsilon, a, b, mass, options, log_plan_out, return_info):
    cost, was_numpy = _check_cost(cost)
    epsilon = _check_positive(epsilon, "epsilon")
    out_dtype = cost.dtype
    work = cost.to(_working_dtype(cost.dtype))
    if not bool(torch.isfinite(work.detach().abs().amax() / epsilon)):
        raise ValueError(
            f"cost / epsilon overflows {work.dtype} (max |cost| = "
            f"{work.detach().abs().amax().item():.3g}, epsilon={epsilon}); rescale the cost."
        )
    batch = tuple(cost.shape[:-2])
    n, m = cost.shape[-2:]
    a = _check_weights(a, "a", batch + (n,), work)
    b = _check_weights(b, "b", batch + (m,), work)
    sum_a, sum_b = a.detach().sum(-1), b.detach().sum(-1)
    if mass is None:
        rtol = _sum_rtol(work.dtype)
        if not torch.allclose(sum_a, sum_b, rtol=rtol, atol=0.0):
            raise ValueError(
                f"a sums to {sum_a.flatten()[0].item():.10g} but b sums to "
                f"{sum_b.flatten()[0].item():.10g}; balanced transport needs equal totals "
                f"(relative tolerance {rtol:g}). Use partial_sinkhorn for unequal masses."
            )
    else:
        mass = _check_positive(mass, "mass")
        limit = float(torch.minimum(sum_a, sum_b).min())
        if mass > limit * (1 + _sum_rtol(work.dtype)):
            raise ValueError(
                f"mass={mass!r} is not accepted; it must lie in (0, min(sum a, sum b)] = "
                f"(0, {limit:.10g}]."
            )
        mass = min(mass, limit)

    flat = work.reshape((-1, n, m))
    log_plan, info = _solve_flat(
        flat, a.reshape((-1, n)), b.reshape((-1, m)), epsilon, mass, options
    )
    log_plan = log_plan.reshape(batch + (n, m))
    for key in ("marginal_error_per_problem", "converged_per_problem", "n_iter_per_problem"):
        info[key] = info[key].reshape(batch)
        if was_numpy:
            info[key] = info[key].numpy()
    if not info["converged"]:
        flags = torch.as_tensor(info["converged_per_problem"])
        missed = f"{int((~flags).sum())} of {flags.numel()} problems, " if batch else ""
        warnings.warn(
            f"Sinkhorn did not reach tol={options['tol']:g} in max_iter={options['max_iter']} "
            f"iterations ({missed}marginal error {info['marginal_error']:.3g}); increase "
            "max_iter or epsilon.",
            ConvergenceWarning,
            stacklevel=3,
        )
    out = (log_plan if log_plan_out else log_plan.exp()).to(out_dtype)
    if was_numpy:
        out = out.detach().numpy()
    return (out, info) if return_info else out


def sinkhorn(
    cost,
    epsilon,
    a=None,
    b=None,
    *,
    max_iter=1000,
    tol=1e-6,
    check_every=10,
    differentiation="implicit",
    backprop_iter=10,
    epsilon_scaling=True,
    newton=True,
    log_plan=False,
    return_info=False,
):
    r"""Entropic optimal transport plan by log-domain Sinkhorn iterations.

    Solves, for each problem in the batch,

    .. math::

        P^\star = \arg\min_{P \ge 0,\; P 1 = a,\; P^\top 1 = b}
        \langle P, C\rangle - \varepsilon H(P), \qquad H(P) = -\sum_{ij} P_{ij}(\log P_{ij} - 1).

    The optimum is :math:`P_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`; the iterations
    alternately normalise the rows and the columns of :math:`\log P` (log-sum-exp), so they
    stay finite for any :math:`\varepsilon > 0`.

    Parameters
    ----------
    cost : Tensor or ndarray of shape (..., n, m)
        Cost matrices; leading dimensions are a batch of independent problems. Must be finite
        and floating point. The result has the dtype and device of ``cost`` (float16 and
        bfloat16 are solved in float32); a numpy input gives a numpy output.
    epsilon : float
        Entropic regularisation, > 0 (same units as ``cost``).
    a, b : Tensor or array-like of shape (..., n) and (..., m), optional
        Non-negative marginal weights with equal totals per problem; uniform ``1/n`` and
        ``1/m`` when None. Broadcast against the batch dimensions of ``cost``. Rows and
        columns of zero weight are removed from the problem (it is solved on the support)
        and get no mass; their gradients are 0 in every ``differentiation`` mode.
    max_iter : int, default=1000
        Maximum number of (row + column) iterations.
    tol : float, default=1e-6
        Stop when the L1 violation of the row marginals, ``sum_i |(P 1)_i - a_i|``, is at most
        ``tol`` in every problem of the batch (the columns are exact after each iteration).
        A float32 problem stalls near ``1e-6`` (rounding of the log-plan); a ``tol`` below
        ``1e-5`` finishes the iterations in float64 (the plan returned is float32).
    check_every : int, default=10
        At most ``check_every`` iterations between two measurements of the violation (each
        synchronises a GPU). The first window is measured at ``check_every // 5`` and
        ``check_every // 2``; after that each problem's next check is where its observed
        rate of convergence reaches ``tol``, so it stops within an iteration or two of it.
        Every problem of a batch keeps its own schedule: it stops at the iteration it would
        stop at alone.
    differentiation : {"implicit", "truncated", "unrolled"}, default="implicit"
        How gradients reach ``cost``, ``a`` and ``b``. ``"implicit"`` (default): the iterations
        run without an autograd tape and the backward pass differentiates the optimality
        conditions (one dense solve of size ``min(n, m)``); exact at convergence, memory of one
        plan. ``"truncated"``: converge without a tape, then back-propagate through the last
        ``backprop_iter`` iterations only (an approximation). ``"unrolled"``: back-propagate
        through every iteration (exact for the iterate returned, memory grows with
        iterations). Gradients with respect to ``a`` and ``b`` are defined up to an additive
        constant (their totals must stay equal).
    backprop_iter : int, default=10
        Number of recorded iterations for ``differentiation="truncated"``.
    newton : bool, default=True
        When the scaling iterations slow down (the error of some problem less than halves
        over ``check_every`` iterations: typical of nearly one-to-one plans and of large
        ``cost / epsilon``), take Newton steps on the dual instead: one solve of size
        ``min(n, m)`` each (dense up to 256, conjugate gradients above), damped by a
        backtracking line search on the dual objective and bounded in size, so a step never
        makes a problem worse. Quadratic convergence where Sinkhorn needs thousands of
        iterations. Each step counts as one iteration of ``max_iter``. Not used with
        ``differentiation="unrolled"``.
    epsilon_scaling : bool, default=True
        When the cost range exceeds ``64 * epsilon``, start at a larger epsilon and halve it
        down to ``epsilon``, warm-starting each value and running it until the marginal error
        is below ``1e-3`` (at most 50 iterations each): the same solution, far fewer
        iterations when ``cost / epsilon`` is large. Annealing iterations are not counted in
        ``max_iter`` (they are in ``info["n_iter"]``).
    log_plan : bool, default=False
        Return :math:`\log P` instead of :math:`P` (finite even where :math:`P` underflows:
        use it for losses such as :math:`-\sum \hat P \log P`).
    return_info : bool, default=False
        Also return a dict with ``n_iter`` (scaling iterations, annealing included, of the
        slowest problem), ``n_newton`` (Newton steps), ``marginal_error`` (the largest over
        the batch), ``converged`` (every problem), and per problem, with the batch shape
        (tensors, or numpy arrays for a numpy ``cost``): ``marginal_error_per_problem``,
        ``converged_per_problem`` and ``n_iter_per_problem``. A problem that has converged
        leaves the batch: no more iterations are spent on it.

    Returns
    -------
    plan : Tensor or ndarray of shape (..., n, m)
        The transport plan (or its logarithm when ``log_plan=True``).
    info : dict
        Only when ``return_info=True``.

    Raises
    ------
    ValueError
        Non-finite cost, ``epsilon <= 0``, negative or non-finite weights, weights whose shape
        does not match the cost or whose totals differ, ``cost / epsilon`` overflowing.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When ``tol`` is not reached within ``max_iter`` iterations.

    See Also
    --------
    partial_sinkhorn : entropic partial transport (only a given mass is moved).
    ot.sinkhorn : POT's solver (``method="sinkhorn_log"`` gives the same plan).

    Examples
    --------
    >>> import torch
    >>> from sklearn_ltm.transport import sinkhorn
    >>> cost = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    >>> plan = sinkhorn(cost, epsilon=0.1)
    >>> plan
    tensor([[4.9998e-01, 2.2700e-05],
            [2.2700e-05, 4.9998e-01]], dtype=torch.float64)
    >>> plan.sum(0), plan.sum(1)
    (tensor([0.5000, 0.5000], dtype=torch.float64), tensor([0.5000, 0.5000], dtype=torch.float64))

    Batched and differentiable:

    >>> cost = torch.rand(4, 5, 3, requires_grad=True)
    >>> plan = sinkhorn(cost, 0.05, b=torch.tensor([0.2, 0.3, 0.5]))
    >>> plan.shape
    torch.Size([4, 5, 3])
    >>> (plan * cost).sum().backward()
    >>> cost.grad.shape
    torch.Size([4, 5, 3])
    """
    options = _check_options(
        max_iter, tol, check_every, differentiation, backprop_iter, epsilon_scaling, newton
    )
    return _transport(cost, epsilon, a, b, None, options, log_plan, return_info)


def partial_sinkhorn(
    cost,
    epsilon,
    mass,
    a=None,
    b=None,
    *,
    max_iter=1000,
    tol=1e-6,
    check_every=10,
    differentiation="implicit",
    backprop_iter=10,
    epsilon_scaling=True,
    newton=True,
    log_plan=False,
    return_info=False,
):
    r"""Entropic partial optimal transport plan, in the log domain.

    Solves, for each problem in the batch,

    .. math::

        P^\star = \arg\min_{P \ge 0,\; P 1 \le a,\; P^\top 1 \le b,\; 1^\top P 1 = s}
        \langle P, C\rangle - \varepsilon H(P),

    with :math:`s` = ``mass``, :math:`H(P) = -\sum_{ij} P_{ij}(\log P_{ij} - 1)`. The optimum
    is :math:`P_{ij} = \exp((f_i + g_j + h - C_{ij})/\varepsilon)` with :math:`f, g \le 0`;
    the iterations are exact block-coordinate ascent on that dual, alternating the row
    potentials with the mass offset :math:`h` (a sorted, closed-form step that makes the rows
    feasible and the total mass exact) and the column potentials with :math:`h`, written on
    :math:`\log P`: the same fixed point as POT's Dykstra iterations
    (:func:`ot.partial.entropic_partial_wasserstein`) but without its underflow at small
    ``epsilon`` (POT issue #723).

    Parameters
    ----------
    cost : Tensor or ndarray of shape (..., n, m)
        Finite cost matrices; leading dimensions are a batch. dtype and device are kept.
    epsilon : float
        Entropic regularisation, > 0.
    mass : float
        Total transported mass :math:`s`, in ``(0, min(sum a, sum b)]``.
    a, b : Tensor or array-like of shape (..., n) and (..., m), optional
        Non-negative capacities; uniform ``1/n`` and ``1/m`` when None (their totals may
        differ).
    max_iter : int, default=1000
        Maximum number of (row + column) iterations.
    tol : float, default=1e-6
        Stop when the KKT residual is at most ``tol`` in every problem: the L1 mass that one
        more row projection would move (it bounds the excess over the row capacities; the
        columns are within capacity and the total mass is exact after each iteration). Float32 as in :func:`sinkhorn`.
    check_every : int, default=10
        As in :func:`sinkhorn`.
    differentiation : {"implicit", "truncated", "unrolled"}, default="implicit"
        As in :func:`sinkhorn`. The implicit backward treats the rows and columns whose
        capacity is saturated as equality constraints.
    backprop_iter : int, default=10
        Number of recorded iterations for ``differentiation="truncated"``.
    newton, epsilon_scaling : bool, default=True
        As in :func:`sinkhorn`; the Newton steps are projected (active-set) steps here.
    log_plan : bool, default=False
        Return :math:`\log P` instead of :math:`P`.
    return_info : bool, default=False
        As in :func:`sinkhorn` (per-problem entries included).

    Returns
    -------
    plan : Tensor or ndarray of shape (..., n, m)
        The partial transport plan (or its logarithm).
    info : dict
        Only when ``return_info=True``.

    Raises
    ------
    ValueError
        As :func:`sinkhorn`, and ``mass`` outside ``(0, min(sum a, sum b)]``.

    See Also
    --------
    sinkhorn : balanced entropic transport.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ltm.transport import partial_sinkhorn
    >>> cost = torch.tensor([[0.0, 1.0], [1.0, 5.0]], dtype=torch.float64)
    >>> plan = partial_sinkhorn(cost, epsilon=0.1, mass=0.5)
    >>> plan
    tensor([[4.9995e-01, 2.2698e-05],
            [2.2698e-05, 9.6429e-23]], dtype=torch.float64)
    >>> round(plan.sum().item(), 6)
    0.5
    """
    options = _check_options(
        max_iter, tol, check_every, differentiation, backprop_iter, epsilon_scaling, newton
    )
    if mass is None:
        raise TypeError("mass=None is not accepted; give the transported mass as a number.")
    return _transport(cost, epsilon, a, b, mass, options, log_plan, return_info)
