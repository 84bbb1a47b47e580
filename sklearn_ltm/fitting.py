"""The named steps of :meth:`LTMRetriever.fit <sklearn_ltm.LTMRetriever.fit>`.

1. :func:`make_pairs`: the (audio, caption) pairs and their clip groups, bad files handled;
2. :func:`split_validation`: hold out whole clips for validation;
3. :func:`corrupt_training_captions`: the ``noise_ratio`` caption noise, clip-aware;
4. :func:`build_encoders` and :func:`build_model`: the torch model (``load`` builds it
   through :func:`build_model` too);
5. :class:`~sklearn_ltm.training.Trainer` ``.fit``;
6. the fitted attributes (in the estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._inputs import AudioInput, TextInput, check_audio, check_text
from ._utils import infer_groups
from .model import RetrievalModel
from .noise import corrupt_captions

__all__ = [
    "Pairs",
    "build_encoders",
    "build_model",
    "check_audio_files",
    "corrupt_training_captions",
    "make_pairs",
    "split_validation",
]


@dataclass
class Pairs:
    """Training pairs: one audio row per clip, one caption per pair.

    Attributes
    ----------
    clip_audio : AudioInput
        One row (or path) per clip.
    text : TextInput
        One caption (or feature row) per pair.
    clip_of_pair : ndarray of int
        Clip of each pair, ``0 .. n_clips - 1``.
    audio_kind : {"features", "waveforms", "paths"}
    """

    clip_audio: AudioInput
    text: TextInput
    clip_of_pair: np.ndarray
    audio_kind: str

    @property
    def n_clips(self) -> int:
        """Number of distinct clips."""
        return len(self.clip_audio)


def check_audio_files(audio: AudioInput, on_bad: str = "raise", *, max_seconds=None,
                      decode: bool = True, stacklevel: int = 4) -> np.ndarray:
    """Rows whose file is readable; raise on the first bad file unless ``on_bad="skip"``
    (then one warning counts the skipped files and pairs).

    A file that is missing, a directory, empty, undecodable or holds NaN or infinite
    samples is bad (:func:`sklearn_ltm.encoders.check_audio_files`).

    Parameters
    ----------
    audio : AudioInput
    on_bad : {"raise", "skip"}
    max_seconds : float or None, default=None
        Decode only the part of each file that is used.
    decode : bool, default=True
        Decode the samples (``False``: headers only, as at inference, where
        :func:`~sklearn_ltm.encoders.load_audio` refuses bad samples when it reads them).
    stacklevel : int, default=4
        Stack level of the warning.

    Returns
    -------
    ndarray of bool
        True for the rows kept (all rows unless ``audio`` holds paths).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ltm._inputs import AudioInput
    >>> check_audio_files(AudioInput("features", np.zeros((2, 3))))
    array([ True,  True])
    >>> check_audio_files(AudioInput("paths", ["/no/such.wav"]))
    Traceback (most recent call last):
    ...
    sklearn_ltm.encoders.audio_io.AudioFileError: audio file '/no/such.wav' does not exist.
    """
    if audio.kind != "paths":
        return np.ones(len(audio), dtype=bool)
    from .encoders.audio_io import check_audio_files as check_files

    return check_files(audio.data, on_bad, max_seconds=max_seconds, decode=decode,
                       count_as="pairs", stacklevel=stacklevel)


def _resolve_auto(kind: str, value, input_kind: str):
    from .components import resolve_component

    if isinstance(value, str) and value == "auto":
        if kind == "audio_encoder":
            value = "features" if input_kind == "features" else "cnn10"
        else:
            value = "features" if input_kind == "features" else "scratch"
    return resolve_component(kind, value)


def _spec_name(component, value) -> str:
    if isinstance(value, str) and value == "auto":
        return "auto"
    if component.input_kind == "features":
        return "features"
    return component.registered_name() or "module"


def make_pairs(X, y, groups=None, *, audio_encoder="auto", text_encoder="auto"):
    """Step 1: check ``X``/``y``, infer the clip groups, drop or reject bad files.

    Parameters
    ----------
    X : array-like or sequence of path
        Audio of each pair.
    y : sequence of str or array-like
        Caption of each pair.
    groups : array-like of shape (n_pairs,) or None
        Clip of each pair; ``None``: equal rows (or paths) of ``X``.
    audio_encoder, text_encoder : str, component or torch.nn.Module
        The estimator's parameters (``"auto"`` is resolved from the input kind here).

    Returns
    -------
    pairs : Pairs
    audio_component : AudioEncoder
    text_component : TextEncoder

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    >>> pairs, audio, text = make_pairs(X, np.eye(3))
    >>> pairs.clip_of_pair.tolist(), pairs.n_clips, type(audio).__name__
    ([0, 0, 1], 2, 'AudioFeatures')
    """
    from .components import resolve_component

    if isinstance(audio_encoder, str) and audio_encoder == "auto":
        audio = check_audio(X, "auto")
        audio_component = _resolve_auto("audio_encoder", audio_encoder, audio.kind)
    else:
        audio_component = resolve_component("audio_encoder", audio_encoder)
        audio = check_audio(X, _spec_name(audio_component, audio_encoder))
    if isinstance(text_encoder, str) and text_encoder == "auto":
        text_probe_spec = "auto"
    else:
        text_probe_spec = _spec_name(resolve_component("text_encoder", text_encoder),
                                     text_encoder)
    text = check_text(y, text_probe_spec)
    text_component = _resolve_auto("text_encoder", text_encoder, text.kind)
    if text_component.input_kind != "features" and text.kind == "features":
        raise ValueError(f"text_encoder={text_encoder!r} needs caption strings, got features.")
    if len(audio) != len(text):
        raise ValueError(
            f"X has {len(audio)} rows but y has {len(text)}: each audio row pairs with one "
            "caption, so they must have the same length."
        )
    if len(audio) < 2:
        raise ValueError(f"fit needs at least 2 (audio, caption) pairs to form a mini-batch; "
                         f"got n_samples = {len(audio)}.")
    if groups is None:
        groups = infer_groups(audio.data)
    else:
        groups = np.asarray(groups)
        if groups.shape != (len(audio),):
            raise ValueError(
                f"groups has shape {groups.shape}; expected ({len(audio)},), one per pair."
            )
        groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)
    if hasattr(audio_component, "validate"):
        audio_component.validate()  # on_bad_file, max_seconds checked before files are read
    on_bad = getattr(audio_component, "on_bad_file", "raise")
    keep = check_audio_files(audio, on_bad, max_seconds=getattr(audio_component, "max_seconds",
                                                                None), stacklevel=5)
    if not keep.all():
        rows = np.flatnonzero(keep)
        if len(rows) < 2:
            raise ValueError(f"only {len(rows)} pairs have readable audio; fit needs 2.")
        audio, text, groups = audio.take(rows), text.take(rows), groups[rows]
        groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)
    n_clips = int(groups.max()) + 1
    first_row = np.full(n_clips, -1, dtype=np.int64)
    for i in range(len(groups) - 1, -1, -1):
        first_row[groups[i]] = i
    pairs = Pairs(audio.take(first_row), text, groups.astype(np.int64), audio.kind)
    return pairs, audio_component, text_component


def split_validation(clip_of_pair, validation_fraction: float, rng: np.random.Generator):
    """Step 2: hold out ``validation_fraction`` of the clips, with all their captions.

    Nothing is held out when that leaves fewer than 2 clips on either side.

    Parameters
    ----------
    clip_of_pair : ndarray of int
    validation_fraction : float in [0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    train_pairs, val_pairs : ndarray of int

    Examples
    --------
    >>> import numpy as np
    >>> train, val = split_validation(np.repeat(np.arange(10), 2), 0.2, np.random.default_rng(0))
    >>> len(train), len(val)
    (16, 4)
    """
    clip_of_pair = np.asarray(clip_of_pair)
    n_clips = int(clip_of_pair.max()) + 1
    n_val_clips = int(round(validation_fraction * n_clips))
    if validation_fraction > 0 and n_val_clips >= 2 and n_clips - n_val_clips >= 2:
        val_clips = rng.choice(n_clips, size=n_val_clips, replace=False)
    else:
        val_clips = np.zeros(0, dtype=np.int64)
    is_val = np.isin(clip_of_pair, val_clips)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def corrupt_training_captions(clip_of_pair, train_pairs, noise_ratio: float, rng):
    """Step 3: which caption each pair trains with, ``noise_ratio`` of the training
    captions moved to other clips (:func:`sklearn_ltm.noise.corrupt_captions`).

    Parameters
    ----------
    clip_of_pair : ndarray of int
    train_pairs : ndarray of int
    noise_ratio : float in [0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    caption_row : ndarray of int
        The caption row of each pair (validation pairs keep theirs).
    noisy_pairs : ndarray of int
        Sorted training pairs whose caption now comes from another clip.

    Examples
    --------
    >>> import numpy as np
    >>> rows, noisy = corrupt_training_captions(np.arange(10), np.arange(8), 0.5,
    ...                                         np.random.default_rng(0))
    >>> len(noisy), bool((rows[noisy] != noisy).all()), rows[8:].tolist()
    (4, True, [8, 9])
    """
    clip_of_pair = np.asarray(clip_of_pair)
    train_pairs = np.asarray(train_pairs, dtype=np.int64)
    caption_row = np.arange(len(clip_of_pair))
    source, noisy = corrupt_captions(clip_of_pair[train_pairs], noise_ratio, rng)
    caption_row[train_pairs] = train_pairs[source]
    return caption_row, np.sort(train_pairs[noisy])


def build_encoders(audio, text, *, audio_dim=None, text_dim=None, captions=None):
    """Step 4a: the encoder modules of a new model and the architecture that rebuilds them.

    Parameters
    ----------
    audio : AudioEncoder
    text : TextEncoder
    audio_dim, text_dim : int or None
        Feature sizes, for feature inputs.
    captions : list of str or None
        Training captions (a scratch text encoder builds its vocabulary from them).

    Returns
    -------
    audio_module, text_module : torch.nn.Module or None
    architecture : dict
        ``audio_config``, ``text_config``, ``audio_dim``, ``text_dim`` (plain data).

    Examples
    --------
    >>> from sklearn_ltm.components import AudioFeatures, ScratchText
    >>> _, text_module, arch = build_encoders(AudioFeatures(), ScratchText(), audio_dim=8,
    ...                                       captions=["a dog", "rain"])
    >>> arch["audio_dim"], arch["text_dim"], arch["text_config"]["name"]
    (8, 256, 'scratch')
    """
    audio_module = audio.build()
    text_module = text.build(captions)
    architecture = {
        "audio_config": None if audio_module is None else audio.module_config(audio_module),
        "text_config": None if text_module is None else text.module_config(text_module),
        "audio_dim": int(audio_dim if audio_module is None else audio_module.output_dim),
        "text_dim": int(text_dim if text_module is None else text_module.output_dim),
    }
    return audio_module, text_module, architecture


def build_model(architecture: dict, *, audio, text, metric, embedding_dim: int,
                hidden_dim=None, audio_module=None, text_module=None) -> RetrievalModel:
    """Step 4b: the RetrievalModel of ``architecture`` (``fit`` and ``load`` both use it).

    Parameters
    ----------
    architecture : dict
        From :func:`build_encoders` (or a saved model).
    audio, text : AudioEncoder, TextEncoder
        Rebuild the encoders from the architecture when the modules are not given.
    metric : GroundMetricComponent
    embedding_dim : int
    hidden_dim : int or None
    audio_module, text_module : torch.nn.Module or None
        Encoders already built (``fit``).

    Returns
    -------
    RetrievalModel

    Examples
    --------
    >>> from sklearn_ltm.components import AudioFeatures, TextFeatures, Mahalanobis
    >>> arch = {"audio_config": None, "text_config": None, "audio_dim": 6, "text_dim": 4}
    >>> model = build_model(arch, audio=AudioFeatures(), text=TextFeatures(),
    ...                     metric=Mahalanobis(rank=2), embedding_dim=3)
    >>> tuple(model.metric.L.shape)
    (2, 3)
    """
    if audio_module is None:
        audio_module = audio.rebuild(architecture["audio_config"])
    if text_module is None:
        text_module = text.rebuild(architecture["text_config"])
    return RetrievalModel(audio_module, text_module, architecture["audio_dim"],
                          architecture["text_dim"], embedding_dim=embedding_dim,
                          metric=metric.build, hidden_dim=hidden_dim)
