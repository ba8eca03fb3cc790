"""A VMBus ring buffer as real bytes (DOMAIN.md §5).

    RING    ::= CONTROL_PAGE DATA_AREA
    CONTROL ::= u32 write_index @0x00, u32 read_index @0x04, u32 interrupt_mask @0x08,
                u32 pending_send_size @0x0C, u32 feature_bits @0x40, reserved to 4096
    DATA    ::= data_pages * 4096 bytes; packets wrap around its end

The writer never fills the ring: it writes only when free > total, so read == write
means empty.
"""

from __future__ import annotations

import struct

from vmbtool.sim.wire import (
    DESCRIPTOR_SIZE,
    PAGE_SIZE,
    TRAILER,
    TRAILER_SIZE,
    ExternalData,
    PacketType,
    WireError,
    WirePacket,
    check_descriptor,
    encode_extra_header,
    encode_packet,
    packet_length,
    wire_packet,
)

CONTROL_SIZE = PAGE_SIZE
WRITE_INDEX_OFFSET = 0x00
READ_INDEX_OFFSET = 0x04
INTERRUPT_MASK_OFFSET = 0x08
PENDING_SEND_SIZE_OFFSET = 0x0C
FEATURE_BITS_OFFSET = 0x40
FEATURE_PENDING_SEND_SIZE = 0x1
_U32 = struct.Struct("<I")


class RingFull(Exception):
    """The packet does not fit now; the caller queues it on the backlog."""


