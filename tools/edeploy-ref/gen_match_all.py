"""Cases for tests/fixtures/edeploy-diff/match_all.jsonl.

Groups (the id prefix says which):
  upstream/   the scenarios of hardware/tests/test_matcher.py, as data
  feature/    hand-written: quoting, blanks, ints, $$, $a=b=c, unknown functions...
  backtrack/  hand-written backtracking scenarios (8 disks, 4 NICs, 50-level limit)
  grid/       every function form x a set of inventory values (one line each)
  rand/       seeded random specs built from the realistic inventories
"""

import random
import re

from hardware import matcher

import inventories
import reflib

SEED = 20240517
N_RANDOM = 2200
MAX_RANDOM_TIMEOUTS = 6


def run_case(case_id, hw, specs):
    """Call the reference on copies and build one output row."""
    var, var2 = {}, {}
    hw_repr, specs_repr = repr(hw), repr(specs)
    status, value = reflib.bounded(matcher.match_all, list(hw), list(specs), var, var2)
    if status == "ok":
        if value:
            expect = {"match": True, "var": var, "var2": var2}
        else:
            expect = {"match": False}
    elif status == "error":
        expect = {"error": value}
    else:
        expect = {"timeout": True}
    row = {"id": case_id, "hw": hw_repr, "specs": specs_repr, "expect": expect}
    if status == "ok" and value and not (reflib.json_safe(var) and reflib.json_safe(var2)):
        row["expect_repr"] = repr({"var": var, "var2": var2})
    return row


# ---------------------------------------------------------------- upstream

def upstream_cases():
    from hardware.tests import test_matcher as upstream  # test data only (X8_HW)
    hpa = [('system', 'product', 'serial', 'CZJ31402CD')]
    for slot, size, typ in (('1I:1:1', '1000GB', 'SATA'), ('1I:1:2', '1000GB', 'SATA'),
                            ('1I:1:3', '1000GB', 'SATA'), ('1I:1:4', '1000GB', 'SATA'),
                            ('2I:1:5', '1000GB', 'SATA'), ('2I:1:6', '1000GB', 'SATA'),
                            ('2I:1:7', '100GB', 'SSDSATA'), ('2I:1:8', '100GB', 'SSDSATA')):
        hpa += [('disk', slot, 'size', size), ('disk', slot, 'type', typ),
                ('disk', slot, 'control', 'hpa')]
    vdisks = [('disk', 'vda', 'size', '8'), ('disk', 'vda', 'type', 'a'),
              ('disk', 'vdb', 'size', '8'), ('disk', 'vdb', 'type', 'b')]
    x8_specs = [('disk', 'logical', 'count', '8')]
    for i in (1, 2):
        vendor, model = (('Hitachi', 'HUA722010CLA330'), ('Seagate', 'ST31000528AS'))[i - 1]
        x8_specs += [('disk', '$disk%d' % i, 'size', '1000'),
                     ('disk', '$disk%d' % i, 'vendor', vendor),
                     ('disk', '$disk%d' % i, 'model', model),
                     ('disk', '$disk%d' % i, 'rev', 'R001')]
        x8_specs += [('disk', '$disk%d' % i, k, v) for k, v in (
            ('optimal_io_size', '0'), ('physical_block_size', '512'), ('rotational', '1'),
            ('Write Cache Enable', '1'), ('Read Cache Disable', '0'))]
    for i in range(3, 9):
        x8_specs += [('disk', '$disk%d' % i, k, v) for k, v in (
            ('size', '1000'), ('optimal_io_size', '0'), ('physical_block_size', '512'),
            ('rotational', '1'), ('Write Cache Enable', '1'), ('Read Cache Disable', '0'))]
    one = [('disk', 'vda', 'size', '20')]
    return [
        ("upstream/test_equal", [('system', 'product', 'serial', 'CZJ31402CD')],
         [('system', 'product', 'serial', 'CZJ31402CD')]),
        ("upstream/test_not_equal", [('system', 'product', 'serial', 'CZJ31402CD')],
         [('system', 'product', 'serial', 'CZJ31402CE')]),
        ("upstream/test_var", [('disk', '1I:1:1', 'size', '1000GB')],
         [('disk', '$disk8', 'size', '1000GB')]),
        ("upstream/test_vars", hpa,
         [('system', 'product', 'serial', 'CZJ31402CD')] +
         [('disk', '$disk%d' % i, 'size', '100GB' if i < 3 else '1000GB') for i in range(1, 9)]),
        ("upstream/test_already_bound",
         [('disk', '1I:1:2', 'size', '100GB'), ('disk', '1I:1:1', 'size', '1000GB'),
          ('disk', '1I:1:1', 'control', 'hpa'), ('disk', '1I:1:2', 'control', 'hpa')],
         [('disk', '$disk1', 'size', '100GB'), ('disk', '$disk1', 'control', 'hpa'),
          ('disk', '$disk2', 'size', '1000GB')]),
        ("upstream/test_order",
         [('disk', '1I:1:1', 'size', '1000'), ('disk', '1I:1:1', 'control', 'hpa'),
          ('disk', '1I:1:1', 'slot', '2'), ('disk', '2I:1:8', 'size', '100'),
          ('disk', '2I:1:8', 'control', 'hpa'), ('disk', '2I:1:8', 'slot', '2')],
         [('disk', '$disk1', 'size', '100'), ('disk', '$disk1', 'slot', '$slot1'),
          ('disk', '$disk2', 'size', '1000'), ('disk', '$disk2', 'slot', '$slot2')]),
        ("upstream/test_2vars", [('disk', 'vda', 'size', '8')], [('disk', '$disk', 'size', '$size')]),
        ("upstream/test_2dollars", [('disk', 'vda', 'size', '8')],
         [('disk', '$$disk', 'size', '$size')]),
        ("upstream/test_multiple_vars-1",
         [('disk', 'vda', 'size', '8'), ('disk', 'vdb', 'size', '8')],
         [('disk', 'vda', 'size', '8'), ('disk', 'vdb', 'size', '16')]),
        ("upstream/test_multiple_vars-2",
         [('disk', 'vda', 'size', '8'), ('disk', 'vdb', 'size', '8')],
         [('disk', 'vda', 'size', '8'), ('disk', 'vdb', 'size', '8')]),
        ("upstream/test_gt", one[:0] + [('disk', 'vda', 'size', '20')], [('disk', '$disk', 'size', 'gt(10)')]),
        ("upstream/test_ge", [('disk', 'vda', 'size', '10.5')], [('disk', '$disk', 'size', 'ge(10.1)')]),
        ("upstream/test_lt", one, [('disk', '$disk', 'size', 'lt(30)')]),
        ("upstream/test_le", one, [('disk', '$disk', 'size', 'le(20)')]),
        ("upstream/test_not", [('network', 'eth0', 'serial', '20:d2:44:1b:0a:8b')],
         [('network', '$eth', 'serial', '$mac=not(regexp(^28:d2:))')]),
        ("upstream/test_and", [('disk', 'vda', 'size', '40')],
         [('disk', '$disk', 'size', 'and(gt(20), lt(50))')]),
        ("upstream/test_or", [('disk', 'vda', 'size', '40')],
         [('disk', '$disk', 'size', 'or(lt(20), gt(30))')]),
        ("upstream/test_network", [('network', 'eth0', 'ipv4', '192.168.2.2')],
         [('network', '$eth', 'ipv4', 'network(192.168.2.0/24)')]),
        ("upstream/test_le_var", one, [('disk', '$disk', 'size', '$size=le(20)')]),
        ("upstream/test_in", one, [('disk', '$disk', 'size', 'in(10, 20, 30)')]),
        ("upstream/test_in2", one, [('disk', '$disk=in("vda", "vdb")', 'size', '20')]),
        ("upstream/test_rangeint", one, [('disk', '$disk', 'size', 'range(20, 25)')]),
        ("upstream/test_rangefloat", [('ipmi', '+12V', 'value', '12.14')],
         [('ipmi', '+12V', 'value', 'range(11.9, 12.2)')]),
        ("upstream/test_regexp", [('network', 'eth0', 'serial', '28:d2:44:1b:0a:8b')],
         [('network', '$eth', 'serial', 'regexp(^28:d2:)')]),
        ("upstream/test_backtrack", vdisks,
         [('disk', '$disk', 'size', '8'), ('disk', '$disk', 'type', 'b')]),
        ("upstream/test_backtrack2", vdisks,
         [('disk', '$disk', 'size', '8'), ('disk', '$disk', 'type', 'b'),
          ('disk', '$disk2', 'size', '8')]),
        ("upstream/test_backtrack3", vdisks,
         [('disk', '$disk', 'size', '8'), ('disk', '$disk', 'type', 'c'),
          ('disk', '$disk2', 'size', '8')]),
        ("upstream/test_backtracklong", list(upstream.X8_HW), x8_specs),
    ]


