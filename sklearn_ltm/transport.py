r"""Entropic optimal transport in the log domain: balanced and partial, batched, differentiable.

Both solvers work on a batch of problems (any leading dimensions of ``cost``), keep the dtype
and device of ``cost``, and are differentiable with torch autograd. The iterations run on the
log-plan itself (log-domain Sinkhorn with absorption): every update adds a row or a column
offset to :math:`\log P`, so no kernel :math:`e^{-C/\varepsilon}` is ever formed and nothing
underflows, even in float32 with :math:`C/\varepsilon` around :math:`10^6`.

Gradients are obtained, by default, by implicit differentiation of the optimality conditions
(``differentiation="implicit"``): the iterations run without an autograd tape and the backward
pass solves one small dense linear system (size ``min(n, m)``, plus one for the partial
problem). ``"truncated"`` back-propagates through the last few iterations only and
``"unrolled"`` through all of them (memory grows with the iteration count).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

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
# the scaling loop (log domain, absorbed: the log-plan itself is updated)
# --------------------------------------------------------------------------------------------
#: float32 log-plans stop improving near this marginal error (rounding of log P itself).
_FLOAT32_STALL = 32 * torch.finfo(torch.float32).eps
#: A float32 solve asked for a tol below this finishes in float64.
_FLOAT32_TOL = 8 * torch.finfo(torch.float32).eps
#: Anneal epsilon when (cost range) / epsilon exceeds this ratio.
_ANNEAL_RATIO = 64.0
#: At most this many iterations at each intermediate epsilon when annealing ...
_ANNEAL_ITER = 50
#: ... stopping earlier once the marginal error is below this (or below ``tol``).
_ANNEAL_TOL = 1e-3
#: Newton steps are tried when the error is below this ...
_NEWTON_START = 1e-2
#: ... and shrank by less than this factor over ``check_every`` scaling iterations.
_SLOW_RATIO = 0.5
#: At most this many Newton steps per attempt (each must halve the error).
_NEWTON_STEPS = 8
#: Partial problems: at most this many active-set corrections per Newton step.
_ACTIVE_SET_ROUNDS = 4


def _log_weights(weights):
    """``log(weights)`` in float64 (``-inf`` for zero weights)."""
    return torch.log(weights.to(torch.float64))


def _violation(log_rows, log_a, f):
    """L1 row-marginal violation per problem, shape ``(...)`` (columns are exact).

    Balanced (``f is None``): ``sum_i |(P 1)_i - a_i|``. Partial: the mass that one more row
    projection would move, ``sum_i |r_i - min(a_i, r_i e^{-f_i})|``: it counts the excess over
    a capacity and the deficit of a row whose potential is < 0 (which must be saturated), so
    it is zero exactly at the optimum (the column step leaves the columns feasible and
    complementary, and the total mass exact).
    """
    rows = torch.exp(log_rows)
    if f is None:
        return (rows - torch.exp(log_a)).abs().sum(-1)
    target = torch.exp(torch.minimum(log_a, log_rows - f))
    target = torch.where(torch.isneginf(log_a), 0.0, target)  # zero-capacity rows hold 0
    return (rows - target).abs().sum(-1)


def _partial_block_step(log_sums, potential, log_capacity, mass):
    """Exact dual maximisation over one side's potentials (each <= 0) and the mass offset.

    With ``R_i`` the mass of row ``i`` when its potential is 0, the new row masses are
    ``min(a_i, R_i e^{d})`` where the offset ``d`` makes them sum to ``mass``: a monotone
    piecewise equation, solved exactly after sorting the saturation thresholds
    ``t_i = log a_i - log R_i``. Returns the log offset to add to each row of the log-plan and
    the new potentials ``min(0, t - d)``. All inputs are float64 ``(..., n)``.
    """
    zero = torch.isneginf(log_capacity)  # zero-capacity rows: -inf potential, never refilled
    log_free = torch.where(zero, 0.0, log_sums - potential)
    threshold = torch.where(zero, -math.inf, log_capacity - log_free)
    threshold_sorted, order = torch.sort(threshold, -1)
    capacity_sorted = torch.exp(log_capacity.gather(-1, order))
    before = torch.cumsum(capacity_sorted, -1) - capacity_sorted
    free_sorted = torch.where(zero, -math.inf, log_free).gather(-1, order)
    log_rest = torch.logcumsumexp(free_sorted.flip(-1), -1).flip(-1)
    mass_at = before + torch.exp(threshold_sorted + log_rest)
    k = (mass_at < mass).sum(-1, keepdim=True).clamp_max(threshold.shape[-1] - 1)
    remaining = (mass - before.gather(-1, k)).clamp_min(torch.finfo(torch.float64).tiny)
    offset = torch.log(remaining) - log_rest.gather(-1, k)
    new_potential = torch.minimum(threshold - offset, torch.zeros_like(threshold))
    step = new_potential - potential + offset
    step = torch.where(zero & torch.isneginf(potential), 0.0, step)
    return step, new_potential


def _scaling_loop(
    log_plan, log_a, log_b, mass, f, g, *, max_iter, tol, check_every, slow_ratio=None
):
    """Run row/column scalings on ``log_plan`` (modified in place when no graph is recorded).

    Parameters
    ----------
    log_plan : Tensor (..., n, m)
        Current log-plan (``-cost / epsilon`` plus row and column offsets).
    log_a, log_b : float64 Tensor (..., n), (..., m)
    mass : float or None
        ``None`` for the balanced problem; the transported mass for the partial one.
    f, g : float64 Tensor (..., n), (..., m), or None
        Partial only: the accumulated row/column log-scalings (each <= 0).
    slow_ratio : float, optional
        Return early (status ``"slow"``) when the error, below ``_NEWTON_START``, shrank by
        less than this factor since the previous check.

    Returns
    -------
    log_plan, f, g, n_iter, error (float or None when never measured), status
        ``status`` is ``"converged"``, ``"slow"`` or ``"max_iter"``.
    """
    inplace = not (torch.is_grad_enabled() and log_plan.requires_grad)
    partial = mass is not None
    dtype = log_plan.dtype
    error, status, n_iter = None, "max_iter", 0

    def add(x, offset):
        offset = offset.to(dtype)
        return x.add_(offset) if inplace else x + offset

    for it in range(max_iter):
        log_rows = torch.logsumexp(log_plan, -1).double()
        if it > 0 and it % check_every == 0:
            previous = error
            error = float(_violation(log_rows, log_a, f).detach().max())
            if error <= tol:
                status = "converged"
                break
            if (
                slow_ratio is not None
                and previous is not None
                and error < _NEWTON_START
                and error > slow_ratio * previous
            ):
                status = "slow"
                break
        if partial:
            step, f = _partial_block_step(log_rows, f, log_a, mass)
            log_plan = add(log_plan, step[..., None])
            log_cols = torch.logsumexp(log_plan, -2).double()
            step, g = _partial_block_step(log_cols, g, log_b, mass)
            log_plan = add(log_plan, step[..., None, :])
        else:
            step = log_a - log_rows
            step = torch.where(torch.isnan(step), 0.0, step)  # zero-weight rows stay at -inf
            log_plan = add(log_plan, step[..., None])
            step = log_b - torch.logsumexp(log_plan, -2).double()
            step = torch.where(torch.isnan(step), 0.0, step)
            log_plan = add(log_plan, step[..., None, :])
        n_iter = it + 1
    return log_plan, f, g, n_iter, error, status


def _final_error(log_plan, log_a, f):
    log_rows = torch.logsumexp(log_plan, -1).double()
    return float(_violation(log_rows, log_a, f).detach().max())


def _solve_gram(plan, rhs_rows, rhs_cols, rhs_mass, row_active, col_active, partial):
    r"""Solve the Gram system of the optimality conditions (float64, batched).

    With :math:`\log P_{ij} = f_i + g_j + h - C_{ij}/\varepsilon` and the active constraints
    (all rows/columns for the balanced problem; rows/columns whose potential is < 0 plus the
    total mass for the partial one), the Jacobian of the active marginals with respect to the
    potentials is :math:`H = \sum_{ij} P_{ij} \phi_{ij}\phi_{ij}^\top`
    (:math:`\phi_{ij} = (e_i, e_j, 1)` restricted to the active set). This returns
    :math:`(u, v, t)` with :math:`H (u, v, t) = (r_1, r_2, r_3)`, zero on inactive entries.
    It serves the implicit backward pass (right-hand side :math:`W 1, W^\top 1, 1^\top W 1`)
    and the Newton steps (right-hand side: the marginal residuals). The rows are eliminated
    (Schur complement), so the dense solve has size ``min(n, m)`` (+1 for the mass).
    """
    n, m = plan.shape[-2:]
    if n < m:  # eliminate the larger side
        v, u, t = _solve_gram(
            plan.transpose(-1, -2), rhs_cols, rhs_rows, rhs_mass, col_active, row_active, partial
        )
        return u, v, t
    alpha = row_active.to(plan.dtype)
    beta = col_active.to(plan.dtype)
    rows, cols = plan.sum(-1), plan.sum(-2)
    diag1 = alpha * rows + (1 - alpha)
    diag1 = diag1.clamp_min(torch.finfo(plan.dtype).tiny)
    coupling = plan * alpha[..., :, None] * beta[..., None, :]
    rhs1 = rhs_rows * alpha
    rhs2 = rhs_cols * beta
    diag2 = beta * cols + (1 - beta)
    if partial:
        coupling = torch.cat([coupling, (alpha * rows)[..., None]], -1)
        rhs2 = torch.cat([rhs2, rhs_mass[..., None]], -1)
        border = beta * cols
        h22 = torch.diag_embed(torch.cat([diag2, plan.sum((-1, -2))[..., None]], -1))
        h22[..., :m, m] = border
        h22[..., m, :m] = border
    else:
        h22 = torch.diag_embed(diag2)
    scaled = coupling / diag1[..., None]
    schur = h22 - scaled.transpose(-1, -2) @ coupling
    rhs = rhs2 - (scaled.transpose(-1, -2) @ rhs1[..., None])[..., 0]
    size = schur.shape[-1]
    if not partial:  # the balanced problem is invariant to (f + k, g - k): pin that direction
        schur = schur + (cols.mean(-1) / size)[..., None, None]
    ridge = 1e-12 * schur.diagonal(0, -2, -1).abs().amax(-1).clamp_min(1e-300)
    schur = schur + ridge[..., None, None] * torch.eye(size, dtype=plan.dtype, device=plan.device)
    x2 = torch.linalg.solve(schur, rhs[..., None])[..., 0]
    u = (rhs1 - (coupling @ x2[..., None])[..., 0]) / diag1 * alpha
    if partial:
        return u, x2[..., :m], x2[..., m]
    return u, x2, torch.zeros(plan.shape[:-2], dtype=plan.dtype, device=plan.device)


def _active_sets(plan, f, g):
    """Rows and columns whose constraint is an equality: all (balanced), potential < 0."""
    if f is None:
        rows = torch.ones(plan.shape[:-1], dtype=torch.bool, device=plan.device)
        cols = torch.ones(plan.shape[:-2] + plan.shape[-1:], dtype=torch.bool, device=plan.device)
        return rows, cols
    return f < 0, g < 0


def _newton_step(log_plan, log_a, log_b, mass, f, g):
    """One Newton step on the dual, then a row and a column scaling (new tensors).

    Partial problems: a projected (active-set) step. A saturated row or column whose
    potential the step would push above 0 leaves the active set with its potential fixed at
    0, and the system is solved again (a few rounds at most).
    """
    plan = log_plan.double().exp()
    rows, cols = plan.sum(-1), plan.sum(-2)
    residual_rows, residual_cols = torch.exp(log_a) - rows, torch.exp(log_b) - cols
    row_active, col_active = _active_sets(plan, f, g)
    if mass is None:
        u, v, t = _solve_gram(
            plan, residual_rows, residual_cols, None, row_active, col_active, False
        )
    else:
        residual_mass = mass - plan.sum((-1, -2))
        fixed_rows, fixed_cols = torch.zeros_like(f), torch.zeros_like(g)
        for _ in range(_ACTIVE_SET_ROUNDS):
            u, v, t = _solve_gram(
                plan,
                residual_rows - (plan @ fixed_cols[..., None])[..., 0],
                residual_cols - (fixed_rows[..., None, :] @ plan)[..., 0, :],
                residual_mass - (rows * fixed_rows).sum(-1) - (cols * fixed_cols).sum(-1),
                row_active,
                col_active,
                True,
            )
            leaving_rows, leaving_cols = row_active & (f + u > 0), col_active & (g + v > 0)
            if not (bool(leaving_rows.any()) or bool(leaving_cols.any())):
                break
            row_active, col_active = row_active & ~leaving_rows, col_active & ~leaving_cols
            fixed_rows = torch.where(~row_active & (f < 0), -f, 0.0)
            fixed_cols = torch.where(~col_active & (g < 0), -g, 0.0)
        u = torch.where(row_active, u, fixed_rows)
        v = torch.where(col_active, v, fixed_cols)
        new_f, new_g = (f + u).clamp_max(0.0), (g + v).clamp_max(0.0)
        u, v, f, g = new_f - f, new_g - g, new_f, new_g
    step = u[..., :, None] + v[..., None, :] + t[..., None, None]
    log_plan = log_plan + step.to(log_plan.dtype)
    log_plan, f, g, _, _, _ = _scaling_loop(
        log_plan, log_a, log_b, mass, f, g, max_iter=1, tol=-1.0, check_every=2
    )
    return log_plan, f, g


def _newton_polish(log_plan, log_a, log_b, mass, f, g, error, tol):
    """Newton steps while each one at least halves the error; the last good state."""
    n_steps = 0
    while error > tol and n_steps < _NEWTON_STEPS:
        candidate = _newton_step(log_plan, log_a, log_b, mass, f, g)
        new_error = _final_error(candidate[0], log_a, candidate[1])
        if not new_error <= 0.5 * error:  # also rejects NaN
            return log_plan, f, g, error, n_steps, False
        (log_plan, f, g), error, n_steps = candidate, new_error, n_steps + 1
    return log_plan, f, g, error, n_steps, True


def _epsilon_schedule(cost, epsilon, epsilon_scaling):
    """Decreasing epsilons ending at ``epsilon``: halvings from about the cost range."""
    if not epsilon_scaling:
        return [epsilon]
    spread = float((cost.amax((-1, -2)) - cost.amin((-1, -2))).max())
    ratio = spread / epsilon
    if ratio <= _ANNEAL_RATIO:
        return [epsilon]
    halvings = math.ceil(math.log2(ratio / _ANNEAL_RATIO))
    return [epsilon * 2.0**k for k in range(halvings, 0, -1)] + [epsilon]


def _iterate(cost, log_a, log_b, epsilon, mass, options):
    """Anneal (when useful), then iterate at ``epsilon`` until ``tol``.

    Records a graph when grad mode is on and an input requires grad. Returns
    ``(log_plan, f, g, info)``; ``log_plan`` is float64 when a float32 problem asked for a
    ``tol`` below what float32 log-plans reach.
    """
    partial = mass is not None
    schedule = _epsilon_schedule(cost.detach(), epsilon, options["epsilon_scaling"])
    log_plan = cost / -schedule[0]
    f = g = None
    if partial:
        f = torch.zeros(log_a.shape, dtype=torch.float64, device=cost.device)
        g = torch.zeros(log_b.shape, dtype=torch.float64, device=cost.device)
    loop = dict(log_a=log_a, log_b=log_b, mass=mass, check_every=options["check_every"])
    n_iter = 0
    for previous, current in zip(schedule[:-1], schedule[1:]):
        log_plan, f, g, n, _, _ = _scaling_loop(
            log_plan, f=f, g=g, max_iter=_ANNEAL_ITER, tol=max(options["tol"], _ANNEAL_TOL), **loop
        )
        n_iter += n
        ratio = previous / current  # same potentials, smaller epsilon
        log_plan = log_plan.mul_(ratio) if not log_plan.requires_grad else log_plan * ratio
        if partial:
            f, g = f * ratio, g * ratio
    budget, tol = options["max_iter"], options["tol"]
    promote = log_plan.dtype == torch.float32 and tol < _FLOAT32_TOL
    newton = options["newton"] and not torch.is_grad_enabled()
    error, status, n_newton = None, "max_iter", 0
    while budget > 0:
        log_plan, f, g, n, error, status = _scaling_loop(
            log_plan,
            f=f,
            g=g,
            max_iter=budget,
            tol=max(tol, _FLOAT32_STALL) if promote else tol,
            slow_ratio=_SLOW_RATIO if newton else None,
            **loop,
        )
        n_iter, budget = n_iter + n, budget - n
        if status == "max_iter" or (status == "converged" and not promote):
            break
        if promote:  # float32 stalls near 1e-6: finish in float64
            log_plan, promote = log_plan.double(), False
            if status == "converged":
                continue
        log_plan, f, g, error, steps, newton = _newton_polish(
            log_plan, log_a, log_b, mass, f, g, error, tol
        )
        n_newton += steps
        if error <= tol:
            status = "converged"
            break
    if status != "converged":
        with torch.no_grad():
            error = _final_error(log_plan, log_a, f)
    info = {"n_iter": n_iter, "n_newton": n_newton, "marginal_error": error}
    info["converged"] = error <= tol
    return log_plan, f, g, info


def _solve(cost, a, b, epsilon, mass, options):
    """Solve without recording a graph; return ``(log_plan, f, g, info)``."""
    with torch.no_grad():
        return _iterate(
            cost.detach(),
            _log_weights(a.detach()),
            _log_weights(b.detach()),
            epsilon,
            mass,
            options,
        )


# --------------------------------------------------------------------------------------------
# implicit differentiation
# --------------------------------------------------------------------------------------------
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
        row_active, col_active = _active_sets(plan, f, g)
        u, v, t = _solve_gram(
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

    info = {}
    mode = options["differentiation"]
    needs_graph = torch.is_grad_enabled() and (
        work.requires_grad or a.requires_grad or b.requires_grad
    )
    if not needs_graph:
        log_plan, _, _, info = _solve(work, a, b, epsilon, mass, options)
    elif mode == "implicit":
        log_plan = _ImplicitLogPlan.apply(work, a, b, epsilon, mass, options, info)
    elif mode == "unrolled":
        log_plan, _, _, info = _iterate(
            work, _log_weights(a), _log_weights(b), epsilon, mass, options
        )
    else:  # truncated: converge without a tape, then a few recorded iterations
        log_plan, f, g, info = _solve(work, a, b, epsilon, mass, options)
        log_plan = log_plan + ((work.detach() - work) / epsilon).to(log_plan.dtype)
        log_plan, _, _, n_extra, _, _ = _scaling_loop(
            log_plan,
            _log_weights(a),
            _log_weights(b),
            mass,
            f,
            g,
            max_iter=options["backprop_iter"],
            tol=-1.0,
            check_every=options["backprop_iter"] + 1,
        )
        info["n_iter"] += n_extra
    if not info["converged"]:
        warnings.warn(
            f"Sinkhorn did not reach tol={options['tol']:g} in max_iter={options['max_iter']} "
            f"iterations (marginal error {info['marginal_error']:.3g}); increase max_iter or "
            "epsilon.",
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
        ``1/m`` when None. Broadcast against the batch dimensions of ``cost``.
    max_iter : int, default=1000
        Maximum number of (row + column) iterations.
    tol : float, default=1e-6
        Stop when the L1 violation of the row marginals, ``sum_i |(P 1)_i - a_i|``, is at most
        ``tol`` in every problem of the batch (the columns are exact after each iteration).
        A float32 problem stalls near ``1e-6`` (rounding of the log-plan); a ``tol`` below
        ``8 * finfo(float32).eps`` (about ``9.5e-7``) finishes the iterations in float64.
    check_every : int, default=10
        Measure the violation every ``check_every`` iterations (each check synchronises a GPU).
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
        When the scaling iterations slow down (the error, below ``1e-2``, less than halves
        over ``check_every`` iterations: typical of nearly one-to-one plans), take Newton
        steps on the dual instead (one dense solve of size ``min(n, m)`` each, kept only when
        it halves the error): quadratic convergence where Sinkhorn needs thousands of
        iterations. Not used with ``differentiation="unrolled"``.
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
        Also return a dict with ``n_iter`` (scaling iterations), ``n_newton`` (Newton steps),
        ``marginal_error`` and ``converged``.

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
        Measure the residual every ``check_every`` iterations.
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
        Also return a dict with ``n_iter`` (scaling iterations), ``n_newton`` (Newton steps),
        ``marginal_error`` and ``converged``.

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
