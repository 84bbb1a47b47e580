"""Loaders for AudioCaps, Clotho and ESC-50 in their official on-disk layouts.

Every loader returns one row per (clip, caption) pair: ``audio`` holds absolute file
paths, ``captions`` the texts, ``clip_ids`` the identity of the clip, so that
``LTMRetriever().fit(bunch.audio, bunch.captions)`` works directly.
"""

from __future__ import annotations

import csv
import os
import re
import string
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = [
    "AUDIOCAPS_SPLITS",
    "CLOTHO_SPLITS",
    "DEFAULT_ESC50_TEMPLATE",
    "MissingDataError",
    "load_audiocaps",
    "load_clotho",
    "load_esc50",
    "normalize_caption",
]

AUDIOCAPS_SPLITS = ("train", "val", "test")
CLOTHO_SPLITS = ("development", "validation", "evaluation")
ESC50_FOLDS = (1, 2, 3, 4, 5)
DEFAULT_ESC50_TEMPLATE = "This is a sound of {}."
_ON_MISSING = ("raise", "drop")
_SHOWN_MISSING = 5  # how many missing file names an error or warning lists

_AUDIOCAPS_DESCR = """AudioCaps (Kim et al., NAACL 2019)
----------------------------------
Captions written by crowd workers for 10 s AudioSet clips taken from YouTube. The
official split has one caption per training clip and five per validation/test clip.
Captions: MIT licence (research use); audio: YouTube, research use only.
"""

_CLOTHO_DESCR = """Clotho (Drossos et al., ICASSP 2020)
------------------------------------
Freesound clips of 15-30 s with five crowd-sourced captions each (8-20 words).
Licence: Tampere University, non-commercial research; audio under Freesound CC licences.
"""

_ESC50_DESCR = """ESC-50 (Piczak, ACM MM 2015)
----------------------------
2,000 five-second environmental recordings in 50 classes, 40 per class, arranged in 5
folds for cross-validation. Here each clip is paired with its class name rendered by a
caption template, for zero-shot classification by audio-text retrieval.
Licence: CC BY-NC 3.0 (the ESC-10 clips CC BY 3.0).
"""


class MissingDataError(FileNotFoundError, ValueError):
    """A dataset folder, table or listed clip is not on disk.

    It is both a :class:`FileNotFoundError` and a :class:`ValueError`, so it is caught
    by code expecting either a missing file or a bad argument.

    Examples
    --------
    >>> from sklearn_ltm.datasets import MissingDataError, load_esc50
    >>> try:
    ...     load_esc50("/no/such/folder")
    ... except FileNotFoundError as exc:
    ...     print(type(exc).__name__)
    MissingDataError
    """

    __module__ = "sklearn_ltm.datasets"


def normalize_caption(caption: str) -> str:
    """Lower-case a caption and remove its punctuation, as the m-LTM paper does.

    Apostrophes are deleted (``"dog's"`` becomes ``"dogs"``), every other punctuation
    or symbol character becomes a space, and runs of white space collapse to one.

    Parameters
    ----------
    caption : str
        The caption.

    Returns
    -------
    str
        The normalised caption.

    Examples
    --------
    >>> normalize_caption("A dog's bark, then a high-pitched WHISTLE!")
    'a dogs bark then a high pitched whistle'
    """
    if not isinstance(caption, str):
        raise TypeError(f"caption={caption!r} is not a str; normalize_caption takes one string.")
    text = re.sub(r"['\u2018\u2019`]", "", caption.lower())
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(text.split())


