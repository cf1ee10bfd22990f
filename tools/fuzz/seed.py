#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the repository's fixtures and examples.

Usage: tools/fuzz/seed.py [OUT_DIR]   (default: fuzz/corpus)

Each seed is named by the SHA-1 of its content, as libFuzzer names what it adds, so
seeding twice adds nothing. tools/fuzz/run.sh runs this for a target whose corpus is
missing; the committed corpus is these seeds after `cargo fuzz cmin` plus what runs found.
"""

import ast
import glob
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
MAX_SEED = 16 * 1024


def files(*patterns):
    out = []
    for p in patterns:
        out.extend(sorted(glob.glob(os.path.join(ROOT, p), recursive=True)))
    return [f for f in out if "/target/" not in f]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def jsonl(name):
    path = os.path.join(ROOT, "tests", "fixtures", "edeploy-diff", name)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def to_json_text(python_text):
    """A Python-literal file as JSON (tuples become arrays), or None."""
    try:
        value = ast.literal_eval(python_text)
        return json.dumps(value, indent=1)
    except (ValueError, SyntaxError, TypeError, RecursionError):
        return None


class Seeds:
    def __init__(self):
        self.by_target = {}

    def add(self, target, data, limit=None):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if data is None or len(data) > MAX_SEED:
            return
        seeds = self.by_target.setdefault(target, {})
        if limit is not None and len(seeds) >= limit:
            return
        seeds[hashlib.sha1(data).hexdigest()] = data

    def write(self):
        for target, seeds in sorted(self.by_target.items()):
            d = os.path.join(OUT, target)
            os.makedirs(d, exist_ok=True)
            for name, data in seeds.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            print(f"{target}: {len(seeds)} seeds")


def multipart(fields, boundary="------------------------rdeployfuzz"):
    body = b""
    for name, filename, data in fields:
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename:
            disp += f'; filename="{filename}"'
        body += f"--{boundary}\r\n{disp}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}\n".encode() + body


def main():
    s = Seeds()
    specs = [read(f) for f in files("tests/fixtures/**/*.specs", "examples/**/*.specs")]
    cmdbs = [read(f) for f in files("tests/fixtures/**/*.cmdb", "examples/**/*.cmdb")]
    states = [read(f) for f in files("tests/fixtures/**/state", "examples/**/state")]
    hws = [read(f) for f in files("tests/fixtures/hw/*.json", "examples/hw/*.json")]
    jsons = [read(f) for f in files("tests/fixtures/**/*.json", "configure/examples/*.json")]
    match_all = jsonl("match_all.jsonl")
    find_match = jsonl("find_match.jsonl")
    generate = jsonl("generate.jsonl")

    for t in specs:
        s.add("specs_python", t)
        s.add("specs_json", to_json_text(t.decode("utf-8", "replace")))
    for case in match_all[::25]:
        s.add("specs_python", case["specs"])
        s.add("specs_json", to_json_text(case["specs"]))
        s.add("inventory", case["hw"])
    for t in jsons:
        s.add("specs_json", t)
    for t in hws:
        s.add("inventory", t)
        s.add("specs_json", t)
        py = ast.literal_eval(t.decode())
        s.add("inventory", repr([tuple(x) for x in py]))

    for t in cmdbs:
        s.add("cmdb", t)
    for t in states:
        s.add("state", t)
    for case in find_match:
        if "state" in case:
            s.add("state", case["state"])
        for text in case.get("cmdb", {}).values():
            s.add("cmdb", text)
        for text in case.get("specs", {}).values():
            s.add("specs_python", text, limit=300)
        for up in case.get("uploads", [])[:1]:
            s.add("inventory", up["hw"], limit=200)
    for case in generate[::4]:
        model = case["model"]
        s.add("generate", b"\x01" + model.encode())
        s.add("cmdb", f"generate({model})", limit=200)
    # Range models (mode 0): keys' values over the range alphabet, 0xff between keys.
    for raw in [b"\x00\x01\x0b\x02", b"\x01\x00\x0b\x09\xff\x0c", b"\x05\x0c\x05\x0c\x05\x0d\x01\x0b\x02\x05\x00"]:
        s.add("generate", b"\x00" + raw)

    # Upload bodies: the Content-Type line, then the body.
    kvm = read(os.path.join(ROOT, "examples", "hw", "kvm.json"))
    s.add("upload_form", multipart([("file", "hw.json", kvm)]))
    s.add("upload_form", multipart([("file", "hw.json", kvm), ("failure", None, b"vm")]))
    s.add("upload_form", multipart([("session", None, b"x"), ("name", None, b"n"), ("file", "hw.py", b"[('disk', 'sda', 'size', '10')]")]))
    s.add("upload_form", multipart([("file", "install.log.gz", b"\x1f\x8b\x08\x00rest")]))
    s.add("upload_form", multipart([("failure", None, b" kvm\n")]))
    s.add("upload_form", b"\n" + kvm)
    s.add("upload_form", b"application/json\n[]")
    s.add("upload_form", b"multipart/form-data\n")
    s.add("upload_form", b'multipart/form-data; boundary="a b"\n--a b\r\nContent-Disposition: form-data; name="file"\r\n\r\n[]\r\n--a b--\r\n')

    for t in [
        "52:54:00:12:34:56", "52-54-00-AA-BB-CC", "525400aabbcc", "5254.00aa.bbcc",
        "01-52-54-00-12-34-56", "zz:54:00:aa:bb:cc", "10.0.0.1", "10.34", "192.168.122.255",
        "256.1.1.1", "10..1", "::ffff:10.0.0.9", "fe80::1", "node-1.example", "../../etc",
        "ProLiantDL360Gen91234-CZ3404-52-54-00-AA-bb-cc",
    ]:
        s.add("mac_address", t)

    scripts = files("configure/examples/*.configure", "examples/**/*.configure",
                    "tests/fixtures/**/*.rhai", "tests/fixtures/console/**/*.configure",
                    "tests/fixtures/pxe-tests/**/*.configure")
    for f in scripts:
        t = read(f)
        if b"-*- python" in t:  # eDeploy's Python originals
            continue
        s.add("configure_script", b"\x00" + t)
    # Token soup (mode 2) and API statements (mode 3).
    s.add("configure_script", b"\x02" + bytes(range(0, 160, 3)))
    for i in range(32):
        s.add("configure_script", b"\x03" + bytes([i, (i * 7) % 256, (i * 13) % 256, 40 + i, 3, 9, 1, 2, 3, 4]))
    s.write()


if __name__ == "__main__":
    main()
