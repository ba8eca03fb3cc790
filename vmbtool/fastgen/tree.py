"""Reading a construct grammar tree: what the writers (`parse`, `build`) ask of a node.

Everything here refuses with `Unsupported` what the generator does not know; the codec
then parses and builds that grammar with construct alone.
"""

from __future__ import annotations

import operator
import struct
from typing import Any

import construct
from construct import (
    Array,
    Bytes,
    BytesInteger,
    Const,
    Enum,
    FixedSized,
    FocusedSeq,
    FormatField,
    NullStripped,
    Prefixed,
    Rebuild,
    Renamed,
    StringEncoded,
    Struct,
    Switch,
)
from construct.expr import BinExpr, Path, UniExpr

from vmbtool.formats.common import GuidAdapter, StrictEnum, StrictFlagAdapter, StrictPrefixed

PASS = type(construct.Pass)
ERROR = type(construct.Error)
GREEDY = type(construct.GreedyBytes)
SMALL_BYTES = 256  # fixed Bytes up to this size go into a fused struct ("Ns")


class Unsupported(Exception):
    """The grammar uses something the generator does not write code for."""


def unwrap(node):
    while type(node) is Renamed:
        plain(node)
        node = node.subcon
    return node


def plain(node) -> None:
    if getattr(node, "parsed", None) is not None:
        raise Unsupported(f"{node!r}: a `parsed` hook")


def format_field(node) -> FormatField | None:
    node = unwrap(node)
    return node if type(node) is FormatField else None


def split_fmt(node: FormatField) -> tuple[str | None, str]:
    """(byte order or None for one byte, code) of a FormatField."""
    order, code = node.fmtstr[0], node.fmtstr[1:]
    if node.length == 1:
        return None, code
    return order, code


def is_int_field(node) -> bool:
    """Whether a field's parsed value is an int (a FormatField of an integer code, or a
    Const over one)."""
    node = unwrap(node)
    if type(node) is Const:
        node = unwrap(node.subcon)
    return type(node) is FormatField and node.fmtstr[1:] in "bBhHiIlLqQnN"


def record_struct(grammar) -> struct.Struct:
    """The `struct.Struct` of a Struct grammar made of fixed-width integer fields alone
    (Const ones too), in their order: for a record read so often (a chunk header) that
    even a container costs. Unsupported for any other grammar."""
    order, codes = None, []
    for sub in getattr(unwrap(grammar), "subcons", None) or ():
        node = unwrap(sub)
        if type(node) is Const:
            node = unwrap(node.subcon)
        if type(node) is not FormatField:
            raise Unsupported(f"{sub!r}: not a fixed-width integer field")
        field_order, code = split_fmt(node)
        if field_order is not None and order not in (None, field_order):
            raise Unsupported(f"{grammar!r}: mixed byte orders")
        order = field_order or order
        codes.append(code)
    if type(unwrap(grammar)) is not Struct or not codes:
        raise Unsupported(f"{grammar!r}: not a Struct of integer fields")
    return struct.Struct((order or "<") + "".join(codes))


def prefixed_array(node) -> tuple[FormatField, Any] | None:
    """PrefixedArray(countfield, subcon) is a FocusedSeq macro: its two parts, or None."""
    if type(node) is not FocusedSeq or node.parsebuildfrom != "items":
        return None
    if len(node.subcons) != 2:
        return None
    count, items = node.subcons
    if not (type(count) is Renamed and count.name == "count" and type(count.subcon) is Rebuild
            and type(items) is Renamed and items.name == "items"
            and type(items.subcon) is Array):
        return None
    rebuild, array = count.subcon, items.subcon
    if repr(rebuild.func) != "len_(this['items'])" or repr(array.count) != "this['count']" \
            or array.discard:
        return None
    countfield = format_field(rebuild.subcon)
    if countfield is None:
        raise Unsupported(f"{node!r}: PrefixedArray count is not a FormatField")
    for part in (node, count, rebuild, items, array):
        plain(part)
    return countfield, array.subcon


