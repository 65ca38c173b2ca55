"""A learned pair scorer: may the answer to one question be served for another?

The strict verifier (:mod:`.verify`) serves a semantic match only when every
content word has a partner; that is safe and catches few rewordings. A pair
model, fitted by ``thrifty cache fit`` on labelled pairs, decides instead, after
hard vetoes that no score overrides:

* a text the verifier cannot analyse (unknown script, no words) is refused;
* numbers must match exactly, and so must negations (not, no, never,
  without, ...) and the members of an opposite pair (before/after,
  open/closed, more/less, ...) the two questions use; "safe"/"unsafe" is a
  negation too;
* all words matched but in another order ("Word to PDF" / "PDF to Word") is a swap;
* words outside the Latin script must pass the strict verifier as well (the
  lists above are English; the model only relaxes the rule for what it can read).

Then the pair's features -- lexical ones from the verifier's word pairing,
and the two MiniLM vectors ``u``, ``v`` (``u*v``, ``|u-v|``, cosine) -- go
through a small numpy classifier (logistic regression or a one-hidden-layer
MLP) whose probability must reach the model's threshold, picked at fit time by
cross-validation so the out-of-fold false-hit rate stays under a limit.

What the strict verifier passes at the cache's cosine threshold is still served
(the cache scores it at least at the model's threshold); the model adds to it.

A model file is an ``.npz``: the feature set, its version, the standardisation,
the layers, the threshold and the cosine ``floor`` below which candidates are
not looked at. Loading needs numpy only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .verify import Alignment, Verdict, Word, align, content_words, verify

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float32]
    Tokens = Callable[[Sequence[str]], list[Array]]

FEATURES_VERSION = 1
FEATURE_SETS = ("cosine", "lexical", "lexical+cosine", "vectors", "all", "tokens", "all+tokens")


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_NEGATIONS = _set("not no never without none nothing nobody nowhere neither nor")
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-")
# Opposites: when both questions use words of one group, they must use the same ones.
_OPPOSITES = tuple(
    _set(group)
    for group in (
        "before after",
        "more less fewer",
        "most least",
        "over under",
        "above below",
        "up down",
        "on off",
        "in out",
        "inside outside",
        "buy sell",
        "import export",
        "upload download",
        "open closed close",
        "enable disable",
        "increase decrease",
        "best worst",
        "highest lowest",
        "high low",
        "maximum minimum max min",
        "early late",
        "earlier later",
        "first last",
        "include exclude",
        "allow block",
        "accept reject",
        "win lose",
        "gain lose",
        "plus minus",
        "positive negative",
        "true false",
        "advantage disadvantage",
        "pro con",
        "male female",
        "man woman",
        "day night",
        "past future",
        "old new",
        "cheap expensive",
        "easy hard difficult",
        "start stop end finish",
        "love hate",
        "like dislike",
        "legal illegal",
        "safe unsafe dangerous",
    )
)
_RAW_WORD = re.compile(r"\w+")
_WH = _set("what how why which who whom whose when where is are can do does did should will would")


@dataclass(frozen=True, slots=True)
class Judgement:
    """A pair model's decision: the probability, or why a hard veto refused the pair."""

    score: float
    refused: str = ""


def veto(found: Alignment) -> str:
    """Why this pair may not be served whatever a model says ('' when nothing forbids it)."""
    q_stems = [w.stem for w in found.query]
    c_stems = [w.stem for w in found.cached]
    if _numbers(q_stems) != _numbers(c_stems):
        return "numbers differ"
    if sum(s in _NEGATIONS for s in q_stems) != sum(s in _NEGATIONS for s in c_stems):
        return "negation differs"
    only_q = {q_stems[i] for i in found.only_query}
    only_c = {c_stems[j] for j in found.only_cached}
    if any(_negates(a, b) or _negates(b, a) for a in only_q for b in only_c):
        return "negation differs"
    q_set, c_set = set(q_stems), set(c_stems)
    for group in _OPPOSITES:
        if (q_set & group) - c_set and (c_set & group) - q_set:  # each has one the other lacks: a swap
            return "opposites differ"
    if not found.only_query and not found.only_cached and not found.in_order:
        return "word order differs"
    return ""


