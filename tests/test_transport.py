"""Tests of sklearn_ltm.transport: agreement with POT, constraints, gradients, robustness."""

import warnings

import numpy as np
import ot
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from sklearn_ltm.transport import partial_sinkhorn, sinkhorn

SHAPES = [(6, 6), (7, 4), (3, 9)]
PRECISE = dict(tol=1e-11, max_iter=20_000)


def _problem(shape, uniform, seed=0, dtype=torch.float64, mass_ratio=1.0):
    rng = np.random.default_rng(seed)
    n, m = shape
    cost = rng.random((n, m)) * 2
    if uniform:
        a, b = np.full(n, 1 / n), np.full(m, mass_ratio / m)
    else:
        a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
        a, b = a / a.sum(), b / b.sum() * mass_ratio
    return tuple(torch.tensor(x, dtype=dtype) for x in (cost, a, b))


def _points_cost(batch, n, m, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, 3, generator=generator)
    y = torch.rand(batch, m, 3, generator=generator)
    return torch.cdist(x, y) ** 2


# ------------------------------------------------------------------ agreement with POT
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("epsilon", [0.5, 0.1])
def test_sinkhorn_matches_pot(shape, uniform, epsilon):
    cost, a, b = _problem(shape, uniform)
    expected = ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        cost.numpy(),
        epsilon,
        method="sinkhorn_log",
        stopThr=1e-14,
        numItermax=20_000,
    )
    plan = sinkhorn(cost, epsilon, a, b, **PRECISE)
    np.testing.assert_allclose(plan.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(plan.sum(1).numpy(), a.numpy(), atol=1e-11)
    np.testing.assert_allclose(plan.sum(0).numpy(), b.numpy(), atol=1e-11)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("epsilon", [0.5, 0.05])
@pytest.mark.parametrize("mass", [0.3, 0.75])
def test_partial_sinkhorn_matches_pot(shape, uniform, epsilon, mass):
    # b has total 0.8: unequal totals are allowed in partial transport
    cost, a, b = _problem(shape, uniform, mass_ratio=0.8)
    expected = ot.partial.entropic_partial_wasserstein(
        a.numpy(),
        b.numpy(),
        cost.numpy(),
        epsilon,
        m=mass,
        stopThr=1e-15,
        numItermax=100_000,
    )
    plan = partial_sinkhorn(cost, epsilon, mass, a, b, **PRECISE)
    np.testing.assert_allclose(plan.numpy(), expected, rtol=0, atol=1e-6)
    assert plan.sum().item() == pytest.approx(mass, abs=1e-12)
    assert (plan.sum(1) <= a + 1e-10).all()  # within tol
    assert (plan.sum(0) <= b + 1e-12).all()  # the last step is a column step


def test_partial_small_epsilon_finite_where_pot_multiplicative_fails():
    """POT issue #723: the multiplicative solver underflows; ours matches POT's log solver."""
    cost, a, b = _problem((6, 5), uniform=False, seed=3)
    cost = cost * 50 + 10  # every exp(-cost / 0.01) underflows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot_plain = ot.partial.entropic_partial_wasserstein(
            a.numpy(), b.numpy(), cost.numpy(), 0.01, m=0.6
        )
    assert np.isnan(pot_plain).all()  # the failure this solver avoids
    expected = ot.partial.entropic_partial_wasserstein_logscale(
        a.numpy(), b.numpy(), cost.numpy(), 0.01, m=0.6, numItermax=100_000, stopThr=1e-14
    )
    plan = partial_sinkhorn(cost, 0.01, 0.6, a, b, **PRECISE)
    assert torch.isfinite(plan).all()
    np.testing.assert_allclose(plan.numpy(), expected, atol=1e-6)


def test_zero_weights_match_pot():
    cost, a, b = _problem((5, 6), uniform=False, seed=4)
    a = a.clone()
    a[1] = 0.0
    a = a / a.sum()
    expected = ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        cost.numpy(),
        0.1,
        method="sinkhorn_log",
        stopThr=1e-14,
        numItermax=100_000,
    )
    plan = sinkhorn(cost, 0.1, a, b, **PRECISE)
    assert (plan[1] == 0).all()
    np.testing.assert_allclose(plan.numpy(), expected, atol=1e-6)
    partial = partial_sinkhorn(cost, 0.1, 0.5, a, b, **PRECISE)
    assert (partial[1] == 0).all() and torch.isfinite(partial).all()
    assert partial.sum().item() == pytest.approx(0.5, abs=1e-12)


