#!/usr/bin/env python3
"""Reference results of faster-whisper for speechmill's Whisper tests.

    $CACHE/peers-venv/bin/python tests/peers/whisper_reference.py [--cache DIR] [--force]

(scripts/peers.sh runs it.) Runs faster-whisper (CTranslate2, compute_type float32,
cpu_threads 2) on the CTranslate2 checkpoints in $CACHE/models/ and writes
$CACHE/peers/whisper_reference.json plus, next to it:
  mel-<clip>.npy         faster-whisper's FeatureExtractor(feature_size=80)(audio): float32
                         [80, n_samples // 160 + 1] (audio + 160 zero samples, centred STFT,
                         last frame dropped, log10, clamp to max - 8, (x + 4) / 4)
  mel-window-<clip>.npy  what the encoder gets for the first window: the first
                         n_samples // 160 frames (the "content frames"), zero-padded (0.0,
                         not the clamped floor) to [80, 3000]
  espeak/<lang>.wav      espeak-ng speech (16 kHz mono PCM16) and espeak/<lang>.txt its text
Nothing is recomputed while the json's "stamp" (sha256 of this script, textnorm.py,
the checkpoints' model.bin and the faster-whisper/CTranslate2/espeak-ng versions) holds.

whisper_reference.json:
{
  "format": 1, "stamp": hex, "faster_whisper_version", "ctranslate2_version", "espeak_ng_version",
  "settings": {"device": "cpu", "compute_type": "float32", "cpu_threads": 2},
  "normalisation": text (tests/peers/textnorm.py), "wer": "jiwer corpus-level WER after normalisation",
  "clips": {CLIP: {"path": abs wav, "reference": transcript, "duration_s": float}},
  "mel": {CLIP: {"features": "mel-CLIP.npy", "window": "mel-window-CLIP.npy",
                 "shape": [80, n], "content_frames": n - 1, "n_mels": 80}},   (2 clips)
  "models": {
    "whisper-tiny.en" | "whisper-base": {
      "ct2_dir": "models/<name>-ct2", "onnx_dir": "models/<name>", "model_bin_sha256": hex,
      "multilingual": bool, "suppress_tokens": [ids faster-whisper suppresses],
      "greedy": {                      beam_size 1, temperature 0, without_timestamps,
        "options": {...},              condition_on_previous_text False, vad_filter False, "en"
        "clips": {CLIP: {"prompt": [ids], "tokens": [ids, no eot], "text": str, "wer": float,
                         "avg_logprob": float, "no_speech_prob": float}},
        "wer": float},                 (over the 5 clips)
      "beam5": {"options": {...},      faster-whisper defaults but without_timestamps and
        "clips": {CLIP: {"tokens", "text", "wer"}}, "wer": float}},   no previous-text conditioning
  "language_id": {"model": "whisper-base",  faster-whisper detect_language (first 30 s)
    "clips": {LANG: {"wav": "espeak/LANG.wav", "voice": espeak voice, "wpm": int, "text": str, "duration_s",
                     "detected": code, "correct": bool, "probability": float,
                     "top5": [[code, p], ...]}}}           (10 languages)
}
CLIP is the wav's stem, e.g. "sense_and_sensibility_01_austen_64kb-0870".
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from filehash import sha256_file  # noqa: E402
from textnorm import __doc__ as NORMALISATION_DOC, wer  # noqa: E402

FORMAT = 1
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
MODELS = [("whisper-tiny.en", "whisper-tiny.en-ct2"), ("whisper-base", "whisper-base-ct2")]
MEL_CLIPS = ["sense_and_sensibility_01_austen_64kb-0870", "sense_and_sensibility_01_austen_64kb-0930"]
SETTINGS = {"device": "cpu", "compute_type": "float32", "cpu_threads": 2}
GREEDY = dict(language="en", beam_size=1, temperature=0.0, without_timestamps=True,
              condition_on_previous_text=False, vad_filter=False)
BEAM5 = dict(language="en", beam_size=5, without_timestamps=True, condition_on_previous_text=False)

# (language code, espeak-ng voice, words per minute, text): everyday sentences, 9-14 s each.
# Whisper base identifies espeak-ng's formant speech in these languages (top-1 right; cs and
# vi with lower confidence), at these rates (espeak-ng's default 175, or slower where that
# helps); it did not for pt, pt-br, nl, ru, sv, tr, uk, ro, el, ja, zh, ko, id.
ESPEAK = [
    ("en", "en-us", 175, "The library opens at nine in the morning and closes late in the evening. Many students "
                    "come here to read quietly, to borrow books, and to meet their friends after class."),
    ("de", "de", 175, "Am Wochenende fahren wir mit dem Zug in die Berge. Dort wandern wir stundenlang durch die "
                 "Wälder, essen in einer kleinen Hütte zu Mittag und kommen erst am Abend müde nach Hause."),
    ("fr", "fr-fr", 175, "Chaque matin, ma grand-mère achète du pain frais à la boulangerie du village. Ensuite, elle "
                    "prépare un grand café et lit le journal sur la terrasse en écoutant les oiseaux."),
    ("es", "es", 175, "El verano pasado viajamos por el norte de España con nuestros amigos. Visitamos pueblos "
                 "pequeños, comimos pescado fresco en el puerto y caminamos cada tarde por la playa."),
    ("it", "it", 175, "Ogni domenica la nostra famiglia si riunisce a casa dei nonni per il pranzo. La nonna prepara "
                 "la pasta fatta in casa, mentre i bambini giocano in giardino fino a sera."),
    ("pl", "pl", 175, "W niedzielę rano poszliśmy z dziećmi do parku, żeby nakarmić kaczki nad stawem. Potem "
                 "zjedliśmy obiad u babci, która przygotowała pyszną zupę i ciasto z jabłkami."),
    ("fi", "fi", 145, "Kesällä menemme usein mökille järven rannalle. Saunomme illalla, uimme kylmässä vedessä ja "
                 "paistamme makkaraa nuotiolla, kun aurinko laskee hitaasti metsän taakse."),
    ("hu", "hu", 145, "Hétvégén gyakran kirándulunk a hegyekbe a barátainkkal. Egész nap sétálunk az erdőben, délben "
                 "egy kis vendéglőben ebédelünk, és csak este érünk haza fáradtan."),
    ("cs", "cs", 145, "O víkendu jsme jeli vlakem na hory. Celý den jsme chodili po lese, na oběd jsme si dali "
                 "polévku v malé chatě a večer jsme se unavení vrátili domů."),
    ("vi", "vi", 145, "Mỗi buổi sáng tôi đi bộ ra chợ để mua rau và trái cây tươi. Sau đó tôi uống cà phê ở một "
                 "quán nhỏ gần nhà và đọc báo."),
]


def say(msg: str) -> None:
    print(f"[whisper_reference] {msg}", flush=True)


def librivox_clips() -> dict[str, dict]:
    """{stem: {"path", "reference"}} from pocketsphinx-testdata's transcription file."""
    refs = {}
    with open(os.path.join(LIBRIVOX, "transcription"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.endswith(")"):
                continue
            text, _, ident = line[:-1].rpartition("(")
            text = text.replace("<s>", "").replace("</s>", "").strip()
            refs[ident.strip()] = " ".join(text.split())
    clips = {}
    for wav in sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav"))):
        stem = os.path.splitext(os.path.basename(wav))[0]
        if stem not in refs:
            raise SystemExit(f"no reference transcript for {wav}")
        clips[stem] = {"path": wav, "reference": refs[stem]}
    if len(clips) != 5:
        raise SystemExit(f"expected 5 LibriVox clips in {LIBRIVOX}, found {len(clips)}")
    return clips


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at")[0].strip()


def make_espeak_clips(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for lang, voice, wpm, text in ESPEAK:
        wav = os.path.join(out_dir, f"{lang}.wav")
        with tempfile.TemporaryDirectory() as tmp:
            raw = os.path.join(tmp, "raw.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", raw, text], check=True)
            subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", raw,
                            "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", "-map_metadata", "-1",
                            "-fflags", "+bitexact", wav + ".tmp.wav"], check=True)
        os.replace(wav + ".tmp.wav", wav)
        with open(os.path.join(out_dir, f"{lang}.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")


def run_model(name: str, ct2_dir: str, clips: dict, audio: dict):
    """Greedy and beam-5 results of one checkpoint; returns (result, the loaded WhisperModel)."""
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    t0 = time.perf_counter()
    model = WhisperModel(ct2_dir, **SETTINGS)
    multilingual = bool(model.model.is_multilingual)
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language="en")
    result = {
        "ct2_dir": os.path.relpath(ct2_dir, os.path.dirname(os.path.dirname(ct2_dir))),
        "onnx_dir": "models/" + name,
        "model_bin_sha256": sha256_file(os.path.join(ct2_dir, "model.bin")),
        "multilingual": multilingual,
        "suppress_tokens": list(get_suppressed_tokens(tokenizer, [-1])),
    }
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    for key, options in (("greedy", GREEDY), ("beam5", BEAM5)):
        per_clip, hyps = {}, []
        for stem, clip in clips.items():
            segments, _ = model.transcribe(audio[stem], **options)
            segments = list(segments)
            tokens = [t for s in segments for t in s.tokens]
            text = "".join(s.text for s in segments).strip()
            entry = {"tokens": tokens, "text": text, "wer": wer([clip["reference"]], [text])}
            if key == "greedy":
                entry = {"prompt": prompt, **entry,
                         "avg_logprob": segments[0].avg_logprob if segments else None,
                         "no_speech_prob": segments[0].no_speech_prob if segments else None}
            per_clip[stem] = entry
            hyps.append(text)
        overall = wer([c["reference"] for c in clips.values()], hyps)
        result[key] = {"options": options, "clips": per_clip, "wer": overall}
        say(f"{name} {key}: WER {overall:.3f}")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result, model


