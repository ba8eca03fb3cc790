"""Conversions between live simulated objects and the grammars' containers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from vmbtool import codec
from vmbtool.generated.packet import PacketContext
from vmbtool.sim.channel import Channel
from vmbtool.sim.config import ChannelConfig
from vmbtool.sim.gpadl import Gpadl, GpadlTable
from vmbtool.sim.packet import IncomingPacket, PacketState, VmbPacket
from vmbtool.sim.ring import RingBuffer
from vmbtool.sim.wire import ByteRange, ExternalData, GpaRange, PacketType

# The grammars' names (formats/packet.py) of the simulation's enums, the one table of
# each: the enum's names in lower case (a packet object is saved in any state but free;
# tests/test_grammars.py holds the grammars' enums to these).
PACKET_STATE_NAMES = {state: state.name.lower() for state in PacketState
                      if state is not PacketState.FREE}
PACKET_STATES = {name: state for state, name in PACKET_STATE_NAMES.items()}
PACKET_TYPE_NAMES = {ptype: ptype.name.lower() for ptype in PacketType}
PACKET_TYPES = {name: ptype for ptype, name in PACKET_TYPE_NAMES.items()}


@dataclass(eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class SavedChannel:
    """One channel's saved state as parsed from its chunks."""

    context: Any = None
    rings: dict[str, Any] = field(default_factory=dict)  # "incoming" / "outgoing"
    gpadls: list[Any] = field(default_factory=list)
    # PacketRecord containers; a scanning staging's (RestoreFromBuffer's): scan tuples
    packets: list[Any] = field(default_factory=list)
    incoming: list[Any] = field(default_factory=list)
    end: Any = None
    skipped: list[int] = field(default_factory=list)  # unknown optional chunk types
    packet_count: int = 0  # packets staged, whether `packets` keeps them or not
    gpadl_count: int = 0  # and GPADLs and pending incoming packets, the same
    incoming_count: int = 0
    problems: list[tuple[str, str]] | None = None  # found as it streamed (lean reads)


# -- live -> containers ---------------------------------------------------------
def channel_context(channel: Channel) -> dict:
    c = channel.config
    return {
        "role": "server" if channel.role == 0 else "client",
        "state": int(channel.state),
        "interface_type": str(c.interface_type),
        "interface_instance": str(c.interface_instance),
        "subchannel_index": c.subchannel_index,
        "flags": c.flags,
        "max_packet_size": c.max_packet_size,
        "max_external_data_size": c.max_external_data_size,
        "max_chain_length": c.max_chain_length,
        "client_context_size": c.client_context_size,
        "mmio_megabytes": c.mmio_megabytes,
        "mmio_megabytes_optional": c.mmio_megabytes_optional,
        "incoming_ring_pages": c.incoming_ring_pages,
        "outgoing_ring_pages": c.outgoing_ring_pages,
        "friendly_name": c.friendly_name,
        "next_transaction_id": channel.next_transaction_id,
        "next_incoming_number": channel.next_incoming_number,
        "next_gpadl_handle": channel.connection.gpadls.next_handle if channel.connection else 0,
    }


def ring_state(ring: RingBuffer, direction: str) -> dict:
    return {
        "direction": direction,
        "write_index": ring.write_index,
        "read_index": ring.read_index,
        "interrupt_mask": ring.interrupt_mask,
        "pending_send_size": ring.pending_send_size,
        "feature_bits": ring.feature_bits,
        "data_pages": ring.data_size // 4096,
        "data": ring.data,
    }


def gpadl_table(table: GpadlTable | None) -> dict:
    gpadls = [] if table is None else table.gpadls.values()
    return {"gpadls": [
        {"handle": g.handle, "read_only": g.read_only, "mapped": g.mapped,
         "byte_offset": g.byte_offset, "byte_length": g.byte_length, "pfns": list(g.pfns)}
        for g in gpadls
    ]}


def external_dict(external: ExternalData | None) -> dict:
    if external is None:
        return {"kind": "none", "body": None}
    if external.kind == PacketType.GPA_DIRECT:
        return {"kind": "gpa_direct", "body": {"ranges": [
            {"byte_count": r.byte_count, "byte_offset": r.byte_offset, "pfns": list(r.pfns)}
            for r in external.gpa_ranges]}}
    return {"kind": PACKET_TYPE_NAMES[external.kind], "body": {
        "handle": external.handle, "sender_owns_set": external.sender_owns_set,
        "ranges": [{"byte_count": r.byte_count, "byte_offset": r.byte_offset}
                   for r in external.byte_ranges]}}


def packet_context(packet: VmbPacket) -> dict:
    """The library's own packet state (LibBuf): `packet_fields` by name, the state and
    the type by the grammar's names of them."""
    context = dict(zip(LIB_BUF_FIELDS, packet_fields(packet), strict=True))
    context["state"] = PACKET_STATE_NAMES[packet.state]
    context["type"] = PACKET_TYPE_NAMES[packet.type]
    return context


LIB_BUF_FIELDS = PacketContext.fields


