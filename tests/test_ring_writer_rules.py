"""Failing tests for defects found in vmbtool/sim/ring.py (not part of the suite)."""
import struct

import pytest

from vmbtool.sim.ring import RingBuffer, RingFull
from vmbtool.sim.wire import ExternalData, GpaRange, PacketType, WireError


@pytest.mark.parametrize(("write_index", "read_index"), [(0, 4096 + 8), (40, 4), (5000, 0)])
def test_reader_rejects_indices_that_break_section_5(write_index, read_index):
    # §5: both indices are multiples of 8 below the data size
    ring = RingBuffer(data_pages=1)
    ring.write_packet(PacketType.INBAND, 0, 1, b"x" * 8)
    control = bytearray(ring.control)
    struct.pack_into("<II", control, 0, write_index, read_index)
    bad = RingBuffer.from_bytes(bytes(control), ring.data)
    with pytest.raises(WireError) as error:   # today: struct.error, or a misleading
        bad.read_packet()                      # "descriptor.type" / "descriptor" error
    assert error.value.where in ("write_index", "read_index")


@pytest.mark.parametrize(("ptype", "flags", "external"), [
    (PacketType.INBAND, 0x2, None),
    (0x5, 0, None),
    (PacketType.GPA_DIRECT, 0, None),
    (PacketType.INBAND, 0,
     ExternalData(PacketType.GPA_DIRECT, gpa_ranges=(GpaRange(10, 0, (1,)),))),
])
def test_writer_refuses_what_its_reader_rejects_or_drops(ptype, flags, external):
    ring = RingBuffer(data_pages=1)
    with pytest.raises((WireError, ValueError)):
        ring.write_packet(ptype, flags, 1, b"abc", external)
    assert ring.is_empty


def test_oversized_packet_raises_value_error_not_struct_error():
    ring = RingBuffer(data_pages=160)
    with pytest.raises(ValueError, match="len8|too long|fit"):
        ring.write_packet(PacketType.INBAND, 0, 1, bytes(600_000))


def test_successful_retry_clears_pending_send_size():
    # OpenVMM clears the pending send size just before inserting, so the reader
    # does not signal a writer that is no longer waiting.
    ring = RingBuffer(data_pages=1)
    for total in (1000, 1000, 1000, 800):
        ring.write_packet(PacketType.INBAND, 0, 0, bytes(total - 24))
    with pytest.raises(RingFull):
        ring.write_packet(PacketType.INBAND, 0, 9, bytes(1000))
    ring.read_packet()
    ring.write_packet(PacketType.INBAND, 0, 9, bytes(1000))  # the retry succeeds
    assert ring.pending_send_size == 0
    ring.read_packet()
    assert not ring.writer_needs_signal
