"""A fast parse and build generated from the construct grammars.

construct interprets a grammar object tree for every record; this module walks the
same tree once and writes Python source for a `parse` and a `build` that do what the
tree does with precompiled `struct.Struct`s (adjacent fixed-width fields fused into
one), the grammar staying the one definition of the layout. `compile_grammar(grammar)`
gives a `CompiledGrammar` or raises `Unsupported` for anything it does not know.

The generated code answers exactly what the plain grammar answers: equal `Container`s
and `ListContainer`s (enum fields are the grammar's own `EnumIntegerString`s), equal
bytes, and it refuses what the plain grammar refuses. It has no error messages of its
own: any exception (`Reject` or whatever the generated code tripped on) means "not
accepted here", and the caller (`vmbtool.codec`) runs the plain grammar, which refuses
with the field path or, for an input this module is too strict about (build only takes
the types it copies construct's handling of), gives the answer.

Parsed containers lack construct's private `_io` entry (the stream); `Container`
equality and everything here ignore `_` keys.

The generated source is written on every run (it holds live objects of the grammar: the
structs, enum tables, constants), but `compile()` of it, most of the cost, is cached on
disk (`compiled_code`): one file per source text, under a key that also names the
bytecode version, so a changed grammar or generator gives a new text and a new key.
"""

from __future__ import annotations

import contextlib
import hashlib
import keyword
import marshal
import operator
import os
import re
import stat
import struct
import sys
import time
import uuid
from types import CodeType
from typing import Any

import construct
from construct import (
    Array,
    Bytes,
    Const,
    Container,
    Enum,
    FixedSized,
    FocusedSeq,
    FormatField,
    ListContainer,
    NullStripped,
    Prefixed,
    Rebuild,
    Renamed,
    StringEncoded,
    Struct,
    Switch,
)
from construct.core import EnumInteger
from construct.expr import BinExpr, Path, UniExpr

from vmbtool.formats.common import (
    GuidAdapter,
    Since,
    StrictEnum,
    StrictFlagAdapter,
    StrictPrefixed,
)

__all__ = ["CompiledGrammar", "Reject", "TooManyElements", "Unsupported", "compile_grammar"]

_PASS = type(construct.Pass)
_ERROR = type(construct.Error)
_GREEDY = type(construct.GreedyBytes)
_SMALL_BYTES = 256  # fixed Bytes up to this size go into a fused struct ("Ns")


class Unsupported(Exception):
    """The grammar uses something the fast path does not compile."""


class TooManyElements(Exception):
    """Raised by generated code: one parse would build more array elements than a reader
    holds (`ELEMENT_BUDGET`). Not a refusal to retry with the plain grammar: that would
    build them."""


# What the arrays of integers (PFN lists) and of tiny structures (GPA and byte ranges)
# one parse builds may cost, in estimated bytes (about 40 an integer, 40 a wire byte of a
# structure): 48 MB holds the longest GPA range (1,048,577 pages) a u32 byte count can
# describe. Each parse starts with all of it; arrays of larger records (packets, GPADLs,
# pending incoming entries) are bounded by the readers' caps instead
ELEMENT_BUDGET = 48 << 20
_ELEMENTS = [ELEMENT_BUDGET]


class Reject(Exception):
    """Raised by generated code: the input is not accepted by the fast path."""


_MISSING = object()


class FieldContainer(Container):
    """The `Container` the generated parsers build: the same dict, equal to and printed
    as construct's, but its fields read as attributes about four times faster.

    construct's `Container.__getattr__` runs only after the ordinary lookup has failed
    and raised; here the field is looked up first. (No grammar names a field after a
    dict method, which would hide the method.)"""

    __slots__ = ()

    def __getattribute__(self, name: str, _get=dict.get, _missing=_MISSING) -> Any:
        value = _get(self, name, _missing)
        return object.__getattribute__(self, name) if value is _missing else value


class CompiledGrammar:
    """The generated pair for one grammar.

    `parse_from(data)` gives `(obj, consumed)`; `parse(data)` the object alone (trailing
    bytes ignored, as `grammar.parse`); `build(obj)` the bytes. `source` is the code."""

    __slots__ = ("build", "grammar", "parse_from", "source")

    def __init__(self, grammar, parse_from, build, source: str) -> None:
        self.grammar = grammar
        self.parse_from = parse_from
        self.build = build
        self.source = source

    def parse(self, data) -> Any:
        return self.parse_from(data)[0]

    def __repr__(self) -> str:
        return f"<CompiledGrammar of {self.grammar!r}>"


_GUID_TEXT: dict[bytes, str] = {}
_GUID_BYTES: dict[str, bytes] = {}
_GUID_CACHE = 4096  # entries of each cache (GUIDs repeat: interface types, instances)


def _guid_text(raw: bytes) -> str:
    """GuidAdapter's decoding, remembered."""
    text = str(uuid.UUID(bytes_le=raw))
    if len(_GUID_TEXT) >= _GUID_CACHE:
        _GUID_TEXT.clear()
    _GUID_TEXT[raw] = text
    return text


def _guid_bytes(text) -> bytes:
    """GuidAdapter's encoding, remembered for plain strings."""
    raw = uuid.UUID(text).bytes_le
    if text.__class__ is str:
        if len(_GUID_BYTES) >= _GUID_CACHE:
            _GUID_BYTES.clear()
        _GUID_BYTES[text] = raw
    return raw


