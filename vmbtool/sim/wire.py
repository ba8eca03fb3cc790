"""VMBus packet wire layout (DOMAIN.md §5), as Linux and OpenVMM lay it out.

    PACKET     ::= DESCRIPTOR EXTRA_HEADER PAYLOAD PAD TRAILER
    DESCRIPTOR ::= u16 type, u16 offset8, u16 len8, u16 flags, u64 transaction_id
    TRAILER    ::= u64 (start write index << 32)

offset8 is the header length (descriptor + extra header) / 8, len8 the packet length
(trailer excluded, padding included) / 8.  The extra header depends on the type:

    GPA_DIRECT (9)     ::= u32 reserved, u32 range_count, { GPA_RANGE }
    GPA_RANGE          ::= u32 byte_count, u32 byte_offset, u64 pfn[ceil((offset+count)/4096)]
    TRANSFER_PAGES (7) ::= u16 transfer_page_set_id, u8 sender_owns_set, u8 reserved,
                           u32 range_count, { u32 byte_count, u32 byte_offset }
    DATA_USING_GPADL (8) ::= u32 gpadl_handle, u32 range_count,
                           { u32 byte_count, u32 byte_offset }   (our layout, see FORMAT.md)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

PAGE_SIZE = 4096
DESCRIPTOR = struct.Struct("<HHHHQ")
TRAILER = struct.Struct("<Q")
DESCRIPTOR_SIZE = DESCRIPTOR.size  # 16
TRAILER_SIZE = TRAILER.size  # 8
FLAG_COMPLETION_REQUESTED = 0x1
KNOWN_DESCRIPTOR_FLAGS = FLAG_COMPLETION_REQUESTED


class PacketType(IntEnum):
    INBAND = 0x6
    TRANSFER_PAGES = 0x7
    DATA_USING_GPADL = 0x8
    GPA_DIRECT = 0x9
    COMPLETION = 0xB


# each ring packet's type is looked up here, and its members bound once: on Python 3.11
# `PacketType(x)` and `PacketType.INBAND` run EnumType's Python-level hooks at each use
_PACKET_TYPES = {int(t): t for t in PacketType}
_INBAND, _COMPLETION = PacketType.INBAND, PacketType.COMPLETION


class WireError(ValueError):
    """A packet breaks the reader rules; `where` names the field."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def align8(n: int) -> int:
    return (n + 7) & ~7


def pfn_count(byte_offset: int, byte_count: int) -> int:
    return (byte_offset + byte_count + PAGE_SIZE - 1) // PAGE_SIZE


@dataclass(frozen=True)
class GpaRange:
    """One GPA-direct range: byte_count bytes starting byte_offset into pfns[0]."""

    byte_count: int
    byte_offset: int
    pfns: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.byte_offset < PAGE_SIZE:
            raise WireError("byte_offset", f"{self.byte_offset} is not below {PAGE_SIZE}")
        if len(self.pfns) != pfn_count(self.byte_offset, self.byte_count):
            raise WireError(
                "pfns",
                f"{len(self.pfns)} PFNs for {self.byte_count} bytes at offset {self.byte_offset}",
            )


@dataclass(frozen=True)
class ByteRange:
    """A (byte_count, byte_offset) range inside a transfer page set or GPADL."""

    byte_count: int
    byte_offset: int


@dataclass(frozen=True)
class ExternalData:
    """What a packet describes beyond its inline bytes.

    kind is the packet type that carries it: GPA_DIRECT uses `gpa_ranges`;
    TRANSFER_PAGES and DATA_USING_GPADL use `handle` (the transfer page set id or GPADL
    handle) and `byte_ranges`.
    """

    kind: PacketType
    gpa_ranges: tuple[GpaRange, ...] = ()
    handle: int = 0
    byte_ranges: tuple[ByteRange, ...] = ()
    sender_owns_set: bool = False

    @property
    def total_bytes(self) -> int:
        ranges = self.gpa_ranges if self.kind == PacketType.GPA_DIRECT else self.byte_ranges
        return sum(r.byte_count for r in ranges)

    @property
    def pfn_total(self) -> int:
        return sum(len(r.pfns) for r in self.gpa_ranges)


def encode_extra_header(external: ExternalData | None) -> bytes:
    if external is None:
        return b""
    if external.kind == PacketType.GPA_DIRECT:
        parts = [struct.pack("<II", 0, len(external.gpa_ranges))]
        for r in external.gpa_ranges:
            parts.append(struct.pack(f"<II{len(r.pfns)}Q", r.byte_count, r.byte_offset, *r.pfns))
        return b"".join(parts)
    if external.kind == PacketType.TRANSFER_PAGES:
        head = struct.pack(
            "<HBBI", external.handle, int(external.sender_owns_set), 0, len(external.byte_ranges)
        )
    elif external.kind == PacketType.DATA_USING_GPADL:
        head = struct.pack("<II", external.handle, len(external.byte_ranges))
    else:
        raise WireError("type", f"type {external.kind:#x} carries no external data")
    body = b"".join(struct.pack("<II", r.byte_count, r.byte_offset) for r in external.byte_ranges)
    return head + body


