"""What makes two requests the same: the exact key and the semantic partition.

The exact key hashes everything that can change an answer: tenant, namespace,
model group, every generation parameter and pass-through field, and the whole
message history (system prompt and tools included). The semantic partition
hashes the same things except the last user turn, so a semantic match can only
happen between requests whose history before that turn is identical.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..types import ChatRequest, message_text

# Fields that do not change the answer (``user`` identifies the end user for abuse
# monitoring; tenants are separated by ``trace.tenant`` instead).
_IGNORED = frozenset({"user", "stream", "stream_options"})


def _digest(parts: dict[str, Any]) -> str:
    raw = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def _base(request: ChatRequest, group: str, namespace: str) -> dict[str, Any]:
    return {
        "tenant": request.trace.tenant,
        "namespace": namespace,
        "group": group,
        "params": {k: v for k, v in request.params.items() if k not in _IGNORED},
        "extra": {k: v for k, v in request.extra.items() if k not in _IGNORED},
    }


EVERY_TENANT = "*"  # as a purge's tenant: the namespace in every tenant's space


def scoped_namespace(tenant: str, namespace: str) -> str:
    """The namespace as stored: inside its tenant's space, so a purge reaches one tenant only.

    ``tenant`` starts with the caller's key id whenever keys are configured,
    so no key can name (or purge) another key's namespace. Purging with the
    tenant :data:`EVERY_TENANT` (``*|docs``) reaches ``docs`` in every space.
    """
    return f"{tenant}|{namespace}" if tenant else namespace


def every_tenant(target: str) -> str | None:
    """The bare namespace when a purge ``target`` reaches every tenant, else None."""
    prefix = EVERY_TENANT + "|"
    return target[len(prefix) :] if target.startswith(prefix) else None


def in_purge(stored: str, target: str) -> bool:
    """Whether an entry stored under namespace ``stored`` is removed by a purge of ``target``."""
    bare = every_tenant(target)
    if bare is None:
        return stored == target
    return stored == bare or stored.endswith("|" + bare)


def exact_key(request: ChatRequest, group: str, namespace: str) -> str:
    """The key of this exact request."""
    return _digest({**_base(request, group, namespace), "messages": request.messages})


def last_user_text(request: ChatRequest) -> str | None:
    """The text of the final message when it is the user's, else None (not semantic-cacheable)."""
    if not request.messages:
        return None
    last = request.messages[-1]
    if last.get("role") != "user":
        return None
    text = message_text(last).strip()
    return text or None


def partition_key(request: ChatRequest, group: str, namespace: str) -> str:
    """Everything but the last user turn: semantic matches stay inside one partition."""
    return _digest({**_base(request, group, namespace), "history": request.messages[:-1]})


def is_sampled(request: ChatRequest) -> bool:
    """True when the answer is drawn at random (absent temperature means the provider default, 1)."""
    temperature = request.params.get("temperature", 1.0)
    return not isinstance(temperature, (int, float)) or temperature > 0
