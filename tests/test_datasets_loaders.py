"""Loaders of AudioCaps, Clotho and ESC-50: real files in ../shared/data and small layouts."""

from __future__ import annotations

import os
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest

from sklearn_ltm.datasets import (
    MissingDataError,
    load_audiocaps,
    load_clotho,
    load_esc50,
    normalize_caption,
)


def _load_quietly(loader, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return loader(*args, **kwargs)


# ----------------------------------------------------------------- real data: AudioCaps


@pytest.mark.shared_data
def test_audiocaps_test_split_on_disk_clips(shared_data):
    root = shared_data / "audiocaps"
    with pytest.warns(UserWarning, match=r"Dropped 4810 caption rows: 962 of the 975 clips"):
        data = load_audiocaps(root, "test", on_missing="drop")
    on_disk = sorted(p.stem for p in (root / "audio" / "test").glob("*.wav"))
    assert len(on_disk) == 13
    assert len(data.audio) == len(data.captions) == len(data.clip_ids) == 65
    assert sorted(set(data.clip_ids)) == on_disk
    assert data.n_missing == 962
    # every clip's five captions are adjacent rows
    for start in range(0, 65, 5):
        assert len(set(data.clip_ids[start:start + 5])) == 1
    assert all(os.path.isabs(a) and os.path.isfile(a) for a in data.audio)
    assert all(Path(a).stem == c for a, c in zip(data.audio, data.clip_ids))
    # known rows of test.csv (lines 59, 3208 and 209)
    row = list(data.metadata["audiocap_id"]).index(107281)
    assert data.clip_ids[row] == "31WGUPOYS5g_22"
    assert data.captions[row] == "A large engine passes as people speak followed by a siren"
    assert data.metadata["start_time"][row] == 22
    assert data.metadata["youtube_id"][row] == "31WGUPOYS5g"
    clip = [c for c, i in zip(data.captions, data.clip_ids) if i == "GuizRlAQ8qQ_50"]
    assert "Humming and vibrating from a power tool" in clip
    assert "High pitched continuous drilling that slows down" in clip


@pytest.mark.shared_data
def test_audiocaps_missing_clips_raise_with_count_and_names(shared_data):
    root = shared_data / "audiocaps"
    with pytest.raises(MissingDataError, match=r"962 of the 975 clips") as info:
        load_audiocaps(root, "test")
    assert "'7fmOlUlwoNg_20.wav'" in str(info.value)  # the first listed missing clip
    assert "on_missing='drop'" in str(info.value)


@pytest.mark.shared_data
@pytest.mark.parametrize("split, n_clips", [("train", 49838), ("val", 495)])
def test_audiocaps_split_without_audio_refuses_even_with_drop(shared_data, split, n_clips):
    root = shared_data / "audiocaps"
    with pytest.raises(MissingDataError, match=rf"{n_clips} of the {n_clips} clips.*no clip at all"):
        load_audiocaps(root, split, on_missing="drop")


@pytest.mark.shared_data
def test_audiocaps_return_X_y_and_normalisation(shared_data):
    root = shared_data / "audiocaps"
    data = _load_quietly(load_audiocaps, root, "test", on_missing="drop")
    audio, captions = _load_quietly(
        load_audiocaps, root, "test", on_missing="drop", return_X_y=True, normalize_captions=True
    )
    assert audio == data.audio
    assert captions == [normalize_caption(c) for c in data.captions]
    row = list(data.metadata["audiocap_id"]).index(105343)
    assert captions[row] == (
        "the buzz of the crowd is interrupted by a child shouting followed by a police siren "
        "and a horn honking"
    )


# -------------------------------------------------------------------- real data: Clotho


@pytest.mark.shared_data
def test_clotho_evaluation_clips_on_disk(shared_data):
    root = shared_data / "clotho"
    with pytest.warns(UserWarning, match=r"1038 of the 1045 clips"):
        data = load_clotho(root, "evaluation", on_missing="drop")
    on_disk = sorted(p.name for p in (root / "evaluation").glob("*.wav"))
    assert len(on_disk) == 7
    assert len(data.captions) == 35
    assert sorted(set(data.clip_ids)) == on_disk
    assert data.metadata["caption_index"].tolist() == [1, 2, 3, 4, 5] * 7
    rows = [i for i, c in enumerate(data.clip_ids) if c == "Flipping Pages.wav"]
    assert [data.captions[i] for i in rows] == [
        "A person is flipping several pages in a book",
        "A person is flipping through pages in a notebook.",
        "Big pages of a book are being turned.",
        "PAPER RUSTLING WAS EVIDENT AS THE MAN SEARCHED FOR A MISSING DOCUMENT IN THE FILE.",
        "Pages of a large book are being turned.",
    ]
    assert all(os.path.isfile(data.audio[i]) and data.audio[i].endswith("Flipping Pages.wav")
               for i in rows)


@pytest.mark.shared_data
def test_clotho_normalised_caption_of_known_row(shared_data):
    root = shared_data / "clotho"
    data = _load_quietly(load_clotho, root, "evaluation", on_missing="drop",
                         normalize_captions=True)
    rows = [i for i, c in enumerate(data.clip_ids) if c == "Flipping Pages.wav"]
    assert data.captions[rows[3]] == (
        "paper rustling was evident as the man searched for a missing document in the file"
    )


@pytest.mark.shared_data
def test_clotho_development_captions_complete_but_no_audio(shared_data):
    root = shared_data / "clotho"
    with pytest.raises(MissingDataError, match=r"2893 of the 2893 clips"):
        load_clotho(root, "development")


# -------------------------------------------------------------------- real data: ESC-50


@pytest.mark.shared_data
def test_esc50_subset_counts_and_known_rows(shared_data):
    root = shared_data / "esc50-subset"
    data = load_esc50(root)
    assert len(data.audio) == 414
    assert dict(zip(*np.unique(data.folds, return_counts=True))) == {2: 11, 3: 1, 4: 400, 5: 2}
    row = list(data.clip_ids).index("4-172736-B-36.wav")
    assert data.labels[row] == 36
    assert data.captions[row] == "This is a sound of vacuum cleaner."
    assert data.metadata["category"][row] == "vacuum_cleaner"
    assert data.target_names.shape == (50,)
    assert data.target_names[0] == "dog" and data.target_names[36] == "vacuum_cleaner"
    assert data.class_captions[36, 0] == "This is a sound of vacuum cleaner."
    assert all(os.path.isfile(a) for a in data.audio)
    # captions are exactly the class captions of the labels
    assert data.captions == [data.class_captions[k, 0] for k in data.labels]


@pytest.mark.shared_data
def test_esc50_fold_4_is_complete_and_templates_multiply_rows(shared_data):
    root = shared_data / "esc50-subset"
    templates = ["{}", "A recording of {}."]
    data = load_esc50(root, folds=[4], template=templates)
    assert len(data.audio) == 800
    assert set(data.folds) == {4}
    assert np.bincount(data.labels[data.metadata["template_index"] == 0]).tolist() == [8] * 50
    row = list(data.clip_ids).index("4-189836-A-22.wav")
    assert data.captions[row:row + 2] == ["clapping", "A recording of clapping."]
    assert data.metadata["template_index"][row:row + 2].tolist() == [0, 1]
    assert data.audio[row] == data.audio[row + 1]
    assert data.class_captions.shape == (50, 2)


@pytest.mark.shared_data
def test_esc50_absent_fold_is_reported(shared_data):
    root = shared_data / "esc50-subset"
    with pytest.raises(ValueError, match=r"folds=1 selects no clip.*\[2, 3, 4, 5\]"):
        load_esc50(root, folds=1)


# ----------------------------------------------------------- small layouts in tmp_path


def _audiocaps_layout(tmp_path: Path, rows, on_disk) -> Path:
    (tmp_path / "dataset").mkdir()
    (tmp_path / "audio" / "test").mkdir(parents=True)
    lines = ["audiocap_id,youtube_id,start_time,caption"]
    lines += [f"{i},{y},{s},{c}" for i, y, s, c in rows]
    (tmp_path / "dataset" / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in on_disk:
        (tmp_path / "audio" / "test" / name).write_bytes(b"RIFF")
    return tmp_path


def _clotho_layout(tmp_path: Path, clips, on_disk, split="evaluation", bom=False) -> Path:
    (tmp_path / split).mkdir(parents=True, exist_ok=True)
    header = "file_name," + ",".join(f"caption_{i}" for i in range(1, 6))
    lines = [header] + [",".join([name, *caps]) for name, caps in clips]
    text = ("\ufeff" if bom else "") + "\n".join(lines) + "\n"
    (tmp_path / f"clotho_captions_{split}.csv").write_text(text, encoding="utf-8")
    for name in on_disk:
        (tmp_path / split / name).write_bytes(b"RIFF")
    return tmp_path


def _esc50_layout(tmp_path: Path, rows) -> Path:
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for name, fold, target, category in rows:
        lines.append(f"{name},{fold},{target},{category},{target == 0},{name[:5]},A")
        (tmp_path / "audio" / name).write_bytes(b"RIFF")
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_audiocaps_rows_grouped_by_clip_in_first_appearance_order(tmp_path):
    rows = [(1, "bb", 10, "b one"), (2, "aa", 0, "a one"), (3, "bb", 10, "b two"),
            (4, "aa", 0, "a two"), (5, "cc", 5, "c one")]
    root = _audiocaps_layout(tmp_path, rows, ["bb_10.wav", "aa_0.wav", "cc_5.wav"])
    data = load_audiocaps(root)
    assert list(data.clip_ids) == ["bb_10", "bb_10", "aa_0", "aa_0", "cc_5"]
    assert data.captions == ["b one", "b two", "a one", "a two", "c one"]
    assert data.metadata["audiocap_id"].tolist() == [1, 3, 2, 4, 5]
    assert data.n_missing == 0


def test_missing_clips_message_lists_count_and_first_five(tmp_path):
    rows = [(i, f"y{i}", 0, f"cap {i}") for i in range(8)]
    root = _audiocaps_layout(tmp_path, rows, ["y0_0.wav"])
    with pytest.raises(MissingDataError) as info:
        load_audiocaps(root)
    message = str(info.value)
    assert "7 of the 8 clips" in message
    assert all(f"'y{i}_0.wav'" in message for i in range(1, 6))
    assert "'y6_0.wav'" not in message and ", ..." in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_drop_keeps_only_present_clips_and_warns_once(tmp_path):
    rows = [(1, "aa", 0, "first"), (2, "bb", 0, "second"), (3, "aa", 0, "third")]
    root = _audiocaps_layout(tmp_path, rows, ["aa_0.wav"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_audiocaps(root, on_missing="drop")
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        f"Dropped 1 caption rows: 1 of the 2 clips listed in "
        f"{str(root / 'dataset' / 'test.csv')!r} are not in "
        f"{str(root / 'audio' / 'test')!r} (first: 'bb_0.wav')."
    ]
    assert data.captions == ["first", "third"]
    assert data.n_missing == 1


def test_audio_and_csv_folders_by_argument(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "wavs").mkdir()
    (tmp_path / "tables" / "val.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n7,zz,30,Wind blows\n", encoding="utf-8"
    )
    (tmp_path / "wavs" / "zz_30.wav").write_bytes(b"RIFF")
    data = load_audiocaps(tmp_path, "val", csv_dir="tables", audio_dir=tmp_path / "wavs")
    assert data.audio == [str(tmp_path / "wavs" / "zz_30.wav")]
    assert data.captions == ["Wind blows"]


def test_clotho_layout_bom_and_empty_captions(tmp_path):
    clips = [("a.wav", ["One.", "Two.", "", "Four.", "Five."]),
             ("b.wav", ["B1", "B2", "B3", "B4", "B5"])]
    root = _clotho_layout(tmp_path, clips, ["a.wav", "b.wav"], bom=True)
    data = load_clotho(root)
    assert list(data.clip_ids) == ["a.wav"] * 4 + ["b.wav"] * 5
    assert data.metadata["caption_index"].tolist() == [1, 2, 4, 5, 1, 2, 3, 4, 5]
    assert data.captions[:4] == ["One.", "Two.", "Four.", "Five."]


def test_clotho_finds_clip_whose_name_is_stored_decomposed(tmp_path):
    composed = unicodedata.normalize("NFC", "caf\u00e9 ambience.wav")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    root = _clotho_layout(tmp_path, [(composed, ["c"] * 5)], [decomposed])
    data = load_clotho(root)
    assert len(data.audio) == 5
    assert os.path.isfile(data.audio[0])
    assert data.clip_ids[0] == composed


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("A dog's bark, then a high-pitched WHISTLE!", "a dogs bark then a high pitched whistle"),
        ("  Rain   falls...  on a roof ", "rain falls on a roof"),
        ("\u201cQuoted\u201d \u2014 car\u2019s horn", "quoted cars horn"),
        ("snake_case and 3 birds", "snake case and 3 birds"),
    ],
)
def test_normalize_caption(caption, expected):
    assert normalize_caption(caption) == expected


def test_esc50_layout_templates_and_labels(tmp_path):
    root = _esc50_layout(tmp_path, [("1-1-A-0.wav", 1, 0, "dog"),
                                    ("2-2-A-3.wav", 2, 3, "crying_baby")])
    data = load_esc50(root, folds=(2,), template="a {} here", normalize_captions=True)
    assert data.captions == ["a crying baby here"]
    assert data.labels.tolist() == [3] and data.folds.tolist() == [2]
    assert data.target_names.tolist() == ["dog", "", "", "crying_baby"]
    assert data.class_captions[:, 0].tolist() == ["a dog here", "", "",
                                                  "a crying baby here"]
    assert data.metadata["esc10"].dtype == bool


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda r: load_audiocaps(r, "training"), ValueError,
         r"split='training' is not accepted; use one of \['train', 'val', 'test'\]"),
        (lambda r: load_clotho(r, "test"), ValueError,
         r"split='test' is not accepted; use one of \['development', 'validation', 'evaluation'\]"),
        (lambda r: load_audiocaps(r, on_missing="skip"), ValueError, r"on_missing='skip'"),
        (lambda r: load_clotho(r, normalize_captions="yes"), TypeError, r"normalize_captions='yes'"),
        (lambda r: load_esc50(r, return_X_y=1), TypeError, r"return_X_y=1"),
        (lambda r: load_esc50(r, folds=6), ValueError, r"folds=6 holds 6; ESC-50 folds are 1..5"),
        (lambda r: load_esc50(r, folds="1"), TypeError, r"folds='1'"),
        (lambda r: load_esc50(r, folds=[]), ValueError, r"folds=\[\] is empty"),
        (lambda r: load_esc50(r, template="no slot"), ValueError, r"exactly one '\{\}'"),
        (lambda r: load_esc50(r, template="{} and {}"), ValueError, r"exactly one '\{\}'"),
        (lambda r: load_esc50(r, template="{name}"), ValueError, r"exactly one '\{\}'"),
        (lambda r: load_esc50(r, template=[]), TypeError, r"template=\[\]"),
        (lambda r: load_esc50(r, template=["{}", 3]), TypeError, r"template holds 3"),
        (lambda r: load_audiocaps(r / "nowhere"), MissingDataError, r"is not an existing folder"),
        (lambda r: load_audiocaps(42), TypeError, r"root=42 is not a path"),
        (lambda r: load_clotho(r, audio_dir=3.5), TypeError, r"audio_dir=3.5"),
    ],
)
def test_bad_arguments_are_refused_before_reading(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_missing_csv_and_missing_column(tmp_path):
    with pytest.raises(MissingDataError, match=r"test\.csv' does not exist"):
        load_audiocaps(tmp_path)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "test.csv").write_text("youtube_id,caption\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['audiocap_id', 'start_time'\]"):
        load_audiocaps(tmp_path)


def test_non_integer_start_time_names_the_line(tmp_path):
    root = _audiocaps_layout(tmp_path, [(1, "aa", 0, "ok"), (2, "bb", "ten", "bad")], [])
    with pytest.raises(ValueError, match=r"line 3: start_time='ten' is not an integer"):
        load_audiocaps(root)

