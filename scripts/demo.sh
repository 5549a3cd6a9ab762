#!/usr/bin/env bash
# The README's demo command: set up, then run dags/demo.toml end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --bin speechmill
./target/debug/speechmill run dags/demo.toml --store "${STORE:-store/demo}"
./target/debug/speechmill inspect --store "${STORE:-store/demo}"
