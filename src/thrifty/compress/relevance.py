"""How relevant each chunk of context is to a query: BM25, optionally blended with MiniLM.

BM25 (Okapi, k1=1.2, b=0.75) treats each chunk as a document of the pool; it
is pure Python and costs microseconds per chunk. The embedding score is the
cosine between the chunk and the query under the stack's MiniLM model; it is
blended in when the layer is configured with ``scorer: hybrid`` (it runs off
the event loop and costs milliseconds per hundred chunks).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from .text import terms, words

K1 = 1.2
B = 0.75


def bm25(chunks: Sequence[str], query: str) -> list[float]:
    """One score per chunk; 0 for a chunk sharing no term with the query."""
    wanted = set(terms(query))
    if not chunks or not wanted:
        return [0.0] * len(chunks)
    empty: Counter[str] = Counter()
    bags: list[Counter[str]] = []
    lengths: list[int] = []
    for chunk in chunks:
        tokens = words(chunk)
        lengths.append(len(tokens))
        hits = [w for w in tokens if w in wanted]
        bags.append(Counter(hits) if hits else empty)
    average = (sum(lengths) / len(lengths)) or 1.0
    frequency = Counter(term for bag in bags for term in bag)
    n = len(chunks)
    idf = {t: math.log(1.0 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
    scores = []
    for bag, length in zip(bags, lengths, strict=True):
        score = 0.0
        norm = K1 * (1 - B + B * length / average)
        for term, tf in bag.items():
            score += idf[term] * tf * (K1 + 1) / (tf + norm)
        scores.append(score)
    return scores


def blend(lexical: Sequence[float], semantic: Sequence[float], weight: float = 0.5) -> list[float]:
    """BM25 scaled to 0..1 by its maximum, mixed with cosine similarities (``weight`` on the cosine)."""
    top = max(lexical, default=0.0) or 1.0
    return [
        (1 - weight) * lex / top + weight * max(0.0, sem) for lex, sem in zip(lexical, semantic, strict=True)
    ]