# ---------------------------------------------------------------- features

SMALL = [
    ('system', 'product', 'name', 'KVM'),
    ('system', 'product', 'vendor', 'QEMU'),
    ('system', 'ipmi', 'channel', 2),
    ('cpu', 'logical', 'number', 4),
    ('disk', 'vda', 'size', '20'),
    ('disk', 'vda', 'vendor', '0x1af4'),
    ('disk', 'vdb', 'size', '8'),
    ('disk', 'vdb', 'vendor', '0x1af4'),
    ('network', 'eth0', 'serial', '52:54:00:12:34:56'),
    ('network', 'eth0', 'ipv4', '192.168.122.10'),
    ('network', 'eth0', 'link', 'yes'),
]


def feature_cases():
    c = []

    def add(name, hw, specs):
        c.append(("feature/" + name, hw, specs))

    # quoting
    add("quote-inventory-value-gt", [('a', 'b', 'c', "'5'")], [('a', '$x', 'c', 'gt(4)')])
    add("quote-inventory-value-dq-gt", [('a', 'b', 'c', '"5"')], [('a', '$x', 'c', 'gt(4)')])
    add("quote-literal-not-stripped", [('a', 'b', 'c', '5')], [('a', '$x', 'c', "'5'")])
    add("quote-in-arguments", [('a', 'b', 'c', 'vda')], [('a', '$x', 'c', 'in("vda", \'vdb\')')])
    add("quote-in-unbalanced", [('a', 'b', 'c', 'vda')], [('a', '$x', 'c', 'in("vda)')])
    add("quote-regexp-quoted", [('a', 'b', 'c', 'vda')], [('a', '$x', 'c', "regexp('^vd')")])
    add("quote-inside-value-regexp", [('a', 'b', 'c', "it's")], [('a', '$x', 'c', "regexp(t's$)")])
    # blanks
    add("blank-gt", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'gt( 4 )')])
    add("blank-in-first-arg", [('a', 'b', 'c', 'a')], [('a', '$x', 'c', 'in( a , b )')])
    add("blank-in-last-arg", [('a', 'b', 'c', 'b')], [('a', '$x', 'c', 'in( a , b )')])
    add("blank-in-middle-arg", [('a', 'b', 'c', 'b')], [('a', '$x', 'c', 'in(a , b , c)')])
    add("blank-in-leading-only", [('a', 'b', 'c', 'a')], [('a', '$x', 'c', 'in( a,b)')])
    add("blank-before-paren-unknown", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'gt (4)')])
    add("blank-inventory-value-gt", [('a', 'b', 'c', ' 5 ')], [('a', '$x', 'c', 'gt(4)')])
    add("blank-inventory-value-in", [('a', 'b', 'c', ' 5 ')], [('a', '$x', 'c', 'in(5)')])
    add("blank-regexp-keeps-blank", [('a', 'b', 'c', 'x y')], [('a', '$x', 'c', 'regexp( y)')])
    add("blank-and-nested", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'and( gt(4) , lt(6) )')])
    # ints in inventories
    add("int-exact-spec-int", SMALL, [('system', 'ipmi', 'channel', 2)])
    add("int-spec-string-never-equal", SMALL, [('system', 'ipmi', 'channel', '2')])
    add("int-bind-keeps-int", SMALL, [('system', 'ipmi', 'channel', '$chan')])
    add("int-function-raises", SMALL, [('system', 'ipmi', 'channel', 'gt(1)')])
    add("int-in-raises", SMALL, [('cpu', 'logical', 'number', 'in(4)')])
    add("int-spec-int-not-in-inventory", SMALL, [('system', 'ipmi', 'channel', 3)])
    add("int-spec-int-other-line-first", SMALL, [('cpu', 'logical', 'number', 2)])
    add("int-var-then-literal-int", SMALL, [('system', 'ipmi', '$k', '$v'), ('cpu', 'logical', 'number', 4)])
    add("int-function-other-element", SMALL, [('system', '$n', 'channel', 'regexp(2)')])
    add("int-function-after-earlier-mismatch", SMALL, [('cpu', '$n', 'number', 'gt(1)')])
    add("int-var-consistency-int-vs-str",
        [('a', 'x', 'n', 2), ('b', 'y', 'n', '2')], [('a', 'x', 'n', '$v'), ('b', 'y', 'n', '$v')])
    add("int-var-consistency-int-vs-int",
        [('a', 'x', 'n', 2), ('b', 'y', 'n', 2)], [('a', 'x', 'n', '$v'), ('b', 'y', 'n', '$v')])
    add("int-in-name-element", [('cpu', 0, 'cores', '4')], [('cpu', '$i', 'cores', '4')])
    add("int-in-name-element-literal", [('cpu', 0, 'cores', '4')], [('cpu', '0', 'cores', '4')])
    add("empty-spec-element", [('a', 'b', 'c', 'd')], [('a', 'b', 'c', '')])
    add("empty-spec-element-exact-line", [('a', 'b', 'c', '')], [('a', 'b', 'c', '')])
    add("empty-inventory-value-var", [('a', 'b', 'c', '')], [('a', 'b', 'c', '$v')])
    add("empty-inventory-value-gt", [('a', 'b', 'c', '')], [('a', 'b', 'c', 'gt(1)')])
    add("empty-inventory-value-not", [('a', 'b', 'c', '')], [('a', 'b', 'c', 'not(x)')])
    # $$ variables
    add("dollar2-basic", SMALL, [('network', '$eth', 'serial', '$$mac')])
    add("dollar2-bare", SMALL, [('network', '$$', 'serial', '$mac')])
    add("dollar2-and-plain-same-name", SMALL,
        [('network', 'eth0', 'serial', '$$mac'), ('disk', 'vda', 'vendor', '$mac')])
    add("dollar2-plain-first-same-name", SMALL,
        [('disk', 'vda', 'vendor', '$mac'), ('network', 'eth0', 'serial', '$$mac')])
    add("dollar2-two", SMALL, [('network', '$$eth', 'serial', '$$mac'), ('disk', '$$d', 'size', '8')])
    add("dollar2-func", SMALL, [('network', 'eth0', 'serial', '$$mac=regexp(^52:54)')])
    add("dollar3", SMALL, [('network', 'eth0', 'serial', '$$$mac')])
    add("dollar2-consistency", SMALL,
        [('disk', '$$d', 'size', '20'), ('disk', '$$d', 'vendor', '0x1af4')])
    # odd variable forms
    add("var-two-equals", SMALL, [('disk', '$a=b=c', 'size', '20')])
    add("var-equals-literal", SMALL, [('disk', 'vda', 'size', '$v=abc')])
    add("var-equals-literal-matches-text", [('disk', 'vda', 'size', '$v=abc')],
        [('disk', '$d', 'size', '$v=abc')])
    add("var-equals-empty", SMALL, [('disk', 'vda', 'size', '$v=')])
    add("var-equals-empty-name", SMALL, [('disk', 'vda', 'size', '$=gt(3)')])
    add("var-func-true", SMALL, [('disk', 'vda', 'size', '$x=gt(3)')])
    add("var-func-false", SMALL, [('disk', 'vda', 'size', '$x=gt(30)')])
    add("var-func-false-text-equal", [('disk', 'vda', 'size', '$x=gt(30)')],
        [('disk', '$d', 'size', '$x=gt(30)')])
    add("var-func-unknown", SMALL, [('disk', 'vda', 'size', '$x=foo(3)')])
    add("var-func-unknown-text-equal", [('disk', 'vda', 'size', '$x=foo(3)')],
        [('disk', '$d', 'size', '$x=foo(3)')])
    add("var-func-equals-in-arg", [('a', 'b=c', 'c', 'd')], [('a', '$x=in(b=c)', 'c', 'd')])
    add("var-func-two-equals-call", SMALL, [('disk', 'vda', 'size', '$a=b=gt(1)')])
    add("var-func-empty-args", SMALL, [('disk', 'vda', 'size', '$x=gt()')])
    add("var-func-empty-args-text", [('disk', 'vda', 'size', '$x=gt()')],
        [('disk', '$d', 'size', '$x=gt()')])
    add("var-name-with-paren", SMALL, [('disk', '$d(1)', 'size', '20')])
    add("var-name-close-paren", SMALL, [('disk', '$d)', 'size', '20')])
    add("var-dollar-alone", SMALL, [('disk', '$', 'size', '20')])
    add("var-same-twice-one-spec", [('a', 'b', 'c', 'd')], [('a', '$x', 'c', '$x')])
    add("var-same-twice-bound-before", [('z', 'q', 'z', 'd'), ('a', 'b', 'c', 'd')],
        [('z', 'q', 'z', '$x'), ('a', '$x', 'c', '$x')])
    add("var-in-category", SMALL, [('$cat', 'eth0', 'link', 'yes')])
    add("var-all-four", SMALL, [('$a', '$b', '$c', '$d')])
    add("var-all-four-twice", SMALL, [('$a', '$b', '$c', '$d'), ('$a', '$b2', '$c2', '$d2')])
    add("var-key-element", SMALL, [('network', 'eth0', '$key', '52:54:00:12:34:56')])
    add("var-value-looks-like-var", [('a', 'b', 'c', '$y')], [('a', 'b', 'c', '$x')])
    # unknown functions / call-looking literals
    add("unknown-func-never-in-pass2", [('a', 'b', 'c', 'foo(1)')], [('a', '$x', 'c', 'foo(1)')])
    add("unknown-func-exact-line", [('a', 'b', 'c', 'foo(1)')], [('a', 'b', 'c', 'foo(1)')])
    add("unknown-func-uppercase", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'GT(4)')])
    add("paren-empty-literal", [('a', 'b', 'c', 'x()')], [('a', '$x', 'c', 'x()')])
    add("paren-only-literal", [('a', 'b', 'c', '()')], [('a', '$x', 'c', '()')])
    add("paren-close-literal", [('a', 'b', 'c', '5)')], [('a', '$x', 'c', '5)')])
    add("paren-product-name", [('system', 'product', 'name', 'ProLiant DL360 Gen9 (755258-B21)')],
        [('system', '$p', 'name', 'ProLiant DL360 Gen9 (755258-B21)')])
    add("paren-product-name-exact", [('system', 'product', 'name', 'ProLiant DL360 Gen9 (755258-B21)')],
        [('system', 'product', 'name', 'ProLiant DL360 Gen9 (755258-B21)')])
    add("paren-product-name-regexp",
        [('system', 'product', 'name', 'Standard PC (i440FX + PIIX, 1996)')],
        [('system', 'product', 'name', 'regexp(^Standard PC)')])
    add("private-helper-name", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'adder(5)')])
    add("module-global-name", [('a', 'b', 'c', '5')], [('a', '$x', 'c', 'call_func(5)')])
    add("function-element-name", SMALL, [('disk', 'regexp(^vd)', 'size', '$s')])
    add("function-element-category", SMALL, [('in(disk, cpu)', '$n', 'size', '$s')])
    add("function-every-element", SMALL,
        [('regexp(^d)', 'regexp(^v)', 'in(size)', 'gt(10)')])
    # functions that raise
    add("raise-gt-non-number", SMALL, [('system', 'product', 'name', 'gt(1)')])
    add("raise-gt-non-number-arg", SMALL, [('disk', 'vda', 'size', 'gt(abc)')])
    add("raise-network-non-ip", SMALL, [('system', 'product', 'name', 'network(10.0.0.0/8)')])
    add("raise-network-host-bits", SMALL, [('network', 'eth0', 'ipv4', 'network(192.168.122.1/24)')])
    add("raise-network-bad-cidr", SMALL, [('network', 'eth0', 'ipv4', 'network(192.168.122.0/33)')])
    add("raise-network-ipv6", [('network', 'eth0', 'ipv6', 'fe80::1')],
        [('network', 'eth0', 'ipv6', 'network(fe80::/64)')])
    add("raise-bad-regexp", SMALL, [('disk', 'vda', 'size', 'regexp([)')])
    add("raise-regexp-comma", SMALL, [('disk', 'vda', 'size', 'regexp(^2{1,3}$)')])
    add("raise-range-one-arg", SMALL, [('disk', 'vda', 'size', 'range(1)')])
    add("raise-gt-two-args", SMALL, [('disk', 'vda', 'size', 'gt(1, 2)')])
    add("raise-not-two-args", SMALL, [('disk', 'vda', 'size', 'not(gt(1), lt(2))')])
    add("raise-nested-with-comma", SMALL, [('disk', 'vda', 'size', 'and(gt(1), or(lt(5), gt(10)))')])
    add("raise-not-reached-when-earlier-line-matches", SMALL,
        [('disk', '$d', 'size', 'gt(10)')])
    add("raise-only-on-line-reached", SMALL, [('disk', 'vdb', 'size', 'gt(10)')])
    add("raise-after-earlier-match-line", SMALL, [('disk', 'vda', 'size', '20'),
                                                  ('system', 'product', '$k', 'gt(1)')])
    add("inventory-value-is-known-call", [('a', 'b', 'c', 'regexp(x)')], [('a', 'b', 'c', 'regexp(^r)')])
    add("inventory-value-is-known-call-exact", [('a', 'b', 'c', 'regexp(x)')],
        [('a', 'b', 'c', 'regexp(x)')])
    add("inventory-value-is-unknown-call", [('a', 'b', 'c', 'foo(x)')], [('a', 'b', 'c', 'regexp(^f)')])
    add("inventory-value-is-gt-call", [('a', 'b', 'c', 'gt(1)')], [('a', '$x', 'c', '$v')])
    # lines literally equal to a spec with $x or a function
    add("literal-line-equal-spec-with-var", [('a', '$x', 'c', 'd'), ('a', 'b', 'c', 'd')],
        [('a', '$x', 'c', 'd')])
    add("literal-line-equal-spec-with-var-second", [('a', 'b', 'c', 'd'), ('a', '$x', 'c', 'd')],
        [('a', '$x', 'c', 'd')])
    add("literal-line-equal-spec-with-func", [('disk', 'sda', 'size', '100'),
                                              ('disk', 'sda', 'size', 'gt(50)')],
        [('disk', 'sda', 'size', 'gt(50)'), ('disk', 'sda', 'size', '$s')])
    add("literal-line-equal-spec-with-dollar2", [('a', '$$x', 'c', 'd')], [('a', '$$x', 'c', 'd')])
    add("literal-line-consumed-then-var", [('a', '$x', 'c', 'd'), ('a', 'b', 'c', 'd')],
        [('a', '$x', 'c', 'd'), ('a', '$x', 'c', 'd')])
    # consumption and ordering
    add("literal-spec-consumes-first-for-good",
        [('disk', 'sda', 'size', '100'), ('disk', 'sdb', 'size', '100')],
        [('disk', 'regexp(^sd)', 'size', '100'), ('disk', 'sda', 'size', '100')])
    add("var-spec-retries-instead",
        [('disk', 'sda', 'size', '100'), ('disk', 'sdb', 'size', '100')],
        [('disk', '$d', 'size', '100'), ('disk', 'sda', 'size', '100')])
    add("same-spec-twice-two-lines", [('disk', 'sda', 'size', '100'), ('disk', 'sdb', 'size', '100')],
        [('disk', '$d1', 'size', '100'), ('disk', '$d2', 'size', '100')])
    add("same-spec-twice-one-line", [('disk', 'sda', 'size', '100')],
        [('disk', '$d1', 'size', '100'), ('disk', '$d2', 'size', '100')])
    add("exact-spec-twice-one-line", [('disk', 'sda', 'size', '100')],
        [('disk', 'sda', 'size', '100'), ('disk', 'sda', 'size', '100')])
    add("duplicate-lines", [('disk', 'sda', 'size', '100'), ('disk', 'sda', 'size', '100')],
        [('disk', 'sda', 'size', '100'), ('disk', 'sda', 'size', '100')])
    add("empty-specs", SMALL, [])
    add("empty-inventory", [], [('disk', '$d', 'size', '$s')])
    add("empty-both", [], [])
    add("spec-five-elements", SMALL, [('disk', 'vda', 'size', '20', 'extra')])
    add("spec-five-elements-var", SMALL, [('disk', '$d', 'size', '20', '$extra')])
    add("spec-three-elements", SMALL, [('disk', 'vda', 'size')])
    add("inventory-three-element-line", [('disk', 'vda', 'size'), ('disk', 'vdb', 'size', '8')],
        [('disk', '$d', 'size', '8')])
    add("inventory-five-element-line", [('disk', 'vda', 'size', '8', 'x')],
        [('disk', '$d', 'size', '8')])
    add("pytypes-spec-as-list", [('a', '$x', 'c', 'd')], [['a', '$x', 'c', 'd']])
    add("pytypes-inventory-as-list", [['a', '$x', 'c', 'd']], [('a', '$x', 'c', 'd')])
    add("unicode-value", [('system', 'product', 'name', 'Serveur é')],
        [('system', 'product', 'name', 'regexp(é$)')])
    add("realistic-kvm-full", inventories.kvm_guest(0),
        [('system', 'product', 'vendor', 'QEMU'), ('disk', '$disk', 'size', 'ge(20)'),
         ('network', '$eth', 'serial', '$$mac'), ('network', '$eth', 'ipv4', '$ip')])
    return c


