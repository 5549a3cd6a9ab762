"""Text normalisation for word error rates, shared by the peer scripts.

Independent of any ASR toolkit (faster-whisper's and openai-whisper's normalisers
are not used), so speechmill can apply the same rule to its own output:

1. Unicode NFKC, then lowercase.
2. Hyphens and dashes become spaces ("cold-hearted" -> "cold hearted").
3. Every other punctuation or symbol character (Unicode categories P* and S*,
   apostrophes included: "don't" -> "dont") is removed.
4. Runs of whitespace become one space; leading/trailing space is dropped.

Numbers and abbreviations are left alone ("Mr." -> "mr", not "mister").
WER is jiwer's corpus-level word error rate over normalised reference/hypothesis pairs.
"""

from __future__ import annotations

import re
import unicodedata

_DASHES = re.compile(r"[\u002d\u2010-\u2015\u2212]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _DASHES.sub(" ", text)
    text = "".join(c for c in text if unicodedata.category(c)[0] not in "PS")
    return _SPACE.sub(" ", text).strip()


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus-level WER (total edits / total reference words) after normalise()."""
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    if not any(refs):
        raise ValueError("empty references")
    return float(jiwer.wer(refs, hyps))