def _as_view(data) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


# -- the grammar tree -------------------------------------------------------------------
def _unwrap(node):
    while type(node) is Renamed:
        _plain(node)
        node = node.subcon
    return node


def _plain(node) -> None:
    if getattr(node, "parsed", None) is not None:
        raise Unsupported(f"{node!r}: a `parsed` hook")


def _format_field(node) -> FormatField | None:
    node = _unwrap(node)
    return node if type(node) is FormatField else None


def _split_fmt(node: FormatField) -> tuple[str | None, str]:
    """(byte order or None for one byte, code) of a FormatField."""
    order, code = node.fmtstr[0], node.fmtstr[1:]
    if node.length == 1:
        return None, code
    return order, code


def record_struct(grammar) -> struct.Struct:
    """The `struct.Struct` of a Struct grammar made of fixed-width integer fields alone
    (Const ones too), in their order: for a record read so often (a chunk header) that
    even a container costs. Unsupported for any other grammar."""
    order, codes = None, []
    for sub in getattr(_unwrap(grammar), "subcons", None) or ():
        node = _unwrap(sub)
        if type(node) is Const:
            node = _unwrap(node.subcon)
        if type(node) is not FormatField:
            raise Unsupported(f"{sub!r}: not a fixed-width integer field")
        field_order, code = _split_fmt(node)
        if field_order is not None and order not in (None, field_order):
            raise Unsupported(f"{grammar!r}: mixed byte orders")
        order = field_order or order
        codes.append(code)
    if type(_unwrap(grammar)) is not Struct or not codes:
        raise Unsupported(f"{grammar!r}: not a Struct of integer fields")
    return struct.Struct((order or "<") + "".join(codes))


def _prefixed_array(node) -> tuple[FormatField, Any] | None:
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
    countfield = _format_field(rebuild.subcon)
    if countfield is None:
        raise Unsupported(f"{node!r}: PrefixedArray count is not a FormatField")
    for part in (node, count, rebuild, items, array):
        _plain(part)
    return countfield, array.subcon


def _pascal(node: StringEncoded) -> FormatField | None:
    """PascalString: StringEncoded(Prefixed(lengthfield, GreedyBytes)); its lengthfield."""
    sub = node.subcon
    if type(sub) is Prefixed and not sub.includelength and type(sub.subcon) is _GREEDY:
        _plain(sub)
        _plain(sub.subcon)
        field = _format_field(sub.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: string length is not a FormatField")
        return field
    return None


def _padded(node: StringEncoded) -> tuple[int, bytes] | None:
    """PaddedString: StringEncoded(FixedSized(n, NullStripped(GreedyBytes, pad))): (n, pad)."""
    sub = node.subcon
    if type(sub) is FixedSized and type(sub.length) is int and sub.length >= 0 \
            and type(sub.subcon) is NullStripped and type(sub.subcon.subcon) is _GREEDY \
            and len(sub.subcon.pad) == 1:
        for part in (sub, sub.subcon, sub.subcon.subcon):
            _plain(part)
        return sub.length, sub.subcon.pad
    return None


def _referenceable(node) -> bool:
    """Whether a field's value in construct's context is the parsed value when parsing and
    the given object when building (so a `this` expression may read it)."""
    node = _unwrap(node)
    if type(node) is FormatField:
        return True
    if type(node) is Const:
        return _format_field(node.subcon) is not None
    return type(node) in (Enum, StrictEnum, StrictFlagAdapter, GuidAdapter, StringEncoded)


def _minsize(node) -> int:
    """A lower bound of the bytes `node` consumes when it parses."""
    node = _unwrap(node)
    kind = type(node)
    if kind is FormatField:
        return node.length
    if kind is Bytes:
        return node.length if type(node.length) is int else 0
    if kind in (Const, Enum, StrictEnum, StrictFlagAdapter, GuidAdapter, StringEncoded):
        return _minsize(node.subcon)
    if kind is FixedSized:
        return node.length if type(node.length) is int else 0
    if kind is Struct:
        return sum(_minsize(sc) for sc in node.subcons)
    if kind in (Prefixed, StrictPrefixed):
        return _minsize(node.lengthfield)
    if kind is Switch:
        return min(_minsize(sc) for sc in [*node.cases.values(), node.default])
    array = _prefixed_array(node)
    if array is not None:
        return array[0].length
    return 0


class _Namespace:
    """The globals of the generated code: constants, structs and helpers, by name."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {
            "_R": Reject, "_TME": TooManyElements, "_E": _ELEMENTS,
            "_C": FieldContainer, "_LC": ListContainer, "_EI": EnumInteger,
            "_unpack_from": struct.unpack_from, "_pack": struct.pack,
            "_as_view": _as_view, "_gt": _GUID_TEXT, "_guid_text": _guid_text,
            "_gb": _GUID_BYTES, "_guid_bytes": _guid_bytes,
        }
        self.by_key: dict[Any, str] = {}

    def add(self, value, prefix: str, key=None) -> str:
        if key is not None and key in self.by_key:
            return self.by_key[key]
        name = f"_{prefix}{len(self.values)}"
        self.values[name] = value
        if key is not None:
            self.by_key[key] = name
        return name

    def const(self, value) -> str:
        if value is None or type(value) in (bool, int):
            return repr(value)
        if type(value) is bytes and len(value) <= 64:
            return repr(value)
        return self.add(value, "k")

    def unpacker(self, fmt: str) -> str:
        return self.add(struct.Struct(fmt).unpack_from, "S", ("unpack", fmt))

    def packer(self, fmt: str) -> str:
        return self.add(struct.Struct(fmt).pack, "P", ("pack", fmt))


_OPS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.xor: "^",
    operator.lshift: "<<", operator.rshift: ">>", operator.and_: "&", operator.or_: "|",
    operator.gt: ">", operator.ge: ">=", operator.lt: "<", operator.le: "<=",
    operator.eq: "==", operator.ne: "!=",
}
_UNARY = {operator.not_: "not", operator.neg: "-", operator.pos: "+"}


def _expression(expr, scope: dict[str, str] | None) -> str:
    """Python source for a construct `this` expression over the fields parsed (or built)
    so far in the innermost Struct; `scope` maps their names to variables."""
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
        return scope[name]
    if kind is BinExpr and expr.op in _OPS:
        return f"({_expression(expr.lhs, scope)} {_OPS[expr.op]} {_expression(expr.rhs, scope)})"
    if kind is UniExpr and expr.op in _UNARY:
        return f"({_UNARY[expr.op]} {_expression(expr.operand, scope)})"
    raise Unsupported(f"expression {expr!r}")


def _switch_table(ns: _Namespace, node: Switch) -> tuple[str, list]:
    """A dict of the Switch's keys to branch numbers (same keys, so the same lookup
    semantics as `cases.get`) and the branches' constructs."""
    branches: list = []
    index: dict[int, int] = {}
    table = {}
    for key, case in node.cases.items():
        if id(case) not in index:
            index[id(case)] = len(branches)
            branches.append(case)
        table[key] = index[id(case)]
    return ns.add(table, "sw"), branches


