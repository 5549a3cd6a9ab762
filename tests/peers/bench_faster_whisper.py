#!/usr/bin/env python3
"""faster-whisper's side of the ASR benchmark (scripts/bench-asr.sh runs it).

    $CACHE/peers-venv/bin/python tests/peers/bench_faster_whisper.py prepare [--cache DIR]
    $CACHE/peers-venv/bin/python tests/peers/bench_faster_whisper.py run [--cache DIR]
        [--audio bench-asr|bench-asr-long] [--models tiny.en,base] [--compute int8,float32]
        [--json OUT]

prepare  builds the test audio in $CACHE/bench-asr/ (skipped while its .stamp matches):
         librivox.wav  the 5 LibriVox clips of pocketsphinx-testdata joined with 1.2 s
                       pauses (~31 s; the reference transcripts joined, clip 0920's typo
                       "a more a amiable" kept as it is)
         passage-N.wav English passages (two per file, 1.5-2 minutes each) spoken by espeak-ng
                       in several voices; known text
         piper-N.wav   the same passages spoken by Piper's neural voice (the registry's
                       en_US-joe-medium) at three speaking rates (tests/peers/piper_speech.py)
         each with <name>.txt (the reference) and manifest.json; about 20 minutes in all.
         Also the long-recording case in $CACHE/bench-asr-long/: long-N.wav, four files of
         at least 5 minutes of continuous real speech each: the LibriVox clips over and
         over in a seeded random order, each time at another tempo (0.85-1.15, pitch kept)
         and gain (-12..+3 dB), with short pauses (0.25-0.9 s) between them.
run      transcribes every file of --audio (default bench-asr) with faster-whisper's
         BatchedInferencePipeline for each model (CTranslate2 checkpoints in
         $CACHE/models/whisper-<model>-ct2) and compute_type, each in a process of its own
         (`run-one`) whose wall time, CPU time and peak RSS are read with wait4 (whole
         process: Python start, imports, audio decoding, model load, warm-up and
         transcription; `process_s`, `process_cpu_s`, `peak_rss_mb`), on CPU with cpu_threads=2, num_workers=1, and its defaults otherwise:
         Silero VAD on, batch_size 8, beam_size 5, without_timestamps, no temperature
         fallback in batched mode; language fixed to "en" (no detection pass); no word
         timestamps unless --words (then word_timestamps=True).
         Model load is timed apart from transcription; a 5 s warm-up call (loads the VAD
         model, first-call allocations) is timed in neither. Audio is decoded to 16 kHz
         float32 before the clock starts. Prints a table and writes JSON (--json; default
         $CACHE/bench-asr/results-faster-whisper.json):
         {"tool", "versions": {...}, "machine": {"cpus", "cpu_model"}, "settings": {...},
          "audio": {"files", "seconds"}, "normalisation",
          "results": [{"tool", "model", "compute_type", "load_s", "transcribe_s", "cpu_s",
                       "audio_s", "speed" (audio s per wall s), "cpu_speed" (audio s per
                       CPU s of the process, all threads), "wer", "process_s",
                       "process_cpu_s", "peak_rss_mb",
                       "files": {name: {"seconds", "wer", "text"}}}]}
WER: jiwer corpus-level over all files after tests/peers/textnorm.py's normalisation.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from filehash import sha256_file  # noqa: E402
from piper_speech import PiperVoice  # noqa: E402
from textnorm import __doc__ as NORMALISATION_DOC, wer  # noqa: E402

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
SR = 16000
AUDIO_VERSION = "2"
ESPEAK_WPM = 150
PIPER_MODEL = "piper/en_US-joe-medium.onnx"
# Piper's speaking rate per passage, in turn (length scale: > 1 is slower).
PIPER_LENGTH_SCALES = [1.0, 0.9, 1.1]

# Passages of plain English written for this benchmark (numbers spelled out, no
# abbreviations, so the reference is what espeak-ng says). Two per file.
PASSAGES = [
    ("en-us", """The old market opens every Saturday morning in the square behind the church. Farmers