def load_audiocaps(
    root,
    split: str = "test",
    *,
    audio_dir=None,
    csv_dir=None,
    on_missing: str = "raise",
    normalize_captions: bool = False,
    return_X_y: bool = False,
):
    """Load one split of AudioCaps from its official layout.

    The layout is ``{root}/dataset/{split}.csv`` (columns
    ``audiocap_id,youtube_id,start_time,caption``) and the clips
    ``{root}/audio/{split}/{youtube_id}_{start_time}.wav``; ``csv_dir`` and
    ``audio_dir`` point elsewhere.

    Parameters
    ----------
    root : str or path-like
        The AudioCaps folder.
    split : {"train", "val", "test"}, default="test"
        Which split.
    audio_dir : str or path-like, default=None
        The folder holding this split's clips; a relative path is taken from ``root``.
        ``None`` means ``{root}/audio/{split}``.
    csv_dir : str or path-like, default=None
        The folder holding ``{split}.csv``; a relative path is taken from ``root``.
        ``None`` means ``{root}/dataset``.
    on_missing : {"raise", "drop"}, default="raise"
        What to do with clips listed in the CSV but absent on disk: raise a
        :class:`MissingDataError` that gives their count and first names, or drop their
        rows with a :class:`UserWarning` saying how many were dropped.
    normalize_captions : bool, default=False
        Lower-case the captions and remove punctuation (:func:`normalize_caption`).
    return_X_y : bool, default=False
        Return ``(audio, captions)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        One row per (clip, caption) pair, rows of a clip adjacent, clips in their order
        of first appearance in the CSV:

        - ``audio``: list of str, absolute paths of the clips.
        - ``captions``: list of str.
        - ``clip_ids``: ndarray of str, ``"{youtube_id}_{start_time}"``.
        - ``metadata``: dict of ndarrays, ``audiocap_id``, ``youtube_id``, ``start_time``.
        - ``n_missing``: int, how many listed clips were absent (0 unless dropped).
        - ``DESCR``: str.
    (audio, captions) : tuple of two lists
        When ``return_X_y`` is True.

    Raises
    ------
    MissingDataError
        When ``root`` or the CSV does not exist, when listed clips are missing and
        ``on_missing="raise"``, or when no clip at all is on disk.

    See Also
    --------
    load_clotho : Clotho, five captions per clip.
    load_esc50 : ESC-50 class names as captions.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "dataset").mkdir(); (root / "audio" / "test").mkdir(parents=True)
    >>> _ = (root / "dataset" / "test.csv").write_text(
    ...     "audiocap_id,youtube_id,start_time,caption\\n"
    ...     "1,abc,30,A dog barks.\\n2,xyz,0,Rain falls.\\n3,abc,30,Barking dog.\\n")
    >>> _ = (root / "audio" / "test" / "abc_30.wav").write_bytes(b"")
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     data = load_audiocaps(root, "test", on_missing="drop")
    >>> data.captions, list(data.clip_ids), data.n_missing
    (['A dog barks.', 'Barking dog.'], ['abc_30', 'abc_30'], 1)
    """
    root = _check_root(root)
    _check_choice(split, "split", AUDIOCAPS_SPLITS)
    _check_row_options(on_missing, normalize_captions, return_X_y)
    csv_path = _subfolder(root, csv_dir, "dataset", "csv_dir") / f"{split}.csv"
    audio_path = _subfolder(root, audio_dir, Path("audio") / split, "audio_dir")

    rows = _read_csv(csv_path, ("audiocap_id", "youtube_id", "start_time", "caption"))
    clip_ids, captions, meta = [], [], {"audiocap_id": [], "youtube_id": [], "start_time": []}
    for line, row in enumerate(rows, start=2):
        start = _parse_int(row["start_time"], "start_time", csv_path, line)
        clip_ids.append(f"{row['youtube_id']}_{start}")
        captions.append(row["caption"])
        meta["audiocap_id"].append(_parse_int(row["audiocap_id"], "audiocap_id", csv_path, line))
        meta["youtube_id"].append(row["youtube_id"])
        meta["start_time"].append(start)
    order = _group_rows_by_clip(clip_ids)
    return _pairs_bunch(
        audio_path,
        [clip_ids[i] for i in order],
        [clip_ids[i] + ".wav" for i in order],
        [captions[i] for i in order],
        {key: [values[i] for i in order] for key, values in meta.items()},
        on_missing=on_missing,
        normalize_captions=normalize_captions,
        return_X_y=return_X_y,
        descr=_AUDIOCAPS_DESCR,
        listed_in=csv_path,
    )


