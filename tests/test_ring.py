"""The ring buffer against the published byte layout (DOMAIN.md §5).

`decode_ring` below is an independent reader written from DOMAIN.md §5 alone, with
nothing but `struct`: it never calls vmbtool's own decoder, so the two can disagree.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest

from vmbtool.sim.ring import RingBuffer, RingFull
from vmbtool.sim.wire import ByteRange, ExternalData, GpaRange, PacketType, WireError

PAGE = 4096
INBAND, TRANSFER_PAGES, DATA_USING_GPADL, GPA_DIRECT, COMPLETION = 6, 7, 8, 9, 0xB
KNOWN_TYPES = {INBAND, TRANSFER_PAGES, DATA_USING_GPADL, GPA_DIRECT, COMPLETION}


# -- the independent decoder ----------------------------------------------------------
class RingDecodeError(AssertionError):
    """The raw bytes break DOMAIN.md §5."""


class Decoded(NamedTuple):
    type: int
    flags: int
    txid: int
    payload: bytes  # padded to 8 bytes, as it stands in the ring
    offset: int  # where the descriptor starts in the data area
    extra: bytes  # bytes between the 16-byte descriptor and offset8 * 8
    gpa_ranges: tuple[tuple[int, int, tuple[int, ...]], ...] = ()


def _take(data: bytes, offset: int, length: int) -> bytes:
    """`length` bytes of the data area from `offset`, wrapping around its end."""
    if length > len(data):
        raise RingDecodeError(f"{length} bytes cannot fit a {len(data)}-byte data area")
    return (data + data)[offset : offset + length]


def _decode_gpa_direct(extra: bytes) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    # §5: u32 reserved, u32 range count, then {u32 byte count, u32 byte offset (< 4096),
    # u64 PFN[ceil((offset + count) / 4096)]} per range.
    if len(extra) < 8:
        raise RingDecodeError(f"GPA-direct header of {len(extra)} bytes")
    _reserved, count = struct.unpack_from("<II", extra, 0)
    pos, ranges = 8, []
    for _ in range(count):
        byte_count, byte_offset = struct.unpack_from("<II", extra, pos)
        if byte_offset >= PAGE:
            raise RingDecodeError(f"GPA range byte offset {byte_offset} >= 4096")
        pfns = -(-(byte_offset + byte_count) // PAGE)
        pfn_values = struct.unpack_from(f"<{pfns}Q", extra, pos + 8)
        ranges.append((byte_count, byte_offset, tuple(pfn_values)))
        pos += 8 + 8 * pfns
    if pos != len(extra):
        raise RingDecodeError(f"GPA ranges end at {pos}, header at {len(extra)}")
    return tuple(ranges)


def decode_ring(memory: bytes | bytearray) -> list[Decoded]:
    """Every packet from the read to the write index of a raw ring (control page + data)."""
    memory = bytes(memory)
    if len(memory) <= PAGE or len(memory) % PAGE:
        raise RingDecodeError(f"ring of {len(memory)} bytes")
    control, data = memory[:PAGE], memory[PAGE:]
    size = len(data)
    write_index, read_index = struct.unpack_from("<II", control, 0x00)
    for name, index in (("write", write_index), ("read", read_index)):
        if index % 8 or index >= size:
            raise RingDecodeError(f"{name} index {index} in a {size}-byte data area")
    used = (write_index - read_index) % size
    packets, pos, seen = [], read_index, 0
    while seen < used:
        ptype, offset8, len8, flags, txid = struct.unpack("<HHHHQ", _take(data, pos, 16))
        if ptype not in KNOWN_TYPES:
            raise RingDecodeError(f"unknown type {ptype:#x} at {pos}")
        if offset8 < 2:
            raise RingDecodeError(f"offset8 {offset8} < 2 at {pos}")
        if len8 < offset8:
            raise RingDecodeError(f"len8 {len8} < offset8 {offset8} at {pos}")
        if flags & ~0x1:
            raise RingDecodeError(f"unknown flags {flags:#x} at {pos}")
        length = len8 * 8
        if seen + length + 8 > used:
            raise RingDecodeError(f"packet at {pos} runs past the write index")
        raw = _take(data, pos, length + 8)
        (trailer,) = struct.unpack_from("<Q", raw, length)
        if trailer != pos << 32:
            raise RingDecodeError(f"trailer {trailer:#x} for a packet at {pos}")
        extra = raw[16 : offset8 * 8]
        gpa = _decode_gpa_direct(extra) if ptype == GPA_DIRECT else ()
        packets.append(Decoded(ptype, flags, txid, raw[offset8 * 8 : length], pos, extra, gpa))
        pos = (pos + length + 8) % size
        seen += length + 8
        if pos % 8:
            raise RingDecodeError(f"next packet would start at unaligned {pos}")
    return packets


def padded(payload: bytes) -> bytes:
    return payload + b"\0" * (-len(payload) % 8)


def agrees_with_ring(decoded: list[Decoded], ring: RingBuffer) -> None:
    ours = ring.packets()
    assert [(p.type, p.flags, p.transaction_id, p.payload, p.offset) for p in ours] == [
        (d.type, d.flags, d.txid, d.payload, d.offset) for d in decoded
    ]


# -- the decoder finds what write_packet wrote --------------------------------------
def test_inband_packet_bytes_match_the_published_layout():
    ring = RingBuffer(data_pages=1)
    start = ring.write_packet(PacketType.INBAND, 1, 0x1122334455667788, b"abc")
    assert start == 0
    expected = (
        struct.pack("<HHHHQ", 6, 2, 3, 1, 0x1122334455667788)  # 16 + 8 bytes = len8 3
        + b"abc\0\0\0\0\0"
        + struct.pack("<Q", 0 << 32)
    )
    assert ring.data[: len(expected)] == expected
    assert ring.data[len(expected) :] == bytes(PAGE - len(expected))
    assert struct.unpack_from("<II", ring.memory, 0) == (len(expected), 0)
    # the second packet's trailer carries its own start index
    second = ring.write_packet(PacketType.COMPLETION, 0, 7, b"")
    assert second == len(expected)
    assert ring.data[second + 16 : second + 24] == struct.pack("<Q", second << 32)


def test_decoder_finds_exactly_the_written_packets():
    ring = RingBuffer(data_pages=2)
    gpa = ExternalData(
        PacketType.GPA_DIRECT,
        gpa_ranges=(
            GpaRange(byte_count=5000, byte_offset=100, pfns=(0x1000, 0x1001)),
            GpaRange(byte_count=16, byte_offset=4080, pfns=(0x2000,)),
            GpaRange(byte_count=8192, byte_offset=0, pfns=(0x3000, 0x3001)),
        ),
    )
    xfer = ExternalData(
        PacketType.TRANSFER_PAGES,
        handle=0xBEEF,
        sender_owns_set=True,
        byte_ranges=(ByteRange(100, 0), ByteRange(2000, 4096), ByteRange(1, 9000)),
    )
    gpadl = ExternalData(
        PacketType.DATA_USING_GPADL, handle=0xDEADBEEF, byte_ranges=(ByteRange(64, 128),)
    )
    writes = [
        (PacketType.INBAND, 0, 1, b""),
        (PacketType.INBAND, 1, 2, b"\x01" * 7),
        (PacketType.COMPLETION, 0, 2, b"\x02" * 8),
        (PacketType.GPA_DIRECT, 1, 3, b"request", gpa),
        (PacketType.TRANSFER_PAGES, 0, 4, b"\xff" * 13, xfer),
        (PacketType.DATA_USING_GPADL, 1, 5, b"g" * 33, gpadl),
        (PacketType.COMPLETION, 0, 2**64 - 1, b"\x00\x01" * 50),
    ]
    starts = [ring.write_packet(*w) for w in writes]
    decoded = decode_ring(ring.memory)

    assert [(d.type, d.flags, d.txid, d.payload, d.offset) for d in decoded] == [
        (int(w[0]), w[1], w[2], padded(w[3]), s) for w, s in zip(writes, starts, strict=True)
    ]
    # offsets follow from sizes alone: 16 + extra header + padded payload + 8 trailer
    extra_sizes = [0, 0, 0, 8 + (8 + 16) + (8 + 8) + (8 + 16), 8 + 3 * 8, 8 + 8, 0]
    expected_start = 0
    for w, extra, start in zip(writes, extra_sizes, starts, strict=True):
        assert start == expected_start
        expected_start += 16 + extra + len(padded(w[3])) + 8
    assert ring.write_index == expected_start
    assert [len(d.extra) for d in decoded] == extra_sizes

    # the GPA-direct ranges, read back by the §5 rules
    assert decoded[3].gpa_ranges == (
        (5000, 100, (0x1000, 0x1001)),
        (16, 4080, (0x2000,)),
        (8192, 0, (0x3000, 0x3001)),
    )
    assert decoded[3].extra[:8] == struct.pack("<II", 0, 3)
    # transfer pages as Linux lays out vmtransfer_page_packet_header
    assert decoded[4].extra == struct.pack("<HBBI", 0xBEEF, 1, 0, 3) + struct.pack(
        "<6I", 100, 0, 2000, 4096, 1, 9000
    )
    assert decoded[5].extra == struct.pack("<IIII", 0xDEADBEEF, 1, 64, 128)

    agrees_with_ring(decoded, ring)
    ours = ring.packets()
    assert ours[3].external == gpa
    assert ours[4].external == xfer
    assert ours[5].external == gpadl
    assert [p.external for p in ours if p.type in (PacketType.INBAND, PacketType.COMPLETION)] == [
        None
    ] * 4


def test_round_trip_through_raw_bytes():
    ring = RingBuffer(data_pages=1)
    for i in range(5):
        ring.write_packet(PacketType.INBAND, i & 1, i, bytes(range(i * 9)))
    ring.read_packet()
    copy = RingBuffer.from_bytes(ring.control, ring.data)
    assert copy.memory == ring.memory
    assert copy.read_index == ring.read_index and copy.write_index == ring.write_index
    assert copy.packets() == ring.packets()
    assert len(decode_ring(copy.memory)) == 4
    agrees_with_ring(decode_ring(copy.memory), copy)


def test_decoder_and_reader_consume_in_order():
    ring = RingBuffer(data_pages=1)
    for i in range(4):
        ring.write_packet(PacketType.INBAND, 0, i, bytes([i]) * (i + 1))
    for i in range(4):
        head = decode_ring(ring.memory)[0]
        packet = ring.read_packet()
        assert head.offset == packet.offset
        assert (head.txid, head.payload) == (i, padded(bytes([i]) * (i + 1)))
        assert packet.transaction_id == i
    assert decode_ring(ring.memory) == []
    assert ring.read_packet() is None


# -- wrap-around ---------------------------------------------------------------------
def _advance_to(ring: RingBuffer, target: int) -> None:
    """Write and read filler packets so that both indices stand at `target`."""
    while ring.write_index != target:
        gap = (target - ring.write_index) % ring.data_size
        # a filler is 16 + payload + 8 bytes; keep gaps below 24 reachable
        payload = min(gap - 24, 1000) if gap >= 48 or gap == 24 else 8
        ring.write_packet(PacketType.INBAND, 0, 0, bytes(payload))
        assert ring.read_packet() is not None
    assert ring.is_empty and ring.read_index == target


@pytest.mark.parametrize("start_from_end", [8, 16, 24, 40, 64, 200])
def test_packet_straddling_the_end_reads_back_intact(start_from_end):
    ring = RingBuffer(data_pages=1)
    start = ring.data_size - start_from_end
    _advance_to(ring, start)
    payload = bytes((i * 7 + 3) & 0xFF for i in range(start_from_end + 101))
    flags = 1
    offset = ring.write_packet(PacketType.INBAND, flags, 0xABCDEF, payload)
    assert offset == start
    total = 16 + len(padded(payload)) + 8
    assert offset + total > ring.data_size  # it really wraps
    assert ring.write_index == (start + total) % ring.data_size

    # the raw bytes really are split: the descriptor or its tail sits at the data start
    body = struct.pack("<HHHHQ", 6, 2, (16 + len(padded(payload))) // 8, flags, 0xABCDEF)
    body += padded(payload) + struct.pack("<Q", start << 32)
    assert ring.data[start:] == body[:start_from_end]
    assert ring.data[: total - start_from_end] == body[start_from_end:]

    [decoded] = decode_ring(ring.memory)
    assert (decoded.type, decoded.flags, decoded.txid, decoded.payload, decoded.offset) == (
        6, flags, 0xABCDEF, padded(payload), start,
    )
    agrees_with_ring([decoded], ring)
    packet = ring.read_packet()
    assert packet.payload == padded(payload)
    assert packet.transaction_id == 0xABCDEF and packet.flags == flags
    assert packet.trailer == start << 32
    assert ring.is_empty and ring.read_index == ring.write_index


def test_trailer_alone_wraps_to_the_data_start():
    ring = RingBuffer(data_pages=1)
    _advance_to(ring, ring.data_size - 32)
    offset = ring.write_packet(PacketType.COMPLETION, 0, 9, b"x" * 16)  # 32 bytes + trailer
    assert ring.write_index == 8
    assert ring.data[:8] == struct.pack("<Q", offset << 32)
    [decoded] = decode_ring(ring.memory)
    assert decoded.payload == b"x" * 16
    assert ring.read_packet().payload == b"x" * 16
    assert ring.read_index == 8


def test_many_laps_keep_fifo_order():
    ring = RingBuffer(data_pages=1)
    expected, laps, previous = [], 0, 0

    def read_one():
        got = ring.read_packet()
        assert (got.transaction_id, got.payload) == expected.pop(0)

    for i in range(300):
        payload = bytes([i & 0xFF]) * (i % 37)
        while not ring.can_write(16 + len(padded(payload)) + 8):
            read_one()
        ring.write_packet(PacketType.INBAND, i & 1, i, payload)
        expected.append((i, padded(payload)))
        if i % 3:
            read_one()
        laps += ring.write_index < previous
        previous = ring.write_index
        agrees_with_ring(decode_ring(ring.memory), ring)
    assert laps >= 3
    while expected:
        read_one()
    assert ring.is_empty


# -- the never-full rule -------------------------------------------------------------
def _filler_for_total(total: int) -> bytes:
    assert total % 8 == 0 and total >= 24
    return bytes(total - 24)


def test_write_refused_when_free_equals_total():
    ring = RingBuffer(data_pages=1)
    ring.write_packet(PacketType.INBAND, 0, 1, bytes(40))  # 64 bytes
    free = ring.free_bytes
    assert free == PAGE - 64
    write_before, memory_before = ring.write_index, bytes(ring.memory[:])
    with pytest.raises(RingFull):
        ring.write_packet(PacketType.INBAND, 0, 2, _filler_for_total(free))
    assert ring.write_index == write_before
    assert ring.pending_send_size == free
    # nothing in the data area changed; only pending_send_size on the control page
    assert ring.memory[PAGE:] == memory_before[PAGE:]
    assert len(decode_ring(ring.memory)) == 1

    # free > total is accepted, leaving exactly 8 bytes free: read != write
    ring.write_packet(PacketType.INBAND, 0, 3, _filler_for_total(free - 8))
    assert ring.free_bytes == 8 and ring.used_bytes == PAGE - 8
    assert ring.read_index != ring.write_index and not ring.is_empty
    assert [d.txid for d in decode_ring(ring.memory)] == [1, 3]
    with pytest.raises(RingFull):
        ring.write_packet(PacketType.INBAND, 0, 4, b"")


def test_an_empty_ring_takes_at_most_data_size_minus_8():
    ring = RingBuffer(data_pages=1)
    with pytest.raises(ValueError, match="can never fit"):
        ring.write_packet(PacketType.INBAND, 0, 1, _filler_for_total(PAGE))
    assert ring.is_empty and ring.write_index == 0
    ring.write_packet(PacketType.INBAND, 0, 1, _filler_for_total(PAGE - 8))
    assert ring.write_index == PAGE - 8 and ring.free_bytes == 8
    [decoded] = decode_ring(ring.memory)
    assert decoded.txid == 1
    ring.read_packet()
    assert ring.is_empty and ring.read_index == ring.write_index == PAGE - 8
    assert ring.read_packet() is None and ring.packets() == [] and decode_ring(ring.memory) == []


def test_read_equals_write_means_empty_even_after_wrapping():
    ring = RingBuffer(data_pages=1)
    _advance_to(ring, 1000)
    assert ring.is_empty and ring.used_bytes == 0 and ring.free_bytes == PAGE
    assert ring.peek_packet() is None and ring.read_packet() is None
    # even though the bytes of old packets are still in the data area
    assert any(ring.data)
    assert decode_ring(ring.memory) == []


def test_pending_send_size_and_writer_signal():
    ring = RingBuffer(data_pages=1)
    assert ring.feature_bits & 1
    assert struct.unpack_from("<I", ring.memory, 0x40)[0] & 1
    totals = [1000, 1000, 1000, 800]  # 3800 used, 296 free
    for i, total in enumerate(totals):
        ring.write_packet(PacketType.INBAND, 0, i, _filler_for_total(total))
    assert ring.free_bytes == 296
    assert ring.pending_send_size == 0 and not ring.writer_needs_signal

    with pytest.raises(RingFull) as refused:
        ring.write_packet(PacketType.INBAND, 0, 9, _filler_for_total(1024))
    assert refused.value.args == (1024,)
    assert ring.pending_send_size == 1024
    assert struct.unpack_from("<I", ring.memory, 0x0C) == (1024,)
    assert not ring.writer_needs_signal  # 296 free

    ring.read_packet()
    assert ring.free_bytes == 1296
    assert ring.writer_needs_signal

    # the retry now fits, and the decoder finds it behind the three unread packets
    ring.write_packet(PacketType.INBAND, 0, 9, _filler_for_total(1024))
    assert [d.txid for d in decode_ring(ring.memory)] == [1, 2, 3, 9]
    assert ring.free_bytes == 272


def test_writer_signal_needs_free_strictly_above_pending():
    ring = RingBuffer(data_pages=1)
    ring.write_packet(PacketType.INBAND, 0, 1, _filler_for_total(2048))
    ring.write_packet(PacketType.INBAND, 0, 2, _filler_for_total(1024))
    assert ring.free_bytes == 1024
    with pytest.raises(RingFull):
        ring.write_packet(PacketType.INBAND, 0, 3, _filler_for_total(1024))
    assert ring.pending_send_size == 1024
    assert not ring.writer_needs_signal  # free == pending is not enough
    ring.read_packet()
    assert ring.free_bytes == 3072 and ring.writer_needs_signal


def test_pending_send_size_untouched_without_the_feature():
    ring = RingBuffer(data_pages=1, feature_bits=0)
    assert struct.unpack_from("<I", ring.memory, 0x40) == (0,)
    ring.write_packet(PacketType.INBAND, 0, 1, _filler_for_total(PAGE - 8))
    with pytest.raises(RingFull):
        ring.write_packet(PacketType.INBAND, 0, 2, b"")
    assert ring.pending_send_size == 0
    assert struct.unpack_from("<I", ring.memory, 0x0C) == (0,)
    ring.read_packet()
    assert not ring.writer_needs_signal


# -- alignment -----------------------------------------------------------------------
def test_write_index_stays_8_aligned_for_odd_payloads():
    ring = RingBuffer(data_pages=1)
    odd_sizes = [1, 3, 5, 7, 9, 11, 13, 15, 17, 99, 255, 301, 0, 2, 4, 6]
    for round_ in range(20):
        for size in odd_sizes:
            try:
                start = ring.write_packet(PacketType.INBAND, 0, round_, b"\xaa" * size)
            except RingFull:
                ring.read_packet()
                continue
            assert start % 8 == 0
            assert ring.write_index % 8 == 0 and ring.write_index < ring.data_size
            assert ring.read_index % 8 == 0
        for decoded in decode_ring(ring.memory):
            assert decoded.offset % 8 == 0 and len(decoded.payload) % 8 == 0
    # the pad bytes are zero
    for packet in ring.packets():
        assert packet.payload.rstrip(b"\0") == b"\xaa" * len(packet.payload.rstrip(b"\0"))


# -- reader signal ---------------------------------------------------------------------
def test_reader_needs_signal_only_when_unmasked_and_not_empty():
    ring = RingBuffer(data_pages=1)
    assert ring.interrupt_mask == 0 and not ring.reader_needs_signal  # empty
    ring.write_packet(PacketType.INBAND, 0, 1, b"x")
    assert ring.reader_needs_signal
    ring.interrupt_mask = 1
    assert struct.unpack_from("<I", ring.memory, 0x08) == (1,)
    assert not ring.reader_needs_signal
    ring.interrupt_mask = 0
    assert ring.reader_needs_signal
    ring.read_packet()
    assert not ring.reader_needs_signal


# -- reader rules: corrupt bytes are rejected ---------------------------------------
def _ring_with_one_packet(at: int = 0) -> tuple[RingBuffer, int]:
    ring = RingBuffer(data_pages=1)
    if at:
        _advance_to(ring, at)
    start = ring.write_packet(PacketType.INBAND, 0, 42, b"payload!" * 3)
    ring.write_packet(PacketType.COMPLETION, 0, 43, b"")
    return ring, start


def _poke_u16(ring: RingBuffer, packet_start: int, field_offset: int, value: int) -> None:
    # descriptor fields are u16 at +0 type, +2 offset8, +4 len8, +6 flags
    pos = (packet_start + field_offset) % ring.data_size
    struct.pack_into("<H", ring.memory, PAGE + pos, value)


@pytest.mark.parametrize("at", [0, PAGE - 8], ids=["flat", "wrapped"])
@pytest.mark.parametrize(
    ("field_offset", "value", "where"),
    [
        (2, 1, "descriptor.offset8"),
        (2, 0, "descriptor.offset8"),
        (4, 1, "descriptor.len8"),  # len8 1 < offset8 2
        (0, 0x5, "descriptor.type"),
        (0, 0xA, "descriptor.type"),
        (6, 0x2, "descriptor.flags"),
        (6, 0x8001, "descriptor.flags"),
        (4, 500, "descriptor.len8"),  # runs past the write index
    ],
)
def test_reader_rejects_a_corrupt_descriptor(at, field_offset, value, where):
    ring, start = _ring_with_one_packet(at)
    assert start == at
    before = (ring.read_index, ring.write_index)
    _poke_u16(ring, start, field_offset, value)
    with pytest.raises(WireError) as error:
        ring.read_packet()
    assert error.value.where == where
    assert (ring.read_index, ring.write_index) == before  # nothing consumed
    with pytest.raises(WireError) as error:
        ring.packets()
    assert error.value.where == where
    with pytest.raises(RingDecodeError):
        decode_ring(ring.memory)


@pytest.mark.parametrize("at", [0, PAGE - 16], ids=["flat", "wrapped"])
@pytest.mark.parametrize("trailer", [0, 1, 0xFFFF_FFFF_FFFF_FFFF, (8 << 32)])
def test_reader_rejects_a_bad_trailer(at, trailer):
    ring, start = _ring_with_one_packet(at)
    trailer_at = (start + 16 + 24) % ring.data_size
    good = struct.unpack_from("<Q", ring.memory, PAGE + trailer_at)[0]
    assert good == start << 32
    if trailer == good:
        trailer ^= 1 << 32
    struct.pack_into("<Q", ring.memory, PAGE + trailer_at, trailer)
    with pytest.raises(WireError) as error:
        ring.read_packet()
    assert error.value.where == "trailer"
    assert ring.read_index == start
    with pytest.raises(RingDecodeError, match="trailer"):
        decode_ring(ring.memory)


def test_corrupt_second_packet_leaves_the_first_readable():
    ring, start = _ring_with_one_packet()
    second = start + 16 + 24 + 8
    _poke_u16(ring, second, 0, 0x5)
    assert ring.read_packet().transaction_id == 42
    with pytest.raises(WireError) as error:
        ring.read_packet()
    assert error.value.where == "descriptor.type"
    assert ring.read_index == second


def test_valid_edge_descriptors_are_accepted():
    # offset8 == 2 and len8 == offset8 (no payload) are legal; flag bit 0 is known
    ring = RingBuffer(data_pages=1)
    ring.write_packet(PacketType.COMPLETION, 1, 5, b"")
    assert struct.unpack_from("<HHHH", ring.memory, PAGE) == (0xB, 2, 2, 1)
    packet = ring.read_packet()
    assert (packet.header_length, packet.length, packet.payload) == (16, 16, b"")


# -- control page offsets --------------------------------------------------------------
def test_control_page_fields_sit_at_their_published_offsets():
    ring = RingBuffer(data_pages=2)
    ring.write_index = 0x1118
    ring.read_index = 0x0220
    ring.interrupt_mask = 0x33
    ring.pending_send_size = 0x4440
    ring.feature_bits = 0x55
    raw = bytes(ring.memory)
    assert struct.unpack_from("<I", raw, 0x00) == (0x1118,)
    assert struct.unpack_from("<I", raw, 0x04) == (0x0220,)
    assert struct.unpack_from("<I", raw, 0x08) == (0x33,)
    assert struct.unpack_from("<I", raw, 0x0C) == (0x4440,)
    assert struct.unpack_from("<I", raw, 0x40) == (0x55,)
    # the rest of the control page is reserved and stays zero; the data area untouched
    touched = {*range(0x00, 0x10), *range(0x40, 0x44)}
    assert all(raw[i] == 0 for i in range(PAGE) if i not in touched)
    assert raw[PAGE:] == bytes(2 * PAGE)
    assert ring.control == raw[:PAGE] and ring.data == raw[PAGE:]


def test_control_page_fields_read_back_from_raw_bytes():
    control = bytearray(PAGE)
    struct.pack_into("<IIII", control, 0, 0x40, 0x18, 1, 0x200)
    struct.pack_into("<I", control, 0x40, 1)
    ring = RingBuffer.from_bytes(bytes(control), bytes(PAGE))
    assert (ring.write_index, ring.read_index, ring.interrupt_mask) == (0x40, 0x18, 1)
    assert (ring.pending_send_size, ring.feature_bits) == (0x200, 1)
    assert ring.used_bytes == 0x28 and ring.free_bytes == PAGE - 0x28


def test_fresh_ring_control_page():
    ring = RingBuffer(data_pages=3)
    assert len(ring.memory) == 4 * PAGE and ring.data_size == 3 * PAGE
    assert struct.unpack_from("<IIII", ring.memory, 0) == (0, 0, 0, 0)
    assert struct.unpack_from("<I", ring.memory, 0x40) == (1,)
    with pytest.raises(ValueError):
        RingBuffer(data_pages=0)
