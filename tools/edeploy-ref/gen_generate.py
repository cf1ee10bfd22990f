"""Cases for tests/fixtures/edeploy-diff/generate.jsonl (hardware.generate.generate)."""

import copy
import itertools
import random

from hardware import generate as gen

import reflib

SEED = 7141
N_RANDOM = 600
LIMIT = 2000  # no case may expand to more entries than this


def size_class(model):
    """'infinite' when nothing bounds the output (16387064 entries), 'large'
    when the shortest sequence is longer than LIMIT, else None.

    Uses the reference's own generators (islice-bounded) to count."""
    if not isinstance(model, dict):
        return None
    if all(isinstance(v, str) and not gen._RANGE_REGEXP.search(v) for v in model.values()):
        return None  # returned as is
    finite = []
    for value in model.values():
        if isinstance(value, list):
            finite.append(len(value))
        elif isinstance(value, str) and gen._RANGE_REGEXP.search(value):
            it = gen._generate_values(value)
            try:
                finite.append(sum(1 for _ in itertools.islice(it, LIMIT + 1)))
            except Exception:  # noqa: BLE001 - generate() itself will raise: run it
                finite.append(0)
    if not finite:
        return "infinite"
    if min(finite) > LIMIT:
        return "large"
    return None


def run_case(case_id, model):
    row = {"id": case_id, "model": repr(model)}
    cls = size_class(model)
    if cls == "infinite":
        row["expect"] = {"skipped": "infinite"}
        return row
    if cls == "large":
        raise ValueError("%s: more than %d entries, keep cases small" % (case_id, LIMIT))
    status, value = reflib.bounded(gen.generate, copy.deepcopy(model))
    if status == "ok":
        row["expect"] = value
        if not reflib.json_safe(value):
            row["expect_repr"] = repr(value)
    elif status == "error":
        row["expect"] = {"error": value}
    else:
        row["expect"] = {"timeout": True}
    return row


