"""A ring's checks: its control fields, and a walk over its packets (DOMAIN §5 reader
rules) that streams the data area and keeps what the channel checks need of each packet
(`RingIndex`)."""

from __future__ import annotations

import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from vmbtool.invariants.problems import Problem
from vmbtool.sim.config import MAX_RING_PAGES
from vmbtool.sim.wire import (
    DESCRIPTOR_SIZE,
    FLAG_COMPLETION_REQUESTED,
    PAGE_SIZE,
    TRAILER_SIZE,
    PacketType,
    WireError,
    WirePacket,
    packet_length,
    wire_packet,
)

WALK_BLOCK = 256 << 10  # a streamed ring walk holds a few blocks of this size
_COMPLETION = PacketType.COMPLETION  # (bound once: see kmcl.staging)


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

    COMPLETION_REQUESTED, COMPLETION, CLAIMED = FLAG_COMPLETION_REQUESTED, 2, 4

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
                          (self.COMPLETION if wire.type == _COMPLETION else 0))

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
