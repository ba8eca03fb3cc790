"""The shape of `vmbtool decode`'s JSON document, checked before `encode` builds a byte.

Every value is checked where it stands, so an error names its JSON path, what the
field takes and what it was given: `channels[0].packets[3].transaction_id: expected an
integer 0..2**64-1, got -1`. Types and ranges come from the grammars (`from_grammar`),
so they follow the format; the document's own arrangement (hex for bytes, the offer and
config objects, renamed fields) is spelled out in `document()`. Unknown keys are
refused; arrays are held to the limits a reader holds them to. The walk follows the
shape, not the data, so no nesting in a document makes it recurse deeper.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

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

from vmbtool.errors import JsonError
from vmbtool.formats.common import GuidAdapter, Since, StrictFlagAdapter
from vmbtool.text import escape

# The document's own arrangement of a channel (jsonview writes and reads it so): packet
# states as the JSON spells them, the fields of its config object, its counters.
PACKET_STATE_JSON = {"allocated": "allocated", "backlog": "backlog", "in_ring": "in-ring",
                     "awaiting_completion": "awaiting-completion"}
CONFIG_FIELDS = ("flags", "max_packet_size", "max_external_data_size", "max_chain_length",
                 "client_context_size", "mmio_megabytes", "mmio_megabytes_optional",
                 "incoming_ring_pages", "outgoing_ring_pages", "friendly_name")
COUNTERS = ("next_transaction_id", "next_incoming_number", "next_gpadl_handle")

SHOWN_CHARS = 40
SHOWN_DIGITS = 40


def show(value: Any) -> str:
    """A JSON value as the user wrote it, cut short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        if value.bit_length() > SHOWN_DIGITS * 3.33:  # (str() of a huge int is refused)
            return f"a number of about {int(value.bit_length() / 3.32)} digits"
        return str(value)
    if isinstance(value, str):  # quoted as JSON, anything unsafe escaped
        text = escape(json.dumps(value[:SHOWN_CHARS], ensure_ascii=False))
        return text + ("…" if len(value) > SHOWN_CHARS else "")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return json.dumps(value)


def bad(path: str, expected: str, value: Any) -> JsonError:
    return JsonError(path, f"expected {expected}, got {show(value)}")


class Shape:
    """What one JSON value must be."""

    expected = "a value"

    def check(self, value: Any, path: str) -> None:
        raise NotImplementedError


@dataclass
class Integer(Shape):
    low: int
    high: int
    expected: str = ""

    def __post_init__(self) -> None:
        self.expected = self.expected or f"an integer {span(self.low, self.high)}"

    def check(self, value: Any, path: str) -> None:
        if type(value) is not int or not self.low <= value <= self.high:  # (bool is not)
            raise bad(path, self.expected, value)


def span(low: int, high: int) -> str:
    def bound(n: int) -> str:
        for bits in (16, 32, 63, 64):
            if n == 2**bits - 1 and bits > 16:
                return f"2**{bits}-1"
            if n == -(2**bits):
                return f"-2**{bits}"
        return str(n)
    return f"{bound(low)}..{bound(high)}"


@dataclass
class Boolean(Shape):
    expected: str = "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise bad(path, self.expected, value)


@dataclass
class Choice(Shape):
    names: tuple[str, ...]
    numbers: Integer | None = None  # a number is taken too (a value without a name)

    def __post_init__(self) -> None:
        self.expected = "one of " + ", ".join(self.names) + \
            (f" or {self.numbers.expected}" if self.numbers else "")

    def check(self, value: Any, path: str) -> None:
        if self.numbers is not None and isinstance(value, int) and not isinstance(value, bool):
            self.numbers.check(value, path)
        elif not (isinstance(value, str) and value in self.names):
            raise bad(path, self.expected, value)


@dataclass
class Text(Shape):
    max_bytes: int
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        self.expected = f"{self.encoding} text of at most {self.max_bytes:,} bytes"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise bad(path, self.expected, value)
        try:
            size = len(value.encode(self.encoding))
        except UnicodeEncodeError:
            raise bad(path, self.expected, value) from None
        if size > self.max_bytes:
            raise JsonError(path, f"expected {self.expected}, got {size:,} bytes")


@dataclass
class Hex(Shape):
    """Bytes as a hex string (any case), of at most `max_bytes` or exactly `exact`."""

    max_bytes: int = 2**32 - 1
    exact: int | None = None

    def __post_init__(self) -> None:
        self.expected = "a hex string" + (f" of {self.exact} bytes" if self.exact is not None
                                          else f" of at most {self.max_bytes:,} bytes")

    def check(self, value: Any, path: str) -> None:
        try:
            data = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise bad(path, self.expected, value) from None
        if (self.exact is not None and len(data) != self.exact) or len(data) > self.max_bytes:
            raise JsonError(path, f"expected {self.expected}, got {len(data):,} bytes")


@dataclass
class Guid(Shape):
    expected: str = "a GUID like 12345678-9abc-def0-1234-56789abcdef0"

    def check(self, value: Any, path: str) -> None:
        try:
            uuid.UUID(value)
        except (TypeError, ValueError, AttributeError):
            raise bad(path, self.expected, value) from None


@dataclass
class Null(Shape):
    expected: str = "null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            raise bad(path, self.expected, value)


@dataclass
class Nullable(Shape):
    shape: Shape

    def __post_init__(self) -> None:
        self.expected = f"{self.shape.expected} or null"

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.shape.check(value, path)


@dataclass
class List(Shape):
    item: Shape
    max_items: int
    what: str = "entries"

    def __post_init__(self) -> None:
        self.expected = "a list"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise bad(path, self.expected, value)
        if len(value) > self.max_items:
            raise JsonError(path, f"{len(value):,} {self.what}, more than the "
                            f"{self.max_items:,} a reader takes")
        for index, item in enumerate(value):
            self.item.check(item, f"{path}[{index}]")


