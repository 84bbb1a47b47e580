"""Download, verify and extract ESC-50 and Clotho into a local cache.

Downloads go to ``<name>.part`` and resume with an HTTP ``Range`` request; the file is
renamed to its final name only after its checksum matched. Archives are extracted into
a temporary folder that is renamed into place once complete, and members that would
land outside it (``../`` paths, absolute paths, links) are refused before anything is
written. Only ``urllib`` from the standard library talks to the network.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from ._loaders import CLOTHO_SPLITS, MissingDataError

__all__ = [
    "CLOTHO_BASE_URL",
    "CLOTHO_MD5",
    "ESC50_SHA256",
    "ESC50_URL",
    "fetch_clotho",
    "fetch_esc50",
    "get_data_home",
]

#: The ESC-50 repository's master branch as a zip (about 600 MB).
ESC50_URL = "https://github.com/karolpiczak/ESC-50/archive/master.zip"
#: GitHub builds a branch archive on demand, so its bytes (and checksum) are not pinned:
#: no SHA-256 is known. The zip's own CRC-32 of every member is checked on extraction;
#: pass ``sha256=`` to :func:`fetch_esc50` to pin a copy you trust.
ESC50_SHA256 = None
#: Clotho v2.1 on Zenodo (record 4783391); files are ``{CLOTHO_BASE_URL}/{name}?download=1``.
CLOTHO_BASE_URL = "https://zenodo.org/records/4783391/files"
#: MD5 checksums of the Clotho v2.1 files as the Zenodo record lists them (Zenodo
#: publishes MD5, not SHA-256). Verified on every download unless ``sha256=`` is given.
CLOTHO_MD5 = {
    "clotho_audio_development.7z": "c8b05bc7acdb13895bb3c6a29608667e",
    "clotho_audio_validation.7z": "7dba730be08bada48bd15dc4e668df59",
    "clotho_audio_evaluation.7z": "4569624ccadf96223f19cb59fe4f849f",
    "clotho_captions_development.csv": "d4090b39ce9f2491908eebf4d5b09bae",
    "clotho_captions_validation.csv": "5879e023032b22a2c930aaa0528bead4",
    "clotho_captions_evaluation.csv": "1b16b9e57cf7bdb7f13a13802aeb57e2",
}

_DATA_HOME_ENV = "SKLEARN_LTM_DATA"
_CHUNK = 1 << 20
_SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def get_data_home(data_home=None) -> str:
    """The folder where fetched datasets are cached, created if needed.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder. ``None`` means the environment variable ``SKLEARN_LTM_DATA`` when
        set, else ``~/sklearn_ltm_data``.

    Returns
    -------
    str
        The absolute path of the folder.

    Examples
    --------
    >>> import tempfile, os
    >>> home = os.path.join(tempfile.mkdtemp(), "cache")
    >>> get_data_home(home) == os.path.abspath(home) and os.path.isdir(home)
    True
    """
    if data_home is None:
        data_home = os.environ.get(_DATA_HOME_ENV) or os.path.join("~", "sklearn_ltm_data")
    elif not isinstance(data_home, (str, os.PathLike)):
        raise TypeError(f"data_home={data_home!r} is not a path; pass a str, a path or None.")
    path = os.path.abspath(os.path.expanduser(os.fspath(data_home)))
    os.makedirs(path, exist_ok=True)
    return path


def fetch_esc50(
    data_home=None,
    *,
    url: str = ESC50_URL,
    sha256: str | None = ESC50_SHA256,
    download_if_missing: bool = True,
    keep_archive: bool = False,
    timeout: float = 60.0,
    verbose: bool = True,
) -> str:
    """Download and extract ESC-50, or find it in the cache.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The cache folder (see :func:`get_data_home`); the data lands in
        ``{data_home}/esc50``.
    url : str, default=ESC50_URL
        Where the zip (or tar) archive is; its top folder must hold ``meta/esc50.csv``.
    sha256 : str, default=None
        The archive's SHA-256 in hex. ``None`` skips that check (the master-branch zip
        has no fixed checksum); the CRC-32 of every zip member is checked anyway.
    download_if_missing : bool, default=True
        When False and the data is not cached, raise instead of downloading.
    keep_archive : bool, default=False
        Keep the downloaded archive next to the extracted folder.
    timeout : float, default=60.0
        Seconds to wait for the server on each network operation.
    verbose : bool, default=True
        Print one line per step to standard error.

    Returns
    -------
    root : str
        The folder to pass to :func:`load_esc50`.

    Raises
    ------
    MissingDataError
        When the data is not cached and ``download_if_missing`` is False, or when
        ``{data_home}/esc50`` exists without ``meta/esc50.csv``.
    OSError
        When the download fails or its checksum differs (the bad file is removed; an
        interrupted download is kept and resumed by the next call).
    ValueError
        When the archive holds a member that would land outside the target folder or a
        link, or no ``meta/esc50.csv``.

    See Also
    --------
    load_esc50 : Read the folder this returns.

    Examples
    --------
    >>> import tempfile
    >>> fetch_esc50(tempfile.mkdtemp(), download_if_missing=False)
    Traceback (most recent call last):
    ...
    sklearn_ltm.datasets.MissingDataError: ESC-50 is not in ...
    """
    _check_url(url, "url")
    sha256 = _check_sha256(sha256, "sha256")
    _check_download_args(download_if_missing, keep_archive, timeout, verbose)
    home = Path(get_data_home(data_home))
    target = home / "esc50"
    if (target / "meta" / "esc50.csv").is_file():
        return str(target)
    if target.exists():
        raise MissingDataError(
            f"{str(target)!r} exists but holds no meta/esc50.csv (an unfinished copy?); "
            "remove it and call fetch_esc50 again."
        )
    if not download_if_missing:
        raise MissingDataError(
            f"ESC-50 is not in {str(target)!r} and download_if_missing=False; call "
            "fetch_esc50 with download_if_missing=True, or put the official layout there."
        )
    archive = home / f"esc50-{PurePosixPath(urllib.parse.urlsplit(url).path).name or 'archive'}"
    _download(url, archive, sha256=sha256, md5=None, timeout=timeout, verbose=verbose)
    _extract(archive, target, _find_marked("meta/esc50.csv"), verbose=verbose)
    if not keep_archive:
        archive.unlink()
    return str(target)


def fetch_clotho(
    data_home=None,
    *,
    splits: Sequence[str] | None = None,
    download_audio: bool = True,
    base_url: str = CLOTHO_BASE_URL,
    sha256: Mapping[str, str] | None = None,
    download_if_missing: bool = True,
    keep_archive: bool = True,
    timeout: float = 60.0,
    verbose: bool = True,
) -> str:
    """Download Clotho v2.1 (captions and audio), or find it in the cache.

    Each split needs ``clotho_captions_{split}.csv`` and the folder ``{split}/`` of its
    clips, unpacked from ``clotho_audio_{split}.7z``. Zenodo publishes MD5 checksums
    (:data:`CLOTHO_MD5`), verified on every download.

    The audio archives are in 7z format, which the Python standard library cannot
    unpack: with the optional ``py7zr`` installed (``pip install sklearn-ltm[fetch]``) they
    are unpacked like the other archives (members that would leave the target folder, or
    links, are refused before anything is written). Without it, such an archive is downloaded,
    verified and kept, then a :class:`RuntimeError` says how to unpack it by hand (for
    example ``7z x clotho_audio_evaluation.7z``); call again afterwards and the folder is
    found. A zip or tar archive (a mirror, a test server) is unpacked here.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The cache folder (see :func:`get_data_home`); the data lands in
        ``{data_home}/clotho``.
    splits : sequence of str, default=None
        Among ``"development"``, ``"validation"``, ``"evaluation"``; ``None`` means all.
    download_audio : bool, default=True
        When False, fetch only the caption tables.
    base_url : str, default=CLOTHO_BASE_URL
        The files are ``{base_url}/{name}?download=1``.
    sha256 : mapping of str to str, default=None
        SHA-256 (hex) of some files, by file name; a file listed here is checked by it
        instead of its MD5.
    download_if_missing : bool, default=True
        When False and a needed file is not cached, raise instead of downloading.
    keep_archive : bool, default=True
        Keep each audio archive after unpacking it.
    timeout : float, default=60.0
        Seconds to wait for the server on each network operation.
    verbose : bool, default=True
        Print one line per step to standard error.

    Returns
    -------
    root : str
        The folder to pass to :func:`load_clotho`.

    Raises
    ------
    MissingDataError
        When something is not cached and ``download_if_missing`` is False.
    OSError
        When a download fails or a checksum differs (the bad file is removed; an
        interrupted download is kept and resumed by the next call).
    RuntimeError
        When 7z archives are left to unpack by hand (their paths are in the message).
    ValueError
        When an archive holds a member that would land outside its target folder, or a
        link.

    See Also
    --------
    load_clotho : Read the folder this returns.

    Examples
    --------
    >>> import tempfile
    >>> fetch_clotho(tempfile.mkdtemp(), splits=["evaluation"], download_if_missing=False)
    Traceback (most recent call last):
    ...
    sklearn_ltm.datasets.MissingDataError: Clotho file(s) not in ...
    """
    split_list = _check_splits(splits)
    _check_url(base_url, "base_url")
    checksums = _check_sha256_map(sha256)
    _check_download_args(download_if_missing, keep_archive, timeout, verbose)
    if not isinstance(download_audio, bool):
        raise TypeError(f"download_audio={download_audio!r} is not a bool; pass True or False.")
    root = Path(get_data_home(data_home)) / "clotho"
    needed = []
    for split in split_list:
        if not (root / f"clotho_captions_{split}.csv").is_file():
            needed.append((f"clotho_captions_{split}.csv", None))
        if download_audio and not (root / split).is_dir():
            needed.append((f"clotho_audio_{split}.7z", split))
    if needed and not download_if_missing:
        raise MissingDataError(
            f"Clotho file(s) not in {str(root)!r} and download_if_missing=False: "
            f"{[name for name, _ in needed]}."
        )
    root.mkdir(parents=True, exist_ok=True)
    by_hand = []
    for name, split in needed:
        dest = root / name
        url = f"{base_url.rstrip('/')}/{name}?download=1"
        sha = checksums.get(name)
        md5 = None if sha else CLOTHO_MD5.get(name)
        _download(url, dest, sha256=sha, md5=md5, timeout=timeout, verbose=verbose)
        if split is None:
            continue
        if _is_seven_zip(dest) and not _have_py7zr():
            by_hand.append((dest, split))
            continue
        _extract(dest, root / split, _find_split_folder(split), verbose=verbose)
        if not keep_archive:
            dest.unlink()
    if by_hand:
        steps = "; ".join(f"`7z x {str(p)!r} -o{str(root)!r}`" for p, _ in by_hand)
        raise RuntimeError(
            f"Downloaded and verified {len(by_hand)} Clotho audio archive(s) in 7z format, "
            "which this installation cannot unpack (the standard library has no 7z reader "
            "and py7zr is not installed: `pip install sklearn-ltm[fetch]`). Unpack them by "
            "hand so that "
            f"{str(root)!r} holds the folder(s) {[s for _, s in by_hand]}: {steps} (p7zip), "
            "or `pip install py7zr` then `python -m py7zr x <archive> <folder>`. Then call "
            f"load_clotho({str(root)!r}, split) or fetch_clotho again."
        )
    return str(root)


# ------------------------------------------------------------------------- validation


def _check_url(url, name: str) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{name}={url!r} is not an http:// or https:// URL.")


def _check_sha256(value, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"{name}={value!r} is not a SHA-256 digest (64 hex digits) or None.")
    return value.lower()


def _check_sha256_map(value) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"sha256={value!r} is not a mapping of file name to SHA-256, or None.")
    unknown = sorted(set(value) - set(CLOTHO_MD5))
    if unknown:
        raise ValueError(f"sha256 names unknown file(s) {unknown}; known: {sorted(CLOTHO_MD5)}.")
    return {k: _check_sha256(v, f"sha256[{k!r}]") for k, v in value.items()}


def _check_splits(splits) -> list[str]:
    if splits is None:
        return list(CLOTHO_SPLITS)
    if isinstance(splits, str) or not isinstance(splits, Sequence) or not splits:
        raise ValueError(
            f"splits={splits!r} is not a non-empty list of split names; use some of "
            f"{list(CLOTHO_SPLITS)} or None."
        )
    for s in splits:
        if s not in CLOTHO_SPLITS:
            raise ValueError(f"splits holds {s!r}; accepted: {list(CLOTHO_SPLITS)}.")
    return list(dict.fromkeys(splits))


def _check_download_args(download_if_missing, keep_archive, timeout, verbose) -> None:
    for name, value in (
        ("download_if_missing", download_if_missing),
        ("keep_archive", keep_archive),
        ("verbose", verbose),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name}={value!r} is not a bool; pass True or False.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout={timeout!r} is not a positive number of seconds.")


# --------------------------------------------------------------------------- download


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"[sklearn-ltm] {message}", file=sys.stderr, flush=True)


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _checksum_problem(path: Path, sha256: str | None, md5: str | None) -> str | None:
    """None when ``path`` matches the known checksum(s), else what differs."""
    if sha256 is None and md5 is None:
        return None
    got_sha, got_md5 = _digests(path)
    if sha256 is not None and got_sha != sha256:
        return f"SHA-256 {got_sha} differs from the expected {sha256}"
    if md5 is not None and got_md5 != md5:
        return f"MD5 {got_md5} differs from the expected {md5}"
    return None


def _download(url, dest: Path, *, sha256, md5, timeout, verbose) -> None:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming and verifying."""
    if dest.is_file():
        problem = _checksum_problem(dest, sha256, md5)
        if problem is None:
            return
        _say(verbose, f"cached {dest.name} is damaged ({problem}); downloading it again")
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "sklearn-ltm", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    _say(verbose, f"downloading {url}" + (f" (resuming at byte {offset})" if offset else ""))
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and offset):
            raise OSError(f"Downloading {url} failed: HTTP {exc.code} {exc.reason}.") from exc
        response = None  # nothing left past ``offset``: the part holds the whole file
    except urllib.error.URLError as exc:
        raise OSError(f"Could not reach {url}: {exc.reason}.") from exc
    if response is not None:
        with response:
            resumed = bool(offset) and response.status == 206
            if resumed and _range_start(response) != offset:
                part.unlink()
                raise OSError(
                    f"{url} answered a range other than the one asked (from byte {offset}); "
                    "the partial file was removed, call again to download afresh."
                )
            expected = response.headers.get("Content-Length")
            written = 0
            try:
                with open(part, "ab" if resumed else "wb") as fh:
                    while block := response.read(_CHUNK):
                        fh.write(block)
                        written += len(block)
            except (OSError, http.client.HTTPException) as exc:
                raise OSError(
                    f"Downloading {url} was interrupted ({exc!r}); {part} is kept and the next "
                    "call resumes it."
                ) from exc
            if expected is not None and expected.isdigit() and written < int(expected):
                raise OSError(
                    f"Downloading {url} stopped after {written} of {expected} bytes; {part} "
                    "is kept and the next call resumes it."
                )
    problem = _checksum_problem(part, sha256, md5)
    if problem is not None:
        part.unlink()
        raise OSError(
            f"The download of {url} is corrupt: {problem}. The file was removed; call again "
            "to download it afresh."
        )
    os.replace(part, dest)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _is_seven_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(_SEVEN_ZIP_MAGIC)) == _SEVEN_ZIP_MAGIC


