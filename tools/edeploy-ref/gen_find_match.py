"""Scenarios for tests/fixtures/edeploy-diff/find_match.jsonl.

Each scenario is a config dir (state, <profile>.specs, <profile>.cmdb) and a
sequence of uploads, run the way eDeploy's upload CGI ran them, one at a time:

  State().load(dir)  ->  (failure report)  State.failed_profile(p), save() if it returned True
                     ->  (inventory)       State.find_match(hw); on success save()
                                           (the reference saves the CMDB itself);
                                           on an exception every file is restored
  ...unlock()

A CMDB written as generate({...}) is expanded here with hardware.generate
before the run (0.33 cannot read it; eDeploy's server expanded it): the case
keeps the original text and says "expanded": true.
"""

import ast
import os
import pprint
import random
import shutil
import tempfile

from hardware import generate as gen
from hardware import state as hstate

import config_example
import inventories
import reflib

SEED = 99173
N_RANDOM = 160
CFG = "<cfg_dir>"  # stands for the temporary config dir in error messages


# ---------------------------------------------------------------- running

def _is_generate(text):
    body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")).strip()
    return body.startswith("generate(") and body.endswith(")"), body


def _expand(text):
    _, body = _is_generate(text)
    model = ast.literal_eval(body[len("generate("):-1])
    return pprint.pformat(gen.generate(model)) + "\n"


def _snapshot(d):
    out = {}
    for name in sorted(os.listdir(d)):
        if name == "lock":
            continue
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


def _restore(d, snap):
    for name in os.listdir(d):
        if name != "lock" and name not in snap:
            os.unlink(os.path.join(d, name))
    for name, data in snap.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def run_scenario(sid, state_text, specs, cmdb, uploads):
    """specs: {profile: text | None (no file)}; cmdb: {profile: text};
    uploads: [(hw list | None, failure profile | None)]."""
    d = tempfile.mkdtemp(prefix="edeploy-ref-")
    try:
        with open(os.path.join(d, "state"), "w") as f:
            f.write(state_text)
        for prof, text in specs.items():
            if text is not None:
                with open(os.path.join(d, prof + ".specs"), "w") as f:
                    f.write(text)
        expanded = False
        for prof, text in cmdb.items():
            is_gen, _ = _is_generate(text)
            if is_gen:
                text = _expand(text)
                expanded = True
            with open(os.path.join(d, prof + ".cmdb"), "w") as f:
                f.write(text)
        results = []
        for hw, failure in uploads:
            snap = _snapshot(d)
            st = hstate.State()
            try:
                status, value = reflib.bounded(st.load, d)
                if status != "ok":
                    results.append(_err(status, value, d))
                    continue
                if failure is not None:
                    modified = st.failed_profile(failure)
                    if modified:
                        st.save()
                    results.append({"failure": failure, "modified": modified})
                    continue
                status, value = reflib.bounded(st.find_match, hw)
                if status == "ok":
                    name, var = value
                    st.save()
                    res = {"profile": name, "var": var}
                    if not reflib.json_safe(var):
                        res["var_repr"] = repr(var)
                    results.append(res)
                else:
                    _restore(d, snap)
                    results.append(_err(status, value, d))
            finally:
                st.unlock()
        row = {"id": sid, "state": state_text, "specs": specs, "cmdb": cmdb}
        if expanded:
            row["expanded"] = True
        row["uploads"] = [{"hw": repr(hw) if hw is not None else None, "failure": failure}
                          for hw, failure in uploads]
        row["results"] = results
        with open(os.path.join(d, "state")) as f:
            final_state_text = f.read()
        parsed = _literal(final_state_text)
        row["final_state"] = repr(parsed) if parsed is not None else None
        final_cmdb = {}
        files = {"state": final_state_text}
        for prof in cmdb:
            path = os.path.join(d, prof + ".cmdb")
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                files[prof + ".cmdb"] = text
                value = _literal(text)
                final_cmdb[prof] = value if reflib.json_safe(value) else repr(value)
            else:
                final_cmdb[prof] = None
        row["final_cmdb"] = final_cmdb
        row["final_files"] = files
        leftovers = sorted(set(os.listdir(d)) - {"state"} - {p + ".specs" for p in specs}
                           - {p + ".cmdb" for p in cmdb})
        if leftovers:
            row["extra_files"] = leftovers
        return row
    finally:
        shutil.rmtree(d)


def _err(status, value, d):
    if status == "timeout":
        return {"timeout": True}
    return {"error": value.replace(d, CFG)}


# ---------------------------------------------------------------- small machines

