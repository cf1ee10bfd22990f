"""Shared helpers: bounded calls into the reference, stable JSON-Lines output.

Only the standard library and the reference package `hardware` (0.33) are used.
The reference is *called*, never copied.

Bounding a call
---------------
Every reference call runs under two limits:

* a deterministic work budget: the number of inventory lines offered to
  `hardware.matcher.match_spec` (len(lines) + 1 per call) during one case.
  The matcher looks `match_spec` up as a module global, so a counting wrapper
  sees every call, recursive retries included. Exceeding the budget raises
  `Budget`, recorded as {"timeout": true}.  This keeps the
  fixtures byte-identical from one run to the next, whatever the machine speed.
* a wall-clock alarm (`signal.setitimer`), a backstop only: WALL_SECONDS.

The wrapper only counts; it passes arguments and results through unchanged.
"""

import json
import logging
import signal
import sys

import hardware.matcher as _matcher

# a line costs 0.4 us (literal spec) to 10 us (a function in every element);
# this budget keeps every case under the wall-clock backstop on an ordinary
# machine, so the backstop never decides (and output stays reproducible).
MATCH_SPEC_BUDGET = 150000
WALL_SECONDS = 2.0

logging.disable(logging.CRITICAL)  # the reference logs to stderr otherwise


class Budget(Exception):
    """The work budget of one case is exhausted."""


class WallTimeout(Exception):
    """The wall-clock backstop fired."""


_ORIG_MATCH_SPEC = _matcher.match_spec
_left = [None]


def _counting_match_spec(spec, lines, *args, **kwargs):
    if _left[0] is not None:
        _left[0] -= len(lines) + 1
        if _left[0] < 0:
            raise Budget()
    return _ORIG_MATCH_SPEC(spec, lines, *args, **kwargs)


_matcher.match_spec = _counting_match_spec


def _on_alarm(signum, frame):
    raise WallTimeout()


signal.signal(signal.SIGALRM, _on_alarm)


def bounded(func, *args, budget=MATCH_SPEC_BUDGET):
    """Run func(*args) under the limits.

    Returns ("ok", value) | ("error", "<Type>: <msg>") | ("timeout", None).
    """
    _left[0] = budget
    signal.setitimer(signal.ITIMER_REAL, WALL_SECONDS)
    try:
        return ("ok", func(*args))
    except (Budget, WallTimeout):
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
