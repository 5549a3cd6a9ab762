#!/usr/bin/env bash
# ASR throughput and accuracy: speechmill's Whisper (ONNX Runtime) against faster-whisper
# (CTranslate2) on the same checkpoints, on CPU with 2 threads.
#
#   bash scripts/bench-asr.sh                       # tiny.en and base, int8 and float32
#   MODELS=tiny.en COMPUTE=int8 bash scripts/bench-asr.sh
#   SETS=bench-asr-long MODELS=base COMPUTE=int8 bash scripts/bench-asr.sh
#   WORDS=1 bash scripts/bench-asr.sh               # word timestamps on both sides
#
# Needs scripts/setup.sh and scripts/peers.sh first (models, the peers venv).
# Test audio (about 20 minutes of speech, built once into $SPEECHMILL_CACHE/bench-asr/,
# default .cache/speechmill): the 5 LibriVox clips of pocketsphinx-testdata in one file, and
# twelve English passages of known text, two to a file (1.5-2 minutes each), spoken once by
# espeak-ng in several voices and once by Piper's neural voice (the registry's
# en_US-joe-medium) at three speaking rates; <name>.txt next to each file is its reference
# transcript. SETS (default both) also runs the long-recording case, $CACHE/bench-asr-long/:
# four files of at least 5 minutes of continuous real speech (the LibriVox clips over and
# over, tempo 0.85-1.15 and gain -12..+3 dB varied, short pauses).
# Each tool writes $CACHE/bench-asr/results-<tool>.json; the table at the end shows, per
# tool, model and compute type: model load time, audio seconds transcribed per wall-clock
# second (load excluded), audio seconds per CPU second (less sensitive to a busy machine),
# and WER (jiwer, corpus-level, after tests/peers/textnorm.py's
# normalisation: lowercase, no punctuation); then each tool's WER difference to
# faster-whisper's own pipeline with a 95% paired bootstrap interval over the files
# (tests/peers/bench_asr_table.py).
#   faster-whisper: tests/peers/bench_faster_whisper.py (BatchedInferencePipeline with its
#                   defaults: Silero VAD, batch_size 8, beam 5; language "en"), each model
#                   and compute type in a process of its own, timed whole and by its
#                   transcription alone; peak RSS of both tools' processes
#   speechmill:     run_speechmill below
#   fw-sm-segments: faster-whisper on speechmill's segments (clip_timestamps, no VAD of its own)
# Both tools do the same work: text only by default (faster-whisper's batched default;
# speechmill's asr with word_timestamps = false); WORDS=1 gives word timestamps on both
# sides (faster-whisper's word_timestamps=True; speechmill's asr default).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
SETS="${SETS:-bench-asr bench-asr-long}"
MODELS="${MODELS:-tiny.en,base}"
COMPUTE="${COMPUTE:-int8,float32}"
PEERS_PY="$CACHE/peers-venv/bin/python"
WORDS_ARG=()
WORDS_MODE="off, both tools (WORDS=1 for on)"
if [ "${WORDS:-0}" = 1 ]; then WORDS_ARG=(--words); WORDS_MODE="on, both tools"; fi

die() { echo "bench-asr: $*" >&2; exit 1; }
for tool in ffmpeg espeak-ng; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash scripts/setup.sh'"
done
[ -x "$PEERS_PY" ] || die "$CACHE/peers-venv missing: run 'bash scripts/setup.sh && bash scripts/peers.sh'"
cd "$REPO"

# ------------------------------------------------------------------ test audio
"$PEERS_PY" tests/peers/bench_faster_whisper.py prepare --cache "$CACHE"

# ------------------------------------------------------------------ faster-whisper
run_faster_whisper() {
  "$PEERS_PY" tests/peers/bench_faster_whisper.py run --cache "$CACHE" --audio "$SET" \
    --models "$MODELS" --compute "$COMPUTE" "${WORDS_ARG[@]}" --json "$BENCH/results-faster-whisper.json" >/dev/null
}

# ------------------------------------------------------------------ speechmill
# tests/peers/bench_speechmill.py: `speechmill run dags/corpus.toml` per model and compute
# type (asr.language=en, asr.threads=2, beam 5), the whole process timed (crawl, decode,
# VAD, model load included); then the VAD alone (`--until segment`) against
# faster-whisper's Silero VAD, per CPU second. The binary is the dev profile, whose
# dependencies and our stages/models crates are built with opt-level 3 (Cargo.toml).
run_speechmill() {
  "$PEERS_PY" tests/peers/bench_speechmill.py asr --bin "$REPO/target/debug/speechmill" --cache "$CACHE" \
    --audio "$SET" --models "$MODELS" --compute "$COMPUTE" "${WORDS_ARG[@]}" --json "$BENCH/results-speechmill.json"
  "$PEERS_PY" tests/peers/bench_speechmill.py vad --bin "$REPO/target/debug/speechmill" --cache "$CACHE" \
    --audio "$SET" --json "$BENCH/vad-results.json"
}

# faster-whisper again, on speechmill's segments instead of its own VAD's: both decoders on
# identical audio, so a WER difference between the two tools' rows that this row does not
# show comes from segmentation, not decoding.
run_faster_whisper_on_our_segments() {
  "$PEERS_PY" tests/peers/bench_faster_whisper.py run --cache "$CACHE" --audio "$SET" \
    --models "$MODELS" --compute "$COMPUTE" "${WORDS_ARG[@]}" --clips "$BENCH/speechmill-segments.json" \
    --json "$BENCH/results-fw-on-speechmill-segments.json" >/dev/null
}

echo "building speechmill..." >&2
cargo build --bin speechmill >&2
for SET in $SETS; do
  BENCH="$CACHE/$SET"
  rm -f "$BENCH"/results-*.json "$BENCH"/vad-results.json
  run_faster_whisper
  run_speechmill
  run_faster_whisper_on_our_segments
done

# ------------------------------------------------------------------ tables
echo "word timestamps: $WORDS_MODE"
for SET in $SETS; do
  "$PEERS_PY" tests/peers/bench_asr_table.py "$CACHE/$SET"
  echo
done
bash "$REPO/scripts/cpu-info.sh"
