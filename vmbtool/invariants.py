"""Semantic checks on a saved channel: what parses and checksums but cannot be true.

Restore refuses a channel with any problem before it changes anything; validate
reports every problem with its field path.
"""

from __future__ import annotations

import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from vmbtool.sim.config import MAX_FRIENDLY_NAME, MAX_RING_PAGES, ClientState, ServerState
from vmbtool.sim.wire import (
    DESCRIPTOR_SIZE,
    FLAG_COMPLETION_REQUESTED,
    PAGE_SIZE,
    TRAILER_SIZE,
    PacketType,
    WireError,
    WirePacket,
    packet_length,
    pfn_count,
    wire_packet,
)
from vmbtool.state import SavedChannel, external_from

Problem = tuple[str, str]  # (field path, why)
MAX_PROBLEMS = 1000  # a channel's problems kept; the rest are counted
WALK_BLOCK = 256 << 10  # a streamed ring walk holds a few blocks of this size


class Problems(list):
    """A channel's problems: the first MAX_PROBLEMS, and a count of the rest (a lying
    channel of 200,000 packets must not cost 200,000 messages)."""

    dropped = 0

    def append(self, problem: Problem) -> None:
        if len(self) < MAX_PROBLEMS:
            super().append(problem)
        else:
            self.dropped += 1

    def extend(self, problems) -> None:
        for problem in problems:
            self.append(problem)
        self.dropped += getattr(problems, "dropped", 0)

    @property
    def total(self) -> int:
        return len(self) + self.dropped
OPENED_STATES = {ServerState.STOPPED, ServerState.PAUSED, ServerState.ACTIVE}


def check_ring_control(state, where: str, problems: list[Problem]) -> bool:
    """A ring's size and indices (DOMAIN §5): False when its packets cannot be walked."""
    pages = state.data_pages
    if not 1 <= pages <= MAX_RING_PAGES:
        problems.append((f"{where}.data_pages", f"{pages} pages, need 1..{MAX_RING_PAGES}"))
        return False
    size = pages * PAGE_SIZE
    for name in ("write_index", "read_index"):
        value = getattr(state, name)
        if value >= size:
            problems.append((f"{where}.{name}", f"{value} is not below the data size {size}"))
            return False
        if value % 8:
            problems.append((f"{where}.{name}", f"{value} is not a multiple of 8"))
            return False
    return True


def used_bytes(blocks: Iterable[bytes | memoryview], read: int, write: int,
               size: int) -> Iterator[bytes | memoryview]:
    """The bytes between the read and the write index, in reading order, from the data
    area's blocks in storage order. Only the part before the read index of a wrapped
    ring waits for its turn, spooled to a temporary file past 256 KiB; the rest passes
    through."""
    at, wrapped = 0, tempfile.SpooledTemporaryFile(max_size=WALK_BLOCK)
    try:
        for block in blocks:
            start, end = at, at + len(block)
            at = end
            view = memoryview(block)
            if read <= write:  # [read, write)
                lo, hi = max(start, read), min(end, write)
                if lo < hi:
                    yield view[lo - start:hi - start]
            else:  # [read, size) then [0, write)
                lo, hi = start, min(end, write)
                if lo < hi:
                    wrapped.write(view[lo - start:hi - start])
                lo = max(start, read)
                if lo < end:
                    yield view[lo - start:]
        wrapped.seek(0)
        while block := wrapped.read(WALK_BLOCK):
            yield block
    finally:  # also when the walk stops early: the generator is closed
        wrapped.close()


def walk_ring(pieces: Iterable[bytes | memoryview], read: int, used: int,
              size: int) -> Iterator[WirePacket]:
    """Every packet between the read and the write index (DOMAIN §5 reader rules), from
    the used bytes in reading order; holds one packet (at most 512 KiB) at a time."""
    it = iter(pieces)
    buf, head, pos = bytearray(), 0, 0  # buf[head] is the used byte at `pos`

    def have(n: int) -> None:
        nonlocal buf, head
        while len(buf) - head < n:
            block = next(it, None)
            if block is None:
                return
            if head > WALK_BLOCK:
                del buf[:head]
                head = 0
            buf += block

    while pos < used:
        offset = (read + pos) % size
        left = used - pos
        try:
            have(min(DESCRIPTOR_SIZE, left))
            length = packet_length(buf[head:head + DESCRIPTOR_SIZE], left)
            have(length + TRAILER_SIZE)
            packet = wire_packet(bytes(buf[head:head + length + TRAILER_SIZE]), offset)
        except WireError as exc:
            raise WireError(f"data@{offset}.{exc.where}", exc.why) from None
        yield packet
        head += packet.total_size
        pos += packet.total_size


