"""Tests of the chunked transductive Sinkhorn against POT's dense log-domain solver."""

import numpy as np
import ot
import pytest
import torch

from sklearn_ltm.rerank import _ChunkedCost, sinkhorn_potentials, transductive_log_plan


def _embeddings(seed, n_queries, n_gallery, dim=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_queries, dim)).astype(dtype),
            rng.normal(size=(n_gallery, dim)).astype(dtype))


def _dense_plan(q, g, epsilon, normalize_cost):
    cost = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    if normalize_cost:
        cost = cost / cost.max()
    a = np.full(len(q), 1 / len(q))
    b = np.full(len(g), 1 / len(g))
    return ot.sinkhorn(a, b, cost, reg=epsilon, method="sinkhorn_log", numItermax=20000,
                       stopThr=1e-13)


@pytest.mark.parametrize("shape", [(9, 5), (5, 9), (1, 4), (6, 1), (12, 12)])
@pytest.mark.parametrize("epsilon, normalize_cost", [(0.05, True), (0.02, True), (0.5, False)])
@pytest.mark.parametrize("chunk_size", [4, 1024])
def test_equals_dense_pot_plan(shape, epsilon, normalize_cost, chunk_size):
    q, g = _embeddings(sum(shape), *shape)
    expected = _dense_plan(q, g, epsilon, normalize_cost)
    log_plan = transductive_log_plan(q, g, epsilon=epsilon, n_iter=20000, tol=1e-12,
                                     chunk_size=chunk_size, normalize_cost=normalize_cost)
    np.testing.assert_allclose(np.exp(log_plan), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_marginals_are_uniform_and_chunking_is_exact(chunk_size):
    q, g = _embeddings(1, 7, 5)
    log_plan = transductive_log_plan(q, g, n_iter=5000, tol=1e-12, chunk_size=chunk_size)
    plan = np.exp(log_plan)
    np.testing.assert_allclose(plan.sum(axis=1), np.full(7, 1 / 7), atol=1e-12)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(5, 1 / 5), atol=1e-12)
    reference = transductive_log_plan(q, g, n_iter=5000, tol=1e-12, chunk_size=7)
    np.testing.assert_allclose(log_plan, reference, rtol=0, atol=1e-9)


def test_potentials_reconstruct_the_plan():
    q, g = _embeddings(2, 6, 4)
    pot = sinkhorn_potentials(q, g, epsilon=0.1, n_iter=500, tol=1e-10)
    cost = ((q[:, None] - g[None]) ** 2).sum(-1)
    assert pot.cost_scale == pytest.approx(cost.max())
    rebuilt = (pot.query_potential[:, None] + pot.gallery_potential[None] - cost / pot.cost_scale)
    log_plan = transductive_log_plan(q, g, epsilon=0.1, n_iter=500, tol=1e-10)
    np.testing.assert_allclose(rebuilt / 0.1, log_plan, atol=1e-9)
    assert pot.marginal_error <= 1e-10
    assert pot.n_iter < 500  # stopped early at the tolerance


def test_tol_zero_runs_every_iteration():
    q, g = _embeddings(3, 5, 5)
    assert sinkhorn_potentials(q, g, n_iter=7, tol=0).n_iter == 7


def test_cost_chunks_are_bounded_by_chunk_size():
    q, g = _embeddings(4, 10, 6)
    chunks = list(_ChunkedCost(torch.from_numpy(q), torch.from_numpy(g), 4).chunks())
    assert [tuple(c.shape) for _, c in chunks] == [(4, 6), (4, 6), (2, 6)]
    full = np.concatenate([c.numpy() for _, c in chunks])
    np.testing.assert_allclose(full, ((q[:, None] - g[None]) ** 2).sum(-1), atol=1e-12)


def test_reranking_shares_out_a_hub():
    # Gallery item 0 is nearest to every query; the plan sends each query to a different item.
    gallery = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    queries = np.array([[0.2, 0.0], [1.4, 0.0], [0.0, 1.4]])
    plain = -((queries[:, None] - gallery[None]) ** 2).sum(-1)
    assert plain.argmax(axis=1).tolist() == [0, 0, 0]
    assert transductive_log_plan(queries, gallery, epsilon=0.01).argmax(axis=1).tolist() == [
        0, 1, 2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out_and_numpy_in_numpy_out(dtype):
    q, g = _embeddings(5, 6, 3)
    out_np = transductive_log_plan(q.astype(np.float32), g.astype(np.float32))
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    qt, gt = torch.from_numpy(q).to(dtype), torch.from_numpy(g).to(dtype)
    out_t = transductive_log_plan(qt, gt)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == dtype
    np.testing.assert_allclose(out_t.double().numpy(), out_np, rtol=1e-4, atol=1e-4)


def test_inputs_are_not_modified():
    q, g = _embeddings(6, 5, 4)
    q0, g0 = q.copy(), g.copy()
    transductive_log_plan(q, g, chunk_size=2)
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epsilon": 0.0}, ValueError, "epsilon=0.0"),
        ({"epsilon": float("nan")}, ValueError, "epsilon=nan"),
        ({"n_iter": 0}, ValueError, "n_iter=0"),
        ({"chunk_size": 2.5}, ValueError, "chunk_size=2.5"),
        ({"tol": -1.0}, ValueError, "tol=-1.0"),
        ({"gallery": np.zeros((3, 5))}, ValueError, "dimension 4 but gallery has 5"),
        ({"queries": np.full((2, 4), np.nan)}, ValueError, "queries contains NaN"),
        ({"queries": np.zeros(4)}, ValueError, "queries must be a non-empty 2-D"),
        ({"gallery": np.array([["a"] * 4])}, TypeError, "gallery must hold real numbers"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {"queries": np.zeros((2, 4)), "gallery": np.ones((3, 4))}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        transductive_log_plan(**args)
