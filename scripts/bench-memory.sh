#!/usr/bin/env bash
# Peak RSS against corpus size: `speechmill run dags/corpus.toml --until $UNTIL` (default
# segment) on 1, 4 and 8 copies of the bench-asr audio (about 20 minutes of speech; each
# copy re-encoded with a slightly different gain, so no two files share bytes), fresh
# stores, GNU time's maximum resident set size. Flat memory means the last column does not
# grow with the hours. With UNTIL=asr the labels come from $ASR_MODEL (default
# whisper-tiny.en) at $ASR_PRECISION (default int8), language en.
#
#   bash scripts/bench-memory.sh                    # needs scripts/setup.sh and peers.sh
#   UNTIL=asr bash scripts/bench-memory.sh
#   UNTIL=asr COPIES="1 2" ASR_MODEL=whisper-base bash scripts/bench-memory.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
AUDIO="$CACHE/bench-asr"
UNTIL="${UNTIL:-segment}"
COPIES="${COPIES:-1 4 8}"
ASR_MODEL="${ASR_MODEL:-whisper-tiny.en}"
ASR_PRECISION="${ASR_PRECISION:-int8}"
OUT="$(mktemp -d /tmp/speechmill-bench-memory.XXXXXX)"
BIN="$REPO/target/debug/speechmill"

if ! ls "$AUDIO"/*.wav >/dev/null 2>&1; then
  PEERS_PY="$CACHE/peers-venv/bin/python"
  [ -x "$PEERS_PY" ] || { echo "bench-memory: $CACHE/peers-venv missing: run 'bash scripts/setup.sh && bash scripts/peers.sh'" >&2; exit 1; }
  "$PEERS_PY" tests/peers/bench_faster_whisper.py prepare --cache "$CACHE" >&2
fi
[ -x /usr/bin/time ] || { echo "bench-memory: GNU time is missing (apt-get install time)" >&2; exit 1; }
echo "building speechmill..." >&2
cargo build --bin speechmill >&2

max=$(for n in $COPIES; do echo "$n"; done | sort -n | tail -1)
for k in $(seq "$max"); do
  for f in "$AUDIO"/*.wav; do
    ffmpeg -nostdin -loglevel error -y -i "$f" -af "volume=$(python3 -c "print(1 - $k * 0.01)")" \
      "$OUT/$(basename "$f" .wav)-$k.wav"
  done
done

printf '%-7s %10s %8s %10s %14s\n' copies "audio h" rows "wall s" "peak RSS MB"
for n in $COPIES; do
  mkdir -p "$OUT/corpus-$n"
  for k in $(seq "$n"); do ln -f "$OUT"/*-"$k".wav "$OUT/corpus-$n/"; done
  summary="$( { /usr/bin/time -f "rss_kb %M wall %e" "$BIN" run dags/corpus.toml --store "$OUT/store-$n" \
    --set "ingest.paths=[\"$OUT/corpus-$n/*.wav\"]" --set "asr.model=$ASR_MODEL" \
    --set "asr.precision=$ASR_PRECISION" --set asr.language=en \
    --until "$UNTIL" 2>&1 >"$OUT/run-$n.txt"; } | tail -1)"
  rss=$(echo "$summary" | awk '{print $2}'); wall=$(echo "$summary" | awk '{print $4}')
  last=$(grep -E "^$UNTIL " "$OUT/run-$n.txt")
  rows=$(echo "$last" | awk '{print $5}'); hours=$(echo "$last" | awk '{print $7}')
  printf '%-7s %10s %8s %10s %14d\n' "$n" "$hours" "$rows" "$wall" "$((rss / 1024))"
done
echo "stores and logs: $OUT"
