"""A safe arithmetic evaluator: Python expression syntax read with ``ast``, never ``eval``.

Numbers, ``+ - * / // % **``, comparisons, parentheses, a few math functions
and constants, and ``context``: named values (``x``) or a list (``x1``,
``x2`` …) from earlier tasks.

Every step is bounded before it runs, so no expression can eat the CPU or the
memory: integers stay under ``MAX_DIGITS`` digits (a power is refused from the
sizes of its operands, before it is computed), exponents under ``MAX_EXPONENT``,
lists under ``MAX_ITEMS`` items (``[1] * n`` included), ``round`` digits under
``MAX_DIGITS``, and the expression itself under ``MAX_LENGTH`` characters. The
built-in ``calc`` tool also runs in a sandbox worker with a time and memory
budget, in case a bound here is ever missed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..tools import ToolError

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sum": lambda *xs: sum(xs),
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 10_000
MAX_DIGITS = 4_000
MAX_ITEMS = 10_000
MAX_LENGTH = 2_000
_MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def calculate(expression: str, context: Any = None) -> float | int | bool:
    """The value of ``expression``; ToolError explains what is not allowed."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"the expression is longer than {MAX_LENGTH:,} characters")
    names = _names(context)
    try:
        tree = ast.parse(expression.strip().replace("^", "**"), mode="eval")
        value = _eval(tree.body, names)
    except SyntaxError as exc:
        raise ToolError(f"cannot read {expression!r}: {exc.msg}") from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"{expression!r}: {exc}") from None
    except (RecursionError, MemoryError):
        raise ToolError("the expression is nested too deeply") from None
    if isinstance(value, complex):
        raise ToolError(f"{expression!r} is not a real number")
    return value  # type: ignore[no-any-return]


def _names(context: Any) -> dict[str, Any]:
    names: dict[str, Any] = dict(_CONSTANTS)
    if isinstance(context, Mapping):
        names.update({str(k): _number(v) for k, v in context.items()})
    elif isinstance(context, list | tuple):
        names.update({f"x{i}": _number(v) for i, v in enumerate(context, 1)})
    elif context is not None:
        names["x"] = _number(context)
    return names


def _number(value: Any) -> Any:
    """A number from a result that may be text like "10,994 m deep"."""
    if isinstance(value, int | float):
        return value
    m = _NUMBER.search(str(value))
    if m is None:
        return value
    text = m.group(0).replace(",", "")
    number = float(text)
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ToolError(f"unknown name {node.id!r}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, names)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, names), _eval(node.right, names)
        _check_operation(node.op, left, right)
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, names)
            if type(op) not in _COMPARE or not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ToolError("keyword arguments are not allowed")
        args = [_eval(a, names) for a in node.args]
        if (
            node.func.id == "round"
            and len(args) == 2
            and isinstance(args[1], int)
            and abs(args[1]) > MAX_DIGITS
        ):
            raise ToolError(f"round() to {args[1]} digits: at most {MAX_DIGITS:,} either way")
        return _bounded(_FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.List | ast.Tuple):
        return _bounded([_eval(e, names) for e in node.elts])
    raise ToolError(f"not allowed in an expression: {ast.unparse(node)!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_operation(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before computing it."""
    if isinstance(op, ast.Pow) and isinstance(right, int | float):
        if abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large (at most {MAX_EXPONENT:,})")
        # |base| >= 2**(bits - 1), so the power has at least (bits - 1) * exponent bits
        if _is_int(left) and _is_int(right) and (abs(left).bit_length() - 1) * right > _MAX_BITS:
            raise ToolError(f"the result would have more than {MAX_DIGITS:,} digits")
    if isinstance(op, ast.Mult):
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, list) and _is_int(times) and len(seq) * times > MAX_ITEMS:
                raise ToolError(f"a list of more than {MAX_ITEMS:,} items")


def _bounded(value: Any) -> Any:
    """``value``, unless it is an integer or a list over the size bounds."""
    if _is_int(value) and value.bit_length() > _MAX_BITS:
        raise ToolError(f"the result would have more than {MAX_DIGITS:,} digits")
    if isinstance(value, list) and len(value) > MAX_ITEMS:
        raise ToolError(f"a list of more than {MAX_ITEMS:,} items")
    return value
