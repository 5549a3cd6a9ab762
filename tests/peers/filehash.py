"""File hashing for the peer scripts (the converters' twin in models/tools/onnx_graph.py
needs onnx, which the peers venv does not have)."""

from __future__ import annotations

import hashlib


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
