"""A zstd body's framing (FORMAT.md "Compression", "The seal frame"): where its one zstd
frame ends, the seal after it, and skippable frames a newer minor adds.

The frame walk and the seal's CRC32C can be checked up front, reading the compressed
bytes for them alone (`zstd_frame_end`, `check_seal`), or on the way, by the reader
that feeds the decompressor (`SealScan`): the bytes are then read once."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import IO

import google_crc32c

from vmbtool import codec
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.generated.frames import (
    SKIPPABLE_MAGIC,
    SKIPPABLE_MAGIC_MASK,
    ZSTD_BLOCK_RESERVED,
    ZSTD_BLOCK_RLE,
    ZSTD_CHECKSUM_FLAG,
    ZSTD_CONTENT_CHECKSUM_SIZE,
    ZSTD_CONTENT_SIZE_SIZES,
    ZSTD_DICT_ID_SIZES,
    ZSTD_MAGIC,
    ZSTD_RESERVED_BIT,
    ZSTD_SINGLE_SEGMENT,
    SealFrame,
    SkippableFrameHeader,
    ZstdBlockHeader,
    ZstdFrameStart,
)
from vmbtool.inputs import CHANGED
from vmbtool.status import NtStatus

SEAL_SIZE = SealFrame.size
FRAME_START_SIZE = ZstdFrameStart.size
BLOCK_HEADER_SIZE = ZstdBlockHeader.size

# (offset, size, what) of the bytes the walk needs next, in rising order
Need = tuple[int, int, str]


def frame_walk(start: int, end: int) -> Generator[Need, bytes, int]:
    """Where the zstd frame at `start` ends, from its frame and block headers (RFC 8878):
    yields the offset, size and name of the bytes it needs next, is sent them, and
    returns the frame's end. Nothing of the frame may reach past `end`.

    The body is exactly one frame: anything after it would otherwise be skipped unseen."""

    def truncated(pos: int, n: int, what: str) -> bool:
        if pos + n > end:
            raise BlobError(f"body.{what} (offset {pos})", "truncated zstd frame")
        return True

    truncated(start, FRAME_START_SIZE, "frame_header")
    frame = codec.parse(ZstdFrameStart, (yield start, FRAME_START_SIZE, "frame_header"),
                        "body.frame_header", start)
    descriptor = frame.descriptor
    if frame.magic != ZSTD_MAGIC:
        raise BlobError(f"body.frame_header (offset {start})",
                        f"not a zstd frame (magic {frame.magic:#010x})")
    if descriptor & ZSTD_RESERVED_BIT:
        raise BlobError(f"body.frame_header (offset {start + 4})", "reserved bit set")
    single_segment = bool(descriptor & ZSTD_SINGLE_SEGMENT)
    content_size = ZSTD_CONTENT_SIZE_SIZES[descriptor >> 6] or int(single_segment)
    pos = start + FRAME_START_SIZE + (not single_segment) + \
        ZSTD_DICT_ID_SIZES[descriptor & 3] + content_size
    while truncated(pos, BLOCK_HEADER_SIZE, "block_header"):
        value = codec.parse(ZstdBlockHeader, (yield pos, BLOCK_HEADER_SIZE, "block_header"),
                            "body.block_header", pos)
        kind, size = (value >> 1) & 3, value >> 3
        if kind == ZSTD_BLOCK_RESERVED:
            raise BlobError(f"body.block_header (offset {pos})", "reserved block type")
        pos += BLOCK_HEADER_SIZE + (1 if kind == ZSTD_BLOCK_RLE else size)
        if pos > end:
            raise BlobError(f"body.block (offset {pos - size})", "truncated zstd frame")
        if value & 1:
            break
    if descriptor & ZSTD_CHECKSUM_FLAG and \
            truncated(pos, ZSTD_CONTENT_CHECKSUM_SIZE, "content_checksum"):
        pos += ZSTD_CONTENT_CHECKSUM_SIZE
    return pos


def blocks(f: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    """The bytes [start, end) of a seekable file, in 1 MiB blocks. The file's size was
    taken when it was opened: one that ends before `end` now has changed since."""
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            raise BlobError(f"file (offset {end - left})", CHANGED)
        yield block
        left -= len(block)


def read_at(f: IO[bytes], pos: int, n: int, what: str) -> bytes:
    """`n` bytes at `pos` of a file whose size said they are there (or CHANGED)."""
    f.seek(pos)
    data = f.read(n)
    if len(data) != n:
        raise BlobError(f"{what} (offset {pos + len(data)})", CHANGED)
    return data


def zstd_frame_end(f: IO[bytes], start: int, end: int) -> int:
    """`frame_walk`, reading the few bytes it needs from `f`."""
    walk = frame_walk(start, end)
    try:
        pos, n, what = next(walk)
        while True:
            pos, n, what = walk.send(read_at(f, pos, n, f"body.{what}"))
    except StopIteration as done:
        return done.value


def read_seal(f: IO[bytes], start: int, seal_at: int, end: int) -> int:
    """The seal frame at `seal_at` closing a 1.1+ zstd body; returns its CRC32C."""
    if seal_at < start or seal_at + SEAL_SIZE > end:
        raise BlobError(f"body.seal (offset {max(seal_at, start)})",
                        "truncated: no seal frame after the zstd frame")
    data = read_at(f, seal_at, SEAL_SIZE, "body.seal")
    try:
        return codec.parse(SealFrame, data, "body.seal", seal_at).crc32c
    except BlobError:
        raise BlobError(f"body.seal (offset {seal_at})",
                        "truncated or damaged: no seal frame after the zstd frame") from None


def check_seal(f: IO[bytes], start: int, seal_at: int, end: int) -> int:
    """The seal frame at `seal_at`: its CRC32C of the bytes before it.

    Returns `seal_at`, where the compressed frame ends."""
    stored = read_seal(f, start, seal_at, end)
    crc = 0
    for block in blocks(f, start, seal_at):
        crc = google_crc32c.extend(crc, block)
    if crc != stored:
        raise BlobError(f"body.seal.crc32c (offset {seal_at + SEAL_SIZE - 4})",
                        "the compressed body does not match its checksum", NtStatus.CRC_ERROR)
    return seal_at


def skip_frames(f: IO[bytes], pos: int, end: int) -> None:
    """Skippable frames a newer minor put after the body: checked for shape, not read."""
    while pos < end:
        head_size = SkippableFrameHeader.size
        if end - pos < head_size:
            raise BlobError(f"body (offset {pos})", "truncated frame after the body")
        head = codec.parse(SkippableFrameHeader, read_at(f, pos, head_size, "body"), "body", pos)
        if head.magic & SKIPPABLE_MAGIC_MASK != SKIPPABLE_MAGIC or \
                pos + head_size + head.frame_size > end:
            raise BlobError(f"body (offset {pos})",
                            "after the body's zstd frame only skippable frames may follow")
        pos += head_size + head.frame_size


class SealScan:
    """The compressed bytes [start, seal_at) of a file, read in order for a decompressor
    (`read`, `seek` to `start` only), with the seal's CRC32C and the frame walk made of
    them as they pass. `drain()` reads what the decompressor left, up to the seal.

    `sound` says whether the walk ended exactly at the seal and the CRC matched; any
    other outcome is left to the up-front checks, which name the error."""

    def __init__(self, f: IO[bytes], start: int, seal_at: int, stored: int) -> None:
        self.f, self.start, self.seal_at, self.stored = f, start, seal_at, stored
        self.pos = start
        self.crc = 0
        self.walk = frame_walk(start, seal_at)
        self.got = b""  # the bytes of `need` seen so far
        self.frame_end: int | None = None
        self.walk_failed = False
        self.drained = False
        self.need: Need | None = None
        try:
            self.need = next(self.walk)
        except BlobError:
            self.walk_failed = True

    def seek(self, pos: int, whence: int = 0) -> int:
        if (pos, whence) != (self.start, 0) or self.pos != self.start:
            raise ValueError("a SealScan is read once, from its start")
        self.f.seek(pos)
        return pos

    def read(self, n: int = -1) -> bytes:
        left = self.seal_at - self.pos
        data = self.f.read(left if n < 0 else min(n, left))
        if data:
            self.crc = google_crc32c.extend(self.crc, data)
            self.follow(data)
            self.pos += len(data)
        return data

    def follow(self, data: bytes) -> None:
        """Hand the walk the bytes it asked for among `data` (file offset `self.pos`)."""
        end = self.pos + len(data)
        while self.need is not None:
            at, n, _what = self.need
            wanted_from = at + len(self.got)
            if wanted_from >= end:
                return
            self.got += data[wanted_from - self.pos:at + n - self.pos]
            if len(self.got) < n:
                return
            got, self.got = self.got, b""
            try:
                self.need = self.walk.send(got)
            except StopIteration as done:
                self.need, self.frame_end = None, done.value
            except BlobError:
                self.need, self.walk_failed = None, True

    def drain(self) -> None:
        """Read on to the seal: the CRC covers every byte before it. A failed read
        leaves the scan unsound (the up-front checks then read the file again)."""
        try:
            while self.read(1 << 20):
                pass
        except (OSError, ValueError, VmbtoolError):  # VmbtoolError: a file that changed
            return
        self.drained = self.pos == self.seal_at

    @property
    def sound(self) -> bool:
        return (self.drained and not self.walk_failed and self.frame_end == self.seal_at
                and self.crc == self.stored)
