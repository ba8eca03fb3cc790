"""Random interleavings of writes and reads keep the ring's invariants (DOMAIN.md §5)."""

from __future__ import annotations

import struct

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_ring import decode_ring, padded

from vmbtool.sim.ring import RingBuffer, RingFull
from vmbtool.sim.wire import PacketType

# Operations come in bursts so that short examples still fill, wrap and refuse.
WRITE = st.tuples(
    st.one_of(st.integers(0, 300), st.integers(250, 300)),  # payload size, biased large
    st.sampled_from([PacketType.INBAND, PacketType.COMPLETION]),
    st.sampled_from([0, 1]),  # flags
)
WRITE_BURST = st.tuples(st.just("write"), st.lists(WRITE, min_size=1, max_size=16))
READ_BURST = st.tuples(st.just("read"), st.integers(min_value=1, max_value=16))
BURSTS = st.lists(st.one_of(WRITE_BURST, READ_BURST), max_size=30)


def check_invariants(ring: RingBuffer, queued: list[tuple[int, int, int, bytes]]) -> None:
    size = ring.data_size
    write_index, read_index = struct.unpack_from("<II", ring.memory, 0)
    assert (write_index, read_index) == (ring.write_index, ring.read_index)
    assert write_index % 8 == 0 and read_index % 8 == 0
    assert 0 <= write_index < size and 0 <= read_index < size
    assert ring.used_bytes + ring.free_bytes == size
    assert ring.used_bytes == sum(16 + len(payload) + 8 for *_, payload in queued)
    assert ring.is_empty == (not queued)
    assert ring.free_bytes > 0  # never full

    decoded = decode_ring(ring.memory)
    ours = ring.packets()
    assert [(d.type, d.flags, d.txid, d.payload) for d in decoded] == queued
    assert [(p.type, p.flags, p.transaction_id, p.payload, p.offset) for p in ours] == [
        (d.type, d.flags, d.txid, d.payload, d.offset) for d in decoded
    ]


@settings(max_examples=200, deadline=None)
@given(data_pages=st.integers(min_value=1, max_value=2), bursts=BURSTS)
def test_random_writes_and_reads_keep_fifo_and_invariants(data_pages, bursts):
    ring = RingBuffer(data_pages=data_pages)
    queued: list[tuple[int, int, int, bytes]] = []  # written, not yet read
    written, read = [], []
    txid = 0
    operations = [
        ("write", *w) if kind == "write" else ("read",)
        for kind, arg in bursts
        for w in (arg if kind == "write" else [None] * arg)
    ]
    for op in operations:
        if op[0] == "write":
            _, length, ptype, flags = op
            txid += 1
            payload = bytes((txid + i) & 0xFF for i in range(length))
            total = 16 + len(padded(payload)) + 8
            fits = ring.free_bytes > total  # the never-full rule, computed here
            try:
                start = ring.write_packet(ptype, flags, txid, payload)
            except RingFull as full:
                event("a write was refused")
                assert not fits
                assert full.args == (total,)
                assert ring.pending_send_size == total
            else:
                assert fits
                assert start % 8 == 0
                if start + total > ring.data_size:
                    event("a packet wrapped around the end")
                entry = (int(ptype), flags, txid, padded(payload))
                queued.append(entry)
                written.append(entry)
        else:
            packet = ring.read_packet()
            if queued:
                got = (int(packet.type), packet.flags, packet.transaction_id, packet.payload)
                assert got == queued.pop(0)
                read.append(got)
            else:
                assert packet is None
        check_invariants(ring, queued)

    while (packet := ring.read_packet()) is not None:
        read.append((int(packet.type), packet.flags, packet.transaction_id, packet.payload))
    assert read == written  # nothing lost, nothing duplicated, in order
    assert ring.is_empty and decode_ring(ring.memory) == []
