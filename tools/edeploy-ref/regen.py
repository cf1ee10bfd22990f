#!/usr/bin/env python3
"""Regenerate every reference fixture of rdeploy from eDeploy's reference
implementation (PyPI `hardware` 0.33). Run with the reference venv's Python:

    /opt/edeploy-ref/bin/python tools/edeploy-ref/regen.py

Writes (relative to the repository root):
    tests/fixtures/hw/*.json                      realistic inventories
    tests/fixtures/config/edeploy-example/        an eDeploy-style config dir
    tests/fixtures/edeploy-diff/match_all.jsonl   matcher cases + expected answers
    tests/fixtures/edeploy-diff/generate.jsonl    generate() cases + expected answers
    tests/fixtures/edeploy-diff/find_match.jsonl  config-dir upload scenarios

Deterministic: fixed seeds, a work budget instead of wall-clock timeouts; two
runs give byte-identical files (checked with --check).
"""

import argparse
import collections
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hardware  # noqa: E402

import config_example  # noqa: E402
import gen_find_match  # noqa: E402
import gen_generate  # noqa: E402
import gen_match_all  # noqa: E402
import inventories  # noqa: E402
import reflib  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
EXPECTED_REFERENCE = "0.33"


def _kind(expect):
    if isinstance(expect, list):
        return "list"
    if "match" in expect:
        return "match" if expect["match"] else "no-match"
    return next(iter(expect))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=FIX, help="fixtures root (default: tests/fixtures)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary dir and compare with --out")
    args = ap.parse_args()

    version = _reference_version()
    if not version.startswith(EXPECTED_REFERENCE):
        sys.exit("reference `hardware` %s found, %s expected" % (version, EXPECTED_REFERENCE))

    if args.check:
        import tempfile
        tmp = tempfile.mkdtemp(prefix="edeploy-ref-check-")
        generate_all(tmp)
        bad = _compare(tmp, args.out)
        import shutil
        shutil.rmtree(tmp)
        if bad:
            sys.exit("differs from %s: %s" % (args.out, ", ".join(bad)))
        print("fixtures up to date")
        return
    generate_all(args.out)


def generate_all(out):
    hw_dir = os.path.join(out, "hw")
    os.makedirs(hw_dir, exist_ok=True)
    for name, build in inventories.FIXTURES:
        with open(os.path.join(hw_dir, name + ".json"), "w", encoding="utf-8", newline="\n") as f:
            f.write(inventories.to_json_text(build(0)))
    config_example.write(os.path.join(out, "config", "edeploy-example"))

    diff = os.path.join(out, "edeploy-diff")
    os.makedirs(diff, exist_ok=True)
    for fname, module, key in (("match_all.jsonl", gen_match_all, "expect"),
                               ("generate.jsonl", gen_generate, "expect"),
                               ("find_match.jsonl", gen_find_match, None)):
        rows = module.all_rows()
        reflib.write_jsonl(os.path.join(diff, fname), rows)
        counts = collections.Counter()
        for row in rows:
            if key:
                counts[_kind(row[key])] += 1
            else:
                for res in row["results"]:
                    counts["profile" if "profile" in res else "failure-report" if "failure" in res
                           else _kind(res)] += 1
        summary = ", ".join("%s %d" % kv for kv in sorted(counts.items()))
        reflib.log("%-17s %5d rows (%s)" % (fname, len(rows), summary))
    if reflib.WALL_HITS:
        reflib.log("WARNING: %d case(s) were cut by the wall clock, not the work budget; "
                   "their answer may differ from run to run:" % len(reflib.WALL_HITS))
        for hit in reflib.WALL_HITS:
            reflib.log("  " + hit)


def _reference_version():
    try:
        from importlib.metadata import version
        return version("hardware")
    except Exception:  # noqa: BLE001
        return getattr(hardware, "__version__", "unknown")


def _digests(base):
    out = {}
    for d, _, files in os.walk(base):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, base)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _compare(new, old):
    a, b = _digests(new), _digests(old)
    return sorted(k for k in a if a[k] != b.get(k))


if __name__ == "__main__":
    main()
