"""Tests of the log-mel front end, SpecAugment, the PANNs and aisfx encoders and the heads."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sklearn_ltm.encoders import (
    AUDIO_ENCODER_NAMES,
    AisfxEncoder,
    LogMelFrontEnd,
    ProjectionHead,
    SpecAugment,
    build_audio_encoder,
    check_audio_encoder,
    load_audio,
    load_panns_checkpoint,
)
from sklearn_ltm.encoders import aisfx as aisfx_module

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HAS_AISFX = importlib.util.find_spec("aisfx") is not None
needs_aisfx = pytest.mark.skipif(not HAS_AISFX, reason="aisfx is not installed "
                                 "(pip install --no-deps aisfx)")
PANNS = ["cnn10", "cnn14", "resnet38"]


def _encoder(name, **kwargs):
    torch.manual_seed(0)
    if name == "aisfx":
        kwargs.setdefault("pretrained", False)
    return build_audio_encoder(name, **kwargs)


# --------------------------------------------------------------------------- references
def _mel_reference(sr, n_fft, n_mels, f_min, f_max, scale, norm):
    """An independent numpy mel filterbank (librosa's algorithm), shape (n_mels, n_freqs)."""
    if scale == "htk":
        to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
        to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    else:  # Slaney: linear below 1 kHz, logarithmic above
        f_sp, brk, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0

        def to_mel(f):
            f = np.asarray(f, dtype=float)
            return np.where(f < brk, f / f_sp, brk / f_sp + np.log(np.maximum(f, 1e-9) / brk) / logstep)

        def to_hz(m):
            m = np.asarray(m, dtype=float)
            return np.where(m < brk / f_sp, m * f_sp, brk * np.exp(logstep * (m - brk / f_sp)))
    hz = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - hz[:-2, None]) / (hz[1:-1] - hz[:-2])[:, None]
    upper = (hz[2:, None] - freqs[None, :]) / (hz[2:] - hz[1:-1])[:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    elif norm == "unit_sum":
        weights /= weights.sum(axis=1, keepdims=True)
    return weights


def _log_mel_reference(x, sr, n_fft, hop, fb, pad_mode, compression):
    """numpy STFT (centred, periodic Hann) -> mel power -> compression, shape (frames, mels)."""
    padded = np.pad(x, n_fft // 2, mode=pad_mode)
    n_frames = 1 + len(x) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ fb.T
    return 10 * np.log10(np.maximum(mel, 1e-10)) if compression == "db" else np.log10(1 + 1e4 * mel)


def _panns_public_state_dict(arch, n_classes=527, seed=0):
    """A state dict with the key names and shapes of the published PANNs checkpoints.

    Written from the PANNs model definitions (Kong et al., audioset_tagging_cnn), not from
    our modules, so it checks that our parameter names follow the public layout.
    """
    gen = torch.Generator().manual_seed(seed)
    state = {}

    def bn(prefix, c):
        state[f"{prefix}.weight"] = torch.rand(c, generator=gen) + 0.5
        state[f"{prefix}.bias"] = torch.randn(c, generator=gen) * 0.1
        state[f"{prefix}.running_mean"] = torch.randn(c, generator=gen) * 0.1
        state[f"{prefix}.running_var"] = torch.rand(c, generator=gen) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    def conv(key, c_out, c_in, k):
        state[key] = torch.randn(c_out, c_in, k, k, generator=gen) * (2.0 / (c_in * k * k)) ** 0.5

    def conv_block(prefix, c_in, c_out):
        conv(f"{prefix}.conv1.weight", c_out, c_in, 3)
        conv(f"{prefix}.conv2.weight", c_out, c_out, 3)
        bn(f"{prefix}.bn1", c_out)
        bn(f"{prefix}.bn2", c_out)

    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024, generator=gen)
    state["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024, generator=gen)
    state["logmel_extractor.melW"] = torch.rand(513, 64, generator=gen)
    bn("bn0", 64)
    if arch in ("cnn10", "cnn14"):
        widths = [64, 128, 256, 512] + ([1024, 2048] if arch == "cnn14" else [])
        for i, (c_in, c_out) in enumerate(zip([1] + widths[:-1], widths), 1):
            conv_block(f"conv_block{i}", c_in, c_out)
        dim = widths[-1]
    else:  # ResNet38: conv_block1, resnet layers [3, 4, 6, 3] of basic blocks, conv_block_after1
        conv_block("conv_block1", 1, 64)
        c_in = 64
        for layer, (planes, n_blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), 1):
            for b in range(n_blocks):
                p = f"resnet.layer{layer}.{b}"
                conv(f"{p}.conv1.weight", planes, c_in if b == 0 else planes, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3)
                bn(f"{p}.bn2", planes)
                if b == 0 and layer > 1:  # stride 2: AvgPool2d, conv1x1, BatchNorm2d
                    conv(f"{p}.downsample.1.weight", planes, c_in, 1)
                    bn(f"{p}.downsample.2", planes)
            c_in = planes
        conv_block("conv_block_after1", 512, 2048)
        dim = 2048
    state["fc1.weight"] = torch.randn(dim, dim, generator=gen) * 0.01
    state["fc1.bias"] = torch.zeros(dim)
    state["fc_audioset.weight"] = torch.randn(n_classes, dim, generator=gen) * 0.01
    state["fc_audioset.bias"] = torch.zeros(n_classes)
    return state


# --------------------------------------------------------------------------- front end
@pytest.mark.parametrize("scale, norm, sr, n_fft, n_mels, f_min, f_max", [
    ("slaney", "slaney", 32000, 1024, 64, 50.0, 14000.0),   # the paper / PANNs
    ("htk", "unit_sum", 44100, 2048, 96, 0.0, 22050.0),     # aisfx
])
def test_mel_filterbank_matches_independent_reference(scale, norm, sr, n_fft, n_mels, f_min, f_max):
    frontend = LogMelFrontEnd(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, f_min=f_min,
                              f_max=f_max, mel_scale=scale, mel_norm=norm)
    ref = _mel_reference(sr, n_fft, n_mels, f_min, f_max, scale, norm)
    np.testing.assert_allclose(frontend.mel_fb.numpy().T, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pad_mode, compression", [("reflect", "db"), ("constant", "log10_shift")])
def test_log_mel_matches_numpy_reference(pad_mode, compression):
    sr, n_fft, hop = 32000, 1024, 320
    x = np.random.RandomState(0).randn(sr // 2).astype(np.float32) * 0.1
    frontend = LogMelFrontEnd(pad_mode=pad_mode, compression=compression)
    mel, _ = frontend(torch.from_numpy(x)[None])
    ref = _log_mel_reference(x.astype(np.float64), sr, n_fft, hop, frontend.mel_fb.numpy().T.astype(np.float64),
                             pad_mode, compression)
    assert mel.shape == (1, 1 + len(x) // hop, 64)
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=2e-3, rtol=1e-4)


def test_paper_defaults_and_ten_second_shape():
    frontend = LogMelFrontEnd()
    assert (frontend.sample_rate, frontend.n_fft, frontend.hop_length, frontend.n_mels,
            frontend.f_min, frontend.f_max) == (32000, 1024, 320, 64, 50.0, 14000.0)
    mel, _ = frontend(torch.zeros(2, 320000))
    assert mel.shape == (2, 1001, 64)


def test_sine_energy_lands_in_the_right_band():
    sr = 32000
    tone = torch.sin(2 * torch.pi * 2000 * torch.arange(sr) / sr)[None]
    frontend = LogMelFrontEnd()
    band = int(frontend(tone)[0][0].mean(dim=0).argmax())
    centers = frontend.mel_fb.argmax(dim=0).float() * sr / frontend.n_fft  # peak Hz of each band
    assert abs(float(centers[band]) - 2000) < 100


@pytest.mark.parametrize("compression, floor", [("db", -100.0), ("log10_shift", 0.0)])
def test_silence_gives_finite_floor(compression, floor):
    mel, _ = LogMelFrontEnd(compression=compression)(torch.zeros(1, 8000))
    assert torch.isfinite(mel).all() and float(mel.max()) == floor


def test_padded_rows_equal_solo_spectrograms():
    frontend = LogMelFrontEnd()
    gen = torch.Generator().manual_seed(0)
    clips = [torch.randn(n, generator=gen) for n in (16000, 9000, 12345)]
    batch = torch.zeros(3, 16000)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = c
    batch[1, 9000:] = 5.0  # garbage in the padding must not matter: lengths say it is padding
    lengths = torch.tensor([len(c) for c in clips])
    mel, frame_lengths = frontend(batch * (torch.arange(16000) < lengths[:, None]), lengths)
    assert frame_lengths.tolist() == [1 + n // 320 for n in lengths.tolist()]
    for i, c in enumerate(clips):
        solo, _ = frontend(c[None])
        torch.testing.assert_close(mel[i, : solo.shape[1]], solo[0])
        assert not mel[i, solo.shape[1]:].any()


def test_front_end_stays_float32_under_autocast():
    frontend = LogMelFrontEnd()
    x = torch.randn(2, 16000)
    reference, _ = frontend(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mel, _ = frontend(x)
        with torch.no_grad():
            out = _encoder("cnn10").eval()(x, torch.tensor([16000, 9000]))
    assert mel.dtype == torch.float32 and torch.equal(mel, reference)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, match", [({"f_max": 20000.0}, "f_max"), ({"mel_scale": "bark"}, "mel_scale"),
                                           ({"n_mels": 0}, "n_mels"), ({"compression": "ln"}, "compression")])
def test_front_end_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogMelFrontEnd(**kwargs)


# --------------------------------------------------------------------------- SpecAugment
def test_spec_augment_only_in_training_and_within_bounds():
    augment = SpecAugment(time_masks=2, time_mask_width=64, freq_masks=2, freq_mask_width=8)
    x = torch.ones(64, 1, 300, 64)
    assert torch.equal(augment.eval()(x), x)
    torch.manual_seed(0)
    y = augment.train()(x)
    assert torch.equal(x, torch.ones_like(x))  # input untouched
    dropped_frames = (y[:, 0].sum(dim=2) == 0).sum(dim=1)
    dropped_bins = (y[:, 0].sum(dim=1) == 0).sum(dim=1)
    assert int(dropped_frames.max()) <= 2 * 63 and int(dropped_bins.max()) <= 2 * 7
    assert float(dropped_frames.float().mean()) > 10 and float(dropped_bins.float().mean()) > 1


def test_spec_augment_time_masks_stay_inside_real_frames():
    augment = SpecAugment(freq_masks=0).train()
    torch.manual_seed(1)
    lengths = torch.tensor([40, 300] * 16)
    y = augment(torch.ones(32, 1, 300, 8), lengths)
    short = y[lengths == 40]
    assert torch.equal(short[:, :, 40:], torch.ones_like(short[:, :, 40:]))
    assert (short[:, :, :40] == 0).any()


# --------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("name", AUDIO_ENCODER_NAMES)
def test_encoder_contract_and_padding_invariance(name):
    encoder = _encoder(name).eval()
    assert check_audio_encoder(encoder) is encoder
    sr = encoder.sample_rate
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(int(0.7 * sr), generator=gen) * 0.1, torch.randn(int(1.1 * sr), generator=gen)
    tiny = torch.randn(int(0.02 * sr), generator=gen) * 0.1  # shorter than the CNN's receptive field
    batch = torch.zeros(3, len(b))
    batch[0, : len(a)], batch[1], batch[2, : len(tiny)] = a, b, tiny
    with torch.no_grad():
        together = encoder(batch, torch.tensor([len(a), len(b), len(tiny)]))
        alone = torch.cat([encoder(c[None]) for c in (a, b, tiny)])
    assert together.shape == (3, encoder.output_dim) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(together[0], together[1], atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch, torch.tensor([len(a), len(b), len(tiny)])), together,
                                   atol=0, rtol=0)  # deterministic in eval mode


@pytest.mark.parametrize("name", AUDIO_ENCODER_NAMES)
def test_spec_augment_runs_in_training_only(name, monkeypatch):
    calls = []
    encoder = _encoder(name)
    original = encoder.spec_augmenter.forward
    monkeypatch.setattr(encoder.spec_augmenter, "forward",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    x = torch.randn(2, encoder.sample_rate // 2) * 0.1
    with torch.no_grad():
        encoder.eval()(x)
        assert calls == []
        encoder.train()(x)
        assert calls == [1]
        encoder.spec_augment = False
        encoder.train()(x)
        assert calls == [1]


@pytest.mark.parametrize("name", AUDIO_ENCODER_NAMES)
def test_silence_trains_without_nan(name):
    encoder = _encoder(name).train()
    silence = torch.zeros(2, encoder.sample_rate // 4)
    out = encoder(silence, torch.tensor([encoder.sample_rate // 4, 100]))
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", AUDIO_ENCODER_NAMES)
def test_get_config_is_json_and_rebuilds_the_architecture(name):
    encoder = _encoder(name, spec_augment=False)
    config = json.loads(json.dumps(encoder.get_config()))
    assert config["name"] == name and config["spec_augment"] is False
    torch.manual_seed(1)
    rebuilt = build_audio_encoder(**config)
    assert type(rebuilt) is type(encoder) and rebuilt.spec_augment is False
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in encoder.state_dict().items()}
    rebuilt.load_state_dict(encoder.state_dict())
    x = torch.randn(1, encoder.sample_rate // 2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), encoder.eval()(x))


def test_non_default_front_end_is_kept_in_config():
    encoder = build_audio_encoder("cnn10", sample_rate=16000, hop_length=160, f_max=8000.0)
    config = encoder.get_config()
    assert (config["sample_rate"], config["hop_length"], config["f_max"]) == (16000, 160, 8000.0)
    assert build_audio_encoder(**config).frontend.hop_length == 160


@pytest.mark.parametrize("waveforms, lengths, error, match", [
    (np.zeros((1, 100)), None, TypeError, "torch.Tensor"),
    (torch.zeros(100), None, ValueError, "batch, n_samples"),
    (torch.zeros(2, 100, dtype=torch.int16), None, TypeError, "float"),
    (torch.zeros(2, 100), torch.tensor([100]), ValueError, "lengths"),
    (torch.zeros(2, 100), torch.tensor([100, 101]), ValueError, "n_samples=100"),
])
def test_encoder_rejects_bad_input(waveforms, lengths, error, match):
    with pytest.raises(error, match=match):
        _encoder("cnn10")(waveforms, lengths)


def test_build_audio_encoder_names():
    with pytest.raises(ValueError, match="'cnn10', 'cnn14', 'resnet38', 'aisfx'"):
        build_audio_encoder("panns")
    assert type(build_audio_encoder("CNN10")).__name__ == "Cnn10Encoder"
    assert [build_audio_encoder(n, **({"pretrained": False} if n == "aisfx" else {})).output_dim
            for n in AUDIO_ENCODER_NAMES] == [512, 2048, 2048, 512]


def test_check_audio_encoder_explains_what_is_wrong():
    class NoRate(torch.nn.Module):
        output_dim = 4

        def forward(self, waveforms, lengths=None):
            return waveforms[:, :4]

    class WrongShape(NoRate):
        sample_rate = 8000
        output_dim = 3

    with pytest.raises(TypeError, match="'sample_rate'"):
        check_audio_encoder(NoRate())
    with pytest.raises(TypeError, match=r"expected a tensor of shape \(2, 3\)"):
        check_audio_encoder(WrongShape())
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        check_audio_encoder(lambda x: x)


# --------------------------------------------------------------------------- PANNs checkpoints
@pytest.mark.parametrize("arch", PANNS)
def test_public_panns_checkpoint_loads_every_key(arch, tmp_path):
    state = _panns_public_state_dict(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save({"model": state, "iteration": 600000}, path)  # the published file layout
    encoder = build_audio_encoder(arch, weights=path)
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)
    report = load_panns_checkpoint(encoder, state)
    skipped = {k for k in state if k.split(".")[0] in
               ("spectrogram_extractor", "logmel_extractor", "fc1", "fc_audioset")}
    assert set(report["skipped"]) == skipped
    assert set(report["loaded"]) == set(state) - skipped == set(encoder.state_dict())


def test_checkpoint_without_batch_counters_and_with_module_prefix_loads():
    state = {("module." + k): v for k, v in _panns_public_state_dict("cnn10").items()
             if not k.endswith("num_batches_tracked")}
    encoder = _encoder("cnn10")
    load_panns_checkpoint(encoder, state)
    torch.testing.assert_close(encoder.conv_block4.conv2.weight, state["module.conv_block4.conv2.weight"])


@pytest.mark.parametrize("source, target, words", [
    ("cnn14", "cnn10", ["24 unexpected keys in conv_block5.* (12), conv_block6.* (12)",
                        "looks like a 'cnn14'"]),
    ("resnet38", "cnn14", ["missing keys in conv_block2.* (10)", "unexpected keys in",
                           "resnet.layer1.* (", "looks like a 'resnet38'"]),
    ("cnn10", "resnet38", ["missing keys in", "resnet.layer4.* (", "conv_block_after1.* (10)",
                           "looks like a 'cnn10'"]),
])
def test_wrong_checkpoint_names_the_keys(source, target, words):
    encoder = _encoder(target)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(ValueError) as info:
        load_panns_checkpoint(encoder, _panns_public_state_dict(source))
    for word in words:
        assert word in str(info.value)
    for key, value in encoder.state_dict().items():  # nothing was loaded
        assert torch.equal(value, before[key])


def test_shape_mismatch_is_named():
    encoder = _encoder("cnn10", n_mels=128, f_max=16000.0)
    with pytest.raises(ValueError, match=r"4 shape mismatches \(bn0.weight: checkpoint \(64,\) vs model \(128,\)"):
        load_panns_checkpoint(encoder, _panns_public_state_dict("cnn10"))


class _NotATensor:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _panns_public_state_dict("cnn10"), "extra": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights only"):
        load_panns_checkpoint(_encoder("cnn10"), path)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_panns_checkpoint(_encoder("cnn10"), tmp_path / "nothing.pth")


# --------------------------------------------------------------------------- aisfx
def test_aisfx_missing_package_error_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(aisfx_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "aisfx" else real(name, *a))
    with pytest.raises(ImportError, match="pip install --no-deps aisfx"):
        build_audio_encoder("aisfx")
    rebuilt = build_audio_encoder(**AisfxEncoder(pretrained=False).get_config())
    assert rebuilt.output_dim == 512  # a config rebuild never needs the package


def test_aisfx_blocks_follow_the_package_rule():
    encoder = AisfxEncoder(pretrained=False)
    # frames -> blocks of 100 frames, hop 50, a partial last block dropped, at least one
    assert [encoder.n_blocks(n) for n in (1, 99, 100, 149, 150, 151, 200, 431)] == [1, 1, 1, 1, 2, 2, 3, 7]
    blocks = encoder.block_embeddings(torch.zeros(2, 441000), torch.tensor([441000, 44100]))
    assert [b.shape for b in blocks] == [(7, 512), (1, 512)]


@pytest.mark.slow
@needs_aisfx
def test_aisfx_pretrained_weights_are_the_package_checkpoint():
    encoder = build_audio_encoder("aisfx")
    raw = aisfx_module.safe_torch_load(aisfx_module.aisfx_checkpoint_path())
    state, class_map = raw
    assert "prosfx" in class_map
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state["embedding_net." + key])


@pytest.mark.slow
@pytest.mark.shared_data
@needs_aisfx
def test_aisfx_reproduces_the_package_embedding_on_a_real_clip():
    folder = DATA / "clotho" / "evaluation"
    if not folder.is_dir():
        pytest.skip(f"real audio not found at {folder} (the ../shared/data folder of the repo)")
    from aisfx.inference import load_bestModel, model_get_embedding
    from aisfx.preprocessing import spectrogram_normalize

    path = sorted(folder.glob("*.wav"))[0]  # 44.1 kHz, the aisfx rate: no resampling
    clip = load_audio(path, 44100, max_seconds=10)
    encoder = build_audio_encoder("aisfx").eval()
    # front end: the package's librosa recipe, written independently in numpy
    x = clip.astype(np.float64) / np.abs(clip).max()
    fb = _mel_reference(44100, 2048, 96, 0.0, 22050.0, "htk", "unit_sum")
    ref = spectrogram_normalize(_log_mel_reference(x, 44100, 2048, 1024, fb, "constant", "log10_shift"))
    spec, _ = encoder.spectrogram(torch.from_numpy(clip)[None])
    np.testing.assert_allclose(spec[0].numpy(), ref, atol=1e-4)
    # network + blocking: the package's own model code on the same spectrogram
    full_state, class_map = aisfx_module.safe_torch_load(aisfx_module.aisfx_checkpoint_path())
    model = load_bestModel(full_state, class_map, "cpu")
    theirs = model_get_embedding(ref.astype(np.float32), 0.5, True, model, "cpu")
    with torch.no_grad():
        ours = encoder.block_embeddings(torch.from_numpy(clip)[None])[0]
        clip_embedding = encoder(torch.from_numpy(clip)[None])[0]
    assert ours.shape == theirs.shape == (7, 512)
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(clip_embedding, theirs.mean(dim=0), atol=2e-4, rtol=1e-3)


# --------------------------------------------------------------------------- heads
@pytest.mark.parametrize("in_dim, out_dim, hidden_dim, dropout", [(512, 128, None, 0.0), (7, 3, 5, 0.2)])
def test_projection_head(in_dim, out_dim, hidden_dim, dropout):
    torch.manual_seed(0)
    head = ProjectionHead(in_dim, out_dim, hidden_dim, dropout)
    assert head.fc1.out_features == (hidden_dim or 2 * out_dim)
    x = torch.randn(6, in_dim)
    before = x.clone()
    z = head(x)
    assert z.shape == (6, out_dim) and torch.equal(x, before)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    expected = torch.nn.functional.normalize(head.fc2(torch.relu(head.fc1(x))), dim=1)
    torch.testing.assert_close(head.eval()(x), expected)
    z.sum().backward()
    assert head.fc1.weight.grad is not None


@pytest.mark.parametrize("args, match", [((0, 4), "in_dim"), ((4, -1), "out_dim"), ((4, 4, 0), "hidden_dim"),
                                         ((4, 4, None, 1.0), "dropout")])
def test_projection_head_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        ProjectionHead(*args)
