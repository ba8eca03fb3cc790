"""Packet objects through their transactions, the backlog, bad sends, GPADLs (DOMAIN §1-2)."""

from __future__ import annotations

import struct
from uuid import UUID

import pytest

from vmbtool.sim import (
    ByteRange,
    ClientChannel,
    ExternalData,
    GpaRange,
    IncomingPacket,
    PacketState,
    PacketType,
    SendFlags,
    ServerChannel,
    VmbPacket,
    VmBus,
)
from vmbtool.sim.gpadl import FIRST_GPADL_HANDLE
from vmbtool.status import NtStatus

IFACE = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
INSTANCE = UUID("10203040-5060-4708-9090-a0b0c0d0e0f0")
OK = NtStatus.SUCCESS
WAIT = SendFlags.WAIT_FOR_COMPLETION


class Endpoint:
    """Records what one endpoint's process-packet callback and completion routines see."""

    def __init__(self) -> None:
        self.incoming: list[IncomingPacket] = []
        self.retired: list[tuple[int, int, bytes]] = []  # (txid, status, payload)

    def process(self, channel, incoming: IncomingPacket) -> None:
        self.incoming.append(incoming)

    def done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        self.retired.append((packet.transaction_id, status, payload))

    @property
    def txids(self) -> list[int]:
        return [p.transaction_id for p in self.incoming]


def make_pair(ring_pages=(1, 1), max_packet=0x1000, max_external=(0x10000, 32)):
    bus = VmBus()
    host, guest = Endpoint(), Endpoint()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    for channel, who in ((server, host), (client, guest)):
        assert channel.init_set_target_interface_id(IFACE, INSTANCE, 0) == OK
        assert channel.init_set_process_packet_callbacks(who.process) == OK
        assert channel.init_set_maximum_packet_size(max_packet) == OK
        assert channel.init_set_maximum_external_data(*max_external) == OK
    assert client.init_set_ring_buffer_page_counts(*ring_pages) == OK
    for channel in (server, client):
        assert channel.enable() == OK
        assert channel.start() == OK
    return server, client, host, guest


def send(channel, who: Endpoint, payload: bytes, flags: int = 0, external=None,
         expect: NtStatus = OK) -> VmbPacket:
    packet = channel.packet_allocate()
    assert packet is not None
    packet.set_completion_routine("done", who.done)
    assert channel.packet_send(packet, payload, flags, external) == expect
    return packet


# -- one transaction ----------------------------------------------------------------------
def test_packet_without_wait_for_completion_is_retired_once_in_the_ring():
    server, client, host, guest = make_pair()
    packet = send(server, host, b"fire&forget")
    assert host.retired == [(packet.transaction_id, OK, b"")]
    assert packet.state == PacketState.FREE
    assert packet.transaction_id not in server.packets
    (wire,) = server.outgoing_ring.packets()
    assert (wire.type, wire.flags, wire.transaction_id) == (PacketType.INBAND, 0,
                                                            packet.transaction_id)
    # the peer still gets it, and has nothing to complete
    assert client.poll() == 1
    assert guest.txids == [packet.transaction_id]
    assert guest.incoming[0].payload.rstrip(b"\0") == b"fire&forget"
    assert client.packet_complete(guest.incoming[0]) == OK
    assert client.outgoing_ring.is_empty  # no completion packet goes back
    assert host.retired == [(packet.transaction_id, OK, b"")]


def test_packet_with_wait_for_completion_lives_until_the_completion_arrives():
    server, client, host, guest = make_pair()
    packet = send(server, host, b"request!", WAIT)
    assert packet.state == PacketState.IN_RING
    assert server.packets[packet.transaction_id] is packet
    assert host.retired == []
    (wire,) = server.outgoing_ring.packets()
    assert wire.flags == 1  # completion requested

    assert client.poll() == 1
    assert packet.state == PacketState.AWAITING_COMPLETION
    assert server.outgoing_ring.is_empty
    (incoming,) = guest.incoming
    assert incoming.wants_completion and incoming.payload == b"request!"
    assert list(client.pending_incoming.values()) == [incoming]
    assert host.retired == []

    assert client.packet_complete(incoming, b"response") == OK
    assert incoming.completed and client.pending_incoming == {}
    assert client.packet_complete(incoming) == NtStatus.INVALID_PARAMETER_1  # only once
    (completion,) = client.outgoing_ring.packets()
    assert (completion.type, completion.transaction_id) == (PacketType.COMPLETION,
                                                            packet.transaction_id)
    assert packet.state == PacketState.AWAITING_COMPLETION  # until the sender polls
    assert host.retired == []

    assert server.poll() == 1
    assert host.retired == [(packet.transaction_id, OK, b"response")]
    assert packet.state == PacketState.FREE
    assert server.packets == {}
    assert host.incoming == []  # a completion is not handed to process-packet


