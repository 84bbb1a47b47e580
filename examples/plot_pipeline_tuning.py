"""
Tuning a Pipeline: feature scaling and the retriever together
=============================================================

Raw audio features rarely come on one scale: a loudness in decibels next to a spectral
centroid in hertz next to a zero-crossing rate. A
:class:`~sklearn.pipeline.Pipeline` puts a scaler in front of
:class:`~sklearn_ltm.LTMRetriever`, and :class:`~sklearn.model_selection.GridSearchCV`
then tunes both at once: whether to scale, and the retriever's own parameters.

The ready retrieval scorers of :mod:`sklearn_ltm.evaluation` accept such a Pipeline: they
send the held-out audio through the earlier steps and the last step's ``transform``, and the
captions straight to the last step's ``embed_text``. One search reports every metric in
both directions.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ltm import LTMRetriever
from sklearn_ltm.evaluation import evaluate, get_retrieval_scorers

# %%
# Data: features on very different scales
# ---------------------------------------
# A hidden code per clip, seen through a noisy linear view on the audio side and another on
# the caption side (as in the other tutorials), two captions per clip. Each audio feature is
# then multiplied by a scale between 0.01 and 100 and shifted: the information is all
# there, but a model reading the raw numbers sees a few huge features and many tiny ones.
rng = np.random.default_rng(0)
n_clips, latent_dim = 400, 12
clip_ids = np.repeat(np.arange(n_clips), 2)                  # rows = (clip, caption) pairs
hidden = rng.normal(size=(n_clips, latent_dim))
audio = hidden @ rng.normal(size=(latent_dim, 40)) + 0.5 * rng.normal(size=(n_clips, 40))
audio = audio * np.logspace(-2, 2, 40) + rng.uniform(-50, 50, size=40)
X = audio[clip_ids]                                          # the two rows of a clip are equal
y = hidden[clip_ids] @ rng.normal(size=(latent_dim, 32))
y += 0.5 * rng.normal(size=y.shape)                          # each caption has its own noise
print("audio feature spread, smallest and largest:",
      np.round(X.std(axis=0).min(), 3), np.round(X.std(axis=0).max(), 1))

# Hold out a fifth of the clips (both captions of each) for a final check.
train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
                   .split(X, y, groups=clip_ids))

# %%
# The Pipeline and the search
# ---------------------------
# A step set to ``"passthrough"`` is skipped, so the grid can compare scaling against none.
# Parameters of a step are addressed as ``<step>__<parameter>``. ``GroupKFold`` keeps both
# captions of a clip on the same side of each split. The dict of ready scorers gives eight
# metrics per candidate; ``refit`` names the one that picks the winner.
pipe = Pipeline([
    ("scale", StandardScaler()),
    ("ltm", LTMRetriever(embedding_dim=32, batch_size=128, max_epochs=15,
                         validation_fraction=0.0, random_state=0)),
])
param_grid = {
    "scale": [StandardScaler(), "passthrough"],
    "ltm__epsilon": [0.05, 0.2],
}
scorers = get_retrieval_scorers()
search = GridSearchCV(pipe, param_grid, cv=GroupKFold(n_splits=3), scoring=scorers,
                      refit="t2a_R@5")
search.fit(X[train], y[train], groups=clip_ids[train])

results = search.cv_results_
names = [f"{'scaled' if p['scale'] != 'passthrough' else 'raw'}, epsilon={p['ltm__epsilon']}"
         for p in results["params"]]
for name, r1, r5, a5 in zip(names, results["mean_test_t2a_R@1"], results["mean_test_t2a_R@5"],
                            results["mean_test_a2t_R@5"]):
    print(f"{name:<24} t2a R@1 {r1:.3f}  t2a R@5 {r5:.3f}  a2t R@5 {a5:.3f}")
print("best:", {k: ("passthrough" if v == "passthrough" else
                    type(v).__name__ if k == "scale" else v)
                for k, v in search.best_params_.items()})

# %%
# The cross-validated scores
# --------------------------
# Each bar is the mean over the three folds, with the standard deviation across folds.
fig, ax = plt.subplots(figsize=(8, 3.6))
positions = np.arange(len(names))
for offset, key in ((-0.2, "t2a_R@5"), (0.2, "a2t_R@5")):
    ax.bar(positions + offset, results[f"mean_test_{key}"], width=0.4,
           yerr=results[f"std_test_{key}"], capsize=3, label=key.replace("_", " "))
ax.set_xticks(positions, names, rotation=15)
ax.set_ylabel("mean CV score")
ax.set_title("Scaling the audio features before the retriever")
ax.legend()
fig.tight_layout()

# %%
# The chosen Pipeline on held-out clips
# -------------------------------------
# ``best_estimator_`` is the whole Pipeline refitted on all training pairs. ``evaluate``
# takes it like a bare retriever and reports every metric on the held-out clips.
scores = evaluate(search.best_estimator_, X[test], y[test], groups=clip_ids[test])
for key in ("t2a_R@1", "t2a_R@5", "a2t_R@1", "a2t_R@5"):
    print(f"held-out {key}: {scores[key]:.3f}")
print(f"chance R@1: {1 / len(np.unique(clip_ids[test])):.3f}")
