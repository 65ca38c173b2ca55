"""`import thrifty` and `thrifty --help` stay cheap: no heavy modules, no side effects."""

from __future__ import annotations

import subprocess
import sys

# Modules `import thrifty` may pull in beyond a bare interpreter. Measured at 1
# (thrifty itself); the budget leaves room for small additions, not a stack.
IMPORT_BUDGET = 10
HEAVY = (
    "numpy",
    "llama_cpp",
    "starlette",
    "uvicorn",
    "aiohttp",
    "redis",
    "ray",
    "yaml",
    "genai_prices",
    "prometheus_client",
)


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_import_thrifty_pulls_in_few_modules_and_nothing_heavy() -> None:
    out = _run(
        "import sys; before = set(sys.modules); import thrifty; "
        "new = sorted(set(sys.modules) - before); print(len(new)); print(' '.join(new))"
    )
    count, names = out.splitlines()
    assert int(count) <= IMPORT_BUDGET, names
    assert not [n for n in names.split() if n.split(".")[0] in HEAVY]


def test_cli_help_loads_no_heavy_module_and_explains_itself() -> None:
    out = _run(
        "import sys, contextlib, io\n"
        "from thrifty.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
        "print(buf.getvalue())"
    )
    heavy, _, help_text = out.partition("\n")
    assert heavy == "[]"
    for command in ("serve", "chat", "models", "route", "agent", "batch", "usage", "top"):
        assert command in help_text
    assert "embedded" in help_text


def test_import_has_no_side_effects_on_environment_or_threads() -> None:
    out = _run(
        "import os, threading; env = dict(os.environ); import thrifty; "
        "print(env == dict(os.environ), threading.active_count())"
    )
    assert out.split() == ["True", "1"]
