"""The two-pass (gradient caching) step equals one pass over the whole batch."""

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_ltm import gradient_cache
from sklearn_ltm.encoders.frontend import SpecAugment
from sklearn_ltm.gradient_cache import (
    check_micro_batch_size,
    micro_batch_slices,
    two_pass_step,
)
from sklearn_ltm.losses import info_nce_loss, mltm_loss
from sklearn_ltm.metric import MahalanobisMetric
from sklearn_ltm.model import RetrievalModel

B, D = 12, 4


class MLP(nn.Module):
    def __init__(self, n_in, dropout=0.0, batch_norm=False):
        super().__init__()
        layers = [nn.Linear(n_in, 16)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(16))
        layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, D)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return nn.functional.normalize(self.net(x), dim=-1)


class ConvEncoder(nn.Module):
    """SpecAugment on a (batch, 1, time, freq) input, one conv layer, mean pooling."""

    def __init__(self):
        super().__init__()
        self.augment = SpecAugment(time_masks=2, time_mask_width=4, freq_masks=1,
                                   freq_mask_width=3)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.proj = nn.Linear(3, D)

    def forward(self, x):
        h = torch.relu(self.conv(self.augment(x))).mean(dim=(2, 3))
        return nn.functional.normalize(self.proj(h), dim=-1)


class Problem:
    """Two encoders, a Mahalanobis metric and a loss on (caption, clip) pairs."""

    def __init__(self, audio_net, text_net, audio, text, clips, loss="mltm"):
        self.audio_net, self.text_net = audio_net.double(), text_net.double()
        self.metric = MahalanobisMetric(D).double()
        with torch.no_grad():
            self.metric.L.add_(0.1 * torch.randn(D, D, dtype=torch.float64))
        self.audio, self.text = audio, text
        self.uniq, inverse = np.unique(clips, return_inverse=True)
        self.inverse = torch.as_tensor(inverse)
        self.groups = torch.as_tensor(clips)
        self.loss = loss

    @property
    def params(self):
        return [*self.audio_net.parameters(), *self.text_net.parameters(),
                *self.metric.parameters()]

    def loss_fn(self, text_emb, clip_emb, extra):
        cost = self.metric(text_emb, clip_emb[self.inverse])
        if self.loss in ("mltm", "partial"):
            return mltm_loss(cost, extra, epsilon=0.1, tol=1e-12, max_iter=5000,
                             mass_fraction=0.8 if self.loss == "partial" else 1.0)
        return info_nce_loss(cost, extra, temperature=0.2)

    def audio_rows(self):
        return self.audio[torch.as_tensor(self.uniq)]

    def one_pass(self, micro=None):
        """Loss and gradients of one pass with a graph (over micro-batches if ``micro``)."""
        for p in self.params:
            p.grad = None
        audio = self.audio_rows()
        if micro is None:
            a, t = self.audio_net(audio), self.text_net(self.text)
        else:
            a = torch.cat([self.audio_net(audio[s]) for s in micro_batch_slices(len(audio), micro)])
            t = torch.cat([self.text_net(self.text[s])
                           for s in micro_batch_slices(len(self.text), micro)])
        loss = self.loss_fn(t, a, self.groups)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in self.params]

    def two_pass(self, micro, **kwargs):
        for p in self.params:
            p.grad = None
        loss = two_pass_step(self.audio_net, self.text_net, self.loss_fn, self.audio_rows(),
                             self.text, micro, extra=self.groups, **kwargs)
        return loss, [p.grad.clone() for p in self.params]


def _assert_same(result, reference, atol=1e-5):
    (loss, grads), (ref_loss, ref_grads) = result, reference
    assert abs(float(loss) - float(ref_loss)) < atol
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=atol, rtol=0)
    # the comparison has teeth: the gradients are not all zero
    assert max(float(r.abs().max()) for r in ref_grads) > 1e-3


def _mlp_problem(loss="mltm", dropout=0.0, batch_norm=False, seed=0):
    torch.manual_seed(seed)
    clips = np.array([0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 9])  # two clips with two captions
    audio = torch.randn(10, 7, dtype=torch.float64)
    text = torch.randn(B, 5, dtype=torch.float64)
    return Problem(MLP(7, dropout, batch_norm), MLP(5, dropout, batch_norm), audio, text,
                   clips, loss)