class RingBuffer:
    """One direction of a channel: a control page plus a data area, in one bytearray."""

    def __init__(self, data_pages: int, feature_bits: int = FEATURE_PENDING_SEND_SIZE) -> None:
        if data_pages < 1:
            raise ValueError("a ring needs at least one data page")
        self.memory = bytearray(CONTROL_SIZE + data_pages * PAGE_SIZE)
        self.feature_bits = feature_bits

    @classmethod
    def from_bytes(cls, control: bytes, data: bytes) -> RingBuffer:
        if len(control) != CONTROL_SIZE or not data or len(data) % PAGE_SIZE:
            raise ValueError("control page must be 4096 bytes, data a multiple of 4096")
        ring = cls.__new__(cls)
        ring.memory = bytearray(control) + bytearray(data)
        return ring

    # -- control page fields -------------------------------------------------
    def _get(self, offset: int) -> int:
        value: int = _U32.unpack_from(self.memory, offset)[0]
        return value

    def _set(self, offset: int, value: int) -> None:
        _U32.pack_into(self.memory, offset, value)

    @property
    def write_index(self) -> int:
        return self._get(WRITE_INDEX_OFFSET)

    @write_index.setter
    def write_index(self, value: int) -> None:
        self._set(WRITE_INDEX_OFFSET, value)

    @property
    def read_index(self) -> int:
        return self._get(READ_INDEX_OFFSET)

    @read_index.setter
    def read_index(self, value: int) -> None:
        self._set(READ_INDEX_OFFSET, value)

    @property
    def interrupt_mask(self) -> int:
        return self._get(INTERRUPT_MASK_OFFSET)

    @interrupt_mask.setter
    def interrupt_mask(self, value: int) -> None:
        self._set(INTERRUPT_MASK_OFFSET, value)

    @property
    def pending_send_size(self) -> int:
        return self._get(PENDING_SEND_SIZE_OFFSET)

    @pending_send_size.setter
    def pending_send_size(self, value: int) -> None:
        self._set(PENDING_SEND_SIZE_OFFSET, value)

    @property
    def feature_bits(self) -> int:
        return self._get(FEATURE_BITS_OFFSET)

    @feature_bits.setter
    def feature_bits(self, value: int) -> None:
        self._set(FEATURE_BITS_OFFSET, value)

    @property
    def control(self) -> bytes:
        return bytes(self.memory[:CONTROL_SIZE])

    @property
    def data(self) -> bytes:
        return bytes(self.memory[CONTROL_SIZE:])

    # -- occupancy -------------------------------------------------------------
    @property
    def data_size(self) -> int:
        return len(self.memory) - CONTROL_SIZE

    @property
    def used_bytes(self) -> int:
        return (self.write_index - self.read_index) % self.data_size

    @property
    def free_bytes(self) -> int:
        return self.data_size - self.used_bytes

    @property
    def is_empty(self) -> bool:
        return self.read_index == self.write_index

    def can_write(self, total: int) -> bool:
        """The never-full rule: the writer needs free > total."""
        return self.free_bytes > total

    def contains(self, offset: int) -> bool:
        """Whether a packet written at `offset` has not yet been read."""
        return (offset - self.read_index) % self.data_size < self.used_bytes

    @property
    def reader_needs_signal(self) -> bool:
        """A reader is signalled when its interrupt mask is 0 and data is waiting."""
        return self.interrupt_mask == 0 and not self.is_empty

    @property
    def writer_needs_signal(self) -> bool:
        """A blocked writer is signalled once its pending send size is free."""
        pending = self.pending_send_size
        return pending != 0 and self.free_bytes > pending

    # -- raw data access with wrap-around ---------------------------------------
    def _copy_in(self, offset: int, blob: bytes) -> None:
        size = self.data_size
        first = min(len(blob), size - offset)
        base = CONTROL_SIZE
        self.memory[base + offset : base + offset + first] = blob[:first]
        if first < len(blob):
            rest = len(blob) - first
            self.memory[base : base + rest] = blob[first:]

    def copy_out(self, offset: int, length: int) -> bytes:
        size = self.data_size
        base = CONTROL_SIZE
        first = min(length, size - offset)
        out = bytes(self.memory[base + offset : base + offset + first])
        if first < length:
            out += bytes(self.memory[base : base + length - first])
        return out

    # -- writer ------------------------------------------------------------------
    def write_packet(
        self, ptype: int, flags: int, transaction_id: int, payload: bytes,
        external: ExternalData | None = None,
    ) -> int:
        """Write one packet at the write index; returns its offset, raises RingFull."""
        carried = external.kind if external is not None else None
        if carried is not None and carried != ptype or carried is None and ptype in (
                PacketType.GPA_DIRECT, PacketType.TRANSFER_PAGES, PacketType.DATA_USING_GPADL):
            raise ValueError(f"type {ptype:#x} does not match its external data ({carried})")
        if not 0 <= transaction_id <= 0xFFFF_FFFF_FFFF_FFFF:
            raise ValueError(f"transaction id {transaction_id} is not a u64")
        body_length = (len(encode_extra_header(external)) + DESCRIPTOR_SIZE + len(payload) + 7)
        if body_length // 8 > 0xFFFF:
            raise ValueError(f"packet of {body_length} bytes cannot be described by len8")
        body = encode_packet(ptype, flags, transaction_id, payload, external)
        offset8, len8 = struct.unpack_from("<HH", body, 2)
        check_descriptor(ptype, offset8, len8, flags)
        total = len(body) + TRAILER_SIZE
        if total > self.data_size - 8:
            raise ValueError(f"packet of {total} bytes can never fit a {self.data_size}-byte ring")
        if not self.can_write(total):
            if self.feature_bits & FEATURE_PENDING_SEND_SIZE:
                self.pending_send_size = total
            raise RingFull(total)
        start = self.write_index
        self._copy_in(start, body + TRAILER.pack(start << 32))
        self.write_index = (start + total) % self.data_size
        # the writer is no longer blocked: clear it so the reader sends no stray signal
        self.pending_send_size = 0
        return start

    # -- reader ------------------------------------------------------------------
    def parse_at(self, offset: int, available: int) -> WirePacket:
        """Parse the packet at `offset`, with `available` bytes before the write index."""
        length = packet_length(self.copy_out(offset, min(DESCRIPTOR_SIZE, available)),
                               available)
        return wire_packet(self.copy_out(offset, length + TRAILER_SIZE), offset)

    def check_indices(self) -> None:
        """DOMAIN §5: both indices are multiples of 8 below the data size."""
        for name in ("write_index", "read_index"):
            value = getattr(self, name)
            if value >= self.data_size or value % 8:
                raise WireError(name, f"{value} is not a multiple of 8 below {self.data_size}")

    def peek_packet(self) -> WirePacket | None:
        self.check_indices()
        if self.is_empty:
            return None
        return self.parse_at(self.read_index, self.used_bytes)

    def read_packet(self) -> WirePacket | None:
        """Read the packet at the read index and advance past it (and its trailer)."""
        packet = self.peek_packet()
        if packet is not None:
            self.read_index = (self.read_index + packet.total_size) % self.data_size
        return packet

    def packets(self) -> list[WirePacket]:
        """Every packet between the read and the write index, without consuming them."""
        self.check_indices()
        out, offset, left = [], self.read_index, self.used_bytes
        while left:
            packet = self.parse_at(offset, left)
            out.append(packet)
            offset = (offset + packet.total_size) % self.data_size
            left -= packet.total_size
        return out
