"""
Zero-shot classification
========================

A retriever trained on captions can classify sounds into categories it was never trained
to predict: write each category name into a caption template, embed the captions, and give
each clip the category whose caption is nearest. This is the protocol used to evaluate
audio-text models on ESC-50;
:class:`~sklearn_ltm.zero_shot.ZeroShotAudioClassifier` wraps it as a scikit-learn
classifier. Here the retriever learns from the captions of the synthetic sound corpus, and
the categories are the kinds of sound events.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from sklearn_ltm import LTMRetriever
from sklearn_ltm.datasets import make_sound_captions
from sklearn_ltm.features import LogMelSegmentFeatures
from sklearn_ltm.zero_shot import ZeroShotAudioClassifier

# %%
# Train a retriever on captions
# -----------------------------
# As in the :ref:`quickstart <sphx_glr_auto_examples_plot_quickstart.py>`, the clips are
# described by log-mel segment statistics and the captions go through a small text encoder
# trained from scratch. No category label is used for training: only (clip, caption) pairs.
train = make_sound_captions(800, captions_per_clip=3, random_state=0)
clip_rows = np.unique(train.clip_ids, return_index=True)[1]
features = LogMelSegmentFeatures(sample_rate=train.sample_rate).fit(train.audio[clip_rows])
retriever = LTMRetriever(
    text_encoder="scratch", embedding_dim=64, batch_size=128, max_epochs=20,
    learning_rate=3e-3, random_state=0,
).fit(features.transform(train.audio[clip_rows])[train.clip_ids], train.captions)

# %%
# New clips, one sound each
# -------------------------
# The test clips come from fresh corpora (other ``random_state`` values): clips with a
# single sound event heard once. Their category is the kind of that event (with its length),
# named by one of the words the captions use for it. The names are all the classifier sees.
NAMES = {("tone", "short"): "beep", ("tone", "long"): "hum",
         ("chirp", "short"): "chirp", ("chirp", "long"): "sweep",
         ("noise", "short"): "burst of noise", ("noise", "long"): "hiss",
         ("clicks", "short"): "click",
         ("harmonic", "short"): "buzz", ("harmonic", "long"): "chord"}

X_test, labels = [], []
for seed in (1, 2, 3):                      # three fresh corpora, 1,000 clips each
    fresh = make_sound_captions(1000, random_state=seed)
    single = [i for i, events in enumerate(fresh.events)
              if len(events) == 1 and events[0]["count"] == 1]
    X_test.append(features.transform(fresh.audio[single]))
    labels += [NAMES[fresh.events[i][0]["kind"], fresh.events[i][0]["duration"]]
               for i in single]
X_test, labels = np.concatenate(X_test), np.array(labels)
names, counts = np.unique(labels, return_counts=True)
print(f"{len(labels)} test clips:", ", ".join(f"{n} {c}" for n, c in zip(names, counts)))

# %%
# Classify
# --------
# ``fit`` only records the class names and embeds their captions; several templates are
# averaged (prompt ensembling). ``predict_proba`` is a softmax over negative distances.
templates = ["the sound of a {}", "a {} can be heard", "you can hear a {}"]
clf = ZeroShotAudioClassifier(retriever, template=templates).fit(X_test, labels)
print(clf.prompts_[0])
print(f"accuracy {clf.score(X_test, labels):.3f} (chance {1 / len(names):.3f}, "
      f"always the most frequent class {counts.max() / counts.sum():.3f})")

# %%
# The confusion matrix shows which categories the captions taught the model to tell apart.
fig, ax = plt.subplots(figsize=(6.5, 5.5))
ConfusionMatrixDisplay.from_predictions(labels, clf.predict(X_test), ax=ax,
                                        xticks_rotation=45, colorbar=False)
ax.set_title("Zero-shot predictions on unseen clips")
fig.tight_layout()

# %%
# Balanced assignment
# -------------------
# With ``balanced=True`` the clips of one ``predict`` call are shared among the classes by an
# entropic optimal-transport plan with uniform class marginals. It corrects a retriever that
# pulls too many clips towards a few captions, and pays off when the test set really is
# balanced, as ESC-50 is (40 clips per class). Our test set is not, so we compare on a
# balanced subsample of it.
rng = np.random.default_rng(0)
per_class = counts.min()
keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                       for c in clf.classes_])
for balanced in (False, True):
    clf_b = ZeroShotAudioClassifier(retriever, template=templates, balanced=balanced)
    clf_b.fit(X_test[keep], labels[keep])
    print(f"balanced={balanced}: accuracy {clf_b.score(X_test[keep], labels[keep]):.3f} "
          f"on {len(keep)} clips, {per_class} per class")