# ---------------------------------------------------------------- backtracking

def backtrack_cases():
    c = []

    def add(name, hw, specs):
        c.append(("backtrack/" + name, hw, specs))

    add("var-bound-early-contradicted-later",
        [('disk', 'sda', 'size', '100'), ('disk', 'sdb', 'size', '100'),
         ('disk', 'sda', 'rotational', '1'), ('disk', 'sdb', 'rotational', '0')],
        [('disk', '$ssd', 'size', '100'), ('disk', '$ssd', 'rotational', '0')])
    add("several-candidates-third-wins",
        [('disk', n, 'size', '100') for n in ('sda', 'sdb', 'sdc')] +
        [('disk', 'sda', 'model', 'A'), ('disk', 'sdb', 'model', 'A'), ('disk', 'sdc', 'model', 'B')],
        [('disk', '$d', 'size', '100'), ('disk', '$d', 'model', 'B')])
    add("two-vars-cross-constraint",
        [('disk', n, 'size', '100') for n in ('sda', 'sdb', 'sdc')] +
        [('disk', 'sdc', 'model', 'B'), ('disk', 'sda', 'model', 'A')],
        [('disk', '$d1', 'size', '100'), ('disk', '$d2', 'size', '100'),
         ('disk', '$d1', 'model', 'A'), ('disk', '$d2', 'model', 'B')])
    # 8 identical disks (the Dell fixture)
    dell = inventories.dell_r630(0)
    disks = [t for t in dell if t[0] == 'disk']
    add("8-identical-disks-8-specs", disks,
        [('disk', '$disk%d' % i, 'size', '599') for i in range(1, 9)])
    add("8-identical-disks-last-is-special", disks + [('disk', 'sdh', 'label', 'root')],
        [('disk', '$disk%d' % i, 'size', '599') for i in range(1, 9)] +
        [('disk', '$disk1', 'label', 'root')])
    add("8-identical-disks-first-spec-special", disks + [('disk', 'sdh', 'label', 'root')],
        [('disk', '$root', 'label', 'root')] +
        [('disk', '$disk%d' % i, 'size', '599') for i in range(1, 8)])
    add("8-identical-disks-9-specs-fails", disks,
        [('disk', '$disk%d' % i, 'size', '599') for i in range(1, 10)])
    add("8-identical-disks-2-specs-each", disks,
        [x for i in range(1, 9) for x in (('disk', '$disk%d' % i, 'size', '599'),
                                          ('disk', '$disk%d' % i, 'vendor', 'DELL'))])
    add("8-identical-disks-4-specs-then-fail", disks,
        [('disk', '$disk%d' % i, 'size', '599') for i in range(1, 5)] +
        [('disk', 'nope', 'size', '1')])
    add("8-identical-disks-1-spec-then-fail", disks,
        [('disk', '$disk1', 'size', '599'), ('disk', 'nope', 'size', '1')])
    # 4 NICs, only some have link / ipv4 (HP fixture: eno1+eno2 up, eno1 has ipv4)
    hp = inventories.hp_dl360_gen9(0)
    nics = [t for t in hp if t[0] == 'network']
    add("4-nics-link-and-ipv4", nics,
        [('network', '$eth', 'link', 'yes'), ('network', '$eth', 'ipv4', '$ip')])
    add("4-nics-ipv4-first", nics,
        [('network', '$eth', 'ipv4', '$ip'), ('network', '$eth', 'link', 'yes')])
    add("4-nics-two-up", nics,
        [('network', '$eth', 'link', 'yes'), ('network', '$eth1', 'link', 'yes')])
    add("4-nics-three-up-fails", nics,
        [('network', '$eth%d' % i, 'link', 'yes') for i in range(3)])
    add("4-nics-down-one-with-ipv4-fails", nics,
        [('network', '$eth', 'link', 'no'), ('network', '$eth', 'ipv4', '$ip')])
    add("4-nics-second-up-has-serial", nics,
        [('network', '$eth', 'link', 'yes'), ('network', '$eth', 'serial', 'regexp(41$)')])
    add("4-nics-dollar2-backtrack", nics,
        [('network', '$eth', 'serial', '$$mac'), ('network', '$eth', 'link', 'yes'),
         ('network', '$eth', 'speed', '1Gbit/s'), ('network', '$eth', 'ipv4', 'network(10.1.0.0/16)')])
    add("dollar2-abandoned-binding-survives",
        [('network', 'eth0', 'serial', 'aa'), ('network', 'eth1', 'serial', 'bb'),
         ('network', 'eth1', 'link', 'yes')],
        [('network', '$eth', 'serial', '$$mac'), ('network', '$eth', 'link', 'yes')])
    add("abandoned-plain-binding-overwritten",
        [('network', 'eth0', 'serial', 'aa'), ('network', 'eth1', 'serial', 'bb'),
         ('network', 'eth1', 'link', 'yes')],
        [('network', '$eth', 'serial', '$mac'), ('network', '$eth', 'link', 'yes')])
    add("retry-point-only-on-new-binding",
        [('disk', 'sda', 'size', '8'), ('disk', 'sdb', 'size', '8'), ('disk', 'sdb', 'type', 'b')],
        [('disk', '$d', 'size', '8'), ('disk', '$d', 'size', '8'), ('disk', '$d', 'type', 'b')])
    add("rebinding-same-value-no-retry-point",
        [('k', 'x', 'a', '1'), ('k', 'x', 'b', '1'), ('k', 'y', 'b', '1'), ('k', 'y', 'c', '1')],
        [('k', '$n', 'a', '1'), ('k', '$n', 'b', '1'), ('k', '$m', 'b', '1'), ('k', '$m', 'c', '1')])
    # the 50-level retry limit: the right line at position p needs p nested retries
    for p in (10, 40, 48, 49, 50, 51, 60):
        lines = [('x', 'i%02d' % i, 'k', 'v') for i in range(p + 5)] + [('x', 'i%02d' % p, 'k2', 'w')]
        add("depth-limit-target-%d" % p, lines, [('x', '$a', 'k', 'v'), ('x', '$a', 'k2', 'w')])
    # several retry points interleaved
    add("two-levels",
        [('d', n, 's', '1') for n in 'abcd'] + [('d', 'c', 't', 'x'), ('d', 'd', 't', 'y')],
        [('d', '$p', 's', '1'), ('d', '$q', 's', '1'), ('d', '$p', 't', 'y'), ('d', '$q', 't', 'x')])
    add("exponential-fail-12-disks",
        [('disk', 'd%02d' % i, 'size', '1') for i in range(12)],
        [('disk', '$d%d' % i, 'size', '1') for i in range(13)])
    add("exponential-fail-6-disks",
        [('disk', 'd%02d' % i, 'size', '1') for i in range(6)],
        [('disk', '$d%d' % i, 'size', '1') for i in range(7)])
    return c


