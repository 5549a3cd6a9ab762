#!/usr/bin/env python3
"""Check a sequence Silero VAD (from silero_to_sequence.py) against the source model, and time both.

    python3 check_silero_sequence.py SRC.onnx SEQ.onnx [--wav-dir DIR] [--bench WAV ...]
                                     [--hc-model ONNX ...]

Needs numpy and onnxruntime. Audio: 16 kHz mono 16-bit WAV. The reference is SRC called
chunk by chunk (N = streams, stateN fed back), as speechmill's Rust VadStream runs it.
Checks, each printing the largest |difference| of probabilities, of the final h and of
the final c relative to max |c| (c reaches ~50) (fails, exit 1, if one is above 1e-4):
  (a) every WAV in --wav-dir as one stream (B = 1, T = all its chunks, one call);
  (b) the three shortest of different lengths as B = 3 streams in one call, the shorter
      ones zero-padded at the end: only their real chunks are compared (the state of a
      padded stream after the call has also seen the padding, so it is not compared);
  (c) the longest split into two calls (state carried over) against one call.
--bench times, with one intra-op and one inter-op thread, seconds per 1000 chunks:
  SRC per chunk B = 1; SRC per chunk B = 7; SEQ one call B = 1; SEQ in blocks of
  T = 1000 with B = 7; and each --hc-model, a one-stream sequence Silero with inputs
  input [N, 576], h, c [1, 1, 128] (faster-whisper's silero_vad_v6.onnx, the silero-vad
  wheel's silero_vad_16k_sequence.onnx), the way faster-whisper runs it: one call, N =
  all chunks. B = 7 streams are the --bench WAVs (cycled to 7), each zero-padded to the
  longest.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import wave

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from silero_to_sequence import HIDDEN, SAMPLE_RATE, TOLERANCE, chunk_rows  # noqa: E402

SR = np.array(SAMPLE_RATE, np.int64)


def read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise SystemExit(f"{path}: want 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def session(path: str) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def zero_state(b: int) -> np.ndarray:
    return np.zeros((2, b, HIDDEN), np.float32)


def run_src(src, rows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SRC chunk by chunk over rows [T, B, 576] -> probabilities [T, B], final state."""
    probs = np.empty(rows.shape[:2], np.float32)
    for t in range(rows.shape[0]):
        p, state = src.run(None, {"input": rows[t], "state": state, "sr": SR})
        probs[t] = p[:, 0]
    return probs, state


