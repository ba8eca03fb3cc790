"""A saved server channel's checks, fed its parts in blob order (`ChannelCheck`): by
validate's lean read as they stream past, by RestoreFromBuffer as it stages them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmbtool.invariants.external import (
    EXTERNAL_TYPES,
    check_external,
    check_external_shape,
)
from vmbtool.invariants.problems import Problem, Problems
from vmbtool.invariants.rings import RingIndex, check_ring
from vmbtool.sim.config import MAX_FRIENDLY_NAME, ServerState
from vmbtool.sim.packet import KNOWN_SEND_FLAGS, SendFlags
from vmbtool.sim.wire import KNOWN_DESCRIPTOR_FLAGS, PAGE_SIZE, pfn_count

OPENED_STATES = {ServerState.STOPPED, ServerState.PAUSED, ServerState.ACTIVE}
# the flag as a plain int: `int & IntFlag` runs enum's Python-level operator, per packet
WAIT_FOR_COMPLETION = int(SendFlags.WAIT_FOR_COMPLETION)


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
        # the context's fields each packet is checked against (a parsed context's fields
        # read as attributes through a Python-level call: not once a packet)
        self.next_transaction_id = self.max_packet_size = 0
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
        self.next_transaction_id, self.max_packet_size = (ctx.next_transaction_id,
                                                          ctx.max_packet_size)
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
        """One packet's record, parsed (`packet_fields` takes a scanned one's fields)."""
        p = record["lib_buf"]
        self.packet_fields(p["transaction_id"], p["type"], p["state"], p["send_flags"],
                           p["ring_offset"], len(p["payload"]), p["external"])

    def packet_fields(self, txid: int, ptype: Any, pstate: Any, send_flags: int,
                      ring_offset: int, payload_length: int, external: Any) -> None:
        if not self.rings_done:
            self._rings_checked()
        self.packet_count += 1
        if self.dead:
            return
        completion = ptype == "completion"
        key = txid << 1 | completion
        in_flight = pstate == "in_ring" or pstate == "awaiting_completion"
        # the usual packet passes each test below at once: its field path is written
        # only for a problem
        if key in self.seen or (not completion and not 0 < txid < self.next_transaction_id) \
                or payload_length > self.max_packet_size or send_flags & ~KNOWN_SEND_FLAGS \
                or external["kind"] != "none" or ptype in EXTERNAL_TYPES \
                or (in_flight and (self.state not in OPENED_STATES
                                   or not send_flags & WAIT_FOR_COMPLETION)) \
                or (completion and pstate != "backlog"):
            self._packet_problems(txid, str(ptype), str(pstate), send_flags, payload_length,
                                  external, key)
        self.seen.add(key)
        if pstate == "in_ring":
            outgoing = self.rings.get("outgoing")
            if outgoing is not None:
                i = outgoing.find(ring_offset)
                if i < 0 or outgoing.txids[i] != txid:
                    self.problems.append((f"{self.where}.packets[txid={txid}].ring_offset",
                                          "no packet with this transaction id at ring "
                                          f"offset {ring_offset}"))
                else:
                    outgoing.kinds[i] |= RingIndex.CLAIMED
        elif pstate == "awaiting_completion":
            self.awaiting.add(txid)

    def _packet_problems(self, txid: int, ptype: str, pstate: str, send_flags: int,
                         payload_length: int, external: Any, key: int) -> None:
        """Each problem of one packet's own fields, with its field path."""
        problems, ctx = self.problems, self.ctx
        completion = ptype == "completion"
        pw = f"{self.where}.packets[{'completion' if completion else 'txid'}={txid}]"
        if key in self.seen:
            self.duplicates += 1
            problems.append((pw, f"duplicate transaction id {txid}"))
        if not completion and not 0 < txid < ctx.next_transaction_id:
            problems.append((pw, f"transaction id not below next_transaction_id "
                             f"{ctx.next_transaction_id}"))
        if payload_length > ctx.max_packet_size:
            problems.append((f"{pw}.payload", f"{payload_length} bytes exceed max packet "
                             f"size {ctx.max_packet_size}"))
        if send_flags & ~KNOWN_SEND_FLAGS:
            problems.append((f"{pw}.send_flags", f"unknown send flags {send_flags:#x}"))
        check_external(external, pw, ctx, self.gpadls, ptype, problems)
        in_flight = pstate in ("in_ring", "awaiting_completion")
        if in_flight and self.state not in OPENED_STATES:
            problems.append((f"{pw}.state", f"{pstate} on a channel that was never opened"))
        if in_flight and not send_flags & WAIT_FOR_COMPLETION:
            problems.append((f"{pw}.state", f"{pstate} but no completion was requested"))
        if completion and pstate != "backlog":
            problems.append((f"{pw}.state", "a queued completion can only be in the backlog"))

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
        next_number = self.ctx.next_incoming_number if not self.dead else 0
        for entry in entries:
            count += 1
            if self.dead:
                continue
            number, flags, external = entry["number"], entry["flags"], entry["external"]
            # the usual entry passes each test at once: its field path is written only
            # for a problem (external data of kind "none" has no shape to get wrong)
            if number in numbers or not 0 < number < next_number or \
                    flags & ~KNOWN_DESCRIPTOR_FLAGS or external["kind"] != "none":
                iw = f"{self.where}.pending_incoming[number={number}]"
                if number in numbers or not 0 < number < next_number:
                    self.problems.append((iw, "duplicate or out-of-range arrival number"))
                if flags & ~KNOWN_DESCRIPTOR_FLAGS:
                    self.problems.append((f"{iw}.flags", "unknown flag bits "
                                          f"{flags & ~KNOWN_DESCRIPTOR_FLAGS:#x}"))
                check_external_shape(external, iw, str(entry["type"]), self.problems)
            numbers.add(number)
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