# ---------------------------------------------------------------- grid

GRID_VALUES = ['5', '5.0', '4', '10', '-3', ' 7 ', "'5'", '"5"', '1_000', '1e3', 'inf', 'nan',
               '0x10', 'abc', 'a b', '', '192.168.2.2', '10.0.0.1', '28:d2:44:1b:0a:8b',
               'yes', 'vda', 5, 0, 'gt(1)', 'x(5)', '5)', 'é']

GRID_FUNCS = [
    'gt(4)', 'gt(5)', 'gt( 4 )', 'gt(4.5)', 'gt(-1)', 'gt(inf)', 'gt(nan)', 'gt(abc)', 'gt()',
    'gt(1, 2)', 'gt (4)', 'GT(4)', 'ge(5)', 'ge(5.0)', 'ge(1_000)', 'lt(5)', 'lt(5.5)', 'lt(inf)',
    'le(5)', 'le( 5)', 'le(-3)', 'range(1, 10)', 'range(10, 1)', 'range(5,5)', 'range( 1 , 10 )',
    'range(1)', 'range(-inf, inf)', 'in(5)', 'in(5, 6)', 'in(6, 5)', 'in( 5 , 6 )', 'in(5 , 6)',
    'in(6 , 5)', 'in(5.0)', "in('5')", 'in("5", "6")', 'in(abc, 5)', 'in(a b)', 'in(yes,no)',
    'in()', 'network(192.168.2.0/24)', 'network(10.0.0.0/8)', 'network(10.0.0.1/8)',
    'network(0.0.0.0/0)', 'network(abc)', 'network(192.168.2.2)', 'regexp(^5)', 'regexp(5$)',
    'regexp(^[0-9]+$)', 'regexp(^28:d2:)', 'regexp(()', 'regexp(a|b)', 'regexp(.*)',
    'regexp(^5,6)', 'regexp()', 'regexp(^$)', 'not(regexp(^28:d2:))', 'not(gt(4))', 'not(5)',
    'not()', 'not(gt(4), lt(6))', 'and(gt(4), lt(6))', 'and(gt(1),lt(5))',
    'and(gt(4), lt(6), gt(0))', 'and(gt( 4 ), lt( 6 ))', 'or(lt(4), gt(6))', 'or(lt(20), gt(3))',
    'or(a, b)', 'or(, b)', 'not(network(10.0.0.0/8))', 'and(gt(1), or(lt(5), gt(10)))',
    'and(not(lt(4)), le(5))', 'or(in(5, 6), regexp(^a))', 'and(regexp(^5), in(5))',
    '$x=gt(3)', '$x=gt(30)', '$x=in(5, abc)', '$x=regexp(^a)', '$x=and(gt(1), lt(9))',
    '$x=network(10.0.0.0/8)', '$x=abc', '$x=5', '$a=b=c', '$x=regexp(a=b)', '$x=gt()',
    '$x=foo(1)', '$$x=gt(3)', '$$x', '$x', '$', '$$', 'foo(1)', 'x()', 'x(5)', '(5)', '5)',
    '5', "'5'",
]