def test_packet_complete_payload_too_large_is_refused():
    server, client, host, guest = make_pair(max_packet=64)
    send(server, host, b"x", WAIT)
    client.poll()
    (incoming,) = guest.incoming
    assert client.packet_complete(incoming, b"y" * 65) == NtStatus.INVALID_BUFFER_SIZE
    assert incoming.number in client.pending_incoming
    assert client.packet_complete(incoming, b"y" * 64) == OK


# -- backlog --------------------------------------------------------------------------------
# 1000 payload bytes + 16-byte descriptor + 8-byte trailer = 1024 bytes in the ring; a
# 4096-byte ring takes three (the writer needs free > total: 1024 free is not enough).
BIG = 1000


def test_full_ring_forms_a_backlog_that_drains_in_order():
    server, client, host, guest = make_pair()
    sent = [send(server, host, bytes([i]) * BIG, WAIT) for i in range(3)]
    assert [p.state for p in sent] == [PacketState.IN_RING] * 3
    assert server.outgoing_ring.free_bytes == 1024

    backlogged = [send(server, host, bytes([i]) * BIG, WAIT, expect=NtStatus.PENDING)
                  for i in range(3, 6)]
    # a small packet that would fit must still queue behind the backlog
    small = send(server, host, b"small", WAIT, expect=NtStatus.PENDING)
    backlogged.append(small)
    assert [p.state for p in backlogged] == [PacketState.BACKLOG] * 4
    assert list(server.backlog) == backlogged
    assert server.outgoing_ring.pending_send_size == 1024
    assert [w.transaction_id for w in server.outgoing_ring.packets()] == [
        p.transaction_id for p in sent]
    in_use = server.packets_in_use()
    assert in_use == sent + backlogged

    assert client.poll(budget=1) == 1  # frees 1024 bytes: one backlogged packet moves
    assert backlogged[0].state == PacketState.IN_RING
    assert [p.state for p in backlogged[1:]] == [PacketState.BACKLOG] * 3

    client.poll()
    assert not server.backlog
    everything = sent + backlogged
    assert guest.txids == [p.transaction_id for p in everything]
    assert [p.payload[0] for p in guest.incoming[:6]] == list(range(6))
    assert all(p.state == PacketState.AWAITING_COMPLETION for p in everything)


def test_backlogged_packet_without_completion_is_retired_when_it_reaches_the_ring():
    server, client, host, guest = make_pair()
    for _ in range(3):
        send(server, host, b"f" * BIG)
    late = send(server, host, b"l" * BIG, expect=NtStatus.PENDING)
    assert late.state == PacketState.BACKLOG
    assert [t for t, _, _ in host.retired] == [1, 2, 3]
    client.poll(budget=1)
    assert late.state == PacketState.FREE
    assert host.retired[-1] == (late.transaction_id, OK, b"")
    assert server.packets == {}


def test_completions_retire_exactly_the_transaction_they_name():
    server, client, host, guest = make_pair()
    sent = [send(server, host, struct.pack("<Q", i), WAIT) for i in range(5)]
    assert client.poll() == 5
    by_txid = {p.transaction_id: p for p in guest.incoming}
    retired_so_far: list[int] = []
    for index in (3, 0, 4, 2):
        txid = sent[index].transaction_id
        assert client.packet_complete(by_txid[txid], struct.pack("<Q", txid)) == OK
        assert server.poll() == 1
        retired_so_far.append(txid)
        assert [t for t, _, _ in host.retired] == retired_so_far
        assert host.retired[-1] == (txid, OK, struct.pack("<Q", txid))
        assert sent[index].state == PacketState.FREE
        assert set(server.packets) == {p.transaction_id for p in sent} - set(retired_so_far)
    assert server.packets == {sent[1].transaction_id: sent[1]}
    assert sent[1].state == PacketState.AWAITING_COMPLETION
    assert server.unknown_completions == 0


