#!/usr/bin/env bash
# Piper synthesis speed: speechmill's `tts` stage (the registry's en_US-joe-medium voice
# through ONNX Runtime, 1 thread per session) against the `piper-tts` Python package
# (1.8.0, tests/peers/piper_bench.py, GPL: a benchmark peer only) on the same voice file
# and the same 40 English sentences (8 documents of 5, spoken each on its own), in the
# same run; synthesis config noise_scale 0, noise_w 0, length_scale 1 for both.
# Prints characters, seconds, characters per second and audio seconds per second per
# tool, the ratio of speechmill's chars/s to piper-tts's, and the CPU.
#
# speechmill's seconds are the tts node's wall_s from the run record: it includes
# loading the voice (and a second ONNX session, created while the first speaks) and
# writing the node's output; a call's spans are spoken on both sessions at once. piper-tts's seconds exclude
# its load (shown apart); it is shown as 2 processes on the two halves of the sentences
# at once (the wall time of both, from the moment both have loaded) and as 1 process.
#
#   bash scripts/bench-tts.sh              # needs scripts/setup.sh and scripts/peers.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
export SPEECHMILL_CACHE="$CACHE"
PEERS_PY="$CACHE/peers-venv/bin/python"
BIN="$REPO/target/debug/speechmill"
VOICE="$CACHE/models/piper/en_US-joe-medium.onnx"
OUT="$(mktemp -d /tmp/speechmill-bench-tts.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
[ -x "$PEERS_PY" ] || { echo "bench-tts: run 'bash scripts/setup.sh && bash scripts/peers.sh' first" >&2; exit 1; }
[ -f "$VOICE" ] || { echo "bench-tts: $VOICE missing: run 'bash scripts/setup.sh' first" >&2; exit 1; }
"$PEERS_PY" -c 'import piper' 2>/dev/null || { echo "bench-tts: piper-tts missing from the peers venv: run 'bash scripts/peers.sh'" >&2; exit 1; }
cd "$REPO"
cargo build -q --bin speechmill >&2

# 8 documents of 5 sentences, ordinary prose without numbers or abbreviations (so
# textspan's sentence split and spelling-out leave them as written).
python3 - "$OUT/docs.jsonl" <<'PY'
import json, sys
docs = [
    "The morning train was late again, and the platform slowly filled with tired commuters. "
    "A woman in a green coat checked her watch every few seconds. "
    "Somewhere behind me, a child asked why the trains never arrive on time. "
    "Nobody answered him, but several people smiled at the question. "
    "When the train finally pulled in, everyone pushed forward at once.",
    "My grandmother kept a small garden behind her house for most of her life. "
    "She grew tomatoes, beans, and a row of sunflowers taller than the fence. "
    "Every summer evening she watered the plants with an old tin can. "
    "I used to follow her around and pull weeds that were really flowers. "
    "She never scolded me for it.",
    "The city council met on Tuesday to discuss the new bicycle lanes. "
    "Shop owners worried that fewer parking spaces would keep customers away. "
    "Cyclists argued that safer streets would bring more people into the centre of town. "
    "After three hours of debate, the council agreed to a trial on two streets. "
    "The results will be reviewed at the end of the year.",
    "Learning a new language as an adult is slow but rewarding work. "
    "At first, even simple conversations feel like climbing a steep hill. "
    "You forget words you learned the day before and mix up the grammar. "
    "Then one day you understand a joke without translating it in your head. "
    "That moment makes all the effort feel worthwhile.",
    "The storm arrived just after midnight, rattling the windows and bending the trees. "
    "Rain fell so hard that the gutters overflowed within minutes. "
    "We lit candles when the power went out and listened to the wind. "
    "By morning, the street was covered in branches and scattered leaves. "
    "Neighbours came out with brooms and helped each other clear the mess.",
    "Good coffee depends on fresh beans, clean water, and a little patience. "
    "Grind the beans just before brewing so the flavour stays bright. "
    "Water that is too hot can make the coffee taste bitter and flat. "
    "Pour slowly and give the grounds time to bloom. "
    "Most people are surprised how much better a careful cup tastes.",
    "The old library on the corner is closing after many years of service. "
    "Its wooden shelves hold thousands of books that few people borrow anymore. "
    "Volunteers are sorting the collection and finding new homes for the rarest volumes. "
    "Some residents hope the building will become a community centre. "
    "Others would rather see it restored and opened again as a library.",
    "Our team spent the whole week preparing for the product launch. "
    "The designers polished the interface while the engineers fixed the last few bugs. "
    "On the final night, we stayed late and ordered pizza for everyone. "
    "The launch went smoothly, and the first reviews were kind. "
    "Now we are already planning what to build next.",
]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for i, text in enumerate(docs):
        f.write(json.dumps({"id": f"doc{i}", "language": "en", "text": text}) + "\n")