@pytest.mark.parametrize("loss", ["mltm", "partial", "contrastive"])
@pytest.mark.parametrize("micro", [1, 3, 4, 5, 7])
def test_deterministic_encoders_equal_one_pass_over_whole_batch(loss, micro):
    problem = _mlp_problem(loss)
    reference = problem.one_pass()
    _assert_same(problem.two_pass(micro), reference)


@pytest.mark.parametrize("loss", ["mltm", "contrastive"])
@pytest.mark.parametrize("micro", [4, 5])
def test_dropout_masks_are_replayed(loss, micro):
    problem = _mlp_problem(loss, dropout=0.5)
    torch.manual_seed(1)
    reference = problem.one_pass(micro)
    after_reference = torch.get_rng_state()
    torch.manual_seed(1)
    result = problem.two_pass(micro, check_replay=0.0)
    _assert_same(result, reference)
    # the global generator ends where the one-pass step leaves it
    assert torch.equal(torch.get_rng_state(), after_reference)


def test_without_rng_restore_the_gradient_is_wrong(monkeypatch):
    # Negative control: the replay of the RNG state is what makes dropout exact.
    problem = _mlp_problem(dropout=0.5)
    torch.manual_seed(1)
    _, ref_grads = problem.one_pass(4)
    monkeypatch.setattr(gradient_cache, "_set_rng_state", lambda state: None)
    torch.manual_seed(1)
    _, grads = problem.two_pass(4)
    gap = max(float((g - r).abs().max()) for g, r in zip(grads, ref_grads))
    assert gap > 1e-3
    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="not repeatable"):
        problem.two_pass(4, check_replay=1e-9)


@pytest.mark.parametrize("loss", ["partial", "contrastive"])
@pytest.mark.parametrize("micro", [3, 5])
def test_conv_encoder_with_specaugment(loss, micro):
    torch.manual_seed(0)
    clips = np.array([0, 1, 1, 2, 3, 4, 5, 6, 6, 7])
    audio = torch.randn(8, 1, 12, 10, dtype=torch.float64)
    text = torch.randn(10, 5, dtype=torch.float64)
    problem = Problem(ConvEncoder(), MLP(5, dropout=0.3), audio, text, clips, loss)
    torch.manual_seed(3)
    reference = problem.one_pass(micro)
    torch.manual_seed(3)
    _assert_same(problem.two_pass(micro, check_replay=0.0), reference)
    # SpecAugment really masks in this test (else the replay would be trivial)
    torch.manual_seed(3)
    masked = problem.audio_net.augment(audio)
    assert bool((masked == 0).any())


def test_eval_mode_random_layers_equal_one_pass_over_whole_batch():
    problem = _mlp_problem(dropout=0.5)
    problem.audio_net.eval()
    problem.text_net.eval()
    _assert_same(problem.two_pass(5), problem.one_pass())


def test_batch_norm_statistics_are_updated_once_per_micro_batch():
    problem = _mlp_problem(batch_norm=True)
    bn = [m for m in [*problem.audio_net.modules(), *problem.text_net.modules()]
          if isinstance(m, nn.BatchNorm1d)]
    start = [(m.running_mean.clone(), m.running_var.clone()) for m in bn]
    reference = problem.one_pass(4)
    expected = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
                for m in bn]
    for m, (mean, var) in zip(bn, start):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.zero_()
    result = problem.two_pass(4, modules=[problem.audio_net, problem.text_net])
    _assert_same(result, reference)
    for m, (mean, var, tracked) in zip(bn, expected):
        torch.testing.assert_close(m.running_mean, mean)
        torch.testing.assert_close(m.running_var, var)
        assert int(m.num_batches_tracked) == tracked == 3  # ceil(10 or 12 / 4) = 3 micro-batches


def test_none_and_full_size_are_one_pass():
    problem = _mlp_problem()
    reference = problem.one_pass()
    _assert_same(problem.two_pass(None), reference)
    _assert_same(problem.two_pass(B), reference)