def vm(i, disk='20', link='yes', vendor='QEMU', extra=()):
    return [('system', 'product', 'vendor', vendor),
            ('system', 'product', 'serial', 'VM%03d' % i),
            ('disk', 'vda', 'size', disk),
            ('network', 'eth0', 'serial', '52:54:00:00:00:%02x' % i),
            ('network', 'eth0', 'link', link),
            ('system', 'ipmi', 'channel', 2)] + list(extra)


def mac(i):
    return '52:54:00:00:00:%02x' % i


SP_ANY_MAC = "[('system', 'product', 'vendor', 'QEMU'),\n ('network', '$eth', 'serial', '$mac')]\n"
SP_NOVAR = "# matches every QEMU guest, binds nothing\n[('system', 'product', 'vendor', 'QEMU')]\n"
SP_FORCED = "[('network', '$eth', 'serial', '$$mac')]\n"
SP_FORCED2 = "[('network', '$eth', 'serial', '$$mac'), ('system', 'product', 'serial', '$$serial')]\n"
SP_BIGDISK = "[('disk', '$disk', 'size', 'gt(50)')]\n"
SP_DELL = "[('system', 'product', 'vendor', 'Dell Inc.')]\n"
SP_RAISE = "[('system', 'product', 'vendor', 'gt(1)')]\n"
SP_SERIAL = "[('system', 'product', 'serial', '$serial'), ('disk', 'vda', 'size', '$size')]\n"
SP_CHANNEL = "[('system', 'ipmi', 'channel', '$channel')]\n"


def cm(entries):
    return pprint.pformat(entries) + "\n"


