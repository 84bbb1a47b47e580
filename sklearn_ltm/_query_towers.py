"""Cached text towers: ``sklearn-ltm search`` answers text queries without the estimator (private).

A cached search needs only the query embeddings: the index holds the audio side. So the
first text search of a model with ``--index`` exports the model's text tower (encoder, head
and metric map, :func:`sklearn_ltm.export.export_towers`) as TorchScript into
``CACHE/query-towers/<model identity>/`` (:func:`~sklearn_ltm.search.model_identity`, the
id an index records), with the SHA-256 of the model file. A later search of an index looks
the tower up by the index's model id, checks the model file's hash, loads the program with
plain torch and tokenizes with :mod:`sklearn_ltm._words`: no scikit-learn, no torchaudio,
no estimator, which is most of the command's start-up time.

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
_FORMAT_VERSION = 2


def tower_folder(model_id, cache_root) -> Path:
    """Where the tower of the model with identity ``model_id`` lives under ``cache_root``."""
    return Path(cache_root) / _FOLDER / str(model_id)[:32]


def _has_scratch_text_encoder(retriever) -> bool:
    from .encoders.text import ScratchTextEncoder

    encoder = getattr(getattr(retriever, "model_", None), "text_encoder", None)
    return (getattr(retriever, "text_input_kind_", None) == "strings"
            and isinstance(encoder, ScratchTextEncoder) and encoder.vocabulary_ is not None)


def save_tower(retriever, model_path, cache_root, model_id) -> Path | None:
    """Export ``retriever``'s text tower (the model file ``model_path``, identity
    ``model_id``); its folder.

    Nothing is written (None) when the text encoder is not the scratch encoder. The folder
    appears whole or not at all (written under a temporary name, then renamed); an existing
    tower is kept.
    """
    from .export import export_towers
    from .search import file_digest

    if not _has_scratch_text_encoder(retriever):
        return None
    final = tower_folder(model_id, cache_root)
    if (final / "identity.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        export_towers(retriever, tmp / _PREFIX, format="torchscript", towers=["text"])
        identity = {"format_version": _FORMAT_VERSION, "model_id": model_id,
                    "model_sha256": file_digest(model_path)}
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
        A folder written by :func:`save_tower`; the program, its vocabulary and its token
        length are read from the export's manifest.

    Attributes
    ----------
    model_id : str
        :func:`~sklearn_ltm.search.model_identity` of the model it was exported from.
    model_sha256 : str
        SHA-256 of that model's file.
    """

    def __init__(self, folder):
        import torch

        folder = Path(folder)
        identity = json.loads((folder / "identity.json").read_text(encoding="utf-8"))
        if identity.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"query tower format {identity.get('format_version')!r}")
        self.model_id, self.model_sha256 = identity["model_id"], identity["model_sha256"]
        manifest = json.loads((folder / f"{_PREFIX}.towers.json").read_text(encoding="utf-8"))
        text = manifest["towers"]["text"]
        tokenizer = text["tokenizer_config"]
        self.max_length = int(tokenizer["max_length"])
        self._index = {w: i for i, w in enumerate(tokenizer["vocabulary"])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
            self._program = torch.jit.load(str(folder / text["file"]), map_location="cpu")
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


def load_tower(model_path, model_id, cache_root) -> QueryTower | None:
    """The cached tower of the model ``model_id`` when ``model_path`` is that model's file.

    None when there is none (no file is hashed then), when it is unreadable or of another
    format, or when the model file is not the one the tower was exported from.
    """
    from .search import file_digest  # numpy and the standard library only

    try:
        folder = tower_folder(model_id, cache_root)
        if not (folder / "identity.json").is_file():
            return None
        tower = QueryTower(folder)
        if tower.model_id != model_id or tower.model_sha256 != file_digest(model_path):
            return None
        return tower
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
