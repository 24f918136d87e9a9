"""Fetching the registry's data sets: download with progress and resume, verify, unpack into the layout the
loaders read (book: "How to run it"; ``facelearn fetch`` and ``facelearn data``).

A download goes to ``data_dir()/downloads/<file>.part`` and resumes from there with an HTTP ``Range``
request after an interruption; only a complete file whose SHA-256 matches is renamed to its final name, a
mismatching one is removed. An archive is then unpacked under ``data_dir()/<folder>`` (members that would
land outside it are refused) and a record ``downloads/<name>.json`` notes the hash and how it was
established. A second fetch of an installed entry does nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from facelearn import __version__, runtime
from facelearn.data.download import REGISTRY, Resource, sha256_of
from facelearn.errors import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where one fetch reads from: ``mirror`` (a base URL that replaces the publisher's, ``$FACELEARN_MIRROR``
    when not given) or ``file`` (a copy the reader downloaded by hand); ``sha256`` overrides the registry's;
    ``trust_on_first_use`` accepts an entry without a known hash and records the one it saw."""

    mirror: str | None = None
    file: str | os.PathLike | None = None
    sha256: str | None = None
    trust_on_first_use: bool = False


class RequestOnly(Exception):
    """The entry cannot be downloaded by facelearn; the message says where to request it and where to put it."""


def downloads_dir() -> Path:
    """``data_dir()/downloads``: partial and complete archives, and the records of what was verified."""
    path = runtime.data_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_of(res: Resource) -> dict | None:
    """What the last successful fetch of ``res`` recorded (``sha256``, ``verified_by``), or ``None``."""
    path = downloads_dir() / f"{res.name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def url_of(res: Resource, mirror: str | None = None) -> str | None:
    """The URL ``res`` is downloaded from: ``mirror/<filename>`` when a mirror is given (argument, else
    ``$FACELEARN_MIRROR``), else the publisher's URL (``None`` for an entry that must be requested)."""
    mirror = mirror or os.environ.get("FACELEARN_MIRROR")
    return f"{mirror.rstrip('/')}/{res.filename}" if mirror else res.url


