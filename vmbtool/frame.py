"""A zstd body's framing (FORMAT.md "Compression", "The seal frame"): where its one zstd
frame ends, the seal after it, and skippable frames a newer minor adds.

The frame walk and the seal's CRC32C can be checked up front, reading the compressed
bytes for them alone (`zstd_frame_end`, `check_seal`), or on the way, by the reader
that feeds the decompressor (`SealScan`): the bytes are then read once."""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterator
from typing import IO

import google_crc32c
import zstandard

from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.inputs import CHANGED
from vmbtool.status import NtStatus

SEAL = struct.Struct("<II4sI")
SEAL_MAGIC = 0x184D2A5B
SEAL_TAG = b"SEAL"

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

    truncated(start, 5, "frame_header")
    magic, descriptor = struct.unpack("<IB", (yield start, 5, "frame_header"))
    if magic != zstandard.MAGIC_NUMBER:
        raise BlobError(f"body.frame_header (offset {start})",
                        f"not a zstd frame (magic {magic:#010x})")
    if descriptor & 0x08:
        raise BlobError(f"body.frame_header (offset {start + 4})", "reserved bit set")
    single_segment = bool(descriptor & 0x20)
    pos = start + 5 + (not single_segment) + (0, 1, 2, 4)[descriptor & 3] + \
        ((1 if single_segment else 0), 2, 4, 8)[descriptor >> 6]
    while truncated(pos, 3, "block_header"):
        value = int.from_bytes((yield pos, 3, "block_header"), "little")
        kind, size = (value >> 1) & 3, value >> 3
        if kind == 3:
            raise BlobError(f"body.block_header (offset {pos})", "reserved block type")
        pos += 3 + (1 if kind == 1 else size)
        if pos > end:
            raise BlobError(f"body.block (offset {pos - size})", "truncated zstd frame")
        if value & 1:
            break
    if descriptor & 0x04 and truncated(pos, 4, "content_checksum"):
        pos += 4
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
    if seal_at < start or seal_at + SEAL.size > end:
        raise BlobError(f"body.seal (offset {max(seal_at, start)})",
                        "truncated: no seal frame after the zstd frame")
    magic, size, tag, stored = SEAL.unpack(read_at(f, seal_at, SEAL.size, "body.seal"))
    if magic != SEAL_MAGIC or size != SEAL.size - 8 or tag != SEAL_TAG:
        raise BlobError(f"body.seal (offset {seal_at})",
                        "truncated or damaged: no seal frame after the zstd frame")
    return stored


def check_seal(f: IO[bytes], start: int, seal_at: int, end: int) -> int:
    """The seal frame at `seal_at`: its CRC32C of the bytes before it.

    Returns `seal_at`, where the compressed frame ends."""
    stored = read_seal(f, start, seal_at, end)
    crc = 0
    for block in blocks(f, start, seal_at):
        crc = google_crc32c.extend(crc, block)
    if crc != stored:
        raise BlobError(f"body.seal.crc32c (offset {seal_at + 12})",
                        "the compressed body does not match its checksum", NtStatus.CRC_ERROR)
    return seal_at


def skip_frames(f: IO[bytes], pos: int, end: int) -> None:
    """Skippable frames a newer minor put after the body: checked for shape, not read."""
    while pos < end:
        if end - pos < 8:
            raise BlobError(f"body (offset {pos})", "truncated frame after the body")
        magic, size = struct.unpack("<II", read_at(f, pos, 8, "body"))
        if magic & 0xFFFFFFF0 != 0x184D2A50 or pos + 8 + size > end:
            raise BlobError(f"body (offset {pos})",
                            "after the body's zstd frame only skippable frames may follow")
        pos += 8 + size


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