def load_clotho(
    root,
    split: str = "evaluation",
    *,
    audio_dir=None,
    csv_dir=None,
    on_missing: str = "raise",
    normalize_captions: bool = False,
    return_X_y: bool = False,
):
    """Load one split of Clotho from its official layout.

    The layout is ``{root}/clotho_captions_{split}.csv`` (columns
    ``file_name,caption_1,...,caption_5``) and the clips ``{root}/{split}/{file_name}``;
    ``csv_dir`` and ``audio_dir`` point elsewhere.

    Parameters
    ----------
    root : str or path-like
        The Clotho folder.
    split : {"development", "validation", "evaluation"}, default="evaluation"
        Which split (``validation`` exists from Clotho v2 on).
    audio_dir : str or path-like, default=None
        The folder holding this split's clips; a relative path is taken from ``root``.
        ``None`` means ``{root}/{split}``.
    csv_dir : str or path-like, default=None
        The folder holding ``clotho_captions_{split}.csv``; a relative path is taken from
        ``root``. ``None`` means ``root``.
    on_missing : {"raise", "drop"}, default="raise"
        What to do with clips listed in the CSV but absent on disk: raise a
        :class:`MissingDataError` that gives their count and first names, or drop their
        rows with a :class:`UserWarning` saying how many were dropped.
    normalize_captions : bool, default=False
        Lower-case the captions and remove punctuation (:func:`normalize_caption`).
    return_X_y : bool, default=False
        Return ``(audio, captions)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        One row per (clip, caption) pair, the five captions of a clip adjacent, clips in
        CSV order:

        - ``audio``: list of str, absolute paths of the clips.
        - ``captions``: list of str.
        - ``clip_ids``: ndarray of str, the clips' file names.
        - ``metadata``: dict of ndarrays, ``caption_index`` (1 to 5, the CSV column).
        - ``n_missing``: int, how many listed clips were absent (0 unless dropped).
        - ``DESCR``: str.
    (audio, captions) : tuple of two lists
        When ``return_X_y`` is True.

    Raises
    ------
    MissingDataError
        When ``root`` or the CSV does not exist, when listed clips are missing and
        ``on_missing="raise"``, or when no clip at all is on disk.

    See Also
    --------
    fetch_clotho : Download Clotho into a cache.
    load_audiocaps : AudioCaps, the other captioned set.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "evaluation").mkdir()
    >>> header = "file_name," + ",".join(f"caption_{i}" for i in range(1, 6))
    >>> _ = (root / "clotho_captions_evaluation.csv").write_text(
    ...     header + "\\nrain.wav,Rain falls.,It rains!,Drops,Wet day,Storm\\n")
    >>> _ = (root / "evaluation" / "rain.wav").write_bytes(b"")
    >>> audio, captions = load_clotho(root, return_X_y=True, normalize_captions=True)
    >>> captions
    ['rain falls', 'it rains', 'drops', 'wet day', 'storm']
    >>> len(set(audio))
    1
    """
    root = _check_root(root)
    _check_choice(split, "split", CLOTHO_SPLITS)
    _check_row_options(on_missing, normalize_captions, return_X_y)
    csv_path = _subfolder(root, csv_dir, ".", "csv_dir") / f"clotho_captions_{split}.csv"
    audio_path = _subfolder(root, audio_dir, split, "audio_dir")

    caption_columns = tuple(f"caption_{i}" for i in range(1, 6))
    rows = _read_csv(csv_path, ("file_name", *caption_columns))
    clip_ids, captions, caption_index = [], [], []
    for row in rows:
        for index, column in enumerate(caption_columns, start=1):
            text = row[column] or ""
            if text.strip():
                clip_ids.append(row["file_name"])
                captions.append(text)
                caption_index.append(index)
    return _pairs_bunch(
        audio_path,
        clip_ids,
        clip_ids,
        captions,
        {"caption_index": caption_index},
        on_missing=on_missing,
        normalize_captions=normalize_captions,
        return_X_y=return_X_y,
        descr=_CLOTHO_DESCR,
        listed_in=csv_path,
    )


