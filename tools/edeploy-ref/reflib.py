"""Shared helpers: bounded calls into the reference, stable JSON-Lines output.

Only the standard library and the reference package `hardware` (0.33) are used.
The reference is *called*, never copied.

Bounding a call
---------------
Every reference call runs under two limits:

* a deterministic work budget, counted in cost units: each inventory line
  offered to `hardware.matcher.match_spec` costs 1, each call of it 2 more
  (len(lines) + 2 per call) and each `_call_func` (a function test) costs 10. The matcher looks both up
  as module globals, so counting wrappers see every call, recursive retries
  included. One unit is 0.5 to 0.8 us of reference time (Python 3.11). Exceeding the budget
  raises `Budget`, recorded as {"timeout": true}.
* a wall-clock alarm (`signal.setitimer`), a backstop only: WALL_SECONDS.

The wrapper only counts; it passes arguments and results through unchanged.
"""

import json
import logging
import signal
import sys

import hardware.matcher as _matcher

# 0.5 to 0.8 s of reference time: every case stays well under the wall-clock
# backstop, so the backstop never decides and output stays reproducible.
WORK_BUDGET = 1000000
CALL_FUNC_COST = 10
WALL_SECONDS = 2.0

logging.disable(logging.CRITICAL)  # the reference logs to stderr otherwise


class Budget(Exception):
    """The work budget of one case is exhausted."""


class WallTimeout(Exception):
    """The wall-clock backstop fired."""


_ORIG_MATCH_SPEC = _matcher.match_spec
_ORIG_CALL_FUNC = _matcher._call_func
_left = [None]


def _spend(units):
    if _left[0] is not None:
        _left[0] -= units
        if _left[0] < 0:
            raise Budget()


def _counting_match_spec(spec, lines, *args, **kwargs):
    _spend(len(lines) + 2)
    return _ORIG_MATCH_SPEC(spec, lines, *args, **kwargs)


def _counting_call_func(*args, **kwargs):
    _spend(CALL_FUNC_COST)
    return _ORIG_CALL_FUNC(*args, **kwargs)


_matcher.match_spec = _counting_match_spec
_matcher._call_func = _counting_call_func


def _on_alarm(signum, frame):
    raise WallTimeout()


signal.signal(signal.SIGALRM, _on_alarm)

# cases decided by the wall clock rather than the budget (should stay empty:
# regen.py warns, as such cases could come out differently on another run)
WALL_HITS = []


def bounded(func, *args, budget=WORK_BUDGET):
    """Run func(*args) under the limits.

    Returns ("ok", value) | ("error", "<Type>: <msg>") | ("timeout", None).
    """
    _left[0] = budget
    signal.setitimer(signal.ITIMER_REAL, WALL_SECONDS)
    try:
        return ("ok", func(*args))
    except Budget:
        return ("timeout", None)
    except WallTimeout:
        WALL_HITS.append(repr(args)[:200])
        return ("timeout", None)
    except RecursionError as exc:  # keep the message, not the traceback
        return ("error", "%s: %s" % (type(exc).__name__, exc))
    except Exception as exc:  # noqa: BLE001 - we record whatever it raises
        return ("error", "%s: %s" % (type(exc).__name__, exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _left[0] = None


def dumps(obj):
    """One JSON line, keys in insertion order, non-ASCII kept as is."""
    return json.dumps(obj, sort_keys=False, ensure_ascii=False)


def json_safe(obj):
    """True when the JSON form of obj loses nothing (no tuples, str keys only)."""
    try:
        return json.loads(json.dumps(obj)) == obj and _no_tuples(obj)
    except (TypeError, ValueError):
        return False


def _no_tuples(obj):
    if isinstance(obj, tuple):
        return False
    if isinstance(obj, list):
        return all(_no_tuples(x) for x in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _no_tuples(v) for k, v in obj.items())
    return True


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(dumps(row))
            out.write("\n")


def log(msg):
    sys.stderr.write(msg + "\n")
