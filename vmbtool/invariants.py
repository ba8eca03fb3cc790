"""Semantic checks on a saved channel: what parses and checksums but cannot be true.

Restore refuses a channel with any problem before it changes anything; validate
reports every problem with its field path.
"""

from __future__ import annotations

from vmbtool.sim.config import MAX_FRIENDLY_NAME, MAX_RING_PAGES, ClientState, ServerState
from vmbtool.sim.ring import RingBuffer
from vmbtool.sim.wire import PAGE_SIZE, PacketType, WireError, WirePacket, pfn_count
from vmbtool.state import SavedChannel, external_from, ring_from

Problem = tuple[str, str]  # (field path, why)
OPENED_STATES = {ServerState.STOPPED, ServerState.PAUSED, ServerState.ACTIVE}


def check_ring(state, where: str, problems: list[Problem]) -> list[WirePacket] | None:
    """Check one ring's control fields and walk its packets (DOMAIN §5 reader rules)."""
    pages = state.data_pages
    if not 1 <= pages <= MAX_RING_PAGES:
        problems.append((f"{where}.data_pages", f"{pages} pages, need 1..{MAX_RING_PAGES}"))
        return None
    size = pages * PAGE_SIZE
    for name in ("write_index", "read_index"):
        value = getattr(state, name)
        if value >= size:
            problems.append((f"{where}.{name}", f"{value} is not below the data size {size}"))
            return None
        if value % 8:
            problems.append((f"{where}.{name}", f"{value} is not a multiple of 8"))
            return None
    ring: RingBuffer = ring_from(state)
    packets, offset, left = [], state.read_index, ring.used_bytes
    while left:  # as RingBuffer.packets(), naming where each packet starts
        try:
            packet = ring.parse_at(offset, left)
        except WireError as exc:
            problems.append((f"{where}.data@{offset}.{exc.where}", exc.why))
            return None
        packets.append(packet)
        offset = (offset + packet.total_size) % size
        left -= packet.total_size
    return packets


def check_external(external, where: str, saved: SavedChannel, ptype: str,
                   problems: list[Problem]) -> None:
    ctx = saved.context
    shape: list[Problem] = []
    check_external_shape(external, where, ptype, shape)
    if shape:
        problems.extend(shape)
        return
    data = external_from(external)
    if data is None:
        if ptype in ("gpa_direct", "transfer_pages", "data_using_gpadl"):
            problems.append((f"{where}.external", f"a {ptype} packet without external data"))
        return
    if data.total_bytes > ctx.max_external_data_size:
        problems.append((f"{where}.external", f"{data.total_bytes} bytes exceed the channel's "
                         f"max external data {ctx.max_external_data_size}"))
    if data.pfn_total > ctx.max_chain_length:
        problems.append((f"{where}.external", f"{data.pfn_total} PFNs exceed the channel's "
                         f"max chain length {ctx.max_chain_length}"))
    if data.kind == PacketType.GPA_DIRECT:
        return
    if data.kind == PacketType.TRANSFER_PAGES and data.handle > 0xFFFF:
        problems.append((f"{where}.external.handle",
                         f"transfer page set id {data.handle:#x} does not fit the wire's u16"))
    if data.kind == PacketType.DATA_USING_GPADL and data.sender_owns_set:
        problems.append((f"{where}.external.sender_owns_set",
                         "a data-using-GPADL packet has no sender_owns_set on the wire"))
    gpadl = next((g for g in saved.gpadls if g.handle == data.handle), None)
    if gpadl is None:
        problems.append((f"{where}.external.handle", f"GPADL {data.handle:#x} does not exist"))
        return
    for i, r in enumerate(data.byte_ranges):
        if r.byte_offset + r.byte_count > gpadl.byte_length:
            problems.append((f"{where}.external.ranges[{i}]",
                             f"runs past GPADL {data.handle:#x} ({gpadl.byte_length} bytes)"))


