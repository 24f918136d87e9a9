"""``facelearn fetch`` / ``facelearn data`` against a local mirror on 127.0.0.1 serving SynthFace packed as the
real archives: verify, refuse a wrong hash, resume, unpack into the loaders' layout, idempotence, one-line
errors. No test touches the internet."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import zipfile

import pytest
from fetch_server import Mirror

from facelearn import cli, runtime
from facelearn.data import download, fetch
from facelearn.data.download import sha256_of
from facelearn.data.synthface import export_identities, export_widerface
from facelearn.data.synthface.archives import pack_identities, pack_widerface
from facelearn.errors import DataError


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("archives")
    export_widerface(root / "w", n_train=2, n_val=2, image_size=96, seed=3, progress=False)
    export_identities(root / "i", n_identities=2, images_per_identity=2, n_test_identities=20, image_size=112,
                      seed=3, progress=False)
    files = {**pack_widerface(root / "w", root / "mirror"), **pack_identities(root / "i", root / "mirror")}
    (root / "corrupt").mkdir()
    (root / "corrupt" / "WIDER_val.zip").write_bytes(b"PK\x03\x04 this is not a zip archive" * 40)
    return root, files


@pytest.fixture
def mirror(archives):
    with Mirror(archives[0] / "mirror", lifetime_s=120) as m:
        yield m


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELEARN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACELEARN_MIRROR", raising=False)


def _digest(archives, name):
    return sha256_of(archives[1][name])


def test_every_entry_has_a_licence_a_source_and_a_hash_or_a_reason():
    for res in download.REGISTRY.values():
        assert res.licence and res.hash_source and res.present.startswith(res.folder)
        assert res.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", res.sha256), res.name
        assert res.url is not None or res.request, res.name
        if res.sha256 is None:
            assert "--sha256" in res.hash_source or "sha256" in res.hash_source.lower(), res.name
    assert [r.name for r in download.expand(["widerface", "wider_train"])] == list(download.GROUPS["widerface"])
    with pytest.raises(ValueError, match="unknown data set 'nope'; known: widerface"):
        download.expand(["nope"])


def test_fetch_verifies_unpacks_and_is_idempotent(archives, mirror):
    source = fetch.Source(mirror.url, sha256=_digest(archives, "WIDER_val.zip"))
    where = fetch.fetch("wider_val", source, progress=False)
    assert where == runtime.data_dir() / "widerface" / "WIDER_val" / "images" and any(where.rglob("*.jpg"))
    assert not (fetch.downloads_dir() / "WIDER_val.zip").exists()  # unpacked, then removed
    assert fetch.record_of(download.REGISTRY["wider_val"])["verified_by"] == "sha256 given by the reader"
    requests = len(mirror.ranges)
    assert fetch.fetch("wider_val", source, progress=False) == where and len(mirror.ranges) == requests
    row = next(r for r in fetch.status() if r["name"] == "wider_val")
    assert row["present"] and row["size"] > 0 and row["verified"] == "sha256 given by the reader"


def test_a_wrong_hash_is_refused_and_the_file_removed(archives, mirror):
    # the registry holds the real archive's SHA-256, which the SynthFace archive does not have
    with pytest.raises(DataError, match=r"WIDER_val.zip: SHA-256 [0-9a-f]{64} does not match the expected "
                                        + download.REGISTRY["wider_val"].sha256 + "; the file was removed"):
        fetch.fetch("wider_val", fetch.Source(mirror.url), progress=False)
    assert not list(fetch.downloads_dir().iterdir())
    assert not (runtime.data_dir() / "widerface").exists()


def test_the_published_md5_is_checked_too(archives, mirror, monkeypatch):
    res = download.REGISTRY["retinaface_gt"]
    monkeypatch.setitem(download.REGISTRY, res.name, dataclasses.replace(res, md5="0" * 32))
    with pytest.raises(DataError, match=r"retinaface_gt_v1.1.zip: MD5 [0-9a-f]{32} does not match the published 0{32}"):
        fetch.fetch(res.name, fetch.Source(mirror.url, trust_on_first_use=True), progress=False)
    md5 = hashlib.md5(archives[1]["retinaface_gt_v1.1.zip"].read_bytes()).hexdigest()
    monkeypatch.setitem(download.REGISTRY, res.name, dataclasses.replace(res, md5=md5))
    fetch.fetch(res.name, fetch.Source(mirror.url, trust_on_first_use=True), progress=False)
    assert fetch.record_of(res)["verified_by"] == "trusted on first use, md5 of the publisher"


def test_an_interrupted_download_resumes_with_a_range_request(archives, mirror):
    source = fetch.Source(mirror.url, sha256=_digest(archives, "WIDER_train.zip"))
    mirror.cut["WIDER_train.zip"] = 1000
    with pytest.raises(DataError, match="interrupted after 1,000 .*run the same command again to resume"):
        fetch.fetch("wider_train", source, progress=False)
    part = fetch.downloads_dir() / "WIDER_train.zip.part"
    assert part.stat().st_size == 1000 and not (fetch.downloads_dir() / "WIDER_train.zip").exists()
    fetch.fetch("wider_train", source, progress=False)
    assert mirror.ranges[-2:] == [("WIDER_train.zip", None), ("WIDER_train.zip", "bytes=1000-")]
    assert any((runtime.data_dir() / "widerface" / "WIDER_train" / "images").rglob("*.jpg")) and not part.exists()


def test_trust_on_first_use_records_the_hash_and_says_so(archives, mirror, capsys):
    assert cli.main(["fetch", "retinaface_gt", "--mirror", mirror.url]) == 2
    assert "the publisher gives no SHA-256" in capsys.readouterr().err
    assert cli.main(["fetch", "retinaface_gt", "--mirror", mirror.url, "--trust-on-first-use", "--no-progress"]) == 0
    out = capsys.readouterr().out
    digest = _digest(archives, "retinaface_gt_v1.1.zip")
    assert f"trusted on first use, sha256 {digest}" in out and "recorded the hash" in out
    assert (runtime.data_dir() / "widerface" / "val" / "label.txt").is_file()
    assert json.loads((fetch.downloads_dir() / "retinaface_gt.json").read_text())["sha256"] == digest


def test_a_corrupt_archive_gives_one_line_naming_it(archives, capsys):
    bad = archives[0] / "corrupt" / "WIDER_val.zip"
    with Mirror(bad.parent, lifetime_s=60) as m:
        assert cli.main(["fetch", "wider_val", "--mirror", m.url, "--sha256", sha256_of(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WIDER_val.zip: not a readable archive" in err and "removed it" in err
    assert not list(fetch.downloads_dir().iterdir())


def test_a_group_says_what_lacks_a_hash_before_downloading_anything(mirror, capsys):
    assert cli.main(["fetch", "widerface", "--mirror", mirror.url]) == 2
    assert "retinaface_gt: the publisher gives no SHA-256" in capsys.readouterr().err and not mirror.ranges


def test_request_only_entries_say_where_to_request_and_where_to_put(capsys):
    assert cli.main(["fetch", "ms1mv2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "request faces_emore.zip at https://github.com/deepinsight/insightface" in err
    assert str(runtime.data_dir() / "faces_emore" / "train.rec") in err


def test_a_local_copy_is_verified_and_unpacked(archives):
    where = fetch.fetch("ms1mv2", fetch.Source(file=archives[1]["faces_emore.zip"], trust_on_first_use=True))
    assert where.is_file() and (where.parent / "lfw.bin").is_file() and archives[1]["faces_emore.zip"].is_file()
    assert fetch.fetch("lfw", fetch.Source(file=archives[1]["lfw.bin"], trust_on_first_use=True)) == where.parent / "lfw.bin"


def test_members_outside_the_target_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match=r"evil.zip: member '../evil.txt' would be written outside"):
        fetch.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_cli_errors_are_one_line(capsys):
    assert cli.main(["fetch", "nope"]) == 2
    assert cli.main(["fetch", "wider_val", "--sha256", "abc"]) == 2
    assert cli.main(["fetch", "widerface", "--sha256", "0" * 64]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "unknown data set 'nope'" in err[0] and "64 hexadecimal digits" in err[1]
    assert "apply to one data set" in err[2]


def test_data_lists_every_entry(capsys):
    assert cli.main(["data", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(download.REGISTRY) and not any(r["present"] for r in rows)


def test_every_fetch_command_in_the_book_names_a_known_data_set():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    texts = {p.name: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"]
                                if c["cell_type"] == "markdown") for p in sorted((root / "notebooks").glob("*.ipynb"))}
    texts["how_to_run.md"] = (root / "book" / "how_to_run.md").read_text()
    named = {(where, name) for where, text in texts.items()
             for name in re.findall(r"facelearn fetch ((?:[a-z0-9_]+ ?)+)", text) for name in name.split()}
    assert {"12_training_retinaface.ipynb", "22_cosface_arcface.ipynb", "30_pfld.ipynb"} <= {w for w, _ in named}
    unknown = [(w, n) for w, n in named if n not in download.REGISTRY and n not in download.GROUPS]
    assert not unknown, unknown
