#!/usr/bin/env bash
# The whole corpus DAG (dags/corpus.toml: ingest → segment → asr (Whisper base int8,
# beam 5) → english → asr_check (tiny.en, greedy) → quality → filter → shard) on the
# bench-asr audio (about 20 minutes of speech: scripts/bench-asr.sh's test audio), one
# process timed whole: per node wall time and audio seconds per second (the corpus's
# audio over the node's wall time), the whole run's real-time factor and peak RSS.
# Nodes run as `speechmill run` runs them by default, up to 3 at once (align, asr_check
# and quality side by side), so node times overlap; PARALLEL_NODES=1 runs them one
# after another, each node's time then its own.
#
#   bash scripts/bench-corpus.sh            # needs scripts/setup.sh and scripts/peers.sh
#   PARALLEL_NODES=1 bash scripts/bench-corpus.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
PEERS_PY="$CACHE/peers-venv/bin/python"
BIN="$REPO/target/debug/speechmill"
OUT="$(mktemp -d /tmp/speechmill-bench-corpus.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
[ -x "$PEERS_PY" ] || { echo "bench-corpus: run 'bash scripts/setup.sh && bash scripts/peers.sh' first" >&2; exit 1; }
cd "$REPO"

"$PEERS_PY" tests/peers/bench_faster_whisper.py prepare --cache "$CACHE" >/dev/null
PATHS="$(python3 -c 'import json,sys,os; b=sys.argv[1]; m=json.load(open(os.path.join(b,"manifest.json"))); print(json.dumps([os.path.join(b,x["file"]) for x in m]))' "$CACHE/bench-asr")"
echo "building speechmill..." >&2
cargo build -q --bin speechmill >&2

/usr/bin/time -f "%M %e" -o "$OUT/time" "$BIN" run dags/corpus.toml --store "$OUT/store" \
  --set "ingest.paths=$PATHS" --set "shard.out=$OUT/shards" \
  ${PARALLEL_NODES:+--parallel-nodes "$PARALLEL_NODES"} >"$OUT/run.txt"
read -r RSS_KB WALL <"$OUT/time"

AUDIO_S="$("$BIN" sql --store "$OUT/store" --format csv \
  "SELECT sum(d) FROM (SELECT DISTINCT source_id, source_duration_s AS d FROM segment)" | tail -1)"

python3 - "$OUT/store" "$RSS_KB" "$WALL" "$AUDIO_S" <<'PY'
import json, os, sys
store, rss_kb, wall, audio_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
nodes = ["ingest", "segment", "asr", "align", "english", "asr_check", "quality", "filter", "shard"]
at_once = os.environ.get("PARALLEL_NODES", "3 (default)")
print(f"corpus DAG on {audio_s / 60:.1f} min of audio ({os.cpu_count()} cores, nodes at once: {at_once})")
print(f"{'node':<10} {'wall s':>8} {'audio-s/s':>10} {'rows':>6} {'rejects':>8}")
for n in nodes:
    fp = json.load(open(os.path.join(store, n, "CURRENT.json")))["fingerprint"]
    m = json.load(open(os.path.join(store, n, fp, "_COMMITTED.json")))
    e = m["elapsed_s"]
    print(f"{n:<10} {e:>8.1f} {audio_s / e if e > 0 else float('inf'):>10.1f} {m['rows']:>6} {m['rejects']:>8}")
print(f"{'whole run':<10} {wall:>8.1f} {audio_s / wall:>10.1f}   (real-time factor {audio_s / wall:.1f}x; goal >= 10x)")
print(f"peak RSS {rss_kb / 1024:.0f} MiB")
PY
bash "$REPO/scripts/cpu-info.sh"
