"""Old turns summarised by a cheap model group instead of extractively (``summary_model``).

The old turns are rendered as a transcript and sent to the named group with a
short instruction; the answer, under the usual summary header, replaces the
extractive summary. Summaries are kept per span of old turns (a hash of the
messages), so the same span gets the same words on every later turn: the
summariser's cut moves in steps, the prefix stays byte-identical, and provider
prompt caches keep hitting. A failure of any kind, an empty answer or an
answer slower than ``timeout`` leaves the extractive summary in place; a
failure is logged once per minute and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ThriftyError
from ..types import ChatRequest, Message
from .history import SUMMARY_HEADER
from .parts import role, text_of, tool_call_names

if TYPE_CHECKING:
    from ..backend import Backend

log = logging.getLogger("thrifty.compress")
KEPT = 1024  # summaries remembered, the least recently used dropped first
MAX_TRANSCRIPT_CHARS = 60_000  # of old turns sent to the summary model
INSTRUCTION = (
    "Summarise the earlier part of a conversation for the assistant who continues it. "
    "Keep every fact, number, name, decision, open question, tool call and tool result that may "
    "matter later; copy code verbatim. Write short bullet points, no preamble, at most a third "
    "of the length of the transcript."
)


class SummaryWriter:
    def __init__(self, group: str, groups: Callable[[str], Backend | None], timeout: float) -> None:
        self.group = group
        self.groups = groups
        self.timeout = timeout
        self._kept: OrderedDict[str, str] = OrderedDict()
        self.written = 0
        self.reused = 0
        self.failed = 0
        self._logged = 0.0

    def status(self) -> dict[str, Any]:
        return {
            "model_summaries": self.written,
            "model_summaries_reused": self.reused,
            "model_summary_failures": self.failed,
        }

    async def summary(self, old: Sequence[Message]) -> str | None:
        """The summary message's text for ``old``, or None to keep the extractive one."""
        key = hashlib.blake2b(
            orjson.dumps(list(old), option=orjson.OPT_SORT_KEYS), digest_size=16
        ).hexdigest()
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            self.reused += 1
            return kept
        backend = self.groups(self.group)
        if backend is None:
            self._failure(f"no model group named {self.group!r}")
            return None
        request = ChatRequest(
            model=self.group,
            messages=[
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": transcript(old)},
            ],
            params={"temperature": 0},
            options={"compress": "off", "learn": False},
        )
        try:
            async with asyncio.timeout(self.timeout):
                response = await backend.complete(request)
        except TimeoutError:
            self._failure(f"no answer within {self.timeout:g} s")
            return None
        except ThriftyError as exc:
            self._failure(exc.message)
            return None
        text = response.text.strip()
        if not text:
            self._failure("an empty answer")
            return None
        written = SUMMARY_HEADER.format(n=len(old)) + "\n" + text
        self._kept[key] = written
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        self.written += 1
        return written

    def _failure(self, why: str) -> None:
        self.failed += 1
        now = time.monotonic()
        if now - self._logged > 60:
            self._logged = now
            log.warning(
                "compress: the summary model %s failed (%s); the extractive summary is used", self.group, why
            )
        return None


def transcript(old: Sequence[Message]) -> str:
    """The old turns as plain text lines: who said what, which tools were called with what."""
    names = tool_call_names(old)
    lines: list[str] = []
    for message in old:
        kind = role(message)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            lines.append(
                f"assistant called {function.get('name', 'a tool')}({function.get('arguments', '')})"
            )
        text = text_of(message).strip()
        if text:
            label = (
                f"{names.get(str(message.get('tool_call_id')), 'tool')} result" if kind == "tool" else kind
            )
            lines.append(f"{label}: {text}")
    body = "\n\n".join(lines)
    return body if len(body) <= MAX_TRANSCRIPT_CHARS else body[:MAX_TRANSCRIPT_CHARS] + "\n[...]"
