"""The ``llm`` tool: a question (with context) answered by a model through thrifty."""

from __future__ import annotations

from typing import Any

from ...types import ChatRequest
from ..plan import as_text
from ..tools import ToolContext, ToolError


async def ask_llm(ctx: ToolContext, prompt: str, context: Any = None) -> str:
    if ctx.backend is None:
        raise ToolError("the llm tool needs a backend (the gateway) in the tool context")
    content = prompt if context is None else f"{prompt}\n\nContext:\n{as_text(context)}"
    request = ChatRequest(model=ctx.model, messages=[{"role": "user", "content": content}])
    response = await ctx.backend.complete(request)
    return str(response.text).strip()
