#!/usr/bin/env bash
# The soak (docs/reliability.md): builds the release server and the soak driver, then runs
# server/examples/soak.rs on 127.0.0.1 with the given arguments (defaults: 3,000 nodes by
# 32 clients, 6 SIGKILLs, 300 slow clients, at most 240 s). Needs python3 (it reads every
# file back as eDeploy did). Exits non-zero when a check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p rdeploy-server --bin rdeploy --example soak
exec target/release/examples/soak --rdeploy target/release/rdeploy "$@"