def check_external_shape(external, where: str, ptype: str, problems: list[Problem]) -> None:
    """What a packet we cannot check against a channel's GPADLs must still be: external
    data of its own type, GPA ranges whose PFN count fits their offset and length."""
    kind = str(external.kind)
    if kind != "none" and kind != ptype:
        problems.append((f"{where}.external.kind", f"{kind} data on a {ptype} packet"))
        return
    if kind != "gpa_direct":
        return
    for i, r in enumerate(external.body.ranges):
        if r.byte_offset >= PAGE_SIZE or len(r.pfns) != pfn_count(r.byte_offset, r.byte_count):
            problems.append((f"{where}.external.ranges[{i}]",
                             f"{len(r.pfns)} PFNs for {r.byte_count} bytes at offset "
                             f"{r.byte_offset}"))


def check_guest(guest, where: str) -> list[Problem]:
    """The simulated guest's side of one channel (the scenario chunk's GuestChannel)."""
    problems: list[Problem] = []
    if guest.context.role != "client":
        problems.append((f"{where}.context.role", "a guest channel's context says server"))
    if guest.context.state not in ClientState._value2member_map_:
        problems.append((f"{where}.context.state", f"unknown client state {guest.context.state}"))
    seen: set[tuple[bool, int]] = set()
    for record in guest.packets:
        p = record.lib_buf
        completion = str(p.type) == "completion"
        pw = f"{where}.packets[{'completion' if completion else 'txid'}={p.transaction_id}]"
        if (completion, p.transaction_id) in seen:
            problems.append((pw, "duplicate transaction id"))
        seen.add((completion, p.transaction_id))
        check_external_shape(p.external, pw, str(p.type), problems)
    numbers: set[int] = set()
    for entry in guest.pending_incoming.packets:
        iw = f"{where}.pending_incoming[number={entry.number}]"
        if entry.number in numbers:
            problems.append((iw, "duplicate arrival number"))
        numbers.add(entry.number)
        check_external_shape(entry.external, iw, str(entry.type), problems)
    return problems


