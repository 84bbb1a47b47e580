"""Tests of the reference mode: the paper code's cost, POT plan, loss and evaluation protocol.

The reference formula is written out literally here (the published code's lines: repeat,
einsum, sqrt, max, ``ot.sinkhorn``, ``-pi_hat * log(pi)``) and compared with the library's
``mltm-reference`` loss reached through a ground metric, in value and gradient, in float64.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

ot = pytest.importorskip("ot")

from sklearn_ltm import LTMRetriever  # noqa: E402
from sklearn_ltm.evaluation import evaluate  # noqa: E402
from sklearn_ltm.ground_metrics import DiagonalMetric  # noqa: E402
from sklearn_ltm.losses import MLTMReferenceLoss, make_loss, mltm_reference_loss  # noqa: E402
from sklearn_ltm.reference import (  # noqa: E402
    REFERENCE_TRAINING,
    reference_cost,
    reference_median_rank,
    reference_plan,
    reference_protocol_metrics,
    reference_transductive_scores,
    root_normalized_cost,
)
from sklearn_ltm.retrieval_metrics import median_rank, retrieval_metrics  # noqa: E402


def _literal_reference_loss(audio_emb, text_emb, M, epsilon, mass_fraction=1.0):
    """The published loss, line by line (MahalalobisLoss.forward of the paper's code)."""
    batch_size = audio_emb.size(0)
    a = torch.ones(batch_size, dtype=audio_emb.dtype) / batch_size
    b = torch.ones(batch_size, dtype=audio_emb.dtype) / batch_size
    pi_hat = torch.eye(batch_size, dtype=audio_emb.dtype) / batch_size
    audio_matrix = audio_emb.unsqueeze(0).repeat(audio_emb.size(0), 1, 1)
    text_matrix = text_emb.unsqueeze(1).repeat(1, text_emb.size(0), 1)
    pairwise_dist = audio_matrix - text_matrix
    t_pairwise_dist = pairwise_dist.transpose(1, 2)
    M_dist = torch.einsum("ijk,ikj,kk->ij", pairwise_dist, t_pairwise_dist, M)
    M_dist = torch.sqrt(M_dist)
    M_dist = M_dist / M_dist.max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mass_fraction < 1:
            pi = ot.partial.entropic_partial_wasserstein(a, b, M_dist, reg=epsilon,
                                                         m=mass_fraction)
        else:
            pi = ot.sinkhorn(a, b, M_dist, reg=epsilon)
    return torch.sum(-pi_hat * torch.log(pi))


def _random_batch(size, dim, seed):
    g = torch.Generator().manual_seed(seed)
    audio = torch.nn.functional.normalize(torch.randn(size, dim, generator=g, dtype=torch.float64))
    text = torch.nn.functional.normalize(
        audio + 0.7 * torch.randn(size, dim, generator=g, dtype=torch.float64))
    diag = 0.5 + torch.rand(dim, generator=g, dtype=torch.float64)
    off = 0.3 * torch.randn(dim, dim, generator=g, dtype=torch.float64)
    M = torch.diag(diag) + off - torch.diag(off.diagonal())  # off-diagonal must not matter
    return audio, text, M


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("size", "epsilon", "mass_fraction"),
                         [(8, 0.03, 1.0), (16, 0.03, 1.0), (12, 0.1, 1.0), (10, 0.05, 0.8)])
def test_loss_and_gradient_equal_literal_pot_reference(seed, size, epsilon, mass_fraction):
    audio, text, M = _random_batch(size, 6, seed)
    leaves = [t.clone().requires_grad_() for t in (audio, text, M)]
    expected = _literal_reference_loss(*leaves, epsilon, mass_fraction)
    expected.backward()
    grad_audio, grad_text, grad_M = (t.grad for t in leaves)

    # the library path: a diagonal ground metric with scale^2 = diag(M), then the loss
    metric = DiagonalMetric(6).double()
    with torch.no_grad():
        metric.scale.copy_(M.diagonal().sqrt())
    a2, t2 = audio.clone().requires_grad_(), text.clone().requires_grad_()
    loss_fn = make_loss("mltm-reference", epsilon=epsilon, mass_fraction=mass_fraction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        value = loss_fn(metric(t2, a2), torch.arange(size))
    value.backward()
    assert math.isfinite(value.item())
    np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a2.grad, grad_audio, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t2.grad, grad_text, rtol=1e-6, atol=1e-6)
    # d loss / d scale_k = 2 scale_k d loss / d M_kk; off-diagonal entries get no gradient
    torch.testing.assert_close(metric.scale.grad / (2 * metric.scale.detach()),
                               grad_M.diagonal(), rtol=1e-6, atol=1e-6)
    off = grad_M - torch.diag(grad_M.diagonal())
    assert float(off.abs().max()) == 0.0