def grid_cases():
    c = []
    for vi, value in enumerate(GRID_VALUES):
        for fi, func in enumerate(GRID_FUNCS):
            c.append(("grid/v%02d-f%03d" % (vi, fi), [('t', 'n', 'k', value)], [('t', '$name', 'k', func)]))
    # the same functions on the name element (the value bound as a variable)
    for fi, func in enumerate(GRID_FUNCS):
        c.append(("grid/name-f%03d" % fi, [('disk', '5', 'size', '10')], [('disk', func, 'size', '$s')]))
    return c


# ---------------------------------------------------------------- random

_IP_RE = re.compile(r'^\d+\.\d+\.\d+\.\d+$')
_NUM_RE = re.compile(r'^-?\d+(\.\d+)?$')
_MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')


def _num_test(rng, v, want):
    x = float(v)
    span = max(1.0, abs(x) * 0.5)
    lo, hi = x - span, x + span

    def fmt(f):
        return ('%d' % f) if f == int(f) and abs(f) < 1e15 else repr(f)
    forms = []
    if want:
        forms = ['gt(%s)' % fmt(lo), 'ge(%s)' % fmt(x), 'lt(%s)' % fmt(hi), 'le(%s)' % fmt(x),
                 'range(%s, %s)' % (fmt(lo), fmt(hi)), 'in(%s)' % v, 'in(%s, %s)' % (fmt(hi), v),
                 'not(lt(%s))' % fmt(x), 'and(gt(%s), lt(%s))' % (fmt(lo), fmt(hi)),
                 'or(lt(%s), ge(%s))' % (fmt(lo), fmt(x)), 'regexp(^%s)' % re.escape(v[:2]).replace(',', ''),
                 'and(ge(%s), le(%s))' % (fmt(x), fmt(x))]
    else:
        forms = ['gt(%s)' % fmt(hi), 'ge(%s)' % fmt(hi), 'lt(%s)' % fmt(x), 'le(%s)' % fmt(lo),
                 'range(%s, %s)' % (fmt(hi), fmt(hi + span)), 'in(%s)' % fmt(hi),
                 'not(ge(%s))' % fmt(x), 'and(gt(%s), lt(%s))' % (fmt(x), fmt(hi)),
                 'or(lt(%s), gt(%s))' % (fmt(lo), fmt(hi)), 'range(%s, %s)' % (fmt(hi), fmt(lo))]
    return rng.choice(forms)