arrive before sunrise with their trucks full of vegetables, cheese, eggs and flowers. By eight
o'clock the square is crowded with families who come to buy fresh food for the week and to meet
their neighbours. Children run between the stalls while their parents argue about the price of
tomatoes. An old man plays the accordion near the fountain, and a small dog sleeps under his
chair. In the autumn the market sells apples and pumpkins, and in the winter there are hot drinks
and roasted chestnuts. Many people say that the market is the real heart of the town, because it
is the only place where everyone goes, whatever their age or their job. When the church bell rings
at noon, the farmers begin to pack their trucks, and by one o'clock the square is empty and quiet
again."""),
    ("en-gb", """Bread is one of the oldest foods that people have made. To bake a simple loaf you need
only flour, water, salt and yeast. First you mix the flour and the salt in a large bowl, then you
add the yeast and warm water, and you stir everything until it becomes a rough dough. Next you
knead the dough on a table for about ten minutes, pushing it away with the palm of your hand and
folding it back again. The dough becomes smooth and elastic. After that you leave it in a warm
place for an hour or two, until it has doubled in size. Then you shape it into a loaf, let it rise
once more, and bake it in a hot oven for about forty minutes. A good loaf sounds hollow when you
tap the bottom. The smell of fresh bread in the kitchen is one of the simple pleasures of life."""),
    ("en-us+f3", """Dear Margaret, thank you very much for your kind letter, which arrived on Tuesday. I was
so happy to hear that your garden is doing well this year and that the roses have finally
flowered. Here the weather has been cold and wet for most of the spring, and I have spent many
evenings reading by the fire. Last week I finished the long novel that you gave me for my
birthday. I enjoyed it very much, although the ending made me a little sad. On Sunday my brother
came to visit with his two sons. The boys have grown so tall that I hardly recognised them. We
walked along the river to the old mill and had lunch at the inn by the bridge. I hope that you
will be able to come and stay with us in the summer. Please give my love to your mother, and write
again soon. With warm wishes, your friend Elizabeth."""),
    ("en-gb-x-rp", """Bridges have always fascinated engineers and travellers alike. The first bridges were
probably simple logs laid across small streams. Later, people learned to build arches of stone,
which could carry heavy loads across wide rivers. Some of these stone bridges are still standing
after two thousand years. In the modern age, engineers began to use iron and then steel, which made
it possible to build much longer bridges. A suspension bridge hangs its road from strong cables
that pass over tall towers and are anchored in the ground at each end. Such bridges can span more
than a mile of open water. Building a large bridge takes many years of careful planning. The
engineers must study the wind, the soil, the tides and the weight of the traffic. When the bridge
is finally opened, it often becomes a symbol of the city, and people come from far away just to
walk across it and admire the view."""),
    ("en-us+m3", """Good evening, and here is the weather forecast for the next few days. Tonight will be
cloudy in the north, with some light rain spreading from the coast after midnight. In the south it
will stay dry, but it will feel cold, and there may be frost in sheltered valleys. Tomorrow
morning the rain in the north will become heavier for a time, and the wind will increase, with
strong gusts on the hills. During the afternoon the rain will clear towards the east, and there
will be sunny spells and a few scattered showers. Temperatures will be a little below normal for
the time of year. On Thursday a ridge of high pressure will bring a calm and bright day to most
areas, although fog may be slow to lift in some places. The weekend looks unsettled again, with
more wind and rain arriving from the west on Saturday evening."""),
    ("en-gb+f2", """The little boat left the harbour just after dawn. Anna sat at the front, watching the
