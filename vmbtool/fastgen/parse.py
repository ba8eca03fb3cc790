"""Writing the body of a generated parse: the grammar tree walked once, as straight code.

Every refusal is an explicit `raise _R` (Refuse) or one of the two errors the caller
turns into it: `struct.error` (a fixed-width read past the end of the data) and
`UnicodeDecodeError` (a string that is not in its encoding). Nothing else is expected
from the code written here.
"""

from __future__ import annotations

import keyword
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
    is_int_field,
    minsize,
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


class ParseWriter(Writer):
    """Writes the statements of a parse over `data` from `pos` to `end`; `node()` gives
    the variable holding the object.

    The position is `pos + self.k` with `self.k` known here; fixed-width reads wait in
    `self.run` and are read by one unpack when something needs their values (`flush`).
    Reads of a fused run are bounded by the buffer only: a run that runs past the end of
    a length-prefixed part is caught where that part closes (`pos` only grows)."""

    def __init__(self, ns: Namespace, view: bool, indent: int, scan: bool = False) -> None:
        super().__init__(ns, indent)
        self.view = view
        # a scan: over a memoryview, its byte strings left as views of it, the record
        # and the structures right inside it as tuples of their fields, not containers
        self.scan = scan
        self.depth = 0  # of the Struct being written
        self.k = 0
        self.end = "end"
        self.run: list[str] = []
        self.run_vars: list[str] = []
        self.run_order: str | None = None
        self.run_k = 0
        self.post: list[str] = []
        self.ints: set[str] = set()  # variables known to hold ints
        self.used_budget = False

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

    def read_int(self, field: FormatField) -> str:
        (name,) = self.read(*split_fmt(field))
        if is_int_field(field):
            self.ints.add(name)
        return name

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
        if self.view and not self.scan:
            return f"bytes(data[{start}:{stop}])"
        return f"data[{start}:{stop}]"

    def decode(self, start: str, stop: str, encoding: str) -> str:
        if self.view:
            return f"str(data[{start}:{stop}], {encoding!r})"
        return f"data[{start}:{stop}].decode({encoding!r})"

    def nonnegative(self, field: FormatField, name: str) -> None:
        if field.fmtstr[1:] in "bhilq":
            self.after(f"if {name} < 0: raise _R")

    def length_prefixed(self, field: FormatField) -> tuple[str, str]:
        """Read a length; returns (start, stop) variables of the bytes it counts."""
        n = self.read_int(field)
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

    def budget(self, cost: str) -> None:
        self.used_budget = True
        self.emit(f"_E[0] -= {cost}")
        self.emit("if _E[0] < 0: raise _TME")

    # the tree
    def node(self, node, scope: dict[str, str] | None) -> str:
        plain(node)
        kind = type(node)
        if kind is Renamed:
            return self.node(node.subcon, scope)
        if kind is FormatField:
            return self.read_int(node)
        if kind is BytesInteger:
            (raw,), value = self.read(None, f"{bytes_integer(node)}s"), self.var()
            self.after(f"{value} = int.from_bytes({raw}, {byte_order(node)!r}, "
                       f"signed={node.signed!r})")
            self.ints.add(value)
            return value
        if kind is Const:
            value = self.node(node.subcon, scope)
            self.after(f"if not {value} == {self.ns.const(node.value)}: raise _R")
            return value
        if kind is Bytes:
            return self.bytes(node, scope)
        if kind is GREEDY:
            value = self.var()
            self.emit(f"if {self.at()} > {self.end}: raise _R")
            self.line(f"{value} = {self.slice(self.at(), self.end)}")
            self.jump(self.end)
            return value
        if kind in (Enum, StrictEnum):
            raw = self.node(node.subcon, scope)
            value, table = self.var(), self.ns.enum_names(node)
            self.after(f"{value} = {table}.get({raw})")
            if kind is StrictEnum:
                self.after(f"if {value} is None: raise _R")
            else:
                self.after(f"if {value} is None: {value} = _EI({raw})")
            return value
        if kind is StrictFlagAdapter:
            if format_field(node.subcon) is None:
                raise Unsupported(f"{node!r}: a flag over something else than a FormatField")
            raw = self.node(node.subcon, scope)
            value = self.var()
            self.after(f"{value} = {self.ns.table({0: False, 1: True}, 'flag')}.get({raw})")
            self.after(f"if {value} is None: raise _R")
            return value
        if kind is GuidAdapter:
            sub = unwrap(node.subcon)
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
        if kind is PASS:
            return "None"
        if kind is ERROR:
            self.emit("raise _R")
            return "None"
        if kind is Switch:
            return self.switch(node, scope)
        if kind is Since:
            return self.since(node, scope)
        array = prefixed_array(node)
        if array is not None:
            return self.array(*array)
        raise Unsupported(f"{node!r} ({kind.__name__})")

    def bytes(self, node: Bytes, scope) -> str:
        if type(node.length) is int:
            if node.length < 0:
                raise Unsupported(f"{node!r}: negative length")
            if node.length <= SMALL_BYTES:
                return self.read(None, f"{node.length}s")[0]
            length = str(node.length)
        elif callable(node.length):
            used: list[str] = []
            length = expression(node.length, scope, used)
            if not set(used) <= self.ints:
                raise Unsupported(f"{node!r}: a length over something else than integers")
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
        field = pascal(node)
        if field is not None:
            start, stop = self.length_prefixed(field)
            value = self.var()
            self.emit(f"{value} = {self.decode(start, stop, encoding)}")
            self.jump(stop)
            return value
        fixed = padded(node)
        if fixed is not None:
            size, pad = fixed
            (raw,) = self.read(None, f"{size}s")
            value = self.var()
            self.after(f"{value} = {raw}.rstrip({pad!r}).decode({encoding!r})")
            return value
        raise Unsupported(f"{node!r}: only PascalString and PaddedString are compiled")

    def prefixed(self, node, scope) -> str:
        if node.includelength:
            raise Unsupported(f"{node!r}: includelength")
        field = format_field(node.lengthfield)
        if field is None:
            raise Unsupported(f"{node!r}: length is not a FormatField")
        start, stop = self.length_prefixed(field)
        if type(node.subcon) is GREEDY:
            plain(node.subcon)
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
        as_tuple = self.scan and self.depth < SCAN_TUPLE_DEPTH
        if as_tuple and not all(sc.name for sc in node.subcons):
            raise Unsupported(f"{node!r}: a scan's tuple of a Struct with unnamed fields")
        self.depth += 1
        for sc in node.subcons:
            value = self.node(sc, scope)
            if sc.name:
                fields[sc.name] = value
                if referenceable(sc):
                    scope[sc.name] = value
                else:
                    scope.pop(sc.name, None)
        self.depth -= 1
        obj = self.var("o")
        if as_tuple:
            self.after(f"{obj} = ({', '.join(fields.values())},)")
        elif all(name.isidentifier() and not keyword.iskeyword(name) for name in fields):
            self.after(f"{obj} = _C({', '.join(f'{k}={v}' for k, v in fields.items())})")
        else:
            self.after(f"{obj} = _C()")
            for name, value in fields.items():
                self.after(f"{obj}[{name!r}] = {value}")
        return obj

    def switch(self, node: Switch, scope) -> str:
        if not callable(node.keyfunc):
            raise Unsupported(f"{node!r}: constant key")
        key = expression(node.keyfunc, scope)
        table, branches = switch_table(self.ns, node)
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
        n = self.read_int(countfield)
        self.nonnegative(countfield, n)
        value = self.var()
        field = format_field(element)
        if field is not None:
            # an int costs ~40 bytes parsed, 5 times its 8 on the wire (PFN lists)
            self.budget(f"{n} * 40")
            plain(element)
            order, code = field.fmtstr[0], field.fmtstr[1:]
            self.emit(f"if {n} * {field.length} > {self.end} - ({self.at()}): raise _R")
            self.line(f"{value} = _LC(_unpack_from('{order}%d{code}' % {n}, data, {self.at()}))")
            self.line(f"pos += {self.k} + {n} * {field.length}" if self.k else
                      f"pos += {n} * {field.length}")
            self.k = 0
            return value
        least = minsize(element)
        if 0 < least <= 16:
            # tiny structures (a GPA or byte range) cost some 40 times their wire size
            self.budget(f"{n} * {40 * least}")
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