class _Writer:
    def __init__(self, ns: _Namespace) -> None:
        self.ns = ns
        self.lines: list[str] = []
        self.ind = 1
        self.count = 0

    def var(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def line(self, text: str) -> None:
        self.lines.append("    " * self.ind + text)


# -- parse ------------------------------------------------------------------------------
class _ParseWriter(_Writer):
    """Writes `def NAME(data, pos, end): ... return obj, pos`.

    The position is `pos + self.k` with `self.k` known here; fixed-width reads wait in
    `self.run` and are read by one unpack when something needs their values (`flush`).
    Reads of a fused run are bounded by the buffer only: a run that runs past the end of
    a length-prefixed part is caught where that part closes (`pos` only grows)."""

    def __init__(self, ns: _Namespace, view: bool) -> None:
        super().__init__(ns)
        self.view = view
        self.k = 0
        self.end = "end"
        self.run: list[str] = []
        self.run_vars: list[str] = []
        self.run_order: str | None = None
        self.run_k = 0
        self.post: list[str] = []

    # plumbing
    def at(self, k: int | None = None) -> str:
        k = self.k if k is None else k
        return f"pos + {k}" if k else "pos"

    def emit(self, text: str) -> None:
        self.flush()
        self.line(text)

    def after(self, text: str) -> None:
        """A line that uses values of the pending run: written right after it is read."""
        if self.run:
            self.post.append(text)
        else:
            self.line(text)

    def indent(self) -> None:
        self.flush()
        self.ind += 1

    def dedent(self) -> None:
        self.flush()
        self.ind -= 1

    def read(self, order: str | None, code: str, count: int = 1) -> list[str]:
        if self.run and order and self.run_order and order != self.run_order:
            self.flush()
        if not self.run:
            self.run_k, self.run_order = self.k, None
        if order:
            self.run_order = order
        names = [self.var() for _ in range(count)]
        self.run.append(code)
        self.run_vars.extend(names)
        self.k += struct.calcsize("<" + code)
        return names

    def flush(self) -> None:
        if not self.run:
            return
        fmt = (self.run_order or "<") + "".join(self.run)
        target = ", ".join(self.run_vars) + ("," if len(self.run_vars) == 1 else "")
        line = f"{target} = {self.ns.unpacker(fmt)}(data, {self.at(self.run_k)})"
        post = self.post
        self.run, self.run_vars, self.post = [], [], []
        self.line(line)
        for text in post:
            self.line(text)

    def settle(self) -> None:
        """Make `pos` the position (k = 0)."""
        self.flush()
        if self.k:
            self.line(f"pos += {self.k}")
            self.k = 0

    def slice(self, start: str, stop: str) -> str:
        return f"bytes(data[{start}:{stop}])" if self.view else f"data[{start}:{stop}]"

    def decode(self, start: str, stop: str, encoding: str) -> str:
        if self.view:
            return f"str(data[{start}:{stop}], {encoding!r})"
        return f"data[{start}:{stop}].decode({encoding!r})"

    def nonnegative(self, field: FormatField, name: str) -> None:
        if field.fmtstr[1:] in "bhilq":
            self.after(f"if {name} < 0: raise _R")

    def length_prefixed(self, field: FormatField) -> tuple[str, str]:
        """Read a length; returns (start, stop) variables of the bytes it counts."""
        (n,) = self.read(*_split_fmt(field))
        self.nonnegative(field, n)
        start, stop = self.var("a"), self.var("e")
        self.after(f"{start} = {self.at()}")
        self.after(f"{stop} = {start} + {n}")
        self.after(f"if {stop} > {self.end}: raise _R")
        return start, stop

    def jump(self, stop: str) -> None:
        """The position is now `stop` (a variable)."""
        self.flush()
        self.line(f"pos = {stop}")
        self.k = 0

    # the tree
    def node(self, node, scope: dict[str, str] | None) -> str:
        _plain(node)
        kind = type(node)
        if kind is Renamed:
            return self.node(node.subcon, scope)
        if kind is FormatField:
            return self.read(*_split_fmt(node))[0]
        if kind is Const:
            value = self.node(node.subcon, scope)
            self.after(f"if not {value} == {self.ns.const(node.value)}: raise _R")
            return value
        if kind is Bytes:
            return self.bytes(node, scope)
        if kind is _GREEDY:
            value = self.var()
            self.emit(f"if {self.at()} > {self.end}: raise _R")
            self.line(f"{value} = {self.slice(self.at(), self.end)}")
            self.jump(self.end)
            return value
        if kind in (Enum, StrictEnum):
            raw = self.node(node.subcon, scope)
            value, table = self.var(), self.ns.add(node.decmapping, "dm")
            if kind is StrictEnum:
                self.after(f"{value} = {table}[{raw}]")
            else:
                self.after(f"{value} = {table}.get({raw})")
                self.after(f"if {value} is None: {value} = _EI({raw})")
            return value
        if kind is StrictFlagAdapter:
            if _format_field(node.subcon) is None:
                raise Unsupported(f"{node!r}: a flag over something else than a FormatField")
            raw = self.node(node.subcon, scope)
            value = self.var()
            self.after(f"{value} = {self.ns.add({0: False, 1: True}, 'flag', 'flag')}[{raw}]")
            return value
        if kind is GuidAdapter:
            sub = _unwrap(node.subcon)
            if type(sub) is not Bytes or sub.length != 16:
                raise Unsupported(f"{node!r}: a GUID over something else than Bytes(16)")
            (raw,) = self.read(None, "16s")
            value = self.var()
            self.after(f"{value} = _gt.get({raw}) or _guid_text({raw})")
            return value
        if kind is StringEncoded:
            return self.string(node)
        if kind in (Prefixed, StrictPrefixed):
            return self.prefixed(node, scope)
        if kind is Struct:
            return self.struct(node)
        if kind is _PASS:
            return "None"
        if kind is _ERROR:
            self.emit("raise _R")
            return "None"
        if kind is Switch:
            return self.switch(node, scope)
        if kind is Since:
            return self.since(node, scope)
        array = _prefixed_array(node)
        if array is not None:
            return self.array(*array)
        raise Unsupported(f"{node!r} ({kind.__name__})")

    def bytes(self, node: Bytes, scope) -> str:
        if type(node.length) is int:
            if node.length < 0:
                raise Unsupported(f"{node!r}: negative length")
            if node.length <= _SMALL_BYTES:
                return self.read(None, f"{node.length}s")[0]
            length = str(node.length)
        elif callable(node.length):
            length = _expression(node.length, scope)
        else:
            raise Unsupported(f"{node!r}: length {node.length!r}")
        n, stop, value = self.var("n"), self.var("e"), self.var()
        self.emit(f"{n} = {length}")
        self.line(f"{stop} = {self.at()} + {n}")
        self.line(f"if {n} < 0 or {stop} > {self.end}: raise _R")
        self.line(f"{value} = {self.slice(self.at(), stop)}")
        self.jump(stop)
        return value

    def string(self, node: StringEncoded) -> str:
        encoding = node.encoding
        field = _pascal(node)
        if field is not None:
            start, stop = self.length_prefixed(field)
            value = self.var()
            self.emit(f"{value} = {self.decode(start, stop, encoding)}")
            self.jump(stop)
            return value
        padded = _padded(node)
        if padded is not None:
            size, pad = padded
            (raw,) = self.read(None, f"{size}s")
            value = self.var()
            self.after(f"{value} = {raw}.rstrip({pad!r}).decode({encoding!r})")
            return value
        raise Unsupported(f"{node!r}: only PascalString and PaddedString are compiled")

    def prefixed(self, node, scope) -> str:
        if node.includelength:
            raise Unsupported(f"{node!r}: includelength")
        field = _format_field(node.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: length is not a FormatField")
        start, stop = self.length_prefixed(field)
        if type(node.subcon) is _GREEDY:
            _plain(node.subcon)
            value = self.var()
            self.emit(f"{value} = {self.slice(start, stop)}")
            self.jump(stop)
            return value
        outer, self.end = self.end, stop
        value = self.node(node.subcon, scope)
        self.end = outer
        if type(node) is StrictPrefixed:
            self.after(f"if {self.at()} != {stop}: raise _R")  # short or bytes left over
        else:
            self.after(f"if {self.at()} > {stop}: raise _R")
            self.jump(stop)
        return value

    def struct(self, node: Struct) -> str:
        scope: dict[str, str] = {}
        fields: dict[str, str] = {}
        for sc in node.subcons:
            value = self.node(sc, scope)
            if sc.name:
                fields[sc.name] = value
                if _referenceable(sc):
                    scope[sc.name] = value
                else:
                    scope.pop(sc.name, None)
        obj = self.var("o")
        if all(name.isidentifier() and not keyword.iskeyword(name) for name in fields):
            self.after(f"{obj} = _C({', '.join(f'{k}={v}' for k, v in fields.items())})")
        else:
            self.after(f"{obj} = _C()")
            for name, value in fields.items():
                self.after(f"{obj}[{name!r}] = {value}")
        return obj

    def switch(self, node: Switch, scope) -> str:
        if not callable(node.keyfunc):
            raise Unsupported(f"{node!r}: constant key")
        key = _expression(node.keyfunc, scope)
        table, branches = _switch_table(self.ns, node)
        self.settle()
        branch, value = self.var("b"), self.var()
        self.line(f"{branch} = {table}.get({key}, -1)")
        for number, case in [*enumerate(branches), (-1, node.default)]:
            self.line(f"if {branch} == {number}:" if number == 0 else
                      "else:" if number < 0 else f"elif {branch} == {number}:")
            self.branch(value, case, scope)
        return value

    def branch(self, value: str, node, scope) -> None:
        """An indented block under the line just written that parses `node` into
        `value` (a Switch case, a Since field)."""
        self.indent()
        result = self.node(node, scope)
        self.settle()
        self.line(f"{value} = {result}")
        self.dedent()

    def since(self, node: Since, scope) -> str:
        self.settle()
        value = self.var()
        self.line(f"if pos >= {self.end}:")
        self.indent()
        self.line(f"{value} = {self.ns.const(node.default)}")
        self.dedent()
        self.line("else:")
        self.branch(value, node.subcon, scope)
        return value

    def array(self, countfield: FormatField, element) -> str:
        (n,) = self.read(*_split_fmt(countfield))
        self.nonnegative(countfield, n)
        value = self.var()
        field = _format_field(element)
        if field is not None:
            # an int costs ~40 bytes parsed, 5 times its 8 on the wire (PFN lists)
            self.emit(f"_E[0] -= {n} * 40")
            self.emit("if _E[0] < 0: raise _TME")
            _plain(element)
            order, code = field.fmtstr[0], field.fmtstr[1:]
            self.emit(f"if {n} * {field.length} > {self.end} - ({self.at()}): raise _R")
            self.line(f"{value} = _LC(_unpack_from('{order}%d{code}' % {n}, data, {self.at()}))")
            self.line(f"pos += {self.k} + {n} * {field.length}" if self.k else
                      f"pos += {n} * {field.length}")
            self.k = 0
            return value
        least = _minsize(element)
        if 0 < least <= 16:
            # tiny structures (a GPA or byte range) cost some 40 times their wire size
            self.emit(f"_E[0] -= {n} * {40 * least}")
            self.emit("if _E[0] < 0: raise _TME")
        if least:
            self.emit(f"if {n} * {least} > {self.end} - ({self.at()}): raise _R")
        self.settle()
        self.line(f"{value} = _LC()")
        self.line(f"for _ in range({n}):")
        self.indent()
        item = self.node(element, None)
        self.settle()
        self.line(f"{value}.append({item})")
        self.dedent()
        return value


# -- build ------------------------------------------------------------------------------
class _BuildWriter(_Writer):
    """Writes `def build(obj): ... return bytes`.

    Checks and conversions are written as they come; the pieces of output (fixed-width
    values to pack, byte strings) wait in `self.pieces`, adjacent fixed-width ones fused
    into one pack, until a loop or a branch needs them written out (`flush`)."""

    def __init__(self, ns: _Namespace) -> None:
        super().__init__(ns)
        self.pieces: list[tuple] = []
        self.out = "ap"
        self.used_out = False

    def emit(self, text: str) -> None:
        self.line(text)

    def fixed(self, order: str | None, code: str, arg: str) -> None:
        self.pieces.append(("f", order, code, arg))

    def blob(self, expr: str) -> None:
        self.pieces.append(("b", expr))

    def exprs(self, pieces: list[tuple]) -> list[str]:
        """Source expressions for pieces, fixed-width runs fused."""
        result: list[str] = []
        run: list[tuple] = []

        def close():
            if run:
                order = next((p[1] for p in run if p[1]), "<")
                packer = self.ns.packer(order + "".join(p[2] for p in run))
                result.append(f"{packer}({', '.join(p[3] for p in run)})")
                run.clear()

        for piece in pieces:
            if piece[0] == "f":
                if run and piece[1] and any(p[1] and p[1] != piece[1] for p in run):
                    close()
                run.append(piece)
            else:
                close()
                result.append(piece[1])
        close()
        return result

    def flush(self) -> None:
        if not self.pieces:
            return
        exprs = self.exprs(self.pieces)
        self.pieces = []
        if self.out == "ap":
            self.used_out = True
        for expr in exprs:
            self.line(f"{self.out}({expr})")

    @staticmethod
    def size(pieces: list[tuple]) -> str:
        static = sum(struct.calcsize("<" + p[2]) for p in pieces if p[0] == "f")
        terms = [f"len({p[1]})" for p in pieces if p[0] == "b"]
        return " + ".join([str(static), *terms] if static or not terms else terms)

    def bytes_value(self, value: str) -> str:
        """The bytes construct writes for a Bytes/GreedyBytes object (bytes, or a
        bytearray copied); anything else is left to the plain grammar."""
        data = self.var("d")
        self.emit(f"{data} = {value} if {value}.__class__ is bytes else "
                  f"bytes({value}) if {value}.__class__ is bytearray else None")
        self.emit(f"if {data} is None: raise _R")
        return data

    # the tree: returns the field's value in construct's build context, where one is
    def node(self, node, value: str, scope: dict[str, str] | None) -> str | None:
        _plain(node)
        kind = type(node)
        if kind is Renamed:
            return self.node(node.subcon, value, scope)
        if kind is FormatField:
            self.fixed(*_split_fmt(node), value)
            return value
        if kind is Const:
            if _format_field(node.subcon) is None and type(node.subcon) is not Bytes:
                raise Unsupported(f"{node!r}: a Const over something else than a "
                                  "FormatField or Bytes")
            allowed = self.ns.add((None, node.value), "ck")
            self.emit(f"if {value} not in {allowed}: raise _R")
            constant = self.ns.const(node.value)
            sub = _unwrap(node.subcon)
            if type(sub) is Bytes:
                if type(node.value) is not bytes or type(sub.length) is not int \
                        or len(node.value) != sub.length:
                    raise Unsupported(f"{node!r}: a constant that does not fit its Bytes")
                self.fixed(None, f"{sub.length}s", constant)
            else:
                self.node(sub, constant, scope)
            return constant
        if kind is Bytes:
            if type(node.length) is int:
                if node.length < 0:
                    raise Unsupported(f"{node!r}: negative length")
                length = str(node.length)
            elif callable(node.length):
                length = _expression(node.length, scope)
            else:
                raise Unsupported(f"{node!r}: length {node.length!r}")
            data = self.bytes_value(value)
            self.emit(f"if len({data}) != {length}: raise _R")
            if type(node.length) is int and node.length <= _SMALL_BYTES:
                self.fixed(None, f"{node.length}s", data)
            else:
                self.blob(data)
            return data
        if kind is _GREEDY:
            data = self.bytes_value(value)
            self.blob(data)
            return data
        if kind in (Enum, StrictEnum):
            raw = self.var()
            table = self.ns.add(node.encmapping, "em")
            self.emit(f"{raw} = {value} if isinstance({value}, int) else {table}[{value}]")
            self.node(node.subcon, raw, scope)
            return value
        if kind is StrictFlagAdapter:
            if _format_field(node.subcon) is None:
                raise Unsupported(f"{node!r}: a flag over something else than a FormatField")
            raw = self.var()
            self.emit(f"{raw} = 1 if {value} else 0")
            self.node(node.subcon, raw, scope)
            return value
        if kind is GuidAdapter:
            sub = _unwrap(node.subcon)
            if type(sub) is not Bytes or sub.length != 16:
                raise Unsupported(f"{node!r}: a GUID over something else than Bytes(16)")
            raw = self.var()
            self.emit(f"{raw} = (_gb.get({value}) if {value}.__class__ is str else None) "
                      f"or _guid_bytes({value})")
            self.fixed(None, "16s", raw)
            return value
        if kind is StringEncoded:
            return self.string(node, value)
        if kind in (Prefixed, StrictPrefixed):
            return self.prefixed(node, value, scope)
        if kind is Struct:
            self.struct(node, value)
            return None
        if kind is _PASS:
            return value
        if kind is _ERROR:
            self.emit("raise _R")
            return None
        if kind is Switch:
            self.switch(node, value, scope)
            return None
        if kind is Since:
            self.flush()
            self.emit(f"if {value} is not None:")
            self.ind += 1
            self.node(node.subcon, value, scope)
            self.flush()
            self.emit("pass")
            self.ind -= 1
            return None
        array = _prefixed_array(node)
        if array is not None:
            self.array(*array, value)
            return None
        raise Unsupported(f"{node!r} ({kind.__name__})")

    def string(self, node: StringEncoded, value: str) -> str:
        encoding = node.encoding
        field, padded = _pascal(node), _padded(node)
        if field is None and padded is None:
            raise Unsupported(f"{node!r}: only PascalString and PaddedString are compiled")
        data = self.var("s")
        self.emit(f"if not isinstance({value}, str): raise _R")
        self.emit(f"{data} = b'' if {value} == '' else {value}.encode({encoding!r})")
        if field is not None:
            self.fixed(*_split_fmt(field), f"len({data})")
            self.blob(data)
        else:
            size, _ = padded
            self.emit(f"if len({data}) > {size}: raise _R")
            self.fixed(None, f"{size}s", data)
        return value

    def static(self, node) -> bool:
        """Whether `node` builds with no loop or branch (its pieces can wait)."""
        node = _unwrap(node)
        kind = type(node)
        if kind in (FormatField, Const, Bytes, _GREEDY, _PASS, StringEncoded):
            return True
        if kind in (Enum, StrictEnum, StrictFlagAdapter, GuidAdapter):
            return self.static(node.subcon)
        if kind in (Prefixed, StrictPrefixed):
            return self.static(node.subcon)
        if kind is Struct:
            return all(self.static(sc) for sc in node.subcons)
        array = _prefixed_array(node)
        if array is not None:
            return _format_field(array[1]) is not None
        return False

    def prefixed(self, node, value: str, scope) -> str | None:
        if node.includelength:
            raise Unsupported(f"{node!r}: includelength")
        field = _format_field(node.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: length is not a FormatField")
        if self.static(node.subcon):
            outer, self.pieces = self.pieces, []
            result = self.node(node.subcon, value, scope)
            inner, self.pieces = self.pieces, outer
            self.fixed(*_split_fmt(field), self.size(inner))
            self.pieces.extend(inner)
            return result
        parts, data = self.var("o"), self.var("d")
        self.emit(f"{parts} = []")
        outer_out, outer_pieces = self.out, self.pieces
        self.out, self.pieces = f"{parts}.append", []
        result = self.node(node.subcon, value, scope)
        self.flush()
        self.out, self.pieces = outer_out, outer_pieces
        self.emit(f"{data} = b''.join({parts})")
        self.fixed(*_split_fmt(field), f"len({data})")
        self.blob(data)
        return result

    def struct(self, node: Struct, value: str) -> None:
        self.emit(f"if not isinstance({value}, dict): raise _R")
        scope: dict[str, str] = {}
        for sc in node.subcons:
            field = self.var("f")
            if sc.flagbuildnone:
                self.emit(f"{field} = {value}.get({sc.name!r}, None)")
            else:
                self.emit(f"{field} = {value}[{sc.name!r}]")
            result = self.node(sc, field, scope)
            if sc.name:
                if result is not None and _referenceable(sc):
                    scope[sc.name] = result
                else:
                    scope.pop(sc.name, None)

    def switch(self, node: Switch, value: str, scope) -> None:
        if not callable(node.keyfunc):
            raise Unsupported(f"{node!r}: constant key")
        key = _expression(node.keyfunc, scope)
        table, branches = _switch_table(self.ns, node)
        self.flush()
        branch = self.var("b")
        self.emit(f"{branch} = {table}.get({key}, -1)")
        for number, case in [*enumerate(branches), (-1, node.default)]:
            self.emit(f"if {branch} == {number}:" if number == 0 else
                      "else:" if number < 0 else f"elif {branch} == {number}:")
            self.ind += 1
            self.node(case, value, scope)
            self.flush()
            self.emit("pass")
            self.ind -= 1

    def array(self, countfield: FormatField, element, value: str) -> None:
        self.emit(f"if not isinstance({value}, (list, tuple)): raise _R")
        self.fixed(*_split_fmt(countfield), f"len({value})")
        field = _format_field(element)
        if field is not None:
            _plain(element)
            order, code = field.fmtstr[0], field.fmtstr[1:]
            data = self.var("d")
            self.emit(f"{data} = _pack('{order}%d{code}' % len({value}), *{value})")
            self.blob(data)
            return
        self.flush()
        item = self.var("e")
        self.emit(f"for {item} in {value}:")
        self.ind += 1
        self.node(element, item, None)
        self.flush()
        self.emit("pass")
        self.ind -= 1


# -- the cache of compiled code ---------------------------------------------------------
CACHE_ENV = "VMBTOOL_CACHE_DIR"
CACHE_FILES = 256  # entries kept; past that the oldest written are removed
_CACHE_SUFFIX = ".fpc"
_CACHE_MAGIC = b"vmbtool fastpath code 1\n"  # the file layout; change it to start over
_STALE_TEMP = 3600  # seconds after which a temporary file left by a killed run goes
MAX_ENTRY = 1 << 20  # bytes: a larger entry is neither written nor read (the largest
# grammar's code is about 35 KB)
CACHE_BYTES = 32 << 20  # and all the entries kept, together
# the names this cache gives its entries and temporaries: nothing else is touched
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.fpc")
_TEMP_NAME = re.compile(r"\.[0-9a-f]{16}\.[0-9]+\.[0-9a-f]{8}\.tmp")


def cache_dir() -> str | None:
    """Where compiled fast paths are kept: $VMBTOOL_CACHE_DIR, else
    $XDG_CACHE_HOME/vmbtool, else ~/.cache/vmbtool (None without a home)."""
    path = os.environ.get(CACHE_ENV)
    if path:
        return path
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: the XDG default
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "vmbtool")


def _magic_number() -> bytes:
    try:
        from _frozen_importlib_external import MAGIC_NUMBER  # what importlib.util exports
    except ImportError:  # not CPython's import system
        from importlib.util import MAGIC_NUMBER
    return MAGIC_NUMBER


def cache_key(text: str, filename: str) -> str:
    """The key of compile(text, filename, "exec") here: everything the code object
    depends on (the source and its name, the bytecode version, the interpreter,
    optimisation, the compiler flags this module passes on)."""
    digest = hashlib.sha256()
    for part in (_CACHE_MAGIC, _magic_number(), sys.implementation.cache_tag or "",
                 sys.version, str(sys.flags.optimize),
                 "annotations",  # compile() here inherits this module's __future__ flag
                 filename, text):
        data = part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _read_own(path: str, limit: int, head: int | None = None) -> bytes | None:
    """Up to `limit` bytes (or the first `head`) of `path` if it is a regular file of
    this user's, reached without following a symlink; None otherwise. Opened without
    blocking: a FIFO or a device planted under an entry's name is neither waited on nor
    read."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit or (
                hasattr(os, "getuid") and st.st_uid != os.getuid()):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1 if head is None else head)
    except OSError:
        return None
    finally:
        os.close(fd)


def _load(path: str, key: bytes, filename: str) -> CodeType | None:
    """The cached code object, or None when the file is missing, unreadable, not this
    user's regular file, too large, or anything but an intact entry of this key."""
    data = _read_own(path, MAX_ENTRY)
    if data is None or len(data) > MAX_ENTRY:
        return None
    head = len(_CACHE_MAGIC)
    if data[:head] != _CACHE_MAGIC or data[head:head + 32] != key:
        return None
    payload = data[head + 64:]
    if hashlib.sha256(payload).digest() != data[head + 32:head + 64]:
        return None
    try:
        code = marshal.loads(payload)
    except Exception:  # EOFError, ValueError, TypeError: not what was written
        return None
    if type(code) is not CodeType or code.co_filename != filename:
        return None
    return code


def _store(directory: str, path: str, key: bytes, code: CodeType) -> None:
    """Write an entry atomically (a temporary file renamed over it); any failure leaves
    the cache as it was."""
    payload = marshal.dumps(code)
    if len(payload) + len(_CACHE_MAGIC) + 64 > MAX_ENTRY:
        return
    temp = os.path.join(directory, f".{key.hex()[:16]}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_CACHE_MAGIC + key + hashlib.sha256(payload).digest() + payload)
            if os.path.lexists(path) and not _ours(path, _ENTRY_NAME, content=False):
                # something else has the name (a FIFO, a link, another user's file): it
                # is left alone; a damaged entry of this user's is written anew
                raise FileExistsError(path)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _prune(directory)
    except OSError:
        pass


def _ours(path: str, name: re.Pattern[str], content: bool = True) -> bool:
    """A regular file (not followed through a symlink) of this user's, named as this
    cache names its files and starting as it starts them: one it wrote. The directory
    may be shared (VMBTOOL_CACHE_DIR): nothing else in it is ever removed or replaced."""
    if not name.fullmatch(os.path.basename(path)):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    if name is _TEMP_NAME or not content:
        return True
    return _read_own(path, MAX_ENTRY, len(_CACHE_MAGIC)) == _CACHE_MAGIC


def _prune(directory: str) -> None:
    """Keep the newest entries, at most `CACHE_FILES` of them and `CACHE_BYTES` in all;
    remove temporary files of killed runs. Only files this cache wrote are counted or
    removed (`_ours`)."""
    entries, now = [], time.time()
    with os.scandir(directory) as it:
        for entry in it:
            with contextlib.suppress(OSError):  # removed meanwhile
                if _ours(entry.path, _ENTRY_NAME):
                    st = entry.stat(follow_symlinks=False)
                    entries.append((st.st_mtime, st.st_size, entry.path))
                elif _ours(entry.path, _TEMP_NAME) and \
                        now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMP:
                    os.unlink(entry.path)
    entries.sort(reverse=True)  # the newest first
    kept = total = 0
    for _mtime, size, path in entries:
        if kept < CACHE_FILES and total + size <= CACHE_BYTES:
            kept, total = kept + 1, total + size
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)


def compiled_code(text: str, filename: str) -> CodeType:
    """compile(text, filename, "exec"), from the on-disk cache when it holds it. A
    missing, unwritable or damaged cache only costs the compile (a damaged entry is
    written anew)."""
    directory = cache_dir()
    if not directory:
        return compile(text, filename, "exec")
    key = cache_key(text, filename)
    path = os.path.join(directory, key + _CACHE_SUFFIX)
    raw = bytes.fromhex(key)
    code = _load(path, raw, filename)
    if code is None:
        code = compile(text, filename, "exec")
        _store(directory, path, raw, code)
    return code


# -- compile ----------------------------------------------------------------------------
def compile_grammar(grammar) -> CompiledGrammar:
    """The fast parse/build of `grammar`; `Unsupported` if it uses anything not compiled."""
    if not isinstance(grammar, construct.Construct):
        raise Unsupported(f"{grammar!r} is not a construct grammar")
    ns = _Namespace()
    source: list[str] = []
    for name, view in (("parse_bytes", False), ("parse_view", True)):
        writer = _ParseWriter(ns, view)
        result = writer.node(grammar, None)
        writer.settle()
        writer.line(f"return {result}, pos")
        source += [f"def {name}(data, pos, end):", *writer.lines, ""]
    source += [
        "def parse_from(data):",
        "    if data.__class__ is bytes:",
        "        return parse_bytes(data, 0, len(data))",
        "    data = _as_view(data)",
        "    return parse_view(data, 0, len(data))",
        "",
    ]
    writer = _BuildWriter(ns)
    writer.node(grammar, "obj", None)
    if writer.used_out:
        writer.flush()
        body = ["    out = []", "    ap = out.append", *writer.lines,
                "    return b''.join(out)"]
    else:
        exprs = writer.exprs(writer.pieces)
        if len(exprs) == 1:  # every piece is bytes
            tail = f"    return {exprs[0]}"
        else:
            tail = f"    return b''.join(({', '.join(exprs)}{',' if exprs else ''}))"
        body = [*writer.lines, tail]
    source += ["def build(obj):", *body, ""]
    text = "\n".join(source)
    namespace = dict(ns.values)
    try:
        exec(compiled_code(text, f"<fastpath {type(grammar).__name__}>"), namespace)
    except SyntaxError as exc:  # a bug here, not in the grammar
        raise Unsupported(f"generated code does not compile: {exc}") from exc
    return CompiledGrammar(grammar, _budgeted(namespace["parse_from"]), namespace["build"],
                           text)


def _budgeted(parse_from):
    """Each parse starts with the whole element budget."""

    def parse(data):
        _ELEMENTS[0] = ELEMENT_BUDGET
        return parse_from(data)

    return parse
