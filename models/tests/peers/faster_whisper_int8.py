#!/usr/bin/env python3
"""faster-whisper at compute_type int8: the independent reference of
models/tests/whisper_int8_accuracy.rs (speechmill's default precision).

    $CACHE/peers-venv/bin/python models/tests/peers/faster_whisper_int8.py '{"model_dir": ..., "clips": [wav, ...], "beam_size": 1}'

Runs faster-whisper (CTranslate2 int8 on the CPU, 2 threads, language "en", no timestamps,
no conditioning on previous text, no VAD) on each 16 kHz mono clip with the CTranslate2
checkpoint in model_dir, and prints {"settings": {...}, "clips": [{"tokens": [...], "text": str}]}
in the clips' order. (The peers venv comes from scripts/peers.sh.)
"""
import json
import sys

from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

args = json.loads(sys.argv[1])
settings = {"device": "cpu", "compute_type": "int8", "cpu_threads": 2}
options = dict(language="en", beam_size=args["beam_size"], temperature=0.0, without_timestamps=True,
               condition_on_previous_text=False, vad_filter=False)
model = WhisperModel(args["model_dir"], **settings)
out = []
for path in args["clips"]:
    segments, _ = model.transcribe(decode_audio(path, sampling_rate=16000), **options)
    segments = list(segments)
    out.append({"tokens": [t for s in segments for t in s.tokens],
                "text": "".join(s.text for s in segments).strip()})
print(json.dumps({"settings": {**settings, **options}, "clips": out}))
