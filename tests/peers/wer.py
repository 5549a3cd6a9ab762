#!/usr/bin/env python3
"""Corpus WER by jiwer after tests/peers/textnorm.py's normalisation.

    peers-venv/bin/python tests/peers/wer.py '{"references": [...], "hypotheses": [...]}'

Prints the WER as a fraction (0.05 = 5 %)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jiwer  # noqa: E402
from textnorm import normalise  # noqa: E402

data = json.loads(sys.argv[1])
refs = [normalise(r) for r in data["references"]]
hyps = [normalise(h) for h in data["hypotheses"]]
print(jiwer.wer(refs, hyps))
