"""Serve a trained retriever without this package: the audio and text towers as programs.

A fitted :class:`~sklearn_ltm.LTMRetriever` embeds audio with front end, encoder,
projection head and the map :math:`x \\mapsto L x` of its learned metric, and captions with
tokenizer, encoder, head and the same map, so that Euclidean distance between the outputs
is the learned distance. :class:`AudioTower` and :class:`TextTower` are those two paths as
torch modules (the tokenizer aside: it is Python code, not a tensor program), and
:func:`export_towers` writes them as TorchScript or ``torch.export`` programs that plain
torch loads, or as ONNX files (with the optional ``onnx`` extra).

Loading, in a process that has only torch::

    import torch
    audio = torch.jit.load("model.audio.pt")            # TorchScript
    embeddings = audio(waveforms)                        # (batch, n_samples) float32
    audio = torch.export.load("model.audio.pt2").module()  # torch.export
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from torch import nn

from ._utils import atomic_write

__all__ = ["AudioTower", "TextTower", "export_towers", "EXPORT_FORMATS"]

#: Accepted ``format`` values of :func:`export_towers` and their file suffixes.
EXPORT_FORMATS = {"torchscript": ".pt", "torch.export": ".pt2", "onnx": ".onnx"}


def _fitted_model(retriever):
    model = getattr(retriever, "model_", None)
    if model is None:
        raise ValueError(f"{type(retriever).__name__} is not fitted: call fit (or load a saved "
                         "model) before exporting or windowing its towers.")
    return model


def _min_samples(encoder) -> int:
    """Fewest samples the audio encoder embeds without padding (its receptive field)."""
    value = getattr(encoder, "min_samples", None)
    if isinstance(value, int) and value > 0:
        return value
    frontend = getattr(encoder, "frontend", None)
    n_fft = getattr(frontend, "n_fft", None)
    return int(n_fft) if isinstance(n_fft, int) and n_fft > 0 else 1


def _config(module):
    get_config = getattr(module, "get_config", None)
    return get_config() if callable(get_config) else None


class AudioTower(nn.Module):
    """The audio path of a fitted retriever as one torch module (it shares the weights).

    ``forward(x)`` maps a batch of waveforms ``(batch, n_samples)`` at the encoder's
    ``sample_rate`` (or of features ``(batch, n_features)`` for a feature-mode model) to
    the learned space, exactly as :meth:`~sklearn_ltm.LTMRetriever.transform` does for
    clips of that length; :meth:`encode` stops before the metric map.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted.

    Attributes
    ----------
    sample_rate : int or None
        Rate of the waveforms (None for features).
    input_kind : {"waveforms", "features"}
    min_samples : int or None
        The encoder's receptive field: shorter clips are zero-padded to it.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 4))
    >>> est = LTMRetriever(embedding_dim=4, max_epochs=1, batch_size=10,
    ...                    validation_fraction=0.0, random_state=0).fit(X, y)
    >>> tower = AudioTower(est).eval()
    >>> with torch.no_grad():
    ...     out = tower(torch.as_tensor(X, dtype=torch.float32)).numpy()
    >>> bool(np.allclose(out, est.transform(X), atol=1e-6))
    True
    """

    def __init__(self, retriever):
        super().__init__()
        model = _fitted_model(retriever)
        features = retriever.audio_input_kind_ == "features"
        self.encoder = None if features else model.audio_encoder
        self.head = model.audio_head
        self.metric = model.metric
        self.input_kind = "features" if features else "waveforms"
        self.sample_rate = None if features else getattr(self.encoder, "sample_rate", None)
        self.min_samples = None if features else _min_samples(self.encoder)
        self.n_features = int(retriever.n_features_in_) if features else None

    def encode(self, x, lengths=None):
        """Head output (before the metric map) of waveforms or features.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, n_samples) or (batch, n_features)
        lengths : torch.Tensor of int, shape (batch,), or None
            Real samples of each row (the rest is padding); None: all real.

        Returns
        -------
        torch.Tensor of shape (batch, embedding_dim)
        """
        if self.encoder is None:
            enc = x
        elif lengths is None:
            enc = self.encoder(x)
        else:
            enc = self.encoder(x, lengths)
        return self.head(enc.float())

    def forward(self, x):
        """Embeddings in the learned space, shape (batch, embedding size)."""
        return self.metric.map(self.encode(x))


class _TraceableBiGRU(nn.Module):
    """The scratch text encoder without packed sequences, so that it traces and exports.

    Packing sorts by length on the Python side, which a traced program would freeze; here
    the forward state is read at each caption's last word and the backward one from a run
    over each caption reversed within its own length: the same numbers as the packed run.
    """

    def __init__(self, encoder):
        super().__init__()
        gru = encoder.gru
        if gru.num_layers != 1 or not gru.bidirectional or not gru.batch_first:
            raise ValueError("only a 1-layer, bidirectional, batch-first GRU can be exported.")
        self.embedding = encoder.embedding
        self.forward_gru = nn.GRU(gru.input_size, gru.hidden_size, batch_first=True)
        self.backward_gru = nn.GRU(gru.input_size, gru.hidden_size, batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(self.forward_gru, name).copy_(getattr(gru, name))
                getattr(self.backward_gru, name).copy_(getattr(gru, name + "_reverse"))

    def forward(self, tokens):
        input_ids = tokens["input_ids"]
        lengths = tokens["attention_mask"].sum(dim=1).clamp_min(1)
        x = self.embedding(input_ids)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        last = (lengths - 1)[:, None]
        reverse = torch.where(steps <= last, last - steps, steps)  # reverse inside the length
        x_rev = torch.gather(x, 1, reverse[:, :, None].expand_as(x))
        out_f, _ = self.forward_gru(x)
        out_b, _ = self.backward_gru(x_rev)
        at_last = last[:, :, None].expand(-1, 1, out_f.shape[2])
        return torch.cat([out_f.gather(1, at_last)[:, 0], out_b.gather(1, at_last)[:, 0]], dim=1)


def _traceable_text_encoder(encoder):
    from .encoders.text import ScratchTextEncoder

    return _TraceableBiGRU(encoder) if isinstance(encoder, ScratchTextEncoder) else encoder


class TextTower(nn.Module):
    """The text path of a fitted retriever, tokenizer aside, as one torch module.

    ``forward(input_ids, attention_mask=None)`` maps the tokenizer's output (the text
    encoder's ``tokenize``) to the learned space, as
    :meth:`~sklearn_ltm.LTMRetriever.embed_text` does; for a model fitted on text
    features, ``forward(features)``.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted.

    Attributes
    ----------
    input_kind : {"tokens", "features"}

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 4))
    >>> est = LTMRetriever(embedding_dim=4, max_epochs=1, batch_size=10,
    ...                    validation_fraction=0.0, random_state=0).fit(X, y)
    >>> with torch.no_grad():
    ...     out = TextTower(est).eval()(torch.as_tensor(y, dtype=torch.float32)).numpy()
    >>> bool(np.allclose(out, est.embed_text(y), atol=1e-6))
    True
    """

    def __init__(self, retriever):
        super().__init__()
        model = _fitted_model(retriever)
        features = retriever.text_input_kind_ == "features"
        self.encoder = None if features else _traceable_text_encoder(model.text_encoder)
        self.tokenize = None if features else model.text_encoder.tokenize
        self.max_length = None if features else getattr(model.text_encoder, "max_length", None)
        self.tokenizer_config = None if features else _config(model.text_encoder)
        self.head = model.text_head
        self.metric = model.metric
        self.input_kind = "features" if features else "tokens"

    def forward(self, input_ids, attention_mask=None):
        """Embeddings in the learned space, shape (batch, embedding size)."""
        if self.encoder is None:
            enc = input_ids
        else:
            tokens = {"input_ids": input_ids}
            if attention_mask is not None:
                tokens["attention_mask"] = attention_mask
            enc = self.encoder(tokens)
        return self.metric.map(self.head(enc.float()))


def _example_inputs(retriever, audio_tower, text_tower):
    if audio_tower.input_kind == "features":
        audio = (torch.zeros(2, int(retriever.n_features_in_)),)
    else:
        n = max(int(audio_tower.min_samples or 1), int(audio_tower.sample_rate or 16000))
        audio = (torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * 0.1,)
    if text_tower.input_kind == "features":
        dim = text_tower.head.in_dim
        text = (torch.zeros(2, dim),)
    else:
        tokens = text_tower.tokenize(["a dog barks in the rain", "music"])
        ids = tokens["input_ids"]
        mask = tokens.get("attention_mask", torch.ones_like(ids))
        pad = (text_tower.max_length or ids.shape[1]) - ids.shape[1]
        if pad > 0:  # the example has the full token length (the fixed one of a program)
            ids = torch.nn.functional.pad(ids, (0, pad))
            mask = torch.nn.functional.pad(mask, (0, pad))
        text = (ids, mask)
    return audio, text


def _write_torchscript(tower, example, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notes of trace and save
        with torch.no_grad():
            program = torch.jit.trace(tower, example, check_trace=False)
        with atomic_write(path, "wb") as fh:
            torch.jit.save(program, fh)


def _dynamic(tower, example):
    """Every axis dynamic, except the token axis of a text tower: recurrent and attention
    layers are exported for one sequence length (the tokenizer's ``max_length``)."""
    tokens = getattr(tower, "input_kind", None) == "tokens"
    return tuple({i: torch.export.Dim.AUTO for i in range(t.ndim) if not (tokens and i == 1)}
                 for t in example)


def _write_torch_export(tower, example, path):
    with torch.no_grad():
        program = torch.export.export(tower, example, dynamic_shapes=_dynamic(tower, example))
    with atomic_write(path, "wb") as fh:
        torch.export.save(program, fh)


def _check_onnx_installed():
    """Raise an ImportError naming the ``onnx`` extra unless onnx, onnxruntime and onnxscript
    are importable."""
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, which is not installed: "
                          "install the optional extra with pip install 'sklearn-ltm[onnx]'.")


