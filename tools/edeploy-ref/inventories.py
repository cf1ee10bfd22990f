"""Realistic eDeploy inventories (what `hardware-detect` / eDeploy's detect emitted).

Each builder returns a list of 4-tuples. `n` makes a sibling machine of the
same model (other serial numbers, MAC addresses, addresses); n=0 is the one
written to tests/fixtures/hw/. Values are strings except where the agents
emitted ints (cpu counts, cores/threads, IPMI channel, ipv4-cidr, memory bank
count), as in real eDeploy uploads.
"""


def _mac(prefix, n, i):
    return "%s:%02x:%02x:%02x" % (prefix, (0x10 + n) & 0xFF, (0x20 + 7 * n) & 0xFF, i)


def _memory(banks_per_cpu, sockets, populated, size, clock, desc, vendor, product,
            serial_base, slot_fmt):
    out = []
    count = 0
    for cpu in range(sockets):
        for b in range(banks_per_cpu):
            bank = "bank:%d:%d" % (cpu, b)
            count += 1
            if b < populated:
                out += [
                    ("memory", bank, "size", str(size)),
                    ("memory", bank, "clock", str(clock)),
                    ("memory", bank, "description", desc),
                    ("memory", bank, "vendor", vendor),
                    ("memory", bank, "product", product),
                    ("memory", bank, "serial", "%s%02X%02X" % (serial_base, cpu, b)),
                    ("memory", bank, "slot", slot_fmt % (cpu + 1, b + 1)),
                ]
            else:
                out += [
                    ("memory", bank, "description", "DIMM Synchronous [empty]"),
                    ("memory", bank, "vendor", "UNKNOWN"),
                    ("memory", bank, "product", "NOT AVAILABLE"),
                    ("memory", bank, "slot", slot_fmt % (cpu + 1, b + 1)),
                ]
    total = size * populated * sockets
    out.append(("memory", "total", "size", str(total)))
    out.append(("memory", "banks", "count", count))
    return out


def _cpus(sockets, product, freq, cores, threads, flags):
    out = []
    for s in range(sockets):
        p = "physical_%d" % s
        out += [
            ("cpu", p, "physid", str(400 + s)),
            ("cpu", p, "product", product),
            ("cpu", p, "vendor", "Intel Corp."),
            ("cpu", p, "frequency", str(freq)),
            ("cpu", p, "clock", "100000000"),
            ("cpu", p, "cores", cores),
            ("cpu", p, "enabled_cores", cores),
            ("cpu", p, "threads", threads),
            ("cpu", p, "flags", flags),
        ]
    out.append(("cpu", "physical", "number", sockets))
    out.append(("cpu", "logical", "number", sockets * threads))
    return out


def _nic(name, mac, businfo, vendor, product, driver, fw, link, speed, ipv4=None,
         netmask="255.255.255.0", cidr=24, network=None):
    out = [
        ("network", name, "businfo", businfo),
        ("network", name, "vendor", vendor),
        ("network", name, "product", product),
        ("network", name, "size", "1000000000" if speed.startswith("1G") else "10000000000"),
        ("network", name, "capacity", "1000000000" if speed.startswith("1G") else "10000000000"),
        ("network", name, "serial", mac),
    ]
    if ipv4:
        out += [
            ("network", name, "ipv4", ipv4),
            ("network", name, "ipv4-netmask", netmask),
            ("network", name, "ipv4-cidr", cidr),
            ("network", name, "ipv4-network", network),
        ]
    out += [
        ("network", name, "link", "yes" if link else "no"),
        ("network", name, "driver", driver),
        ("network", name, "firmware", fw),
    ]
    if link:
        out += [
            ("network", name, "duplex", "full"),
            ("network", name, "speed", speed),
            ("network", name, "latency", "0"),
            ("network", name, "autonegotiation", "on"),
        ]
    else:
        out += [("network", name, "autonegotiation", "on")]
    return out


