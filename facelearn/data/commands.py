"""``facelearn fetch`` and ``facelearn data``: the real data sets of the ``full`` recipes (book: "How to run it")."""

from __future__ import annotations

import argparse
import json
import re
import sys

from facelearn import cli_types
from facelearn.cli import common, subparser


def _fetch(args: argparse.Namespace) -> int:
    from facelearn import runtime
    from facelearn.data import download, fetch

    entries = download.expand(args.names)
    if args.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        raise ValueError(f"--sha256 must be 64 hexadecimal digits, got {args.sha256!r}")
    if (args.sha256 or args.file) and len(entries) > 1:
        raise ValueError("--sha256 and --file apply to one data set; name exactly one")
    source = fetch.Source(args.mirror, args.file, args.sha256, args.trust_on_first_use)
    unhashed = [r.name for r in entries if r.sha256 is None and not (args.sha256 or args.trust_on_first_use)
                and (args.file or fetch.url_of(r, args.mirror)) and not (runtime.data_dir() / r.present).exists()]
    if unhashed:  # said before anything is downloaded
        raise ValueError(f"{', '.join(unhashed)}: the publisher gives no SHA-256; pass --sha256 HEX after checking "
                         "it, or --trust-on-first-use to record the hash the download has")
    failed = 0
    for res in entries:
        try:
            where = fetch.fetch(res.name, source, progress=not args.no_progress, keep=args.keep)
        except fetch.RequestOnly as err:
            print(f"facelearn fetch: {err}", file=sys.stderr)
            failed += 1
            continue
        record = fetch.record_of(res)
        how = f"{record['verified_by']}, sha256 {record['sha256']}" if record else "present, no record of a check"
        print(f"{res.name}: {where} ({how})")
        if record and record["verified_by"].startswith("trusted on first use"):
            print(f"{res.name}: no published SHA-256 to check against; recorded the hash this copy has in "
                  f"{fetch.downloads_dir() / (res.name + '.json')}")
    return 1 if failed else 0


def _data(args: argparse.Namespace) -> int:
    from facelearn.data import fetch

    rows = fetch.status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        size = f"{r['size'] / 1e6:,.1f} MB" if r["present"] else "-"
        state = f"present  {size:>11}  {r['verified']:<28}" if r["present"] else f"absent   {size:>11}  {'':<28}"
        print(f"{r['name']:<{width}}  {state}  {r['where']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fetch`` and ``data`` as top-level commands."""
    from facelearn.data.download import GROUPS

    p = subparser(subparsers, "fetch",
                  "download, verify (SHA-256) and unpack real data sets into the layouts the loaders read; "
                  "resumes an interrupted download; does nothing for what is already there. Groups: "
                  + "; ".join(f"{g} = {' '.join(n)}" for g, n in GROUPS.items()),
                  "facelearn fetch widerface --trust-on-first-use\n  facelearn fetch wider_val --mirror "
                  "https://mirror.example.org/facelearn\n  facelearn fetch wflw_images --file ~/Downloads/"
                  "WFLW_images.tar.gz --sha256 HEX", _fetch)
    p.add_argument("names", nargs="+", metavar="NAME", help="registry entries or groups (see `facelearn data`)")
    p.add_argument("--mirror", default=None, metavar="URL",
                   help="base URL serving the files under their published names (default: $FACELEARN_MIRROR, "
                        "else the publisher's URL)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="the SHA-256 to check instead of the registry's")
    p.add_argument("--trust-on-first-use", action="store_true",
                   help="for an entry without a published SHA-256: accept this copy (checking the published MD5 "
                        "where there is one) and record its hash")
    p.add_argument("--file", default=None, metavar="PATH", type=cli_types.existing_file, help="a copy you downloaded yourself: verify and unpack it")
    p.add_argument("--keep", action="store_true", help="keep the downloaded archive after unpacking it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p = subparser(subparsers, "data", "the registry's data sets: present or not, where, how big, how verified",
                  "facelearn data --json", _data)
    common(p, "json")
