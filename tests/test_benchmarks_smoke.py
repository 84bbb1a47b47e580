"""Smoke tests of the benchmark scripts: tiny runs end to end, JSON content in range."""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common  # noqa: E402
import bench_cli_startup  # noqa: E402
import bench_fit  # noqa: E402
import bench_gpu  # noqa: E402
import bench_large_batch  # noqa: E402
import bench_noise  # noqa: E402
import reproduce_esc50  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _read(folder, stem):
    payload = json.loads((folder / f"{stem}.json").read_text())
    markdown = (folder / f"{stem}.md").read_text()
    return payload, markdown


def test_bench_fit_tiny_writes_timings_and_learns(tmp_path):
    rc = bench_fit.main(["--n-pairs", "256", "--epochs", "2", "--n-test", "40", "--threads", "1",
                         "--results-dir", str(tmp_path)])
    assert rc == 0
    payload, markdown = _read(tmp_path, "fit")
    assert payload["config"]["n_pairs"] == 256 and payload["config"]["epochs"] == 2
    assert set(payload["results"]) == set(bench_fit.METHODS)
    for row in payload["results"].values():
        assert row["fit_seconds"] > 0 and row["n_epochs"] == 2
        assert 0.0 <= row["heldout_t2a_R@1"] <= row["heldout_t2a_R@10"] <= 1.0
    assert payload["results"]["contrastive (InfoNCE)"]["time_vs_contrastive"] == pytest.approx(1.0)
    # planted structure: every loss beats chance (1/40) on fresh clips by a wide margin
    assert min(r["heldout_t2a_R@10"] for r in payload["results"].values()) > 0.5
    assert "bench_fit.py --n-pairs 256" in payload["provenance"]["command"]
    assert "| m-LTM (full OT) |" in markdown


def test_bench_noise_tiny_reports_every_ratio(tmp_path):
    rc = bench_noise.main(["--ratios", "0", "0.5", "--seeds", "0", "--n-train", "200",
                           "--n-test", "40", "--epochs", "1", "--threads", "1",
                           "--results-dir", str(tmp_path)])
    assert rc == 0
    payload, markdown = _read(tmp_path, "noise")
    assert set(payload["results"]) == set(bench_noise.METHODS)
    for per in payload["results"].values():
        assert per["0.0"]["n_noisy_pairs"] == 0 and per["0.5"]["n_noisy_pairs"] == 100
        for ratio in ("0.0", "0.5"):
            r1, r10 = per[ratio]["t2a_R@1"]["mean"], per[ratio]["t2a_R@10"]["mean"]
            assert 0.0 <= r1 <= r10 <= 1.0
        assert per["kept_R@1_fraction"] == pytest.approx(
            per["0.5"]["t2a_R@1"]["mean"] / per["0.0"]["t2a_R@1"]["mean"])
    assert "Degrades least here" in markdown and "noise 0.5" in markdown


def test_bench_noise_rejects_bad_ratio(capsys):
    with pytest.raises(SystemExit):
        bench_noise.main(["--ratios", "1.2"])
    assert "outside [0, 1)" in capsys.readouterr().err