class RingIndex:
    """What the channel checks keep of a ring's packets: their offsets, transaction ids
    and kinds in compact arrays (a ring of tiny packets holds 700,000 of them), in
    reading order, which rises from the read index, wraps once, and rises again."""

    COMPLETION_REQUESTED, COMPLETION, CLAIMED = 1, 2, 4

    def __init__(self, read_index: int) -> None:
        self.read_index = read_index
        self.offsets, self.txids, self.kinds = array("I"), array("Q"), bytearray()
        self.wrap = None  # index of the first packet after the wrap

    def add(self, wire: WirePacket) -> None:
        if self.wrap is None and wire.offset < self.read_index:
            self.wrap = len(self.offsets)
        self.offsets.append(wire.offset)
        self.txids.append(wire.transaction_id)
        self.kinds.append((wire.flags & FLAG_COMPLETION_REQUESTED) |
                          (self.COMPLETION if wire.type == PacketType.COMPLETION else 0))

    def find(self, offset: int) -> int:
        """The index of the packet starting at `offset`, or -1."""
        wrap = len(self.offsets) if self.wrap is None else self.wrap
        lo, hi = (0, wrap) if offset >= self.read_index else (wrap, len(self.offsets))
        i = bisect_left(self.offsets, offset, lo, hi)
        return i if i < hi and self.offsets[i] == offset else -1

    def __len__(self) -> int:
        return len(self.offsets)


def check_ring(state, where: str, problems: list[Problem],
               blocks: Iterable[bytes | memoryview] | None = None) -> RingIndex | None:
    """Check one ring's control fields and walk its packets (DOMAIN §5 reader rules).

    `blocks` streams the data area when `state` comes without it."""
    if blocks is None:
        blocks = (state.data,)
    if not check_ring_control(state, where, problems):
        return None
    size = state.data_pages * PAGE_SIZE
    read, write = state.read_index, state.write_index
    index = RingIndex(read)
    try:
        for wire in walk_ring(used_bytes(blocks, read, write, size), read,
                              (write - read) % size, size):
            index.add(wire)
    except WireError as exc:
        problems.append((f"{where}.{exc.where}", exc.why))
        return None
    return index


EXTERNAL_TYPES = ("gpa_direct", "transfer_pages", "data_using_gpadl")


def check_external(external, where: str, ctx: Any, gpadls: dict[int, int], ptype: str,
                   problems: list[Problem]) -> None:
    if external["kind"] == "none":  # most packets: only their type can be wrong
        if ptype in EXTERNAL_TYPES:
            problems.append((f"{where}.external", f"a {ptype} packet without external data"))
        return
    shape: list[Problem] = []
    check_external_shape(external, where, ptype, shape)
    if shape:
        problems.extend(shape)
        return
    data = external_from(external)
    if data is None:
        if ptype in EXTERNAL_TYPES:
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
    length = gpadls.get(data.handle)
    if length is None:
        problems.append((f"{where}.external.handle", f"GPADL {data.handle:#x} does not exist"))
        return
    for i, r in enumerate(data.byte_ranges):
        if r.byte_offset + r.byte_count > length:
            problems.append((f"{where}.external.ranges[{i}]",
                             f"runs past GPADL {data.handle:#x} ({length} bytes)"))


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


def check_guest(guest, where: str) -> Problems:
    """The simulated guest's side of one channel (the scenario chunk's GuestChannel)."""
    problems: Problems = Problems()
    if guest.context.role != "client":
        problems.append((f"{where}.context.role", "a guest channel's context says server"))
    if guest.context.state not in ClientState._value2member_map_:
        problems.append((f"{where}.context.state", f"unknown client state {guest.context.state}"))
    seen: set[int] = set()  # transaction id << 1 | is a queued completion
    for record in guest.packets:
        p = record.lib_buf
        completion = str(p.type) == "completion"
        pw = f"{where}.packets[{'completion' if completion else 'txid'}={p.transaction_id}]"
        if p.transaction_id << 1 | completion in seen:
            problems.append((pw, f"duplicate transaction id {p.transaction_id}"))
        seen.add(p.transaction_id << 1 | completion)
        check_external_shape(p.external, pw, str(p.type), problems)
    numbers: set[int] = set()
    for entry in guest.pending_incoming.packets:
        iw = f"{where}.pending_incoming[number={entry.number}]"
        if entry.number in numbers:
            problems.append((iw, "duplicate arrival number"))
        numbers.add(entry.number)
        check_external_shape(entry.external, iw, str(entry.type), problems)
    return problems


