#!/usr/bin/env bash
# Role tree install and upgrade speed over loopback (docs/benchmarks.md, "Role trees").
#
#   tools/bench/role_tree.sh [FILES] [MIB] [RUNS]     # default: 20000 files, 1024 MiB, 5 runs
#
# Builds a tree of FILES files holding MIB MiB of random data (sizes spread from 1 KiB to a
# few MiB), then times, RUNS times each, into empty directories:
#   1. tar -cf - | tar -xf -        over a pipe (the floor: no network, no hashing);
#   2. rsync -aHAXS from an rsync daemon on 127.0.0.1 (eDeploy's transfer);
#   3. rdeploy-agent install from rdeploy serve on 127.0.0.1 (manifest already cached), with
#      the default 4 parallel streams and with --jobs 1.
# Then an upgrade where 1% of the files changed: bytes on the loopback interface and bytes
# the agent reports, against the bytes that changed (rsync daemon for comparison).
#
# Needs: cargo (release build of rdeploy-server and rdeploy-agent), python3, rsync, curl.
# Stops by itself (every step under `timeout`), kills what it started and removes its
# directory on exit, even on failure or Ctrl-C. RDEPLOY_BENCH_DIR sets where the data goes
# (default: a new directory under /tmp; it needs about 4x MIB of space).
set -euo pipefail

FILES=${1:-20000}
MIB=${2:-1024}
RUNS=${3:-5}
STEP_TIMEOUT=900

here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${RDEPLOY_BENCH_DIR:-/tmp}/rdeploy-tree-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*" >&2; }
t() { timeout "$STEP_TIMEOUT" "$@"; }
# Seconds (3 decimals) a command takes.
timed() {
    local s e
    s=$(date +%s.%N)
    t "$@" >/dev/null
    e=$(date +%s.%N)
    python3 -c "print(f'{$e - $s:.3f}')"
}
lo_bytes() { awk '/^ *lo:/ {print $2}' /proc/net/dev; }

say "building release binaries"
(cd "$here" && t cargo build --release -q -p rdeploy-server -p rdeploy-agent)
target_dir=$(cd "$here" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rdeploy="$target_dir/release/rdeploy"
agent="$target_dir/release/rdeploy-agent"

data="$work/data"
v1="$data/install/1/base"
say "generating $FILES files, $MIB MiB in $v1"
t python3 - "$v1" "$FILES" "$MIB" <<'EOF'
import os, random, sys
root, files, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
# Log-uniform sizes, scaled to the total.
raw = [2 ** rng.uniform(10, 22) for _ in range(files)]
scale = mib * 2**20 / sum(raw)
sizes = [max(1, int(r * scale)) for r in raw]
sizes[-1] += mib * 2**20 - sum(sizes)
block = os.urandom(8 * 2**20)
for i, size in enumerate(sizes):
    d = os.path.join(root, f"d{i // 500:03}", f"s{(i // 50) % 10}")
    os.makedirs(d, exist_ok=True)
    off = rng.randrange(0, len(block) - 1)
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        left = size
        while left:
            n = min(left, len(block) - off)
            f.write(block[off:off + n]); left -= n; off = 0
EOF
du -sh "$v1" >&2

# Version 2: a copy sharing the unchanged files (hard links across trees), with 1% of the
# files rewritten.
v2="$data/install/2/base"
mkdir -p "$data/install/2" "$data/metadata/1/base/2"
cp -al "$v1" "$v2"
: > "$data/metadata/1/base/2/exclude"
changed_bytes=$(t python3 - "$v2" "$FILES" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
rng = random.Random(7)
total = 0
for p in rng.sample(paths, max(1, files // 100)):
    size = os.path.getsize(p)
    os.unlink(p)  # break the link with version 1
    with open(p, "wb") as f:
        f.write(os.urandom(size))
    total += size
print(total)
EOF
)
say "version 2: 1% of the files rewritten, $changed_bytes bytes"

# Warm the page cache for the sources.
tar -C "$data" -cf - install | cat >/dev/null

say "starting rdeploy serve and an rsync daemon"
mkdir -p "$work/config"
cp -r "$here/examples/config/." "$work/config/"
"$rdeploy" serve --config-dir "$work/config" --data-dir "$data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^rdeploy: listening on //p' "$work/serve.out")
[ -n "$url" ] || { say "rdeploy serve did not start"; cat "$work/serve.err" >&2; exit 1; }
port=$((20000 + RANDOM % 20000))
cat >"$work/rsyncd.conf" <<EOF
use chroot = no
[install]
path = $data/install
read only = yes
uid = root
gid = root
EOF
rsync --daemon --no-detach --address=127.0.0.1 --port="$port" --config="$work/rsyncd.conf" --log-file="$work/rsyncd.log" &
pids+=($!)
sleep 0.5

cold=$(timed curl -sf -o /dev/null "$url/roles/base/1/manifest")
warm=$(timed curl -sf -o /dev/null "$url/roles/base/1/manifest")
curl -sf -o /dev/null "$url/roles/base/2/manifest"
say "manifest: first request (hashing) ${cold}s, cached ${warm}s"

declare -a T_TAR T_RSYNC T_RDEPLOY T_RDEPLOY1
d="$work/dst"
run_one() {
    rm -rf "$d"; mkdir -p "$d"; sync
    case $1 in
        tar) T_TAR+=("$(timed bash -c "tar -C '$v1' --numeric-owner -cf - . | tar -C '$d' --numeric-owner -xpf -")") ;;
        rsync) T_RSYNC+=("$(timed rsync -aHAXS --numeric-ids "rsync://127.0.0.1:$port/install/1/base/" "$d/")") ;;
        rdeploy) T_RDEPLOY+=("$(timed "$agent" upgrade --root "$d" --server "$url" install --role base --version 1)") ;;
        rdeploy1) T_RDEPLOY1+=("$(timed "$agent" upgrade --jobs 1 --root "$d" --server "$url" install --role base --version 1)") ;;
    esac
}
# The order rotates from run to run, so a slow moment of the machine does not always hit
# the same tool; rdeploy goes last in the last run (its tree is checked and upgraded below).
orders=("tar rsync rdeploy1 rdeploy" "rdeploy tar rdeploy1 rsync" "rsync rdeploy tar rdeploy1")
for run in $(seq "$RUNS"); do
    if [ "$run" = "$RUNS" ]; then order="tar rsync rdeploy1 rdeploy"; else order=${orders[$(( (run - 1) % 3 ))]}; fi
    for tool in $order; do run_one "$tool"; done
    say "run $run: tar|tar ${T_TAR[-1]}s, rsync daemon ${T_RSYNC[-1]}s, rdeploy ${T_RDEPLOY[-1]}s, rdeploy --jobs 1 ${T_RDEPLOY1[-1]}s"