def _ip_test(rng, v, want):
    octets = [int(o) for o in v.split('.')]
    if want:
        forms = ['network(%d.0.0.0/8)' % octets[0], 'network(%d.%d.0.0/16)' % tuple(octets[:2]),
                 'network(%d.%d.%d.0/24)' % tuple(octets[:3]), 'network(0.0.0.0/0)',
                 'regexp(^%d\\.)' % octets[0], 'not(network(172.16.0.0/12))', 'in(%s)' % v]
    else:
        forms = ['network(%d.0.0.0/8)' % ((octets[0] + 1) % 224),
                 'network(%d.%d.%d.0/24)' % (octets[0], octets[1], (octets[2] + 1) % 256),
                 'not(network(%d.0.0.0/8))' % octets[0], 'in(127.0.0.1)']
    if rng.random() < 0.03:
        forms = ['network(%s/24)' % v, 'network(%s)' % v]  # host bits set / /32
    return rng.choice(forms)


def _str_test(rng, v, want):
    head = re.escape(v[:3]) if v else ''
    tail = re.escape(v[-2:]) if v else ''
    if want:
        forms = ['regexp(^%s)' % head, 'regexp(%s$)' % tail, 'in(%s)' % v, 'in("%s", zzz)' % v,
                 "in('zzz', '%s')" % v, 'not(regexp(^zzz))', 'regexp(.)' if v else 'regexp(^$)',
                 'or(regexp(^%s), in(zzz))' % head]
    else:
        forms = ['regexp(^zz%s)' % head, 'in(zzz)', 'not(regexp(^%s))' % head, 'in(%s, zzz)' % (v + 'x'),
                 'regexp(^%s$)' % (head + 'Q')]
    f = rng.choice(forms)
    return f


