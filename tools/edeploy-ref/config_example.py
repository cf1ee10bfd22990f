"""The eDeploy-style example config dir (tests/fixtures/config/edeploy-example/).

Hand-written the way operators wrote eDeploy config dirs: Python literals
with comments, `$var`, `$$var`, `$var=func(...)`, `func(...)`, a CMDB written
as `generate({...})` and one written as an explicit list, no CMDB for vm.
"""

import os

STATE = "[('hp', 4), ('dell', 2), ('vm', '*')]\n"

HP_SPECS = """\
# -*- python -*-
# HP ProLiant DL360 Gen9 compute nodes: Smart Array P440ar with two RAID1
# logical drives, 2 sockets, at least 64 GiB, provisioning NIC on 10.1.0.0/16.
[
    ('hpa', 'slot_0', 'type', 'Smart Array P440ar'),
    ('disk', 'logical', 'count', '2'),
    # the logical drives (not the 1I:1:x physical disks, which are 300GB too)
    ('disk', '$disk1', 'model', 'LOGICAL VOLUME'),
    ('disk', '$disk1', 'size', 'gt(200)'),
    ('disk', '$disk2', 'model', 'LOGICAL VOLUME'),
    ('disk', '$disk2', 'size', 'gt(200)'),
    ('system', 'product', 'vendor', 'HP'),
    ('system', 'product', 'name', 'regexp(^ProLiant DL360 Gen9)'),
    ('system', 'product', 'serial', '$serial'),
    ('system', 'ipmi', 'channel', '$ipmi_channel'),   # an int (2) on these boxes
    ('cpu', 'physical', 'number', 2),                   # ints are compared as is
    ('cpu', 'physical_0', 'cores', '$cores'),
    ('memory', 'total', 'size', 'ge(68719476736)'),
    # provisioning interface: on the admin network, link up
    ('network', '$eth', 'ipv4', 'network(10.1.0.0/16)'),
    ('network', '$eth', 'serial', '$mac'),
    ('network', '$eth', 'link', 'yes'),
    # second 1G port, cabled to the storage switch
    ('network', '$eth1', 'link', 'yes'),
    ('network', '$eth1', 'serial', '$mac1=regexp(^14:02:ec:)'),
]
"""

HP_CMDB = """\
generate({'gateway': '10.1.0.1',
          'netmask': '255.255.255.0',
          'ip': '10.1.0.11-14',
          'hostname': 'compute01-04',
          'ipmi_ip': '10.1.1.11-14',
          'ipmi_netmask': '255.255.255.0',
          'domainname': 'lab.example.com',
          })
"""

DELL_SPECS = """\
# -*- python -*-
# Dell PowerEdge R630 storage nodes: PERC H730 Mini, 8 x 600GB single-disk
# RAID0 volumes, two 10G ports up. The machine is identified by its serial
# number ($$serial): only the serials listed in dell.cmdb are accepted.
[
    ('system', 'product', 'vendor', 'Dell Inc.'),
    ('system', 'product', 'name', 'regexp(PowerEdge R630)'),
    ('system', 'product', 'serial', '$$serial'),
    ('megaraid', 'Controller_0', 'name', 'in("PERC H730 Mini", "PERC H730P Mini")'),
    ('disk', 'megaraid', 'count', '8'),
    ('disk', '$disk1', 'size', 'ge(500)'),
    ('disk', '$disk2', 'size', 'ge(500)'),
    ('disk', '$disk3', 'size', 'ge(500)'),
    ('disk', '$disk4', 'size', 'ge(500)'),
    ('disk', '$disk5', 'size', 'ge(500)'),
    ('disk', '$disk6', 'size', 'ge(500)'),
    ('disk', '$disk7', 'size', 'ge(500)'),
    ('disk', '$disk8', 'size', 'ge(500)'),
    ('cpu', 'logical', 'number', '$ncpus'),
    ('memory', 'total', 'size', 'range(100000000000, 300000000000)'),
    # admin NIC then a second port with link
    ('network', '$eth', 'ipv4', 'network(10.1.0.0/16)'),
    ('network', '$eth', 'serial', '$mac'),
    ('network', '$eth', 'link', 'yes'),
    ('network', '$eth1', 'link', 'yes'),
    ('network', '$eth1', 'driver', 'ixgbe'),
    ('ipmi', 'lan', 'ip-address', '$ipmi_ip=network(10.1.2.0/24)'),
]
"""

DELL_CMDB = """\
# Dell storage nodes, one entry per known chassis serial number
[{'serial': '4FK10Z1',
  'hostname': 'storage01',
  'ip': '10.1.0.21',
  'gateway': '10.1.0.1',
  'netmask': '255.255.255.0'},
 {'serial': '5FK11Z1',
  'hostname': 'storage02',
  'ip': '10.1.0.22',
  'gateway': '10.1.0.1',
  'netmask': '255.255.255.0'},
 {'serial': '4FK50Z1',
  'hostname': 'storage03',
  'ip': '10.1.0.23',
  'gateway': '10.1.0.1',
  'netmask': '255.255.255.0'},
]
"""

VM_SPECS = """\
# -*- python -*-
# any KVM/QEMU guest on libvirt's default network (no CMDB: addresses by DHCP)
[
    ('system', 'product', 'vendor', 'QEMU'),
    ('system', 'product', 'name', 'or(regexp(^KVM$), regexp(^Standard PC))'),
    ('disk', '$disk', 'size', 'ge(20)'),
    ('disk', '$disk', 'vendor', '0x1af4'),
    ('disk', '$disk2', 'vendor', '0x1af4'),
    ('network', 'eth0', 'serial', '$mac=regexp(^52:54:00:)'),
    ('network', 'eth0', 'ipv4', '$ip=network(192.168.122.0/24)'),
    ('memory', 'total', 'size', 'ge(2147483648)'),
]
"""

CONFIGURE = {
    "hp": """\
// configure for hp (Rhai placeholder; eDeploy used Python here)
let disk = var["disk1"];
let eth = var["eth"];
print(`hp: ${var["hostname"]} on /dev/${disk}, ${eth} = ${var["ip"]}`);
""",
    "dell": """\
// configure for dell (Rhai placeholder)
let disk = var["disk1"];
let data_disks = [var["disk2"], var["disk3"], var["disk4"], var["disk5"],
                  var["disk6"], var["disk7"], var["disk8"]];
print(`dell: ${var["hostname"]} root on /dev/${disk}, ${data_disks.len()} data disks`);
""",
    "vm": """\
// configure for vm (Rhai placeholder)
let disk = var["disk"];
print(`vm: ${var["mac"]} root on /dev/${disk}`);
""",
}

FILES = {
    "state": STATE,
    "hp.specs": HP_SPECS,
    "hp.cmdb": HP_CMDB,
    "hp.configure": CONFIGURE["hp"],
    "dell.specs": DELL_SPECS,
    "dell.cmdb": DELL_CMDB,
    "dell.configure": CONFIGURE["dell"],
    "vm.specs": VM_SPECS,
    "vm.configure": CONFIGURE["vm"],
}


def write(directory):
    os.makedirs(directory, exist_ok=True)
    for name, text in FILES.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