def _numbers(stems: list[str]) -> Counter[str]:
    """The numbers a question names; "1" is left out, since "one" is as often a pronoun."""
    return Counter(s for s in stems if (s[0].isdigit() or s[0] in "£$€") and s != "1")


def _negates(word: str, base: str) -> bool:
    """``word`` is ``base`` with a negating prefix ("unsafe", "illegal", "dislike")."""
    return len(base) >= 4 and any(word == p + base for p in _NEGATING_PREFIXES)


def _latin(words: list[Word]) -> bool:
    return all(all(c <= "\u024f" for c in w.stem) for w in words)


def _names(text: str) -> set[str]:
    """Stems of the words written with a capital after the first word (names, mostly)."""
    raw = _RAW_WORD.findall(text)
    capitalised = " ".join(w for w in raw[1:] if w[:1].isupper())
    return {w.stem for w in content_words(capitalised) or []}


def _trigrams(text: str) -> set[str]:
    t = " ".join(text.casefold().split())
    return {t[i : i + 3] for i in range(max(1, len(t) - 2))}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def lexical(found: Alignment, query: str, cached: str) -> list[float]:
    """Word-level features of a pair, symmetric in its two sides."""
    import math

    n_q, n_c, m = len(found.query), len(found.cached), len(found.matched)
    u_q, u_c = len(found.only_query), len(found.only_cached)
    names_q, names_c = _names(query), _names(cached)
    odd_names_q = sum(found.query[i].stem in names_q for i in found.only_query)
    odd_names_c = sum(found.cached[j].stem in names_c for j in found.only_cached)
    raw_q = set(_RAW_WORD.findall(query.casefold()))
    raw_c = set(_RAW_WORD.findall(cached.casefold()))
    first_q = next(iter(_RAW_WORD.findall(query.casefold())), "")
    first_c = next(iter(_RAW_WORD.findall(cached.casefold())), "")
    return [
        m / max(1, n_q + n_c - m),
        min(m / n_q, m / n_c),
        max(m / n_q, m / n_c),
        math.log1p(min(u_q, u_c)),
        math.log1p(max(u_q, u_c)),
        math.log1p(min(n_q, n_c)),
        math.log1p(max(n_q, n_c)),
        float(found.in_order),
        float(u_q > 0 and u_c > 0),
        float(u_q == 1 and u_c == 1),
        float(odd_names_q > 0 and odd_names_c > 0),
        math.log1p(odd_names_q + odd_names_c),
        min(len(query), len(cached)) / max(1, len(query), len(cached)),
        _jaccard(raw_q, raw_c),
        _jaccard(_trigrams(query), _trigrams(cached)),
        float(first_q == first_c or (first_q not in _WH and first_c not in _WH)),
    ]


def uses_tokens(kind: str) -> bool:
    """Whether feature set ``kind`` reads the questions' token vectors (one more encoder pass)."""
    return "tokens" in kind


def aligned(tq: Array, tc: Array) -> list[float]:
    """How well each token of one question finds a partner in the other (BERTScore-like), symmetric."""
    import math

    import numpy as np

    sim = tq.astype(np.float32) @ tc.astype(np.float32).T
    best_q, best_c = np.sort(sim.max(axis=1)), np.sort(sim.max(axis=0))
    mean_q, mean_c = float(best_q.mean()), float(best_c.mean())
    second_q = float(best_q[min(1, len(best_q) - 1)])
    second_c = float(best_c[min(1, len(best_c) - 1)])
    low = [(int((best_q < t).sum()), int((best_c < t).sum())) for t in (0.5, 0.7)]
    return [
        min(mean_q, mean_c),
        max(mean_q, mean_c),
        2 * mean_q * mean_c / max(1e-6, mean_q + mean_c),
        min(float(best_q[0]), float(best_c[0])),
        max(float(best_q[0]), float(best_c[0])),
        min(second_q, second_c),
        max(second_q, second_c),
        *(math.log1p(f(a, b)) for a, b in low for f in (min, max)),
    ]


