#!/usr/bin/env bash
# Decode throughput and memory of speechmill's decoder against ffmpeg, on one core.
#
#   bash scripts/bench-decode.sh            # 5 repetitions, 5-minute files
#   REPS=3 MINUTES=2 bash scripts/bench-decode.sh
#   SKIP_RSS=1 bash scripts/bench-decode.sh # no 3-hour memory test
#
# Test audio is real speech: the LibriVox clips of pocketsphinx-testdata plus espeak-ng,
# looped to MINUTES, encoded as MP3, FLAC, Opus (WebM and Ogg) and 44.1 kHz WAV.
# Both decoders write 16 kHz mono s16le to /dev/null under `taskset -c 0`:
#   ours:   target/debug/speechmill decode FILE --out /dev/null: the binary the README's
#           commands build (one profile for users, tests and benchmarks; Cargo.toml)
#   ffmpeg: ffmpeg -threads 1 -nostdin -i FILE -ac 1 -ar 16000 -f s16le -y /dev/null
# The table shows audio seconds decoded per wall-clock second (best of REPS) and
# ours/ffmpeg. Then the peak RSS of both decoding 3-hour MP3 and FLAC files.
# Files are cached in $SPEECHMILL_CACHE/bench-decode (default .cache/speechmill).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}/bench-decode"
REPS="${REPS:-5}"
MINUTES="${MINUTES:-5}"
LONG_HOURS="${LONG_HOURS:-3}"
LIBRIVOX=/usr/share/pocketsphinx/test/data/librivox

die() { echo "bench-decode: $*" >&2; exit 1; }
for tool in ffmpeg ffprobe espeak-ng taskset /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash scripts/setup.sh'"
done
[ -d "$LIBRIVOX" ] || die "$LIBRIVOX is missing (pocketsphinx-testdata): run 'bash scripts/setup.sh'"
mkdir -p "$CACHE"

# ------------------------------------------------------------------ the decoder
cd "$REPO"
echo "building speechmill..." >&2
cargo build --bin speechmill >&2
OURS_NAME="speechmill decode"
ours_argv() { CMD=(target/debug/speechmill decode "$1" --out /dev/null); }
ffmpeg_argv() { CMD=(ffmpeg -threads 1 -nostdin -loglevel error -i "$1" -ac 1 -ar 16000 -f s16le -y /dev/null); }

# ------------------------------------------------------------------ test audio
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
BASE="$CACHE/speech-base.wav"
if [ ! -s "$BASE" ]; then
  echo "making speech from LibriVox clips and espeak-ng..." >&2
  espeak-ng -v en -s 160 -w "$CACHE/espeak.wav" \
    "Speech mill turns raw audio into training data for speech models. It decodes audio in \
     many formats, finds the speech, transcribes it, aligns words to time, filters by quality, \
     and writes shards that a trainer can read. This sentence is here to make the clip longer, \
     and to give the decoder something other than the voice of one reader."
  inputs=() filters=""
  i=0
  for f in "$LIBRIVOX"/*.wav "$CACHE/espeak.wav"; do
    inputs+=(-i "$f")
    filters+="[$i:a]aresample=16000,aformat=sample_fmts=s16:channel_layouts=mono[a$i];"
    i=$((i + 1))
  done
  concat=""
  for ((j = 0; j < i; j++)); do concat+="[a$j]"; done
  ff "${inputs[@]}" -filter_complex "${filters}${concat}concat=n=$i:v=0:a=1[out]" -map "[out]" "$BASE"
fi

# A looped copy of the speech, `seconds` long, at 44.1 kHz stereo.
looped() { ff -stream_loop -1 -i "$BASE" -t "$1" -af aresample=44100 -ac 2 "${@:2}"; }

SECONDS_SHORT=$((MINUTES * 60))
declare -a FILES=()
make_short() { # name, encoder args...
  local out="$CACHE/speech-${MINUTES}min.$1"
  [ -s "$out" ] || { echo "encoding $out..." >&2; looped "$SECONDS_SHORT" "${@:2}" "$out"; }
  FILES+=("$out")
}
make_short mp3 -c:a libmp3lame -b:a 128k
make_short flac -c:a flac
make_short webm -c:a libopus -b:a 64k
make_short opus -c:a libopus -b:a 64k -f ogg
make_short wav -c:a pcm_s16le

# ------------------------------------------------------------------ throughput
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
now() { date +%s.%N; }
best_time() { # command...: the best wall time of REPS runs on core 0
  local best="" t0 t
  for ((r = 0; r < REPS; r++)); do
    t0=$(now)
    taskset -c 0 "$@" >/dev/null 2>&1 || die "failed: $*"
    t=$(calc "$(now) - $t0")
    if [ -z "$best" ] || [ "$(calc "$t < $best")" = 1.000000 ]; then best=$t; fi
  done
  echo "$best"
}

echo
echo "Decode to 16 kHz mono s16le on one core (taskset -c 0), best of $REPS; ours = $OURS_NAME"
printf "%-6s %8s %15s %17s %12s\n" format audio_s "ours audio-s/s" "ffmpeg audio-s/s" "ours/ffmpeg"
for f in "${FILES[@]}"; do
  audio_s=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f")
  ours_argv "$f"
  t_ours=$(best_time "${CMD[@]}")
  ffmpeg_argv "$f"
  t_ff=$(best_time "${CMD[@]}")
  printf "%-6s %8.1f %15.0f %17.0f %11.2fx\n" "${f##*.}" "$audio_s" "$(calc "$audio_s / $t_ours")" \
    "$(calc "$audio_s / $t_ff")" "$(calc "$t_ff / $t_ours")"
done

# ------------------------------------------------------------------ memory
[ "${SKIP_RSS:-0}" = 1 ] && exit 0
LONG_S=$((LONG_HOURS * 3600))
long_mp3="$CACHE/speech-${LONG_HOURS}h.mp3"
long_flac="$CACHE/speech-${LONG_HOURS}h.flac"
# Audiobook-like MP3 (44.1 kHz mono 64 kbit/s, as LibriVox publishes) and 44.1 kHz stereo FLAC.
[ -s "$long_mp3" ] || { echo "encoding $long_mp3 (takes a few minutes)..." >&2;
  ff -stream_loop -1 -i "$BASE" -t "$LONG_S" -af aresample=44100 -ac 1 -c:a libmp3lame -b:a 64k "$long_mp3"; }
[ -s "$long_flac" ] || { echo "encoding $long_flac..." >&2; looped "$LONG_S" -c:a flac "$long_flac"; }

peak_rss_mb() { # command...: peak RSS in MB
  local log
  log=$(mktemp)
  /usr/bin/time -v "$@" >/dev/null 2>"$log" || { cat "$log" >&2; rm -f "$log"; die "failed: $*"; }
  awk -F: '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$log"
  rm -f "$log"
}

echo
echo "Peak RSS decoding ${LONG_HOURS}-hour files (MB)"
printf "%-6s %8s %8s %8s\n" format audio_s ours ffmpeg
for f in "$long_mp3" "$long_flac"; do
  audio_s=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f")
  ours_argv "$f"
  rss_ours=$(peak_rss_mb taskset -c 0 "${CMD[@]}")
  ffmpeg_argv "$f"
  rss_ff=$(peak_rss_mb taskset -c 0 "${CMD[@]}")
  printf "%-6s %8.0f %8s %8s\n" "${f##*.}" "$audio_s" "$rss_ours" "$rss_ff"
done
