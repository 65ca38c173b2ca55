"""`import thrifty` exports exactly the names the README documents, and each of them works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import thrifty

README = Path(__file__).resolve().parents[1] / "README.md"


def documented() -> set[str]:
    """The names in the README's list under "`import thrifty` exports exactly these names"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("`import thrifty` exports exactly these names")
    block = text[start:].split("\n\n", 2)[1]  # the bullet list after the sentence
    names: set[str] = set()
    for line in block.splitlines():
        assert line.startswith("- "), line
        head = line[2:].split(":", 1)[0]
        names.update(re.findall(r"`([A-Za-z_]\w*)`", head))
    return names


def test_all_is_exactly_what_the_readme_documents() -> None:
    assert len(thrifty.__all__) == len(set(thrifty.__all__))
    assert set(thrifty.__all__) == documented()


def test_a_fresh_import_shows_no_other_public_name() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import thrifty; print(' '.join(n for n in dir(thrifty) if not n.startswith('_')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(out) == set(thrifty.__all__)


def test_every_public_name_resolves() -> None:
    for name in thrifty.__all__:
        assert getattr(thrifty, name) is not None, name
    assert thrifty.Gateway.__module__ == "thrifty.gateway"
    assert issubclass(thrifty.errors.ThriftyError, Exception)
    assert isinstance(thrifty.__version__, str)