def load_esc50(
    root,
    folds=None,
    *,
    template=DEFAULT_ESC50_TEMPLATE,
    on_missing: str = "raise",
    normalize_captions: bool = False,
    return_X_y: bool = False,
):
    """Load ESC-50 from its official layout, class names rendered as captions.

    The layout is ``{root}/meta/esc50.csv`` (columns
    ``filename,fold,target,category,esc10,src_file,take``) and the clips
    ``{root}/audio/{filename}``. Each clip's caption is its class name, underscores as
    spaces, put into ``template``; several templates give one row per
    (clip, template), the rows of a clip adjacent.

    Parameters
    ----------
    root : str or path-like
        The ESC-50 folder (the one holding ``meta/`` and ``audio/``).
    folds : int or sequence of int, default=None
        The folds to keep, each in 1..5; ``None`` keeps every clip of the CSV.
    template : str or sequence of str, default="This is a sound of {}."
        Caption template(s), each with exactly one ``{}`` where the class name goes.
    on_missing : {"raise", "drop"}, default="raise"
        What to do with clips listed in the CSV but absent on disk: raise a
        :class:`MissingDataError` that gives their count and first names, or drop their
        rows with a :class:`UserWarning` saying how many were dropped.
    normalize_captions : bool, default=False
        Lower-case the captions and remove punctuation (:func:`normalize_caption`).
    return_X_y : bool, default=False
        Return ``(audio, captions)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        One row per (clip, template), clips in CSV order:

        - ``audio``: list of str, absolute paths of the clips.
        - ``captions``: list of str, the rendered class names.
        - ``clip_ids``: ndarray of str, the clips' file names.
        - ``labels``: ndarray of int, the class index (``target`` column).
        - ``folds``: ndarray of int, the fold of each row.
        - ``target_names``: ndarray of str, the class name of each class index as
          written in the CSV (with underscores); ``""`` for an index the CSV lacks.
        - ``class_captions``: ndarray of str of shape (n_classes, n_templates), every
          class rendered by every template: the candidate texts of zero-shot
          classification (``""`` for an index the CSV lacks).
        - ``metadata``: dict of ndarrays, ``category``, ``esc10``, ``src_file``,
          ``take``, ``template_index``.
        - ``n_missing``: int, how many listed clips were absent (0 unless dropped).
        - ``DESCR``: str.
    (audio, captions) : tuple of two lists
        When ``return_X_y`` is True.

    Raises
    ------
    MissingDataError
        When ``root`` or ``meta/esc50.csv`` does not exist, when listed clips are missing
        and ``on_missing="raise"``, or when no clip at all is on disk.

    See Also
    --------
    fetch_esc50 : Download ESC-50 into a cache.
    load_audiocaps : AudioCaps, captioned clips.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "meta").mkdir(); (root / "audio").mkdir()
    >>> _ = (root / "meta" / "esc50.csv").write_text(
    ...     "filename,fold,target,category,esc10,src_file,take\\n"
    ...     "1-1-A-5.wav,1,5,chirping_birds,False,1,A\\n")
    >>> _ = (root / "audio" / "1-1-A-5.wav").write_bytes(b"")
    >>> data = load_esc50(root, template=["{}", "A recording of {}."])
    >>> data.captions
    ['chirping birds', 'A recording of chirping birds.']
    >>> data.labels.tolist(), data.class_captions.shape
    ([5, 5], (6, 2))
    """
    root = _check_root(root)
    fold_set = _check_folds(folds)
    templates = _check_templates(template)
    _check_row_options(on_missing, normalize_captions, return_X_y)
    csv_path = root / "meta" / "esc50.csv"
    audio_path = root / "audio"

    columns = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
    rows = _read_csv(csv_path, columns)
    class_of: dict[int, str] = {}
    kept = []
    for line, row in enumerate(rows, start=2):
        fold = _parse_int(row["fold"], "fold", csv_path, line)
        target = _parse_int(row["target"], "target", csv_path, line)
        class_of[target] = row["category"]
        if fold_set is None or fold in fold_set:
            kept.append((row, fold, target))
    if not kept:
        present = sorted({_parse_int(r["fold"], "fold", csv_path, 0) for r in rows})
        raise ValueError(
            f"folds={folds!r} selects no clip of {csv_path}; the folds present there are "
            f"{present}."
        )
    n_classes = max(class_of) + 1 if class_of else 0
    target_names = np.array([class_of.get(k, "") for k in range(n_classes)], dtype=object)
    class_captions = np.array(
        [[t.format(name.replace("_", " ")) if name else "" for t in templates]
         for name in target_names],
        dtype=object,
    ).reshape(n_classes, len(templates))

    clip_ids, captions, labels, fold_of = [], [], [], []
    meta = {"category": [], "esc10": [], "src_file": [], "take": [], "template_index": []}
    for row, fold, target in kept:
        for t_index, t in enumerate(templates):
            clip_ids.append(row["filename"])
            captions.append(t.format(row["category"].replace("_", " ")))
            labels.append(target)
            fold_of.append(fold)
            meta["category"].append(row["category"])
            meta["esc10"].append(row["esc10"].strip().lower() == "true")
            meta["src_file"].append(row["src_file"])
            meta["take"].append(row["take"])
            meta["template_index"].append(t_index)
    if normalize_captions:
        class_captions = np.vectorize(normalize_caption, otypes=[object])(class_captions)
    return _pairs_bunch(
        audio_path,
        clip_ids,
        clip_ids,
        captions,
        meta,
        on_missing=on_missing,
        normalize_captions=normalize_captions,
        return_X_y=return_X_y,
        descr=_ESC50_DESCR,
        listed_in=csv_path,
        per_row={"labels": labels, "folds": fold_of},
        extra={"target_names": target_names, "class_captions": class_captions},
    )


