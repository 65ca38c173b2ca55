"""A small JSON-schema checker for tool arguments (the subset planners use).

Supported: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``. ``coerce`` first turns an upstream result into the
declared type where that is unambiguous (``"42"`` for a number, any value for
a string), because tool results are often text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    if t is None:
        return []
    return [t] if isinstance(t, str) else list(t)


def errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Every way ``value`` fails ``schema``, each naming where."""
    where = path or "arguments"
    types = _types(schema)
    if types and not any(_is(value, t) for t in types):
        return [f"{where} must be {' or '.join(types)}, got {type(value).__name__}"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where} must be one of {schema['enum']!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where} must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where} must be <= {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{where} must have at most {schema['maxLength']} characters")
    if isinstance(value, list | tuple) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            out.extend(errors(item, schema["items"], f"{where}[{i}]"))
    if isinstance(value, dict):
        out.extend(_object_errors(value, schema, path))
    return out


def _object_errors(value: Mapping[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    props: Mapping[str, Any] = schema.get("properties") or {}
    out = [
        f"missing required argument {_join(path, name)!r}"
        for name in schema.get("required") or ()
        if name not in value
    ]
    for key, item in value.items():
        if key in props:
            out.extend(errors(item, props[key], _join(path, key)))
        elif schema.get("additionalProperties") is False:
            out.append(f"unexpected argument {_join(path, key)!r}")
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` turned into the schema's single declared type when that is safe."""
    types = _types(schema)
    if len(types) != 1 or _is(value, types[0]):
        if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            return [coerce(v, schema["items"]) for v in value]
        return value
    want = types[0]
    if want == "string":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, str) and want in ("number", "integer"):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            return value
        return int(number) if want == "integer" and number.is_integer() else number
    if want == "array" and isinstance(value, tuple):
        return list(value)
    return value