def _ipmi_lan(ip, mac, gw):
    return [
        ("ipmi", "lan", "set-in-progress", "Set Complete"),
        ("ipmi", "lan", "ip-address-source", "Static Address"),
        ("ipmi", "lan", "ip-address", ip),
        ("ipmi", "lan", "subnet-mask", "255.255.255.0"),
        ("ipmi", "lan", "mac-address", mac),
        ("ipmi", "lan", "default-gateway-ip", gw),
        ("ipmi", "lan", "802.1q-vlan-id", "Disabled"),
        ("ipmi", "lan", "bmc-arp-control", "ARP Responses Enabled, Gratuitous ARP Disabled"),
    ]


def _kernel(version, os_version):
    return [
        ("system", "os", "vendor", "CentOS"),
        ("system", "os", "version", os_version),
        ("system", "kernel", "version", version),
        ("system", "kernel", "arch", "x86_64"),
        ("system", "kernel", "cmdline",
         "initrd=initrd.pxe SERV=10.1.0.2 HSERV=10.1.0.2 HTTP_PATH=/edeploy/ ONSUCCESS=kexec "
         "ONFAILURE=console VERBOSE=1 UPLOAD_LOG=1 BOOTIF=01-fake"),
    ]


XEON_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
              "dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc "
              "arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc aperfmperf eagerfpu pni "
              "pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 fma cx16 xtpr pdcm pcid dca "
              "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand "
              "lahf_lm abm ida arat epb pln pts dtherm tpr_shadow vnmi flexpriority ept vpid "
              "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm xsaveopt cqm_llc cqm_occup_llc")


def hp_dl360_gen9(n=0):
    serial = "CZJ52%05d" % (10421 + 17 * n)
    macs = [_mac("14:02:ec", n, 0x40 + i) for i in range(4)]
    hw = [
        ("hpa", "slots", "count", "1"),
        ("hpa", "slot_0", "type", "Smart Array P440ar"),
        ("hpa", "slot_0", "fw_version", "3.56"),
        ("hpa", "slot_0", "cache_status", "OK"),
        ("hpa", "slot_0", "battery_status", "OK"),
    ]
    for i in range(1, 5):
        d = "1I:1:%d" % i
        hw += [("disk", d, "type", "SAS"), ("disk", d, "slot", "0"),
               ("disk", d, "size", "300"), ("disk", d, "rpm", "10000")]
    hw += [("disk", "hpa", "size", "1200.00"), ("disk", "hpa", "count", "4")]
    for name, wwn in (("sda", "600508b1001c5e4f"), ("sdb", "600508b1001c2a91")):
        hw += [
            ("disk", name, "size", "299"),
            ("disk", name, "vendor", "HP"),
            ("disk", name, "model", "LOGICAL VOLUME"),
            ("disk", name, "rev", "5.52"),
            ("disk", name, "scheduler", "deadline"),
            ("disk", name, "Write Cache Enable", "0"),
            ("disk", name, "Read Cache Disable", "0"),
            ("disk", name, "wwn-id", "wwn-0x%s%04x" % (wwn, n)),
        ]
    hw += [("disk", "logical", "count", "2")]
    hw += [
        ("system", "product", "serial", serial),
        ("system", "product", "name", "ProLiant DL360 Gen9 (755258-B21)"),
        ("system", "product", "vendor", "HP"),
        ("system", "product", "version", ""),
        ("system", "product", "uuid", "30343536-3138-5a43-4a35-3231%08X" % (0x30344241 + n)),
        ("system", "motherboard", "name", "ProLiant DL360 Gen9"),
        ("system", "motherboard", "vendor", "HP"),
        ("system", "motherboard", "serial", "PWARA0ARH8%03d" % (100 + n)),
        ("system", "ipmi", "channel", 2),
        ("firmware", "bios", "version", "P89"),
        ("firmware", "bios", "date", "12/27/2015"),
        ("firmware", "bios", "vendor", "HP"),
    ]
    hw += _ipmi_lan("10.1.1.%d" % (21 + n), _mac("14:02:ec", n, 0x70), "10.1.1.1")
    hw += _memory(8, 2, 4, 17179869184, 2133000000, "DIMM DDR4 Synchronous 2133 MHz (0.5 ns)",
                  "HP", "752369-081", "4C1A", "PROC %d DIMM %d")
    hw += _cpus(2, "Intel(R) Xeon(R) CPU E5-2650 v3 @ 2.30GHz", 2300000000, 10, 20, XEON_FLAGS)
    for i, (name, mac) in enumerate(zip(("eno1", "eno2", "eno3", "eno4"), macs)):
        hw += _nic(name, mac, "pci@0000:02:00.%d" % i, "Broadcom Corporation",
                   "NetXtreme BCM5719 Gigabit Ethernet PCIe", "tg3", "5719-v1.45 NCSI v1.3.12.0",
                   link=(i < 2), speed="1Gbit/s",
                   ipv4=("10.1.0.%d" % (101 + n)) if i == 0 else None, network="10.1.0.0")
    hw += _kernel("3.10.0-327.el7.x86_64", "7.2.1511")
    return hw


