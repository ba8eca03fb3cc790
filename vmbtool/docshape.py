"""The shape of `vmbtool decode`'s JSON document, checked before `encode` builds a byte.

Every value is checked where it stands, so an error names its JSON path, what the
field takes and what it was given: `channels[0].packets[3].transaction_id: expected an
integer 0..2**64-1, got -1`. Types and ranges come from the grammars
(`grammarshape.from_grammar`), so they follow the format; the document's own
arrangement (hex for bytes, the offer and config objects, renamed fields) is spelled
out in `document()`. Unknown keys are
refused; arrays are held to the limits a reader holds them to. The walk follows the
shape, not the data, so no nesting in a document makes it recurse deeper.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from vmbtool.shapes import (
    Boolean,
    Choice,
    Hex,
    Integer,
    List,
    Nullable,
    Object,
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


@cache
def document() -> Object:
    """The whole document as decode writes it (README: JSON schema)."""
    # imported here: the grammars (and construct) are loaded when a document is checked
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
    from vmbtool.grammarshape import fields_of, from_grammar
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