# ----------------------------------------------------------------------------- helpers


def _check_root(root) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root={root!r} is not a path; pass a str or os.PathLike folder.")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise MissingDataError(
            f"root={os.fspath(root)!r} is not an existing folder; pass the folder where the "
            "dataset lies (see the loader's docstring for the layout)."
        )
    return path


def _check_choice(value, name: str, accepted: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; use one of {list(accepted)}.")


def _check_flag(value, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is not a bool; pass True or False.")


def _check_row_options(on_missing, normalize_captions, return_X_y) -> None:
    _check_choice(on_missing, "on_missing", _ON_MISSING)
    _check_flag(normalize_captions, "normalize_captions")
    _check_flag(return_X_y, "return_X_y")


def _subfolder(root: Path, given, default, name: str) -> Path:
    """``root / default`` when ``given`` is None, else ``given`` (relative to ``root``)."""
    if given is None:
        return root / default
    if not isinstance(given, (str, os.PathLike)):
        raise TypeError(f"{name}={given!r} is not a path; pass a str or os.PathLike folder.")
    return root / Path(given).expanduser()


def _check_folds(folds) -> set[int] | None:
    if folds is None:
        return None
    values = [folds] if isinstance(folds, (int, np.integer)) else folds
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray, set)):
        raise TypeError(f"folds={folds!r} is not an int or a sequence of int in 1..5.")
    out = set()
    for value in values:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"folds={folds!r} holds {value!r}, not an int; folds are 1..5.")
        if int(value) not in ESC50_FOLDS:
            raise ValueError(f"folds={folds!r} holds {value!r}; ESC-50 folds are 1..5.")
        out.add(int(value))
    if not out:
        raise ValueError(f"folds={folds!r} is empty; pass None for every fold, or some of 1..5.")
    return out


def _check_templates(template) -> list[str]:
    templates = [template] if isinstance(template, str) else template
    if not isinstance(templates, (list, tuple)) or not templates:
        raise TypeError(
            f"template={template!r} is not a str or a non-empty list of str; e.g. "
            f"{DEFAULT_ESC50_TEMPLATE!r}."
        )
    for t in templates:
        if not isinstance(t, str):
            raise TypeError(f"template holds {t!r}, not a str; templates are strings with '{{}}'.")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
        except ValueError as exc:
            raise ValueError(f"template {t!r} is not a valid format string: {exc}.") from exc
        if fields != [""]:
            raise ValueError(
                f"template {t!r} must hold exactly one '{{}}' (where the class name goes) and "
                f"no other field; e.g. {DEFAULT_ESC50_TEMPLATE!r}."
            )
    return list(templates)