waves, while her grandfather steered and told her stories about the sea. He had been a fisherman
for more than fifty years, and he knew every rock and every current along the coast. He told her
about the great storm of his youth, when the waves had been higher than the church tower, and
about the summer when the whole bay had filled with dolphins. Anna listened and asked questions,
and sometimes she laughed because she was not sure whether the stories were true. By the middle of
the morning they reached the small island where the seabirds nested. Thousands of birds circled
above the cliffs, calling to each other. Her grandfather turned off the engine, and for a long
time they drifted in silence, listening to the birds and the sound of the water against the
boat."""),
    ("en-us", """To plant a young tree, choose a place where it will have enough light and room to grow.
Dig a hole that is about twice as wide as the roots, but not deeper than the roots themselves.
Loosen the soil at the bottom and around the sides of the hole, so that the roots can spread
easily. Take the tree out of its pot and gently tease out any roots that are circling around the
outside. Place the tree in the middle of the hole, and check that it stands straight. Then fill
the hole with the soil that you removed, pressing it down firmly with your foot as you go, to
remove pockets of air. Water the tree well, even if the ground is already wet. Finally, spread a
layer of mulch around the base, but keep it away from the trunk. During the first summer, water
the tree once a week when the weather is dry, and it will soon settle into its new home."""),
    ("en-gb-scotland", """The museum in the centre of the city holds a remarkable collection of clocks. Some of
them are very old and were made by hand in small workshops, long before factories existed. There
are tall clocks in wooden cases, tiny watches that fit inside a ring, and a huge astronomical clock
that shows the positions of the sun, the moon and the planets. Every hour, all the clocks strike
together, and visitors gather in the main hall to hear the sound of hundreds of bells and chimes.
The museum also has a workshop where visitors can watch a clockmaker repair broken mechanisms.
She explains how the springs, wheels and pendulums work together to measure time. Many visitors
are surprised to learn that some of the oldest clocks are still accurate to within a few minutes a
week. The museum is open every day except Monday, and entry is free for children and students."""),
    ("en-us+f2", """When you move to a new city, the first few weeks can feel lonely and confusing. You do not
know which streets are safe at night, where to buy good coffee, or which bus will take you to work.
One good way to settle in is to walk as much as possible. Walking slowly through different
neighbourhoods helps you to build a map of the city in your head, and you notice small shops,
parks and cafes that you would never see from a car. Another idea is to join a club or a class,
perhaps a choir, a sports team or a language course. It is much easier to make friends when you
share an interest and meet the same people every week. Finally, be patient with yourself. It takes
most people about a year before a new city truly feels like home."""),
    ("en-gb-x-rp+m2", """The village library was about to close for ever when a group of neighbours decided to
save it. They held a meeting in the school hall, and more than a hundred people came. Some offered
to work as volunteers, others gave money, and a local builder promised to repair the leaking roof
for free. Within a few months the library had new shelves, fresh paint and a small corner with
toys for young children. The volunteers started a reading club for older people and a homework
club for teenagers. Now the library is busier than it has ever been. On Saturday mornings there is
hardly a free chair, and the librarian says that people come not only to borrow books, but also to
talk, to drink tea and to feel part of the community."""),
    ("en-us+m1", """Most people spend about a third of their lives asleep, yet scientists are still learning
why sleep is so important. During sleep the brain does not simply switch off. Instead, it moves
through several stages, from light sleep to deep sleep and then to dreaming sleep, and this cycle
repeats several times each night. Deep sleep seems to help the body repair itself and to
strengthen the immune system, while dreaming sleep appears to play a role in memory and learning.
Adults usually need between seven and nine hours of sleep each night, and teenagers need even
more. To sleep well, experts advise going to bed at the same time every night, keeping the bedroom
dark and cool, and avoiding bright screens and large meals late in the evening."""),
    ("en-gb+f4", """On the first warm day of spring, the whole family went to the beach for a picnic. Father
