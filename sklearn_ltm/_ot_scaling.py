r"""The iteration engine of :mod:`sklearn_ltm.transport` (private).

Log-domain scaling (Sinkhorn) sweeps written on the log-plan itself, epsilon annealing, damped
Newton steps on the dual (with a backtracking line search on the dual objective, so they are
safe far from the optimum), and the Gram solves shared by the Newton steps and the implicit
backward pass (dense below ``_DENSE_MAX``, conjugate gradients above).

Every function works on a flat batch: ``log_plan`` is ``(k, n, m)``, the log-weights
``(k, n)`` and ``(k, m)`` in float64, and every weight is > 0 (:mod:`~sklearn_ltm.transport`
removes zero weights from the problem before calling in). Problems of the batch that have
converged are retired from the working set (no more iterations are spent on them) and each
keeps its own error, flag and iteration count.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: A float32 solve asked for a tol below this finishes in float64 once float32 iterations stall
#: (near 1e-6: rounding of log P itself).
_FLOAT32_TOL = 1e-5
#: ... but plans of at most this many entries are solved in float64 from the start (their
#: iterations cost the same in either dtype, dispatch dominates).
_SMALL_PLAN = 256 * 256
#: Anneal epsilon when (cost range) / epsilon exceeds this ratio.
_ANNEAL_RATIO = 64.0
#: At most this many iterations at each intermediate epsilon when annealing ...
_ANNEAL_ITER = 50
#: ... stopping earlier once the marginal error is below this (or below ``tol``).
_ANNEAL_TOL = 1e-3
#: Newton steps are taken when the error of some problem shrank by less than this factor
#: over ``check_every`` scaling iterations.
_SLOW_RATIO = 0.5
#: ... or when, at the rate it shows, it would need more than this many more iterations.
_NEWTON_WORTH = 30
#: At most this many Newton steps in a row (each followed by one scaling sweep).
_NEWTON_STEPS = 12
#: After a Newton phase that did not halve the error, wait this many checks before the next.
_NEWTON_COOLDOWN = 5
#: A Newton step moves no entry of the log-plan by more than this.
_NEWTON_MAX_STEP = 30.0
#: Backtracking halvings of the Newton step.
_LINE_SEARCH_STEPS = 16
#: Armijo constant of the line search.
_ARMIJO = 1e-4
#: Partial problems: at most this many active-set corrections per Newton step.
_ACTIVE_SET_ROUNDS = 4
#: Gram systems larger than this are solved by conjugate gradients instead of densely.
_DENSE_MAX = 256
#: Conjugate gradients: relative residual and iteration cap.
_CG_RTOL = 1e-10
_CG_MAX_ITER = 1000
#: Newton directions need less: an inexact Newton step (the line search keeps it safe).
_NEWTON_CG_RTOL = 1e-4


def log_weights(weights):
    """``log(weights)`` in float64, ``-inf`` for zero weights, with a finite gradient."""
    weights = weights.to(torch.float64)
    positive = weights > 0
    return torch.where(positive, torch.log(torch.where(positive, weights, 1.0)), -math.inf)


def violation(log_rows, log_a, f):
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


def _partial_block_step(log_sums, potential, log_capacity, mass, uniform=None):
    """Exact dual maximisation over one side's potentials (each <= 0) and the mass offset.

    With ``R_i`` the mass of row ``i`` when its potential is 0, the new row masses are
    ``min(a_i, R_i e^{d})`` where the offset ``d`` makes them sum to ``mass``: a monotone
    piecewise equation, solved exactly after sorting the saturation thresholds
    ``t_i = log a_i - log R_i`` (in decreasing order: the rows that saturate last come
    first). Returns the log offset to add to each row of the log-plan and the new
    potentials ``min(0, t - d)``. All inputs are float64 ``(..., n)``; every capacity is > 0
    (the module's contract). ``uniform``, when every capacity of every problem is that one
    number, spares the sorting of the capacities. At the batch sizes of training the
    dispatch of these couple of dozen tensor operations, not arithmetic, is the cost.
    """
    n = log_sums.shape[-1]
    log_free = log_sums - potential
    threshold = log_capacity - log_free
    threshold_sorted, order = torch.sort(threshold, -1, descending=True)
    if uniform is None:  # capacity of the rows that saturate before each one
        capacity_sorted = torch.exp(log_capacity.gather(-1, order))
        before = capacity_sorted.sum(-1, keepdim=True) - torch.cumsum(capacity_sorted, -1)
    else:
        before = (uniform * _descending_ranks(n, log_sums.device)).expand_as(threshold)
    log_rest = torch.logcumsumexp(log_free.gather(-1, order), -1)
    mass_at = before + torch.exp(threshold_sorted + log_rest)
    k = (n - 1 - (mass_at < mass).sum(-1, keepdim=True)).clamp_min(0)
    remaining = (mass - before.gather(-1, k)).clamp_min(torch.finfo(torch.float64).tiny)
    offset = torch.log(remaining) - log_rest.gather(-1, k)
    new_potential = (threshold - offset).clamp_max(0.0)
    return new_potential - potential + offset, new_potential


_RANKS = {}


def _descending_ranks(n, device):
    """``n - 1, ..., 1, 0`` in float64 on ``device`` (cached)."""
    key = (n, str(device))
    if key not in _RANKS:
        _RANKS[key] = torch.arange(n - 1, -1, -1, dtype=torch.float64, device=device)
    return _RANKS[key]


def uniform_weight(log_weights):
    """The weight shared by every entry of every problem, or None (float, one sync)."""
    first = log_weights.reshape(-1)[:1]
    if not bool((log_weights == first).all()):
        return None
    return math.exp(float(first))


def _solve_gram(
    plan, rhs_rows, rhs_cols, rhs_mass, row_active, col_active, partial, rtol=_CG_RTOL,
    low_precision=False,
):
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
            plan.transpose(-1, -2), rhs_cols, rhs_rows, rhs_mass, col_active, row_active, partial,
            rtol, low_precision,
        )
        return u, v, t
    alpha = row_active.to(plan.dtype)
    beta = col_active.to(plan.dtype)
    rows, cols = plan.sum(-1), plan.sum(-2)
    diag1 = alpha * rows + (1 - alpha)
    diag1 = diag1.clamp_min(torch.finfo(plan.dtype).tiny)
    if bool(row_active.all()) and bool(col_active.all()):
        coupling = plan  # not written to below
    else:
        coupling = plan * alpha[..., :, None] * beta[..., None, :]
    rhs1 = rhs_rows * alpha
    rhs2 = rhs_cols * beta
    diag2 = beta * cols + (1 - beta)
    total = plan.sum((-1, -2))
    # the balanced problem is invariant to (f + k, g - k): pin that direction
    pin = None if partial else cols.mean(-1) / m
    if m + partial > _DENSE_MAX:
        extra = (alpha * rows) if partial else None
        x2 = _schur_cg(
            coupling.float() if low_precision else coupling,
            extra, diag1, rhs1, rhs2, diag2, total, beta * cols, rhs_mass, pin, rtol,
        )
        core_x = _times(coupling, x2[..., :m])
        if partial:
            core_x = core_x + extra * x2[..., m:]
    else:
        if partial:
            coupling = torch.cat([coupling, (alpha * rows)[..., None]], -1)
            rhs2 = torch.cat([rhs2, rhs_mass[..., None]], -1)
            h22_diag = torch.cat([diag2, total[..., None]], -1)
        else:
            h22_diag = diag2
        scaled = coupling / diag1[..., None]
        rhs = rhs2 - (scaled.transpose(-1, -2) @ rhs1[..., None])[..., 0]
        schur = torch.diag_embed(h22_diag) - scaled.transpose(-1, -2) @ coupling
        if partial:
            schur[..., :m, m] += beta * cols
            schur[..., m, :m] += beta * cols
        else:
            schur = schur + pin[..., None, None]
        size = schur.shape[-1]
        ridge = 1e-12 * schur.diagonal(0, -2, -1).abs().amax(-1).clamp_min(1e-300)
        eye = torch.eye(size, dtype=plan.dtype, device=plan.device)
        x2 = torch.linalg.solve(schur + ridge[..., None, None] * eye, rhs[..., None])[..., 0]
        core_x = (coupling @ x2[..., None])[..., 0]
    u = (rhs1 - core_x) / diag1 * alpha
    if partial:
        return u, x2[..., :m], x2[..., m]
    return u, x2, torch.zeros(plan.shape[:-2], dtype=plan.dtype, device=plan.device)


def _times(matrix, x, transpose=False):
    """``matrix @ x`` (or its transpose) for a batch of vectors, in ``x``'s dtype."""
    if transpose:
        matrix = matrix.transpose(-1, -2)
    return (matrix @ x.to(matrix.dtype)[..., None])[..., 0].to(x.dtype)


def _schur_cg(core, extra, diag1, rhs1, rhs2, diag2, total, border, rhs_mass, pin, rtol):
    """Solve the Schur system of :func:`_solve_gram` by Jacobi-preconditioned CG (batched).

    Matrix-free: two products with the plan (``core``, possibly float32: these solves are
    inexact Newton directions) per iteration, instead of the ``O(size^3)`` formation and
    factorisation of the Schur complement. ``extra`` is the mass column (partial only).
    With a float32 ``core`` the whole iteration runs in float32 (no conversion per product;
    the Newton directions it serves need a relative residual of 1e-4); the solution is
    returned in float64.
    """
    m = core.shape[-1]
    if core.dtype != torch.float64:
        low = core.dtype
        extra, diag1, rhs1, rhs2, diag2, total, border, rhs_mass, pin = (
            None if x is None or isinstance(x, float) else x.to(low)
            for x in (extra, diag1, rhs1, rhs2, diag2, total, border, rhs_mass, pin)
        )
        rtol = max(rtol, 10 * torch.finfo(low).eps)

    def coupling(x):  # (n x (m + 1)) coupling times x
        y = _times(core, x[..., :m])
        return y if extra is None else y + extra * x[..., m:]

    def coupling_t(y):
        out = _times(core, y, transpose=True)
        return out if extra is None else torch.cat([out, (extra * y).sum(-1, keepdim=True)], -1)

    if extra is None:
        h22_diag = diag2
        rhs = rhs2 - coupling_t(rhs1 / diag1)
    else:
        h22_diag = torch.cat([diag2, total[..., None]], -1)
        rhs = torch.cat([rhs2, rhs_mass[..., None]], -1) - coupling_t(rhs1 / diag1)

    def apply(x):
        y = h22_diag * x - coupling_t(coupling(x) / diag1)
        if extra is not None:
            y[..., :-1] += border * x[..., -1:]
            y[..., -1] += (border * x[..., :-1]).sum(-1)
        else:
            y = y + (pin * x.sum(-1))[..., None]
        return y

    squares = _times(core * core, 1.0 / diag1, transpose=True)
    if extra is not None:
        squares = torch.cat([squares, (extra * extra / diag1).sum(-1, keepdim=True)], -1)
    diagonal = h22_diag - squares
    if pin is not None:
        diagonal = diagonal + pin[..., None]
    inverse = 1.0 / diagonal.clamp_min(1e-14 * h22_diag.abs().amax(-1, keepdim=True))
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = inverse * r
    d = z.clone()
    rz = (r * z).sum(-1)
    goal = rtol * rhs.norm(dim=-1)
    for _ in range(_CG_MAX_ITER):
        if bool((r.norm(dim=-1) <= goal).all()):
            break
        q = apply(d)
        dq = (d * q).sum(-1)
        step = torch.where(dq > 0, rz / torch.where(dq > 0, dq, 1.0), 0.0)
        x = x + step[..., None] * d
        r = r - step[..., None] * q
        z = inverse * r
        rz_new = (r * z).sum(-1)
        d = z + (rz_new / torch.where(rz > 0, rz, 1.0))[..., None] * d
        rz = rz_new
    return x.double()


def _active_sets(plan, f, g):
    """Rows and columns whose constraint is an equality: all (balanced), potential < 0."""
    if f is None:
        rows = torch.ones(plan.shape[:-1], dtype=torch.bool, device=plan.device)
        cols = torch.ones(plan.shape[:-2] + plan.shape[-1:], dtype=torch.bool, device=plan.device)
        return rows, cols
    return f < 0, g < 0

class _Plan:
    r"""The log-plans of a batch, kept as :math:`\log P = B + u_i + v_j`.

    Without a graph (``kernel=True``) the scalings are applied to :math:`K = e^{B}` by
    matrix-vector products, as multiplicative Sinkhorn does, but absorbed into :math:`B` (a
    log-domain update) as soon as a scaling leaves ``[-limit, limit]``: the speed of
    :math:`K v` (no exponential per entry and iteration) with the range of the log domain.
    With a graph (``kernel=False``) every scaling is added to the log-plan (log-sum-exp).
    """

    def __init__(self, log_plan, kernel):
        self.base, self.kernel = log_plan, kernel
        self.inplace = not (torch.is_grad_enabled() and log_plan.requires_grad)
        if kernel:
            self._reset()

    def _reset(self):
        shape = self.base.shape
        self.kernel_matrix = self.base.exp()
        self.u = torch.zeros(shape[:-1], dtype=torch.float64, device=self.base.device)
        self.v = torch.zeros(shape[:-2] + shape[-1:], dtype=torch.float64, device=self.base.device)
        self.limit = 30.0 if self.base.dtype == torch.float32 else 200.0

    def _add(self, offset):
        offset = offset.to(self.base.dtype)
        self.base = self.base.add_(offset) if self.inplace else self.base + offset

    def log_plan(self, last=False):
        """The log-plan itself (scalings absorbed).

        ``last``: no iteration follows, so the kernel is not recomputed (one exponential
        per entry saved); the plan must not be iterated on afterwards.
        """
        if self.kernel and (bool(self.u.any()) or bool(self.v.any())):
            self._add(self.u[..., :, None] + self.v[..., None, :])
            if last:
                self.kernel = False
            else:
                self._reset()
        return self.base

    def plan64(self):
        """The plan :math:`P` itself in float64.

        In kernel mode it is :math:`K_{ij} e^{u_i} e^{v_j}`: two products per entry instead of
        an absorption into :math:`B`, a new kernel and an exponential per entry.
        """
        if not self.kernel:
            return self.base.double().exp()
        return (
            self.kernel_matrix.double()
            * torch.exp(self.u)[..., :, None]
            * torch.exp(self.v)[..., None, :]
        )

    def replace(self, log_plan):
        self.base = log_plan
        if self.kernel:
            self._reset()

    def _log_sums(self, dim):
        if not self.kernel:
            return torch.logsumexp(self.base, dim).double()
        mine, other = (self.u, self.v) if dim == -1 else (self.v, self.u)
        out = mine + self._log_kernel_sums(dim, other)
        if not bool(torch.isfinite(out).all()):  # an underflowed line: absorb, log-sum-exp
            return torch.logsumexp(self.log_plan(), dim).double()
        return out

    def _log_kernel_sums(self, dim, other):
        """``log`` of the row (``dim=-1``) or column sums of ``K`` scaled by ``e^other``."""
        scale = torch.exp(other).to(self.kernel_matrix.dtype)
        if dim == -1:
            sums = (self.kernel_matrix @ scale[..., None])[..., 0]
        else:
            sums = (scale[..., None, :] @ self.kernel_matrix)[..., 0, :]
        return torch.log(sums.double())

    def balanced_sweep(self, log_a, log_b, log_rows=None):
        """One row and one column normalisation in kernel mode, as multiplicative Sinkhorn.

        The new scalings are ``u = log a - log(K e^v)`` and ``v = log b - log(K^T e^u)``
        (``log_rows``, when given, holds the current row log-sums). Returns False, leaving
        the plan unchanged, when a scaling would leave ``[-limit, limit]`` or is not finite:
        the caller then takes the log-domain path.
        """
        if log_rows is None:
            u = log_a - self._log_kernel_sums(-1, self.v)
        else:
            u = self.u + (log_a - log_rows)
        v = log_b - self._log_kernel_sums(-2, u)
        if not float(torch.maximum(u.abs().amax(), v.abs().amax())) <= self.limit:
            return False
        self.u, self.v = u, v
        return True

    def log_rows(self):
        return self._log_sums(-1)

    def log_cols(self):
        return self._log_sums(-2)

    def _scale(self, name, step):
        if not self.kernel:
            self._add(step[..., :, None] if name == "u" else step[..., None, :])
            return
        setattr(self, name, getattr(self, name) + step)
        if bool((getattr(self, name).abs() > self.limit).any()):
            self.log_plan()

    def scale_rows(self, step):
        self._scale("u", step)

    def scale_cols(self, step):
        self._scale("v", step)

    def select(self, mask):
        """Keep the problems flagged by ``mask``."""
        if self.kernel:
            self.log_plan()
        self.replace(self.base[mask])

    def promote(self):
        """Continue in float64."""
        self.replace(self.log_plan().double())


def _sweep(plan, log_a, log_b, mass, f, g, log_rows=None, uniform=(None, None)):
    """One row and one column scaling of a :class:`_Plan`; returns the new ``f, g``.

    ``uniform``: the rows' and the columns' common weight when they have one
    (:func:`uniform_weight`; partial problems only).
    """
    if mass is None and plan.kernel and plan.balanced_sweep(log_a, log_b, log_rows):
        return f, g
    if log_rows is None:
        log_rows = plan.log_rows()
    if mass is not None:
        step, f = _partial_block_step(log_rows, f, log_a, mass, uniform[0])
        plan.scale_rows(step)
        step, g = _partial_block_step(plan.log_cols(), g, log_b, mass, uniform[1])
        plan.scale_cols(step)
    else:
        plan.scale_rows(log_a - log_rows)
        plan.scale_cols(log_b - plan.log_cols())
    return f, g


def sweep(log_plan, log_a, log_b, mass, f, g):
    """One row and one column scaling of ``log_plan`` (log-sum-exp; graph kept).

    Returns ``(log_plan, f, g)``; ``f``, ``g`` (partial only) are the accumulated row and
    column log-scalings, each <= 0.
    """
    plan = _Plan(log_plan, kernel=False)
    f, g = _sweep(plan, log_a, log_b, mass, f, g)
    return plan.base, f, g


def _errors(plan, log_a, f):
    """Per-problem residual ``(k,)`` and the row log-sums it was measured on."""
    log_rows = plan.log_rows()
    return violation(log_rows, log_a, f).detach(), log_rows


def epsilon_schedule(cost, epsilon, epsilon_scaling):
    """Decreasing epsilons ending at ``epsilon``: halvings from about the cost range."""
    if not epsilon_scaling:
        return [epsilon]
    spread = float((cost.amax((-1, -2)) - cost.amin((-1, -2))).max())
    ratio = spread / epsilon
    if ratio <= _ANNEAL_RATIO:
        return [epsilon]
    halvings = math.ceil(math.log2(ratio / _ANNEAL_RATIO))
    return [epsilon * 2.0**k for k in range(halvings, 0, -1)] + [epsilon]


def _anneal(plan, log_a, log_b, mass, f, g, schedule, tol, check_every):
    """Run each intermediate epsilon of ``schedule`` briefly; end at the last."""
    n_iter = 0
    stage_tol = max(tol, _ANNEAL_TOL)
    for previous, current in zip(schedule[:-1], schedule[1:]):
        for it in range(_ANNEAL_ITER):
            error, log_rows = _errors(plan, log_a, f)
            if it > 0 and it % check_every == 0 and float(error.max()) <= stage_tol:
                break
            f, g = _sweep(plan, log_a, log_b, mass, f, g, log_rows)
            n_iter += 1
        ratio = previous / current  # same potentials, smaller epsilon
        log_plan = plan.log_plan()
        plan.replace(log_plan.mul_(ratio) if plan.inplace else log_plan * ratio)
        if mass is not None:
            f, g = f * ratio, g * ratio
    return f, g, n_iter


def _newton_direction(plan, log_a, log_b, mass, f, g):
    """Newton direction ``(u, v, t)`` on the dual at ``plan`` (float64, batched).

    Partial problems: a projected (active-set) direction. A saturated row or column whose
    potential the step would push above 0 leaves the active set with its potential moved to
    0, and the system is solved again (a few rounds at most).
    """
    rows, cols = plan.sum(-1), plan.sum(-2)
    residual_rows, residual_cols = torch.exp(log_a) - rows, torch.exp(log_b) - cols
    row_active, col_active = _active_sets(plan, f, g)
    if mass is None:
        return _solve_gram(
            plan, residual_rows, residual_cols, None, row_active, col_active, False,
            _NEWTON_CG_RTOL, True,
        )
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
            _NEWTON_CG_RTOL,
            True,
        )
        leaving_rows, leaving_cols = row_active & (f + u > 0), col_active & (g + v > 0)
        if not (bool(leaving_rows.any()) or bool(leaving_cols.any())):
            break
        row_active, col_active = row_active & ~leaving_rows, col_active & ~leaving_cols
        fixed_rows = torch.where(~row_active & (f < 0), -f, 0.0)
        fixed_cols = torch.where(~col_active & (g < 0), -g, 0.0)
    return torch.where(row_active, u, fixed_rows), torch.where(col_active, v, fixed_cols), t