def test_completions_queue_on_the_backlog_when_the_return_ring_is_full():
    server, client, host, guest = make_pair(max_packet=0x1000)
    sent = [send(server, host, b"r", WAIT) for _ in range(5)]
    client.poll()
    incoming = {p.transaction_id: p for p in guest.incoming}
    # completions of 1000 bytes: three fill the client's 4096-byte outgoing ring
    for packet in sent:
        client.packet_complete(incoming[packet.transaction_id], b"c" * BIG)
    assert len(client.backlog) == 2
    assert all(p.type == PacketType.COMPLETION for p in client.backlog)
    assert host.retired == []
    server.poll()
    assert not client.backlog
    assert [t for t, _, _ in host.retired] == [p.transaction_id for p in sent]
    assert all(payload == b"c" * BIG for _, _, payload in host.retired)


# -- bad sends --------------------------------------------------------------------------------
def _gpa(byte_count: int, pfn_base: int = 0x1000, offset: int = 0) -> ExternalData:
    pages = (offset + byte_count + 4095) // 4096
    return ExternalData(PacketType.GPA_DIRECT, gpa_ranges=(
        GpaRange(byte_count, offset, tuple(range(pfn_base, pfn_base + pages))),))


@pytest.mark.parametrize(("flags", "payload", "external", "status"), [
    pytest.param(0x8, b"x", None, NtStatus.INVALID_PARAMETER_3, id="unknown-flag-0x8"),
    pytest.param(0x100, b"x", None, NtStatus.INVALID_PARAMETER_3, id="unknown-flag-0x100"),
    pytest.param(-1, b"x", None, NtStatus.INVALID_PARAMETER_3, id="negative-flags"),
    pytest.param(0, b"x" * 257, None, NtStatus.INVALID_BUFFER_SIZE, id="payload-too-big"),
    pytest.param(0, b"x", _gpa(8193), NtStatus.INVALID_PARAMETER_2, id="external-bytes"),
    pytest.param(0, b"x", _gpa(8192, offset=1), NtStatus.INVALID_PARAMETER_2,
                 id="external-chain-length"),
])
def test_bad_send_is_refused_and_leaves_the_packet_allocated(flags, payload, external, status):
    # max packet 256 bytes, max external data 8192 bytes in at most 2 PFNs
    server, client, host, guest = make_pair(max_packet=256, max_external=(8192, 2))
    packet = server.packet_allocate()
    packet.set_completion_routine("done", host.done)
    assert server.packet_send(packet, payload, flags, external) == status
    assert packet.state == PacketState.ALLOCATED
    assert server.outgoing_ring.is_empty and host.retired == []
    # the same packet object can still be sent correctly, or freed
    assert server.packet_send(packet, b"ok", SendFlags.FORCE_MDL_LENGTH
                              | SendFlags.PAGED_BUFFER) == OK
    assert host.retired == [(packet.transaction_id, OK, b"")]


def test_limits_are_inclusive():
    server, client, host, guest = make_pair(max_packet=256, max_external=(8192, 2))
    send(server, host, b"x" * 256, external=_gpa(8192))
    client.poll()
    assert guest.incoming[0].external == _gpa(8192)


def test_send_on_paused_channel_is_invalid_device_state():
    server, client, host, guest = make_pair()
    assert server.pause() == OK
    packet = server.packet_allocate()
    assert server.packet_send(packet, b"x") == NtStatus.INVALID_DEVICE_STATE
    assert packet.state == PacketState.ALLOCATED and server.outgoing_ring.is_empty
    assert server.start() == OK
    assert server.packet_send(packet, b"x") == OK


def test_send_before_open_is_invalid_device_state():
    bus = VmBus()
    server = bus.allocate_server_channel()
    assert server.init_set_target_interface_id(IFACE, INSTANCE) == OK
    assert server.init_set_process_packet_callbacks(lambda c, p: None) == OK
    assert server.enable() == OK
    assert server.start() == OK
    packet = server.packet_allocate()
    assert server.packet_send(packet, b"x") == NtStatus.INVALID_DEVICE_STATE


