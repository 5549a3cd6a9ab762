#!/usr/bin/env bash
# The README's demo command: set up, then run dags/demo.toml end to end, and
# dags/interleaved.toml (synthetic interleaved speech-text token shards).
# The build runs beside setup's downloads and model conversions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --system
bash scripts/setup.sh &
setup=$!
build=0
cargo build --bin speechmill || build=$?
wait "$setup"
[ "$build" -eq 0 ] || exit "$build"
./target/debug/speechmill run dags/demo.toml --store "${STORE:-store/demo}"
./target/debug/speechmill inspect --store "${STORE:-store/demo}"
./target/debug/speechmill run dags/interleaved.toml --store "${INTERLEAVED_STORE:-store/interleaved}"
echo "interleaved token shards: store/interleaved-shards/ (manifest.json, preview.jsonl)"
