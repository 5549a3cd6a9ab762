"""Known text spoken by Piper's neural voice (the registry's en_US-joe-medium VITS model),
for the ASR benchmark's test audio: closer to human speech than espeak-ng's formant voices.

Phonemes come from espeak-ng (`--ipa=3`), as in Piper's own phonemizer: one espeak line per
clause, the clause's punctuation kept as a phoneme (Piper's ids include `,` `;` `:` `.`),
one model call per sentence, and `SENTENCE_SILENCE_S` of silence after each sentence
(Piper's CLI default). ONNX Runtime's random ops are seeded, so a rebuild on the same
machine gives the same audio.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np

SENTENCE_SILENCE_S = 0.2
SEED = 1234

_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_CLAUSE = re.compile(r"[^,;:.!?]+[,;:.!?]*")


class PiperVoice:
    def __init__(self, onnx_path: str, threads: int = 2):
        import onnxruntime as ort

        with open(onnx_path + ".json", encoding="utf-8") as f:
            cfg = json.load(f)
        self.sample_rate = int(cfg["audio"]["sample_rate"])
        self.espeak_voice = cfg["espeak"]["voice"]
        self.ids = {k: v[0] for k, v in cfg["phoneme_id_map"].items()}
        self.inference = cfg["inference"]
        ort.set_seed(SEED)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])

    def phonemes(self, sentence: str) -> str:
        """IPA of one sentence, clause punctuation kept."""
        out = []
        for clause in _CLAUSE.findall(sentence):
            words = clause.rstrip(",;:.!? ")
            punct = clause[len(words):].strip()[:1]
            if not words.strip():
                continue
            ipa = subprocess.run(["espeak-ng", "-q", "--ipa=3", "-v", self.espeak_voice, words],
                                 capture_output=True, text=True, check=True).stdout
            ipa = " ".join(ipa.replace("\u200d", "").replace("_", "").split())
            out.append(ipa + punct)
        return " ".join(out)

    def phoneme_ids(self, ipa: str) -> list[int]:
        pad = self.ids["_"]
        ids = [self.ids["^"], pad]
        for ch in ipa:
            if ch in self.ids:  # what Piper cannot say (rare marks) is skipped, as Piper does
                ids += [self.ids[ch], pad]
        return ids + [self.ids["$"]]

    def say(self, text: str, length_scale: float = 1.0) -> np.ndarray:
        """float32 samples at `self.sample_rate`; `length_scale` > 1 speaks slower."""
        inf = self.inference
        scales = np.array([inf["noise_scale"], inf["length_scale"] * length_scale, inf["noise_w"]], np.float32)
        silence = np.zeros(int(SENTENCE_SILENCE_S * self.sample_rate), np.float32)
        parts = []
        for sentence in _SENTENCE.findall(" ".join(text.split())):
            if not sentence.strip():
                continue
            ids = self.phoneme_ids(self.phonemes(sentence))
            audio = self.session.run(None, {"input": np.array([ids], np.int64),
                                            "input_lengths": np.array([len(ids)], np.int64),
                                            "scales": scales})[0]
            parts += [audio.reshape(-1).astype(np.float32), silence]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