def _value_test(rng, v, want):
    if isinstance(v, int):
        return rng.choice(['gt(0)', 'in(%d)' % v, 'regexp(.)'])  # raises: int has no strip
    if _IP_RE.match(v):
        return _ip_test(rng, v, want)
    if _NUM_RE.match(v):
        return _num_test(rng, v, want)
    if _MAC_RE.match(v):
        return rng.choice(['regexp(^%s)' % v[:8], 'regexp(%s$)' % v[-5:], 'not(regexp(^00:))',
                           'in(%s)' % v]) if want else rng.choice(['regexp(^ff:ff)', 'in(%s)' % v[::-1]])
    return _str_test(rng, v, want)


def _entities(hw):
    groups = {}
    for t in hw:
        groups.setdefault((t[0], t[1]), []).append(t)
    return groups


def random_case(rng, pool):
    name, hw = rng.choice(pool)
    groups = _entities(hw)
    keys = list(groups)
    if rng.random() < 0.06:
        sub = list(hw)
        label = "full"
    else:
        k = rng.randint(2, min(9, len(keys)))
        chosen = set(rng.sample(keys, k))
        # keep siblings (same category) now and then: more candidates for a $var
        if rng.random() < 0.5:
            cat = rng.choice(sorted({c for c, _ in chosen}))
            chosen |= {g for g in keys if g[0] == cat and rng.random() < 0.6}
        sub = [t for t in hw if (t[0], t[1]) in chosen]
        label = "sub"
        if len(sub) > 70:
            sub = sub[:70]
    if rng.random() < 0.15:
        sub = list(sub)
        rng.shuffle(sub)
        label += "-shuffled"
    sgroups = _entities(sub)
    skeys = list(sgroups)
    n_ent = rng.randint(1, min(4, len(skeys)))
    ents = rng.sample(skeys, n_ent)
    specs = []
    var_of = {}
    counter = [0]

    def newvar(base):
        counter[0] += 1
        return '%s%d' % (re.sub(r'[^a-z]', '', base.lower())[:6] or 'v', counter[0])

    for ent in ents:
        lines = sgroups[ent]
        picked = rng.sample(lines, rng.randint(1, min(4, len(lines))))
        r = rng.random()
        if r < 0.6:
            name_elt = '$' + var_of.setdefault(ent, newvar(ent[0]))
        elif r < 0.7:
            name_elt = '$$' + var_of.setdefault(ent, newvar(ent[0]))
        elif r < 0.8 and isinstance(ent[1], str) and ent[1]:
            name_elt = _str_test(rng, ent[1], True)
        else:
            name_elt = ent[1]
        # now and then share the variable with another entity: forces backtracking or failure
        if var_of and rng.random() < 0.08:
            name_elt = '$' + rng.choice(sorted(var_of.values()))
        for t in picked:
            cat, _, key, value = t
            r = rng.random()
            if isinstance(value, int) and rng.random() < 0.95:
                # ints: a spec can only bind them ($var) or name them exactly in
                # an all-literal spec; anything else raises in the reference
                if r < 0.7 or name_elt.startswith('$') or name_elt.endswith(')'):
                    val_elt = '$' + newvar(key)
                elif r < 0.85:
                    val_elt = value
                else:
                    val_elt = str(value)  # the string never equals the int
                specs.append((cat, name_elt, key, val_elt))
                continue
            if r < 0.30:
                val_elt = value
            elif r < 0.45:
                val_elt = '$' + newvar(key)
            elif r < 0.55:
                f = _value_test(rng, value, rng.random() < 0.8)
                val_elt = '$%s=%s' % (newvar(key), f)
            elif r < 0.93:
                val_elt = _value_test(rng, value, rng.random() < 0.8)
            else:
                val_elt = (value + 'X') if isinstance(value, str) else str(value)
            key_elt = key
            if rng.random() < 0.04:
                key_elt = '$' + newvar('key')
            cat_elt = cat
            if rng.random() < 0.02:
                cat_elt = 'in(%s, other)' % cat
            specs.append((cat_elt, name_elt, key_elt, val_elt))
    if rng.random() < 0.5:
        rng.shuffle(specs)
    # alterations: a line from another inventory, or a dropped line
    r = rng.random()
    if r < 0.08:
        _, other = rng.choice(pool)
        t = rng.choice(other)
        specs.insert(rng.randint(0, len(specs)), t)
        label += "-foreign"
    elif r < 0.14 and len(sub) > 1:
        drop = rng.choice(specs)
        sub = [t for t in sub if not (t[0] == drop[0] and t[2] == drop[2])] or sub
        label += "-dropped"
    return "%s-%s" % (name, label), sub, specs


def random_cases():
    rng = random.Random(SEED)
    pool = []
    for name, build in inventories.FIXTURES:
        for n in range(3):
            pool.append(("%s-%d" % (name, n), build(n)))
    rows = []
    timeouts = 0
    i = 0
    while len(rows) < N_RANDOM:
        i += 1
        label, hw, specs = random_case(rng, pool)
        row = run_case("rand/%05d-%s" % (i, label), hw, specs)
        if "timeout" in row["expect"]:
            if timeouts >= MAX_RANDOM_TIMEOUTS:
                continue
            timeouts += 1
        rows.append(row)
    return rows


def all_rows():
    rows = []
    for group in (upstream_cases(), feature_cases(), backtrack_cases(), grid_cases()):
        for case_id, hw, specs in group:
            rows.append(run_case(case_id, hw, specs))
    rows += random_cases()
    return rows