def test_send_of_a_packet_not_allocated_here_or_already_sent():
    server, client, host, guest = make_pair()
    foreign = client.packet_allocate()
    assert server.packet_send(foreign, b"x") == NtStatus.INVALID_PARAMETER_1
    packet = send(server, host, b"once", WAIT)
    assert server.packet_send(packet, b"twice", WAIT) == NtStatus.INVALID_PARAMETER_1
    assert len(server.outgoing_ring.packets()) == 1


def test_transaction_ids_are_unique_and_increasing():
    server, client, host, guest = make_pair()
    packets = [server.packet_allocate() for _ in range(5)]
    txids = [p.transaction_id for p in packets]
    assert txids == sorted(set(txids)) and txids[0] >= 1
    assert set(server.packets) == set(txids)


def test_set_and_get_pointer():
    server, client, host, guest = make_pair()
    packet = server.packet_allocate()
    assert packet.get_pointer() == 0
    packet.set_pointer(0xDEAD_BEEF_0000_0001)
    assert packet.get_pointer() == 0xDEAD_BEEF_0000_0001
    packet.set_pointer((1 << 64) + 7)  # a u64: the high bits are dropped
    assert packet.get_pointer() == 7
    assert server.packet_send(packet, b"x", WAIT) == OK
    assert packet.get_pointer() == 7  # kept through the transaction


def test_packet_free_only_for_allocated_packets():
    server, client, host, guest = make_pair()
    allocated = server.packet_allocate()
    assert server.packet_free(allocated) == OK
    assert allocated.state == PacketState.FREE
    assert allocated.transaction_id not in server.packets
    assert server.packet_free(allocated) == NtStatus.INVALID_PARAMETER_1
    assert server.packet_free(client.packet_allocate()) == NtStatus.INVALID_PARAMETER_1

    in_ring = send(server, host, b"r" * BIG, WAIT)
    assert server.packet_free(in_ring) == NtStatus.INVALID_DEVICE_STATE
    for _ in range(2):
        send(server, host, b"r" * BIG, WAIT)
    backlog = send(server, host, b"b" * BIG, WAIT, expect=NtStatus.PENDING)
    assert server.packet_free(backlog) == NtStatus.INVALID_DEVICE_STATE
    client.poll(budget=1)
    assert in_ring.state == PacketState.AWAITING_COMPLETION
    assert server.packet_free(in_ring) == NtStatus.INVALID_DEVICE_STATE
    assert backlog.state == PacketState.IN_RING  # the read made room for it
    assert server.packet_free(backlog) == NtStatus.INVALID_DEVICE_STATE
    assert server.packets[in_ring.transaction_id] is in_ring
    assert server.packets[backlog.transaction_id] is backlog


# -- GPADLs ---------------------------------------------------------------------------------
def test_gpadl_create_map_unmap_delete():
    server, client, host, guest = make_pair()
    status, first = client.gpadl_create((0x10, 0x11), 100, 8000, read_only=True)
    assert status == OK
    status, second = client.gpadl_create((0x20,), 0, 4096)
    assert status == OK
    assert first == FIRST_GPADL_HANDLE and second != first
    table = client.connection.gpadls.gpadls
    assert (table[first].pfns, table[first].byte_offset, table[first].byte_length,
            table[first].read_only) == ((0x10, 0x11), 100, 8000, True)

    status, gpadl = server.gpadl_map(first)
    assert status == OK and gpadl is table[first] and gpadl.mapped
    assert server.gpadl_map(first) == (NtStatus.INVALID_DEVICE_STATE, None)
    assert client.gpadl_delete(first) == NtStatus.INVALID_DEVICE_STATE  # still mapped
    assert first in table
    assert server.gpadl_unmap(first) == OK
    assert not table[first].mapped
    assert server.gpadl_unmap(first) == NtStatus.INVALID_DEVICE_STATE
    assert client.gpadl_delete(first) == OK
    assert first not in table
    assert client.gpadl_delete(first) == NtStatus.INVALID_PARAMETER_2
    assert server.gpadl_map(first) == (NtStatus.INVALID_PARAMETER_2, None)
    assert server.gpadl_unmap(first) == NtStatus.INVALID_PARAMETER_2

    # handles are never reused, even after a delete
    handles = {first, second}
    for _ in range(20):
        status, handle = client.gpadl_create((0x30,), 0, 1)
        assert status == OK and handle not in handles
        handles.add(handle)
        assert client.gpadl_delete(handle) == OK
    assert list(table) == [second]


