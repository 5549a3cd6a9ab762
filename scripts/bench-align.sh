#!/usr/bin/env bash
# Word-boundary accuracy on speech with known word times (tests/peers/word_boundaries.py:
# words spoken one by one by espeak-ng and joined with known pauses, 8 sentences in five
# languages): speechmill's `align` (method ctc, and method whisper: the known text
# teacher-forced through Whisper base int8) and `asr`'s DTW word times (Whisper base
# int8, beam 5) against faster-whisper's `word_timestamps=True` on the same files.
# Prints median and p90 absolute boundary error per method.
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
params = { text_column = "text", method = "ctc" }

[nodes.align_whisper]
stage = "align"
inputs = ["segment"]
params = { text_column = "text", method = "whisper", whisper_model = "whisper-base", precision = "int8" }

[nodes.asr]
stage = "asr"
inputs = ["segment"]
params = { model = "whisper-base", precision = "int8", language = "auto", beam_size = 5 }
TOML
"$BIN" run "$OUT/dag.toml" --store "$OUT/store" >/dev/null
"$BIN" sql --store "$OUT/store" --format json "SELECT uri, words FROM align" >"$OUT/align.json"
"$BIN" sql --store "$OUT/store" --format json "SELECT uri, words FROM align_whisper" >"$OUT/align_whisper.json"
"$BIN" sql --store "$OUT/store" --format json "SELECT uri, words FROM asr" >"$OUT/asr.json"
"$PEERS_PY" tests/peers/word_boundaries.py score "$OUT/audio" \
  "speechmill align (ctc)=$OUT/align.json" \
  "speechmill align (whisper, base int8)=$OUT/align_whisper.json" \
  "speechmill asr DTW words (base int8)=$OUT/asr.json"

# Throughput of each aligner and of asr in the same run (the run record's per-node
# wall time and audio in): audio-seconds per second on this machine.
echo
"$BIN" inspect --store "$OUT/store" --json | python3 -c '
import json, sys
nodes = {n["node"]: n["latest_run"] for n in json.load(sys.stdin)}
print("%-16s%9s%9s%13s" % ("node", "audio s", "wall s", "x real time"))
for name in ("align", "align_whisper", "asr"):
    r = nodes[name]
    audio = (r["audio_hours_in"] or 0) * 3600
    print("%-16s%9.1f%9.2f%13.1f" % (name, audio, r["wall_s"], audio / r["wall_s"]))
'