def check_channel(saved: SavedChannel, where: str) -> list[Problem]:
    """Every semantic problem of one saved server channel."""
    problems: list[Problem] = []
    ctx = saved.context
    if ctx is None:
        return [(where, "no channel context chunk")]
    if ctx.role != "server":
        problems.append((f"{where}.context.role", "a server channel's context says client"))
    if ctx.state not in ServerState._value2member_map_:
        problems.append((f"{where}.context.state", f"unknown server state {ctx.state}"))
        return problems
    state = ServerState(ctx.state)
    if state == ServerState.ACTIVE:
        problems.append((f"{where}.context.state", "saved while active (not paused)"))
    if len(ctx.friendly_name) > MAX_FRIENDLY_NAME:
        problems.append((f"{where}.context.friendly_name",
                         f"longer than {MAX_FRIENDLY_NAME} characters"))
    if ctx.max_packet_size == 0 or ctx.max_chain_length == 0:
        problems.append((f"{where}.context", "max packet size and chain length must be > 0"))

    walks: dict[str, list[WirePacket] | None] = {}
    for direction in ("incoming", "outgoing"):
        ring = saved.rings.get(direction)
        if ring is None:
            if state in OPENED_STATES or saved.rings:
                problems.append((f"{where}.rings.{direction}", "missing"))
            walks[direction] = None
        else:
            walks[direction] = check_ring(ring, f"{where}.rings.{direction}", problems)

    handles = set()
    for _i, g in enumerate(saved.gpadls):
        gw = f"{where}.gpadls[handle={g.handle}]"
        if g.handle in handles:
            problems.append((gw, "duplicate GPADL handle"))
        handles.add(g.handle)
        if g.handle >= ctx.next_gpadl_handle:
            problems.append((gw, f"handle not below next_gpadl_handle {ctx.next_gpadl_handle}"))
        if g.byte_offset >= PAGE_SIZE or not g.pfns or len(g.pfns) != pfn_count(
                g.byte_offset, g.byte_length):
            problems.append((gw, f"{len(g.pfns)} PFNs for {g.byte_length} bytes at offset "
                             f"{g.byte_offset}"))

    in_ring_at: dict[int, object] = {}
    awaiting: set[int] = set()
    seen: set[tuple[bool, int]] = set()
    for _i, record in enumerate(saved.packets):
        p = record.lib_buf
        completion = str(p.type) == "completion"
        pw = f"{where}.packets[{'completion' if completion else 'txid'}={p.transaction_id}]"
        key = (completion, p.transaction_id)
        if key in seen:
            problems.append((pw, "duplicate transaction id"))
        seen.add(key)
        if not completion and not 0 < p.transaction_id < ctx.next_transaction_id:
            problems.append((pw, f"transaction id not below next_transaction_id "
                             f"{ctx.next_transaction_id}"))
        if len(p.payload) > ctx.max_packet_size:
            problems.append((f"{pw}.payload", f"{len(p.payload)} bytes exceed max packet size "
                             f"{ctx.max_packet_size}"))
        if p.send_flags & ~0x7:
            problems.append((f"{pw}.send_flags", f"unknown send flags {p.send_flags:#x}"))
        check_external(p.external, pw, saved, str(p.type), problems)
        pstate = str(p.state)
        if pstate in ("in_ring", "awaiting_completion") and state not in OPENED_STATES:
            problems.append((f"{pw}.state", f"{pstate} on a channel that was never opened"))
        if pstate in ("in_ring", "awaiting_completion") and not p.send_flags & 0x1:
            problems.append((f"{pw}.state", f"{pstate} but no completion was requested"))
        if completion and pstate != "backlog":
            problems.append((f"{pw}.state", "a queued completion can only be in the backlog"))
        if pstate == "in_ring":
            in_ring_at[p.ring_offset] = p
        elif pstate == "awaiting_completion":
            awaiting.add(p.transaction_id)

    outgoing = walks.get("outgoing")
    if outgoing is not None:
        wire_at = {w.offset: w for w in outgoing}
        for offset, p in in_ring_at.items():
            wire = wire_at.get(offset)
            if wire is None or wire.transaction_id != p.transaction_id:
                problems.append((f"{where}.packets[txid={p.transaction_id}].ring_offset",
                                 f"no packet with this transaction id at ring offset {offset}"))
        for wire in outgoing:
            if wire.flags & 1 and wire.type != PacketType.COMPLETION \
                    and wire.offset not in in_ring_at:
                problems.append((f"{where}.rings.outgoing.data@{wire.offset}",
                                 f"packet txid={wire.transaction_id} requests completion but "
                                 "no packet object is in the ring for it"))
    incoming_walk = walks.get("incoming")
    if incoming_walk is not None:
        for wire in incoming_walk:
            if wire.type == PacketType.COMPLETION and wire.transaction_id not in awaiting:
                problems.append((f"{where}.rings.incoming.data@{wire.offset}",
                                 f"completion for unknown transaction {wire.transaction_id}"))

    numbers: set[int] = set()
    for entry in saved.incoming:
        iw = f"{where}.pending_incoming[number={entry.number}]"
        if entry.number in numbers or not 0 < entry.number < ctx.next_incoming_number:
            problems.append((iw, "duplicate or out-of-range arrival number"))
        numbers.add(entry.number)
        if entry.flags & ~1:
            problems.append((f"{iw}.flags", f"unknown flag bits {entry.flags & ~1:#x}"))
        check_external_shape(entry.external, iw, str(entry.type), problems)

    end = saved.end
    if end is None:
        problems.append((f"{where}.channel_end", "missing"))
    else:
        for name, actual in (("gpadl_count", len(saved.gpadls)),
                             ("packet_count", len(saved.packets)),
                             ("incoming_count", len(saved.incoming))):
            if getattr(end, name) != actual:
                problems.append((f"{where}.channel_end.{name}",
                                 f"says {getattr(end, name)}, the channel has {actual}"))
    return problems
