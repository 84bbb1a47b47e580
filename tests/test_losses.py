"""Tests of sklearn_ltm.losses: ground-truth plan, m-LTM minimum and groups, baselines."""

import math

import numpy as np
import pytest
import torch

from sklearn_ltm.ground_metrics import make_metric
from sklearn_ltm.losses import (
    LOSS_NAMES,
    ContrastiveLoss,
    MLTMLoss,
    TripletLoss,
    ground_truth_plan,
    info_nce_loss,
    make_loss,
    mltm_loss,
    triplet_loss,
)


def _batch_cost(size=8, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.nn.functional.normalize(torch.randn(size, 16, generator=generator, dtype=dtype))
    text = torch.nn.functional.normalize(
        audio + 0.5 * torch.randn(size, 16, generator=generator, dtype=dtype)
    )
    return torch.cdist(text, audio) ** 2


def _entropy(plan):
    positive = plan[plan > 0]
    return -(positive * positive.log()).sum().item()


# ------------------------------------------------------------------ ground truth plan
@pytest.mark.parametrize(
    "groups", [[0, 1, 2, 3], [0, 0, 1, 1, 1, 2], [5, 5, 5], [3, 1, 3, 2, 1, 3, 7]]
)
@pytest.mark.parametrize("group_aware", [True, False])
def test_ground_truth_plan_marginals_and_support(groups, group_aware):
    plan = ground_truth_plan(torch.tensor(groups), group_aware)
    size = len(groups)
    torch.testing.assert_close(plan.sum(0), torch.full((size,), 1 / size))
    torch.testing.assert_close(plan.sum(1), torch.full((size,), 1 / size))
    same = torch.tensor(groups)[:, None] == torch.tensor(groups)[None, :]
    if group_aware:
        assert ((plan > 0) == same).all()  # shared within a clip, zero across clips
    else:
        torch.testing.assert_close(plan, torch.eye(size) / size)


def test_ground_truth_plan_shares_clip_mass():
    plan = ground_truth_plan([0, 0, 1], dtype=torch.float64)
    expected = torch.tensor(
        [[1 / 6, 1 / 6, 0], [1 / 6, 1 / 6, 0], [0, 0, 1 / 3]], dtype=torch.float64
    )
    torch.testing.assert_close(plan, expected)


# ------------------------------------------------------------------ m-LTM
@pytest.mark.parametrize("mass_fraction", [1.0, 0.8])
@pytest.mark.parametrize("size", [4, 16])
def test_mltm_minimum_log_b_at_perfect_plan(mass_fraction, size):
    # a cost that makes the plan (almost) the identity: loss -> log(B)
    cost = 1.0 - torch.eye(size, dtype=torch.float64)
    loss = mltm_loss(cost, torch.arange(size), epsilon=0.01, mass_fraction=mass_fraction)
    assert loss.item() == pytest.approx(math.log(size), abs=1e-6)


@pytest.mark.parametrize("mass_fraction", [1.0, 0.9, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mltm_never_below_entropy_of_target(mass_fraction, seed):
    groups = torch.tensor([0, 0, 1, 2, 3, 3, 3, 4])
    cost = _batch_cost(8, seed)
    loss = mltm_loss(cost, groups, epsilon=0.05, mass_fraction=mass_fraction)
    target = ground_truth_plan(groups, dtype=torch.float64)
    assert loss.item() >= _entropy(target) - 1e-9
    assert loss.item() > _entropy(target) + 1e-3  # a random cost is not a perfect plan


def test_mltm_matches_explicit_formula():
    cost = _batch_cost(6, seed=3)
    groups = torch.tensor([0, 1, 1, 2, 3, 4])
    from sklearn_ltm.transport import partial_sinkhorn

    normalized = cost / cost.max()
    plan = partial_sinkhorn(normalized, 0.1, 0.7, tol=1e-12)
    expected = -(ground_truth_plan(groups, dtype=cost.dtype) * torch.log(plan / 0.7)).sum()
    loss = mltm_loss(cost, groups, epsilon=0.1, mass_fraction=0.7, tol=1e-12)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)


def _twin_cost(twin_cost):
    """Captions 0 and 1 describe the same clip (audio columns 0 and 1 are that clip)."""
    return torch.tensor(
        [
            [0.1, twin_cost, 1.0, 1.0],
            [twin_cost, 0.1, 1.0, 1.0],
            [1.0, 1.0, 0.1, 1.0],
            [1.0, 1.0, 1.0, 0.1],
        ],
        dtype=torch.float64,
        requires_grad=True,
    )


TWIN_GROUPS = torch.tensor([0, 0, 1, 2])


def test_groups_are_honoured_at_the_optimum():
    cost = _twin_cost(0.1)  # the plan splits each clip's mass between its two captions
    aware = mltm_loss(cost, TWIN_GROUPS, epsilon=0.05)
    naive = mltm_loss(cost, TWIN_GROUPS, epsilon=0.05, group_aware=False)
    # the group-aware loss is at its minimum H(P_hat) (KL = 0); the reference one is not
    assert aware.item() == pytest.approx(_entropy(ground_truth_plan(TWIN_GROUPS)), abs=1e-6)
    assert naive.item() - math.log(4) > 0.3
    (grad_aware,) = torch.autograd.grad(aware, cost)
    (grad_naive,) = torch.autograd.grad(naive, cost)
    assert grad_aware.abs().max() < 1e-6
    assert grad_naive[0, 1] < -0.1  # descent raises the twin's cost: pushes the clip apart


@pytest.mark.parametrize("mass_fraction", [1.0, 0.7])
@pytest.mark.parametrize("loss", ["mltm", "contrastive", "triplet"])
def test_groups_are_honoured_in_the_gradient(loss, mass_fraction):
    """Group-aware losses pull the twin caption/audio together; the reference pushes apart."""
    cost = _twin_cost(0.4)
    params = dict(mass_fraction=mass_fraction, epsilon=0.05, margin=0.5, temperature=0.1)
    (grad_aware,) = torch.autograd.grad(make_loss(loss, **params)(cost, TWIN_GROUPS), cost)
    (grad_naive,) = torch.autograd.grad(
        make_loss(loss, **params, group_aware=False)(cost, TWIN_GROUPS), cost
    )
    assert grad_naive[0, 1] < -1e-3
    if loss == "triplet":  # same-clip pairs are simply not negatives
        assert grad_aware[0, 1] == 0
    else:
        assert grad_aware[0, 1] > 1e-3


@pytest.mark.parametrize("mass_fraction", [1.0, 0.6])
@pytest.mark.parametrize("epsilon", [1e-3, 0.05])
@pytest.mark.parametrize("metric", ["mahalanobis", "cosine"])
def test_mltm_gradients_finite_float32(mass_fraction, epsilon, metric):
    generator = torch.Generator().manual_seed(4)
    text = torch.randn(12, 8, generator=generator, requires_grad=True)
    audio = torch.randn(12, 8, generator=generator)
    ground = make_metric(metric, 8)
    loss = MLTMLoss(epsilon=epsilon, mass_fraction=mass_fraction, tol=1e-4, max_iter=3000)(
        ground(text, audio), torch.arange(12)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(text.grad).all()
    assert text.grad.abs().sum() > 0
    for parameter in ground.parameters():
        assert torch.isfinite(parameter.grad).all()


def test_mltm_training_step_decreases_loss():
    generator = torch.Generator().manual_seed(5)
    text = torch.randn(16, 8, generator=generator, requires_grad=True)
    audio = torch.randn(16, 8, generator=generator)
    loss_fn = make_loss("mltm", epsilon=0.1)
    groups = torch.arange(16)
    optimizer = torch.optim.SGD([text], lr=0.5)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(torch.cdist(text, audio) ** 2, groups)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


# ------------------------------------------------------------------ baselines
def test_info_nce_equals_clip_cross_entropy_for_distinct_clips():
    cost = _batch_cost(6, seed=6)
    logits = -cost / 0.1
    labels = torch.arange(6)
    expected = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    for group_aware in (True, False):
        loss = info_nce_loss(cost, labels, temperature=0.1, group_aware=group_aware)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_triplet_matches_manual_hardest_negatives():
    cost = _batch_cost(5, seed=7)
    similarity = -cost
    manual = 0.0
    for i in range(5):
        others = [j for j in range(5) if j != i]
        hardest_audio = max(similarity[i, j] for j in others)
        hardest_text = max(similarity[j, i] for j in others)
        manual += max(0.0, 0.3 - similarity[i, i] + hardest_audio)
        manual += max(0.0, 0.3 - similarity[i, i] + hardest_text)
    loss = triplet_loss(cost, torch.arange(5), margin=0.3)
    assert loss.item() == pytest.approx(float(manual) / 5, rel=1e-12)


def test_triplet_group_aware_excludes_same_clip_from_negatives():
    groups = torch.tensor([0, 0, 1])
    cost = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0], [5.0, 5.0, 0.0]], dtype=torch.float64)
    assert triplet_loss(cost, groups, margin=1.0).item() == 0.0
    # as negatives, the twin captions violate the margin
    naive = triplet_loss(cost, groups, margin=1.0, group_aware=False)
    assert naive.item() == pytest.approx(4 * 1.0 / 3)