# ------------------------------------------------------------------ constraints, batching
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
@pytest.mark.parametrize("uniform", [True, False])
def test_marginals_hold_to_tol(tol, uniform):
    cost, a, b = _problem((12, 9), uniform, seed=1)
    plan, info = sinkhorn(cost, 0.02, a, b, tol=tol, return_info=True)
    assert info["converged"]
    assert (plan.sum(1) - a).abs().sum() <= tol
    assert (plan.sum(0) - b).abs().sum() <= 1e-12  # columns are exact after each iteration
    assert info["marginal_error"] == pytest.approx((plan.sum(1) - a).abs().sum().item(), abs=1e-12)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_partial_constraints_hold_to_tol(tol):
    cost, a, b = _problem((12, 9), uniform=False, seed=2)
    plan, info = partial_sinkhorn(cost, 0.02, 0.7, a, b, tol=tol, return_info=True)
    assert info["converged"]
    assert (plan.sum(1) - a).clamp_min(0).sum() <= tol
    assert (plan.sum(0) - b).clamp_min(0).sum() <= 1e-12
    assert plan.sum().item() == pytest.approx(0.7, abs=1e-12)


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_batch_equals_individual_problems(solver):
    cost = _points_cost(3, 5, 7).double()
    b = torch.tensor([0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1], dtype=torch.float64)

    def solve(c):
        if solver == "full":
            return sinkhorn(c, 0.05, b=b, **PRECISE)
        return partial_sinkhorn(c, 0.05, 0.6, b=b, **PRECISE)

    batched = solve(cost)
    assert batched.shape == cost.shape
    for k in range(3):
        torch.testing.assert_close(batched[k], solve(cost[k]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", [sinkhorn, lambda c, e, **k: partial_sinkhorn(c, e, 0.5, **k)])
def test_dtype_and_device_kept_inputs_untouched(dtype, solver):
    cost = _points_cost(2, 4, 5).to(dtype)
    before = cost.clone()
    plan = solver(cost, 0.1)
    log_plan = solver(cost, 0.1, log_plan=True)
    assert plan.dtype == dtype and plan.device == cost.device
    assert log_plan.dtype == dtype
    torch.testing.assert_close(log_plan.exp(), plan, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(cost, before, rtol=0, atol=0)


def test_numpy_in_numpy_out():
    cost, a, b = _problem((4, 5), uniform=False)
    plan = sinkhorn(cost.numpy(), 0.1, a.numpy(), b.numpy())
    assert isinstance(plan, np.ndarray) and plan.dtype == np.float64
    np.testing.assert_allclose(plan, sinkhorn(cost, 0.1, a, b).numpy(), atol=1e-12)


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_epsilon_scaling_gives_the_same_plan(solver):
    cost = _points_cost(1, 10, 12)[0].double() * 100  # range / epsilon >> 64: anneals
    kwargs = dict(PRECISE, log_plan=True)
    if solver == "full":
        annealed = sinkhorn(cost, 0.5, epsilon_scaling=True, **kwargs)
        plain = sinkhorn(cost, 0.5, epsilon_scaling=False, **kwargs)
    else:
        annealed = partial_sinkhorn(cost, 0.5, 0.5, epsilon_scaling=True, **kwargs)
        plain = partial_sinkhorn(cost, 0.5, 0.5, epsilon_scaling=False, **kwargs)
    torch.testing.assert_close(annealed.exp(), plain.exp(), rtol=0, atol=1e-9)


def test_float32_tol_below_its_floor_finishes_in_float64():
    cost = _points_cost(1, 64, 64)[0]
    plan, info = sinkhorn(cost, 0.02, tol=1e-9, return_info=True)
    assert plan.dtype == torch.float32 and info["converged"]
    rows = plan.double().sum(1)
    assert (rows - 1 / 64).abs().sum() < 1e-7  # float32 rounding of the entries only


def test_convergence_warning_when_max_iter_too_small():
    cost = _points_cost(1, 20, 20)[0].double()
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        _, info = sinkhorn(cost, 0.01, max_iter=3, epsilon_scaling=False, return_info=True)
    assert not info["converged"] and info["n_iter"] == 3


def _one_to_one_cost(size=48, seed=11):
    """A batch whose entropic plan is nearly a permutation (scaling iterations crawl)."""
    generator = torch.Generator().manual_seed(seed)
    code = torch.randn(size, 64, generator=generator, dtype=torch.float64)
    text = code + 0.3 * torch.randn(size, 64, generator=generator, dtype=torch.float64)
    audio = code + 0.3 * torch.randn(size, 64, generator=generator, dtype=torch.float64)
    cost = torch.cdist(text, audio) ** 2
    return cost / cost.max()


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_newton_steps_converge_where_scaling_crawls(solver):
    cost = _one_to_one_cost()

    def solve(newton):
        kwargs = dict(tol=1e-10, max_iter=300, newton=newton, return_info=True)
        if solver == "full":
            return sinkhorn(cost, 0.03, **kwargs)
        return partial_sinkhorn(cost, 0.03, 0.8, **kwargs)

    plan, info = solve(newton=True)
    assert info["converged"] and 1 <= info["n_newton"] <= 8 and info["n_iter"] < 300
    rows, cols = plan.sum(1), plan.sum(0)
    if solver == "full":
        assert (rows - 1 / 48).abs().sum() <= 1e-10 and (cols - 1 / 48).abs().sum() <= 1e-12
    else:
        assert (rows - 1 / 48).clamp_min(0).sum() <= 1e-10
        assert (cols - 1 / 48).clamp_min(0).sum() <= 1e-12
        assert plan.sum().item() == pytest.approx(0.8, abs=1e-12)
    with pytest.warns(ConvergenceWarning):
        plain, plain_info = solve(newton=False)
    assert plain_info["marginal_error"] > 1e3 * info["marginal_error"]
    # the same optimum: the crawling iterate is close, just not converged
    assert (plain - plan).abs().max() < 1e-5


# ------------------------------------------------------------------ float32 robustness
@pytest.mark.parametrize("epsilon", [1e-3, 1e-2, 1e-1, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_float32_finite_and_marginals_satisfied(epsilon, scale):
    cost = (_points_cost(2, 6, 8, seed=5) * scale).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # must converge
        plan = sinkhorn(cost, epsilon, tol=1e-4, max_iter=5000)
        log_plan = sinkhorn(cost, epsilon, tol=1e-4, max_iter=5000, log_plan=True)
        partial = partial_sinkhorn(cost, epsilon, 0.6, tol=1e-4, max_iter=5000)
    assert plan.dtype == torch.float32
    assert torch.isfinite(plan).all() and torch.isfinite(log_plan).all()
    assert torch.isfinite(partial).all()
    rows, cols = plan.double().sum(-1), plan.double().sum(-2)
    assert (rows - 1 / 6).abs().sum(-1).max() < 1.1e-4
    assert (cols - 1 / 8).abs().sum(-1).max() < 2e-6
    p_rows, p_cols = partial.double().sum(-1), partial.double().sum(-2)
    assert (p_rows - 1 / 6).clamp_min(0).sum(-1).max() < 1.1e-4
    assert (p_cols - 1 / 8).clamp_min(0).sum(-1).max() < 2e-6
    assert (partial.double().sum((-1, -2)) - 0.6).abs().max() < 2e-6


@pytest.mark.parametrize("epsilon", [1e-3, 1e-1])
def test_float32_large_problem_stays_finite(epsilon):
    """Costs up to 1e3 with epsilon 1e-3 (cost / epsilon ~ 1e6): nothing underflows to NaN."""
    cost = (_points_cost(1, 48, 40, seed=6) * 1e3).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        log_plan = sinkhorn(cost, epsilon, max_iter=200, log_plan=True)
        partial = partial_sinkhorn(cost, epsilon, 0.5, max_iter=200, log_plan=True)
    assert torch.isfinite(log_plan).all() and torch.isfinite(partial).all()
    cols = log_plan.double().exp().sum(-2)
    assert (cols - 1 / 40).abs().sum() < 1e-6  # the last step is a column step


# ------------------------------------------------------------------ gradients
def _weighted(plan_fn, weight):
    return lambda *args: (plan_fn(*args) * weight).sum()


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
@pytest.mark.parametrize("log_plan", [False, True])
def test_gradcheck_sinkhorn(shape, log_plan):
    cost, a, b = _problem(shape, uniform=False, seed=7)
    cost = cost.unsqueeze(0).repeat(2, 1, 1).requires_grad_()
    weight = torch.randn(
        cost.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    fn = _weighted(lambda c: sinkhorn(c, 0.25, a, b, log_plan=log_plan, tol=1e-13), weight)
    assert torch.autograd.gradcheck(fn, (cost,))


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
@pytest.mark.parametrize("mass", [0.3, 0.7])
def test_gradcheck_partial_sinkhorn(shape, mass):
    cost, a, b = _problem(shape, uniform=False, seed=8, mass_ratio=0.9)
    cost.requires_grad_()
    a.requires_grad_()
    b.requires_grad_()
    weight = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fn = _weighted(lambda c, a, b: partial_sinkhorn(c, 0.1, mass, a, b, tol=1e-13), weight)
    assert torch.autograd.gradcheck(fn, (cost, a, b))


@pytest.mark.parametrize("solver", ["full", "partial"])
def test_implicit_gradient_equals_unrolled_and_truncated_is_close(solver):
    cost, a, b = _problem((6, 5), uniform=False, seed=9)
    weight = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = {}
    for mode, backprop_iter in [
        ("implicit", 1),
        ("unrolled", 1),
        ("truncated", 3),
        ("truncated", 300),
    ]:
        c = cost.clone().requires_grad_()
        kwargs = dict(differentiation=mode, backprop_iter=backprop_iter, log_plan=True)
        if solver == "full":
            log_plan = sinkhorn(c, 0.1, a, b, tol=1e-12, max_iter=20_000, **kwargs)
        else:
            log_plan = partial_sinkhorn(c, 0.1, 0.6, a, b, tol=1e-12, max_iter=20_000, **kwargs)
        (log_plan * weight).sum().backward()
        grads[mode, backprop_iter] = c.grad
    exact = grads["implicit", 1]
    torch.testing.assert_close(exact, grads["unrolled", 1], rtol=0, atol=1e-8)
    # truncation is an approximation that improves with the number of recorded iterations
    error_short = (grads["truncated", 3] - exact).abs().max()
    error_long = (grads["truncated", 300] - exact).abs().max()
    assert error_long < error_short and error_long < 1e-3 * exact.abs().max()


def test_float32_gradients_finite_at_small_epsilon():
    cost = (_points_cost(1, 16, 16, seed=10)[0] * 1e3).requires_grad_()
    target = torch.eye(16) / 16
    log_plan = sinkhorn(cost, 1e-2, log_plan=True, tol=1e-4, max_iter=5000)
    (-(target * log_plan).sum()).backward()
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0


# ------------------------------------------------------------------ bad input
def _call(solver, cost=None, epsilon=0.1, a=None, b=None, mass=0.5, **kwargs):
    cost = torch.rand(3, 4, dtype=torch.float64) if cost is None else cost
    if solver == "full":
        return sinkhorn(cost, epsilon, a, b, **kwargs)
    return partial_sinkhorn(cost, epsilon, mass, a, b, **kwargs)


@pytest.mark.parametrize("solver", ["full", "partial"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cost=torch.tensor([[0.0, float("nan")], [1.0, 0.0]])), r"non-finite value \(nan"),
        (dict(cost=torch.tensor([[0.0, float("inf")], [1.0, 0.0]])), r"non-finite value \(inf"),
        (dict(cost=torch.rand(4)), r"shape \(4,\)"),
        (dict(cost=torch.rand(0, 3)), r"shape \(0, 3\)"),
        (dict(epsilon=0.0), "epsilon=0.0"),
        (dict(epsilon=-1.0), "epsilon=-1.0"),
        (dict(epsilon=float("nan")), "epsilon=nan"),
        (dict(a=torch.tensor([0.5, 0.7, -0.2], dtype=torch.float64)), "a contains -0.2"),
        (dict(b=[0.25, 0.25, float("nan"), 0.5]), "b contains nan"),
        (dict(a=torch.ones(4) / 4), r"a has shape \(4,\)"),
        (dict(b=torch.ones(2, 4) / 4), r"b has shape \(2, 4\)"),
        (dict(a=torch.zeros(3)), "a sums to 0"),
        (dict(max_iter=0), "max_iter=0"),
        (dict(tol=-1.0), "tol=-1.0"),
        (dict(differentiation="magic"), "differentiation='magic'"),
    ],
)
def test_bad_input_raises_value_error(solver, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _call(solver, **kwargs)


def test_unequal_totals_rejected_by_balanced_solver():
    with pytest.raises(ValueError, match=r"a sums to 1 but b sums to 0.8"):
        sinkhorn(torch.rand(3, 4), 0.1, b=torch.full((4,), 0.2))


@pytest.mark.parametrize("mass", [0.0, -0.1, 0.81, float("inf")])
def test_mass_outside_range_rejected(mass):
    with pytest.raises(ValueError, match=f"mass={mass!r}"):
        partial_sinkhorn(torch.rand(3, 4), 0.1, mass, b=torch.full((4,), 0.2))


@pytest.mark.parametrize(
    "cost, exc",
    [([[0.0, 1.0]], TypeError), (torch.ones(2, 2, dtype=torch.int64), TypeError)],
)
def test_wrong_types(cost, exc):
    with pytest.raises(exc, match="cost"):
        sinkhorn(cost, 0.1)


def test_cost_over_epsilon_overflow_rejected():
    with pytest.raises(ValueError, match="overflows"):
        sinkhorn(torch.full((2, 2), 1e37), 1e-3)
