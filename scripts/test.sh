#!/usr/bin/env bash
# speechmill tests: the setup step and the peer references (both idempotent, seconds when
# done; they run while the tests compile), then every test of the workspace. Extra arguments go to the test runner (e.g. a
# test-name filter), then deploy/validate.sh. SPEECHMILL_SKIP_PEERS=1 skips the peers
# (faster-whisper) step and the deploy checks, whose tools live in the peers venv.
#
#   bash scripts/test.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# The Debian packages first (the build links libopus); then the build runs beside the
# rest of setup and peers, which mostly wait on downloads and convert models.
bash scripts/setup.sh --system
( bash scripts/setup.sh && bash scripts/peers.sh ) &
prepare=$!
have_nextest=0
cargo nextest --version >/dev/null 2>&1 && have_nextest=1
build=0
if [ "$have_nextest" = 1 ]; then
  echo "[test] cargo nextest run --workspace --no-run (beside setup)"
  cargo nextest run --workspace --no-run || build=$?
else
  echo "[test] cargo test --workspace --no-run (beside setup)"
  cargo test --workspace --no-run || build=$?
fi
prepared=0
wait "$prepare" || prepared=$?
if [ "$prepared" -ne 0 ]; then
  echo "[test] FAILED: setup or peers (exit $prepared, see above)" >&2
  exit "$prepared"
fi
if [ "$build" -ne 0 ]; then
  echo "[test] FAILED: the build (exit $build, see above)" >&2
  exit "$build"
fi

status=0
if [ "$have_nextest" = 1 ]; then
  echo "[test] cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
  # nextest does not run doctests; run them even when a test above failed.
  echo "[test] cargo test --doc --workspace"
  cargo test --doc --workspace || status=$?
else
  echo "[test] cargo test --workspace"
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
# deploy/: manifests, Dockerfiles and scripts, offline (its tools live in the peers venv).
if [ "${SPEECHMILL_SKIP_PEERS:-0}" = 1 ]; then
  echo "[test] bash deploy/validate.sh: skipped (SPEECHMILL_SKIP_PEERS=1)"
else
  echo "[test] bash deploy/validate.sh"
  bash deploy/validate.sh || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "[test] FAILED (exit $status)" >&2
  exit "$status"
fi
echo "[test] all tests passed"
