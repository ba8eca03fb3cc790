"""What both endpoints of a channel share (DOMAIN.md §2): the life cycle, the rings,
packet objects sent through the outgoing ring or its backlog, incoming packets handed
to process-packet and completed, and the counters a channel keeps.

Calls return an NtStatus as KMCL does; nothing here raises for a caller's mistake.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmbtool.sim.config import ClientFlags, Role, ServerFlags
from vmbtool.sim.initcalls import ChannelInit
from vmbtool.sim.packet import (
    KNOWN_SEND_FLAGS,
    IncomingPacket,
    PacketState,
    VmbPacket,
)
from vmbtool.sim.ring import RingBuffer, RingFull
from vmbtool.sim.wire import ExternalData, PacketType, WirePacket
from vmbtool.status import NtStatus

if TYPE_CHECKING:
    from vmbtool.sim.bus import Connection, VmBus

# (bound once: on Python 3.11 each `PacketState.BACKLOG` runs EnumType's __getattr__ hook)
_BACKLOG = PacketState.BACKLOG


@dataclass
class ChannelStats:
    """Counters a channel keeps while it runs (saved from format 1.1 on).

    backlog_packet_steps is the time packets spent in the backlog, in scenario steps:
    each `tick` adds the backlog's length, so divided by backlog_entries it is the mean
    wait."""

    packets_sent: int = 0  # packet objects written into the outgoing ring
    packets_completed: int = 0  # packet objects retired: completed, or done in the ring
    bytes_sent: int = 0  # ring bytes written: descriptors, payloads, trailers
    backlog_entries: int = 0  # packets (completions included) that had to wait
    backlog_packet_steps: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Channel(ChannelInit):
    """What both endpoints share: init calls (`ChannelInit`), life cycle, packets, rings."""

    def __init__(self, bus: VmBus) -> None:
        super().__init__(bus)
        self.connection: Connection | None = None
        self.enabled = False
        self.opened = False
        self.started = False
        self.paused = False
        self.pausing = False
        self.next_transaction_id = 1
        self.packets: dict[int, VmbPacket] = {}  # txid -> packet object in use
        self.backlog: deque[VmbPacket] = deque()
        # what we wrote into the outgoing ring and the peer has not read yet, in order
        self.in_ring: deque[tuple[int, VmbPacket | None]] = deque()
        self.pending_incoming: dict[int, IncomingPacket] = {}  # keyed by arrival number
        self.next_incoming_number = 1
        self.signals_received = 0
        self.unknown_completions = 0
        self.stats = ChannelStats()

    # -- life cycle --------------------------------------------------------------
    @property
    def is_pipe(self) -> bool:
        bit = ServerFlags.OFFER_AS_PIPE if self.role == Role.SERVER else ClientFlags.PIPE_MODE
        return bool(self.config.flags & bit)

    @property
    def io_running(self) -> bool:
        """Sends and backlog drain run while active, and while a pause waits."""
        return self.opened and (self.started or self.pausing)

    def _fire(self, callback: Callable[[Any], None] | None) -> None:
        if callback is not None:
            callback(self)

    def _run_started(self) -> None:
        """KMCL: Started callback, then the incoming queue runs, then PostStarted."""
        self._fire(self.callbacks.started)
        self.flush_backlog()
        self.poll()
        self._fire(self.callbacks.post_started)

    def start(self) -> NtStatus:
        if self.cleaned_up or not self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        if self.started or self.pausing:
            return NtStatus.INVALID_DEVICE_STATE
        self.started, self.paused = True, False
        if self.opened:
            self._run_started()
        return NtStatus.SUCCESS

    def pause(self) -> NtStatus:
        """Stop new I/O; waits (STATUS_PENDING) until every incoming packet is completed."""
        if self.cleaned_up or not self.started or not self.opened:
            return NtStatus.INVALID_DEVICE_STATE
        self.pausing = True
        self.started = False
        self._fire(self.callbacks.suspend)  # KMCL: the suspend callback comes first
        if self.pending_incoming:
            return NtStatus.PENDING
        self._finish_pause()
        return NtStatus.SUCCESS

    def _finish_pause(self) -> None:
        self.pausing = False
        self.paused = True

    def cleanup(self) -> NtStatus:
        if self.cleaned_up:
            return NtStatus.INVALID_PARAMETER_1
        if self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        self.cleaned_up = True
        self.packets.clear()
        self.backlog.clear()
        return NtStatus.SUCCESS

    def _on_connected(self, connection: Connection) -> None:
        self.connection = connection
        self.opened = True
        self._fire(self.callbacks.opened)
        if self.started:
            self._run_started()

    def _on_disconnected(self) -> None:
        # start/pause are orthogonal to open/closed: a started server stays started
        self.opened = False
        self.paused = self.pausing = False
        self.in_ring.clear()
        self.connection = None
        self._fire(self.callbacks.closed)

    # -- rings -----------------------------------------------------------------
    @property
    def outgoing_ring(self) -> RingBuffer:
        assert self.connection is not None
        return self.connection.outgoing(self)

    @property
    def incoming_ring(self) -> RingBuffer:
        assert self.connection is not None
        return self.connection.incoming(self)

    @property
    def peer(self) -> Channel:
        assert self.connection is not None
        return self.connection.peer(self)

    def _write(self, ptype: int, flags: int, txid: int, payload: bytes,
               external: ExternalData | None, packet: VmbPacket | None) -> bool:
        ring = self.outgoing_ring
        was_empty = ring.is_empty
        try:
            offset = ring.write_packet(ptype, flags, txid, payload, external)
        except RingFull:
            return False
        self.in_ring.append((offset, packet))
        self.stats.bytes_sent += (ring.write_index - offset) % ring.data_size
        if packet is not None:
            packet.ring_offset = offset
        if was_empty and ring.reader_needs_signal:
            self.peer.signal()
        return True

    def signal(self) -> None:
        """The opposite endpoint signalled: data arrived or ring space freed."""
        self.signals_received += 1

    def _on_ring_space(self) -> None:
        """The reader freed our pending send size: the backlog can move."""
        self.signals_received += 1
        if self.io_running:
            self.flush_backlog()

    def _on_packet_consumed(self, offset: int) -> None:
        """The peer read the packet we wrote at `offset` (sim bookkeeping)."""
        expected, packet = self.in_ring.popleft()
        assert expected == offset, (expected, offset)
        if packet is not None and packet.state == PacketState.IN_RING:
            packet.state = PacketState.AWAITING_COMPLETION

    # -- packet objects ----------------------------------------------------------
    def packet_allocate(self) -> VmbPacket | None:
        """VmbPacketAllocate: a packet object in use until its transaction ends."""
        if self.cleaned_up or not self.enabled:
            return None
        txid = self.next_transaction_id
        while txid in self.packets:  # during a restore, saved ids are being put back
            txid += 1
        self.next_transaction_id = (txid % 0xFFFF_FFFF_FFFF_FFFF) + 1
        packet = VmbPacket(channel=self, transaction_id=txid)
        self.packets[txid] = packet
        return packet

    def packet_free(self, packet: VmbPacket) -> NtStatus:
        if self.packets.get(packet.transaction_id) is not packet:
            return NtStatus.INVALID_PARAMETER_1
        if packet.state != PacketState.ALLOCATED:
            return NtStatus.INVALID_DEVICE_STATE  # the library frees it on completion
        del self.packets[packet.transaction_id]
        packet.state = PacketState.FREE
        return NtStatus.SUCCESS

    def packet_send(
        self, packet: VmbPacket, payload: bytes, flags: int = 0,
        external: ExternalData | None = None,
    ) -> NtStatus:
        """VmbPacketSend / VmbPacketSendWithExternalPfns.

        SUCCESS when the packet is in the ring, PENDING when it waits in the backlog.
        """
        if self.packets.get(packet.transaction_id) is not packet:
            return NtStatus.INVALID_PARAMETER_1
        if packet.state != PacketState.ALLOCATED:
            return NtStatus.INVALID_PARAMETER_1
        if len(payload) > self.config.max_packet_size:
            return NtStatus.INVALID_BUFFER_SIZE
        if flags < 0 or flags & ~KNOWN_SEND_FLAGS:
            return NtStatus.INVALID_PARAMETER_3
        if external is not None:
            if external.total_bytes > self.config.max_external_data_size:
                return NtStatus.INVALID_PARAMETER_2
            if external.pfn_total > self.config.max_chain_length:
                return NtStatus.INVALID_PARAMETER_2
        if self.connection is None or not self.io_running:
            return NtStatus.INVALID_DEVICE_STATE
        packet.payload = bytes(payload)
        packet.send_flags = flags
        packet.external = external
        packet.type = external.kind if external is not None else PacketType.INBAND
        if not self.backlog and self._write_packet_object(packet):
            return NtStatus.SUCCESS
        packet.state = PacketState.BACKLOG
        self.backlog.append(packet)
        self.stats.backlog_entries += 1
        return NtStatus.PENDING

    def _write_packet_object(self, packet: VmbPacket) -> bool:
        if packet.type == PacketType.COMPLETION:
            ok = self._write(PacketType.COMPLETION, 0, packet.transaction_id,
                             packet.payload, None, None)
            if ok:
                self._retire(packet, NtStatus.SUCCESS, b"", queued_completion=True)
            return ok
        if not self._write(packet.type, packet.wire_flags, packet.transaction_id,
                           packet.payload, packet.external, packet):
            return False
        packet.state = PacketState.IN_RING
        self.stats.packets_sent += 1
        if not packet.wants_completion:
            # DOMAIN §2: without wait-for-completion a packet is complete in the ring
            self._retire(packet, NtStatus.SUCCESS, b"")
        return True

    def flush_backlog(self) -> int:
        """Move backlogged packets into the ring, in order, while they fit."""
        moved = 0
        if self.connection is None:
            return 0
        while self.backlog and self.io_running:
            if not self._write_packet_object(self.backlog[0]):
                break
            self.backlog.popleft()
            moved += 1
        return moved

    def _retire(self, packet: VmbPacket, status: NtStatus, payload: bytes,
                queued_completion: bool = False) -> None:
        if queued_completion:
            packet.state = PacketState.FREE
            return
        self.packets.pop(packet.transaction_id, None)
        packet.state = PacketState.FREE
        self.stats.packets_completed += 1
        if packet.completion_routine is not None:
            packet.completion_routine(packet, status, payload)

    # -- incoming side -----------------------------------------------------------
    def poll(self, budget: int | None = None) -> int:
        """Run the incoming queue: read up to `budget` packets and dispatch them."""
        if self.connection is None or not self.started or not self.opened:
            return 0
        self.flush_backlog()
        handled = 0
        ring = self.incoming_ring
        while (budget is None or handled < budget) and self.started:
            wire = ring.read_packet()
            if wire is None:
                break
            handled += 1
            self.peer._on_packet_consumed(wire.offset)
            if ring.writer_needs_signal:
                self.peer._on_ring_space()
            self._dispatch(wire)
        if handled:
            self._fire(self.processing_complete)
        return handled

    def _dispatch(self, wire: WirePacket) -> None:
        if wire.type == PacketType.COMPLETION:
            packet = self.packets.get(wire.transaction_id)
            if packet is None or packet.state != PacketState.AWAITING_COMPLETION:
                self.unknown_completions += 1  # a completion for no transaction we sent
                return
            self._retire(packet, NtStatus.SUCCESS, wire.payload)
            return
        incoming = IncomingPacket(
            wire.transaction_id, wire.type, wire.flags, wire.payload, wire.external
        )
        if not self.is_pipe:
            incoming.number = self.next_incoming_number
            self.next_incoming_number += 1
            self.pending_incoming[incoming.number] = incoming
        if self.process_packet is not None:
            self.process_packet(self, incoming)
        if self.is_pipe:
            incoming.completed = True  # pipe-mode datagrams carry no transaction

    def packet_complete(self, incoming: IncomingPacket, payload: bytes = b"") -> NtStatus:
        """VmbChannelPacketComplete: end an incoming packet, sending its completion."""
        if self.pending_incoming.get(incoming.number) is not incoming:
            return NtStatus.INVALID_PARAMETER_1
        if len(payload) > self.config.max_packet_size:
            return NtStatus.INVALID_BUFFER_SIZE
        del self.pending_incoming[incoming.number]
        incoming.completed = True
        if incoming.wants_completion and self.connection is not None:
            queued = VmbPacket(channel=self, transaction_id=incoming.transaction_id,
                               type=PacketType.COMPLETION, payload=bytes(payload))
            if self.backlog or not self.io_running or not self._write_packet_object(queued):
                queued.state = PacketState.BACKLOG
                self.backlog.append(queued)
                self.stats.backlog_entries += 1
        if self.pausing and not self.pending_incoming:
            self._finish_pause()
        return NtStatus.SUCCESS

    def tick(self) -> None:
        """One scenario step went by: the backlog's packets waited one step more."""
        self.stats.backlog_packet_steps += len(self.backlog)

    # -- inspection ----------------------------------------------------------------
    def packets_in_use(self) -> list[VmbPacket]:
        """Canonical order: sent or allocated packets by txid, then the backlog in order."""
        settled = sorted(
            (p for p in self.packets.values() if p.state != _BACKLOG),
            key=lambda p: p.transaction_id,
        )
        return settled + list(self.backlog)