def download(url: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a previous partial download with an HTTP
    ``Range`` request (a server that ignores it sends the whole file again). Returns ``dest``."""
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"facelearn/{__version__}",
                                                   **({"Range": f"bytes={offset}-"} if offset else {})})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: nothing left to send, the partial file is already complete
            raise DataError.at(url, None, f"HTTP {err.code} {err.reason}") from None
        part.replace(dest)
        return dest
    except (urllib.error.URLError, OSError) as err:
        raise DataError.at(url, None, f"cannot connect ({getattr(err, 'reason', err)}); check the network or "
                                      "pass --mirror") from None
    with response:
        if response.status != 206:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise DataError.at(url, None, f"download interrupted after {out.tell():,} bytes ({err}); run the "
                                              "same command again to resume") from None
    if total is not None and part.stat().st_size < total:
        raise DataError.at(url, None, f"download interrupted after {part.stat().st_size:,} of {total:,} bytes; run "
                                      "the same command again to resume")
    part.replace(dest)
    return dest


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(res: Resource, path: Path, source: Source, remove: bool = True) -> tuple[str, str]:
    """Check ``path`` against the SHA-256 given by the reader, else the registry's SHA-256 and published MD5;
    with trust-on-first-use and no SHA-256, against the published MD5 where there is one. A mismatching file
    is removed (when ``remove``). Returns (SHA-256 seen, how it was verified)."""
    seen = sha256_of(path)
    expected = (source.sha256 or res.sha256 or "").lower()
    md5 = None if source.sha256 else res.md5
    how = ("sha256 given by the reader" if source.sha256 else "sha256 of the registry" if res.sha256
           else "trusted on first use") + (", md5 of the publisher" if md5 else "")
    problem = None
    if expected and seen != expected:
        problem = f"SHA-256 {seen} does not match the expected {expected}"
    elif md5 and (got := _md5_of(path)) != md5:
        problem = f"MD5 {got} does not match the published {md5}"
    if problem:
        if remove:
            path.unlink()
        raise DataError.at(path, None, problem + ("; the file was removed" if remove else ""))
    return seen, how


def _members_inside(names: list[str], dest: Path, archive: Path) -> None:
    root = dest.resolve()
    for name in names:
        if not (root / name).resolve().is_relative_to(root):
            raise DataError.at(archive, None, f"member {name!r} would be written outside {dest}; refused")


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz`` into ``dest`` (created). Members outside
    ``dest``, links and devices are refused; an unreadable archive is a one-line :class:`DataError`."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                _members_inside(z.namelist(), dest, archive)
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                members = t.getmembers()
                _members_inside([m.name for m in members], dest, archive)
                odd = [m.name for m in members if not (m.isfile() or m.isdir())]
                if odd:
                    raise DataError.at(archive, None, f"member {odd[0]!r} is a link or device; refused")
                t.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError.at(archive, None, f"not a readable archive ({type(err).__name__}: {err})") from None


def _is_archive(filename: str) -> bool:
    return filename.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def fetch(name: str, source: Source = Source(), progress: bool = True, keep: bool = False) -> Path:
    """Install registry entry ``name`` under :func:`facelearn.runtime.data_dir` and return the path of its
    ``present`` file or folder: download (or take ``source.file``), verify, unpack, record. Does nothing when
    it is already present. Raises :class:`RequestOnly` for an entry that must be requested, ``ValueError``
    for an entry without a known hash (unless the reader gives one or trusts on first use) and
    :class:`DataError` for a failed download, a wrong hash or a bad archive."""
    res = REGISTRY[name]
    data = runtime.data_dir()
    target = data / res.present
    if target.exists():
        return target
    url = url_of(res, source.mirror)
    if source.file is None and url is None:
        raise RequestOnly(f"{name}: {res.title} cannot be downloaded by facelearn ({res.licence}); request "
                          f"{res.filename} at {res.request}, then run `facelearn fetch {name} --file "
                          f"{res.filename}` (or unpack it so that {target} exists)")
    if res.sha256 is None and source.sha256 is None and not source.trust_on_first_use:
        raise ValueError(f"{name}: the publisher gives no SHA-256 for {res.filename}; pass --sha256 HEX after "
                         "checking it, or --trust-on-first-use to record the hash this download has")
    local = Path(source.file) if source.file is not None else download(url, downloads_dir() / res.filename, progress)
    if source.file is not None and not local.is_file():
        raise FileNotFoundError(f"{local}: no such file")
    seen, how = verify(res, local, source, remove=source.file is None)
    if _is_archive(res.filename):
        try:
            unpack(local, data / res.folder)
        except DataError as err:
            if source.file is not None:
                raise
            local.unlink()
            raise DataError(f"{err}; removed it (run the same command to download it again)") from None
    else:  # a single file: copied (or moved) beside its final name, then renamed
        (data / res.folder).mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        if source.file is not None or keep:
            shutil.copyfile(local, part)
        else:
            local.replace(part)
        part.replace(target)
    if not target.exists():
        raise DataError.at(local, None, f"unpacked into {data / res.folder}, but {res.present} is missing: not "
                                        "the layout facelearn reads")
    (downloads_dir() / f"{name}.json").write_text(json.dumps(
        {"name": name, "file": res.filename, "sha256": seen, "verified_by": how, "from": str(source.file or url)},
        indent=2))
    if source.file is None and not keep and local.exists():
        local.unlink()
    return target


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def status() -> list[dict]:
    """One row per registry entry: ``name``, ``present``, ``where``, ``size`` (bytes of the ``present`` file
    or folder, 0 when absent), ``verified`` (how its hash was checked, from the fetch's record; ``"no
    record"`` for files put there by hand) and ``sha256``."""
    rows = []
    for res in REGISTRY.values():
        where = runtime.data_dir() / res.present
        record = record_of(res) if where.exists() else None
        rows.append({"name": res.name, "present": where.exists(), "where": str(where),
                     "size": _size(where) if where.exists() else 0,
                     "verified": record["verified_by"] if record else ("no record" if where.exists() else ""),
                     "sha256": record["sha256"] if record else None})
    return rows