def hand_scenarios():
    S = []

    def add(sid, state, specs, cmdb, uploads):
        S.append(("hand/" + sid, state, specs, cmdb, uploads))

    up = lambda *ms: [(m, None) for m in ms]  # noqa: E731
    add("quota-counts-down-then-skipped", "[('a', 2), ('b', '*')]\n",
        {'a': SP_ANY_MAC, 'b': SP_NOVAR}, {}, up(vm(1), vm(2), vm(3), vm(4)))
    add("quota-zero-and-negative-skipped", "[('a', 0), ('b', -1), ('c', 1)]\n",
        {'a': SP_NOVAR, 'b': SP_NOVAR, 'c': SP_NOVAR}, {}, up(vm(1), vm(2)))
    add("star-never-decrements", "[('a', '*')]\n", {'a': SP_ANY_MAC}, {}, up(vm(1), vm(2), vm(3)))
    add("string-quota-rewritten-as-int", "[('a', '2'), ('b', '*')]\n",
        {'a': SP_ANY_MAC, 'b': SP_NOVAR}, {}, up(vm(1), vm(2), vm(3)))
    add("string-quota-zero", "[('a', '0'), ('b', '*')]\n", {'a': SP_NOVAR, 'b': SP_NOVAR}, {}, up(vm(1)))
    add("string-quota-blank", "[('a', ' 1'), ('b', '*')]\n", {'a': SP_NOVAR, 'b': SP_NOVAR}, {},
        up(vm(1), vm(2)))
    add("string-quota-not-a-number", "[('a', 'x'), ('b', '*')]\n", {'a': SP_NOVAR, 'b': SP_NOVAR}, {},
        up(vm(1)))
    add("float-quota", "[('a', 2.5)]\n", {'a': SP_NOVAR}, {}, up(vm(1), vm(2), vm(3)))
    add("star-string-other", "[('a', '**')]\n", {'a': SP_NOVAR}, {}, up(vm(1)))
    add("profile-listed-twice", "[('a', 1), ('b', 1), ('a', 1)]\n",
        {'a': SP_ANY_MAC, 'b': SP_DELL}, {}, up(vm(1), vm(2), vm(3)))
    add("profile-listed-twice-failure-gives-back-first", "[('a', 0), ('b', 1), ('a', 0)]\n",
        {'a': SP_ANY_MAC, 'b': SP_DELL}, {}, [(None, 'a'), (vm(1), None), (vm(2), None)])
    add("profile-listed-twice-error-lists-both", "[('a', 1), ('b', 0), ('a', '*')]\n",
        {'a': SP_DELL, 'b': SP_NOVAR}, {}, up(vm(1)))
    add("missing-specs-counts-as-available", "[('missing', 1), ('a', 1)]\n",
        {'missing': None, 'a': SP_DELL}, {}, up(vm(1)))
    add("missing-specs-only", "[('missing', 1)]\n", {'missing': None}, {}, up(vm(1)))
    add("unparsable-specs", "[('broken', 1), ('a', 1)]\n",
        {'broken': "[('system', 'product', 'vendor', 'QEMU')\n", 'a': SP_NOVAR}, {}, up(vm(1)))
    add("unparsable-specs-generate-call", "[('broken', 1), ('a', 1)]\n",
        {'broken': "generate([('a', 'b', 'c', 'd')])\n", 'a': SP_DELL}, {}, up(vm(1)))
    add("unparsable-specs-matches-unknown-line", "[('broken', '*'), ('a', '*')]\n",
        {'broken': "not python at all\n", 'a': SP_NOVAR}, {},
        up(vm(1, extra=[('<unknown>', '<unknown>', '<unknown>', '<unknown>')]), vm(2)))
    add("specs-empty-list-matches-all", "[('empty', 1), ('a', 1)]\n",
        {'empty': "[]\n", 'a': SP_NOVAR}, {}, up(vm(1), vm(2)))
    add("specs-empty-dict-matches-all", "[('d', 1)]\n", {'d': "{}\n"}, {}, up(vm(1)))
    add("specs-int-raises", "[('i', 1), ('a', 1)]\n", {'i': "42\n", 'a': SP_NOVAR}, {}, up(vm(1)))
    add("specs-three-tuples-raise", "[('t', 1), ('a', 1)]\n",
        {'t': "[('system', 'product', 'vendor')]\n", 'a': SP_NOVAR}, {}, up(vm(1)))
    add("specs-raising-function-aborts-upload", "[('r', 1), ('a', 1)]\n",
        {'r': SP_RAISE, 'a': SP_NOVAR}, {}, up(vm(1)))
    add("specs-raising-function-after-match", "[('a', 1), ('r', 1)]\n",
        {'r': SP_RAISE, 'a': SP_NOVAR}, {}, up(vm(1), vm(2)))
    add("specs-raising-on-int-channel", "[('r', 1), ('a', 1)]\n",
        {'r': "[('system', 'ipmi', 'channel', 'gt(1)')]\n", 'a': SP_NOVAR}, {}, up(vm(1)))
    add("no-more-role-available", "[('a', 1)]\n", {'a': SP_NOVAR}, {}, up(vm(1), vm(2)))
    add("empty-state", "[]\n", {}, {}, up(vm(1)))
    add("unparsable-state", "[('a', 1)\n", {'a': SP_NOVAR}, {}, up(vm(1)))
    add("state-with-comments", "# order matters\n[('a', 1),  # the first\n ('b', '*')]\n",
        {'a': SP_NOVAR, 'b': SP_NOVAR}, {}, up(vm(1), vm(2)))
    add("unable-to-match", "[('a', 1), ('b', '*')]\n", {'a': SP_DELL, 'b': SP_BIGDISK}, {}, up(vm(1)))
    # CMDB
    two = cm([{'hostname': 'h1', 'ip': '10.0.0.1'}, {'hostname': 'h2', 'ip': '10.0.0.2'}])
    add("cmdb-allocates-in-order", "[('a', '*')]\n", {'a': SP_ANY_MAC}, {'a': two}, up(vm(1), vm(2)))
    add("cmdb-exhausted-nothing-written", "[('a', '*'), ('b', '*')]\n",
        {'a': SP_ANY_MAC, 'b': SP_NOVAR}, {'a': two}, up(vm(1), vm(2), vm(3)))
    add("cmdb-exhausted-quota-not-decremented", "[('a', 5), ('b', '*')]\n",
        {'a': SP_ANY_MAC, 'b': SP_NOVAR}, {'a': cm([{'hostname': 'h1'}])}, up(vm(1), vm(2)))
    add("cmdb-same-machine-twice-gets-own-entry", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': two}, up(vm(1), vm(2), vm(1), vm(2), vm(1)))
    add("cmdb-changed-machine-gets-new-entry", "[('a', '*')]\n", {'a': SP_SERIAL},
        {'a': cm([{'hostname': 'h%d' % i} for i in range(1, 4)])}, up(vm(1), vm(1, disk='40'), vm(1)))
    add("cmdb-no-variable-always-entry-0", "[('a', '*')]\n", {'a': SP_NOVAR},
        {'a': two}, up(vm(1), vm(2), vm(3)))
    add("cmdb-forced-found", "[('a', '*')]\n", {'a': SP_FORCED},
        {'a': cm([{'mac': mac(2), 'hostname': 'h2'}, {'mac': mac(1), 'hostname': 'h1'}])},
        up(vm(1), vm(2), vm(1)))
    add("cmdb-forced-not-found", "[('a', '*'), ('b', '*')]\n", {'a': SP_FORCED, 'b': SP_NOVAR},
        {'a': cm([{'mac': mac(2), 'hostname': 'h2'}])}, up(vm(1), vm(2)))
    add("cmdb-forced-case-sensitive", "[('a', '*')]\n", {'a': SP_FORCED},
        {'a': cm([{'mac': mac(0xab).upper(), 'hostname': 'hx'}])}, up(vm(0xab)))
    add("cmdb-forced-two-keys", "[('a', '*')]\n", {'a': SP_FORCED2},
        {'a': cm([{'mac': mac(1), 'serial': 'VM999', 'hostname': 'wrong'},
                  {'mac': mac(1), 'serial': 'VM001', 'hostname': 'right'}])}, up(vm(1)))
    add("cmdb-forced-entry-already-used", "[('a', '*')]\n", {'a': SP_FORCED},
        {'a': cm([{'mac': mac(1), 'hostname': 'h1', 'used': 1}])}, up(vm(1)))
    add("cmdb-empty-list-is-no-cmdb", "[('a', '*')]\n", {'a': SP_ANY_MAC}, {'a': "[]\n"}, up(vm(1)))
    add("cmdb-unparsable-is-no-cmdb", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': "[{'hostname': 'h1',}\n"}, up(vm(1)))
    add("cmdb-dict-raises", "[('a', '*')]\n", {'a': SP_ANY_MAC}, {'a': "{'hostname': 'h1'}\n"}, up(vm(1)))
    add("cmdb-used-zero-counts-as-used", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': cm([{'hostname': 'h1', 'used': 0}, {'hostname': 'h2'}])}, up(vm(1)))
    add("cmdb-used-entry-reused-when-vars-match", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': cm([{'hostname': 'h1', 'eth': 'eth0', 'mac': mac(1), 'used': 1}, {'hostname': 'h2'}])},
        up(vm(1), vm(2)))
    add("cmdb-entry-with-other-value-skipped", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': cm([{'hostname': 'h1', 'mac': mac(9)}, {'hostname': 'h2'}])}, up(vm(1), vm(9)))
    add("cmdb-variables-win-over-entry", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': cm([{'hostname': 'h1', 'eth': 'ethX'}])}, up(vm(1)))
    add("cmdb-int-var-vs-string-entry", "[('a', '*')]\n", {'a': SP_CHANNEL},
        {'a': cm([{'channel': '2', 'hostname': 'h1'}, {'hostname': 'h2'}])}, up(vm(1), vm(2)))
    add("cmdb-int-var-vs-int-entry", "[('a', '*')]\n", {'a': SP_CHANNEL},
        {'a': cm([{'channel': 2, 'hostname': 'h1'}, {'hostname': 'h2'}])}, up(vm(1)))
    add("cmdb-only-first-matching-profile", "[('a', '*'), ('b', '*')]\n",
        {'a': SP_ANY_MAC, 'b': SP_ANY_MAC}, {'a': cm([]) , 'b': two}, up(vm(1)))
    add("cmdb-dollar2-leftover-key-saved", "[('a', '*')]\n",
        {'a': "[('network', '$eth', 'serial', '$$mac'), ('network', '$eth', 'link', 'yes')]\n"},
        {'a': cm([{'mac': '52:54:00:00:00:02', 'hostname': 'h2'}])},
        up([('network', 'eth0', 'serial', mac(1)), ('network', 'eth1', 'serial', mac(2)),
            ('network', 'eth1', 'link', 'yes')]))
    add("cmdb-generate-small", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': "generate({'hostname': 'node1-3', 'ip': '10.0.0.11-13', 'gw': '10.0.0.1'})\n"},
        up(vm(1), vm(2), vm(3), vm(4), vm(2)))
    add("cmdb-generate-with-comment-header", "[('a', '*')]\n", {'a': SP_ANY_MAC},
        {'a': "# nodes\ngenerate({'hostname': ['alpha', 'beta']})\n"}, up(vm(1), vm(2)))
    add("cmdb-generate-forced-macs", "[('a', '*')]\n", {'a': SP_FORCED},
        {'a': "generate({'mac': ['%s', '%s'], 'hostname': 'n1-2'})\n" % (mac(2), mac(1))},
        up(vm(1), vm(3), vm(2)))
    # failure reports
    add("failure-gives-quota-back", "[('a', 1), ('b', '*')]\n", {'a': SP_ANY_MAC, 'b': SP_NOVAR}, {},
        [(vm(1), None), (vm(2), None), (None, 'a'), (vm(3), None)])
    add("failure-on-star-changes-nothing", "[('a', '*')]\n", {'a': SP_NOVAR}, {},
        [(None, 'a'), (vm(1), None)])
    add("failure-unknown-profile", "[('a', 1)]\n", {'a': SP_NOVAR}, {}, [(None, 'zzz'), (vm(1), None)])
    add("failure-string-quota", "[('a', '0')]\n", {'a': SP_NOVAR}, {}, [(None, 'a'), (vm(1), None)])
    add("failure-then-same-machine-gets-own-entry", "[('a', 1)]\n", {'a': SP_ANY_MAC}, {'a': two},
        [(vm(1), None), (None, 'a'), (vm(1), None), (None, 'a'), (vm(2), None)])
    return S


# ---------------------------------------------------------------- the example config dir

def example_scenarios():
    F = config_example.FILES
    specs = {p: F[p + '.specs'] for p in ('hp', 'dell', 'vm')}
    cmdb = {'hp': F['hp.cmdb'], 'dell': F['dell.cmdb']}
    hp = inventories.hp_dl360_gen9
    dell = inventories.dell_r630
    kvm = inventories.kvm_guest
    S = []
    S.append(("example/full-rollout", F['state'], specs, cmdb, [
        (hp(0), None), (hp(1), None), (dell(0), None), (kvm(0), None), (hp(2), None),
        (dell(0, nics_up=2), None), (dell(1), None), (hp(3), None), (hp(4), None),
        (kvm(1, i440fx=True), None), (kvm(0), None), (None, 'hp'), (hp(4), None),
        (None, 'hp'), (hp(0), None), (None, 'dell'), (dell(1), None), (dell(0), None),
    ]))
    S.append(("example/dell-unknown-serial", F['state'], specs, cmdb, [
        (dell(5), None), (dell(0), None),
    ]))
    S.append(("example/vm-only", F['state'], specs, cmdb,
              [(kvm(i, i440fx=bool(i % 2)), None) for i in range(4)]))
    return S


# ---------------------------------------------------------------- random

SPEC_POOL = [SP_ANY_MAC, SP_NOVAR, SP_FORCED, SP_BIGDISK, SP_DELL, SP_SERIAL, SP_CHANNEL,
             "[('network', 'eth0', 'link', 'yes'), ('disk', '$disk', 'size', '$size=ge(20)')]\n",
             "[('system', 'product', 'serial', 'regexp(^VM00)'), ('network', '$eth', 'serial', '$mac')]\n",
             "[('network', '$eth', 'link', 'no')]\n",
             None, "[('broken'\n"]


def random_scenarios():
    rng = random.Random(SEED)
    out = []
    for n in range(N_RANDOM):
        nprof = rng.randint(1, 4)
        profiles = ['p%d' % i for i in range(nprof)]
        state = []
        for p in profiles:
            q = rng.choice([0, 1, 1, 2, 3, '*', '*', '2'])
            state.append((p, q))
        if rng.random() < 0.15:
            state.append((rng.choice(profiles), rng.choice([1, '*'])))
        specs = {p: rng.choice(SPEC_POOL) for p in profiles}
        cmdb = {}
        for p in profiles:
            r = rng.random()
            if r < 0.45:
                continue
            k = rng.randint(0, 4)
            entries = []
            for j in range(k):
                e = {'hostname': 'host%02d' % j, 'ip': '10.0.%d.%d' % (n % 200, j + 10)}
                if rng.random() < 0.35:
                    e['mac'] = mac(rng.randint(1, 8))
                if rng.random() < 0.15:
                    e['used'] = rng.choice([1, 0])
                entries.append(e)
            if rng.random() < 0.15:
                cmdb[p] = "generate({'hostname': 'gen1-%d', 'ip': '10.9.0.1-%d'})\n" % (k + 1, k + 1)
            else:
                cmdb[p] = cm(entries)
        uploads = []
        for _ in range(rng.randint(2, 7)):
            if rng.random() < 0.12:
                uploads.append((None, rng.choice(profiles + ['nope'])))
            else:
                i = rng.randint(1, 8)
                uploads.append((vm(i, disk=rng.choice(['20', '80']), link=rng.choice(['yes', 'yes', 'no']),
                                   vendor=rng.choice(['QEMU', 'QEMU', 'Dell Inc.'])), None))
        out.append(("rand/%03d" % n, pprint.pformat(state) + "\n", specs, cmdb, uploads))
    return out


def all_rows():
    rows = []
    for sid, state, specs, cmdb, uploads in hand_scenarios() + example_scenarios() + random_scenarios():
        rows.append(run_scenario(sid, state, specs, cmdb, uploads))
    return rows