def packet_fields(packet: VmbPacket) -> tuple:
    """`packet_context` as a tuple of PacketContext's fields, in the grammar's order (the
    shape `codec.pack` builds from, with no container):

        PACKET_CONTEXT ::= u64 transaction_id, u8 state, u16 type, u32 send_flags,
                           u32 ring_offset, u64 pointer, u8 routine_length,
                           ascii completion_routine, u32 payload_length, u8 payload[],
                           EXTERNAL_DATA

    The state and type go as the sim's enum members: numbers, the grammar's own."""
    external = packet.external
    return (packet.transaction_id, packet.state, packet.type, int(packet.send_flags),
            packet.ring_offset, packet.pointer, packet.completion_routine_name,
            packet.payload, {"kind": "none", "body": None} if external is None else
            external_dict(external))


def lib_buf_fields(lib_buf: bytes) -> tuple:
    """The PacketContext a LibBuf holds, as its fields in the grammar's order
    (`fill_packet_fields`); a BlobError if it holds none."""
    context = codec.parse(PacketContext, lib_buf, "lib_buf")
    return tuple(context[name] for name in LIB_BUF_FIELDS)


def incoming_entries(channel: Channel) -> dict:
    return {"packets": [
        {"number": p.number, "transaction_id": p.transaction_id,
         "type": PACKET_TYPE_NAMES[p.type], "flags": p.flags, "payload": p.payload,
         "external": external_dict(p.external)}
        for p in channel.pending_incoming.values()
    ]}


# -- containers -> live ---------------------------------------------------------
def config_from(context: Any) -> ChannelConfig:
    return ChannelConfig(
        max_packet_size=context.max_packet_size,
        max_external_data_size=context.max_external_data_size,
        max_chain_length=context.max_chain_length,
        client_context_size=context.client_context_size,
        friendly_name=context.friendly_name,
        flags=context.flags,
        mmio_megabytes=context.mmio_megabytes,
        mmio_megabytes_optional=context.mmio_megabytes_optional,
        interface_type=UUID(context.interface_type),
        interface_instance=UUID(context.interface_instance),
        subchannel_index=context.subchannel_index,
        incoming_ring_pages=context.incoming_ring_pages,
        outgoing_ring_pages=context.outgoing_ring_pages,
    )


def set_life_cycle(channel: Channel, state: int) -> None:
    """The life-cycle flags a saved ServerState / ClientState value stands for."""
    from vmbtool.sim.config import ClientState, Role, ServerState

    channel.initializing = False
    channel.enabled = state != 0
    if channel.role == Role.SERVER:
        channel.opened = state in (ServerState.STOPPED, ServerState.PAUSED, ServerState.ACTIVE)
        channel.started = state in (ServerState.STARTED, ServerState.ACTIVE)
        channel.paused = state == ServerState.PAUSED
    else:
        channel.opened = state in (ClientState.OPENED, ClientState.PAUSED, ClientState.ACTIVE)
        channel.started = state == ClientState.ACTIVE
        channel.paused = state == ClientState.PAUSED


def ring_from(state: Any) -> RingBuffer:
    ring = RingBuffer(state.data_pages)
    ring.memory[4096:] = state.data
    ring.write_index = state.write_index
    ring.read_index = state.read_index
    ring.interrupt_mask = state.interrupt_mask
    ring.pending_send_size = state.pending_send_size
    ring.feature_bits = state.feature_bits
    return ring


def gpadl_table_from(gpadls: list[Any], next_handle: int) -> GpadlTable:
    table = GpadlTable(next_handle=next_handle)
    for g in gpadls:
        table.gpadls[g.handle] = Gpadl(g.handle, tuple(g.pfns), g.byte_offset, g.byte_length,
                                       g.read_only, g.mapped)
    return table


def external_from(external: Any) -> ExternalData | None:
    kind = external["kind"]
    if kind == "none":
        return None
    body = external["body"]
    if kind == "gpa_direct":
        return ExternalData(PacketType.GPA_DIRECT, gpa_ranges=tuple(
            GpaRange(r.byte_count, r.byte_offset, tuple(r.pfns)) for r in body.ranges))
    return ExternalData(PACKET_TYPES[kind], handle=body.handle,
                        sender_owns_set=body.sender_owns_set, byte_ranges=tuple(
                            ByteRange(r.byte_count, r.byte_offset) for r in body.ranges))


def fill_packet(packet: VmbPacket, context: Any) -> None:
    """Put a LibBuf's state, parsed, into a freshly allocated packet object."""
    fill_packet_fields(packet, tuple(context[name] for name in LIB_BUF_FIELDS))


def fill_packet_fields(packet: VmbPacket, fields: tuple) -> None:
    """`fill_packet` from the LibBuf's fields in the grammar's order (`packet_fields`'s
    shape; a scan's, with the state and type by name and the payload a view)."""
    (packet.transaction_id, state, ptype, packet.send_flags, packet.ring_offset,
     packet.pointer, packet.completion_routine_name, payload, external) = fields
    packet.state = PACKET_STATES[state]
    packet.type = PACKET_TYPES[ptype]
    packet.payload = bytes(payload)
    packet.external = None if external["kind"] == "none" else external_from(external)


def incoming_from(entry: Any) -> IncomingPacket:
    # by item, not attribute: a parsed container's attributes are a Python-level call each
    return IncomingPacket(entry["transaction_id"], PACKET_TYPES[str(entry["type"])],
                          entry["flags"], bytes(entry["payload"]),
                          external_from(entry["external"]), number=entry["number"])
