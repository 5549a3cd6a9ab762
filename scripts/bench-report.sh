#!/usr/bin/env bash
# The run report on a store of about 1,000 segments: 1,000 espeak-ng utterances in six
# languages (speed and pitch varied) with their texts → ingest → segment → align
# (CTC, the list's own text) → filter (duration, alignment score, unaligned words),
# which fills the report's every part but the ASR columns in a minute or two (the
# corpus DAG's Whisper nodes would take a quarter of an hour on 1,000 short
# segments), then `speechmill report` timed, and the page
# loaded in headless Chromium (tests/peers/report_browser.py): load time (navigation
# start to the end of the load event), size, charts drawn. Goals: load < 2 s, < 10 MB.
#
#   bash scripts/bench-report.sh            # needs scripts/setup.sh and scripts/peers.sh
#   N=300 bash scripts/bench-report.sh      # fewer utterances
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
PEERS_PY="$CACHE/peers-venv/bin/python"
BIN="$REPO/target/debug/speechmill"
N="${N:-1000}"
OUT="${KEEP:-$(mktemp -d /tmp/speechmill-bench-report.XXXXXX)}"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$OUT"' EXIT
[ -x "$PEERS_PY" ] || { echo "bench-report: run 'bash scripts/setup.sh && bash scripts/peers.sh' first" >&2; exit 1; }
cd "$REPO"
echo "building speechmill..." >&2
cargo build -q --bin speechmill >&2

# N utterances, each its own file: sentences from a pool with the index spoken, so
# every file differs (ingest keeps one copy of identical bytes).
mkdir -p "$OUT/audio"
python3 - "$OUT/audio" "$N" <<'PY'
import json, os, random, subprocess, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
voices = {
    "en": ["The committee will publish its findings next week", "Please keep the receipt until the repair is done",
           "Rain is expected over the hills this evening", "She read the letter twice before answering"],
    "de": ["Der Zug nach Berlin hat heute Verspätung", "Wir treffen uns morgen früh vor dem Rathaus"],
    "fr": ["Le marché ouvre tous les jours à sept heures", "Nous avons visité le musée pendant les vacances"],
    "es": ["El tren sale de la estación a las ocho", "Mi hermana trabaja en un hospital del centro"],
    "it": ["La biblioteca resta aperta fino a sera", "Abbiamo mangiato una pizza in piazza"],
    "pt": ["O ônibus passa pela praça a cada meia hora", "Eles compraram frutas na feira de domingo"],
}
langs = list(voices)
rows = []
for i in range(n):
    lang = langs[0] if rng.random() < 0.5 else rng.choice(langs[1:])
    text = f"{rng.choice(voices[lang])}. {i}."
    path = os.path.join(out, f"u{i:05d}.wav")
    subprocess.run(["espeak-ng", "-v", lang, "-s", str(rng.randint(140, 190)), "-p", str(rng.randint(30, 70)),
                    "-w", path, text], check=True)
    rows.append({"uri": path, "language": lang, "text": text})
with open(os.path.join(out, "list.jsonl"), "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
PY

cat >"$OUT/report-bench.toml" <<TOML
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

[nodes.filter]
stage = "filter"
inputs = ["align"]
params = { rules = [
  { name = "duration", keep = "duration_s BETWEEN 1.0 AND 30.0" },
  { name = "alignment", keep = "align_score >= -3.0" },
  { name = "unaligned", keep = "unaligned_words = 0" },
] }
TOML
START=$(date +%s.%N)
"$BIN" run "$OUT/report-bench.toml" --store "$OUT/store" >"$OUT/run.txt"
RUN_S=$(python3 -c "import time,sys; print(f'{time.time() - float(sys.argv[1]):.0f}')" "$START")
SEGMENTS="$("$BIN" sql --store "$OUT/store" --format csv "SELECT count(*) FROM segment" | tail -1)"

/usr/bin/time -f "%e %M" -o "$OUT/report.time" "$BIN" report --store "$OUT/store" --out "$OUT/report.html" >"$OUT/report.txt"
read -r REPORT_S REPORT_RSS_KB <"$OUT/report.time"
"$PEERS_PY" tests/peers/report_browser.py --html "$OUT/report.html" --screenshot "$OUT/report.png" >"$OUT/browser.json"
for _ in 1 2; do
  "$PEERS_PY" tests/peers/report_browser.py --html "$OUT/report.html" >>"$OUT/browser.json"
done

python3 - "$OUT/browser.json" "$SEGMENTS" "$REPORT_S" "$REPORT_RSS_KB" "$RUN_S" <<'PY'
import json, statistics, sys
loads = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
segments, report_s, rss_kb, run_s = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
first = loads[0]
load_ms = statistics.median(l["load_ms"] for l in loads)
drawn = sum(1 for c in first["charts"] if c["width"] > 0 and c["height"] > 0 and c["drawn"] > 0)
print(f"report of a {segments}-segment store (its DAG ran in {run_s} s)")
print(f"{'measure':<40} {'value':>12} {'goal':>10}")
print(f"{'speechmill report (wall, s)':<40} {report_s:>12.2f} {'':>10}")
print(f"{'speechmill report (peak RSS, MiB)':<40} {rss_kb / 1024:>12.0f} {'':>10}")
print(f"{'Chromium load, median of 3 (ms)':<40} {load_ms:>12.0f} {'< 2000':>10}")
print(f"{'HTML size (MB)':<40} {first['html_bytes'] / 1e6:>12.2f} {'< 10':>10}")
ratio = f"{drawn}/{len(first['charts'])}"
print(f"{'charts drawn / charts':<40} {ratio:>12} {'all':>10}")
print(f"{'audio clips embedded':<40} {first['audio']['count']:>12} {'':>10}")
PY
[ -z "${KEEP:-}" ] || echo "kept: $OUT (report.html, report.png)"