def test_reference_cost_equals_literal_einsum_and_ignores_off_diagonal():
    audio, text, M = _random_batch(7, 5, 3)
    diff = audio.unsqueeze(0).repeat(7, 1, 1) - text.unsqueeze(1).repeat(1, 7, 1)
    literal = torch.einsum("ijk,ikj,kk->ij", diff, diff.transpose(1, 2), M).sqrt()
    literal = literal / literal.max()
    torch.testing.assert_close(reference_cost(text, audio, M), literal, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reference_cost(text, audio, torch.diag(M.diagonal())), literal,
                               rtol=1e-12, atol=1e-12)
    assert float(reference_cost(text, audio, M).max()) == pytest.approx(1.0)


def test_reference_plan_is_the_unrolled_sinkhorn_knopp_iteration():
    """An independent unrolled loop (v then u updates) gives POT's plan and gradient."""
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    n_iter, eps = 25, 0.03
    with pytest.warns(ConvergenceWarning, match="max_iter=25"):
        plan = reference_plan(cost, eps, max_iter=n_iter, tol=1e-300)
    c2 = cost.detach().clone().requires_grad_()
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((5,), 1 / 5,
                                                                      dtype=torch.float64)
    K = torch.exp(-c2 / eps)
    u, v = torch.ones(6, dtype=torch.float64) / 6, torch.ones(5, dtype=torch.float64) / 5
    for _ in range(n_iter):
        v = b / (K.T @ u)
        u = a / (K @ v)
    manual = u[:, None] * K * v[None, :]
    torch.testing.assert_close(plan, manual, rtol=1e-10, atol=1e-14)
    weights = torch.rand(6, 5, generator=g, dtype=torch.float64)
    (plan * weights).sum().backward()
    (manual * weights).sum().backward()
    torch.testing.assert_close(cost.grad, c2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan.sum(1), a)  # last update fixes the row marginals


def test_reference_target_counts_same_clip_captions_as_negatives():
    audio, text, _ = _random_batch(6, 4, 5)
    cost = torch.cdist(text, audio) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        distinct = mltm_reference_loss(cost, torch.arange(6))
        grouped = mltm_reference_loss(cost, torch.tensor([0, 0, 0, 1, 1, 2]))
    assert distinct.item() == grouped.item()


def test_reference_loss_minimum_and_module_form():
    cost = 1.0 - torch.eye(5, dtype=torch.float64)
    loss = MLTMReferenceLoss(epsilon=0.01)(cost, torch.arange(5))
    assert loss.item() == pytest.approx(math.log(5), abs=1e-6)  # plan I/B: -log(1/B)
    assert MLTMReferenceLoss().params == {"epsilon": 0.03, "mass_fraction": 1.0,
                                          "max_iter": 1000, "tol": None}
    assert make_loss("mltm-reference").name == "mltm-reference"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"mass_fraction": 1.5}, ValueError, "mass_fraction"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"tol": -1.0}, ValueError, "tol"),
])
def test_reference_loss_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLTMReferenceLoss(**kwargs)


