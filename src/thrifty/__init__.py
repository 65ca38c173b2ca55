"""thrifty: an OpenAI-compatible LLM gateway that makes every call cheaper, faster, sturdier.

The public API is what ``__all__`` lists, the same names the README documents
(``tests/test_public_api.py`` checks that the two and ``dir(thrifty)`` agree). Importing thrifty is cheap and silent:
no network, no threads, no environment writes; the gateway, the HTTP stack and
the models load on first use.
"""

TYPE_CHECKING = False  # typing itself is not imported: keep `import thrifty` tiny

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "ChatRequest",
    "ChatResponse",
    "Config",
    "FakeBackend",
    "Gateway",
    "Usage",
    "Wrapper",
    "errors",
    "load_config",
    "parse_config",
]

_LAZY = {
    "Backend": ("thrifty.backend", "Backend"),
    "Wrapper": ("thrifty.backend", "Wrapper"),
    "ChatRequest": ("thrifty.types", "ChatRequest"),
    "ChatResponse": ("thrifty.types", "ChatResponse"),
    "Usage": ("thrifty.types", "Usage"),
    "Config": ("thrifty.config", "Config"),
    "load_config": ("thrifty.config", "load_config"),
    "parse_config": ("thrifty.config", "parse_config"),
    "Gateway": ("thrifty.gateway", "Gateway"),
    "FakeBackend": ("thrifty.testing", "FakeBackend"),
    "errors": ("thrifty.errors", None),
}

if TYPE_CHECKING:
    from . import errors
    from .backend import Backend, Wrapper
    from .config import Config, load_config, parse_config
    from .gateway import Gateway
    from .testing import FakeBackend
    from .types import ChatRequest, ChatResponse, Usage


del TYPE_CHECKING  # a module global, not a public name


def __getattr__(name: str) -> object:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'thrifty' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