@dataclass
class Tagged(Shape):
    """A value whose shape its object's `tag` field chooses (a grammar's Switch)."""

    tag: str
    cases: dict[str, Shape]


@dataclass
class Object(Shape):
    fields: dict[str, Shape]
    optional: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.expected = "an object"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise bad(path, self.expected, value)
        prefix = "" if path == "$" else f"{path}."
        if not self.fields.keys() >= value.keys():
            key = next(k for k in value if k not in self.fields)
            raise JsonError(prefix + key, "unknown key (this object takes "
                            + ", ".join(self.fields) + ")")
        for name, shape in self.fields.items():
            if name not in value:
                if name in self.optional:
                    continue
                raise JsonError(prefix + name, f"missing: expected {shape.expected}")
            if isinstance(shape, Tagged):  # the tag was checked before: it comes first
                shape = shape.cases[value[shape.tag]]
            shape.check(value[name], prefix + name)


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


@cache
def document() -> Object:
    """The whole document as decode writes it (README: JSON schema)."""
    # imported here: the grammars and limits are the blob layer's, loaded on first use
    from vmbtool.formats.channel import ChannelContext
    from vmbtool.formats.end import BlobEnd, ChannelEnd
    from vmbtool.formats.gpadl import Gpadl
    from vmbtool.formats.header import FileHeader
    from vmbtool.formats.incoming import Incoming
    from vmbtool.formats.limits import (
        MAX_CHUNK_LENGTH,
        MAX_GPADLS_PER_CHANNEL,
        MAX_GUESTS,
        MAX_PACKETS_PER_CHANNEL,
    )
    from vmbtool.formats.packet import PacketContext
    from vmbtool.formats.ring import RingState
    from vmbtool.formats.scenario import ScenarioState
    from vmbtool.formats.stats import ChannelStats
    from vmbtool.sim.config import ClientState, ServerState

    context = fields_of(ChannelContext)
    states = tuple(s.name.lower() for s in ServerState) + tuple(
        s.name.lower() for s in ClientState if s.name not in ServerState.__members__)
    chunk_data = MAX_CHUNK_LENGTH
    channel_fields = {
        "role": context["role"],
        "offer": Object({name: context[name] for name in
                         ("interface_type", "interface_instance", "subchannel_index")}),
        "state": Choice(states, Integer(0, 255)),
        "config": Object({name: context[name] for name in CONFIG_FIELDS}),
        **{name: context[name] for name in COUNTERS},
    }
    packet = fields_of(PacketContext, drop=("send_flags",),
                       state=Choice(tuple(PACKET_STATE_JSON.values())),
                       payload=Hex(max_bytes=chunk_data))
    packet = {**{k: packet[k] for k in ("transaction_id", "state", "type")},
              "flags": from_grammar(PacketContext).fields["send_flags"],
              **{k: v for k, v in packet.items()
                 if k not in ("transaction_id", "state", "type")},
              "vsp_state": Hex(max_bytes=chunk_data)}
    packets = List(Object(packet), MAX_PACKETS_PER_CHANNEL, "packets")
    incoming = List(Object(fields_of(Incoming, payload=Hex(max_bytes=chunk_data))),
                    MAX_PACKETS_PER_CHANNEL, "pending incoming packets")
    # (a ring without data is refused by encode, which says why: decoded without data)
    ring = Object(fields_of(RingState, drop=("direction",), data=Hex(max_bytes=chunk_data)),
                  frozenset({"data"}))
    channel = Object({
        **channel_fields,
        "rings": Object({"incoming": ring, "outgoing": ring},
                        frozenset({"incoming", "outgoing"})),
        "gpadls": List(from_grammar(Gpadl), MAX_GPADLS_PER_CHANNEL, "GPADLs"),
        "packets": packets,
        "pending_incoming": incoming,
        "channel_end": from_grammar(ChannelEnd),
        "stats": Nullable(Object(fields_of(ChannelStats, drop=("channel",)))),
    }, frozenset({"rings", "gpadls", "packets", "pending_incoming", "channel_end", "stats"}))
    guest = Object({**channel_fields, "packets": packets, "pending_incoming": incoming},
                   frozenset({"packets", "pending_incoming"}))
    scenario = Object(fields_of(ScenarioState, guests=List(guest, MAX_GUESTS, "guests"),
                                vsp_state=Hex(max_bytes=chunk_data),
                                vsc_state=Hex(max_bytes=chunk_data)),
                      frozenset({"guests"}))
    header = fields_of(FileHeader, drop=("magic", "format_major", "format_minor",
                                         "reserved"))
    extra = Object({"after_chunk": Integer(0, 2**32 - 1), "type": Integer(0, 2**16 - 1),
                    "flags": Integer(0, 255), "data": Hex(max_bytes=chunk_data)})
    return Object({
        "format": Object({"major": Integer(0, 2**16 - 1), "minor": Integer(0, 2**16 - 1)}),
        "header": Object({**header, "signed": Boolean()}, frozenset({"flags", "signed"})),
        "note": Nullable(Text(chunk_data)),
        "channels": List(channel, 2**32 - 1, "channels"),
        "scenario": Nullable(scenario),
        "extra_chunks": List(extra, 2**32 - 1, "chunks"),
        "end": Nullable(Object(fields_of(BlobEnd, drop=("digest",)))),
    }, frozenset({"note", "scenario", "extra_chunks", "end"}))


def check_document(doc: Any) -> None:
    """Raise JsonError at the first value of `doc` that decode could not have written."""
    document().check(doc, "$")
