"""The verifier: a semantic match must say the same thing in (nearly) the same words.

Embeddings place "Is ibuprofen safe with alcohol?" and "... unsafe ..." at 0.99
cosine, and "Track order 48213" next to "48231". So after the similarity test,
a candidate passes only if every content word of each question finds its
partner in the other:

* same word after light normalisation (case, plural -s, contractions, filler
  and function words dropped), or a one-letter typo of a lowercase word of five
  letters or more;
* numbers (digits or number words, with units/currency) match exactly;
* negation, direction and comparison words (not, no, without, on/off,
  before/after, from/to, more/less ...) are content words: one cannot vanish;
* the matched words keep their order ("Word to PDF" is not "PDF to Word").

Every script is read: text is NFKC-normalised and digits of any script become
ASCII digits. Latin words get the rules above; words of other space-separated
scripts (Cyrillic, Greek, Arabic, Hebrew, Indic, Hangul, ...) must match
exactly after case folding, with no stop words and no typos; in scripts
written without spaces (Chinese, Japanese, Thai, ...) every character is a
word. A letter of a script not listed here makes the text unanalysable, and
an unanalysable (or wordless) question is refused, never passed.

It trades recall on loose rewordings for not serving a confident wrong answer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_TOKEN = re.compile(
    r"[£$€]?\d[\d,.:]*(?:[a-z%]{1,3}\b)?|[a-z\u00c0-\u024f][a-z\u00c0-\u024f\u0300-\u036f]*(?:\+\+|#)?|[^\x00-\x7f]",
    re.IGNORECASE,
)
# Scripts whose words are separated by spaces, and scripts written without spaces (a character is a word).
_SPACED = frozenset(
    (
        "LATIN",
        "CYRILLIC",
        "GREEK",
        "ARABIC",
        "HEBREW",
        "DEVANAGARI",
        "BENGALI",
        "GURMUKHI",
        "GUJARATI",
        "ORIYA",
        "TAMIL",
        "TELUGU",
        "KANNADA",
        "MALAYALAM",
        "SINHALA",
        "ARMENIAN",
        "GEORGIAN",
        "HANGUL",
        "ETHIOPIC",
        "SYRIAC",
        "THAANA",
    )
)
_UNSPACED = frozenset(
    ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN", "YI", "IDEOGRAPHIC")
)
_CONTRACTIONS = (
    (re.compile(r"\bcan['’]?t\b|\bcannot\b", re.I), "can not"),
    (re.compile(r"\bwon['’]?t\b", re.I), "will not"),
    (re.compile(r"n['’]t\b", re.I), " not"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|had|would|should|could|ai)nt\b", re.I), r"\1 not"),
    (re.compile(r"['’](s|re|m|ll|ve|d)\b", re.I), ""),
)


def _words(text: str) -> list[str]:
    return text.split()


_STOP = frozenset(
    _words("""a an the i me my mine myself we us our ours you your yours he him his she her hers it its
    they them their theirs this that these those is are am was were be been being do does did
    doing can could would will shall should may might must have has had of for at by about as
    there here please any some so okay ok hi hello hey thanks thank just really actually um uh
    well and or if also then too very quite anyone someone something anything
    morning afternoon evening team guys folks cheers wondering wonder curious quick question
    tell know let er erm yeah sorry silly but""")
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "dozen": "12",
    "half": "0.5",
    "once": "1x",
    "twice": "2x",
}


# Small, generic groups of words that ask the same thing; each maps to its first word.
_SYNONYMS = {
    word: group.split()[0]
    for group in (
        "start begin commence",
        "get receive obtain",
        "change update modify alter edit",
        "send submit",
        "fastest quickest",
        "buy purchase",
        "fix repair",
        "big large",
        "small little",
        "find locate",
        "delete remove",
        "need require",
        "quote quotation",
        "store shop",
        "car vehicle",
        "movie film",
        "help assist",
        "order request",
        "price cost",
        "show display",
        "phone telephone",
        "email e-mail",
    )
    for word in group.split()
}


@dataclass(frozen=True, slots=True)
class Word:
    stem: str
    fuzzy: bool  # may match a one-letter typo (lowercase, long, not a number)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and (word[-3] in "sxz" or word[-4:-2] in ("ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(c)) if not c.isascii() and c.isdecimal() else c for c in text)


def _script(char: str) -> str:
    return unicodedata.name(char, "?").split(" ", 1)[0]


def content_words(text: str) -> list[Word] | None:
    """The words that carry meaning, normalised, in order; None when a script cannot be analysed."""
    text = _ascii_digits(unicodedata.normalize("NFKC", text))
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    words: list[Word] = []
    joinable = -1  # end offset of the last spaced-script word that the next letter may extend
    for match in _TOKEN.finditer(text):
        raw = match.group()
        if len(raw) == 1 and not raw.isascii() and not ("\u00c0" <= raw <= "\u024f"):
            kind = _other(raw, words, joinable == match.start())
            if kind is None:
                return None
            joinable = match.end() if kind else -1
            continue
        joinable = -1
        lower = raw.lower()
        if lower[0].isdigit() or lower[0] in "£$€":
            words.append(Word(lower.replace(",", "").rstrip(".:"), False))
        elif not lower.isascii():  # an accented Latin word: exact, after case folding
            words.append(Word(lower.casefold(), False))
        elif lower in _NUMBER_WORDS:
            words.append(Word(_NUMBER_WORDS[lower], False))
        elif lower not in _STOP or (raw.isupper() and len(raw) > 1):  # "US", "IT" are names here
            stem = _stem(lower)
            words.append(Word(_SYNONYMS.get(stem, stem), raw.islower() and len(lower) >= 5))
    return words


def _other(char: str, words: list[Word], adjacent: bool) -> bool | None:
    """Add one non-Latin character to ``words``: True if a word may continue, None if unanalysable."""
    category = unicodedata.category(char)
    if category[0] == "M":  # a vowel sign or accent belongs to the letter before it
        if words and adjacent:
            words[-1] = Word(words[-1].stem + char, False)
            return True
        return False
    if category[0] == "L":
        script = _script(char)
        if script in _UNSPACED:
            words.append(Word(char, False))
            return True  # its marks (Thai vowels) attach to it
        if script not in _SPACED:
            return None
        if words and adjacent:
            words[-1] = Word(words[-1].stem + char.casefold(), False)
        else:
            words.append(Word(char.casefold(), False))
        return True
    if category[0] == "N" or category in ("So", "Sc", "Sm"):  # ½, ₹, emoji: compared as they are
        words.append(Word(char, False))
    return False


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or swap."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1])
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]


def _pair(query: list[Word], cached: list[Word]) -> tuple[list[int], list[int], list[int]]:
    """Match each query word to a cached word: (positions matched, unmatched q, unmatched c)."""
    used = [False] * len(cached)
    matched: dict[int, int] = {}
    leftover: list[int] = []
    for qi, word in enumerate(query):
        j = next((j for j, c in enumerate(cached) if not used[j] and c.stem == word.stem), None)
        if j is None:
            leftover.append(qi)
            continue
        used[j] = True
        matched[qi] = j
    unmatched_q: list[int] = []
    for qi in leftover:
        word = query[qi]
        j = next(
            (
                j
                for j, c in enumerate(cached)
                if not used[j] and word.fuzzy and c.fuzzy and _one_edit(word.stem, c.stem)
            ),
            None,
        )
        if j is None:
            unmatched_q.append(qi)
        else:
            used[j] = True
            matched[qi] = j
    return [matched[qi] for qi in sorted(matched)], unmatched_q, [j for j, u in enumerate(used) if not u]


def _same_order(positions: list[int]) -> bool:
    """In order, or one clause moved to the front/back ("At the hotel, is there ...")."""
    descents = [i for i in range(1, len(positions)) if positions[i] < positions[i - 1]]
    if not descents:
        return True
    if len(descents) > 1 or len(positions) < 3:
        return False
    cut = descents[0]
    return positions[-1] < positions[0] and positions[cut:] + positions[:cut] == sorted(positions)


@dataclass(frozen=True, slots=True)
class Alignment:
    """Two questions' content words, paired: what the verifier (and a pair model) reads."""

    query: list[Word]
    cached: list[Word]
    matched: list[int]  # cached positions of the matched query words, in query order
    only_query: list[int]
    only_cached: list[int]

    @property
    def in_order(self) -> bool:
        return _same_order(self.matched)


def align(query: str, cached: str) -> Alignment | Verdict:
    """The pairing of two questions' words, or the refusal when either cannot be read."""
    q_words, c_words = content_words(query), content_words(cached)
    if q_words is None or c_words is None:
        return Verdict(False, "cannot analyse the text (unsupported script)")
    if not q_words or not c_words:
        return Verdict(False, "no words to compare")
    return Alignment(q_words, c_words, *_pair(q_words, c_words))


def verify(query: str, cached: str) -> Verdict:
    """Whether an answer to ``cached`` may be served for ``query``."""
    found = align(query, cached)
    if isinstance(found, Verdict):
        return found
    q_words, c_words = found.query, found.cached
    matched, only_q, only_c = found.matched, found.only_query, found.only_cached
    if only_q or only_c:
        left = " ".join(q_words[i].stem for i in only_q) or "-"
        right = " ".join(c_words[j].stem for j in only_c) or "-"
        return Verdict(False, f"words differ: {left} / {right}")
    if not _same_order(matched):
        return Verdict(False, "word order differs")
    return Verdict(True)
