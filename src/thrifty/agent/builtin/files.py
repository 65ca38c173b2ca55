"""Read and search text files under the workspace folder; paths cannot escape it."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

from ..tools import ToolContext, ToolError


def inside(workspace: Path, path: str) -> Path:
    """``path`` resolved (symlinks included) under ``workspace``, or ToolError."""
    root = workspace.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ToolError(f"{path!r} is outside the workspace")
    return target


def read_file(ctx: ToolContext, path: str) -> str:
    target = inside(ctx.workspace, path)
    if not target.is_file():
        raise ToolError(f"no file {path!r} in the workspace")
    with target.open("rb") as f:
        data = f.read(ctx.max_bytes + 1)
    text = data[: ctx.max_bytes].decode("utf-8", errors="replace")
    return text + ("\n[truncated]" if len(data) > ctx.max_bytes else "")


def search_files(ctx: ToolContext, pattern: str, glob: str = "*", limit: int = 50) -> list[dict[str, Any]]:
    """Lines matching ``pattern`` (a regex, case-insensitive) in files matching ``glob``."""
    root = ctx.workspace.resolve()
    try:
        regex = re.compile(pattern, re.I)
    except re.error as exc:
        raise ToolError(f"bad pattern {pattern!r}: {exc}") from None
    hits: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or not fnmatch.fnmatch(rel, glob) or not path.resolve().is_relative_to(root):
            continue
        with path.open("rb") as f:
            text = f.read(ctx.max_bytes).decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if regex.search(line):
                hits.append({"path": rel, "line": number, "text": line.strip()[:300]})
                if len(hits) >= limit:
                    return hits
    return hits