done

# Check the last install: same files as the source.
(cd "$v1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/src.sum"
(cd "$work/dst" && find . -path ./var -prune -o -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/dst.sum"
cmp -s "$work/src.sum" "$work/dst.sum" || { say "installed tree differs from the source"; exit 1; }

# Upgrade 1 -> 2 with 1% changed.
before=$(lo_bytes)
s=$(date +%s.%N)
out=$(t "$agent" upgrade --root "$work/dst" upgrade 2)
e=$(date +%s.%N)
after=$(lo_bytes)
rd_time=$(python3 -c "print(f'{$e - $s:.2f}')")
rd_lo=$((after - before))
rd_reported=$(printf '%s\n' "$out" | sed -n 's/.*changes, \([0-9]*\) bytes transferred.*/\1/p')
say "$out"
rm -rf "$work/dst2"; mkdir -p "$work/dst2"
rsync -aHAXS --numeric-ids "rsync://127.0.0.1:$port/install/1/base/" "$work/dst2/"
before=$(lo_bytes)
s=$(date +%s.%N)
rs_stats=$(t rsync -aHAXS --numeric-ids --delete-after --stats "rsync://127.0.0.1:$port/install/2/base/" "$work/dst2/")
e=$(date +%s.%N)
rs_reported=$(printf '%s\n' "$rs_stats" | sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' | tr -d ,)
after=$(lo_bytes)
rs_time=$(python3 -c "print(f'{$e - $s:.2f}')")
rs_lo=$((after - before))
# The upgraded tree must be version 2 (the agent's records under var/ aside).
(cd "$v2" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/src.sum"
(cd "$work/dst" && find . -path ./var -prune -o -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/dst.sum"
cmp -s "$work/src.sum" "$work/dst.sum" || { say "upgraded tree differs from version 2"; exit 1; }
(cd "$work/dst2" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/dst2.sum"
cmp -s "$work/src.sum" "$work/dst2.sum" || { say "rsync's upgraded tree differs from version 2"; exit 1; }

python3 - "$FILES" "$MIB" "$changed_bytes" "$rd_lo" "$rd_reported" "$rs_lo" "$cold" "$warm" \
    "$rd_time" "$rs_time" "${T_TAR[*]}" "${T_RSYNC[*]}" "${T_RDEPLOY[*]}" "${T_RDEPLOY1[*]}" "$work" "$rs_reported" <<'EOF'
import sys, statistics as st
files, mib, changed, rd_lo, rd_rep, rs_lo, cold, warm, rd_time, rs_time = sys.argv[1:11]
tar, rs, rd, rd1 = ([float(x) for x in a.split()] for a in sys.argv[11:15])
where, rs_rep = sys.argv[15], sys.argv[16]
m = lambda xs: st.median(xs)
print(f"\nRole tree bench: {files} files, {mib} MiB, loopback, {len(tar)} runs (median; min in the ratios' brackets), in {where}")
print(f"  manifest: first request {cold} s (hashing), cached {warm} s")
print(f"  tar | tar (floor)   {m(tar):7.2f} s   runs {tar}")
print(f"  rsync daemon        {m(rs):7.2f} s   runs {rs}   ({m(rs)/m(tar):.2f}x tar [min {min(rs)/min(tar):.2f}x])")
print(f"  rdeploy install     {m(rd):7.2f} s   runs {rd}   ({m(rd)/m(tar):.2f}x tar [min {min(rd)/min(tar):.2f}x], {m(rd)/m(rs):.2f}x rsync)")
print(f"  rdeploy --jobs 1    {m(rd1):7.2f} s   runs {rd1}   ({m(rd1)/m(tar):.2f}x tar [min {min(rd1)/min(tar):.2f}x], {m(rd1)/m(rs):.2f}x rsync)")
changed = int(changed)
print(f"Upgrade, 1% of files changed ({changed} bytes):")
print(f"  rdeploy: {rd_time} s; agent reports {rd_rep} content bytes; loopback carried {rd_lo} bytes ({int(rd_lo)/changed:.2f}x the changed bytes)")
print(f"  rsync daemon: {rs_time} s; rsync reports {rs_rep} bytes received; loopback carried {rs_lo} bytes ({int(rs_lo)/changed:.2f}x)")
EOF
