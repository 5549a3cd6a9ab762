#!/usr/bin/env bash
# Word-boundary accuracy on speech with known word times (tests/peers/word_boundaries.py:
# words spoken one by one by espeak-ng and joined with known pauses, 8 sentences in five
# languages): speechmill's `align` (CTC) and `asr`'s DTW word times (Whisper base int8,
# beam 5, language given) against faster-whisper's `word_timestamps=True` on the same
# files. Prints median and p90 absolute boundary error per method.
#
#   bash scripts/bench-align.sh            # needs scripts/setup.sh and scripts/peers.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
export SPEECHMILL_CACHE="$CACHE"
PEERS_PY="$CACHE/peers-venv/bin/python"
BIN="$REPO/target/debug/speechmill"
OUT="$(mktemp -d /tmp/speechmill-bench-align.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
[ -x "$PEERS_PY" ] || { echo "bench-align: run 'bash scripts/setup.sh && bash scripts/peers.sh' first" >&2; exit 1; }
cd "$REPO"
cargo build -q --bin speechmill >&2

"$PEERS_PY" tests/peers/word_boundaries.py make "$OUT/audio"
cat >"$OUT/dag.toml" <<TOML
[nodes.ingest]
stage = "ingest"
params = { paths = ["$OUT/audio/list.jsonl"] }

[nodes.segment]
stage = "segment"
inputs = ["ingest"]
params = { max_segment_s = 30.0 }

[nodes.align]
stage = "align"
inputs = ["segment"]
params = { text_column = "text" }

[nodes.asr]
stage = "asr"
inputs = ["segment"]
params = { model = "whisper-base", precision = "int8", language = "auto", beam_size = 5 }
TOML
"$BIN" run "$OUT/dag.toml" --store "$OUT/store" >/dev/null
"$BIN" sql --store "$OUT/store" --format json "SELECT uri, words FROM align" >"$OUT/align.json"
"$BIN" sql --store "$OUT/store" --format json "SELECT uri, words FROM asr" >"$OUT/asr.json"
"$PEERS_PY" tests/peers/word_boundaries.py score "$OUT/audio" \
  "speechmill align (ctc)=$OUT/align.json" "speechmill asr DTW words (base int8)=$OUT/asr.json"