def _write_onnx(tower, example, path, names):
    import contextlib
    import io
    import tempfile

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(tower, example, dynamo=True, input_names=names[0],
                                    output_names=names[1],
                                    dynamic_shapes=_dynamic(tower, example))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_towers(retriever, path_prefix, *, format="torchscript", towers=("audio", "text")):  # noqa: A002
    """Write the audio and text towers of a fitted retriever as self-contained programs.

    Each tower loads with plain torch (no sklearn-ltm needed) and returns what
    :meth:`~sklearn_ltm.LTMRetriever.transform` and
    :meth:`~sklearn_ltm.LTMRetriever.embed_text` return (to float rounding, 1e-5).

    - audio: input ``waveforms`` (batch, n_samples) float32 at the model's sample rate,
      each row a whole clip of at least ``min_samples`` samples (or ``features``
      (batch, n_features) for a feature-mode model); output ``embeddings``.
    - text: inputs ``input_ids`` and ``attention_mask`` (batch, n_tokens) int64 as made by
      the text encoder's ``tokenize`` (``tokenizer_config`` in the JSON file describes
      it), or ``features`` for a model fitted on text features; output ``embeddings``.
      TorchScript takes any ``n_tokens``; ``torch.export`` and ONNX programs take exactly
      the ``n_tokens`` of the JSON file (the tokenizer's ``max_length``): pad the ids with
      the pad id and the mask with 0.

    Files are written atomically next to ``path_prefix``: ``PREFIX.audio.pt`` and
    ``PREFIX.text.pt`` (``.pt2`` for ``torch.export``, ``.onnx`` for ONNX), and
    ``PREFIX.towers.json`` describing inputs, sample rate, embedding size and format.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted.
    path_prefix : str or path-like
        Where to write; the folder is created.
    format : {"torchscript", "torch.export", "onnx"}, default="torchscript"
        TorchScript (``torch.jit.load``), ``torch.export`` (``torch.export.load(...)
        .module()``), or ONNX (``onnxruntime``; needs ``pip install 'sklearn-ltm[onnx]'``).
    towers : sequence of {"audio", "text"}, default=("audio", "text")
        Which towers to write.

    Returns
    -------
    dict
        Tower name to written path, plus ``"manifest"``.

    Examples
    --------
    >>> import numpy as np, tempfile, torch, os
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 6)), rng.normal(size=(20, 4))
    >>> est = LTMRetriever(embedding_dim=4, max_epochs=1, batch_size=10,
    ...                    validation_fraction=0.0, random_state=0).fit(X, y)
    >>> paths = export_towers(est, os.path.join(tempfile.mkdtemp(), "model"))
    >>> audio = torch.jit.load(paths["audio"])
    >>> out = audio(torch.as_tensor(X, dtype=torch.float32)).detach().numpy()
    >>> bool(np.allclose(out, est.transform(X), atol=1e-5))
    True
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format={format!r} is not accepted; use one of "
                         f"{', '.join(map(repr, EXPORT_FORMATS))}.")
    if isinstance(towers, str):
        towers = (towers,)
    towers = tuple(towers)
    bad = [t for t in towers if t not in ("audio", "text")]
    if bad or not towers:
        raise ValueError(f"towers={towers!r} is not accepted; give 'audio', 'text' or both.")
    _fitted_model(retriever)
    if format == "onnx":
        _check_onnx_installed()
    prefix = Path(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    audio_tower, text_tower = AudioTower(retriever).eval(), TextTower(retriever).eval()
    audio_ex, text_ex = _example_inputs(retriever, audio_tower, text_tower)
    suffix = EXPORT_FORMATS[format]
    written = {}
    manifest = {"format": format, "sklearn_ltm_export_version": 1, "towers": {}}
    with torch.no_grad():
        dim = int(audio_tower(*audio_ex).shape[1])
    for name in towers:
        tower, example = (audio_tower, audio_ex) if name == "audio" else (text_tower, text_ex)
        if name == "audio":
            inputs = ["features" if tower.input_kind == "features" else "waveforms"]
        else:
            inputs = ["features"] if tower.input_kind == "features" else \
                ["input_ids", "attention_mask"]
        path = prefix.with_name(f"{prefix.name}.{name}{suffix}")
        if format == "torchscript":
            _write_torchscript(tower, example, path)
        elif format == "torch.export":
            _write_torch_export(tower, example, path)
        else:
            _write_onnx(tower, example, path, (inputs, ["embeddings"]))
        written[name] = str(path)
        entry = {"file": path.name, "inputs": inputs, "output": "embeddings",
                 "embedding_dim": dim}
        if name == "audio":
            entry.update(input_kind=tower.input_kind, sample_rate=tower.sample_rate,
                         min_samples=tower.min_samples,
                         n_features=tower.n_features)
        else:
            fixed = format != "torchscript" and tower.input_kind == "tokens"
            entry.update(input_kind=tower.input_kind, tokenizer_config=tower.tokenizer_config,
                         n_tokens=int(example[0].shape[1]) if fixed else None)
        manifest["towers"][name] = entry
    manifest_path = prefix.with_name(f"{prefix.name}.towers.json")
    with atomic_write(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=2, default=str)
    written["manifest"] = str(manifest_path)
    return written
