"""CLS against mean pooling of the frozen MiniLM caption encoder (``text_encoder__pooling``).

Three measurements, each printed as it finishes (nothing is written):

1. ``captions``: no training. AudioCaps test captions of 200 clips (five each, from
   ``../shared/data/audiocaps``); for each caption, is its nearest other caption (cosine) one of
   the same clip? A direct measure of the caption embeddings.
2. ``esc50``: the retrieval experiment of ``reproduce_esc50.py`` (ESC-50 fold 4 only, aisfx
   audio features, 5-fold CV over clips, its base parameters) for m-LTM and InfoNCE, with the
   caption features pooled either way; t2a / a2t R@1 (equal captions merged, so class-level).
3. ``unseen``: the same fits, queried with the class names in four wordings that are not
   among the training templates.

Run: ``python benchmarks/compare_text_pooling.py [--only captions esc50 unseen]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import _common
import numpy as np

AUDIOCAPS = _common.REPO_ROOT.parent / "shared" / "data" / "audiocaps" / "dataset" / "test.csv"
UNSEEN = ["{}", "a {} noise", "there is {} in this recording", "listen: {}"]
POOLINGS = ("cls", "mean")


def _encode(pooling, texts):
    import torch

    from sklearn_ltm.encoders import MINILM_NAME, build_text_encoder

    encoder = build_text_encoder(MINILM_NAME, pooling=pooling).eval()
    with torch.no_grad():
        return torch.cat([encoder(encoder.tokenize(texts[i:i + 128]))
                          for i in range(0, len(texts), 128)]).numpy()


def caption_neighbours():
    by_clip = defaultdict(list)
    with open(AUDIOCAPS, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_clip[row["youtube_id"]].append(row["caption"])
    clips = [k for k, v in by_clip.items() if len(v) == 5][:200]
    captions = [c for k in clips for c in by_clip[k]]
    clip_of = np.repeat(np.arange(len(clips)), 5)
    for pooling in POOLINGS:
        emb = _encode(pooling, captions)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        sim = emb @ emb.T
        np.fill_diagonal(sim, -np.inf)
        hit = np.mean(clip_of[np.argmax(sim, axis=1)] == clip_of)
        print(f"captions  {pooling:4}: caption->caption R@1 {100 * hit:.1f} % "
              f"({len(captions)} AudioCaps test captions, {len(clips)} clips)", flush=True)


def esc50(unseen: bool):
    import reproduce_esc50 as R

    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.evaluation import evaluate

    config = R.make_config(False, 1, 0)
    data = R.build_data(R.DATA_ROOT, Path.home() / ".cache" / "sklearn_ltm", config,
                        log=lambda *a: None)
    distinct = sorted(data["row_of_caption"], key=data["row_of_caption"].get)
    names = [str(n).replace("_", " ") for n in data["class_names"]]
    new_captions = [t.format(n) for n in names for t in UNSEEN]
    new_class = np.repeat(np.arange(len(names)), len(UNSEEN))
    folds = R.clip_folds(data["clip_labels"], 5, 0)
    losses = {"m-LTM (full OT)": {"loss": "mltm"}, "contrastive (InfoNCE)": {"loss": "contrastive"}}
    for pooling in POOLINGS:
        text = _encode(pooling, distinct)
        new_text = _encode(pooling, new_captions)
        pairs_text = text[data["caption_rows"]]
        for name, params in losses.items():
            scores = []
            for train_clips, test_clips in folds:
                tr = R.pair_rows(data["clip"], train_clips)
                model = LTMRetriever(**config["base_params"], **params)
                model.fit(data["X"][tr], pairs_text[tr], groups=data["clip"][tr])
                if unseen:
                    rows = [(c, j) for c in test_clips
                            for j in np.flatnonzero(new_class == data["clip_labels"][c])]
                    clips = np.array([c for c, _ in rows])
                    X, Y = data["A"][clips], new_text[[j for _, j in rows]]
                else:
                    te = R.pair_rows(data["clip"], test_clips)
                    clips, X, Y = data["clip"][te], data["X"][te], pairs_text[te]
                s = evaluate(model, X, Y, groups=clips)
                scores.append((s["t2a_R@1"], s["a2t_R@1"]))
            s = 100 * np.array(scores)
            what = "unseen wordings" if unseen else "template captions"
            print(f"{'unseen' if unseen else 'esc50':9} {pooling:4}: {name:22} ({what}) "
                  f"t2a R@1 {s[:, 0].mean():.1f} ± {s[:, 0].std(ddof=1):.1f}, "
                  f"a2t R@1 {s[:, 1].mean():.1f} ± {s[:, 1].std(ddof=1):.1f} (5 folds)",
                  flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=["captions", "esc50", "unseen"],
                        default=["captions", "esc50", "unseen"])
    args = parser.parse_args(argv)
    _common.set_threads(1)
    warnings.simplefilter("ignore")
    if "captions" in args.only:
        if AUDIOCAPS.is_file():
            caption_neighbours()
        else:
            print(f"no AudioCaps captions at {AUDIOCAPS}; skipped", file=sys.stderr)
    for part in ("esc50", "unseen"):
        if part in args.only:
            esc50(unseen=part == "unseen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