# ---------------------------------------------------------------------------- extract


def _extract(archive: Path, target: Path, locate, *, verbose: bool) -> None:
    """Unpack ``archive`` into a temporary folder, then rename ``locate(tmp)`` to ``target``."""
    _say(verbose, f"extracting {archive.name} to {target}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp)
        elif _is_seven_zip(archive):
            _extract_7z(archive, tmp)
        else:
            raise ValueError(f"{archive} is neither a zip, a tar nor a 7z archive.")
        found = locate(tmp)
        if found is None:
            raise ValueError(f"{archive} does not hold the expected layout for {target}.")
        if not target.exists():
            os.replace(found, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_destination(base: Path, name: str, archive: Path) -> Path:
    """Where member ``name`` goes under ``base``; refuse names that would leave it."""
    pure = PurePosixPath(name.replace("\\", "/"))
    escapes = (
        pure.is_absolute()
        or ".." in pure.parts
        or re.match(r"^[A-Za-z]:", name) is not None
        or not pure.parts
    )
    dest = (base / pure).resolve()
    if escapes or (dest != base and base not in dest.parents):
        raise ValueError(
            f"Refusing to extract {archive}: member {name!r} would land outside the target "
            "folder. Nothing was extracted."
        )
    return dest


def _extract_zip(archive: Path, tmp: Path) -> None:
    base = tmp.resolve()
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():
            dest = _safe_destination(base, info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValueError(
                    f"Refusing to extract {archive}: member {info.filename!r} is a symbolic "
                    "link. Nothing was extracted."
                )
            plan.append((info, dest))
        for info, dest in plan:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:  # CRC-32 checked on read
                shutil.copyfileobj(src, out, _CHUNK)


def _extract_tar(archive: Path, tmp: Path) -> None:
    base = tmp.resolve()
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _safe_destination(base, member.name, archive)
            if not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"Refusing to extract {archive}: member {member.name!r} is a link or a "
                    "special file. Nothing was extracted."
                )
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(tmp, members=members, **extra)


def _have_py7zr() -> bool:
    return importlib.util.find_spec("py7zr") is not None


def _extract_7z(archive: Path, tmp: Path) -> None:
    import py7zr

    base = tmp.resolve()
    with py7zr.SevenZipFile(archive, "r") as zf:
        for info in zf.list():
            _safe_destination(base, info.filename, archive)
            if info.is_symlink:
                raise ValueError(
                    f"Refusing to extract {archive}: member {info.filename!r} is a symbolic "
                    "link. Nothing was extracted."
                )
        zf.extractall(path=tmp)  # CRC-32 of every member checked by py7zr


def _find_marked(marker: str):
    """A locator: the folder of ``tmp`` (itself or one level down) holding ``marker``."""

    def locate(tmp: Path) -> Path | None:
        for candidate in (tmp, *sorted(p for p in tmp.iterdir() if p.is_dir())):
            if (candidate / marker).is_file():
                return candidate
        return None

    return locate


def _find_split_folder(split: str):
    """A locator: ``tmp/{split}``, else the single folder in ``tmp``, else ``tmp``."""

    def locate(tmp: Path) -> Path:
        if (tmp / split).is_dir():
            return tmp / split
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            return entries[0]
        return tmp

    return locate
