"""Property-based tests of the OT solvers (hypothesis): random shapes, dtypes, marginals."""

import warnings

import numpy as np
import pytest
import torch

from sklearn_ltm.transport import DIFFERENTIATION_MODES, partial_sinkhorn, sinkhorn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
#: the float32 output plan rounds each entry: its sums may differ from the solver's by this
SLACK = {torch.float32: 3e-6, torch.float64: 1e-12}


@st.composite
def problems(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    n, m = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    epsilon = 10 ** draw(st.floats(-1.3, 0.0))
    scale = 10 ** draw(st.floats(-1.0, 1.0))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    cost = rng.random(batch + (n, m)) * scale

    def weights(size):
        w = np.exp(rng.normal(size=batch + (size,)))
        zeros = rng.random(w.shape) < draw(st.sampled_from([0.0, 0.3]))
        zeros[..., rng.integers(size)] = False  # at least one positive weight per problem
        w[zeros] = 0.0
        return w / w.sum(-1, keepdims=True)

    a, b = weights(n), weights(m)
    partial = draw(st.booleans())
    mass = None
    if partial:
        b = b * draw(st.floats(0.5, 1.5))
        mass = draw(st.floats(0.1, 1.0)) * float(np.minimum(a.sum(-1), b.sum(-1)).min())
    tensors = [torch.tensor(x, dtype=dtype) for x in (cost, a, b)]
    return (*tensors, epsilon, mass)


def _solve(cost, a, b, epsilon, mass, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is checked through info
        if mass is None:
            return sinkhorn(cost, epsilon, a, b, **kwargs)
        return partial_sinkhorn(cost, epsilon, mass, a, b, **kwargs)


@SETTINGS
@given(problems())
def test_plans_finite_and_marginals_within_reported_error(problem):
    cost, a, b, epsilon, mass = problem
    plan, info = _solve(cost, a, b, epsilon, mass, return_info=True)
    assert plan.shape == cost.shape and plan.dtype == cost.dtype
    assert torch.isfinite(plan).all() and (plan >= 0).all()
    reported = torch.as_tensor(info["marginal_error_per_problem"])
    assert reported.shape == cost.shape[:-2]
    assert bool(torch.as_tensor(info["converged_per_problem"]).all()) == info["converged"]
    plan, a64, b64 = plan.double(), a.double(), b.double()
    rows, cols = plan.sum(-1) - a64, plan.sum(-2) - b64
    slack = SLACK[cost.dtype]
    if mass is None:
        assert (rows.abs().sum(-1) <= reported + slack).all()
        assert (cols.abs().sum(-1) <= slack + 1e-3 * reported).all()
    else:
        assert (rows.clamp_min(0).sum(-1) <= reported + slack).all()
        assert (cols.clamp_min(0).sum(-1) <= slack).all()
        assert ((plan.sum((-1, -2)) - mass).abs() <= slack).all()
    # zero weights carry no mass
    assert (plan[(a == 0)[..., :, None].expand(plan.shape)] == 0).all()
    assert (plan[(b == 0)[..., None, :].expand(plan.shape)] == 0).all()


@SETTINGS
@given(problems(), st.sampled_from(DIFFERENTIATION_MODES), st.booleans())
def test_gradients_finite_in_every_mode(problem, mode, log_plan):
    cost, a, b, epsilon, mass = problem
    cost, a, b = (x.clone().requires_grad_() for x in (cost, a, b))
    out = _solve(cost, a, b, epsilon, mass, differentiation=mode, log_plan=log_plan,
                 backprop_iter=3)
    weight = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    if log_plan:  # -inf on zero-weight rows and columns: keep the support
        out = torch.where(torch.isfinite(out), out, 0.0)
    (out * weight).sum().backward()
    for grad in (cost.grad, a.grad, b.grad):
        assert grad is not None and torch.isfinite(grad).all()