def test_triplet_single_clip_batch_has_no_negatives():
    loss = triplet_loss(torch.rand(3, 3), torch.tensor([2, 2, 2]))
    assert loss.item() == 0.0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_losses_finite_gradients(name):
    cost = _batch_cost(8, seed=8, dtype=torch.float32).requires_grad_()
    loss = make_loss(name)(cost, torch.tensor([0, 0, 1, 2, 3, 4, 5, 6]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0


# ------------------------------------------------------------------ factory and modules
@pytest.mark.parametrize(
    "name, cls, function, params",
    [
        ("mltm", MLTMLoss, mltm_loss, dict(epsilon=0.2, mass_fraction=0.9)),
        ("contrastive", ContrastiveLoss, info_nce_loss, dict(temperature=0.3)),
        ("triplet", TripletLoss, triplet_loss, dict(margin=0.4)),
    ],
)
def test_make_loss_module_equals_function(name, cls, function, params):
    module = make_loss(name, **params, group_aware=False)
    assert isinstance(module, cls) and module.name == name
    cost, groups = _batch_cost(6, seed=9), torch.tensor([0, 0, 1, 2, 3, 4])
    expected = function(cost, groups, **params, group_aware=False)
    assert module(cost, groups).item() == pytest.approx(expected.item(), rel=1e-12)


def test_make_loss_ignores_parameters_of_other_losses():
    module = make_loss("triplet", epsilon=0.01, temperature=0.5, margin=0.1)
    assert module.params == {"margin": 0.1, "group_aware": True}


def test_losses_do_not_modify_inputs():
    cost = _batch_cost(6, seed=10)
    groups = torch.tensor([0, 0, 1, 2, 3, 4])
    before = cost.clone(), groups.clone()
    for name in LOSS_NAMES:
        make_loss(name)(cost, groups)
    assert torch.equal(cost, before[0]) and torch.equal(groups, before[1])


def test_groups_as_numpy_array():
    cost = _batch_cost(4, seed=11)
    loss = mltm_loss(cost, np.array([0, 1, 1, 2]))
    assert loss.item() == pytest.approx(mltm_loss(cost, torch.tensor([0, 1, 1, 2])).item())


# ------------------------------------------------------------------ bad input
def test_unknown_loss_name():
    with pytest.raises(ValueError, match=r"'hinge'.*'mltm', 'contrastive', 'triplet'"):
        make_loss("hinge")


@pytest.mark.parametrize("function", [mltm_loss, info_nce_loss, triplet_loss])
def test_bad_cost_and_groups(function):
    with pytest.raises(ValueError, match=r"cost has shape \(3, 4\)"):
        function(torch.rand(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="groups has 2 entries but the cost matrix is 3 x 3"):
        function(torch.rand(3, 3), torch.arange(2))
    with pytest.raises(TypeError, match="groups must be"):
        function(torch.rand(3, 3), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="non-finite"):
        function(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.arange(2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epsilon=0.0), "epsilon=0.0"),
        (dict(epsilon=-0.1), "epsilon=-0.1"),
        (dict(mass_fraction=0.0), "mass_fraction=0.0"),
        (dict(mass_fraction=1.2), "mass_fraction=1.2"),
        (dict(temperature=0.0), "temperature=0.0"),
        (dict(margin=-0.5), "margin=-0.5"),
        (dict(differentiation="magic"), "differentiation='magic'"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    name = "triplet" if "margin" in kwargs else "contrastive" if "temperature" in kwargs else "mltm"
    with pytest.raises(ValueError, match=match):
        make_loss(name, **kwargs)


# ------------------------------------------------------------------ square-rooted cost option
def test_mltm_sqrt_cost_equals_loss_on_rooted_cost_and_default_is_squared():
    cost = _batch_cost(size=7, seed=4).requires_grad_()
    rooted = cost.detach().sqrt().requires_grad_()
    value = mltm_loss(cost, torch.arange(7), epsilon=0.05, sqrt_cost=True)
    expected = mltm_loss(rooted, torch.arange(7), epsilon=0.05)
    torch.testing.assert_close(value, expected)
    value.backward()
    expected.backward()
    # chain rule through the root: d/dC = d/d sqrt(C) / (2 sqrt(C))
    torch.testing.assert_close(cost.grad, rooted.grad / (2 * rooted.detach()))
    squared = mltm_loss(cost.detach(), torch.arange(7), epsilon=0.05)
    assert not torch.isclose(squared, value.detach())
    assert make_loss("mltm", sqrt_cost=True).params["sqrt_cost"] is True
    assert MLTMLoss().params["sqrt_cost"] is False


def test_mltm_sqrt_cost_zero_entries_have_finite_gradient():
    cost = (1.0 - torch.eye(4, dtype=torch.float64)).requires_grad_()
    mltm_loss(cost, torch.arange(4), epsilon=0.1, sqrt_cost=True).backward()
    assert bool(torch.isfinite(cost.grad).all())


def test_make_loss_names_include_reference():
    assert "mltm-reference" in LOSS_NAMES
    assert make_loss("mltm").params["tol"] == 1e-6  # unchanged default of m-LTM


@pytest.mark.parametrize("groups", [list(range(10)), [0, 0, 1, 2, 2, 2, 3, 4, 5, 5]])
@pytest.mark.parametrize("sqrt_cost", [False, True])
def test_balanced_loss_closed_form_gradient_equals_differentiating_the_iterations(
    groups, sqrt_cost
):
    # implicit (default) for the balanced plan uses d L / d C = (P_hat - P) / eps; unrolled
    # differentiates every Sinkhorn iteration: both must give the same loss and gradient
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    y = x + 0.7 * torch.randn(10, 4, generator=generator, dtype=torch.float64)
    groups = torch.tensor(groups)
    grads, losses = [], []
    for mode in ("implicit", "unrolled"):
        xx = x.clone().requires_grad_()
        loss = mltm_loss(torch.cdist(xx, y) ** 2, groups, epsilon=0.05, tol=1e-12,
                         max_iter=5000, differentiation=mode, sqrt_cost=sqrt_cost)
        loss.backward()
        grads.append(xx.grad)
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-10)
    assert grads[0].abs().max() > 1e-3  # a real gradient, not two zeros
