"""Reads speechmill's shards with the real consumers, for tests/shard.rs: every
WebDataset tar with `webdataset`, every Parquet shard with `datasets`, decoding each
sample's audio with soundfile (datasets >= 4 decodes audio through torchcodec, which
needs torch; the bytes are what it would decode).

    python shard_reader.py OUT_DIR RESULT.json
"""
import glob
import io
import json
import os
import sys

import datasets
import soundfile as sf
import webdataset as wds


def main():
    out, result_path = sys.argv[1], sys.argv[2]
    result = {"webdataset": {}, "parquet": {}, "parquet_audio_feature": None}
    tars = sorted(glob.glob(os.path.join(out, "**", "*.tar"), recursive=True))
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        audio, sr = sf.read(io.BytesIO(sample["flac"]), dtype="int16")
        meta = json.loads(sample["json"])
        result["webdataset"][sample["__key__"]] = {
            "samples": int(len(audio)),
            "sample_rate": int(sr),
            "text": sample["txt"].decode("utf-8"),
            "segment_id": meta["segment_id"],
            "url": sample["__url__"],
        }
    parquets = sorted(glob.glob(os.path.join(out, "**", "*.parquet"), recursive=True))
    if parquets:
        ds = datasets.load_dataset("parquet", data_files={"shards": parquets}, split="shards")
        feature = ds.features["audio"]
        result["parquet_audio_feature"] = {
            "type": type(feature).__name__,
            "sampling_rate": getattr(feature, "sampling_rate", None),
        }
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
        for row in ds:
            audio, sr = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="int16")
            result["parquet"][row["segment_id"]] = {
                "samples": int(len(audio)),
                "sample_rate": int(sr),
                "text": row.get("text"),
                "path": row["audio"]["path"],
            }
    with open(result_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