def dell_r630(n=0, nics_up=4):
    n = n + (40 if nics_up == 2 else 0)  # the 2-NIC machines are other boxes
    serial = "%dFK%02dZ1" % (4 + n % 5, 10 + n)
    macs = [_mac("18:66:da", n, 0x90 + i) for i in range(4)]
    hw = [
        ("megaraid", "Controller_0", "name", "PERC H730 Mini"),
        ("megaraid", "Controller_0", "serial_number", "5CF0%04d" % (2173 + n)),
        ("megaraid", "Controller_0", "fw_package_build", "25.3.0.0016"),
        ("megaraid", "Controller_0", "memory_size", "1024MB"),
        ("megaraid", "Controller_0", "BBU", "Present"),
    ]
    for i in range(8):
        d = "\\Enclosure32\\Slot%d" % i
        hw += [("pdisk", d, "ctrl", "0"), ("pdisk", d, "type", "SAS"),
               ("pdisk", d, "size", "558.911")]
    hw += [("pdisk", "all", "size", "4471.29"), ("disk", "megaraid", "count", "8")]
    for i in range(8):
        name = "sd" + "abcdefgh"[i]
        hw += [
            ("disk", name, "size", "599"),
            ("disk", name, "vendor", "DELL"),
            ("disk", name, "model", "PERC H730 Mini"),
            ("disk", name, "rev", "4.26"),
            ("disk", name, "scheduler", "deadline"),
            ("disk", name, "Write Cache Enable", "1"),
            ("disk", name, "Read Cache Disable", "0"),
            ("disk", name, "wwn-id", "wwn-0x61866da0%07x%02d00" % (0x5fc2a1 + n, i)),
        ]
    hw += [("disk", "logical", "count", "8")]
    hw += [
        ("system", "product", "serial", serial),
        ("system", "product", "name", "PowerEdge R630 (SKU=NotProvided;ModelName=PowerEdge R630)"),
        ("system", "product", "vendor", "Dell Inc."),
        ("system", "product", "uuid", "4C4C4544-0046-4B10-8031-%012X" % (0xB4C04F4A3132 + n)),
        ("system", "motherboard", "name", "02C2CP"),
        ("system", "motherboard", "vendor", "Dell Inc."),
        ("system", "motherboard", "version", "A03"),
        ("system", "ipmi", "channel", 1),
        ("firmware", "bios", "version", "2.3.4"),
        ("firmware", "bios", "date", "11/08/2016"),
        ("firmware", "bios", "vendor", "Dell Inc."),
    ]
    hw += _ipmi_lan("10.1.2.%d" % (31 + n),
                    _mac("18:66:da", n, 0xa0), "10.1.2.1")
    hw += _memory(5, 2, 4, 16777216 * 1024, 2400000000,
                  "DIMM DDR4 Synchronous Registered (Buffered) 2400 MHz (0.4 ns)",
                  "00CE00B300CE", "M393A2K43BB1-CRC", "3B8E", "A%d B%d")
    hw += _cpus(2, "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz", 2200000000, 10, 20, XEON_FLAGS)
    names = ("em1", "em2", "em3", "em4")
    for i, (name, mac) in enumerate(zip(names, macs)):
        tenG = i < 2
        hw += _nic(name, mac, "pci@0000:01:00.%d" % i if tenG else "pci@0000:07:00.%d" % (i - 2),
                   "Intel Corporation",
                   "82599ES 10-Gigabit SFI/SFP+ Network Connection" if tenG
                   else "I350 Gigabit Network Connection",
                   "ixgbe" if tenG else "igb", "0x800007f4" if tenG else "1.67, 0x80000fab",
                   link=(i < nics_up), speed="10Gbit/s" if tenG else "1Gbit/s",
                   ipv4=("10.1.0.%d" % (151 + n)) if i == 0 else None,
                   network="10.1.0.0")
    hw += _kernel("3.10.0-514.el7.x86_64", "7.3.1611")
    return hw


