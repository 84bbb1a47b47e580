"""Tests of sklearn_ltm.ground_metrics: costs against explicit formulas, map property, rebuilding."""

import pytest
import torch

from sklearn_ltm.ground_metrics import (
    METRIC_NAMES,
    CosineMetric,
    DiagonalMetric,
    EuclideanMetric,
    MahalanobisMetric,
    make_metric,
    pairwise_sq_euclidean,
)

DIM = 6


def _embeddings(n_text=5, n_audio=7, dim=DIM, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_text, dim, generator=generator, dtype=dtype),
        torch.randn(n_audio, dim, generator=generator, dtype=dtype),
    )


def _randomize(metric, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in metric.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return metric


def _explicit_cost(name, metric, text, audio):
    """Reference cost by explicit differences (an n x m x d tensor: fine for a test)."""
    diff = text[:, None, :] - audio[None, :, :]
    if name == "euclidean":
        return (diff**2).sum(-1)
    if name == "diagonal":
        return ((diff * metric.scale.to(diff)) ** 2).sum(-1)
    if name == "mahalanobis":
        matrix = metric.M.to(diff)
        return torch.einsum("ijk,kl,ijl->ij", diff, matrix, diff)
    cosine = torch.nn.functional.cosine_similarity(text[:, None, :], audio[None, :, :], dim=-1)
    return 2 - 2 * cosine


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_cost_matches_explicit_formula_and_map(name):
    metric = _randomize(make_metric(name, DIM)).double()
    text, audio = _embeddings()
    cost = metric(text, audio)
    assert cost.shape == (5, 7) and cost.dtype == torch.float64
    torch.testing.assert_close(cost, _explicit_cost(name, metric, text, audio))
    # Euclidean distance after map equals the learned cost
    mapped = torch.cdist(metric.map(text), metric.map(audio)) ** 2
    torch.testing.assert_close(mapped, cost)


@pytest.mark.parametrize("name", ["mahalanobis", "diagonal", "euclidean"])
def test_identity_initialisation_gives_squared_euclidean(name):
    metric = make_metric(name, DIM).double()
    text, audio = _embeddings(seed=2)
    torch.testing.assert_close(metric(text, audio), torch.cdist(text, audio) ** 2)


def test_mahalanobis_matrix_is_psd_and_low_rank():
    metric = _randomize(MahalanobisMetric(DIM, rank=3)).double()
    assert metric.L.shape == (3, DIM) and metric.rank == 3
    eigenvalues = torch.linalg.eigvalsh(metric.M)
    assert eigenvalues.min() > -1e-10
    assert (eigenvalues > 1e-8).sum() == 3
    text, audio = _embeddings(seed=3)
    assert metric.map(text).shape == (5, 3)
    assert (metric(text, audio) >= 0).all()


def test_mahalanobis_initial_factor_is_identity():
    assert torch.equal(MahalanobisMetric(4).L.detach(), torch.eye(4))
    assert torch.equal(MahalanobisMetric(4, rank=2).L.detach(), torch.eye(2, 4))


def test_cosine_cost_is_scale_invariant_and_bounded():
    metric = CosineMetric(DIM)
    text, audio = _embeddings(seed=4)
    cost = metric(text, audio)
    torch.testing.assert_close(metric(3.0 * text, 0.5 * audio), cost)
    assert cost.min() >= 0 and cost.max() <= 4
    torch.testing.assert_close(metric(text, text).diagonal(), torch.zeros(5, dtype=text.dtype))


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_rebuilt_from_name_dim_and_state_dict(name):
    metric = _randomize(make_metric(name, DIM))
    clone = make_metric(metric.name, metric.dim)
    clone.load_state_dict(metric.state_dict())
    text, audio = _embeddings(dtype=torch.float32)
    torch.testing.assert_close(clone(text, audio), metric(text, audio))


def test_mahalanobis_state_dict_of_another_rank_loads():
    metric = _randomize(MahalanobisMetric(DIM, rank=2))
    clone = make_metric("mahalanobis", DIM)
    clone.load_state_dict(metric.state_dict())
    assert clone.rank == 2 and isinstance(clone.L, torch.nn.Parameter)
    text, audio = _embeddings(dtype=torch.float32)
    torch.testing.assert_close(clone(text, audio), metric(text, audio))


@pytest.mark.parametrize("name", ["mahalanobis", "diagonal"])
def test_gradients_reach_parameters(name):
    metric = make_metric(name, DIM)
    text, audio = _embeddings(dtype=torch.float32)
    metric(text, audio).sum().backward()
    (parameter,) = list(metric.parameters())
    assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_no_parameters_for_fixed_metrics():
    assert list(EuclideanMetric(3).parameters()) == []
    assert list(CosineMetric(3).parameters()) == []
    assert len(list(DiagonalMetric(3).parameters())) == 1


def test_batched_inputs():
    metric = _randomize(make_metric("mahalanobis", DIM)).double()
    generator = torch.Generator().manual_seed(5)
    text = torch.randn(2, 4, DIM, generator=generator, dtype=torch.float64)
    audio = torch.randn(2, 3, DIM, generator=generator, dtype=torch.float64)
    cost = metric(text, audio)
    assert cost.shape == (2, 4, 3)
    torch.testing.assert_close(cost[1], metric(text[1], audio[1]))


def test_pairwise_sq_euclidean_clamps_rounding_to_zero():
    x = torch.randn(50, 30) * 1e3
    distances = pairwise_sq_euclidean(x, x)
    assert (distances >= 0).all()
    torch.testing.assert_close(distances, torch.cdist(x, x) ** 2, rtol=1e-4, atol=1.0)


def test_inputs_not_modified():
    metric = _randomize(make_metric("diagonal", DIM))
    text, audio = _embeddings(dtype=torch.float32)
    before = text.clone(), audio.clone()
    metric(text, audio)
    metric.map(text)
    assert torch.equal(text, before[0]) and torch.equal(audio, before[1])


# ------------------------------------------------------------------ bad input
def test_unknown_name_lists_accepted_names():
    with pytest.raises(
        ValueError, match=r"'manhattan'.*'mahalanobis', 'diagonal', 'euclidean', 'cosine'"
    ):
        make_metric("manhattan", 4)


@pytest.mark.parametrize("dim", [0, -3, 2.5, True])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match=f"dim={dim!r}"):
        make_metric("euclidean", dim)


@pytest.mark.parametrize("rank", [0, -1, 1.5])
def test_bad_rank(rank):
    with pytest.raises(ValueError, match=f"rank={rank!r}"):
        MahalanobisMetric(4, rank=rank)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_wrong_dimension_named_in_error(name):
    metric = make_metric(name, 4)
    with pytest.raises(ValueError, match=r"audio has shape \(3, 5\).*\(\.\.\., 4\)"):
        metric(torch.randn(2, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"text and audio must be batches"):
        metric(torch.randn(4), torch.randn(3, 4))


@pytest.mark.parametrize(
    "text, match",
    [([[0.0] * 4], "text must be a torch.Tensor"), (torch.ones(2, 4, dtype=torch.int64), "dtype")],
)
def test_wrong_types(text, match):
    with pytest.raises(TypeError, match=match):
        make_metric("cosine", 4)(text, torch.randn(3, 4))