def language_id(model, espeak_dir: str) -> dict:
    from faster_whisper.audio import decode_audio

    out = {}
    for lang, voice, wpm, text in ESPEAK:
        wav = os.path.join(espeak_dir, f"{lang}.wav")
        a = decode_audio(wav, sampling_rate=16000)
        detected, prob, all_probs = model.detect_language(a)
        out[lang] = {"wav": f"espeak/{lang}.wav", "voice": voice, "wpm": wpm, "text": text,
                     "duration_s": round(len(a) / 16000, 3), "detected": detected, "correct": detected == lang,
                     "probability": float(prob),
                     "top5": [[c, float(p)] for c, p in all_probs[:5]]}
        say(f"language id {lang}: {detected} {prob:.3f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="faster-whisper reference results for speechmill's tests")
    ap.add_argument("--cache", default=os.environ.get("SPEECHMILL_CACHE", os.path.join(REPO, ".cache/speechmill")))
    ap.add_argument("--force", action="store_true", help="recompute even when the stamp matches")
    a = ap.parse_args()
    cache = os.path.abspath(a.cache)
    out_dir = os.path.join(cache, "peers")
    out_json = os.path.join(out_dir, "whisper_reference.json")

    import ctranslate2
    import faster_whisper

    ct2_dirs = {name: os.path.join(cache, "models", d) for name, d in MODELS}
    for d in ct2_dirs.values():
        if not os.path.exists(os.path.join(d, "model.bin")):
            raise SystemExit(f"{d}/model.bin missing: run scripts/setup.sh first")
    versions = {"faster_whisper_version": faster_whisper.__version__,
                "ctranslate2_version": ctranslate2.__version__, "espeak_ng_version": espeak_version()}
    h = hashlib.sha256()
    for p in (os.path.abspath(__file__), os.path.join(HERE, "textnorm.py")):
        h.update(sha256_file(p).encode())
    for name in sorted(ct2_dirs):
        h.update(sha256_file(os.path.join(ct2_dirs[name], "model.bin")).encode())
    h.update(json.dumps(versions, sort_keys=True).encode())
    stamp = h.hexdigest()

    if not a.force and os.path.exists(out_json):
        try:
            with open(out_json, encoding="utf-8") as f:
                old = json.load(f)
            files = [m["features"] for m in old["mel"].values()] + [m["window"] for m in old["mel"].values()] \
                + [c["wav"] for c in old["language_id"]["clips"].values()]
            if old.get("stamp") == stamp and all(os.path.exists(os.path.join(out_dir, p)) for p in files):
                say(f"up to date: {out_json}")
                return 0
        except (OSError, ValueError, KeyError):
            pass

    from faster_whisper.audio import decode_audio, pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    t0 = time.perf_counter()
    say(f"computing with faster-whisper {versions['faster_whisper_version']} "
        f"(ctranslate2 {versions['ctranslate2_version']}) into {out_dir}")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".work-", dir=out_dir)
    try:
        clips = librivox_clips()
        audio = {stem: decode_audio(c["path"], sampling_rate=16000) for stem, c in clips.items()}
        for stem in clips:
            clips[stem]["duration_s"] = round(len(audio[stem]) / 16000, 3)

        fe = FeatureExtractor(feature_size=80)
        mel = {}
        for stem in MEL_CLIPS:
            feats = fe(audio[stem]).astype(np.float32)
            window = pad_or_trim(feats[:, : feats.shape[-1] - 1]).astype(np.float32)
            np.save(os.path.join(work, f"mel-{stem}.npy"), feats)
            np.save(os.path.join(work, f"mel-window-{stem}.npy"), window)
            mel[stem] = {"features": f"mel-{stem}.npy", "window": f"mel-window-{stem}.npy",
                         "shape": list(feats.shape), "content_frames": feats.shape[-1] - 1, "n_mels": 80}

        make_espeak_clips(os.path.join(work, "espeak"))
        models, lid = {}, None
        for name, _ in MODELS:
            models[name], fw = run_model(name, ct2_dirs[name], clips, audio)
            if models[name]["multilingual"]:
                lid = {"model": name, "method": "faster-whisper detect_language, first 30 s",
                       "clips": language_id(fw, os.path.join(work, "espeak"))}
            del fw
        if lid is None:
            raise SystemExit("no multilingual model for language identification")

        doc = {"format": FORMAT, "stamp": stamp, **versions, "settings": SETTINGS,
               "normalisation": " ".join(NORMALISATION_DOC.split()),
               "wer": "jiwer corpus-level word error rate after normalisation",
               "clips": clips, "mel": mel, "models": models, "language_id": lid,
               "seconds": round(time.perf_counter() - t0, 1)}
        with open(os.path.join(work, "whisper_reference.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        # Move the finished files in; the json last, so a stamp never outlives its files.
        for entry in os.listdir(work):
            if entry == "whisper_reference.json":
                continue
            dest = os.path.join(out_dir, entry)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(os.path.join(work, entry), dest)
        os.replace(os.path.join(work, "whisper_reference.json"), out_json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {out_json} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