def kvm_guest(n=0, i440fx=False):
    n = n + (20 if i440fx else 0)  # the i440fx guests are other VMs
    mac = "52:54:00:%02x:%02x:%02x" % (0x1b, 0x3c + n, 0x5d + 3 * n)
    hw = []
    for name, size in (("vda", "40"), ("vdb", "20"), ("vdc", "20")):
        hw += [("disk", name, "size", size),
               ("disk", name, "vendor", "0x1af4"),
               ("disk", name, "scheduler", "mq-deadline" if not i440fx else "none")]
    hw += [("disk", "logical", "count", "3")]
    hw += [
        ("system", "product", "name", "Standard PC (i440FX + PIIX, 1996)" if i440fx else "KVM"),
        ("system", "product", "vendor", "QEMU"),
        ("system", "product", "version", "pc-i440fx-2.11" if i440fx else "RHEL 7.0.0 PC (i440FX + PIIX, 1996)"),
        ("system", "product", "uuid", "5d1e6c2a-8f43-4b1e-9c7a-%012x" % (0x2c5e3f1a9b00 + n)),
        ("system", "ipmi-fake", "channel", "0"),
        ("firmware", "bios", "version", "1.10.2-1ubuntu1" if i440fx else "seabios-1.9.1-5.el7"),
        ("firmware", "bios", "date", "04/01/2014"),
        ("firmware", "bios", "vendor", "SeaBIOS"),
        ("memory", "total", "size", "4294967296"),
        ("memory", "bank:0", "size", "4294967296"),
        ("memory", "bank:0", "description", "DIMM RAM"),
        ("memory", "bank:0", "vendor", "QEMU"),
        ("memory", "bank:0", "slot", "DIMM 0"),
        ("memory", "banks", "count", 1),
    ]
    for s in range(2):
        p = "physical_%d" % s
        hw += [
            ("cpu", p, "physid", str(400 + s)),
            ("cpu", p, "product", "Intel Xeon E3-12xx v2 (Ivy Bridge)" if not i440fx
             else "QEMU Virtual CPU version 2.5+"),
            ("cpu", p, "vendor", "Intel Corp."),
            ("cpu", p, "frequency", "2000000000"),
            ("cpu", p, "cores", 1),
            ("cpu", p, "enabled_cores", 1),
            ("cpu", p, "threads", 1),
        ]
    hw += [("cpu", "physical", "number", 2), ("cpu", "logical", "number", 2)]
    hw += [
        ("network", "eth0", "businfo", "virtio@0"),
        ("network", "eth0", "serial", mac),
        ("network", "eth0", "ipv4", "192.168.122.%d" % (100 + n)),
        ("network", "eth0", "ipv4-netmask", "255.255.255.0"),
        ("network", "eth0", "ipv4-cidr", 24),
        ("network", "eth0", "ipv4-network", "192.168.122.0"),
        ("network", "eth0", "link", "yes"),
        ("network", "eth0", "driver", "virtio_net"),
    ]
    hw += [
        ("system", "kernel", "version", "3.10.0-693.el7.x86_64"),
        ("system", "kernel", "arch", "x86_64"),
    ]
    return hw


# name of the fixture file -> builder of machine n
FIXTURES = [
    ("hp-dl360-gen9", lambda n=0: hp_dl360_gen9(n)),
    ("dell-r630", lambda n=0: dell_r630(n, nics_up=4)),
    ("dell-r630-2nics-up", lambda n=0: dell_r630(n, nics_up=2)),
    ("kvm-guest", lambda n=0: kvm_guest(n, i440fx=False)),
    ("kvm-guest-i440fx", lambda n=0: kvm_guest(n, i440fx=True)),
]


def to_json_text(hw):
    """One 4-element array per line: a readable, diff-friendly JSON file."""
    import json
    rows = ["  " + json.dumps(list(t), ensure_ascii=False) for t in hw]
    return "[\n" + ",\n".join(rows) + "\n]\n"
