#!/usr/bin/env python3
"""Check the converted Whisper ONNX graphs against faster-whisper: greedy tokens must match.

    $CACHE/peers-venv/bin/python tests/peers/check_onnx_greedy.py [--cache DIR] [--int8]

For each converted model in $CACHE/models/{whisper-tiny.en,whisper-base}/ (written by
scripts/setup.sh) and each LibriVox clip of pocketsphinx-testdata, decodes greedily with
onnxruntime (encoder.onnx + decoder.onnx, or decoder_int8.onnx with --int8) and compares
the tokens with faster-whisper (float32, beam_size 1, temperature 0, no timestamps,
language "en") on the CTranslate2 checkpoint the ONNX graphs came from. The log-mel comes
from faster-whisper's FeatureExtractor, so only the graphs are compared. Exits non-zero
when a float32 decode differs (int8 differences are reported, not fatal).

The greedy loop is the one speechmill implements: prompt <|startoftranscript|>
(+ <|en|> <|transcribe|> for multilingual models) <|notimestamps|>; whisper.json's
suppress_ids at every step and suppress_ids_begin at the first; stop at <|endoftext|>.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio, pad_or_trim
from faster_whisper.feature_extractor import FeatureExtractor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
MODELS = [("whisper-tiny.en", "whisper-tiny.en-ct2"), ("whisper-base", "whisper-base-ct2")]


class OnnxGreedy:
    def __init__(self, onnx_dir: str, decoder: str = "decoder.onnx", threads: int = 2):
        with open(os.path.join(onnx_dir, "whisper.json")) as f:
            self.w = json.load(f)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self.enc = ort.InferenceSession(os.path.join(onnx_dir, "encoder.onnx"), so, providers=cpu)
        self.dec = ort.InferenceSession(os.path.join(onnx_dir, decoder), so, providers=cpu)
        meta = self.dec.get_modelmeta().custom_metadata_map
        assert meta["speechmill_layout"] == "whisper-v1", meta.get("speechmill_layout")
        assert json.loads(meta["tokens"]) == self.w["tokens"], "metadata_props disagree with whisper.json"
        self.suppress = np.array(self.w["suppress_ids"], np.int64)
        self.suppress_begin = np.array(self.w["suppress_ids_begin"], np.int64)

    def prompt(self, language: str = "en") -> list[int]:
        t = self.w["tokens"]
        p = [t["sot"]]
        if self.w["multilingual"]:
            p += [self.w["languages"][language], t["transcribe"]]
        return p + [t["no_timestamps"]]

    def decode(self, mel: np.ndarray, prompt: list[int]) -> list[int]:
        L, H, D = self.w["n_dec_layers"], self.w["n_heads"], self.w["d_model"]
        cross_k, cross_v = self.enc.run(None, {"mel": mel[None].astype(np.float32)})
        past = np.zeros((L, 1, H, 0, D // H), np.float32)
        pk, pv = past, past
        feed, out = prompt, []
        max_new = min(self.w["n_text_ctx"] // 2, self.w["n_text_ctx"] - len(prompt))
        while len(out) < max_new:
            logits, pk, pv, align = self.dec.run(None, {
                "tokens": np.array([feed], np.int64), "past_self_k": pk, "past_self_v": pv,
                **{f"cross_k_{l}": cross_k[l] for l in range(L)},
                **{f"cross_v_{l}": cross_v[l] for l in range(L)}})
            assert align.shape == (1, len(self.w["alignment_heads"]), len(feed), self.w["n_audio_ctx"])
            z = logits[0, -1].copy()
            z[self.suppress] = -np.inf
            if not out:
                z[self.suppress_begin] = -np.inf
            nxt = int(np.argmax(z))
            if nxt == self.w["tokens"]["eot"]:
                break
            out.append(nxt)
            feed = [nxt]
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("SPEECHMILL_CACHE", os.path.join(REPO, ".cache/speechmill")))
    ap.add_argument("--int8", action="store_true", help="also decode with decoder_int8.onnx (reported only)")
    a = ap.parse_args()
    clips = sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))
    fe = FeatureExtractor(feature_size=80)
    failures = 0
    for onnx_name, ct2_name in MODELS:
        onnx_dir = os.path.join(a.cache, "models", onnx_name)
        fw = WhisperModel(os.path.join(a.cache, "models", ct2_name), device="cpu",
                          compute_type="float32", cpu_threads=2)
        decoders = {"fp32": OnnxGreedy(onnx_dir)}
        if a.int8:
            decoders["int8"] = OnnxGreedy(onnx_dir, "decoder_int8.onnx")
        for clip in clips:
            audio = decode_audio(clip, sampling_rate=16000)
            segs, _ = fw.transcribe(audio, language="en", beam_size=1, temperature=0.0,
                                    without_timestamps=True, condition_on_previous_text=False,
                                    vad_filter=False)
            ref = [t for s in segs for t in s.tokens]
            feats = fe(audio)
            mel = pad_or_trim(feats[:, : feats.shape[-1] - 1])
            for kind, og in decoders.items():
                t0 = time.perf_counter()
                got = og.decode(mel, og.prompt())
                dt = time.perf_counter() - t0
                same = got == ref
                if kind == "fp32" and not same:
                    failures += 1
                name = os.path.basename(clip)[-8:-4]
                print(f"{onnx_name:16s} {kind}  clip {name}  {len(got):3d} tokens  "
                      f"{'same' if same else 'DIFFERENT'}  ({dt:.2f}s)", flush=True)
                if not same:
                    print(f"    faster-whisper {ref}\n    onnx           {got}")
    print(f"{'OK' if not failures else 'FAILED'}: {failures} float32 decodes differ from faster-whisper")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
