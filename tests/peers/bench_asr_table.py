#!/usr/bin/env python3
"""The ASR benchmark's report (scripts/bench-asr.sh prints it at the end).

    $CACHE/peers-venv/bin/python tests/peers/bench_asr_table.py $CACHE/bench-asr

Reads results-*.json and vad-results.json there and prints:
1. speed and WER per tool, model and compute type;
2. each tool's WER against faster-whisper's own pipeline on the same model and compute
   type, in points, with a 95 % paired bootstrap interval over the files: a difference
   whose interval spans zero is within what this much audio can tell apart;
3. the VAD alone, per CPU second.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textnorm import normalise, wer  # noqa: E402

PEER = "faster-whisper"
RESAMPLES = 10000


def file_errors(bench: str, result: dict) -> tuple[np.ndarray, np.ndarray]:
    """Word errors and reference words per file, in file-name order."""
    errors, words = [], []
    for name in sorted(result["files"]):
        with open(os.path.join(bench, os.path.splitext(name)[0] + ".txt"), encoding="utf-8") as f:
            ref = f.read().strip()
        n = len(normalise(ref).split())
        errors.append(wer([ref], [result["files"][name]["text"]]) * n)
        words.append(n)
    return np.array(errors), np.array(words)


def paired_interval(bench: str, ours: dict, peer: dict, seed: int = 0) -> tuple[float, float, float]:
    """WER(ours) - WER(peer) in points, and its 95 % bootstrap interval over files."""
    e1, n = file_errors(bench, ours)
    e0, _ = file_errors(bench, peer)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(n), size=(RESAMPLES, len(n)))
    diffs = (e1[picks].sum(1) - e0[picks].sum(1)) / n[picks].sum(1) * 100
    return (e1.sum() - e0.sum()) / n.sum() * 100, *np.percentile(diffs, [2.5, 97.5])


def main() -> int:
    bench = sys.argv[1]
    rows, audio = [], None
    for path in sorted(glob.glob(os.path.join(bench, "results-*.json"))):
        with open(path) as f:
            doc = json.load(f)
        audio = audio or doc.get("audio")
        rows += doc["results"]
    if audio:
        print(f"{audio['files']} files, {audio['seconds'] / 60:.1f} minutes of speech ({os.path.basename(bench)}); "
              f"speed = audio seconds per wall-clock second of transcription (model load excluded; "
              f"speechmill's is its whole process), process = the same for the whole process")
    print(f"| {'tool':14s} | {'model':7s} | {'compute':7s} | {'load s':>6s} | {'speed':>6s} | {'process':>7s} "
          f"| {'per CPU s':>9s} | {'RSS MB':>6s} | {'WER':>6s} |")
    print(f"|{'-' * 16}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 9}|{'-' * 11}|{'-' * 8}|{'-' * 8}|")
    for r in sorted(rows, key=lambda r: (r["model"], r["compute_type"], r["tool"])):
        cpu = f"{r['cpu_speed']:9.2f}" if r.get("cpu_speed") else f"{'n/a':>9s}"
        load = f"{r['load_s']:6.2f}" if r.get("load_s") is not None else f"{'incl.':>6s}"
        process = f"{r['audio_s'] / r['process_s']:7.2f}" if r.get("process_s") else f"{'n/a':>7s}"
        rss = f"{r['peak_rss_mb']:6.0f}" if r.get("peak_rss_mb") else f"{'n/a':>6s}"
        print(f"| {r['tool']:14s} | {r['model']:7s} | {r['compute_type']:7s} | {load} | "
              f"{r['speed']:6.2f} | {process} | {cpu} | {rss} | {r['wer']:6.3f} |")
    print("speechmill's time is its whole process (crawl, decode, VAD, model load: 'incl.').")

    peers = {(r["model"], r["compute_type"]): r for r in rows if r["tool"] == PEER}
    paired = [(r, peers[(r["model"], r["compute_type"])]) for r in rows
              if r["tool"] != PEER and (r["model"], r["compute_type"]) in peers]
    if paired:
        print()
        print(f"Against {PEER}'s own pipeline, same model and compute type: whole processes (x = its process "
              f"time over ours), peak RSS (ours over its), WER in points with a 95 % paired bootstrap "
              f"interval over the {len(paired[0][1]['files'])} files:")
        print(f"| {'tool':14s} | {'model':7s} | {'compute':7s} | {'process x':>9s} | {'RSS x':>5s} | "
              f"{'WER diff':>8s} | {'interval':>15s} |")
        print(f"|{'-' * 16}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 7}|{'-' * 10}|{'-' * 17}|")
        for r, peer in sorted(paired, key=lambda p: (p[0]["model"], p[0]["compute_type"], p[0]["tool"])):
            diff, lo, hi = paired_interval(bench, r, peer)
            speed = (f"{peer['process_s'] / r['process_s']:9.2f}" if r.get("process_s") and peer.get("process_s")
                     else f"{'n/a':>9s}")
            rss = (f"{r['peak_rss_mb'] / peer['peak_rss_mb']:5.2f}"
                   if r.get("peak_rss_mb") and peer.get("peak_rss_mb") else f"{'n/a':>5s}")
            print(f"| {r['tool']:14s} | {r['model']:7s} | {r['compute_type']:7s} | {speed} | {rss} | "
                  f"{diff:+8.2f} | {f'{lo:+.2f} .. {hi:+.2f}':>15s} |")
    ours = {(r["model"], r["compute_type"]): r for r in rows if r["tool"] == "speechmill"}
    same = [(ours[(r["model"], r["compute_type"])], r) for r in rows
            if r["tool"] == "fw-sm-segments" and (r["model"], r["compute_type"]) in ours]
    if same:
        print()
        print("The model path on the same segments: speechmill's whole process against fw-sm-segments' "
              "transcription alone (its load, audio decoding and VAD excluded):")
        for r, theirs in sorted(same, key=lambda p: (p[0]["model"], p[0]["compute_type"])):
            print(f"  {r['model']:7s} {r['compute_type']:7s} {r['speed'] / theirs['speed']:5.2f}x")

    vad = os.path.join(bench, "vad-results.json")
    if os.path.exists(vad):
        with open(vad) as f:
            rows = json.load(f)["results"]
        print()
        print("VAD per core (audio seconds per CPU second):")
        print(f"| {'tool':14s} | {'per CPU s':>9s} | {'speed':>7s} | {'segments':>8s} | what")
        print(f"|{'-' * 16}|{'-' * 11}|{'-' * 9}|{'-' * 10}|------")
        for r in rows:
            print(f"| {r['tool']:14s} | {r['cpu_speed']:9.1f} | {r['speed']:7.1f} | {r['segments']:8d} | {r['what']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