def _newton_step(state, log_a, log_b, mass, f, g, active):
    """A damped Newton step on the problems flagged ``active`` of a :class:`_Plan`.

    The step length is halved until the dual objective increases enough (Armijo), so a step
    never makes a problem worse, however far from the optimum. Returns ``(f, g, accepted)``;
    ``accepted`` flags the problems whose step was taken. No scaling sweep is included.
    """
    plan = state.plan64()
    u, v, t = _newton_direction(plan, log_a, log_b, mass, f, g)
    a, b = torch.exp(log_a), torch.exp(log_b)
    rows, cols = plan.sum(-1), plan.sum(-2)
    total = rows.sum(-1)
    grad_t = 0.0 if mass is None else mass - total
    # trust region: a nearly singular Hessian (a plan whose significant entries no longer
    # connect every row and column) gives huge directions; move the log-plan by a bounded
    # amount, and let the next steps go on
    span = u.abs().amax(-1) + v.abs().amax(-1) + t.abs()
    tau = (_NEWTON_MAX_STEP / span.clamp_min(1e-300)).clamp_max(1.0)
    pending = active & torch.isfinite(u).all(-1) & torch.isfinite(v).all(-1) & torch.isfinite(t)
    accepted = torch.zeros_like(pending)
    best = [torch.zeros_like(u), torch.zeros_like(v), torch.zeros_like(t)]
    for _ in range(_LINE_SEARCH_STEPS):
        if not bool(pending.any()):
            break
        if mass is None:
            du, dv, dt = tau[..., None] * u, tau[..., None] * v, t  # t is 0
        else:
            du = (f + tau[..., None] * u).clamp_max(0.0) - f
            dv = (g + tau[..., None] * v).clamp_max(0.0) - g
            dt = tau * t
        # sum_ij P_ij (exp(du_i + dv_j + dt) - 1), by one product with the plan and expm1
        # (no cancellation near the optimum, where the gain is tiny)
        inner = (torch.expm1(du) * (plan @ torch.exp(dv)[..., None])[..., 0]).sum(-1)
        inner = inner + (cols * torch.expm1(dv)).sum(-1)
        gain = (du * a).sum(-1) + (dv * b).sum(-1)
        linear = (du * (a - rows)).sum(-1) + (dv * (b - cols)).sum(-1)
        if mass is None:
            gain = gain - inner
        else:
            change = torch.exp(dt) * inner + total * torch.expm1(dt)
            gain = gain - change + dt * mass
            linear = linear + dt * grad_t
        ok = pending & torch.isfinite(gain) & (gain >= _ARMIJO * linear) & (linear > 0)
        for slot, value in zip(best, (du, dv, dt)):
            slot[ok] = value[ok]
        accepted |= ok
        pending &= ~ok
        tau = torch.where(pending, 0.5 * tau, tau)
    if bool(accepted.any()):
        du, dv, dt = best
        state.scale_rows(du)
        state.scale_cols(dv + dt[..., None])
        if mass is not None:
            f, g = (f + du).clamp_max(0.0), (g + dv).clamp_max(0.0)
    return f, g, accepted