class ChannelCheck:
    """The semantic checks of one saved server channel, fed its parts in blob order
    (context, rings, GPADLs, each packet, pending incoming, channel end) as they are read.

    It keeps only what later parts are checked against: the context, the GPADLs, the
    rings' `RingIndex`es and a set of packet keys, never the packets themselves, so a
    channel of any size is checked in bounded memory. `problems` collects every
    problem with its field path."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: Problems = Problems()
        self.ctx: Any = None
        self.state: ServerState | None = None
        self.dead = False  # a problem that makes the rest meaningless was found
        self.rings: dict[str, RingIndex | None] = {}
        self.rings_done = False
        self.gpadls: dict[int, int] = {}  # handle -> byte length
        self.gpadl_count = 0
        self.packet_count = 0
        self.seen: set[int] = set()  # transaction id << 1 | is a queued completion
        self.duplicates = 0
        self.awaiting: set[int] = set()
        self.incoming_count = 0
        self.wires_done = False

    def context(self, ctx: Any) -> None:
        where, problems = self.where, self.problems
        self.ctx = ctx
        if ctx.role != "server":
            problems.append((f"{where}.context.role", "a server channel's context says client"))
        if ctx.state not in ServerState._value2member_map_:
            problems.append((f"{where}.context.state", f"unknown server state {ctx.state}"))
            self.dead = True
            return
        self.state = ServerState(ctx.state)
        if self.state == ServerState.ACTIVE:
            problems.append((f"{where}.context.state", "saved while active (not paused)"))
        if len(ctx.friendly_name) > MAX_FRIENDLY_NAME:
            problems.append((f"{where}.context.friendly_name",
                             f"longer than {MAX_FRIENDLY_NAME} characters"))
        if ctx.max_packet_size == 0 or ctx.max_chain_length == 0:
            problems.append((f"{where}.context", "max packet size and chain length must be > 0"))

    def ring(self, state: Any, blocks: Iterable[bytes | memoryview] | None = None) -> None:
        direction = str(state.direction)
        if self.dead:
            self.rings[direction] = None
            return
        self.rings[direction] = check_ring(state, f"{self.where}.rings.{direction}",
                                           self.problems, blocks)

    def _rings_checked(self) -> None:
        """Once past the ring chunks: an opened channel has both rings."""
        if self.rings_done:
            return
        self.rings_done = True
        if self.dead:
            return
        present = bool(self.rings)
        for direction in ("incoming", "outgoing"):
            if direction not in self.rings and (self.state in OPENED_STATES or present):
                self.problems.append((f"{self.where}.rings.{direction}", "missing"))

    def gpadl_table(self, gpadls: Iterable[Any]) -> int:
        """The GPADLs, one at a time (only handle and length stay); returns how many."""
        self._rings_checked()
        count = 0
        for g in gpadls:
            count += 1
            if self.dead:
                continue
            gw = f"{self.where}.gpadls[handle={g.handle}]"
            if g.handle in self.gpadls:
                self.problems.append((gw, "duplicate GPADL handle"))
            self.gpadls.setdefault(g.handle, g.byte_length)
            if g.handle >= self.ctx.next_gpadl_handle:
                self.problems.append((gw, f"handle not below next_gpadl_handle "
                                      f"{self.ctx.next_gpadl_handle}"))
            if g.byte_offset >= PAGE_SIZE or not g.pfns or len(g.pfns) != pfn_count(
                    g.byte_offset, g.byte_length):
                self.problems.append((gw, f"{len(g.pfns)} PFNs for {g.byte_length} bytes at "
                                      f"offset {g.byte_offset}"))
        self.gpadl_count = count
        return count

    def packet(self, record: Any) -> None:
        if not self.rings_done:
            self._rings_checked()
        self.packet_count += 1
        if self.dead:
            return
        problems, ctx, p = self.problems, self.ctx, record["lib_buf"]
        txid, ptype, pstate = p["transaction_id"], str(p["type"]), str(p["state"])
        send_flags, payload = p["send_flags"], p["payload"]
        completion = ptype == "completion"
        pw = f"{self.where}.packets[{'completion' if completion else 'txid'}={txid}]"
        key = txid << 1 | completion
        if key in self.seen:
            self.duplicates += 1
            problems.append((pw, f"duplicate transaction id {txid}"))
        self.seen.add(key)
        if not completion and not 0 < txid < ctx.next_transaction_id:
            problems.append((pw, f"transaction id not below next_transaction_id "
                             f"{ctx.next_transaction_id}"))
        if len(payload) > ctx.max_packet_size:
            problems.append((f"{pw}.payload", f"{len(payload)} bytes exceed max packet size "
                             f"{ctx.max_packet_size}"))
        if send_flags & ~0x7:
            problems.append((f"{pw}.send_flags", f"unknown send flags {send_flags:#x}"))
        check_external(p["external"], pw, ctx, self.gpadls, ptype, problems)
        in_flight = pstate in ("in_ring", "awaiting_completion")
        if in_flight and self.state not in OPENED_STATES:
            problems.append((f"{pw}.state", f"{pstate} on a channel that was never opened"))
        if in_flight and not send_flags & 0x1:
            problems.append((f"{pw}.state", f"{pstate} but no completion was requested"))
        if completion and pstate != "backlog":
            problems.append((f"{pw}.state", "a queued completion can only be in the backlog"))
        if pstate == "in_ring":
            outgoing = self.rings.get("outgoing")
            if outgoing is not None:
                offset = p["ring_offset"]
                i = outgoing.find(offset)
                if i < 0 or outgoing.txids[i] != txid:
                    problems.append((f"{self.where}.packets[txid={txid}].ring_offset",
                                     "no packet with this transaction id at ring offset "
                                     f"{offset}"))
                else:
                    outgoing.kinds[i] |= RingIndex.CLAIMED
        elif pstate == "awaiting_completion":
            self.awaiting.add(txid)

    def _wires_checked(self) -> None:
        """Once past the packets: every packet in the rings is accounted for."""
        self._rings_checked()
        if self.wires_done or self.dead:
            return
        self.wires_done = True
        outgoing, incoming = self.rings.get("outgoing"), self.rings.get("incoming")
        where = self.where
        if outgoing is not None:
            for i, kind in enumerate(outgoing.kinds):
                if kind & RingIndex.COMPLETION_REQUESTED and not kind & (
                        RingIndex.COMPLETION | RingIndex.CLAIMED):
                    self.problems.append((
                        f"{where}.rings.outgoing.data@{outgoing.offsets[i]}",
                        f"packet txid={outgoing.txids[i]} requests completion but no "
                        "packet object is in the ring for it"))
        if incoming is not None:
            for i, kind in enumerate(incoming.kinds):
                if kind & RingIndex.COMPLETION and incoming.txids[i] not in self.awaiting:
                    self.problems.append((
                        f"{where}.rings.incoming.data@{incoming.offsets[i]}",
                        f"completion for unknown transaction {incoming.txids[i]}"))

    def pending_incoming(self, entries: Iterable[Any]) -> int:
        """The pending incoming packets, one at a time; returns how many."""
        self._wires_checked()
        numbers: set[int] = set()
        count = 0
        for entry in entries:
            count += 1
            if self.dead:
                continue
            iw = f"{self.where}.pending_incoming[number={entry.number}]"
            if entry.number in numbers or not 0 < entry.number < self.ctx.next_incoming_number:
                self.problems.append((iw, "duplicate or out-of-range arrival number"))
            numbers.add(entry.number)
            if entry.flags & ~1:
                self.problems.append((f"{iw}.flags",
                                      f"unknown flag bits {entry.flags & ~1:#x}"))
            check_external_shape(entry.external, iw, str(entry.type), self.problems)
        self.incoming_count = count
        return count

    def channel_end(self, end: Any) -> list[Problem]:
        """The last part: the counts it declares; returns every problem found."""
        self._wires_checked()
        if self.dead:
            return self.problems
        if end is None:
            self.problems.append((f"{self.where}.channel_end", "missing"))
            return self.problems
        for name, actual in (("gpadl_count", self.gpadl_count),
                             ("packet_count", self.packet_count),
                             ("incoming_count", self.incoming_count)):
            if getattr(end, name) != actual:
                self.problems.append((f"{self.where}.channel_end.{name}",
                                      f"says {getattr(end, name)}, the channel has {actual}"))
        return self.problems


def check_channel(saved: SavedChannel, where: str) -> list[Problem]:
    """Every semantic problem of one saved server channel, read whole."""
    if saved.context is None:
        return [(where, "no channel context chunk")]
    check = ChannelCheck(where)
    check.context(saved.context)
    for direction in ("incoming", "outgoing"):
        if direction in saved.rings:
            check.ring(saved.rings[direction])
    check.gpadl_table(saved.gpadls)
    for record in saved.packets:
        check.packet(record)
    check.pending_incoming(saved.incoming)
    return check.channel_end(saved.end)
