#!/usr/bin/env python3
"""speechmill's side of the ASR and VAD benchmarks (scripts/bench-asr.sh runs it).

    python tests/peers/bench_speechmill.py asr --bin target/debug/speechmill [--cache DIR]
        [--models tiny.en,base] [--compute int8,float32] [--words] [--json OUT]
    python tests/peers/bench_speechmill.py vad --bin target/debug/speechmill [--cache DIR]
        [--json OUT]

Both read the audio that bench_faster_whisper.py prepared in $CACHE/bench-asr/ (or
--audio bench-asr-long, the long-recording case).

asr  runs dags/corpus.toml --until asr (ingest → segment → asr) on every file of manifest.json, for
     each model and compute type, into a fresh store: asr.model=whisper-<model>,
     asr.precision=int8|int8-rows|fp32, asr.language=en (faster-whisper's side fixes it too),
     asr.threads=2, beam 5 (the DAG's default, as faster-whisper's). The clock covers the
     whole `speechmill run` process (asr.word_timestamps=false, the same work as
     faster-whisper's side, unless --words): crawl, decode, Silero VAD, model load and
     transcription, so `load_s` is inside `transcribe_s` (faster-whisper's side excludes
     its load, audio decoding and VAD-model load). WER: the segments' text joined per file
     in time order, scored like faster-whisper's (textnorm.wer, corpus-level). The segment
     node's cuts go to $CACHE/bench-asr/speechmill-segments.json, for faster-whisper to
     transcribe the same clips (bench_faster_whisper.py run --clips).
vad  times `speechmill run dags/corpus.toml --until segment` (decode + Silero VAD + cut)
     against faster-whisper's Silero VAD (`get_speech_timestamps`, onnxruntime in Python,
     one thread) on the same files, audio already decoded on the Python side. Reported per
     CPU second (audio seconds per CPU second of the process, all threads), i.e. per core.

Each writes JSON in the schema of bench_faster_whisper.py's results and prints its rows;
peak RSS (ru_maxrss of the speechmill process) is recorded as `peak_rss_mb`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from textnorm import wer  # noqa: E402


def run_child(argv: list[str]) -> dict:
    """Runs argv to completion: wall seconds, CPU seconds (all threads) and peak RSS of
    that one process, read with wait4."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.chdir(REPO)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        log = os.open(os.path.join(tempfile.gettempdir(), "bench_speechmill.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 2)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        with open(os.path.join(tempfile.gettempdir(), "bench_speechmill.log")) as f:
            tail = f.read()[-2000:]
        sys.exit(f"bench_speechmill: {' '.join(argv)} failed:\n{tail}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def load_manifest(bench: str) -> tuple[list[dict], float]:
    with open(os.path.join(bench, "manifest.json")) as f:
        manifest = json.load(f)
    return manifest, sum(m["seconds"] for m in manifest)


def ingest_paths(bench: str, manifest: list[dict]) -> str:
    return json.dumps([os.path.join(bench, m["file"]) for m in manifest])


def sql(binary: str, store: str, query: str) -> list[dict]:
    out = subprocess.run([binary, "sql", "--store", store, "--format", "json", query],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    out = out.strip()
    if not out:
        return []
    try:
        doc = json.loads(out)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:  # one JSON object per line
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def asr(a: argparse.Namespace) -> None:
    bench = os.path.join(a.cache, a.audio)
    manifest, audio_s = load_manifest(bench)
    refs = {m["file"]: open(os.path.join(bench, m["text"]), encoding="utf-8").read().strip() for m in manifest}
    results = []
    for model in a.models.split(","):
        for compute in a.compute.split(","):
            precision = "fp32" if compute in ("float32", "fp32") else compute
            with tempfile.TemporaryDirectory(prefix="bench-speechmill-") as store:
                t = run_child([a.bin, "run", "dags/corpus.toml", "--store", store, "--until", "asr",
                               "--set", f"ingest.paths={ingest_paths(bench, manifest)}",
                               "--set", f"asr.model=whisper-{model}",
                               "--set", f"asr.precision={precision}",
                               "--set", "asr.language=en", "--set", "asr.threads=2",
                               "--set", f"asr.word_timestamps={'true' if a.words else 'false'}",
                               *[arg for kv in a.set for arg in ("--set", kv)]])
                rows = sql(a.bin, store, "SELECT uri, start_s, text FROM asr ORDER BY uri, start_s")
                segments = sql(a.bin, store, "SELECT uri, start_s, end_s FROM segment ORDER BY uri, start_s")
            clips: dict[str, list[list[float]]] = {}
            for s in segments:
                clips.setdefault(os.path.basename(s["uri"]), []).append([s["start_s"], s["end_s"]])
            # The segments do not depend on the model: faster-whisper transcribes them too.
            with open(os.path.join(bench, "speechmill-segments.json"), "w", encoding="utf-8") as f:
                json.dump(clips, f)
            texts: dict[str, list[str]] = {}
            for r in rows:
                texts.setdefault(os.path.basename(r["uri"]), []).append(r["text"] or "")
            hyps = [" ".join(texts.get(m["file"], [])) for m in manifest]
            files = {m["file"]: {"seconds": m["seconds"], "wer": round(wer([refs[m["file"]]], [h]), 4), "text": h}
                     for m, h in zip(manifest, hyps)}
            r = {"tool": "speechmill", "model": model, "compute_type": compute, "load_s": None,
                 "transcribe_s": round(t["wall"], 2), "cpu_s": round(t["cpu"], 2), "audio_s": round(audio_s, 3),
                 "speed": round(audio_s / t["wall"], 2), "cpu_speed": round(audio_s / t["cpu"], 2),
                 "process_s": round(t["wall"], 2), "process_cpu_s": round(t["cpu"], 2),
                 "peak_rss_mb": t["peak_rss_mb"], "segments": len(rows),
                 "wer": round(wer([refs[m["file"]] for m in manifest], hyps), 4), "files": files}
            print(f"speechmill {model:8s} {compute:8s} {r['speed']:6.2f} audio-s/s "
                  f"{r['cpu_speed']:6.2f} per CPU s  WER {r['wer']:.3f}  peak RSS {r['peak_rss_mb']} MB",
                  file=sys.stderr)
            results.append(r)
    write(a.json or os.path.join(bench, "results-speechmill.json"), manifest, audio_s, results,
          {"dag": "dags/corpus.toml", "language": "en", "threads": 2, "beam_size": 5,
           "word_timestamps": a.words,
           "timed": "whole process: crawl, decode, VAD, model load, transcription"})


def vad(a: argparse.Namespace) -> None:
    bench = os.path.join(a.cache, a.audio)
    manifest, audio_s = load_manifest(bench)
    with tempfile.TemporaryDirectory(prefix="bench-vad-") as store:
        ours = run_child([a.bin, "run", "dags/corpus.toml", "--store", store, "--until", "segment",
                          "--set", f"ingest.paths={ingest_paths(bench, manifest)}"])
        n_ours = sql(a.bin, store, "SELECT count(*) AS n FROM segment")[0]["n"]
    # faster-whisper's Silero VAD in a child of its own, so its CPU time is its alone.
    script = r"""
import json, os, sys, time, resource
from faster_whisper.audio import decode_audio
from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model
files = json.loads(sys.argv[1])
audio = [decode_audio(f, sampling_rate=16000) for f in files]
get_vad_model()  # load once, outside the clock
opts = VadOptions(min_silence_duration_ms=100, speech_pad_ms=200)
c0, t0 = time.process_time(), time.perf_counter()
n = sum(len(get_speech_timestamps(a, opts)) for a in audio)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "regions": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    files = [os.path.join(bench, m["file"]) for m in manifest]
    theirs = json.loads(subprocess.run([a.python, "-c", script, json.dumps(files)], check=True,
                                       capture_output=True, text=True).stdout)
    results = [
        {"tool": "speechmill", "what": "decode + Silero VAD + cut (segment node, whole process)",
         "wall_s": round(ours["wall"], 2), "cpu_s": round(ours["cpu"], 2),
         "speed": round(audio_s / ours["wall"], 2), "cpu_speed": round(audio_s / ours["cpu"], 2),
         "peak_rss_mb": ours["peak_rss_mb"], "segments": n_ours},
        {"tool": "faster-whisper", "what": "Silero VAD only (get_speech_timestamps), audio pre-decoded",
         "wall_s": round(theirs["wall"], 2), "cpu_s": round(theirs["cpu"], 2),
         "speed": round(audio_s / theirs["wall"], 2), "cpu_speed": round(audio_s / theirs["cpu"], 2),
         "peak_rss_mb": round(theirs["peak_rss_mb"], 1), "segments": theirs["regions"]},
    ]
    for r in results:
        print(f"{r['tool']:14s} {r['speed']:8.1f} audio-s/s {r['cpu_speed']:8.1f} per CPU s  ({r['what']})",
              file=sys.stderr)
    write(a.json or os.path.join(bench, "vad-results.json"), manifest, audio_s, results, {})


def write(path: str, manifest: list[dict], audio_s: float, results: list[dict], settings: dict) -> None:
    doc = {"tool": "speechmill", "settings": settings,
           "audio": {"files": len(manifest), "seconds": round(audio_s, 3)}, "results": results}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["asr", "vad"])
    p.add_argument("--bin", default=os.path.join(REPO, "target/debug/speechmill"))
    p.add_argument("--cache", default=os.environ.get("SPEECHMILL_CACHE", os.path.join(REPO, ".cache/speechmill")))
    p.add_argument("--models", default="tiny.en,base")
    p.add_argument("--compute", default="int8,float32")
    p.add_argument("--python", default=sys.executable, help="a Python with faster-whisper (vad)")
    p.add_argument("--audio", default="bench-asr", help="the audio's folder in the cache")
    p.add_argument("--json")
    p.add_argument("--words", action="store_true",
                   help="asr: word timestamps too (asr.word_timestamps, on by default in the DAG); "
                        "without it the runs do what faster-whisper's side does: text only")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="extra `speechmill run --set` for the asr runs (e.g. segment.pad_s=0.4)")
    a = p.parse_args()
    a.cache = os.path.abspath(a.cache)
    asr(a) if a.what == "asr" else vad(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
