#!/usr/bin/env bash
# Where speechmill's ASR time goes, per 30 s window: `speechmill run dags/corpus.toml
# --until asr` (asr.language=en, asr.threads=2, beam 5) on the bench-asr audio for each
# model and precision, with the Whisper model's own counters logged
# (SPEECHMILL_LOG=speechmill::profile=debug; models/src/whisper/profile.rs). Per window:
# log-mel, encoder, decoder calls that choose tokens (how many, rows each, ms each),
# gathering beam rows, the rest of the search (logit processing, top-k, hypotheses),
# word timings (their decoder call and DTW), waiting for a decoder session, and the
# hand-offs between the encoder thread and the decoder threads. Times are thread
# times: three threads share two cores, so a column sum exceeds the wall per window.
#
#   bash scripts/profile-asr.sh                         # base and tiny.en, int8 and fp32
#   MODELS=base COMPUTE=int8 bash scripts/profile-asr.sh
#   AUDIO_DIR=.cache/speechmill/bench-asr-long bash scripts/profile-asr.sh
#
# Needs the bench-asr audio (bash scripts/bench-asr.sh prepares it once).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
AUDIO_DIR="${AUDIO_DIR:-$CACHE/bench-asr}"
MODELS="${MODELS:-base,tiny.en}"
COMPUTE="${COMPUTE:-int8,fp32}"
BIN="$REPO/target/debug/speechmill"

ls "$AUDIO_DIR"/*.wav >/dev/null 2>&1 ||
  { echo "profile-asr: no audio in $AUDIO_DIR: run 'bash scripts/bench-asr.sh' once" >&2; exit 1; }
echo "building speechmill..." >&2
cargo build --bin speechmill >&2
paths="$(python3 -c 'import glob, json, sys; print(json.dumps(sorted(glob.glob(sys.argv[1] + "/*.wav"))))' "$AUDIO_DIR")"
work="$(mktemp -d /tmp/speechmill-profile-asr.XXXXXX)"
trap 'rm -rf "$work"' EXIT

for model in ${MODELS//,/ }; do
  for compute in ${COMPUTE//,/ }; do
    precision="$compute"; [ "$compute" = float32 ] && precision=fp32
    start=$(date +%s.%N)
    NO_COLOR=1 SPEECHMILL_LOG=warn,speechmill::profile=debug "$BIN" run dags/corpus.toml \
      --store "$work/store-$model-$precision" --until asr --set "ingest.paths=$paths" \
      --set "asr.model=whisper-$model" --set "asr.precision=$precision" \
      --set asr.language=en --set asr.threads=2 >/dev/null 2>"$work/$model-$precision.log"
    echo "$model $precision $(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(date +%s.%N)")" >>"$work/walls"
  done
done

python3 - "$work" <<'EOF'
import os, re, sys
work = sys.argv[1]
print(f"{'model':9s} {'prec':5s} {'windows':>7s} {'wall/win':>8s} {'mel':>6s} {'encoder':>7s} "
      f"{'dec calls':>9s} {'rows':>5s} {'ms/call':>7s} {'decoder':>7s} {'gather':>6s} {'search':>6s} "
      f"{'words':>6s} {'sess wait':>9s} {'dec wait':>8s} {'enc wait':>8s}")
for line in open(os.path.join(work, "walls")):
    model, precision, wall = line.split()
    counters = None
    for log in open(os.path.join(work, f"{model}-{precision}.log"), errors="replace"):
        log = re.sub(r"\x1b\[[0-9;]*m", "", log)
        if "speechmill::profile" in log and f"whisper-{model}" in log:
            counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", log)}
    if not counters or not counters.get("windows"):
        print(f"{model:9s} {precision:5s} no profile lines (see {work})")
        continue
    w = counters["windows"]
    ms = lambda name: counters[name] / 1e6 / w
    calls = counters["decoder_calls"]
    search = (counters["decode_batch_ns"] - counters["decoder_ns"] - counters["reorder_ns"]
              - counters["session_wait_ns"] - counters["align_ns"]) / 1e6 / w
    print(f"{model:9s} {precision:5s} {w:7d} {float(wall) * 1e3 / w:8.0f} {ms('mel_ns'):6.1f} {ms('encoder_ns'):7.0f} "
          f"{calls / w:9.1f} {counters['decoder_rows'] / max(calls, 1):5.1f} "
          f"{counters['decoder_ns'] / 1e6 / max(calls, 1):7.2f} {ms('decoder_ns'):7.0f} {ms('reorder_ns'):6.1f} "
          f"{search:6.1f} {ms('align_ns'):6.1f} {ms('session_wait_ns'):9.1f} {ms('decoder_wait_ns'):8.1f} "
          f"{ms('encoder_wait_ns'):8.1f}")
print("\nms per 30 s window (thread time), except 'dec calls' (decoder calls that choose tokens, per window),\n"
      "'rows' (windows x beams per call) and 'ms/call'. wall/win: the whole `speechmill run` process per window.")
EOF
echo
bash "$REPO/scripts/cpu-info.sh"
