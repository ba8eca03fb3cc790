"""Writing the body of a generated build: the grammar tree walked once, as straight code.

The object comes from the caller and may be anything: every input it does not take is
checked for and refused by an explicit `raise _R` (Refuse), or ends in one of the
errors the caller turns into it: `KeyError` (a field the object lacks: the only
subscripts written are of the object), `struct.error` (a number out of its field's
range, or no number) and `UnicodeEncodeError` (a string its encoding cannot write). Builds take
only the types whose handling they copy from construct; anything else (a mapping that
is not a dict, a memoryview for bytes, a bool for a length) is refused and so left to
the plain grammar, which gives the answer or the error.
"""

from __future__ import annotations

import struct

from construct import (
    Bytes,
    BytesInteger,
    Const,
    Enum,
    FormatField,
    Prefixed,
    Renamed,
    StringEncoded,
    Struct,
    Switch,
)

from vmbtool.fastgen.names import Namespace, Writer, switch_table
from vmbtool.fastgen.tree import (
    ERROR,
    GREEDY,
    PASS,
    SMALL_BYTES,
    Unsupported,
    byte_order,
    bytes_integer,
    expression,
    format_field,
    padded,
    pascal,
    plain,
    prefixed_array,
    referenceable,
    split_fmt,
    unwrap,
)
from vmbtool.fastpath import SCAN_TUPLE_DEPTH
from vmbtool.formats.common import (
    GuidAdapter,
    Since,
    StrictEnum,
    StrictFlagAdapter,
    StrictPrefixed,
)