HAND = [
    # the upstream unit-test models (hardware/tests/test_generate.py)
    ("upstream/norange", {'gw': '192.168.1.1'}),
    ("upstream/generate", {'gw': '192.168.1.1', 'ip': '192.168.1.10-12', 'hostname': 'host10-12'}),
    ("upstream/with-zeros", {'gw': '192.168.1.1', 'ip': '192.168.1.1-6', 'hostname': 'ceph001-006'}),
    ("upstream/253", {'hostname': '10.0.1-2.2-254'}),
    ("upstream/invalid", {'hostname': '10.0.1-2.2-254', 'version': 'D7-H.1.0.0'}),
    ("upstream/list", {'hostname': ['hosta', 'hostb', 'hostc']}),
    ("upstream/none", {'gateway': '10.66.6.1', 'ip': '10.66.6.100', 'netmask': '255.255.255.0',
                       'gateway-ipmi': '10.66.6.1', 'ip-ipmi': '10.66.6.110',
                       'netmask-ipmi': '255.255.255.0', 'hostname': 'hp-grid'}),
    ("upstream/tuple", {'hostname': 'node1-2', 'logical_disks': (
        {'size_gb': 50, 'raid_level': '1+0', 'disk_type': 'hdd', 'interface_type': 'sas',
         'volume_name': 'root_volume', 'is_root_volume': 'true'},
        {'size_gb': 100, 'number_of_physical_disks': 3, 'raid_level': '5', 'disk_type': 'hdd',
         'interface_type': 'sas', 'volume_name': 'data_volume'})}),
    # IPv4 ranges
    ("ipv4/last-octet", {'ip': '192.168.122.3-7'}),
    ("ipv4/two-octets", {'ip': '10.0.1-2.1-254'}),
    ("ipv4/three-octets", {'ip': '10.1-2.3-4.5-6'}),
    ("ipv4/first-octet", {'ip': '10-12.0.0.1'}),
    ("ipv4/all-four", {'ip': '1-2.3-4.5-6.7-8'}),
    ("ipv4/big-1792", {'ip': '10.0.0-6.0-255'}),
    ("ipv4/colon-last", {'ip': '10.0.0.1-3:10-12'}),
    ("ipv4/colon-single-part", {'ip': '10.0.0.1-3:7'}),
    ("ipv4/colon-only-no-dash", {'ip': '10.0.0.1:5', 'h': 'h1-3'}),
    ("ipv4/colon-only-no-dash-alone", {'ip': '10.0.0.1:5'}),
    ("ipv4/trailing-dash", {'ip': '10.0.0.5-', 'h': 'h1-3'}),
    ("ipv4/trailing-dash-with-range", {'ip': '10.0.1-2.5-'}),
    ("ipv4/leading-dash", {'ip': '10.0-1.0.-5'}),
    ("ipv4/descending", {'ip': '10.0.0.7-5'}),
    ("ipv4/descending-colon", {'ip': '10.0.0.100-100:94-90'}),
    ("ipv4/zero-padded", {'ip': '10.0.0.01-03'}),
    ("ipv4/no-0-255-check", {'ip': '10.0.0.254-258'}),
    ("ipv4/five-parts-not-ipv4", {'ip': '1.2.3.4-6.7'}),
    ("ipv4/three-parts-not-ipv4", {'ip': '1.2.3-5'}),
    ("ipv4/double-dash-part", {'ip': '10.0.0.1-2-3'}),
    ("ipv4/with-letters-not-ipv4", {'ip': '10.0.0.1-3a'}),
    ("ipv4/constant-netmask-alongside", {'ip': '10.0.0.1-3', 'netmask': '255.255.255.0',
                                         'gateway': '10.0.0.254'}),
    # name ranges
    ("name/padded", {'hostname': 'host001-010'}),
    ("name/pad-to-first-width", {'n': '01-100'}),
    ("name/pad-099", {'n': 'n099-101'}),
    ("name/no-pad-first", {'n': 'n1-010'}),
    ("name/zero-start", {'n': 'n0-5'}),
    ("name/zero-zero", {'n': 'n0-0'}),
    ("name/descending", {'n': '5-3'}),
    ("name/descending-padded", {'n': 'n007-5'}),
    ("name/single", {'n': 'n5-5'}),
    ("name/colon", {'n': '1-3:10-12'}),
    ("name/colon-descending-part", {'n': 'h1-3:5-4'}),
    ("name/colon-unfinished", {'n': 'h10-12:5'}),
    ("name/only-first-range", {'n': 'rack1-2-node1-3'}),
    ("name/two-ranges-letters", {'n': 'a1-3b4-6'}),
    ("name/chain", {'n': '1-3-5'}),
    ("name/leading-dash", {'n': 'x-1-3'}),
    ("name/double-dash", {'n': 'h1--3', 'm': 'm1-2'}),
    ("name/suffix", {'n': 'compute01-04.lab.example.com'}),
    ("name/big-numbers", {'n': 'n4294967295-4294967297'}),
    ("name/unicode", {'n': 'nœud1-3'}),
    ("name/range-in-key-only", {'h1-3': 'x', 'n': 'n1-2'}),
    # lists and other values
    ("list/plain", {'mac': ['52:54:00:00:00:01', '52:54:00:00:00:02']}),
    ("list/empty", {'mac': [], 'ip': '10.0.0.1-3'}),
    ("list/empty-alone", {'mac': []}),
    ("list/shorter-than-range", {'mac': ['a', 'b'], 'ip': '10.0.0.1-5'}),
    ("list/longer-than-range", {'mac': ['a', 'b', 'c', 'd'], 'ip': '10.0.0.1-2'}),
    ("list/elements-kept-as-is", {'disk': [['sda', 'sdb'], ('sdc',), {'x': '1-3'}, 5, None]}),
    ("list/of-range-strings", {'h': ['h1-3', 'h4-6']}),
    ("dict/nested-becomes-empty", {'h': 'h1-3', 'bmc': {'ip': '10.0.0.1-3', 'user': 'root'}}),
    ("dict/nested-empty", {'h': 'h1-2', 'bmc': {}}),
    ("dict/nested-alone", {'bmc': {'ip': '10.0.0.1-3'}}),
    ("scalar/int-repeated", {'h': 'h1-3', 'vlan': 100}),
    ("scalar/none-repeated", {'h': 'h1-3', 'gw': None}),
    ("scalar/bool-repeated", {'h': 'h1-3', 'pxe': True}),
    ("scalar/float-repeated", {'h': 'h1-3', 'w': 1.5}),
    ("scalar/tuple-repeated", {'h': 'h1-3', 't': ('a', 'b')}),
    ("scalar/empty-string", {'h': 'h1-3', 'e': ''}),
    ("string/no-range", {'hostname': 'node', 'domain': 'example.com'}),
    ("string/no-range-digits", {'hostname': 'node5', 'ip': '10.0.0.1'}),
    ("string/empty-model", {}),
    ("string/dash-no-digits", {'h': 'a-b'}),
    ("mixed/shortest-wins", {'ip': '10.0.0.1-10', 'hostname': 'h01-03', 'mac': ['a', 'b', 'c', 'd']}),
    ("mixed/order-kept", {'z': 'z1-2', 'a': 'const', 'm': ['x', 'y'], 'b': 7}),
    ("mixed/eDeploy-example", {'gateway': '10.1.0.1', 'netmask': '255.255.255.0',
                               'ip': '10.1.0.11-14', 'hostname': 'compute01-04',
                               'ipmi_ip': '10.1.1.11-14', 'domainname': 'lab.example.com'}),
    # no finite sequence: 16387064 entries, not run
    ("infinite/int-only", {'vlan': 100}),
    ("infinite/none-and-string", {'gw': None, 'h': 'node'}),
    ("infinite/nested-dict", {'bmc': {'ip': '10.0.0.1-3'}, 'h': 'x'}),
    ("infinite/tuple", {'t': (1, 2)}),
    ("infinite/ipv4-colon-only-and-int", {'ip': '10.0.0.1:5', 'n': 1}),
]


