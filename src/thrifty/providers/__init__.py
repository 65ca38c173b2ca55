"""Providers: the backends at the bottom of every stack, one per deployment.

``build(deployment)`` makes the backend for a deployment by its provider kind.
Kinds are registered with :func:`register`; the built-in ones (``openai``,
``anthropic``, ``local``, ``fake``) use the same door a plugin would, and each
imports its module only when first built::

    from thrifty.providers import register

    def make_echo(deployment):
        return EchoBackend(deployment.name)

    register("echo", make_echo)

Deployment ``options`` each kind reads:

- ``openai``: ``headers`` (extra HTTP headers), ``extra_body`` (fields merged into every
  request body), ``stream_usage`` (false for servers that refuse ``stream_options``).
- ``anthropic``: ``headers``, ``anthropic_version`` (default ``2023-06-01``).
- ``local``: see :class:`.local_models.LocalOptions` (``model_path``, ``n_threads``,
  ``n_ctx``, ``n_instances``, ``max_tokens``, ``logprobs``, ``chat_format``, ``extra_buffers``).
- ``fake``: ``script`` (the answer text), ``delay`` (seconds).
"""

from __future__ import annotations

from collections.abc import Callable

from ..backend import Backend
from ..config import Deployment
from ..errors import ConfigError

Factory = Callable[[Deployment], Backend]

_factories: dict[str, Factory] = {}


def register(kind: str, factory: Factory, *, replace: bool = False) -> None:
    """Make ``build()`` use ``factory`` for deployments whose provider is ``kind``."""
    if kind in _factories and not replace:
        raise ValueError(f"provider kind {kind!r} is already registered; pass replace=True")
    _factories[kind] = factory


def kinds() -> list[str]:
    """The provider kinds that can be built."""
    return sorted(_factories)


def build(deployment: Deployment) -> Backend:
    """The backend for one deployment."""
    factory = _factories.get(deployment.provider)
    if factory is None:
        raise ConfigError(
            f"deployment {deployment.name!r}: unknown provider kind {deployment.provider!r}; "
            f"known: {', '.join(kinds())}"
        )
    return factory(deployment)


def _openai(deployment: Deployment) -> Backend:
    from .openai import OpenAIBackend

    return OpenAIBackend(deployment)


def _anthropic(deployment: Deployment) -> Backend:
    from .anthropic import AnthropicBackend

    return AnthropicBackend(deployment)


def _local(deployment: Deployment) -> Backend:
    from .local import LocalBackend

    return LocalBackend(deployment)


def _fake(deployment: Deployment) -> Backend:
    from ..testing import FakeBackend

    script = deployment.options.get("script", "ok")
    delay = deployment.options.get("delay", 0.0)
    if not isinstance(script, str):
        raise ConfigError(f"deployment {deployment.name!r}: options.script must be a string")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ConfigError(f"deployment {deployment.name!r}: options.delay must be a number >= 0")
    return FakeBackend(script, name=deployment.name, delay=float(delay))


for _kind, _factory in (("openai", _openai), ("anthropic", _anthropic), ("local", _local), ("fake", _fake)):
    register(_kind, _factory)

__all__ = ["Backend", "Factory", "build", "kinds", "register"]
