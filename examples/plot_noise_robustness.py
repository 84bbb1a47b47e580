"""
Noisy captions: full OT, partial OT and the contrastive loss
============================================================

Real caption datasets contain pairs whose caption describes another clip. This tutorial
trains the same model with three losses while a growing fraction of the training captions is
shuffled, and measures retrieval on clean test pairs:

- m-LTM with full optimal transport (``mass_fraction=1``),
- m-LTM with partial optimal transport (``mass_fraction=0.6``), which may leave 40 % of each
  batch's mass unmatched,
- the symmetric InfoNCE (contrastive) loss.

To see the effect of the loss alone, the features have a planted structure: each clip has a
hidden 16-dimensional code, and its audio and caption features are two different noisy
linear views of it. A retriever must discover the shared code from the pairs.

How much each loss gains depends on the data, the noise and the training budget: the
``bench_noise.py`` benchmark on the :doc:`results page <../results>` measures another
setting, over several seeds, where the ranking of the losses differs. Run both kinds of
experiment on your own data before choosing.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from sklearn_ltm import LTMRetriever
from sklearn_ltm.evaluation import evaluate
from sklearn_ltm.transport import partial_sinkhorn

# %%
# Paired features with a known truth
# ----------------------------------
rng = np.random.default_rng(0)
n_clips, n_train = 1500, 1200
code = rng.normal(size=(n_clips, 16))
audio = code @ rng.normal(size=(16, 64)) + 0.5 * rng.normal(size=(n_clips, 64))
text = code @ rng.normal(size=(16, 48)) + 0.5 * rng.normal(size=(n_clips, 48))
train, test = slice(0, n_train), slice(n_train, None)

# %%
# Train under growing caption noise
# ---------------------------------
# ``noise_ratio`` shuffles that fraction of the *training* captions among themselves inside
# ``fit`` (the validation clips used for early stopping and our test clips stay clean).
# Every model gets the same seed, so the same pairs are corrupted for the three losses.
losses = {
    "m-LTM, full OT": dict(loss="mltm", mass_fraction=1.0),
    "m-LTM, partial OT (mass 0.6)": dict(loss="mltm", mass_fraction=0.6),
    "contrastive (InfoNCE)": dict(loss="contrastive"),
}
noise_levels = [0.0, 0.2, 0.4, 0.6, 0.8]
recall = {name: [] for name in losses}
for noise in noise_levels:
    for name, params in losses.items():
        model = LTMRetriever(embedding_dim=32, batch_size=128, max_epochs=40,
                             noise_ratio=noise, random_state=0, **params)
        model.fit(audio[train], text[train])
        scores = evaluate(model, audio[test], text[test])
        recall[name].append(scores["t2a_R@1"])
    print(f"noise {noise:.1f}:", "  ".join(f"{k} {r[-1]:.3f}" for k, r in recall.items()))

# %%
fig, ax = plt.subplots(figsize=(6.5, 4))
for (name, values), marker in zip(recall.items(), "osd"):
    ax.plot(noise_levels, values, marker=marker, label=name)
ax.axhline(1 / (n_clips - n_train), color="grey", ls=":", label="chance")
ax.set(xlabel="fraction of shuffled training captions (noise_ratio)",
       ylabel="test text-to-audio R@1", ylim=(0, 1.02),
       title=f"{n_clips - n_train} test clips, clean test captions")
ax.legend()
fig.tight_layout()

# %%
# What partial transport does with a wrong pair
# ---------------------------------------------
# Take a model trained with full OT on clean pairs, and a batch of 128 training pairs of which
# 40 % carry the caption of some clip outside the batch, as shuffled captions usually do. Under
# the learned metric such a caption is far from every clip of the batch. Full transport must
# still send all of its mass somewhere (every row of the plan sums to 1/B); partial transport
# with ``mass_fraction=0.6`` moves only 60 % of the mass and leaves the most expensive
# captions unmatched, so their pairs carry little weight in the loss.
clean_model = LTMRetriever(embedding_dim=32, batch_size=128, max_epochs=40, random_state=0)
clean_model.fit(audio[train], text[train])

batch = rng.choice(n_train, size=128, replace=False)
wrong = rng.random(128) < 0.4
outside = np.setdiff1d(np.arange(n_train), batch)
captions = np.where(wrong, rng.choice(outside, size=128), batch)
a = torch.from_numpy(clean_model.transform(audio[batch]))
t = torch.from_numpy(clean_model.embed_text(text[captions]))
cost = torch.cdist(t, a) ** 2
plan = partial_sinkhorn(cost / cost.max(), 0.05, mass=0.6)   # cost normalised as in training
matched = (128 * plan.sum(dim=1)).numpy()                    # 1 = the caption is fully matched

fig, ax = plt.subplots(figsize=(6.5, 3.4))
bins = np.linspace(0, 1, 21)
ax.hist(matched[~wrong], bins=bins, alpha=0.6, label="correct captions")
ax.hist(matched[wrong], bins=bins, alpha=0.6, label="wrong captions")
ax.set(xlabel="share of the caption's mass that partial OT transports",
       ylabel="captions in the batch", title="one batch, mass_fraction=0.6")
ax.legend()
fig.tight_layout()
print(f"mean share transported: correct captions {matched[~wrong].mean():.2f}, "
      f"wrong captions {matched[wrong].mean():.2f}")
