"""Cached text towers: ``sklearn-ltm search`` answers text queries without the estimator (private).

A cached search needs only the query embeddings: the index holds the audio side. So the
first text search of a model with ``--index`` exports the model's text tower (encoder, head
and metric map, :func:`sklearn_ltm.export.export_towers`) as TorchScript into
``CACHE/query-towers/<sha256 of the model file>/``, with the model's
:func:`~sklearn_ltm.search.model_identity`. Later searches load that program with plain
torch and tokenize with :mod:`sklearn_ltm._words`: no scikit-learn, no torchaudio, no
estimator, which is most of the command's start-up time.

Only models whose text encoder is the scratch encoder (its tokenizer is its vocabulary)
get a tower; others (Hugging Face encoders, whose tokenizer needs ``transformers``) take
the usual path. Anything missing or different (another model file, an index built with
another model, a damaged cache) falls back to the usual path, which gives the usual
errors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

_FOLDER = "query-towers"
_PREFIX = "tower"
_FORMAT_VERSION = 1


def tower_folder(model_path, cache_root) -> Path:
    """Where the tower of the model file ``model_path`` lives under ``cache_root``."""
    from .search import file_digest  # numpy and the standard library only

    return Path(cache_root) / _FOLDER / file_digest(model_path)[:32]


def _scratch_config(retriever):
    """The scratch text encoder's config of a retriever, or None when it has another."""
    if getattr(retriever, "text_input_kind_", None) != "strings":
        return None
    encoder = getattr(getattr(retriever, "model_", None), "text_encoder", None)
    config = getattr(encoder, "get_config", lambda: None)()
    if not isinstance(config, dict) or not config.get("vocabulary"):
        return None
    if type(encoder).__name__ != "ScratchTextEncoder":
        return None
    return config


def save_tower(retriever, model_path, cache_root) -> Path | None:
    """Export ``retriever``'s text tower for the model file ``model_path``; its folder.

    Nothing is written (None) when the text encoder is not the scratch encoder. The folder
    appears whole or not at all (written under a temporary name, then renamed); an existing
    tower is kept.
    """
    from .export import export_towers
    from .search import model_identity

    config = _scratch_config(retriever)
    if config is None:
        return None
    final = tower_folder(model_path, cache_root)
    if (final / "identity.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        export_towers(retriever, tmp / _PREFIX, format="torchscript", towers=["text"])
        identity = {"format_version": _FORMAT_VERSION, "model_id": model_identity(retriever),
                    "vocabulary": config["vocabulary"], "max_length": config["max_length"]}
        (tmp / "identity.json").write_text(json.dumps(identity), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:  # another search wrote it meanwhile (a non-empty folder): keep theirs
            if not (final / "identity.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


class QueryTower:
    """A cached text tower: ``embed(texts)`` gives the model's query embeddings.

    Parameters
    ----------
    folder : path-like
        A folder written by :func:`save_tower`.

    Attributes
    ----------
    model_id : str
        :func:`~sklearn_ltm.search.model_identity` of the model it was exported from.
    """

    def __init__(self, folder):
        import torch

        folder = Path(folder)
        identity = json.loads((folder / "identity.json").read_text(encoding="utf-8"))
        if identity.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"query tower format {identity.get('format_version')!r}")
        self.model_id = identity["model_id"]
        self.max_length = int(identity["max_length"])
        self._index = {w: i for i, w in enumerate(identity["vocabulary"])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
            self._program = torch.jit.load(str(folder / f"{_PREFIX}.text.pt"),
                                           map_location="cpu")
        self._program.eval()

    def embed(self, texts):
        """Query embeddings, ``(len(texts), embedding_dim)`` float32 numpy array."""
        import torch

        from ._words import word_ids

        tokens = word_ids(list(texts), self._index, self.max_length)
        pad = self.max_length - tokens["input_ids"].shape[1]  # the program's fixed length
        ids, mask = (torch.nn.functional.pad(tokens[k], (0, pad))
                     for k in ("input_ids", "attention_mask"))
        with torch.no_grad():
            out = self._program(ids, mask)
        return out.float().numpy()


def load_tower(model_path, cache_root) -> QueryTower | None:
    """The cached tower of the model file ``model_path``, or None (absent or unreadable)."""
    try:
        folder = tower_folder(model_path, cache_root)
        if not (folder / "identity.json").is_file():
            return None
        return QueryTower(folder)
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
