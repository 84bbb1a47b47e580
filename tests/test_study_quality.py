"""Tests of benchmarks/study_quality.py's statistics and report (no training)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import study_quality  # noqa: E402


def test_paired_verdict_needs_consistent_sign_and_two_standard_errors():
    better = study_quality.paired([0.80, 0.82, 0.79, 0.81, 0.83], [0.70, 0.71, 0.72, 0.70, 0.69])
    assert better["verdict"] == "better" and better["wins"] == 5
    assert better["mean_diff"] == pytest.approx(0.106)
    noisy = study_quality.paired([0.8, 0.6, 0.9], [0.7, 0.7, 0.7])  # mixed signs
    assert noisy["verdict"] == "within spread"
    worse = study_quality.paired([0.5, 0.51, 0.49], [0.6, 0.6, 0.61])
    assert worse["verdict"] == "worse" and worse["losses"] == 3


def test_best_contrastive_and_compare_use_matching_runs():
    fits = {}
    for run, (t07, t1, mltm) in enumerate([(0.5, 0.6, 0.7), (0.52, 0.61, 0.72),
                                           (0.49, 0.62, 0.71)]):
        fits[f"esc50|contrastive T=0.07|0.4|{run}"] = {"class_t2a_R@1": t07, "fit_seconds": 1}
        fits[f"esc50|contrastive T=0.1|0.4|{run}"] = {"class_t2a_R@1": t1, "fit_seconds": 1}
        fits[f"esc50|mltm (today's defaults)|0.4|{run}"] = {"class_t2a_R@1": mltm,
                                                            "fit_seconds": 1}
    store = {"fits": fits, "zero_shot": {}}
    best = study_quality.best_contrastive(store, "esc50", 0.4, "class_t2a_R@1")
    assert best == "contrastive T=0.1"
    cmp = study_quality.compare(store, "esc50", "mltm (today's defaults)", best, 0.4,
                                "class_t2a_R@1")
    assert cmp["n"] == 3 and cmp["verdict"] == "better"
    markdown = study_quality.render(store)
    assert "Screening: ESC-50 fold 4" in markdown and "**better**" in markdown


def test_every_configuration_is_valid_estimator_parameters():
    for config in study_quality.CONFIGS.values():
        for base in study_quality.BASE.values():
            model = study_quality.make_model({**base, **config["params"]})
            model._validate_params()
            for key in ("metric", "loss", "optimizer", "lr_schedule"):
                model._component(key).validate()
            params = model.get_params()
            for key, value in config["params"].items():  # nested ones reached the component
                if key in ("metric", "loss", "optimizer", "lr_schedule"):
                    assert model._component(key).registered_name() == value
                else:
                    assert params[key] == value, key


def test_baseline_spells_out_the_former_defaults():
    # the study's results were measured before its conclusion became the defaults
    baseline = study_quality.make_model(study_quality.CONFIGS["mltm (today's defaults)"]
                                        ["params"])
    params = baseline.get_params()
    assert (baseline._component("metric").registered_name(), params["epsilon"],
            params["loss__sqrt_cost"]) == ("mahalanobis", 0.05, False)
    candidate = study_quality.make_model(study_quality.CONFIGS["eps 0.1 + euclidean + sqrt"]
                                         ["params"])
    defaults = study_quality.make_model({})
    for key in ("loss", "metric"):
        assert (candidate._component(key).get_params()
                == defaults._component(key).get_params()), key
    for key in ("epsilon", "mass_fraction"):  # the candidate is today's default
        assert candidate.get_params()[key] == defaults.get_params()[key], key


def test_schedule_phase_pairs_the_candidate_with_itself_under_two_schedules():
    constant, cosine = study_quality.schedule_names("eps 0.1 + euclidean + sqrt")
    base = study_quality.CONFIGS["eps 0.1 + euclidean + sqrt"]["params"]
    for name, schedule in ((constant, "constant"), (cosine, "cosine")):
        params = study_quality.CONFIGS[name]["params"]
        assert params == {**base, "lr_schedule": schedule}
        model = study_quality.make_model(params)
        assert model._component("lr_schedule").registered_name() == schedule
