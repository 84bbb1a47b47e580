"""Robustness of sklearn_ltm.transport: zero weights, per-problem convergence, hard problems."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_ltm.transport import DIFFERENTIATION_MODES, partial_sinkhorn, sinkhorn

TIGHT = dict(tol=1e-12, max_iter=20_000)


def _zero_weight_problem(seed=0, n=5, m=6):
    rng = np.random.default_rng(seed)
    cost = torch.tensor(rng.random((n, m)) * 2, dtype=torch.float64)
    a = torch.tensor(rng.random(n) + 0.1, dtype=torch.float64)
    b = torch.tensor(rng.random(m) + 0.1, dtype=torch.float64)
    a[1] = 0.0
    b[2] = b[4] = 0.0
    return cost, a / a.sum(), b / b.sum()


def _solve(solver, cost, a, b, **kwargs):
    if solver == "full":
        return sinkhorn(cost, 0.2, a, b, **kwargs)
    return partial_sinkhorn(cost, 0.2, 0.6, a, b, **kwargs)


# ------------------------------------------------------------------ zero weights: gradients
@pytest.mark.parametrize("solver", ["full", "partial"])
@pytest.mark.parametrize("mode", DIFFERENTIATION_MODES)
def test_zero_weight_gradients_finite_in_every_mode(solver, mode):
    cost, a, b = _zero_weight_problem()
    weight = torch.randn(cost.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = cost.clone().requires_grad_()
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    plan = _solve(solver, c, a_, b_, differentiation=mode, backprop_iter=5, **TIGHT)
    (plan * weight).sum().backward()
    for grad in (c.grad, a_.grad, b_.grad):
        assert grad is not None and torch.isfinite(grad).all()
    # zero-weight rows and columns carry no mass, and their costs do not matter
    assert (plan[1] == 0).all() and (plan[:, [2, 4]] == 0).all()
    assert (c.grad[1] == 0).all() and (c.grad[:, [2, 4]] == 0).all()
    assert c.grad.abs().sum() > 0


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_zero_weight_gradients_agree_across_modes(solver):
    cost, a, b = _zero_weight_problem(seed=1)
    weight = torch.randn(cost.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grads = {}
    for mode, backprop_iter in [("implicit", 1), ("unrolled", 1), ("truncated", 400)]:
        c = cost.clone().requires_grad_()
        plan = _solve(solver, c, a, b, differentiation=mode, backprop_iter=backprop_iter, **TIGHT)
        (plan * weight).sum().backward()
        grads[mode] = c.grad
    torch.testing.assert_close(grads["unrolled"], grads["implicit"], rtol=0, atol=1e-8)
    scale = grads["implicit"].abs().max()
    assert (grads["truncated"] - grads["implicit"]).abs().max() < 1e-3 * scale


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["full", "partial"])
def test_zero_weight_implicit_gradient_matches_finite_differences(solver):
    cost, a, b = _zero_weight_problem(seed=2, n=4, m=5)
    weight = torch.randn(cost.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def fn(c):
        return (_solve(solver, c, a, b, tol=1e-13, max_iter=20_000) * weight).sum()

    assert torch.autograd.gradcheck(fn, (cost.clone().requires_grad_(),))


@pytest.mark.parametrize("mode", DIFFERENTIATION_MODES)
def test_zero_weight_log_plan_gradient_finite(mode):
    cost, a, b = _zero_weight_problem(seed=3)
    c = cost.clone().requires_grad_()
    log_plan = sinkhorn(c, 0.2, a, b, log_plan=True, differentiation=mode, **TIGHT)
    support = (a > 0)[:, None] & (b > 0)[None, :]
    assert torch.isneginf(log_plan[~support]).all() and torch.isfinite(log_plan[support]).all()
    (-(torch.where(support, log_plan, 0.0) * support).sum()).backward()
    assert torch.isfinite(c.grad).all()


# ------------------------------------------------------------------ batches: per-problem info
def _easy_and_hard(n=12, m=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.rand(2, n, 2, generator=generator), torch.rand(2, m, 2, generator=generator)
    cost = (torch.cdist(x, y) ** 2).double()
    cost[0] *= 0.01  # cost / epsilon small: a few iterations
    return cost


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_batch_info_per_problem_and_converged_problems_retire(solver):
    cost = _easy_and_hard()
    kwargs = dict(tol=1e-9, max_iter=5000, epsilon_scaling=False, return_info=True)

    def solve(c):
        if solver == "full":
            return sinkhorn(c, 0.01, **kwargs)
        return partial_sinkhorn(c, 0.01, 0.7, **kwargs)

    plan, info = solve(cost)
    alone = [solve(cost[k]) for k in range(2)]
    errors, flags, iters = (
        info["marginal_error_per_problem"],
        info["converged_per_problem"],
        info["n_iter_per_problem"],
    )
    assert errors.shape == flags.shape == iters.shape == (2,)
    assert flags.all() and (errors <= 1e-9).all()
    for k in range(2):
        # each problem stops where it would stop alone: same iterations, same plan
        assert iters[k] == alone[k][1]["n_iter"]
        torch.testing.assert_close(plan[k], alone[k][0], rtol=0, atol=1e-12)
        # (abs: an error near 1e-11 is a sum of float64 round-offs of batched products)
        assert errors[k].item() == pytest.approx(
            alone[k][1]["marginal_error"], rel=1e-6, abs=1e-14
        )
    assert iters[0] < iters[1]
    assert info["n_iter"] == int(iters.max())
    assert info["marginal_error"] == pytest.approx(float(errors.max()))


def test_batch_info_reports_which_problem_missed():
    cost = _easy_and_hard()
    with pytest.warns(ConvergenceWarning, match="1 of 2 problems"):
        _, info = sinkhorn(
            cost, 0.01, tol=1e-9, max_iter=100, epsilon_scaling=False, newton=False,
            return_info=True,
        )
    flags, errors = info["converged_per_problem"], info["marginal_error_per_problem"]
    assert flags.tolist() == [True, False]
    assert errors[0] <= 1e-9 < errors[1]
    assert not info["converged"] and info["marginal_error"] == pytest.approx(float(errors[1]))


def test_per_problem_info_keeps_batch_shape_and_numpy_type():
    cost = torch.rand(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, info = sinkhorn(cost, 0.1, return_info=True)
    assert info["marginal_error_per_problem"].shape == (2, 3)
    assert isinstance(info["converged_per_problem"], torch.Tensor)
    _, info = partial_sinkhorn(cost.numpy(), 0.1, 0.5, return_info=True)
    assert isinstance(info["marginal_error_per_problem"], np.ndarray)
    assert info["n_iter_per_problem"].shape == (2, 3)


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_batch_with_different_zero_patterns_equals_individual_solves(solver):
    rng = np.random.default_rng(7)
    cost = torch.tensor(rng.random((3, 6, 5)), dtype=torch.float64)
    a = torch.tensor(rng.random((3, 6)) + 0.1, dtype=torch.float64)
    b = torch.tensor(rng.random((3, 5)) + 0.1, dtype=torch.float64)
    a[0, 2] = a[2, [0, 5]] = 0.0
    b[1, 3] = 0.0
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    plan, info = _solve(solver, cost, a, b, return_info=True, **TIGHT)
    for k in range(3):
        alone = _solve(solver, cost[k], a[k], b[k], **TIGHT)
        torch.testing.assert_close(plan[k], alone, rtol=0, atol=1e-10)
    assert (plan[0, 2] == 0).all() and (plan[2][[0, 5]] == 0).all() and (plan[1, :, 3] == 0).all()
    assert info["converged_per_problem"].all()


# ------------------------------------------------------------------ hard problems
def _hard_case():
    """10 x 14 float64, epsilon 0.0152, costs 5-608, five zero column weights (issue 13).

    Costs / epsilon reach 4e4; the significant entries of the plan stop connecting rows and
    columns, plain scaling then stalls (the error stays at 1e-2 for thousands of iterations;
    POT's ``sinkhorn_log`` is still at 0.07 after 20,000).
    """
    rng = np.random.default_rng(1)
    cost = 5 + 603 * rng.random((10, 14))
    a = np.exp(rng.normal(size=10))
    b = np.exp(rng.normal(size=14))
    b[rng.choice(14, 5, replace=False)] = 0.0
    return (torch.tensor(x, dtype=torch.float64) for x in (cost, a / a.sum(), b / b.sum()))


def test_hard_case_converges_within_max_iter():
    cost, a, b = _hard_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        plan, info = sinkhorn(cost, 0.0152, a, b, tol=1e-6, max_iter=1000, return_info=True)
    assert info["converged"] and info["n_newton"] >= 1
    error = (plan.sum(1) - a).abs().sum() + (plan.sum(0) - b).abs().sum()
    assert error <= 1e-6
    assert (plan[:, b == 0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["balanced", "partial"])
def test_random_problems_converge(dtype, kind):
    """A small fuzz (as benchmarks/bench_ot_robustness.py): cost / epsilon up to 1e3."""
    rng = np.random.default_rng(11 if kind == "balanced" else 12)
    for _ in range(12):
        n, m = rng.integers(2, 40, size=2)
        epsilon = 10 ** rng.uniform(-3, 0)
        cost = rng.random((n, m)) * epsilon * 10 ** rng.uniform(0, 3)
        a, b = np.exp(rng.normal(size=n)), np.exp(rng.normal(size=m))
        if rng.random() < 0.5:
            a[rng.choice(n, max(1, n // 3), replace=False)] = 0.0
        a, b = a / a.sum(), b / b.sum()
        args = [torch.tensor(x, dtype=dtype) for x in (cost, a, b)]
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            if kind == "balanced":
                plan = sinkhorn(args[0], epsilon, args[1], args[2], tol=1e-6)
            else:
                plan = partial_sinkhorn(args[0], epsilon, 0.5, args[1], args[2], tol=1e-6)
        plan = plan.double()
        rows, cols = plan.sum(1) - torch.tensor(a), plan.sum(0) - torch.tensor(b)
        if kind == "balanced":
            assert rows.abs().sum() + cols.abs().sum() <= 1.2e-6
        else:
            excess = rows.clamp_min(0).sum() + cols.clamp_min(0).sum()
            assert excess + (plan.sum() - 0.5).abs() <= 1.2e-6


def test_robustness_benchmark_runs_and_counts(tmp_path, monkeypatch):
    """benchmarks/bench_ot_robustness.py on a few problems: one row per problem, both solvers."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    bench = pytest.importorskip("bench_ot_robustness")
    threads = torch.get_num_threads()
    try:
        payload = bench.main(
            ["--n-problems", "6", "--no-write", "--progress", "0", "--threads", "1"]
        )
    finally:
        torch.set_num_threads(threads)
    overall = payload["summary"]["overall"][0]
    assert overall["problems"] == 6
    assert 0.0 <= overall["ours_miss_rate"] <= 1.0 and 0.0 <= overall["pot_miss_rate"] <= 1.0
    assert sum(r["problems"] for r in payload["summary"]["by kind"]) == 6
    # the generator is seeded: the same problem twice
    first, again = bench.make_problem(0, 3), bench.make_problem(0, 3)
    np.testing.assert_array_equal(first["cost"], again["cost"])


@pytest.mark.parametrize("solver", ["full", "partial"])
@pytest.mark.parametrize("shape", [(12, 9), (7, 11)])
def test_conjugate_gradient_solves_match_dense(solver, shape, monkeypatch):
    """Large problems use CG for the Newton steps and the implicit backward: same results."""
    from sklearn_ltm import _ot_scaling

    generator = torch.Generator().manual_seed(8)
    cost = torch.rand(2, *shape, dtype=torch.float64, generator=generator)
    weight = torch.randn(2, *shape, dtype=torch.float64, generator=generator)

    def run():
        c = cost.clone().requires_grad_()
        kwargs = dict(tol=1e-11, max_iter=3000, return_info=True, log_plan=True)
        if solver == "full":
            log_plan, info = sinkhorn(c, 0.01, **kwargs)
        else:
            log_plan, info = partial_sinkhorn(c, 0.01, 0.7, **kwargs)
        (log_plan * weight).sum().backward()
        return log_plan.detach(), c.grad, info

    dense = run()
    monkeypatch.setattr(_ot_scaling, "_DENSE_MAX", 2)
    iterative = run()
    assert dense[2]["converged"] and iterative[2]["converged"]
    if shape == (12, 9):  # slow enough for Newton steps (CG directions)
        assert dense[2]["n_newton"] >= 1 and iterative[2]["n_newton"] >= 1
    torch.testing.assert_close(iterative[0].exp(), dense[0].exp(), rtol=0, atol=1e-10)
    torch.testing.assert_close(iterative[1], dense[1], rtol=1e-6, atol=1e-6 * dense[1].abs().max())


def test_partial_block_step_uniform_shortcut_equals_the_general_step():
    # the shortcut for a capacity shared by every row skips sorting the capacities; the
    # general step must give the same offsets and potentials (batch of 3 problems)
    from sklearn_ltm import _ot_scaling

    generator = torch.Generator().manual_seed(1)
    n = 9
    log_sums = torch.randn(3, n, generator=generator, dtype=torch.float64) - 2.0
    potential = -torch.rand(3, n, generator=generator, dtype=torch.float64)
    potential[:, ::3] = 0.0
    log_capacity = torch.full((3, n), -math.log(n), dtype=torch.float64)
    for mass in (0.3, 0.8, 1.0):
        general = _ot_scaling._partial_block_step(log_sums, potential, log_capacity, mass)
        shortcut = _ot_scaling._partial_block_step(
            log_sums, potential, log_capacity, mass, _ot_scaling.uniform_weight(log_capacity)
        )
        for x, y in zip(general, shortcut):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
        # the new row masses hold the mass asked for, none above its capacity
        masses = torch.exp(log_sums + general[0])
        torch.testing.assert_close(masses.sum(-1), torch.full((3,), mass, dtype=torch.float64))
        assert (masses <= torch.exp(log_capacity) * (1 + 1e-12)).all()
    assert _ot_scaling.uniform_weight(log_capacity) == pytest.approx(1 / n)
    assert _ot_scaling.uniform_weight(log_capacity + torch.arange(n) * 1e-3) is None
