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

from vmbtool.formats.common import GuidAdapter, Since, StrictFlagAdapter
from vmbtool.shapes import (
    Boolean,
    Choice,
    Guid,
    Hex,
    Integer,
    List,
    Null,
    Nullable,
    Object,
    Shape,
    Tagged,
    Text,
)
from vmbtool.state import PACKET_STATE_NAMES

# The document's own arrangement of a channel (jsonview writes and reads it so): packet
# states as the JSON spells them (the grammar's name -> PacketState.label), the fields of
# its config object, its counters.
PACKET_STATE_JSON = {name: state.label for state, name in PACKET_STATE_NAMES.items()}
CONFIG_FIELDS = ("flags", "max_packet_size", "max_external_data_size", "max_chain_length",
                 "client_context_size", "mmio_megabytes", "mmio_megabytes_optional",
                 "incoming_ring_pages", "outgoing_ring_pages", "friendly_name")
COUNTERS = ("next_transaction_id", "next_incoming_number", "next_gpadl_handle")


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
