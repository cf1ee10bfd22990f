#!/usr/bin/env python3
"""Times eDeploy's matcher (PyPI hardware 0.33) on the inputs of specs/benches/match.rs.

Run with the reference venv (see tools/edeploy-ref/README.md):
    /opt/edeploy-ref/bin/python tools/bench/python_matcher.py
"""
import ast
import json
import os
import timeit

from hardware import matcher

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
hw = [tuple(x) for x in json.load(open(os.path.join(ROOT, "tests/fixtures/hw/dell-r630.json")))]
specs_text = open(os.path.join(ROOT, "specs/benches/dell-r630.specs")).read()
specs = ast.literal_eval(specs_text)
failing = ast.literal_eval(specs_text.replace(
    "('firmware', 'bios', 'version', '$bios')", "('firmware', 'bios', 'version', '9.9.9')"))


def once(s):
    return matcher.match_all(hw, s, {}, {})


import signal


def on_alarm(*_):
    raise TimeoutError


assert once(specs)
best = min(timeit.repeat(lambda: once(specs), number=200, repeat=5)) / 200
print("python match_all dell-r630 (match): %.1f us" % (best * 1e6))
signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(60)
try:
    start = timeit.default_timer()
    once(failing)
    print("python match_all dell-r630 (last spec fails): %.1f s" % (timeit.default_timer() - start))
except TimeoutError:
    print("python match_all dell-r630 (last spec fails): did not finish in 60 s")
