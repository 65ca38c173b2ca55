"""Cheap surface features of a prompt's question for the learned router.

Sixteen numbers a regular expression can read in microseconds: how long the
question is, whether it carries code, maths or tests, whether it is a question,
a fill-in-the-blank or a multiple choice (and with how many options), how many
worked examples precede it. They are general (no data set's names or labels)
and scaled to roughly unit range, so a linear model or a stacker can use them
beside the sentence embedding. numpy is imported lazily.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .vectors import question_part

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

NAMES = (
    "chars",
    "words",
    "question_chars",
    "lines",
    "examples",
    "options",
    "option_chars",
    "blank",
    "question_mark",
    "wh_word",
    "digits",
    "math",
    "code",
    "tests",
    "upper",
    "non_ascii",
)
_WORD = re.compile(r"\w+", re.UNICODE)
_EXAMPLE = re.compile(r"Answer:\s*\S{1,3}\s*\n\n")
_OPTION = re.compile(r"^\s*\(?([A-Ha-h1-8])[).:]\s+(\S.*)$", re.MULTILINE)
_BLANK = re.compile(r"(?<!\w)_{1,}(?!\w)")
_WH = re.compile(r"^\W*(what|which|who|whom|whose|when|where|why|how|is|are|does|do|can|will)\b", re.I)
_MATH = re.compile(r"[=+*/^<>]|\\frac|\\sqrt|\$|\d\s*[x×]\s*\d")
_CODE = re.compile(
    r"```|^\s*(def |class |import |from \S+ import|return |for .+:|if .+:|while .+:)|[{};]\s*$|\w+\(.*\)",
    re.MULTILINE,
)
_TEST = re.compile(r"\bassert\b|\btest(s)?\b", re.I)


def extract(text: str) -> list[float]:
    """The :data:`NAMES` features of one prompt, each roughly in [0, 1]."""
    question = question_part(text)
    words = len(_WORD.findall(question))
    n = max(len(question), 1)
    options = _OPTION.findall(question)
    stem = question.split("\n")[0] if options else question
    return [
        math.log1p(len(text)) / 10.0,
        math.log1p(words) / 6.0,
        math.log1p(len(question)) / 8.0,
        min(1.0, question.count("\n") / 20.0),
        min(1.0, len(_EXAMPLE.findall(text)) / 10.0),
        min(1.0, len(options) / 8.0),
        math.log1p(sum(len(o[1]) for o in options) / max(len(options), 1)) / 5.0,
        1.0 if _BLANK.search(question) else 0.0,
        1.0 if "?" in stem else 0.0,
        1.0 if _WH.search(stem) else 0.0,
        min(1.0, 10.0 * sum(c.isdigit() for c in question) / n),
        min(1.0, len(_MATH.findall(question)) / 10.0),
        min(1.0, len(_CODE.findall(question)) / 10.0),
        min(1.0, len(_TEST.findall(question)) / 3.0),
        min(1.0, 5.0 * sum(c.isupper() for c in question) / n),
        min(1.0, 5.0 * sum(ord(c) > 127 for c in question) / n),
    ]


def matrix(texts: Sequence[str]) -> Matrix:
    """(n, len(NAMES)) features for several prompts."""
    import numpy as np

    out: Matrix = np.array([extract(t) for t in texts], dtype=np.float32).reshape(len(texts), len(NAMES))
    return out