def test_dict_and_tuple_batches_are_sliced():
    torch.manual_seed(0)
    audio_net, text_net = nn.Linear(3, D).double(), nn.Linear(2, D).double()
    waves = torch.randn(6, 3, dtype=torch.float64)
    tokens = {"a": torch.randn(6, 1, dtype=torch.float64), "b": torch.randn(6, 1, dtype=torch.float64)}
    seen = []

    def embed_audio(batch):
        x, lengths = batch
        seen.append(lengths)
        return audio_net(x)

    def embed_text(batch):
        return text_net(torch.cat([batch["a"], batch["b"]], dim=1))

    def loss(t, a, extra):
        return info_nce_loss(torch.cdist(t, a) ** 2, torch.arange(6))

    value = two_pass_step(embed_audio, embed_text, loss, (waves, None), tokens, 4)
    grads = [p.grad.clone() for p in (*audio_net.parameters(), *text_net.parameters())]
    for p in (*audio_net.parameters(), *text_net.parameters()):
        p.grad = None
    ref = loss(embed_text(tokens), embed_audio((waves, None)), None)
    ref.backward()
    assert abs(float(value) - float(ref.detach())) < 1e-10
    for g, p in zip(grads, (*audio_net.parameters(), *text_net.parameters())):
        torch.testing.assert_close(g, p.grad)
    assert seen[:4] == [None] * 4


@pytest.mark.parametrize("micro, match", [
    (0, r"micro_batch_size=0 is below 1"),
    (-3, r"micro_batch_size=-3 is below 1"),
    (13, r"micro_batch_size=13 is larger than batch_size=12"),
    (2.5, r"micro_batch_size=2.5 is not an integer"),
    (True, r"micro_batch_size=True is not an integer"),
])
def test_bad_micro_batch_size_fails_before_any_work(micro, match):
    calls = []

    def embed(x):
        calls.append(len(x))
        return x

    with pytest.raises(ValueError, match=match):
        two_pass_step(embed, embed, lambda t, a, e: (t - a).sum(), torch.zeros(12, 2),
                      torch.zeros(12, 2), micro)
    assert calls == []
    with pytest.raises(ValueError, match=match):
        check_micro_batch_size(micro, 12)


def test_embedding_function_with_wrong_row_count():
    with pytest.raises(ValueError, match="returned shape \\(2, 3\\) for a micro-batch of 4 rows"):
        two_pass_step(lambda x: torch.zeros(2, 3), lambda x: torch.zeros(len(x), 3),
                      lambda t, a, e: t.sum(), torch.zeros(8, 1), torch.zeros(8, 1), 4)
    with pytest.raises(ValueError, match="scalar"):
        two_pass_step(lambda x: x.clone(), lambda x: x.clone(), lambda t, a, e: t,
                      torch.zeros(8, 1), torch.zeros(8, 1), 4)
    with pytest.raises(ValueError, match="different lengths"):
        two_pass_step(lambda x: x, lambda x: x, lambda t, a, e: t.sum(),
                      {"a": torch.zeros(3, 1), "b": torch.zeros(2, 1)}, torch.zeros(3, 1), 2)


def test_training_loop_gives_identical_weights_in_feature_mode():
    rng = np.random.default_rng(0)
    audio = torch.as_tensor(rng.normal(size=(48, 10)), dtype=torch.float32)
    text = torch.as_tensor(rng.normal(size=(48, 6)), dtype=torch.float32)
    clips = np.repeat(np.arange(24), 2)

    def train(micro):
        torch.manual_seed(0)
        model = RetrievalModel(None, None, 10, 6, embedding_dim=4, metric="mahalanobis")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        order = np.random.default_rng(1)
        for _ in range(6):
            batch = order.permutation(48)[:24]
            uniq, inverse = np.unique(clips[batch], return_inverse=True)
            inverse = torch.as_tensor(inverse)

            def loss_fn(t, a, extra):
                groups, inverse = extra
                return mltm_loss(model.cost(t, a[inverse]), groups, epsilon=0.1)

            optimizer.zero_grad(set_to_none=True)
            two_pass_step(model.embed_audio, model.embed_text, loss_fn,
                          audio[torch.as_tensor(uniq)], text[torch.as_tensor(batch)], micro,
                          extra=(torch.as_tensor(clips[batch]), inverse))
            optimizer.step()
        return {k: v.clone() for k, v in model.state_dict().items()}

    one, two, three = train(None), train(5), train(8)
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0)
        torch.testing.assert_close(three[key], one[key], atol=1e-5, rtol=0)
    torch.manual_seed(0)
    start = RetrievalModel(None, None, 10, 6, embedding_dim=4, metric="mahalanobis")
    assert any(not torch.allclose(one[k], v) for k, v in start.state_dict().items())