PY

cat >"$OUT/dag.toml" <<TOML
[nodes.textspan]
stage = "textspan"
params = { paths = ["$OUT/docs.jsonl"], eta = 1.0 }

[nodes.tts]
stage = "tts"
inputs = ["textspan"]
params = { noise_scale = 0.0, noise_w = 0.0, threads = 1 }
TOML
"$BIN" run "$OUT/dag.toml" --store "$OUT/store" >/dev/null
"$BIN" inspect --store "$OUT/store" --json >"$OUT/inspect.json"
"$BIN" sql --store "$OUT/store" --format csv "SELECT sum(length(text)) FROM tts" >"$OUT/chars.csv"
"$BIN" sql --store "$OUT/store" --format csv "SELECT sum(duration_s) FROM tts" >"$OUT/audio.csv"
"$BIN" sql --store "$OUT/store" --format json "SELECT text FROM tts ORDER BY span_id" >"$OUT/texts.json"

# The same texts for piper-tts: all of them, and the two halves.
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
raw = open(f"{out}/texts.json", encoding="utf-8").read().strip()
try:
    rows = json.loads(raw)
except json.JSONDecodeError:  # one object per line
    rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
texts = [r["text"].replace("\n", " ") for r in rows]
half = (len(texts) + 1) // 2
for name, part in (("all", texts), ("a", texts[:half]), ("b", texts[half:])):
    with open(f"{out}/{name}.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(part) + "\n")
PY

"$PEERS_PY" tests/peers/piper_bench.py "$VOICE" "$OUT/a.txt" --barrier "$OUT/barrier" --parties 2 >"$OUT/piper_a.json" &
PA=$!
"$PEERS_PY" tests/peers/piper_bench.py "$VOICE" "$OUT/b.txt" --barrier "$OUT/barrier" --parties 2 >"$OUT/piper_b.json" &
PB=$!
wait "$PA"
wait "$PB"
"$PEERS_PY" tests/peers/piper_bench.py "$VOICE" "$OUT/all.txt" >"$OUT/piper_1.json"

python3 - "$OUT" <<'PY'
import csv, json, sys
out = sys.argv[1]

def scalar(path):
    rows = list(csv.reader(open(path, encoding="utf-8")))
    return float(rows[-1][0])

nodes = {n["node"]: n["latest_run"] for n in json.load(open(f"{out}/inspect.json"))}
sm = {"chars": scalar(f"{out}/chars.csv"), "seconds": nodes["tts"]["wall_s"],
      "audio_s": scalar(f"{out}/audio.csv"), "load": "included"}
a, b = (json.load(open(f"{out}/piper_{p}.json")) for p in "ab")
p2 = {"chars": a["chars"] + b["chars"],
      "seconds": max(a["end"], b["end"]) - min(a["start"], b["start"]),
      "audio_s": a["audio_s"] + b["audio_s"], "load": "%.2f, %.2f excluded" % (a["load_s"], b["load_s"])}
one = json.load(open(f"{out}/piper_1.json"))
p1 = {"chars": one["chars"], "seconds": one["seconds"], "audio_s": one["audio_s"],
      "load": "%.2f excluded" % one["load_s"]}
rows = [
    ("speechmill tts (node wall_s, 2 sessions)", sm),
    ("piper-tts 1.8.0, 2 processes (halves)", p2),
    ("piper-tts 1.8.0, 1 process", p1),
]
print("%-44s%7s%9s%9s%9s%11s  %s" % ("tool (1 ORT thread per session)", "chars", "audio s",
                                     "seconds", "chars/s", "audio-s/s", "load s"))
for name, r in rows:
    print("%-44s%7d%9.1f%9.2f%9.1f%11.1f  %s" % (
        name, r["chars"], r["audio_s"], r["seconds"], r["chars"] / r["seconds"],
        r["audio_s"] / r["seconds"], r["load"]))
cps = lambda r: r["chars"] / r["seconds"]
print()
print("speechmill / piper-tts chars/s: %.2f (vs 2 processes), %.2f (vs 1 process)"
      % (cps(sm) / cps(p2), cps(sm) / cps(p1)))
PY
echo
bash "$REPO/scripts/cpu-info.sh"
