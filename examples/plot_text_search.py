"""
Text search with a nearest-neighbour index
==========================================

:meth:`~sklearn_ltm.LTMRetriever.transform` returns audio embeddings in which the plain
Euclidean distance *is* the learned Mahalanobis metric (the embeddings are mapped by
:math:`L`, where :math:`M = L^\\top L`). So a sound library is embedded once and served by any
Euclidean nearest-neighbour index; this tutorial uses scikit-learn's
:class:`~sklearn.neighbors.NearestNeighbors`. It also shows how to plug your own
``torch.nn.Module`` in as the audio encoder.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch.nn import functional as F

from sklearn_ltm import LTMRetriever
from sklearn_ltm.components import ModuleAudio
from sklearn_ltm.datasets import make_sound_captions
from sklearn_ltm.encoders import LogMelFrontEnd
from sklearn_ltm.evaluation import evaluate


# %%
# An audio encoder of your own
# ----------------------------
# Any module with an ``output_dim`` attribute (and a ``sample_rate`` for waveforms) that maps
# ``(waveforms, lengths)`` to ``(batch, output_dim)`` can be the audio encoder. This one has no
# weights: like :class:`~sklearn_ltm.features.LogMelSegmentFeatures`, it summarises a log-mel
# spectrogram by band statistics over a few stretches of time. Wrapped in
# :class:`~sklearn_ltm.components.ModuleAudio` with ``freeze=True``, its outputs are computed
# once per clip and cached, so every epoch only trains the heads, the metric and the text
# encoder.
class SegmentLogMel(torch.nn.Module):
    """Mean and max of each mel band over ``segments`` stretches of time, in decibels / 20."""

    def __init__(self, sample_rate=16000, segments=8, bands=48):
        super().__init__()
        self.sample_rate = sample_rate
        self.grid = (segments, bands)
        self.output_dim = 2 * segments * bands
        self.frontend = LogMelFrontEnd(sample_rate=sample_rate, n_fft=512, hop_length=160,
                                       n_mels=bands, f_max=sample_rate / 2)

    def forward(self, waveforms, lengths=None):
        mel, _ = self.frontend(waveforms)                  # (batch, frames, bands)
        mean = F.adaptive_avg_pool2d(mel[:, None], self.grid)
        peak = F.adaptive_max_pool2d(mel[:, None], self.grid)
        return torch.cat([mean, peak], dim=1).flatten(1) / 20.0


# %%
# Train on waveforms
# ------------------
# ``X`` is now a 2-D array of raw waveforms at the corpus' 16 kHz; the retriever feeds them
# through the module.
corpus = make_sound_captions(800, captions_per_clip=3, random_state=0)
model = LTMRetriever(
    audio_encoder=ModuleAudio(SegmentLogMel(), freeze=True), text_encoder="scratch",
    embedding_dim=64, batch_size=128, max_epochs=20, learning_rate=3e-3, random_state=0,
).fit(corpus.audio, corpus.captions)
print(f"trained {model.n_epochs_} epochs on {len(corpus.captions)} pairs")

# %%
# Index a sound library
# ---------------------
# The library is 300 clips the model has never seen. Each is embedded once; the index is an
# exact Euclidean search (use an approximate index such as FAISS for millions of clips: the
# vectors are the same).
library = make_sound_captions(300, random_state=7)
library_vectors = model.transform(library.audio)
index = NearestNeighbors(n_neighbors=3).fit(library_vectors)
print("library embeddings:", library_vectors.shape)

# How well does the model find a library clip from one of its own captions?
scores = evaluate(model, library.audio, library.captions)
print("library, text-to-audio:", ", ".join(f"R@{k} {scores[f't2a_R@{k}']:.2f}" for k in (1, 5, 10)),
      f"(chance R@1 {1 / len(library.captions):.3f})")

# %%
# Search by text
# --------------
# Queries are embedded with :meth:`~sklearn_ltm.LTMRetriever.embed_text`. The library's own
# captions tell us what the retrieved clips really contain.
#
# Keep the scale in mind: this model trained for a few seconds on 800 synthetic clips with a
# text encoder learned from scratch, and free-form queries are shorter than the captions it
# learned from. The results show what it has learned well (the pitch register, clicks and
# taps, hisses) and what it has not (how many times a sound repeats, the order of several
# events). More pairs, or pretrained encoders, give a much sharper search.
queries = [
    "The sound of two quick clicks.",
    "A quiet low hum can be heard.",
    "A long hiss followed by slow clicks.",
    "Three quick shrill beeps.",
]
distances, neighbours = index.kneighbors(model.embed_text(queries))
for query, row, dist in zip(queries, neighbours, distances):
    print(f"\nquery: {query!r}")
    for rank, (i, d) in enumerate(zip(row, dist), 1):
        print(f"  {rank}. {d:.3f}  {library.captions[i]}")

# %%
# The index ranks exactly like the model: :meth:`~sklearn_ltm.LTMRetriever.retrieve` returns
# the same clips, and its learned squared distances are the squared Euclidean distances of
# the index.
top, sq_distances = model.retrieve(queries, library.audio, k=3)
print("same ranking:", np.array_equal(top, neighbours))
print("same distances:", np.allclose(sq_distances, distances**2, atol=1e-4))

# %%
# What the top results look like
# ------------------------------
# The log-mel spectrograms of the three clips found for the first query.
frontend = SegmentLogMel().frontend
with torch.no_grad():
    mel, _ = frontend(torch.from_numpy(library.audio[neighbours[0]]))
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), sharey=True)
for ax, spectrogram, i in zip(axes, mel.numpy(), neighbours[0]):
    ax.imshow(spectrogram.T, origin="lower", aspect="auto", cmap="magma")
    ax.set_title("\n".join(library.captions[i][j:j + 38]
                           for j in range(0, len(library.captions[i]), 38)), fontsize=8)
    ax.set_xlabel("frame (10 ms)")
axes[0].set_ylabel("mel band")
fig.suptitle(f"top 3 for {queries[0]!r}")
fig.tight_layout()
