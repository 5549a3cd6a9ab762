"""Piper synthesis speed of the `piper-tts` package (1.8.0, GPL: a benchmark peer only,
never a dependency of speechmill), for scripts/bench-tts.sh.

    python piper_bench.py VOICE.onnx TEXTS.txt [--threads 1] [--barrier DIR --parties N]

TEXTS.txt: one text per line, each spoken on its own (`PiperVoice.synthesize`, one
AudioChunk per sentence), as speechmill's `tts` speaks each span. The synthesis config
is speechmill's in the benchmark: noise_scale 0, noise_w 0, length_scale 1, and no peak
normalisation (piper-tts normalises each chunk by default; speechmill only clamps).
`PiperVoice.load` takes no session options, so the voice is built here from piper's own
parts (`PiperConfig.from_dict`, an `onnxruntime.InferenceSession` with `threads` intra-op
threads and one inter-op thread), as `load` builds it. Prints one JSON line:
{"chars": N, "seconds": S, "audio_s": A, "load_s": L, "lines": K}: characters of all
lines, seconds to synthesize them all (model load excluded; piper's embedded espeak-ng
is started by a warm-up phonemization inside the load time), seconds of audio (with
piper's 0.2 s of silence between the sentences of one line, as speechmill counts it),
and the load seconds. With `--barrier DIR --parties N` (N processes on parts of the
text at once), each process starts synthesizing only once all N have loaded their
voice, and the line also gives `start` and `end` (time.time()) so the caller can take
the wall time of all N.
"""

from __future__ import annotations

import argparse
import json
import os
import time

SENTENCE_SILENCE_S = 0.2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("voice")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--barrier", help="folder where N processes meet before synthesizing")
    ap.add_argument("--parties", type=int, default=1)
    args = ap.parse_args()
    with open(args.texts, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]

    t0 = time.perf_counter()
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig, SynthesisConfig

    with open(args.voice + ".json", encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        args.voice, sess_options=opts, providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=config)
    voice.phonemize("Warm up.")  # loads piper's espeak-ng library once
    load_s = time.perf_counter() - t0

    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0,
                          normalize_audio=False)
    samples = 0
    silences = 0
    if args.barrier:
        os.makedirs(args.barrier, exist_ok=True)
        open(os.path.join(args.barrier, f"ready.{os.getpid()}"), "w").close()
        while len(os.listdir(args.barrier)) < args.parties:
            time.sleep(0.001)
    start = time.time()
    t0 = time.perf_counter()
    for line in lines:
        chunks = list(voice.synthesize(line, syn_config=syn))
        samples += sum(len(c.audio_float_array) for c in chunks)
        silences += max(len(chunks) - 1, 0)
    seconds = time.perf_counter() - t0
    end = time.time()
    audio_s = samples / config.sample_rate + silences * SENTENCE_SILENCE_S
    print(json.dumps({"chars": sum(len(line) for line in lines), "seconds": round(seconds, 3),
                      "audio_s": round(audio_s, 3), "load_s": round(load_s, 3),
                      "lines": len(lines), "start": start, "end": end}))


if __name__ == "__main__":
    main()
