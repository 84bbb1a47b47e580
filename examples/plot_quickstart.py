"""
Quickstart: train a retriever on the synthetic sound corpus
===========================================================

This tutorial trains an :class:`~sklearn_ltm.LTMRetriever` end to end on the procedural
corpus of :func:`~sklearn_ltm.datasets.make_sound_captions`, evaluates it in both retrieval
directions, searches it with a caption, and saves and reloads it. It runs in well under a
minute on a laptop CPU.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from sklearn_ltm import LTMRetriever
from sklearn_ltm.datasets import make_sound_captions
from sklearn_ltm.encoders import LogMelFrontEnd
from sklearn_ltm.evaluation import evaluate
from sklearn_ltm.features import LogMelSegmentFeatures

# %%
# A corpus of sounds and captions
# -------------------------------
# Each clip is one to three synthetic sound events (tones, chirps, noise bursts, clicks,
# harmonic buzzes) with a pitch, a loudness, a duration and a rhythm; each caption describes
# them in order, in varied words. We ask for three captions per clip: like Clotho or
# AudioCaps, every row is one (clip, caption) pair, and the rows of one clip share its audio.
corpus = make_sound_captions(800, captions_per_clip=3, random_state=0)
print(corpus.audio.shape, corpus.sample_rate, "Hz")
for caption in corpus.captions[:6]:
    print("-", caption)

# %%
# Log-mel features
# ----------------
# To keep this tutorial fast we describe every clip once by
# :class:`~sklearn_ltm.features.LogMelSegmentFeatures`: its log-mel spectrogram is cut into 8
# stretches of time, each summarised by the mean and the maximum of every mel band, which
# keeps pitch, loudness and the order of events. The retriever then trains in *feature mode*:
# only its projection heads, the learned metric and the text encoder are trained. (On real
# data you would pass file paths and a pretrained audio encoder such as
# ``audio_encoder="cnn14"``; see the user guide.)
#
# The test set must contain *clips* the model never saw, with all their captions; splitting
# by row would leak captions of test clips into training. ``clip_ids`` gives each row's clip.
test = corpus.clip_ids >= 640                                # 160 clips, 480 captions
first_row = np.unique(corpus.clip_ids, return_index=True)[1]  # one row per clip
features = LogMelSegmentFeatures(sample_rate=corpus.sample_rate)
features.fit(corpus.audio[first_row[:640]])                  # standardised on training clips
X = features.transform(corpus.audio[first_row])[corpus.clip_ids]
y = np.array(corpus.captions, dtype=object)
print("features:", X.shape)

frontend = LogMelFrontEnd(sample_rate=corpus.sample_rate, n_fft=512, hop_length=160,
                          n_mels=48, f_max=corpus.sample_rate / 2)
with torch.no_grad():
    mel, _ = frontend(torch.from_numpy(corpus.audio[:1]))
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.imshow(mel[0].T.numpy(), origin="lower", aspect="auto", cmap="magma")
for edge in np.linspace(0, mel.shape[1], 9)[1:-1]:
    ax.axvline(edge, color="white", lw=0.8, ls="--")
ax.set(title=corpus.captions[0], xlabel="frame (10 ms); dashed: the 8 segments",
       ylabel="mel band")
fig.tight_layout()

# %%
# Train
# -----
# ``text_encoder="scratch"`` trains a small word-level GRU from the captions (its vocabulary
# is built in ``fit``). A network trained from scratch learns at ``learning_rate`` like the
# heads (the default of ``text_encoder__learning_rate=None``); pretrained encoders would get
# a small fine-tuning rate instead.
model = LTMRetriever(
    text_encoder="scratch", loss="mltm", metric="mahalanobis", epsilon=0.05,
    embedding_dim=64, batch_size=128, max_epochs=20, learning_rate=3e-3, random_state=0,
)
model.fit(X[~test], list(y[~test]))
print(f"trained {model.n_epochs_} epochs on {np.sum(~test)} pairs")

# %%
# ``history_`` records the training loss and the recall on the held-out validation clips
# after every epoch; early stopping restored the weights of the best epoch.
history = model.history_
epochs = [h["epoch"] for h in history]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(epochs, [h["train_loss"] for h in history], marker="o")
ax1.axhline(np.log(model.batch_size), color="grey", ls="--", label="lower bound, log B")
ax1.set(xlabel="epoch", ylabel="m-LTM training loss")
ax1.legend()
for k in (1, 5, 10):
    ax2.plot(epochs, [h[f"val_t2a_R@{k}"] for h in history], marker="o", label=f"R@{k}")
ax2.set(xlabel="epoch", ylabel="validation text-to-audio recall", ylim=(0, 1))
ax2.legend()
fig.tight_layout()

# %%
# Evaluate in both directions
# ---------------------------
# :func:`~sklearn_ltm.evaluation.evaluate` embeds each test clip once. Text-to-audio queries
# are the 480 test captions, searching 160 clips (chance R@1 is 1/160); audio-to-text queries
# are the clips, and a hit is any of the clip's three captions.
scores = evaluate(model, X[test], list(y[test]))
for direction in ("t2a", "a2t"):
    row = "  ".join(f"{m} {scores[f'{direction}_{m}']:.3f}"
                    for m in ("R@1", "R@5", "R@10", "mAP@10"))
    print(f"{direction}: {row}  median rank {scores[f'{direction}_median_rank']:.0f}")
print(f"score() = mean t2a recall = {model.score(X[test], list(y[test])):.3f}")

# %%
# Search with a caption
# ---------------------
# :meth:`~sklearn_ltm.LTMRetriever.retrieve` ranks a gallery for each query by the learned
# distance. Here the gallery is the 160 test clips, and the queries are the second caption of
# three of them; ``<-`` marks the clip a query describes.
clips = np.flatnonzero(test)[::3]                             # one row per test clip
queries = [corpus.captions[row + 1] for row in clips[:3]]
top, distances = model.retrieve(queries, X[clips], k=160)
for q, (query, order, dist) in enumerate(zip(queries, top, distances)):
    rank = int(np.flatnonzero(order == q)[0]) + 1
    print(f"\nquery: {query}\n  the described clip is ranked {rank} of 160")
    for i, d in zip(order[:3], dist[:3]):
        mark = "  <-" if i == q else ""
        print(f"  {d:.3f}  {corpus.captions[clips[i]]}{mark}")

# %%
# Save and load
# -------------
# :meth:`~sklearn_ltm.LTMRetriever.save` writes one file that
# :meth:`~sklearn_ltm.LTMRetriever.load` reads back with ``torch.load(weights_only=True)``;
# the reloaded model embeds exactly as the original.
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "quickstart.pt"
    model.save(path)
    reloaded = LTMRetriever.load(path)
    same = np.allclose(reloaded.transform(X[clips]), model.transform(X[clips]))
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, same embeddings: {same}")