def run_seq(seq, rows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return tuple(seq.run(None, {"input": rows, "state": state}))


def stack(streams: list[np.ndarray]) -> np.ndarray:
    """Streams' rows [T_i, 576] -> [max T, B, 576], zero rows after a stream's end."""
    out = np.zeros((max(len(r) for r in streams), len(streams), streams[0].shape[1]), np.float32)
    for b, r in enumerate(streams):
        out[: len(r), b] = r
    return out


def check(src, seq, wavs: list[str]) -> bool:
    ok = True

    def report(what: str, p, rp, st=None, rst=None) -> None:
        """Largest |diff| of probabilities, of h, and of c relative to max |c| (>= 1)."""
        nonlocal ok
        dp = float(np.abs(p - rp).max())
        line, bad = f"  {what:<58} prob {dp:.1e}", dp > TOLERANCE
        if st is not None:
            dh = float(np.abs(st[0] - rst[0]).max())
            dc = float(np.abs(st[1] - rst[1]).max() / max(1.0, np.abs(rst[1]).max()))
            line += f"  h {dh:.1e}  c (rel) {dc:.1e}"
            bad |= dh > TOLERANCE or dc > TOLERANCE
        ok &= not bad
        print(line + ("  FAIL" if bad else ""))

    clips = {os.path.basename(p): chunk_rows(read_wav(p)) for p in wavs}
    ref = {}
    print("(a) each clip as one stream, one call")
    for name, r in clips.items():
        ref[name] = run_src(src, r[:, None], zero_state(1))
        p, s = run_seq(seq, r[:, None], zero_state(1))
        report(f"{name} (T={len(r)})", p, ref[name][0], s, ref[name][1])

    by_len = sorted({len(r): n for n, r in clips.items()}.items())[:3]
    names = [n for _, n in by_len]
    print(f"(b) B={len(names)} streams in one call, T={by_len[-1][0]}, shorter ones zero-padded")
    p, s = run_seq(seq, stack([clips[n] for n in names]), zero_state(len(names)))
    for b, n in enumerate(names):
        t, (rp, rs) = len(clips[n]), ref[n]
        if t == p.shape[0]:
            report(f"stream {b}: {n} (T={t})", p[:, b], rp[:, 0], s[:, b], rs[:, 0])
        else:
            report(f"stream {b}: {n} (T={t}, first {t} outputs)", p[:t, b], rp[:, 0])
            print(f"    (its stateN has also seen {p.shape[0] - t} padding chunks: differs from its true "
                  f"end state by {np.abs(s[:, b] - rs[:, 0]).max():.2g}, as documented)")

    name = max(clips, key=lambda n: len(clips[n]))
    r, cut = clips[name][:, None], len(clips[name]) // 3
    print(f"(c) {name} in two calls (T={cut} + {len(r) - cut}, state carried) vs one call")
    p1, s1 = run_seq(seq, r[:cut], zero_state(1))
    p2, s2 = run_seq(seq, r[cut:], s1)
    whole_p, whole_s = run_seq(seq, r, zero_state(1))
    report("split vs one call", np.concatenate([p1, p2]), whole_p, s2, whole_s)
    report("split vs source per chunk", np.concatenate([p1, p2]), ref[name][0], s2, ref[name][1])
    return ok


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench(src, seq, hc_models: list[str], wavs: list[str], repeat: int) -> None:
    one = chunk_rows(read_wav(wavs[0]))[:, None]  # [T, 1, 576]
    many = stack([chunk_rows(read_wav(wavs[i % len(wavs)])) for i in range(7)])  # [T, 7, 576]
    print(f"timing, 1 thread, best of {repeat}: seconds per 1000 chunks "
          f"(B=1: {os.path.basename(wavs[0])}, {len(one)} chunks; B=7: {many.shape[0]} x 7 chunks)")

    def blocks():
        s = zero_state(7)
        for t in range(0, many.shape[0], 1000):
            _, s = run_seq(seq, many[t:t + 1000], s)

    rows = [("SRC per chunk, B=1", best(lambda: run_src(src, one, zero_state(1)), repeat), one.shape[0]),
            ("SRC per chunk, B=7", best(lambda: run_src(src, many, zero_state(7)), repeat), many.shape[0] * 7),
            ("SEQ one call, B=1", best(lambda: run_seq(seq, one, zero_state(1)), repeat), one.shape[0]),
            ("SEQ T=1000 blocks, B=7", best(blocks, repeat), many.shape[0] * 7)]
    h, x = np.zeros((1, 1, HIDDEN), np.float32), np.ascontiguousarray(one[:, 0])
    for path in hc_models:
        m = session(path)
        rows.append((f"{os.path.basename(path)}, one call", best(
            lambda: m.run(None, {"input": x, "h": h, "c": h}), repeat), one.shape[0]))
    for what, sec, n in rows:
        print(f"  {what:<44} {1000 * sec / n:8.4f} s   ({sec:.3f} s for {n} chunks)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="Silero VAD source model (silero_vad.onnx)")
    ap.add_argument("seq", help="the sequence model written by silero_to_sequence.py")
    ap.add_argument("--wav-dir", default="/usr/share/pocketsphinx/test/data/librivox",
                    help="WAVs for the checks (default: pocketsphinx's LibriVox test clips)")
    ap.add_argument("--bench", nargs="+", metavar="WAV", help="time on these WAVs (the first is the B=1 stream)")
    ap.add_argument("--hc-model", metavar="ONNX", action="append", default=[],
                    help="also time this one-stream sequence model (input, h, c); repeatable")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs, the best is kept (default 3)")
    a = ap.parse_args()
    src, seq = session(a.src), session(a.seq)
    wavs = sorted(glob.glob(os.path.join(a.wav_dir, "*.wav")))
    if not wavs:
        print(f"check_silero_sequence: error: no .wav in {a.wav_dir}", file=sys.stderr)
        return 1
    ok = check(src, seq, wavs)
    if a.bench:
        bench(src, seq, a.hc_model, a.bench, a.repeat)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