carried the heavy basket, mother brought the blankets and the umbrella, and the two children ran
ahead with their buckets and spades. The sand was still cold, but the sun was bright and the sea
was calm and blue. The children built a castle with towers and a deep moat, and they decorated it
with shells and seaweed. At lunchtime everyone sat on the blankets and ate sandwiches, boiled eggs,
apples and a large chocolate cake. In the afternoon the tide came in and slowly washed the castle
away. The children were sad for a moment, but then they laughed and promised to build an even
bigger one next time."""),
]
PER_FILE = 2

# The long-recording case: files of at least LONG_MIN_S of LibriVox speech each.
LONG_VERSION = "1"
LONG_FILES = 4
LONG_MIN_S = 300.0
LONG_TEMPOS = [0.85, 0.92, 1.0, 1.08, 1.15]


def say(msg: str) -> None:
    print(f"[bench-faster-whisper] {msg}", file=sys.stderr, flush=True)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def read_wav16(path: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "a.raw")
        ffmpeg("-i", path, "-ac", "1", "-ar", str(SR), "-f", "s16le", raw)
        return np.fromfile(raw, np.int16)


def write_wav16(path: str, samples: np.ndarray) -> None:
    write_wav(path, samples, SR)


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    """16-bit mono WAV; float samples are in [-1, 1]."""
    if samples.dtype.kind == "f":
        samples = np.clip(samples, -1.0, 1.0) * 32767.0
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "a.raw")
        samples.astype(np.int16).tofile(raw)
        ffmpeg("-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", raw, "-c:a", "pcm_s16le",
               "-map_metadata", "-1", "-fflags", "+bitexact", path)


def join_with_pauses(clips: list[np.ndarray]) -> np.ndarray:
    """One file's samples: 0.6 s of silence, the clips with 1.2 s between them, 0.6 s."""
    pause = np.zeros(int(1.2 * SR), np.int16)
    half = np.zeros(int(0.6 * SR), np.int16)
    parts = [half]
    for clip in clips:
        parts += [clip, pause]
    parts[-1] = half
    return np.concatenate(parts)


def audio_key(piper_model: str) -> str:
    import onnxruntime

    h = hashlib.sha256(AUDIO_VERSION.encode())
    h.update(json.dumps([PASSAGES, ESPEAK_WPM, PER_FILE, PIPER_LENGTH_SCALES, onnxruntime.__version__]).encode())
    for path in [piper_model, os.path.join(HERE, "piper_speech.py")]:
        h.update(sha256_file(path).encode())
    for wav in sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav"))):
        h.update(sha256_file(wav).encode())
    h.update(subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.encode())
    return h.hexdigest()


def librivox_clips() -> tuple[list[str], list[str]]:
    """The LibriVox clip files in order and their reference transcripts."""
    refs = {}
    with open(os.path.join(LIBRIVOX, "transcription"), encoding="utf-8") as f:
        for line in f:
            text, _, ident = line.strip()[:-1].rpartition("(")
            refs[ident.strip()] = " ".join(text.replace("<s>", "").replace("</s>", "").split())
    wavs = sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))
    return wavs, [refs[os.path.splitext(os.path.basename(w))[0]] for w in wavs]


def emptied_unless_current(out: str, key: str, what: str) -> bool:
    """False when `out` already holds the audio stamped `key`; else empties it of audio
    and references (the caller writes them and the stamp) and returns True."""
    stamp = os.path.join(out, ".stamp")
    if os.path.exists(stamp) and open(stamp).read().strip() == key:
        say(f"audio present in {out}")
        return False
    say(f"building {what} in {out}")
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "*.wav")) + glob.glob(os.path.join(out, "*.txt")):
        os.remove(old)
    return True