def features(
    kind: str,
    found: Alignment,
    query: str,
    cached: str,
    u: Array,
    v: Array,
    tokens: tuple[Array, Array] | None = None,
) -> Array:
    """The feature vector of feature set ``kind`` for one pair (``tokens``: when the set uses them)."""
    import numpy as np

    cosine = float(u @ v)
    parts: list[Any] = []
    if kind in ("lexical", "lexical+cosine", "all", "all+tokens"):
        parts.append(np.asarray(lexical(found, query, cached), dtype=np.float32))
    if kind != "lexical":
        parts.append(np.asarray([cosine], dtype=np.float32))
    if uses_tokens(kind):
        assert tokens is not None, "this feature set needs the token vectors"
        parts.append(np.asarray(aligned(*tokens), dtype=np.float32))
    if kind in ("vectors", "all", "all+tokens"):
        parts += [u * v, np.abs(u - v)]
    out: Array = np.concatenate(parts).astype(np.float32)
    return out


def forward(layers: list[tuple[Array, Array]], x: Array) -> NDArray[np.float64]:
    """Probabilities: ReLU hidden layers, a sigmoid output (one layer = logistic regression)."""
    import numpy as np

    for w, b in layers[:-1]:
        x = np.maximum(x @ w + b, 0.0)
    w, b = layers[-1]
    z = np.clip((x @ w + b)[..., 0].astype(np.float64), -40.0, 40.0)
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))  # float64: near-certain scores stay apart
    return out


@dataclass
class PairModel:
    """A fitted scorer: features -> probability; serve at ``>= threshold`` after the vetoes."""

    kind: str
    mean: Array
    scale: Array
    layers: list[tuple[Array, Array]]
    threshold: float
    floor: float = 0.7  # cosine below which a candidate is not scored
    meta: dict[str, float] = field(default_factory=dict)

    def probability(self, x: Array) -> NDArray[np.float64]:
        return forward(self.layers, (x - self.mean) / self.scale)

    @property
    def uses_tokens(self) -> bool:
        return uses_tokens(self.kind)

    def judge(self, query: str, cached: str, u: Array, v: Array, tokens: Tokens | None = None) -> Judgement:
        """Score one candidate pair (``u``, ``v``: the questions' unit vectors).

        ``tokens`` turns texts into token vectors; only models that use them call it,
        after the vetoes (so a refused pair costs no encoder pass).
        """
        found = align(query, cached)
        if isinstance(found, Verdict):
            return Judgement(0.0, found.reason)
        reason = veto(found)
        if reason:
            return Judgement(0.0, reason)
        if not (_latin(found.query) and _latin(found.cached)):
            strict = verify(query, cached)
            if not strict.ok:
                return Judgement(0.0, strict.reason)
        pair = None
        if self.uses_tokens:
            if tokens is None:
                raise ConfigError(f"pair model {self.kind!r} needs token vectors")
            tq, tc = tokens([query, cached])
            pair = (tq, tc)
        x = features(self.kind, found, query, cached, u, v, pair)
        return Judgement(float(self.probability(x[None, :])[0]))

    def save(self, path: str | Path) -> None:
        import numpy as np

        arrays: dict[str, Any] = {
            "kind": np.array(self.kind),
            "version": np.array(FEATURES_VERSION),
            "mean": self.mean,
            "scale": self.scale,
            "threshold": np.array(self.threshold),
            "floor": np.array(self.floor),
            "layers": np.array(len(self.layers)),
            "meta_keys": np.array(sorted(self.meta)),
            "meta_values": np.array([self.meta[k] for k in sorted(self.meta)], dtype=np.float64),
        }
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PairModel:
        """Read a model file; a ConfigError when it is missing, foreign or of another version."""
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as z:
                kind = str(z["kind"])
                if int(z["version"]) != FEATURES_VERSION or kind not in FEATURE_SETS:
                    raise ConfigError(
                        f"pair model {path}: feature set {kind!r} version {int(z['version'])} "
                        f"is not this thrifty's ({FEATURES_VERSION}); fit it again"
                    )
                layers = [(z[f"w{i}"], z[f"b{i}"]) for i in range(int(z["layers"]))]
                meta = dict(zip(z["meta_keys"].tolist(), z["meta_values"].tolist(), strict=True))
                return cls(
                    kind, z["mean"], z["scale"], layers, float(z["threshold"]), float(z["floor"]), meta
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot read pair model {path}: {exc}") from exc