KEYS = ['hostname', 'ip', 'gateway', 'netmask', 'ipmi_ip', 'domainname', 'rack', 'mac', 'vlan',
        'disk', 'role', 'bmc', 'storage_ip', 'serial', 'profile']


def _rand_value(rng):
    r = rng.random()
    if r < 0.22:
        return rng.choice(['10.0.0.1', '255.255.255.0', 'lab.example.com', 'compute', 'node5',
                           'sda', 'D7-H.1.0.0', '', 'a-b', 'x:y'])
    if r < 0.42:
        a = rng.randint(0, 120)
        b = a + rng.randint(-5, 40)
        b = max(b, 0)
        width = rng.choice([0, 0, 2, 3])
        sa = ('%0*d' % (width, a)) if width else str(a)
        return '%s%s-%d%s' % (rng.choice(['host', 'node', 'ceph', 'r', '']), sa, b,
                              rng.choice(['', '', '.lab', '-a', '-b1']))
    if r < 0.57:
        parts = [str(rng.randint(1, 254)) for _ in range(4)]
        i = rng.choice([3, 3, 3, 2, 1])
        lo = rng.randint(0, 250)
        parts[i] = '%d-%d' % (lo, lo + rng.randint(0, 10 if i == 3 else 3))
        if i < 3 and rng.random() < 0.5:
            lo = rng.randint(1, 250)
            parts[3] = '%d-%d' % (lo, lo + rng.randint(0, 8))
        if rng.random() < 0.1:
            parts[3] = rng.choice(['1-3:7', '5-', '7-5', '01-03', '1-2:5-4'])
        return '.'.join(parts)
    if r < 0.62:
        segs = []
        for _ in range(rng.randint(2, 3)):
            lo = rng.randint(0, 50)
            segs.append('%d-%d' % (lo, lo + rng.randint(-3, 6)))
        return rng.choice(['h', 'n', '']) + ':'.join(segs)
    if r < 0.67:
        a = rng.randint(5, 30)
        return 'n%d-%d' % (a, a - rng.randint(1, 5))
    if r < 0.79:
        return ['%s%d' % (rng.choice(['mac', 'disk', 'h']), i) for i in range(rng.randint(0, 7))]
    if r < 0.84:
        return rng.randint(0, 4096)
    if r < 0.87:
        return None
    if r < 0.90:
        return (rng.choice(['a', 'b']), rng.randint(0, 3))
    if r < 0.94:
        return {'ip': '10.0.0.1-3', 'user': 'root'}
    if r < 0.97:
        return 'rack%d-%d-node1-3' % (rng.randint(1, 3), rng.randint(3, 5))
    return rng.choice([True, False, 1.5])


def random_models():
    rng = random.Random(SEED)
    out = []
    i = 0
    while len(out) < N_RANDOM:
        i += 1
        keys = rng.sample(KEYS, rng.randint(1, 6))
        model = {k: _rand_value(rng) for k in keys}
        cls = size_class(model)
        if cls == "large":
            continue
        if cls == "infinite" and rng.random() < 0.85:
            continue  # keep only a few of those
        out.append(("rand/%04d" % i, model))
    return out


def all_rows():
    rows = [run_case(cid, m) for cid, m in HAND]
    rows += [run_case(cid, m) for cid, m in random_models()]
    return rows