def prepare_long(cache: str) -> None:
    """The long-recording case (see the module docs), stamped apart from the passages."""
    out = os.path.join(cache, "bench-asr-long")
    wavs, texts = librivox_clips()
    h = hashlib.sha256(json.dumps([LONG_VERSION, LONG_FILES, LONG_MIN_S, LONG_TEMPOS]).encode())
    for wav in wavs:
        h.update(sha256_file(wav).encode())
    key = h.hexdigest()
    if not emptied_unless_current(out, key, "the long recordings"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        # Every clip at every tempo, once (ffmpeg's atempo keeps the pitch).
        at_tempo = {}
        for i, wav in enumerate(wavs):
            for tempo in LONG_TEMPOS:
                raw = os.path.join(tmp, f"{i}-{tempo}.wav")
                ffmpeg("-i", wav, "-af", f"atempo={tempo}", "-ac", "1", "-ar", str(SR), raw)
                at_tempo[(i, tempo)] = read_wav16(raw).astype(np.float32) / 32768.0
    manifest = []
    for k in range(LONG_FILES):
        rng = np.random.default_rng(1000 + k)
        parts, words, seconds = [np.zeros(int(0.5 * SR), np.float32)], [], 0.0
        while seconds < LONG_MIN_S:
            for i in rng.permutation(len(wavs)):
                tempo = LONG_TEMPOS[rng.integers(len(LONG_TEMPOS))]
                gain = 10 ** (rng.uniform(-12.0, 3.0) / 20)
                clip = at_tempo[(int(i), tempo)] * gain
                parts += [clip, np.zeros(int(rng.uniform(0.25, 0.9) * SR), np.float32)]
                words.append(texts[i])
                seconds += (len(clip) + len(parts[-1])) / SR
        samples = np.concatenate(parts)
        name = f"long-{k + 1}"
        write_wav16(os.path.join(out, name + ".wav"), samples)
        with open(os.path.join(out, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(" ".join(words) + "\n")
        manifest.append({"file": name + ".wav", "text": name + ".txt", "seconds": round(len(samples) / SR, 3),
                         "source": "LibriVox (pocketsphinx-testdata), tempo and gain varied, short pauses"})
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(out, ".stamp"), "w") as f:
        f.write(key + "\n")
    say(f"{len(manifest)} long files, {sum(m['seconds'] for m in manifest) / 60:.1f} minutes")


def prepare(cache: str) -> None:
    prepare_long(cache)
    out = os.path.join(cache, "bench-asr")
    piper_model = os.path.join(cache, "models", PIPER_MODEL)
    if not os.path.exists(piper_model):
        raise SystemExit(f"{piper_model} is missing: run 'bash scripts/setup.sh'")
    key = audio_key(piper_model)
    if not emptied_unless_current(out, key, "test audio"):
        return
    manifest = []

    # LibriVox: the five clips in order, references from the transcription file.
    wavs, texts = librivox_clips()
    clips = [read_wav16(w) for w in wavs]
    files = [("librivox", join_with_pauses(clips), " ".join(texts), "LibriVox (pocketsphinx-testdata)")]

    # espeak-ng passages, PER_FILE to a file.
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(0, len(PASSAGES), PER_FILE):
            clips, texts, voices = [], [], []
            for voice, text in PASSAGES[n:n + PER_FILE]:
                text = " ".join(text.split())
                raw = os.path.join(tmp, "raw.wav")
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(ESPEAK_WPM), "-w", raw, text], check=True)
                clips.append(read_wav16(raw))
                texts.append(text)
                voices.append(voice)
            files.append((f"passage-{n // PER_FILE + 1}", join_with_pauses(clips), " ".join(texts),
                          "espeak-ng " + ", ".join(voices)))

        # The same passages in Piper's neural voice, at a few speaking rates.
        voice = PiperVoice(piper_model)
        for n in range(0, len(PASSAGES), PER_FILE):
            clips, texts, scales = [], [], []
            for i, (_, text) in enumerate(PASSAGES[n:n + PER_FILE], start=n):
                text = " ".join(text.split())
                scale = PIPER_LENGTH_SCALES[i % len(PIPER_LENGTH_SCALES)]
                raw = os.path.join(tmp, "piper.wav")
                write_wav(raw, voice.say(text, scale), voice.sample_rate)
                clips.append(read_wav16(raw))
                texts.append(text)
                scales.append(f"{scale:g}")
            files.append((f"piper-{n // PER_FILE + 1}", join_with_pauses(clips), " ".join(texts),
                          "Piper en_US-joe-medium, length scale " + ", ".join(scales)))

    for name, samples, text, source in files:
        write_wav16(os.path.join(out, name + ".wav"), samples)
        with open(os.path.join(out, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        manifest.append({"file": name + ".wav", "text": name + ".txt", "seconds": round(len(samples) / SR, 3),
                         "source": source})
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(out, ".stamp"), "w") as f:
        f.write(key + "\n")
    total = sum(m["seconds"] for m in manifest)
    say(f"{len(manifest)} files, {total / 60:.1f} minutes")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(path: str, doc: dict) -> None:
    """Writes `doc` to `path` whole or not at all (a temporary file, then a rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    os.replace(path + ".tmp", path)


def run(cache: str, audio_dir: str, models: list[str], computes: list[str], out_json: str,
        clips_json: str | None = None, words: bool = False) -> None:
    """Each model and compute type in a process of its own (`run-one`), timed whole."""
    from bench_speechmill import run_child

    doc, results = None, []
    for model_name in models:
        for compute in computes:
            with tempfile.TemporaryDirectory() as tmp:
                one = os.path.join(tmp, "one.json")
                argv = [sys.executable, os.path.abspath(__file__), "run-one", "--cache", cache,
                        "--audio", audio_dir, "--models", model_name, "--compute", compute, "--json", one]
                argv += (["--clips", clips_json] if clips_json else []) + (["--words"] if words else [])
                t = run_child(argv)
                with open(one) as f:
                    doc = json.load(f)
            r = doc["results"][0]
            r.update({"process_s": round(t["wall"], 2), "process_cpu_s": round(t["cpu"], 2),
                      "peak_rss_mb": t["peak_rss_mb"]})
            results.append(r)
    doc["results"] = results
    doc["settings"]["timed"] = ("transcribe_s: transcription alone (load, audio decoding and warm-up excluded); "
                                "process_s: the whole run-one process")
    write_json(out_json, doc)
    print(f"{'tool':15s} {'model':8s} {'compute':8s} {'load s':>7s} {'audio s/s':>9s} {'process':>8s} "
          f"{'RSS MB':>7s} {'WER':>6s}")
    for r in results:
        print(f"{r['tool']:15s} {r['model']:8s} {r['compute_type']:8s} {r['load_s']:7.2f} {r['speed']:9.2f} "
              f"{r['audio_s'] / r['process_s']:8.2f} {r['peak_rss_mb']:7.0f} {r['wer']:6.3f}")


def run_one(cache: str, audio_dir: str, models: list[str], computes: list[str], out_json: str,
            clips_json: str | None = None, words: bool = False) -> None:
    """With `clips_json` (speechmill's segments, {file: [[start_s, end_s], ...]}), each file is
    transcribed on exactly those clips (`clip_timestamps`, no VAD of faster-whisper's own):
    the decoders compared on identical audio, apart from segmentation. With `words`, each
    segment also gets word timestamps (`word_timestamps=True`: cross-attention DTW), the
    work speechmill's `asr` does by default."""
    import ctranslate2
    import faster_whisper
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio

    bench = os.path.join(cache, audio_dir)
    with open(os.path.join(bench, "manifest.json")) as f:
        manifest = json.load(f)
    audio = {m["file"]: decode_audio(os.path.join(bench, m["file"]), sampling_rate=SR) for m in manifest}
    refs = {m["file"]: open(os.path.join(bench, m["text"]), encoding="utf-8").read().strip() for m in manifest}
    audio_s = sum(len(a) for a in audio.values()) / SR
    warm = audio[manifest[0]["file"]][: 5 * SR]
    settings = {"pipeline": "BatchedInferencePipeline", "device": "cpu", "cpu_threads": 2, "num_workers": 1,
                "batch_size": 8, "language": "en", "word_timestamps": words,
                "other": "faster-whisper defaults (VAD on, beam 5)"}
    clips = None
    if clips_json:
        with open(clips_json) as f:
            clips = json.load(f)
        settings["segments"] = "speechmill's segment node (clip_timestamps), no VAD of its own"
    tool = "fw-sm-segments" if clips is not None else "faster-whisper"
    opts = {"language": "en", "batch_size": 8, "word_timestamps": words}  # every timed call
    results = []
    for model_name in models:
        ct2_dir = os.path.join(cache, "models", f"whisper-{model_name}-ct2")
        for compute in computes:
            t0 = time.perf_counter()
            model = WhisperModel(ct2_dir, device="cpu", compute_type=compute, cpu_threads=2, num_workers=1)
            pipe = BatchedInferencePipeline(model)
            load_s = time.perf_counter() - t0
            list(pipe.transcribe(warm, language="en", batch_size=8)[0])
            files, hyps = {}, []
            wall = cpu = 0.0
            for m in manifest:
                w0, c0 = time.perf_counter(), time.process_time()
                if clips is None:
                    segments, _ = pipe.transcribe(audio[m["file"]], **opts)
                elif clips.get(m["file"]):
                    stamps = [{"start": a, "end": b} for a, b in clips[m["file"]]]
                    segments, _ = pipe.transcribe(audio[m["file"]], clip_timestamps=stamps, **opts)
                else:  # no segments: nothing to transcribe (an empty list would mean "use VAD")
                    segments = []
                text = " ".join(s.text.strip() for s in segments)  # consuming runs the model
                dw, dc = time.perf_counter() - w0, time.process_time() - c0
                wall, cpu = wall + dw, cpu + dc
                hyps.append(text)
                files[m["file"]] = {"seconds": round(dw, 3), "wer": round(wer([refs[m["file"]]], [text]), 4),
                                    "text": text}
            r = {"tool": tool, "model": model_name, "compute_type": compute,
                 "load_s": round(load_s, 3), "transcribe_s": round(wall, 3), "cpu_s": round(cpu, 3),
                 "audio_s": round(audio_s, 3), "speed": round(audio_s / wall, 2),
                 "cpu_speed": round(audio_s / cpu, 2),
                 "wer": round(wer([refs[m["file"]] for m in manifest], hyps), 4), "files": files}
            results.append(r)
            say(f"{model_name} {compute}: load {load_s:.2f}s, {wall:.1f}s for {audio_s:.0f}s of audio "
                f"({r['speed']:.1f}x), WER {r['wer']:.3f}")
            del pipe, model
    doc = {"tool": tool,
           "versions": {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__},
           "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model()}, "settings": settings,
           "audio": {"files": len(manifest), "seconds": round(audio_s, 3)},
           "normalisation": " ".join(NORMALISATION_DOC.split()), "results": results}
    write_json(out_json, doc)


def main() -> int:
    ap = argparse.ArgumentParser(description="faster-whisper's side of speechmill's ASR benchmark")
    ap.add_argument("command", choices=["prepare", "run", "run-one"])
    ap.add_argument("--cache", default=os.environ.get("SPEECHMILL_CACHE", os.path.join(REPO, ".cache/speechmill")))
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--compute", default="int8,float32")
    ap.add_argument("--audio", default="bench-asr", help="run: the audio's folder in the cache")
    ap.add_argument("--json", default=None)
    ap.add_argument("--clips", default=None,
                    help="run: transcribe these clips ({file: [[start_s, end_s], ...]}) instead of VAD's")
    ap.add_argument("--words", action="store_true",
                    help="run: word timestamps too (word_timestamps=True), as speechmill's asr by default")
    a = ap.parse_args()
    cache = os.path.abspath(a.cache)
    if a.command == "prepare":
        prepare(cache)
    else:
        (run if a.command == "run" else run_one)(
            cache, a.audio, a.models.split(","), a.compute.split(","),
            a.json or os.path.join(cache, a.audio, "results-faster-whisper.json"), a.clips, a.words)
    return 0


if __name__ == "__main__":
    sys.exit(main())
