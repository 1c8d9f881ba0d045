"""Plain-language reasons for an alert, from the features that pushed its score up the most.

Each feature's sentence is declared with the feature in ``features.registry``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features import FEATURES

__all__ = ["reasons"]

_SENTENCES = tuple(f.sentence for f in FEATURES)  # by vector index


def reasons(row: Sequence[float], contributions: np.ndarray, top: int = 3) -> list[str]:
    """The ``top`` positive contributors to the score, each as a sentence an officer can read aloud."""
    order = np.argsort(-contributions)
    out: list[str] = []
    for idx in order:
        if contributions[idx] <= 0 or len(out) >= top:
            break
        value = row[idx]
        if value != value:
            # Missing (e.g. a call's fields on a transfer row): nothing to say about it in words,
            # and wording it would claim "a 0 min call" or "a suspicious call 0 min ago".
            continue
        sentence = _SENTENCES[idx](row)
        if sentence not in out:
            out.append(sentence)
    return out
