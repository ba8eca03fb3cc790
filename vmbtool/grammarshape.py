"""The JSON shape of what a grammar parses to (as `jsonview.plain` shows it): a field's
type and range come from the grammar, so the shapes of `decode`'s document follow the
format (`docshape.document`). Imports construct: only `encode` needs it."""

from __future__ import annotations

from construct import (
    Adapter,
    Array,
    Bytes,
    Const,
    Construct,
    Enum,
    FixedSized,
    FocusedSeq,
    FormatField,
    GreedyBytes,
    Pass,
    Prefixed,
    Renamed,
    StringEncoded,
    Struct,
    Subconstruct,
    Switch,
)

from vmbtool.formats.common import GuidAdapter, Since, StrictFlagAdapter
from vmbtool.shapes import (
    Boolean,
    Choice,
    Guid,
    Hex,
    Integer,
    List,
    Null,
    Object,
    Shape,
    Tagged,
    Text,
)


def integer_of(con: FormatField) -> Integer:
    bits = con.sizeof() * 8
    if con.fmtstr[-1].islower():
        return Integer(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return Integer(0, 2**bits - 1)


def from_grammar(con: Construct) -> Shape:
    """The JSON shape of what `con` parses to (as `jsonview.plain` shows it)."""
    if isinstance(con, (Renamed, Since)):
        return from_grammar(con.subcon)
    if isinstance(con, FormatField):
        return integer_of(con)
    if isinstance(con, Enum):
        return Choice(tuple(str(name) for name in con.encmapping))
    if isinstance(con, GuidAdapter):
        return Guid()
    if isinstance(con, StrictFlagAdapter):
        return Boolean()
    if isinstance(con, StringEncoded):
        inner = con.subcon
        limit = inner.length if isinstance(inner, FixedSized) else \
            integer_of(inner.lengthfield).high
        return Text(limit, con.encoding)
    if isinstance(con, Prefixed):
        if con.subcon is GreedyBytes:
            return Hex(max_bytes=integer_of(con.lengthfield).high)
        return from_grammar(con.subcon)
    if isinstance(con, Bytes):
        return Hex(exact=con.length) if isinstance(con.length, int) else Hex()
    if isinstance(con, FocusedSeq):  # PrefixedArray: a count, then the items
        count, items = (sub.subcon for sub in con.subcons)
        assert isinstance(items, Array)
        return List(from_grammar(items.subcon), integer_of(count.subcon).high)
    if isinstance(con, Switch):
        if repr(con.keyfunc) != "this['kind']":
            raise TypeError(f"no JSON shape for a Switch on {con.keyfunc!r}")
        return Tagged("kind", {k: from_grammar(v) for k, v in con.cases.items()
                               if isinstance(k, str)})
    if con is Pass:
        return Null()
    if isinstance(con, Struct):
        fields = {sub.name: from_grammar(sub) for sub in con.subcons if sub.name}
        optional = frozenset(sub.name for sub in con.subcons
                             if isinstance(sub, Since) or isinstance(unrenamed(sub), Const))
        return Object(fields, optional)
    if isinstance(con, (Adapter, Subconstruct)):
        return from_grammar(con.subcon)
    raise TypeError(f"no JSON shape for {con!r}")  # a grammar this module does not know


def unrenamed(con: Construct) -> Construct:
    return con.subcon if isinstance(con, Renamed) else con


def fields_of(con: Construct, *, drop: tuple[str, ...] = (),
              **replace: Shape) -> dict[str, Shape]:
    """A grammar Struct's fields as shapes, without `drop`, with `replace`d ones."""
    shape = from_grammar(con)
    assert isinstance(shape, Object)
    out = {name: s for name, s in shape.fields.items() if name not in drop}
    out.update(replace)
    return out