def test_bench_gpu_without_cuda_exits_cleanly(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main([]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    assert bench_gpu.main(["--device", "cuda"]) == 2


def test_bench_gpu_transport_and_text_encoder_tiny():
    cfg = {"transport_sizes": [8, 16], "transport_repeats": 1, "embedding_dim": 8}
    rows = bench_gpu.transport_benchmark(cfg, torch.device("cpu"), log=lambda *_: None)
    assert [(r["batch"], r["mass_fraction"]) for r in rows] == [(8, 1.0), (8, 0.8), (16, 1.0),
                                                                 (16, 0.8)]
    assert all(r["forward_backward_ms"] > 0 for r in rows)
    from transformers import BertConfig

    enc = bench_gpu.RandomBertTextEncoder(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, vocab_size=1500), max_length=6)
    tokens = enc.tokenize(["a dog barks loudly at night", "rain"])
    assert tokens["input_ids"].shape == (2, 6) and tokens["attention_mask"].sum().item() == 6 + 3
    assert enc(tokens).shape == (2, enc.output_dim) == (2, 16)


@pytest.mark.parametrize("values, expected", [([0.5], "50.0"), ([0.2, 0.4], "30.0 ± 10.0")])
def test_mean_std_formatting(values, expected):
    assert _common.fmt_pm(_common.mean_std(values)) == expected


def test_planted_features_share_structure_per_clip():
    audio, text, groups = _common.planted_features(30, captions_per_clip=2, audio_dim=6,
                                                   text_dim=5, seed=1)
    assert audio.shape == (60, 6) and text.shape == (60, 5)
    np.testing.assert_array_equal(groups, np.repeat(np.arange(30), 2))
    np.testing.assert_array_equal(audio[0], audio[1])  # one clip, two captions
    assert not np.array_equal(text[0], text[1])  # each caption has its own noise


def _noise_summary(values):
    return {m: {"0.4": {"class_t2a_R@1": {"mean": v}}} for m, v in values.items()}


@pytest.mark.parametrize("values, holds, partial_wins", [
    ({"contrastive (InfoNCE)": 0.3, "triplet": 0.01, "m-LTM (full OT)": 0.4,
      "m-LTM (partial OT, s=0.8)": 0.5}, True, True),
    ({"contrastive (InfoNCE)": 0.6, "triplet": 0.01, "m-LTM (full OT)": 0.4,
      "m-LTM (partial OT, s=0.8)": 0.5}, False, True),
    ({"contrastive (InfoNCE)": 0.3, "triplet": 0.01, "m-LTM (full OT)": 0.5,
      "m-LTM (partial OT, s=0.8)": 0.4}, False, False),
])
def test_noise_ordering_against_the_paper(values, holds, partial_wins):
    verdict = reproduce_esc50.noise_ordering(_noise_summary(values), "0.4", "class_t2a_R@1")
    assert verdict["holds"] is holds and verdict["partial_beats_full"] is partial_wins
    assert verdict["paper_order"][0] == "m-LTM (partial OT, s=0.8)"
    assert verdict["paper_order"][-1] == "triplet"


class _Identity:
    """A 'fitted retriever' whose embeddings are the features themselves."""

    def transform(self, X):
        return np.asarray(X, dtype=float)

    def embed_text(self, y):
        return np.asarray(y, dtype=float)


def test_class_recall_scorer_counts_any_clip_of_the_class():
    # clips 0, 1 class 0; clips 2, 3 class 1; each caption lies on the *other* clip of its class
    clips = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    labels = np.array([0, 0, 1, 1])
    X = clips[[0, 1, 2, 3]]
    y = clips[[1, 0, 3, 2]]
    scorer = reproduce_esc50.ClassRecallScorer(clips, labels)
    assert scorer(_Identity(), X, y) == 1.0
    metrics = reproduce_esc50._class_metrics(_Identity(), clips, labels, y, labels)
    assert metrics["class_t2a_R@1"] == metrics["class_a2t_R@1"] == 1.0
    # swapping the classes of the captions makes every top hit wrong
    wrong = reproduce_esc50._class_metrics(_Identity(), clips, labels, y, 1 - labels)
    assert wrong["class_t2a_R@1"] == 0.0


def test_reproduce_esc50_quick_config_is_smaller():
    full = reproduce_esc50.make_config(False, 2, 0)
    quick = reproduce_esc50.make_config(True, 2, 0)
    assert full["noise_ratios"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert full["mass_fractions"] == [0.95, 0.9, 0.8] and full["zero_shot_splits"] == 5
    assert quick["n_folds"] < full["n_folds"] and len(quick["noise_ratios"]) < 7
    assert reproduce_esc50.main(["--data", "/nonexistent/esc50"]) == 2


GIB = 2**30


@pytest.mark.parametrize("micro", [None, 4])
def test_measure_runs_one_step_and_reports_memory(micro):
    with torch.random.fork_rng(devices=[]):
        row = bench_large_batch.measure(10, micro, 0.1, "cpu")
    assert row["batch"] == 10 and row["micro_batch"] == micro
    assert row["peak_bytes"] >= row["before_step_bytes"] > 0
    assert math.isfinite(row["loss"]) and row["step_seconds"] > 0


def test_fresh_process_measurement(tmp_path):
    args = argparse.Namespace(device="cpu", clip_seconds=0.1, threads=1, timeout=120.0)
    row = bench_large_batch._run_fresh(8, 4, args)
    assert row["batch"] == 8 and row["micro_batch"] == 4 and row["peak_bytes"] > 0


def test_one_pass_runs_only_where_its_predicted_peak_fits(monkeypatch, tmp_path):
    # Fake configurations: 1 GiB base, a quadratic transport term, 1 MiB per row beyond one
    # micro-batch for one pass.
    def fake(batch, micro, args):
        two = GIB + batch * batch * 8
        peak = two if micro is not None else two + 2**20 * (batch - 128)
        return {"batch": batch, "micro_batch": micro, "peak_bytes": peak,
                "before_step_bytes": GIB // 2, "step_seconds": 1.0, "loss": 1.0}

    monkeypatch.setattr(bench_large_batch, "_run_fresh", fake)
    args = argparse.Namespace(batch_sizes=[4096, 256, 1024], micro_batch=128, budget_gib=3.0)
    rows = bench_large_batch.run(args, log=lambda *_: None)
    shown = [(r["batch"], r["mode"], r.get("not_run", False)) for r in rows]
    assert shown == [(256, "two-pass", False), (256, "one pass", False),
                     (1024, "two-pass", False), (1024, "one pass", False),
                     (4096, "two-pass", False), (4096, "one pass", True)]
    expected = GIB + 4096**2 * 8 + 2**20 * (4096 - 128)
    assert rows[-1]["predicted_peak_bytes"] == pytest.approx(expected, rel=1e-9)
    payload = {"config": {"device": "cpu", "budget_gib": 3.0, "clip_seconds": 0.5,
                          "threads": 1},
               "provenance": {"command": "x", "date": "d", "torch": "t", "machine": "m"},
               "results": rows}
    markdown = bench_large_batch.render(payload)
    assert "| 4096 | one pass | - | not run: predicted 5.00 GiB > budget 3.0 GiB |" in markdown
    assert "| 1024 | one pass | 1024 | 1.88 | 1.38 | 1.0 |" in markdown


def test_bench_gpu_distributed_without_cuda_exits_cleanly(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--distributed"]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    assert bench_large_batch.main(["--device", "cuda"]) == 0
    assert "nothing was measured" in capsys.readouterr().out


def test_bench_cli_startup_tiny_times_the_cached_search(tmp_path):
    work = tmp_path / "work"
    rc = bench_cli_startup.main(["--clips", "12", "--repeats", "1", "--workdir", str(work),
                                 "--results-dir", str(tmp_path)])
    assert rc == 0
    payload, markdown = _read(tmp_path, "cli_startup")
    assert set(payload["results"]) == {"cached search", "floor: import torch, numpy",
                                       "floor: import torch, torchaudio, sklearn.base"}
    for row in payload["results"].values():
        assert len(row["all_s"]) == 1 and 0 < row["best_s"] <= row["median_s"] < 120
    assert (work / "clips.idx").is_file()  # the first search built the index ...
    towers = work / "cache" / "sklearn-ltm" / "embeddings" / "query-towers"
    assert len(list(towers.iterdir())) == 1  # ... and cached the text tower
    assert "| cached search |" in markdown and "12 half-second clips" in markdown
