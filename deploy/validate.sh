#!/usr/bin/env bash
# Offline checks of deploy/ (no docker, no cluster needed): `bash -n` on every shell
# script; every Kubernetes manifest against the Kubernetes JSON schema, strict
# (kubernetes-validate), plus speechmill's own rules (subcommands and flags, executors
# pointing at the scheduler Service and advertising their pod IP, GPU limits on the CUDA
# image, the S3 Secret); every Dockerfile's structure (dockerfile-parse: pinned FROMs,
# COPY sources present and not .dockerignored, stages named before use, a speechmill
# subcommand as the entry point). One line per file; exits 1 on any failure.
#
#   bash deploy/validate.sh
#
# kubernetes-validate and dockerfile-parse are pinned in scripts/peers.sh (peers venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
PY="$CACHE/peers-venv/bin/python"
cd "$REPO"

status=0
for f in deploy/*.sh scripts/*.sh; do
  if err="$(bash -n "$f" 2>&1)"; then
    echo "ok    $f (bash -n)"
  else
    echo "FAIL  $f: bash -n: $(printf '%s' "$err" | tr '\n' ' ')"
    status=1
  fi
done

if ! "$PY" -c 'import kubernetes_validate, dockerfile_parse, yaml' 2>/dev/null; then
  echo "FAIL  deploy/validate.py: $PY lacks kubernetes-validate or dockerfile-parse: run 'bash scripts/peers.sh'"
  exit 1
fi
"$PY" deploy/validate.py --repo "$REPO" || status=1

if [ "$status" -ne 0 ]; then
  echo "[deploy] validation FAILED" >&2
  exit 1
fi
echo "[deploy] manifests, Dockerfiles and scripts valid"