def _remaining(error, previous, tol, span):
    """Per-problem ``(log_rate, remaining)`` from two checks ``span`` iterations apart.

    ``log_rate`` (<= 0) is the log of the error's shrink factor per iteration; ``remaining``
    the iterations that rate needs to reach ``tol`` (very large when the error stalls).
    numpy float64 arrays: the schedule is kept on the CPU, where numpy's small-array
    operations cost a fraction of torch's dispatch.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(error / np.maximum(previous, 1e-300), 1e-300, 1.0)
        log_rate = np.log(ratio) / np.maximum(span, 1)
        need = np.maximum(np.log(np.maximum(error, 1e-300) / tol), 0.0)
        return log_rate, need / np.maximum(-log_rate, 1e-300)


def _slow(log_rate, remaining, error, previous, tol, check_every):
    """Which problems converge too slowly for scaling alone (a bool mask).

    At the rate it showed (``log_rate``, ``remaining``: :func:`_remaining`), its error would
    shrink by less than ``_SLOW_RATIO`` over ``check_every`` iterations, or it would need
    more than ``_NEWTON_WORTH`` more iterations.
    """
    with np.errstate(invalid="ignore"):
        slow = (log_rate * check_every > math.log(_SLOW_RATIO)) | (remaining > _NEWTON_WORTH)
        return (error > tol) & slow & ~np.isnan(previous)


def _next_gaps(remaining, previous, check_every, it):
    """Iterations until each problem's next check (int64).

    The first window is checked at ``check_every // 5`` and ``check_every // 2`` (a fast
    problem stops early, a slow one is seen early); after that the gap is the number of
    iterations the problem's observed rate (``remaining``: :func:`_remaining`) needs to
    reach ``tol`` (at least 1, at most ``check_every``), so that a converging problem stops
    within an iteration or two of its goal with few checks (each one synchronises a GPU).
    ``previous`` is NaN for a problem without an earlier check.
    """
    half = max(check_every // 2, 1)
    first = half - it if it < half else half
    gaps = np.clip(np.ceil(np.nan_to_num(remaining, nan=float(check_every))), 1, check_every)
    return np.where(np.isnan(previous), first, gaps).astype(np.int64)


def _select(mask, *tensors):
    return [None if x is None else x[mask] for x in tensors]


def iterate(cost, log_a, log_b, epsilon, mass, options):
    """Anneal (when useful), then iterate at ``epsilon`` until each problem meets ``tol``.

    ``cost`` is ``(k, n, m)``. Records a graph when grad mode is on and an input requires
    grad (Newton steps are then not used). Problems are retired from the working batch once
    converged. Returns ``(log_plan, f, g, info)``; ``log_plan`` is float64 when a float32
    problem asked for a ``tol`` below what float32 log-plans reach; ``info`` holds per-problem
    tensors ``marginal_error_per_problem``, ``converged_per_problem`` and
    ``n_iter_per_problem`` besides the batch summaries.
    """
    partial = mass is not None
    record = torch.is_grad_enabled() and any(
        x.requires_grad for x in (cost, log_a, log_b)
    )
    tol, check_every, budget = options["tol"], options["check_every"], options["max_iter"]
    schedule = epsilon_schedule(cost.detach(), epsilon, options["epsilon_scaling"])
    plan = _Plan(cost / -schedule[0], kernel=not record)
    f = g = None
    if partial:
        f = torch.zeros(log_a.shape, dtype=torch.float64, device=cost.device)
        g = torch.zeros(log_b.shape, dtype=torch.float64, device=cost.device)
    f, g, n_anneal = _anneal(plan, log_a, log_b, mass, f, g, schedule, tol, check_every)

    count = cost.shape[0]
    index = torch.arange(count, device=cost.device)
    errors = torch.full((count,), math.nan, dtype=torch.float64)
    iters = torch.zeros(count, dtype=torch.int64)
    pieces = []
    promote = plan.base.dtype == torch.float32 and tol < _FLOAT32_TOL
    if promote and not record and cost.shape[-1] * cost.shape[-2] <= _SMALL_PLAN:
        plan.promote()  # small plans: float64 costs no more than float32, and never stalls
        promote = False
    newton = options["newton"] and not record
    n_newton, it, force = 0, 0, False
    # Each problem keeps its own schedule, so that it stops at the iteration it would stop
    # at alone: the error and iteration of its last check, its next check, a Newton phase
    # (steps left, the error it started from, ending after this step), a cooldown in checks.
    state = {
        "previous": np.full(count, np.nan),
        "previous_it": np.zeros(count, dtype=np.int64),
        "due": np.full(count, max(check_every // 5, 1), dtype=np.int64),
        "steps": np.zeros(count, dtype=np.int64),
        "start": np.full(count, np.nan),
        "ending": np.zeros(count, dtype=bool),
        "cooldown": np.zeros(count, dtype=np.int64),
        "judged_slow": np.zeros(count, dtype=bool),
    }
    error, next_due, any_phase = None, int(state["due"].min()), False
    uniform = (uniform_weight(log_a), uniform_weight(log_b)) if partial else (None, None)
    while True:
        log_rows = None
        if it >= budget or force or any_phase or it >= next_due:
            in_phase = (state["steps"] > 0) | state["ending"]
            error, log_rows = _errors(plan, log_a, f)
            measured = error.cpu().numpy()
            everyone = force or it >= budget
            checked = np.ones_like(in_phase) if everyone else (state["due"] <= it) | in_phase
            force = False
            done_cpu = checked & ((measured <= tol) | (it >= budget))
            if done_cpu.any():
                done = torch.from_numpy(done_cpu).to(error.device)
                cpu_index = index[done].cpu()
                errors[cpu_index] = torch.from_numpy(measured[done_cpu])
                iters[cpu_index] = n_anneal + it
                if done_cpu.all():  # no copy of the plans
                    pieces.append((index, plan.log_plan(last=True), f, g))
                    break
                pieces.append((index[done], *_select(done, plan.log_plan(), f, g)))
                keep, keep_cpu = ~done, ~done_cpu
                plan.select(keep)
                index, log_a, log_b, f, g, error = _select(keep, index, log_a, log_b, f, g, error)
                measured, checked, in_phase = _select(keep_cpu, measured, checked, in_phase)
                state = {key: value[keep_cpu] for key, value in state.items()}
                log_rows = None
            # a Newton phase that ends: cooldown unless it halved the error; fresh schedule
            ended = state["ending"]
            state["cooldown"] = np.where(
                ended & (measured > 0.5 * state["start"]), _NEWTON_COOLDOWN, state["cooldown"]
            )
            state["previous"] = np.where(ended, np.nan, state["previous"])
            state["ending"] = np.zeros_like(ended)
            regular = checked & ((state["steps"] == 0) | ended)
            span = it - state["previous_it"]
            log_rate, remaining = _remaining(measured, state["previous"], tol, span)
            slow = _slow(log_rate, remaining, measured, state["previous"], tol, check_every)
            slow = regular & (slow | state["judged_slow"])
            state["judged_slow"] = state["judged_slow"] & ~regular
            gaps = _next_gaps(remaining, state["previous"], check_every, it)
            state["due"] = np.where(regular, it + gaps, state["due"])
            state["previous"] = np.where(regular, measured, state["previous"])
            state["previous_it"] = np.where(regular, it, state["previous_it"])
            state["cooldown"] = np.where(
                regular, np.maximum(state["cooldown"] - 1, 0), state["cooldown"]
            )
            if promote and slow.any():  # float32 stalls above tol: finish in float64
                plan.promote()
                # re-measure in float64; the problems stay judged slow (Newton next)
                promote, force = False, True
                state["judged_slow"] = slow
                state["previous"] = np.full_like(state["previous"], np.nan)
                continue
            if newton:
                begin = slow & (state["cooldown"] == 0)
                state["steps"] = np.where(begin, min(_NEWTON_STEPS, budget - it), state["steps"])
                state["start"] = np.where(begin, measured, state["start"])
            next_due = int(state["due"].min())
            any_phase = bool((state["steps"] > 0).any())
        if any_phase:  # a Newton step (+ the sweep below) on the problems in a phase
            stepping = state["steps"] > 0
            active = torch.from_numpy(stepping).to(error.device) & (error > tol)
            f, g, accepted = _newton_step(plan, log_a, log_b, mass, f, g, active)
            n_newton += 1
            state["steps"] = np.where(stepping, state["steps"] - 1, 0)
            # the phase ends when the step was refused or the steps are spent
            state["ending"] = stepping & (~accepted.cpu().numpy() | (state["steps"] == 0))
            state["steps"] = np.where(state["ending"], 0, state["steps"])
            any_phase = bool(state["ending"].any() or (state["steps"] > 0).any())
            log_rows = None  # measured before the step
        f, g = _sweep(plan, log_a, log_b, mass, f, g, log_rows, uniform)
        it += 1

    if len(pieces) == 1:
        _, log_plan, f, g = pieces[0]
    else:
        order = torch.argsort(torch.cat([p[0] for p in pieces]))
        dtype = max((p[1].dtype for p in pieces), key=lambda d: torch.finfo(d).bits)
        log_plan = torch.cat([p[1].to(dtype) for p in pieces])[order]
        if partial:
            f = torch.cat([p[2] for p in pieces])[order]
            g = torch.cat([p[3] for p in pieces])[order]
    converged = errors <= tol
    info = {
        "n_iter": int(iters.max()),
        "n_newton": n_newton,
        "marginal_error": float(errors.max()),
        "converged": bool(converged.all()),
        "marginal_error_per_problem": errors,
        "converged_per_problem": converged,
        "n_iter_per_problem": iters,
    }
    return log_plan, f, g, info