def pascal(node: StringEncoded) -> FormatField | None:
    """PascalString: StringEncoded(Prefixed(lengthfield, GreedyBytes)); its lengthfield."""
    sub = node.subcon
    if type(sub) is Prefixed and not sub.includelength and type(sub.subcon) is GREEDY:
        plain(sub)
        plain(sub.subcon)
        field = format_field(sub.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: string length is not a FormatField")
        return field
    return None


def padded(node: StringEncoded) -> tuple[int, bytes] | None:
    """PaddedString: StringEncoded(FixedSized(n, NullStripped(GreedyBytes, pad))): (n, pad)."""
    sub = node.subcon
    if type(sub) is FixedSized and type(sub.length) is int and sub.length >= 0 \
            and type(sub.subcon) is NullStripped and type(sub.subcon.subcon) is GREEDY \
            and len(sub.subcon.pad) == 1:
        for part in (sub, sub.subcon, sub.subcon.subcon):
            plain(part)
        return sub.length, sub.subcon.pad
    return None


def referenceable(node) -> bool:
    """Whether a field's value in construct's context is the parsed value when parsing and
    the given object when building (so a `this` expression may read it)."""
    node = unwrap(node)
    if type(node) is FormatField:
        return True
    if type(node) is Const:
        return format_field(node.subcon) is not None
    return type(node) in (Enum, StrictEnum, StrictFlagAdapter, GuidAdapter, StringEncoded)


def bytes_integer(node) -> int:
    """The width of a BytesInteger (a 24-bit integer: Int24ul), which must be fixed."""
    if type(node.length) is not int or node.length < 1:
        raise Unsupported(f"{node!r}: a BytesInteger of no fixed width")
    return node.length


def byte_order(node) -> str:
    """A BytesInteger's byte order, as `int.from_bytes` names it (`swapped`: little)."""
    if node.swapped not in (True, False):
        raise Unsupported(f"{node!r}: a byte order decided by the context")
    return "little" if node.swapped else "big"


def minsize(node) -> int:
    """A lower bound of the bytes `node` consumes when it parses."""
    node = unwrap(node)
    kind = type(node)
    if kind is FormatField:
        return node.length
    if kind is BytesInteger:
        return bytes_integer(node)
    if kind is Bytes:
        return node.length if type(node.length) is int else 0
    if kind in (Const, Enum, StrictEnum, StrictFlagAdapter, GuidAdapter, StringEncoded):
        return minsize(node.subcon)
    if kind is FixedSized:
        return node.length if type(node.length) is int else 0
    if kind is Struct:
        return sum(minsize(sc) for sc in node.subcons)
    if kind in (Prefixed, StrictPrefixed):
        return minsize(node.lengthfield)
    if kind is Switch:
        return min(minsize(sc) for sc in [*node.cases.values(), node.default])
    array = prefixed_array(node)
    if array is not None:
        return array[0].length
    return 0


_OPS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.xor: "^",
    operator.lshift: "<<", operator.rshift: ">>", operator.and_: "&", operator.or_: "|",
    operator.gt: ">", operator.ge: ">=", operator.lt: "<", operator.le: "<=",
    operator.eq: "==", operator.ne: "!=",
}
_UNARY = {operator.not_: "not", operator.neg: "-", operator.pos: "+"}


def expression(expr, scope: dict[str, str] | None, used: list[str] | None = None) -> str:
    """Python source for a construct `this` expression over the fields parsed (or built)
    so far in the innermost Struct; `scope` maps their names to variables (each one read
    is appended to `used`)."""
    kind = type(expr)
    if kind in (int, float):
        return repr(expr)
    if kind is Path:
        parent = expr._Path__parent
        if parent is None or type(parent) is not Path or parent._Path__parent is not None \
                or parent._Path__name != "this":
            raise Unsupported(f"expression {expr!r}: only this.<field> is compiled")
        name = expr._Path__field
        if scope is None or name not in scope:
            raise Unsupported(f"expression {expr!r}: not an earlier field of its Struct")
        if used is not None:
            used.append(scope[name])
        return scope[name]
    if kind is BinExpr and expr.op in _OPS:
        return (f"({expression(expr.lhs, scope, used)} {_OPS[expr.op]} "
                f"{expression(expr.rhs, scope, used)})")
    if kind is UniExpr and expr.op in _UNARY:
        return f"({_UNARY[expr.op]} {expression(expr.operand, scope, used)})"
    raise Unsupported(f"expression {expr!r}")