@pytest.mark.parametrize(("pfns", "offset", "length", "status"), [
    pytest.param((), 0, 4096, NtStatus.INVALID_PARAMETER_1, id="no-pfns"),
    pytest.param((1,), 4096, 1, NtStatus.INVALID_PARAMETER_2, id="offset-past-page"),
    pytest.param((1,), -1, 1, NtStatus.INVALID_PARAMETER_2, id="negative-offset"),
    pytest.param((1,), 0, 0, NtStatus.INVALID_PARAMETER_3, id="zero-length"),
    pytest.param((1,), 1, 4096, NtStatus.INVALID_PARAMETER_3, id="too-few-pfns"),
    pytest.param((1, 2), 0, 4096, NtStatus.INVALID_PARAMETER_3, id="too-many-pfns"),
])
def test_gpadl_create_bad_arguments(pfns, offset, length, status):
    server, client, host, guest = make_pair()
    assert client.gpadl_create(pfns, offset, length) == (status, 0)
    assert client.connection.gpadls.gpadls == {}


def test_gpadl_calls_need_an_open_channel():
    bus = VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    assert isinstance(server, ServerChannel) and isinstance(client, ClientChannel)
    assert client.gpadl_create((1,), 0, 1) == (NtStatus.INVALID_DEVICE_STATE, 0)
    assert client.gpadl_delete(FIRST_GPADL_HANDLE) == NtStatus.INVALID_DEVICE_STATE
    assert server.gpadl_map(FIRST_GPADL_HANDLE) == (NtStatus.INVALID_DEVICE_STATE, None)
    assert server.gpadl_unmap(FIRST_GPADL_HANDLE) == NtStatus.INVALID_DEVICE_STATE


# -- external data reaches the peer unchanged ----------------------------------------------
EXTERNALS = [
    pytest.param(ExternalData(PacketType.GPA_DIRECT, gpa_ranges=(
        GpaRange(8192, 512, (0x80000, 0x80001, 0x80002)),
        GpaRange(100, 4000, (0x1234_5678_9ABC, 0x1234_5678_9ABD)),
        GpaRange(4096, 0, (0xFFFF_FFFF_FFFF_FFFF,)),
    )), id="gpa-direct"),
    pytest.param(ExternalData(PacketType.TRANSFER_PAGES, handle=0x100, sender_owns_set=True,
                              byte_ranges=(ByteRange(1024, 0), ByteRange(200, 3072))),
                 id="transfer-pages"),
    pytest.param(ExternalData(PacketType.DATA_USING_GPADL, handle=0x101,
                              byte_ranges=(ByteRange(4096, 8192),)), id="data-using-gpadl"),
]


@pytest.mark.parametrize("external", EXTERNALS)
@pytest.mark.parametrize("direction", ["client-to-server", "server-to-client"])
def test_external_data_reaches_the_peer_unchanged(external, direction):
    server, client, host, guest = make_pair(ring_pages=(2, 2))
    sender, sender_who, receiver, receiver_who = (
        (client, guest, server, host) if direction == "client-to-server"
        else (server, host, client, guest))
    packet = send(sender, sender_who, b"payload!", WAIT, external)
    assert packet.type == external.kind
    assert receiver.poll() == 1
    (incoming,) = receiver_who.incoming
    assert incoming.type == external.kind
    assert incoming.external == external
    assert incoming.payload == b"payload!"
    if external.kind == PacketType.GPA_DIRECT:
        assert [r.pfns for r in incoming.external.gpa_ranges] == [
            r.pfns for r in external.gpa_ranges]
        assert [(r.byte_count, r.byte_offset) for r in incoming.external.gpa_ranges] == [
            (8192, 512), (100, 4000), (4096, 0)]
