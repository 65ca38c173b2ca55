"""Prompts laid out for provider prompt caches: what stays the same goes first, in the same order.

Providers bill a cached prompt prefix at a fraction of the input price (and
answer sooner), but only while the prefix is byte-identical from one request
to the next. Clients often send their tools in a different order each time:
:func:`stable_tools` sorts them by name. The passes keep the prefix stable on
their own -- system messages are never changed and the summary's cut moves in
steps. :func:`prompt_cache_key` names the stable prefix (tenant, system
messages, tools) for OpenAI's ``prompt_cache_key``, so requests sharing it are
sent to the same cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from ..types import Message


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        function = tool.get("function")
        if isinstance(function, dict):
            return str(function.get("name", ""))
        return str(tool.get("name", ""))
    return ""


def stable_tools(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with its tools sorted by name; ``params`` itself when already in order."""
    tools = params.get("tools")
    if not isinstance(tools, list) or len(tools) < 2:
        return params
    ordered = sorted(tools, key=_tool_name)
    if ordered == tools:
        return params
    return {**params, "tools": ordered}


def prompt_cache_key(tenant: str, messages: Sequence[Message], params: dict[str, Any]) -> str:
    """A short stable name of the prompt's stable prefix: tenant, leading system messages, tools."""
    digest = hashlib.blake2b(tenant.encode(), digest_size=12)
    for message in messages:
        if message.get("role") != "system":
            break
        digest.update(orjson.dumps(message.get("content"), option=orjson.OPT_SORT_KEYS))
    digest.update(orjson.dumps(params.get("tools"), option=orjson.OPT_SORT_KEYS))
    return "thrifty-" + digest.hexdigest()
