#!/usr/bin/env bash
# `rdeploy match --config-dir` as one process per node (the eDeploy CGI way) with CMDBs
# of 1,000 and 10,000 entries: mean wall time per call while the CMDB fills up.
# Usage: tools/bench/match_per_process.sh [CALLS]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-200}
cargo build -q --release -p rdeploy-server
bin=$PWD/target/release/rdeploy
for n in 1000 10000; do
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  echo "[('vm', '*')]" > "$dir/state"
  echo "[('system', 'product', 'serial', '\$serial'), ('network', '\$eth', 'serial', '\$mac')]" > "$dir/vm.specs"
  last=$((n / 250))
  # n entries: 10.<a>.<b>.1-250 over enough /24s.
  echo "generate({'ip': '10.0.0-$((last - 1)).1-250', 'hostname': 'node00001-$(printf '%05d' "$n")'})" > "$dir/vm.cmdb"
  echo "// vm" > "$dir/vm.configure"
  # First call expands generate() and rewrites the file: not timed.
  printf "[('system','product','serial','S0'),('network','eth0','serial','m0')]" > "$dir/hw"
  "$bin" match --config-dir "$dir" "$dir/hw" >/dev/null
  start=$(date +%s%N)
  for i in $(seq 1 "$calls"); do
    printf "[('system','product','serial','S%d'),('network','eth0','serial','m%d')]" "$i" "$i" > "$dir/hw"
    "$bin" match --config-dir "$dir" "$dir/hw" >/dev/null
  done
  end=$(date +%s%N)
  echo "cmdb entries: $n  calls: $calls  mean per call: $(( (end - start) / calls / 1000 )) us"
  rm -rf "$dir"
  trap - EXIT
done