def decode_extra_header(ptype: int, buf: bytes | memoryview) -> ExternalData | None:
    """Parse the bytes between the descriptor and offset8*8 for packet type `ptype`."""
    n = len(buf)
    if ptype == _INBAND or ptype == _COMPLETION:
        return None
    if n < 8:
        raise WireError("extra_header", f"{n} bytes, need 8 for type {ptype:#x}")
    if ptype == PacketType.GPA_DIRECT:
        _reserved, count = struct.unpack_from("<II", buf, 0)
        pos, ranges = 8, []
        for i in range(count):
            if pos + 8 > n:
                raise WireError(f"gpa_ranges[{i}]", "runs past the header")
            byte_count, byte_offset = struct.unpack_from("<II", buf, pos)
            if byte_offset >= PAGE_SIZE:
                raise WireError(f"gpa_ranges[{i}].byte_offset", f"{byte_offset} >= {PAGE_SIZE}")
            pfns = pfn_count(byte_offset, byte_count)
            if pos + 8 + 8 * pfns > n:
                raise WireError(f"gpa_ranges[{i}].pfns", "runs past the header")
            pfn_values = struct.unpack_from(f"<{pfns}Q", buf, pos + 8)
            ranges.append(GpaRange(byte_count, byte_offset, tuple(pfn_values)))
            pos += 8 + 8 * pfns
        return ExternalData(PacketType.GPA_DIRECT, gpa_ranges=tuple(ranges))
    if ptype == PacketType.TRANSFER_PAGES:
        handle, owns, _reserved, count = struct.unpack_from("<HBBI", buf, 0)
    elif ptype == PacketType.DATA_USING_GPADL:
        handle, count = struct.unpack_from("<II", buf, 0)
        owns = 0
    else:
        raise WireError("type", f"unknown packet type {ptype:#x}")
    if 8 + 8 * count > n:
        raise WireError("range_count", f"{count} ranges do not fit in {n - 8} header bytes")
    byte_ranges = tuple(
        ByteRange(*struct.unpack_from("<II", buf, 8 + 8 * i)) for i in range(count)
    )
    return ExternalData(
        PacketType(ptype), handle=handle, byte_ranges=byte_ranges, sender_owns_set=bool(owns)
    )


@dataclass
class WirePacket:
    """A packet as it stands in a ring."""

    type: PacketType
    flags: int
    transaction_id: int
    payload: bytes  # padded to 8 bytes: the wire keeps no exact length
    external: ExternalData | None = None
    offset: int = 0  # byte offset in the data area where the descriptor starts
    length: int = 0  # len8 * 8
    header_length: int = 0  # offset8 * 8
    trailer: int = field(default=0, repr=False)

    @property
    def total_size(self) -> int:
        return self.length + TRAILER_SIZE


def encode_packet(
    ptype: int, flags: int, transaction_id: int, payload: bytes,
    external: ExternalData | None = None,
) -> bytes:
    """Build descriptor + extra header + padded payload (no trailer)."""
    extra = encode_extra_header(external)
    header_length = DESCRIPTOR_SIZE + len(extra)
    length = align8(header_length + len(payload))
    desc = DESCRIPTOR.pack(ptype, header_length // 8, length // 8, flags, transaction_id)
    pad = b"\0" * (length - header_length - len(payload))
    return desc + extra + payload + pad


def packet_length(descriptor: bytes | memoryview, available: int) -> int:
    """len8 * 8 of the packet whose descriptor this is, checked against the reader rules
    and the `available` bytes before the write index (DOMAIN §5)."""
    if available < DESCRIPTOR_SIZE + TRAILER_SIZE:
        raise WireError("descriptor", f"only {available} bytes before the write index")
    ptype, offset8, len8, flags, _txid = DESCRIPTOR.unpack_from(descriptor)
    check_descriptor(ptype, offset8, len8, flags)
    length: int = len8 * 8
    if length + TRAILER_SIZE > available:
        raise WireError("descriptor.len8", f"packet of {length} bytes runs past the write index")
    return length


def wire_packet(raw: bytes, offset: int) -> WirePacket:
    """The packet in `raw` (descriptor to trailer, as `packet_length` measured it), which
    starts at `offset` of the data area."""
    ptype, offset8, len8, flags, txid = DESCRIPTOR.unpack_from(raw)
    length, header_length = len8 * 8, offset8 * 8
    (trailer,) = TRAILER.unpack_from(raw, length)
    if trailer != offset << 32:
        raise WireError("trailer", f"{trailer:#x} != start index {offset} << 32")
    external = decode_extra_header(ptype, raw[DESCRIPTOR_SIZE:header_length])
    return WirePacket(
        _PACKET_TYPES[ptype], flags, txid, raw[header_length:length], external,
        offset=offset, length=length, header_length=header_length, trailer=trailer,
    )


def check_descriptor(ptype: int, offset8: int, len8: int, flags: int) -> None:
    """DOMAIN §5 reader rules."""
    if ptype not in _PACKET_TYPES:
        raise WireError("descriptor.type", f"unknown packet type {ptype:#x}")
    if offset8 < 2:
        raise WireError("descriptor.offset8",
                        f"{offset8} < 2: the header would end inside the 16-byte descriptor")
    if len8 < offset8:
        raise WireError("descriptor.len8",
                        f"{len8} < offset8 {offset8}: the packet would end inside its header")
    if flags & ~KNOWN_DESCRIPTOR_FLAGS:
        unknown = flags & ~KNOWN_DESCRIPTOR_FLAGS
        raise WireError("descriptor.flags", f"unknown flag bits {unknown:#x}")
