"""Fetchers against a local HTTP server on 127.0.0.1 serving archives made here."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import tarfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from sklearn_ltm.datasets import (
    MissingDataError,
    fetch_clotho,
    fetch_esc50,
    get_data_home,
    load_clotho,
    load_esc50,
)

MAX_REQUESTS = 40  # a test that needs more is broken: the server stops answering
TIMEOUT = 5.0

ESC50_CSV = (
    "filename,fold,target,category,esc10,src_file,take\n"
    "1-100-A-0.wav,1,0,dog,True,100,A\n"
    "2-200-A-1.wav,2,1,rooster,True,200,A\n"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; ``server.modes[path]`` picks how Range is handled."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        path = urllib.parse.urlsplit(self.path).path
        server.log.append((self.path, self.headers.get("Range")))
        body = server.files.get(path)
        if body is None:
            self.send_error(404)
            return
        mode = server.modes.get(path, "range")
        if mode == "truncate":  # announce everything, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        start = 0
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if asked and mode == "range":
            start = int(asked.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.modes, httpd.log = {}, {}, []
    httpd.timeout = 0.05
    stop = threading.Event()

    def serve():
        while not stop.is_set() and len(httpd.log) < MAX_REQUESTS:
            httpd.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    stop.set()
    thread.join(timeout=TIMEOUT)
    httpd.server_close()


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buffer.getvalue()


def _tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


def _esc50_members(top="ESC-50-master/") -> dict[str, bytes]:
    return {
        f"{top}meta/esc50.csv": ESC50_CSV.encode(),
        f"{top}audio/1-100-A-0.wav": b"RIFF-dog" * 50,
        f"{top}audio/2-200-A-1.wav": b"RIFF-rooster" * 50,
        f"{top}README.md": b"ESC-50\n" * 200,
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_esc50(server, home, **kwargs):
    kwargs.setdefault("url", server.url + "/esc.zip")
    return fetch_esc50(home, timeout=TIMEOUT, verbose=False, **kwargs)


# --------------------------------------------------------------------------- ESC-50


def test_fetch_esc50_verifies_extracts_and_caches(server, tmp_path):
    archive = _zip(_esc50_members())
    server.files["/esc.zip"] = archive
    root = _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert root == str(tmp_path / "esc50")
    data = load_esc50(root, template="{}")
    assert data.captions == ["dog", "rooster"]
    assert Path(data.audio[1]).read_bytes() == b"RIFF-rooster" * 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["esc50"]  # archive and temp gone
    n_requests = len(server.log)
    assert _fetch_esc50(server, tmp_path, sha256=_sha256(archive)) == root
    assert len(server.log) == n_requests == 1  # the second call used the cache


@pytest.mark.parametrize("mode, status_range", [("range", True), ("ignore-range", False)])
def test_fetch_resumes_a_partial_download(server, tmp_path, mode, status_range):
    archive = _zip(_esc50_members())
    server.files["/esc.zip"] = archive
    server.modes["/esc.zip"] = mode
    offset = len(archive) * 2 // 5
    (tmp_path / "esc50-esc.zip.part").write_bytes(archive[:offset])
    root = _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert server.log == [("/esc.zip", f"bytes={offset}-")]
    assert load_esc50(root).clip_ids.tolist() == ["1-100-A-0.wav", "2-200-A-1.wav"]
    assert not (tmp_path / "esc50-esc.zip.part").exists()


def test_interrupted_download_is_kept_then_resumed(server, tmp_path):
    archive = _zip(_esc50_members())
    server.files["/esc.zip"] = archive
    server.modes["/esc.zip"] = "truncate"
    with pytest.raises(OSError, match=r"next call resumes it"):
        _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    part = tmp_path / "esc50-esc.zip.part"
    assert part.read_bytes() == archive[: len(archive) // 2]
    assert not (tmp_path / "esc50").exists()
    server.modes["/esc.zip"] = "range"
    root = _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert server.log[-1] == ("/esc.zip", f"bytes={len(archive) // 2}-")
    assert load_esc50(root).captions[0] == "This is a sound of dog."


def test_complete_part_file_is_verified_after_416(server, tmp_path):
    archive = _zip(_esc50_members())
    server.files["/esc.zip"] = archive
    (tmp_path / "esc50-esc.zip.part").write_bytes(archive)
    root = _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert server.log == [("/esc.zip", f"bytes={len(archive)}-")]
    assert Path(root, "meta", "esc50.csv").read_text() == ESC50_CSV


@pytest.mark.parametrize("stale_part", [False, True])
def test_corrupt_download_is_removed_and_refetched_afresh(server, tmp_path, stale_part):
    archive = _zip(_esc50_members())
    corrupt = bytearray(archive)
    corrupt[len(corrupt) // 3] ^= 0xFF
    part = tmp_path / "esc50-esc.zip.part"
    if stale_part:  # a resumed download whose first half is damaged
        part.write_bytes(bytes(corrupt[: len(corrupt) // 2]))
        server.files["/esc.zip"] = archive
    else:
        server.files["/esc.zip"] = bytes(corrupt)
    with pytest.raises(OSError, match=r"is corrupt: SHA-256 [0-9a-f]{64} differs from the expected"):
        _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert list(tmp_path.iterdir()) == []  # nothing kept, nothing extracted
    server.files["/esc.zip"] = archive
    root = _fetch_esc50(server, tmp_path, sha256=_sha256(archive))
    assert server.log[-1] == ("/esc.zip", None)  # afresh, not resumed
    assert len(load_esc50(root).audio) == 2


def test_corrupt_zip_without_checksum_fails_its_crc(server, tmp_path):
    archive = bytearray(_zip({"ESC-50-master/meta/esc50.csv": ESC50_CSV.encode() * 20}))
    archive[60] ^= 0xFF  # inside the stored member's data
    server.files["/esc.zip"] = bytes(archive)
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        _fetch_esc50(server, tmp_path)
    assert not (tmp_path / "esc50").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["esc50-esc.zip"]  # kept for a look


@pytest.mark.parametrize(
    "make, members, links",
    [
        (_zip, {"../evil.txt": b"x"}, None),
        (_zip, {"ESC-50-master/../../evil.txt": b"x"}, None),
        (_zip, {"ABSOLUTE/evil.txt": b"x"}, None),
        (_zip, {}, {"ESC-50-master/audio/link": "../../../evil.txt"}),
        (_tar, {"../evil.txt": b"x"}, None),
        (_tar, {"ESC-50-master/audio/../../../evil.txt": b"x"}, None),
        (_tar, {}, {"ESC-50-master/audio/link": "/etc/passwd"}),
    ],
)
def test_archive_member_outside_the_target_is_refused(server, tmp_path, make, members, links):
    home = tmp_path / "home"
    members = {name.replace("ABSOLUTE", str(tmp_path)): data for name, data in members.items()}
    archive = make({**_esc50_members(), **members}, links)
    server.files["/esc.zip"] = archive
    with pytest.raises(ValueError, match=r"Refusing to extract .*(outside the target|link)"):
        _fetch_esc50(server, home, sha256=_sha256(archive))
    assert not (home / "esc50").exists()
    assert sorted(p.name for p in home.iterdir()) == ["esc50-esc.zip"]  # no temp folder left
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_tar_archive_is_extracted(server, tmp_path):
    archive = _tar(_esc50_members(top="esc50-data/"))
    server.files["/esc.tar.gz"] = archive
    root = _fetch_esc50(server, tmp_path, url=server.url + "/esc.tar.gz", keep_archive=True)
    assert load_esc50(root).labels.tolist() == [0, 1]
    assert (tmp_path / "esc50-esc.tar.gz").read_bytes() == archive


def test_archive_without_esc50_layout_is_refused(server, tmp_path):
    server.files["/esc.zip"] = _zip({"something/else.txt": b"x"})
    with pytest.raises(ValueError, match="does not hold the expected layout"):
        _fetch_esc50(server, tmp_path)
    assert not (tmp_path / "esc50").exists()


def test_unfinished_target_folder_is_reported_not_overwritten(server, tmp_path):
    server.files["/esc.zip"] = _zip(_esc50_members())
    (tmp_path / "esc50" / "audio").mkdir(parents=True)
    with pytest.raises(MissingDataError, match=r"holds no meta/esc50.csv.*remove it"):
        _fetch_esc50(server, tmp_path)
    assert server.log == []


def test_offline_cache_miss_and_http_errors(server, tmp_path):
    with pytest.raises(MissingDataError, match="download_if_missing=False"):
        _fetch_esc50(server, tmp_path, download_if_missing=False)
    assert server.log == []
    with pytest.raises(OSError, match=r"HTTP 404"):
        _fetch_esc50(server, tmp_path, url=server.url + "/absent.zip")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"url": "ftp://example.org/x.zip"}, ValueError, r"url='ftp://example.org/x.zip'"),
        ({"sha256": "abc"}, ValueError, r"sha256='abc' is not a SHA-256 digest"),
        ({"timeout": 0}, ValueError, r"timeout=0 is not a positive number"),
        ({"keep_archive": "no"}, TypeError, r"keep_archive='no' is not a bool"),
        ({"data_home": 5}, TypeError, r"data_home=5 is not a path"),
    ],
)
def test_fetch_esc50_bad_arguments(tmp_path, kwargs, error, match):
    kwargs.setdefault("data_home", tmp_path)
    with pytest.raises(error, match=match):
        fetch_esc50(verbose=False, **kwargs)


def test_data_home_from_argument_environment_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SKLEARN_LTM_DATA", str(tmp_path / "from_env"))
    assert get_data_home() == str(tmp_path / "from_env")
    assert get_data_home(tmp_path / "explicit") == str(tmp_path / "explicit")
    monkeypatch.delenv("SKLEARN_LTM_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert get_data_home() == str(tmp_path / "user" / "sklearn_ltm_data")
    assert (tmp_path / "user" / "sklearn_ltm_data").is_dir()


# --------------------------------------------------------------------------- Clotho

CLOTHO_CSV = (
    "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    "rain.wav,Rain falls.,It rains.,Drops patter.,A wet day.,A storm.\n"
)


def _clotho_server(server, audio_archive: bytes) -> dict[str, str]:
    server.files["/clotho/clotho_captions_evaluation.csv"] = CLOTHO_CSV.encode()
    server.files["/clotho/clotho_audio_evaluation.7z"] = audio_archive
    return {
        "clotho_captions_evaluation.csv": _sha256(CLOTHO_CSV.encode()),
        "clotho_audio_evaluation.7z": _sha256(audio_archive),
    }


def _fetch_clotho(server, home, **kwargs):
    return fetch_clotho(home, splits=["evaluation"], base_url=server.url + "/clotho",
                        timeout=TIMEOUT, verbose=False, **kwargs)


def test_fetch_clotho_zip_mirror_then_load(server, tmp_path):
    sums = _clotho_server(server, _zip({"evaluation/rain.wav": b"RIFF-rain"}))
    root = _fetch_clotho(server, tmp_path, sha256=sums, keep_archive=False)
    assert root == str(tmp_path / "clotho")
    assert [path for path, _ in server.log] == [
        "/clotho/clotho_captions_evaluation.csv?download=1",
        "/clotho/clotho_audio_evaluation.7z?download=1",
    ]
    audio, captions = load_clotho(root, "evaluation", return_X_y=True)
    assert captions[0] == "Rain falls." and len(audio) == 5
    assert Path(audio[0]).read_bytes() == b"RIFF-rain"
    assert not (tmp_path / "clotho" / "clotho_audio_evaluation.7z").exists()
    _fetch_clotho(server, tmp_path, sha256=sums)
    assert len(server.log) == 2  # cached


def _seven_zip(members: dict[str, bytes], tmp_path) -> bytes:
    py7zr = pytest.importorskip("py7zr", reason="the optional 7z reader is not installed")
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "made.7z"
    with py7zr.SevenZipFile(out, "w") as zf:
        for i, (name, data) in enumerate(members.items()):
            (src / f"m{i}").write_bytes(data)
            zf.write(src / f"m{i}", name)
    return out.read_bytes()


def test_fetch_clotho_unpacks_real_7z_with_py7zr(server, tmp_path):
    archive = _seven_zip({"evaluation/rain.wav": b"RIFF-rain"}, tmp_path / "made")
    sums = _clotho_server(server, archive)
    root = _fetch_clotho(server, tmp_path / "home", sha256=sums, keep_archive=False)
    audio, captions = load_clotho(root, "evaluation", return_X_y=True)
    assert Path(audio[0]).read_bytes() == b"RIFF-rain" and len(captions) == 5
    assert not (Path(root) / "clotho_audio_evaluation.7z").exists()


def test_fetch_clotho_refuses_7z_member_outside_target(server, tmp_path):
    archive = _seven_zip({"evaluation/rain.wav": b"RIFF", "../escaped.txt": b"evil"},
                         tmp_path / "made")
    sums = _clotho_server(server, archive)
    with pytest.raises(ValueError, match=r"'\.\./escaped\.txt' would land outside"):
        _fetch_clotho(server, tmp_path / "home", sha256=sums)
    home = tmp_path / "home"
    assert not (home / "escaped.txt").exists() and not (home / "clotho" / "escaped.txt").exists()
    assert not (home / "clotho" / "evaluation").exists()
    assert not list((home / "clotho").glob(".*part"))  # the temporary folder is gone


def test_fetch_clotho_7z_is_kept_with_instructions(server, tmp_path, monkeypatch):
    from sklearn_ltm.datasets import _fetch

    monkeypatch.setattr(_fetch, "_have_py7zr", lambda: False)  # an install without py7zr
    seven_zip = b"7z\xbc\xaf\x27\x1c" + bytes(range(256)) * 4
    sums = _clotho_server(server, seven_zip)
    with pytest.raises(RuntimeError, match=r"7z x .*clotho_audio_evaluation\.7z") as info:
        _fetch_clotho(server, tmp_path, sha256=sums)
    assert "py7zr" in str(info.value)
    root = tmp_path / "clotho"
    assert (root / "clotho_audio_evaluation.7z").read_bytes() == seven_zip
    assert (root / "clotho_captions_evaluation.csv").read_text() == CLOTHO_CSV
    (root / "evaluation").mkdir()  # the user unpacks by hand
    (root / "evaluation" / "rain.wav").write_bytes(b"RIFF")
    n_requests = len(server.log)
    assert _fetch_clotho(server, tmp_path, sha256=sums) == str(root)
    assert len(server.log) == n_requests
    assert len(load_clotho(root).audio) == 5


def test_fetch_clotho_checks_the_published_md5_by_default(server, tmp_path):
    _clotho_server(server, b"")
    with pytest.raises(OSError, match=r"MD5 [0-9a-f]{32} differs from the expected "
                                      r"1b16b9e57cf7bdb7f13a13802aeb57e2"):
        _fetch_clotho(server, tmp_path, download_audio=False)
    assert list((tmp_path / "clotho").iterdir()) == []


def test_fetch_clotho_captions_only(server, tmp_path):
    sums = _clotho_server(server, b"unused")
    root = _fetch_clotho(server, tmp_path, download_audio=False, sha256=sums)
    assert sorted(p.name for p in Path(root).iterdir()) == ["clotho_captions_evaluation.csv"]
    assert len(server.log) == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"splits": ["test"]}, ValueError, r"splits holds 'test'; accepted"),
        ({"splits": "evaluation"}, ValueError, r"splits='evaluation' is not a non-empty list"),
        ({"base_url": "zenodo.org"}, ValueError, r"base_url='zenodo.org'"),
        ({"sha256": {"other.csv": "0" * 64}}, ValueError, r"unknown file\(s\) \['other.csv'\]"),
        ({"sha256": "0" * 64}, TypeError, r"is not a mapping"),
        ({"download_audio": 1}, TypeError, r"download_audio=1 is not a bool"),
    ],
)
def test_fetch_clotho_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        fetch_clotho(tmp_path, verbose=False, **kwargs)


def test_fetch_clotho_offline_lists_what_is_missing(tmp_path):
    with pytest.raises(MissingDataError, match=r"clotho_captions_validation\.csv.*"
                                               r"clotho_audio_validation\.7z"):
        fetch_clotho(tmp_path, splits=["validation"], download_if_missing=False)
