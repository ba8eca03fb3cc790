"""Random interleavings of sends, polls, completions, pauses on a small ring (DOMAIN §2, §5).

A model of what the VSP sent and what the VSC saw is kept beside the simulated channel;
after every step the channel must agree with it: each transaction delivered once and in
order, retired at most once, every packet object in use accounted for, ring indices legal.
"""

from __future__ import annotations

import struct
from collections import Counter
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vmbtool.sim import IncomingPacket, PacketState, PacketType, SendFlags, VmbPacket, VmBus
from vmbtool.status import NtStatus

IFACE = UUID("3c1f6b1e-8a2d-4c55-9e7f-0a1b2c3d4e5f")
INSTANCE = UUID("00000000-0000-4000-8000-000000000001")
OK = NtStatus.SUCCESS
TXID = struct.Struct("<Q")


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        bus = VmBus()
        self.server = bus.allocate_server_channel()
        self.client = bus.allocate_client_channel()
        for channel, process in ((self.server, self.host_process),
                                 (self.client, self.guest_process)):
            assert channel.init_set_target_interface_id(IFACE, INSTANCE) == OK
            assert channel.init_set_process_packet_callbacks(process) == OK
        assert self.client.init_set_ring_buffer_page_counts(1, 1) == OK
        for channel in (self.server, self.client):
            assert channel.enable() == OK
            assert channel.start() == OK
        self.sent: list[int] = []  # transaction ids, in send order
        self.wants: dict[int, bool] = {}  # txid -> completion requested
        self.delivered: list[int] = []  # what the client's process-packet saw, in order
        self.retired: Counter[int] = Counter()  # completion routine calls per txid
        self.completed: set[int] = set()  # txids the client called packet_complete for
        self.server_paused = False

    # -- callbacks -----------------------------------------------------------------------
    def host_process(self, channel, incoming: IncomingPacket) -> None:
        raise AssertionError(f"the client never sends requests, got {incoming!r}")

    def guest_process(self, channel, incoming: IncomingPacket) -> None:
        assert incoming.payload[:8] == TXID.pack(incoming.transaction_id)
        assert incoming.wants_completion == self.wants[incoming.transaction_id]
        self.delivered.append(incoming.transaction_id)

    def retire(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        txid = packet.transaction_id
        assert status == OK
        if self.wants[txid]:
            assert payload[:8] == TXID.pack(txid), "a completion retired the wrong packet"
        else:
            assert payload == b""
        self.retired[txid] += 1

    # -- rules -----------------------------------------------------------------------------
    @rule(wait=st.booleans(), size=st.integers(0, 1500))
    def server_send(self, wait: bool, size: int) -> None:
        packet = self.server.packet_allocate()
        assert packet is not None
        txid = packet.transaction_id
        assert txid not in self.wants
        packet.set_completion_routine("retire", self.retire)
        self.wants[txid] = wait
        had_backlog = bool(self.server.backlog)
        status = self.server.packet_send(
            packet, TXID.pack(txid) + bytes(size),
            SendFlags.WAIT_FOR_COMPLETION if wait else 0)
        if self.server_paused:
            assert status == NtStatus.INVALID_DEVICE_STATE
            assert self.server.packet_free(packet) == OK
            return
        self.sent.append(txid)
        if had_backlog:
            assert status == NtStatus.PENDING  # nobody overtakes the backlog
        assert status in (OK, NtStatus.PENDING)
        assert (packet.state == PacketState.BACKLOG) == (status == NtStatus.PENDING)

    @rule(budget=st.integers(0, 4))
    def client_poll(self, budget: int) -> None:
        handled = self.client.poll(budget=budget)
        assert 0 <= handled <= budget
        if not self.client.started:
            assert handled == 0

    @rule()
    def client_poll_all(self) -> None:
        self.client.poll()

    @precondition(lambda self: self.client.pending_incoming)
    @rule(pick=st.integers(0, 1000), extra=st.integers(0, 600))
    def client_complete(self, pick: int, extra: int) -> None:
        pending = list(self.client.pending_incoming.values())
        incoming = pending[pick % len(pending)]
        txid = incoming.transaction_id
        assert txid not in self.completed
        assert self.client.packet_complete(incoming, TXID.pack(txid) + bytes(extra)) == OK
        self.completed.add(txid)

    @precondition(lambda self: self.client.pending_incoming)
    @rule()
    def client_complete_newest(self) -> None:
        """Out of order on purpose: the newest pending packet first."""
        incoming = list(self.client.pending_incoming.values())[-1]
        assert self.client.packet_complete(incoming, TXID.pack(incoming.transaction_id)) == OK
        self.completed.add(incoming.transaction_id)

    @rule()
    def server_poll(self) -> None:
        handled = self.server.poll()
        if self.server_paused:
            assert handled == 0

    @precondition(lambda self: not self.server_paused)
    @rule()
    def server_pause(self) -> None:
        assert self.server.pause() == OK  # the server never has incoming requests pending
        self.server_paused = True

    @precondition(lambda self: self.server_paused)
    @rule()
    def server_start(self) -> None:
        assert self.server.start() == OK
        self.server_paused = False

    @precondition(lambda self: self.client.started)
    @rule()
    def client_pause(self) -> None:
        expected = NtStatus.PENDING if self.client.pending_incoming else OK
        assert self.client.pause() == expected
        assert self.client.paused == (expected == OK)

    @precondition(lambda self: self.client.paused)
    @rule()
    def client_start(self) -> None:
        assert self.client.start() == OK

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def ring_indices_are_legal(self) -> None:
        for ring in (self.server.outgoing_ring, self.server.incoming_ring):
            for index in (ring.write_index, ring.read_index):
                assert index % 8 == 0 and 0 <= index < ring.data_size
            assert ring.used_bytes < ring.data_size  # never completely full

    @invariant()
    def delivered_once_and_in_send_order(self) -> None:
        assert self.delivered == self.sent[: len(self.delivered)]

    @invariant()
    def retired_at_most_once(self) -> None:
        assert all(count == 1 for count in self.retired.values()), self.retired
        assert set(self.retired) <= set(self.sent)
        for txid in self.retired:
            if self.wants[txid]:
                assert txid in self.completed  # retired only by its own completion

    @invariant()
    def packets_in_use_are_accounted_for(self) -> None:
        server = self.server
        backlog = [p.transaction_id for p in server.backlog]
        delivered = set(self.delivered)
        # the backlog holds the newest sends, in order
        assert backlog == self.sent[len(self.sent) - len(backlog):]
        states = Counter(p.state for p in server.packets.values())
        assert states[PacketState.BACKLOG] == len(backlog)
        assert (states[PacketState.BACKLOG] + states[PacketState.IN_RING]
                + states[PacketState.AWAITING_COMPLETION]) == len(server.packets)
        assert len(server.packets_in_use()) == len(server.packets)
        assert len(server.packets) == len(self.sent) - len(self.retired)
        for txid in self.sent:
            if txid in self.retired:
                assert txid not in server.packets
                continue
            state = server.packets[txid].state
            if txid in backlog:
                assert state == PacketState.BACKLOG
            elif txid in delivered:
                assert self.wants[txid] and state == PacketState.AWAITING_COMPLETION
            else:
                assert self.wants[txid] and state == PacketState.IN_RING
        # what the client has not read yet is exactly what left the backlog, in order
        in_ring = [w.transaction_id for w in server.outgoing_ring.packets()]
        assert in_ring == [t for t in self.sent if t not in delivered and t not in backlog]

    @invariant()
    def completions_are_in_flight_or_done(self) -> None:
        pending = [p.transaction_id for p in self.client.pending_incoming.values()]
        assert pending == [t for t in self.delivered if t not in self.completed]
        wire = self.client.outgoing_ring.packets()
        assert all(w.type == PacketType.COMPLETION for w in wire)
        queued = [w.transaction_id for w in wire] + [p.transaction_id
                                                     for p in self.client.backlog]
        awaiting = [t for t in self.delivered
                    if t in self.completed and self.wants[t] and t not in self.retired]
        assert sorted(queued) == sorted(awaiting)

    def teardown(self) -> None:
        """Unpause, drain everything: all was delivered, every completion came back."""
        if self.server_paused:
            assert self.server.start() == OK
        for _ in range(len(self.sent) + 10):
            self.client.poll()
            for incoming in list(self.client.pending_incoming.values()):
                assert self.client.packet_complete(
                    incoming, TXID.pack(incoming.transaction_id)) == OK
                self.completed.add(incoming.transaction_id)
            if self.client.paused:
                assert self.client.start() == OK
            self.server.poll()
            if not (self.server.packets or self.server.backlog or self.client.backlog
                    or self.client.pending_incoming):
                break
        assert self.delivered == self.sent
        assert set(self.retired) == set(self.sent)
        assert all(count == 1 for count in self.retired.values())
        assert self.server.packets == {} and not self.server.backlog
        assert self.server.outgoing_ring.is_empty and self.client.outgoing_ring.is_empty


ChannelMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None)
TestChannelInterleavings = ChannelMachine.TestCase
