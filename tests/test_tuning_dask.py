"""Hyper-parameter search on a dask cluster, and the clean pickling it relies on."""

import io
import pickle

import numpy as np
import pytest
import torch
from _synthetic_features import planted_pairs
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_ltm import LTMRetriever
from sklearn_ltm.evaluation import (
    RETRIEVAL_SCORERS,
    make_multi_retrieval_scorer,
    make_retrieval_scorer,
)
from sklearn_ltm.training import Checkpoint

GRID = {"epsilon": [0.05, 0.2], "mass_fraction": [1.0, 0.8], "noise_ratio": [0.0, 0.2]}


def _estimator(**params):
    return LTMRetriever(embedding_dim=8, max_epochs=3, batch_size=16, learning_rate=1e-2,
                        validation_fraction=0.0, random_state=0, **params)


class _Recorder(pickle.Pickler):
    """A pickler that notes every object it serialises (to inspect what the state holds)."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.seen = []

    def reducer_override(self, obj):
        self.seen.append(obj)
        return NotImplemented


def _pickled_objects(obj):
    recorder = _Recorder(io.BytesIO())
    recorder.dump(obj)
    return recorder.seen


def _search(n_jobs=None):
    audio, text, _ = planted_pairs(n_clips=48, seed=1)
    search = GridSearchCV(_estimator(), GRID, cv=KFold(2), scoring=make_retrieval_scorer("R@5"),
                          refit=False, n_jobs=n_jobs, error_score="raise")
    return search.fit(audio, text)


@pytest.mark.timeout(300)
def test_grid_search_on_a_dask_cluster_matches_n_jobs_1():
    distributed = pytest.importorskip("distributed")
    import joblib

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run one thread each: same arithmetic here
    try:
        serial = _search(n_jobs=1)
    finally:
        torch.set_num_threads(threads)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  resources={"GPU": 1}, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # one task per worker at a time, as with one GPU per worker
        with distributed.get_task_stream(client) as stream, \
                joblib.parallel_config(backend="dask", resources={"GPU": 1}):
            on_dask = _search(n_jobs=-1)
    # the fits ran on the cluster's two worker processes
    assert len({task["worker"] for task in stream.data}) == 2
    assert len(serial.cv_results_["params"]) == 8
    assert serial.cv_results_["params"] == on_dask.cv_results_["params"]
    for key in ("split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(on_dask.cv_results_[key], serial.cv_results_[key],
                                      err_msg=key)
    # the grid matters: the scores are not all the same
    assert len(set(serial.cv_results_["mean_test_score"])) > 1


def _assert_clean_state(obj):
    objects = _pickled_objects(obj)
    files = [o for o in objects if isinstance(o, io.IOBase)]
    tensors = [o for o in objects if isinstance(o, torch.Tensor)]
    assert files == []
    assert all(t.device.type == "cpu" for t in tensors)
    return tensors


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_fitted_estimator_pickles_cleanly(tmp_path, device):
    audio, text, _ = planted_pairs(n_clips=30)
    fitted = _estimator(callbacks=[Checkpoint(str(tmp_path / "ckpt.pt"))], verbose=0,
                        device=device).fit(audio, text)
    tensors = _assert_clean_state(fitted)
    assert tensors  # the weights are in the state
    other = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(other.transform(audio), fitted.transform(audio), atol=1e-6)
    assert not list(tmp_path.glob("*.tmp*"))


def test_estimator_with_a_scratch_text_encoder_pickles_cleanly():
    audio, _, _ = planted_pairs(n_clips=24)
    words = ["dog", "bark", "rain", "car", "bird", "wind"]
    captions = [f"a {words[i % 6]} and {words[(i * 5) % 6]} sound" for i in range(24)]
    fitted = LTMRetriever(text_encoder="scratch", embedding_dim=8, max_epochs=1, batch_size=12,
                          validation_fraction=0.0, random_state=0).fit(audio, captions)
    _assert_clean_state(fitted)
    other = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(other.embed_text(captions), fitted.embed_text(captions),
                               atol=1e-6)


def test_unfitted_estimator_and_scorers_pickle_and_score_the_same():
    audio, text, _ = planted_pairs(n_clips=30)
    fitted = _estimator().fit(audio, text)
    _assert_clean_state(_estimator())
    scorers = [make_retrieval_scorer("R@1", "a2t"), make_multi_retrieval_scorer(),
               *RETRIEVAL_SCORERS.values()]
    for scorer in scorers:
        _assert_clean_state(scorer)
        copy = pickle.loads(pickle.dumps(scorer))
        assert repr(copy) == repr(scorer)
        assert copy(fitted, audio, text) == scorer(fitted, audio, text)