class BuildWriter(Writer):
    """Writes the statements of a build of the object in `obj`.

    Checks and conversions are written as they come; the pieces of output (fixed-width
    values to pack, byte strings) wait in `self.pieces`, adjacent fixed-width ones fused
    into one pack, until a loop or a branch needs them written out (`flush`)."""

    def __init__(self, ns: Namespace, indent: int, packs: bool = False) -> None:
        super().__init__(ns, indent)
        self.pieces: list[tuple] = []
        self.out = "ap"
        self.used_out = False
        # a pack: the record and the structures right inside it come as tuples of their
        # fields, in the grammar's order (the shape a scan gives, `codec.pack`)
        self.packs = packs
        self.depth = 0  # of the Struct being written

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

    def length(self, node: Bytes, scope) -> str:
        """A Bytes field's length: a number, or an expression over integers given."""
        if type(node.length) is int:
            if node.length < 0:
                raise Unsupported(f"{node!r}: negative length")
            return str(node.length)
        if not callable(node.length):
            raise Unsupported(f"{node!r}: length {node.length!r}")
        used: list[str] = []
        length = expression(node.length, scope, used)
        for name in dict.fromkeys(used):
            self.emit(f"if {name}.__class__ is not int: raise _R")
        return length

    # the tree: returns the field's value in construct's build context, where one is
    def node(self, node, value: str, scope: dict[str, str] | None) -> str | None:
        plain(node)
        kind = type(node)
        if kind is Renamed:
            return self.node(node.subcon, value, scope)
        if kind is FormatField:
            self.fixed(*split_fmt(node), value)
            return value
        if kind is BytesInteger:
            size, signed = bytes_integer(node), node.signed
            low, high = (-(1 << (8 * size - 1)), 1 << (8 * size - 1)) if signed else \
                (0, 1 << (8 * size))
            self.emit(f"if {value}.__class__ is not int or not {low} <= {value} < {high}: "
                      "raise _R")
            self.fixed(None, f"{size}s",
                       f"{value}.to_bytes({size}, {byte_order(node)!r}, signed={signed!r})")
            return value
        if kind is Const:
            return self.const(node, value, scope)
        if kind is Bytes:
            length = self.length(node, scope)
            data = self.bytes_value(value)
            self.emit(f"if len({data}) != {length}: raise _R")
            if type(node.length) is int and node.length <= SMALL_BYTES:
                self.fixed(None, f"{node.length}s", data)
            else:
                self.blob(data)
            return data
        if kind is GREEDY:
            data = self.bytes_value(value)
            self.blob(data)
            return data
        if kind in (Enum, StrictEnum):
            raw = self.var()
            table = self.ns.enum_numbers(node)
            self.emit(f"{raw} = {value} if isinstance({value}, int) else "
                      f"{table}.get({value}) if isinstance({value}, str) else None")
            self.emit(f"if {raw} is None: raise _R")
            self.node(node.subcon, raw, scope)
            return value
        if kind is StrictFlagAdapter:
            if format_field(node.subcon) is None:
                raise Unsupported(f"{node!r}: a flag over something else than a FormatField")
            raw = self.var()
            self.emit(f"{raw} = 1 if {value} else 0")
            self.node(node.subcon, raw, scope)
            return value
        if kind is GuidAdapter:
            sub = unwrap(node.subcon)
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
        if kind is PASS:
            return value
        if kind is ERROR:
            self.emit("raise _R")
            return None
        if kind is Switch:
            self.switch(node, value, scope)
            return None
        if kind is Since:
            self.flush()
            self.emit(f"if {value} is not None:")
            self.block(node.subcon, value, scope)
            return None
        array = prefixed_array(node)
        if array is not None:
            self.array(*array, value)
            return None
        raise Unsupported(f"{node!r} ({kind.__name__})")

    def block(self, node, value: str, scope) -> None:
        """An indented block under the line just written that builds `node`."""
        self.ind += 1
        self.node(node, value, scope)
        self.flush()
        self.emit("pass")
        self.ind -= 1

    def const(self, node: Const, value: str, scope) -> str:
        if format_field(node.subcon) is None and type(node.subcon) is not Bytes:
            raise Unsupported(f"{node!r}: a Const over something else than a "
                              "FormatField or Bytes")
        allowed = self.ns.const((None, node.value))
        self.emit(f"if {value} not in {allowed}: raise _R")
        constant = self.ns.const(node.value)
        sub = unwrap(node.subcon)
        if type(sub) is Bytes:
            if type(node.value) is not bytes or type(sub.length) is not int \
                    or len(node.value) != sub.length:
                raise Unsupported(f"{node!r}: a constant that does not fit its Bytes")
            self.fixed(None, f"{sub.length}s", constant)
        else:
            self.node(sub, constant, scope)
        return constant

    def string(self, node: StringEncoded, value: str) -> str:
        encoding = node.encoding
        field, fixed = pascal(node), padded(node)
        if field is None and fixed is None:
            raise Unsupported(f"{node!r}: only PascalString and PaddedString are compiled")
        data = self.var("s")
        self.emit(f"if not isinstance({value}, str): raise _R")
        self.emit(f"{data} = b'' if {value} == '' else {value}.encode({encoding!r})")
        if field is not None:
            self.fixed(*split_fmt(field), f"len({data})")
            self.blob(data)
        else:
            size, _ = fixed
            self.emit(f"if len({data}) > {size}: raise _R")
            self.fixed(None, f"{size}s", data)
        return value

    def static(self, node) -> bool:
        """Whether `node` builds with no loop or branch (its pieces can wait)."""
        node = unwrap(node)
        kind = type(node)
        if kind in (FormatField, Const, Bytes, GREEDY, PASS, StringEncoded):
            return True
        if kind in (Enum, StrictEnum, StrictFlagAdapter, GuidAdapter):
            return self.static(node.subcon)
        if kind in (Prefixed, StrictPrefixed):
            return self.static(node.subcon)
        if kind is Struct:
            return all(self.static(sc) for sc in node.subcons)
        array = prefixed_array(node)
        if array is not None:
            return format_field(array[1]) is not None
        return False

    def prefixed(self, node, value: str, scope) -> str | None:
        if node.includelength:
            raise Unsupported(f"{node!r}: includelength")
        field = format_field(node.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: length is not a FormatField")
        if self.static(node.subcon):
            outer, self.pieces = self.pieces, []
            result = self.node(node.subcon, value, scope)
            inner, self.pieces = self.pieces, outer
            self.fixed(*split_fmt(field), self.size(inner))
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
        self.fixed(*split_fmt(field), f"len({data})")
        self.blob(data)
        return result

    def struct(self, node: Struct, value: str) -> None:
        as_tuple = self.packs and self.depth < SCAN_TUPLE_DEPTH
        if as_tuple:
            if not all(sc.name and not sc.flagbuildnone for sc in node.subcons):
                raise Unsupported(f"{node!r}: a pack's tuple of a Struct with unnamed or "
                                  "computed fields")
            self.emit(f"if {value}.__class__ is not tuple or len({value}) != "
                      f"{len(node.subcons)}: raise _R")
        else:
            self.emit(f"if not isinstance({value}, dict): raise _R")
        scope: dict[str, str] = {}
        self.depth += 1
        for i, sc in enumerate(node.subcons):
            field = self.var("f")
            if as_tuple:
                self.emit(f"{field} = {value}[{i}]")
            elif sc.flagbuildnone:
                self.emit(f"{field} = {value}.get({sc.name!r}, None)")
            else:
                self.emit(f"{field} = {value}[{sc.name!r}]")  # KeyError: refused
            result = self.node(sc, field, scope)
            if sc.name:
                if result is not None and referenceable(sc):
                    scope[sc.name] = result
                else:
                    scope.pop(sc.name, None)
        self.depth -= 1

    def switch(self, node: Switch, value: str, scope) -> None:
        if not callable(node.keyfunc):
            raise Unsupported(f"{node!r}: constant key")
        key = expression(node.keyfunc, scope)
        table, branches = switch_table(self.ns, node)
        self.flush()
        branch = self.var("b")
        self.emit("try:")  # the key is what the caller gave: it may not even hash
        self.emit(f"    {branch} = {table}.get({key}, -1)")
        self.emit("except TypeError:")
        self.emit("    raise _R from None")
        for number, case in [*enumerate(branches), (-1, node.default)]:
            self.emit(f"if {branch} == {number}:" if number == 0 else
                      "else:" if number < 0 else f"elif {branch} == {number}:")
            self.block(case, value, scope)

    def array(self, countfield: FormatField, element, value: str) -> None:
        self.emit(f"if not isinstance({value}, (list, tuple)): raise _R")
        self.fixed(*split_fmt(countfield), f"len({value})")
        field = format_field(element)
        if field is not None:
            plain(element)
            order, code = field.fmtstr[0], field.fmtstr[1:]
            data = self.var("d")
            self.emit(f"{data} = _pack('{order}%d{code}' % len({value}), *{value})")
            self.blob(data)
            return
        self.flush()
        item = self.var("e")
        self.emit(f"for {item} in {value}:")
        self.block(element, item, None)
