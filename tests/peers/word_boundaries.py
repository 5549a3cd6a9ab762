"""Word-boundary accuracy on speech whose word times are known.

`make DIR`: speaks every word of a few sentences alone with espeak-ng (16 kHz via sox),
trims each word's silence (1 % of its peak), joins the words with pauses of 150-450 ms
and 0.5 s of silence around, and writes DIR/sentenceN.wav, DIR/list.jsonl (uri,
language, text) and DIR/truth.json (true word times per file) — the procedure of
tests/align.rs.

`score DIR STORE_JSON...`: reads word times (JSON lists of {uri, words: [{word,
start_s, end_s}]}) from speechmill (`align`, `asr`) and runs faster-whisper with
`word_timestamps=True` on the same files; prints median and 90th-percentile absolute
boundary error per method, over words matched in order by their normalised text.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import wave

import numpy as np

SENTENCES = [
    ("en", "the committee will publish its findings next week"),
    ("en", "please keep the receipt until the repair is done"),
    ("en", "rain is expected over the hills this evening"),
    ("en", "she read the letter twice before answering"),
    ("de", "der zug nach berlin hat heute verspätung"),
    ("es", "el tren sale de la estación a las ocho"),
    ("fr", "le marché ouvre tous les jours à sept heures"),
    ("it", "la biblioteca resta aperta fino a sera"),
]


def read_wav(path):
    with wave.open(path) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path, samples):
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def make(out):
    os.makedirs(out, exist_ok=True)
    truth, rows, n = {}, [], 0
    for i, (lang, text) in enumerate(SENTENCES):
        audio = [np.zeros(8000, np.float32)]
        length = 8000
        times = []
        for j, word in enumerate(text.split()):
            if j > 0:
                gap = 2400 + ((i * 7 + j * 13) % 5) * 1200
                audio.append(np.zeros(gap, np.float32))
                length += gap
            raw, wav = os.path.join(out, f"w{n}-22k.wav"), os.path.join(out, f"w{n}.wav")
            n += 1
            subprocess.run(["espeak-ng", "-v", lang, "-w", raw, word], check=True)
            subprocess.run(["sox", raw, "-r", "16000", wav], check=True)
            s = read_wav(wav)
            loud = np.nonzero(np.abs(s) > 0.01 * np.abs(s).max())[0]
            s = s[loud[0]:loud[-1] + 1]
            times.append((length / 16000, (length + len(s)) / 16000))
            audio.append(s)
            length += len(s)
        audio.append(np.zeros(8000, np.float32))
        path = os.path.join(out, f"sentence{i}.wav")
        write_wav(path, np.concatenate(audio))
        truth[path] = times
        rows.append({"uri": path, "language": lang, "text": text})
    with open(os.path.join(out, "list.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f)


def norm(w):
    return re.sub(r"[^\w]", "", w.lower())


def errors(truth, got):
    """Boundary errors of words matched in order by text (greedy, in sequence)."""
    out = []
    for uri, words in got.items():
        true = truth.get(uri)
        if true is None:
            continue
        text = SENTENCES[int(re.search(r"sentence(\d+)", uri).group(1))][1].split()
        k = 0
        for w, s, e in words:
            while k < len(text) and norm(text[k]) != norm(w):
                k += 1
            if k == len(text):
                break
            out += [abs(s - true[k][0]), abs(e - true[k][1])]
            k += 1
    return out


def score(directory, stores):
    truth = json.load(open(os.path.join(directory, "truth.json")))
    methods = {}
    for spec in stores:
        name, path = spec.split("=", 1)
        rows = json.load(open(path))
        methods[name] = {r["uri"]: [(w["word"], w["start_s"], w["end_s"]) for w in r["words"] or []] for r in rows}
    from faster_whisper import WhisperModel
    cache = os.environ["SPEECHMILL_CACHE"]
    model = WhisperModel(os.path.join(cache, "models/whisper-base-ct2"), device="cpu", compute_type="int8", cpu_threads=2)
    fw = {}
    for i, (lang, _) in enumerate(SENTENCES):
        path = os.path.join(directory, f"sentence{i}.wav")
        segments, _ = model.transcribe(path, language=lang, beam_size=5, word_timestamps=True)
        fw[path] = [(w.word.strip(), w.start, w.end) for s in segments for w in s.words]
    methods["faster-whisper word_timestamps (base int8)"] = fw
    print(f"{'method':<46} {'boundaries':>10} {'median ms':>10} {'p90 ms':>8}")
    for name, got in methods.items():
        e = errors(truth, got)
        if not e:
            print(f"{name:<46} {0:>10}")
            continue
        p90 = float(np.percentile(e, 90))
        print(f"{name:<46} {len(e):>10} {statistics.median(e) * 1000:>10.0f} {p90 * 1000:>8.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        score(sys.argv[2], sys.argv[3:])
