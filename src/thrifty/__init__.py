"""thrifty: an OpenAI-compatible LLM gateway that makes every call cheaper, faster, sturdier."""

from __future__ import annotations

__version__ = "0.1.0"
