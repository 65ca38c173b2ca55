"""Small tools and registries shared by the agent tests."""

from __future__ import annotations

import asyncio
from typing import Any

from thrifty.agent import ToolRegistry, ToolSpec

TEXT = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
ANY = {"type": "object", "properties": {"value": {}}}


async def echo(query: str) -> str:
    return f"<{query}>"


def spec(name: str, fn: Any, params: dict[str, Any] | None = None, **kw: Any) -> ToolSpec:
    return ToolSpec(name=name, description=f"the {name} tool", parameters=params or ANY, target=fn, **kw)


def registry(*extra: ToolSpec) -> ToolRegistry:
    """``search`` (echo), ``join_all`` (joins a list) and ``calc`` plus ``extra``."""

    def join_all(value: Any = None) -> str:
        return "+".join(map(str, value)) if isinstance(value, list) else str(value)

    from thrifty.agent.builtin import CALC

    return ToolRegistry([spec("search", echo, TEXT), spec("join_all", join_all, kind="thread"), CALC, *extra])


class Gate:
    """Tools that wait for each other: proves two tasks really ran at the same time."""

    def __init__(self, parties: int) -> None:
        self.barrier = asyncio.Barrier(parties)

    async def meet(self, value: Any = None) -> Any:
        async with asyncio.timeout(5):
            await self.barrier.wait()
        return value