def _read_csv(path: Path, required: Sequence[str]) -> list[dict]:
    if not path.is_file():
        raise MissingDataError(f"The caption table {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        found = reader.fieldnames or []
        missing = [c for c in required if c not in found]
        if missing:
            raise ValueError(
                f"{str(path)!r} lacks the column(s) {missing}; it has {found}, the loader "
                f"needs {list(required)}."
            )
        return list(reader)


def _parse_int(text: str, column: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{str(path)!r} line {line}: {column}={text!r} is not an integer."
        ) from None


def _group_rows_by_clip(clip_ids: Sequence[str]) -> np.ndarray:
    """Row order that puts the rows of a clip together, clips by first appearance."""
    first: dict[str, int] = {}
    rank = np.array([first.setdefault(c, len(first)) for c in clip_ids], dtype=np.int64)
    return np.argsort(rank, kind="stable")


def _files_on_disk(folder: Path) -> dict[str, str]:
    """NFC-normalised name -> actual name of the files in ``folder`` (empty if absent)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {unicodedata.normalize("NFC", n): n for n in names}


def _pairs_bunch(
    audio_dir: Path,
    clip_ids: list[str],
    files: list[str],
    captions: list[str],
    metadata: dict[str, list],
    *,
    on_missing: str,
    normalize_captions: bool,
    return_X_y: bool,
    descr: str,
    listed_in: Path,
    per_row: dict[str, list] | None = None,
    extra: dict | None = None,
):
    """Check the clips on disk, drop or refuse the missing ones, build the Bunch."""
    on_disk = _files_on_disk(audio_dir)
    unique_files = list(dict.fromkeys(files))
    missing = [f for f in unique_files if unicodedata.normalize("NFC", f) not in on_disk]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:_SHOWN_MISSING])
        more = ", ..." if len(missing) > _SHOWN_MISSING else ""
        where = (
            f"{len(missing)} of the {len(unique_files)} clips listed in {str(listed_in)!r} are "
            f"not in {str(audio_dir)!r} (first: {shown}{more})"
        )
        if len(missing) == len(unique_files):
            raise MissingDataError(f"{where}: no clip at all is there; check the audio folder.")
        if on_missing == "raise":
            raise MissingDataError(
                f"{where}; pass on_missing='drop' to keep only the clips on disk."
            )
    absent = set(missing)
    keep = [i for i, f in enumerate(files) if f not in absent]
    if missing:
        warnings.warn(
            f"Dropped {len(files) - len(keep)} caption rows: {where}.", UserWarning, stacklevel=3
        )
    folder = Path(os.path.abspath(audio_dir))
    audio = [str(folder / on_disk[unicodedata.normalize("NFC", files[i])]) for i in keep]
    texts = [captions[i] for i in keep]
    if normalize_captions:
        texts = [normalize_caption(t) for t in texts]
    if return_X_y:
        return audio, texts
    bunch = Bunch(
        audio=audio,
        captions=texts,
        clip_ids=np.array([clip_ids[i] for i in keep], dtype=object),
        metadata={k: _column(v, keep) for k, v in metadata.items()},
        n_missing=len(missing),
        DESCR=descr,
    )
    for key, values in (per_row or {}).items():
        bunch[key] = _column(values, keep)
    bunch.update(extra or {})
    return bunch


def _column(values: list, keep: list[int]) -> np.ndarray:
    picked = [values[i] for i in keep]
    if picked and all(isinstance(v, (bool, np.bool_)) for v in picked):
        return np.array(picked, dtype=bool)
    if picked and all(isinstance(v, int) for v in picked):
        return np.array(picked, dtype=np.int64)
    return np.array(picked, dtype=object)
