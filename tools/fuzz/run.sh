#!/usr/bin/env bash
# Runs rdeploy's cargo-fuzz targets (fuzz/fuzz_targets/) one after the other.
#
#   tools/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; no TARGET means all of them (`cargo fuzz list`).
# Builds with nightly (optimized, with debug assertions and overflow checks), installs
# cargo-fuzz when it is missing, and runs each target as one process (libFuzzer's single
# job: the build machines are shared) from its corpus fuzz/corpus/<target>/ (seeded from
# the fixtures by tools/fuzz/seed.py when missing). After a run the corpus is minimized
# over its old and new inputs (libFuzzer's -merge): it stays small; commit it. A crash, a timeout (an input
# running over FUZZ_TIMEOUT seconds, default 20) or an out-of-memory (over FUZZ_RSS_MB,
# default 2048) leaves its input in fuzz/artifacts/<target>/ and makes the script exit 1
# after the other targets ran; reproduce with
#   cd fuzz && cargo +nightly fuzz run -O -a <target> artifacts/<target>/<file>
# Not part of the test run (scripts/test).
set -euo pipefail

secs=${1:-60}
shift || true
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
	exit 2
	;;
esac
timeout_s=${FUZZ_TIMEOUT:-20}
rss_mb=${FUZZ_RSS_MB:-2048}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
	echo "== installing the nightly toolchain (cargo fuzz needs it)"
	rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz"
	cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets"
cargo +nightly fuzz build -O -a

if [ $# -gt 0 ]; then
	targets=("$@")
else
	mapfile -t targets < <(cargo +nightly fuzz list)
fi

bin_dir=$(ls -d target/*/release | head -n 1)
failed=()
summary=()
for t in "${targets[@]}"; do
	corpus=corpus/$t
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
		echo "== seeding $corpus"
		python3 "$root/tools/fuzz/seed.py" "$root/fuzz/corpus" >/dev/null
	fi
	new=target/new-corpus/$t
	rm -rf "$new"
	mkdir -p "$new" "artifacts/$t" target/logs
	log=target/logs/$t.log
	# libFuzzer also leaves slow-unit-* files (inputs over 10 s): information, not failures.
	failures() { find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) "$@"; }
	before=$(failures | wc -l)
	touch "$log.start"
	echo "== $t: ${secs}s from $(find "$corpus" -type f | wc -l) inputs (log: fuzz/$log)"
	status=0
	cargo +nightly fuzz run -O -a "$t" "$new" "$corpus" -- \
		-max_total_time="$secs" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
		-print_final_stats=1 >"$log" 2>&1 || status=$?
	after=$(failures | wc -l)
	stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
	runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
	if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
		echo "!! $t: FAILED (exit $status); new artifacts:"
		failures -newer "$log.start"
		grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 5 || true
		failed+=("$t")
		summary+=("$t: FAILED ${runs:-?} runs")
	else
		# The corpus becomes the smallest set of old and new inputs that covers what they
		# all cover (libFuzzer's -set_cover_merge into an empty directory).
		min=target/min-corpus/$t
		rm -rf "$min"
		mkdir -p "$min"
		"$bin_dir/$t" -set_cover_merge=1 -timeout="$timeout_s" -rss_limit_mb="$rss_mb" "$min" "$corpus" "$new" >>"$log" 2>&1
		rm -rf "$corpus"
		mv "$min" "$corpus"
		summary+=("$t: ok, ${runs:-?} runs; $stats")
	fi
	rm -rf "$new"
done

echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "crashes in: ${failed[*]}" >&2
	exit 1
fi