def test_root_normalized_cost_rejects_negative_and_non_tensors():
    with pytest.raises(ValueError, match="negative"):
        root_normalized_cost(torch.tensor([[1.0, -0.5], [0.0, 2.0]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        root_normalized_cost(np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        root_normalized_cost(torch.tensor([[1.0, float("nan")]]))


def test_reference_cost_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same d"):
        reference_cost(torch.ones(2, 3), torch.ones(2, 4), torch.eye(3))
    with pytest.raises(ValueError, match="M has shape"):
        reference_cost(torch.ones(2, 3), torch.ones(2, 3), torch.eye(4))


# ------------------------------------------------------------------ evaluation protocol
def test_transductive_scores_equal_pot_ten_iterations_per_direction():
    rng = np.random.default_rng(0)
    text, audio = rng.normal(size=(9, 4)), rng.normal(size=(6, 4))
    t2a, a2t = reference_transductive_scores(text, audio)
    dist = np.sqrt(((text[:, None, :] - audio[None, :, :]) ** 2).sum(-1))
    cost = dist / dist.max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_t2a = ot.sinkhorn(np.ones(9) / 9, np.ones(6) / 6, cost, 0.03, numItermax=10)
        expected_a2t = ot.sinkhorn(np.ones(6) / 6, np.ones(9) / 9, cost.T.copy(), 0.03,
                                   numItermax=10)
    np.testing.assert_allclose(t2a, expected_t2a, rtol=1e-10)
    np.testing.assert_allclose(a2t, expected_a2t, rtol=1e-10)
    assert not np.allclose(a2t, t2a.T)  # 10 iterations: not each other's transpose


def test_reference_median_rank_floors_the_zero_based_median():
    # first relevant ranks 1, 2, 3, 4: plain median 2.5; the reference floor(1.5) + 1 = 2
    similarity = np.array([[4.0, 3, 2, 1]] * 4)
    relevant = np.eye(4, dtype=bool)
    assert median_rank(similarity, relevant) == 2.5
    assert reference_median_rank(similarity, relevant) == 2.0
    # odd count: same as the median
    assert reference_median_rank(similarity[:3], relevant[:3]) == 2.0


def test_protocol_metrics_use_the_plans_and_reference_median():
    rng = np.random.default_rng(1)
    audio = rng.normal(size=(5, 3))
    clip_of_caption = np.repeat(np.arange(5), 2)
    text = audio[clip_of_caption] + 0.8 * rng.normal(size=(10, 3))
    out = reference_protocol_metrics(text, audio, clip_of_caption, ks=(1, 5))
    t2a, a2t = reference_transductive_scores(text, audio)
    relevant = clip_of_caption[:, None] == np.arange(5)[None, :]
    expected = retrieval_metrics(t2a, relevant, ks=(1, 5))
    assert out["t2a_R@1"] == expected["R@1"]
    assert out["a2t_R@1"] == retrieval_metrics(a2t, relevant.T, ks=(1, 5))["R@1"]
    assert out["t2a_median_rank"] == reference_median_rank(t2a, relevant)
    assert out["t2a_R@5"] == 1.0  # 5 clips in the gallery
    with pytest.raises(ValueError, match="clip_of_caption"):
        reference_protocol_metrics(text, audio, clip_of_caption[:-1])


def test_evaluate_reference_protocol_and_estimator_preset():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 6))
    audio = np.tanh(z @ rng.normal(size=(6, 10)))
    text = z @ rng.normal(size=(6, 8))
    params = {k: v for k, v in REFERENCE_TRAINING.items() if k not in ("encoder_learning_rate",)}
    params.update(learning_rate=1e-2, batch_size=20)  # small data: a larger rate, small batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LTMRetriever(**params, embedding_dim=6, max_epochs=15, validation_fraction=0.0,
                             random_state=0).fit(audio, text)
    out = evaluate(model, audio, text, protocol="reference")
    direct = reference_protocol_metrics(model.embed_text(text), model.transform(audio),
                                        np.arange(40))
    for key, value in direct.items():
        assert out[key] == pytest.approx(value)
    assert "modality_gap_centroid_distance" in out
    assert out["t2a_R@1"] > 0.2  # chance is 1/40: the reference objective learns
    with pytest.raises(ValueError, match="protocol"):
        evaluate(model, audio, text, protocol="paper")
    with pytest.raises(ValueError, match="epsilon"):
        evaluate(model, audio, text, protocol="reference", epsilon=0.1)


# ------------------------------------------------------------------ estimator surface
def test_reference_training_preset_builds_and_fits_as_given():
    from sklearn_ltm.components import MLTMReference

    preset = dict(REFERENCE_TRAINING)
    model = LTMRetriever(**REFERENCE_TRAINING)
    params = model.get_params()
    assert params["loss__max_iter"] == 1000 and params["loss__tol"] is None
    assert (params["epsilon"], params["learning_rate"], params["batch_size"]) == (0.03, 5e-5, 256)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(24, 4))
    audio, text = np.tanh(z @ rng.normal(size=(4, 6))), z @ rng.normal(size=(4, 5))
    model.set_params(loss__max_iter=200, embedding_dim=4, max_epochs=2, validation_fraction=0.0,
                     random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(audio, text)  # batch_size 256 > 24 pairs: one batch an epoch
    assert isinstance(model.loss_, MLTMReference) and model.loss_.max_iter == 200
    assert model.metric_.registered_name() == "diagonal" and model.n_epochs_ == 2
    assert np.isfinite(model.history_[-1]["train_loss"])
    assert REFERENCE_TRAINING == preset  # set_params on the estimator left the preset alone


def test_reference_loss_component_takes_the_estimator_transport_settings():
    from sklearn_ltm.components import LOSSES, MLTMReference

    built = LOSSES.create("mltm-reference").build(epsilon=0.2, mass_fraction=0.9)
    assert isinstance(built, MLTMReferenceLoss)
    cost = torch.rand(5, 5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        torch.testing.assert_close(
            built(cost, torch.arange(5)),
            mltm_reference_loss(cost, epsilon=0.2, mass_fraction=0.9))
    assert MLTMReference.uses_transport
    with pytest.raises(ValueError, match="max_iter"):
        MLTMReference(max_iter=0).validate()


@pytest.mark.parametrize("name", ["normalize_cost", "group_aware", "sqrt_cost",
                                  "differentiation"])
def test_reference_loss_refuses_settings_it_does_not_have(name):
    # the reference fixes these: setting one is an error, never silently ignored
    with pytest.raises(ValueError, match=f"Invalid parameter '{name}' for estimator "
                                         "MLTMReference"):
        LTMRetriever(loss="mltm-reference").set_params(**{f"loss__{name}": True})
