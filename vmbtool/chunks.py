"""The chunk stream: framing a chunk, and splitting a buffer of whole chunks
(RestoreFromBuffer's input). The chunk header is `vmbtool.formats.chunk`'s, the chunk
types and their table `vmbtool.formats.kinds`'; each type's data parses with the code
generated from its grammar (`codec.named`), so no construct is imported for a usual
chunk.

    CHUNK ::= HEADER(type, flags, reserved, length, crc32c) DATA[length]
"""

from __future__ import annotations

import io
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import google_crc32c

from vmbtool import codec
from vmbtool.errors import BlobError
from vmbtool.formats import limits
from vmbtool.formats.kinds import CHUNK_KINDS, FLAG_REQUIRED, KNOWN_CHUNK_FLAGS, ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_LAYOUT, CHUNK_HEADER_SIZE, ChunkHeader
from vmbtool.status import NtStatus


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def frame(chunk_type: ChunkType, obj: object, where: str = "") -> bytes:
    """Build a chunk's data with its grammar and frame it."""
    kind = CHUNK_KINDS[chunk_type]
    return frame_data(chunk_type, codec.build(GRAMMARS[chunk_type], obj, where or kind.name))


def frame_data(chunk_type: ChunkType, data: bytes) -> bytes:
    """Frame data already built with its chunk type's grammar (the required bit as
    the type's kind says). (`frame_bytes`, whose type and flags are known good: one
    call a packet fewer on save.)"""
    if len(data) > 0xFFFF_FFFF:
        return frame_bytes(chunk_type, data, USUAL_FLAGS[chunk_type])  # (raises)
    return CHUNK_HEADER.pack(chunk_type, USUAL_FLAGS[chunk_type], 0, len(data),
                             google_crc32c.value(data)) + data


def frame_bytes(chunk_type: int, data: bytes, flags: int) -> bytes:
    """A chunk's header (the grammar's layout, `CHUNK_HEADER`) and its data."""
    if not (0 <= chunk_type <= 0xFFFF and 0 <= flags <= 0xFF and len(data) <= 0xFFFF_FFFF):
        codec.build(ChunkHeader, {  # raises, naming the field that does not fit
            "type": chunk_type, "flags": flags, "reserved": 0, "length": len(data),
            "crc32c": 0}, "chunk_header")
    return CHUNK_HEADER.pack(chunk_type, flags, 0, len(data), crc32c(data)) + data


# -- framed chunks in a buffer (whole chunks, as RestoreFromBuffer takes them) ------


@dataclass(slots=True, eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class RawChunk:
    """One framed chunk as a stream gave it: type, flags, data and where it stood."""

    type: int
    flags: int
    data: bytes
    offset: int  # of the chunk header, in whatever stream it came from
    head: bytes = b""  # the 12 header bytes as read, when they were
    blocks: Iterator[bytes] | None = None  # the data, streamed (then `data` is empty)
    declared: int | None = None  # the length its header declares, when it was read
    parsed: Any = None  # its data parsed with its type's grammar, once it was (decode_chunk)

    @property
    def length(self) -> int:
        """The data's length, as its header declares it (a streamed chunk's `data` is
        empty)."""
        return len(self.data) if self.declared is None else self.declared

    @property
    def required(self) -> bool:
        return bool(self.flags & FLAG_REQUIRED)

    @property
    def header_bytes(self) -> bytes:
        """The chunk's header as it stands in a stream (length and CRC of its data)."""
        return self.head or codec.build(ChunkHeader, {
            "type": self.type, "flags": self.flags, "reserved": 0,
            "length": len(self.data), "crc32c": crc32c(self.data)}, "chunk_header")

    @property
    def framed(self) -> bytes:
        """The chunk as it stands in a stream: header (with its CRC) and data."""
        return self.header_bytes + self.data


def check_chunk_header(header: Any, offset: int) -> None:
    if header["flags"] & ~KNOWN_CHUNK_FLAGS:
        raise BlobError(f"chunk@{offset}.flags", f"unknown flag bits {header['flags']:#x}")
    kind = CHUNK_KINDS.get(header["type"])
    if kind is not None and bool(header["flags"] & FLAG_REQUIRED) != kind.required:
        # the END chunk's own header is under no checksum: its flags byte must be exact
        raise BlobError(f"chunk@{offset}.flags", f"a {kind.name} chunk has the required bit "
                        f"{'clear' if kind.required else 'set'}")
    if header["length"] > limits.MAX_CHUNK_LENGTH:
        raise BlobError(f"chunk@{offset}.length",
                        f"{header['length']} bytes exceeds the {limits.MAX_CHUNK_LENGTH}-byte cap",
                        NtStatus.INVALID_BUFFER_SIZE)


CHUNK_HEADER = CHUNK_HEADER_LAYOUT  # the grammar's layout, as a struct (generated)
# the flags byte each known chunk type's header has (the required bit, as its kind says)
USUAL_FLAGS = {t: FLAG_REQUIRED if kind.required else 0 for t, kind in CHUNK_KINDS.items()}
# each known chunk type's grammar, as the code generated from it
GRAMMARS = {t: codec.named(kind.grammar) for t, kind in CHUNK_KINDS.items()}
STREAM_BLOCK = 256 << 10  # a streamed chunk's data comes in blocks of this size


def parse_chunk_header(head: bytes, offset: int) -> dict[str, int]:
    """A chunk header, unpacked directly: it is read for every chunk. Through the
    grammar when its reserved byte is not 0 (the grammar's Const says why)."""
    kind, flags, reserved, length, crc = CHUNK_HEADER.unpack(head)
    if reserved:
        codec.parse(ChunkHeader, head, "chunk_header", offset)  # raises, naming the field
    return {"type": kind, "flags": flags, "reserved": 0, "length": length, "crc32c": crc}


class SourceFailed(Exception):
    """The bytes under a chunk stream could not be read on (a corrupt zstd frame): the
    parser names the place, the source says why (`str()`)."""


class Framing(NamedTuple):
    """How a chunk stream ends early: a buffer RestoreFromBuffer takes is too short
    (INVALID_BUFFER_SIZE, in the contract's words), a blob's body is truncated."""

    short_header: str
    short_data: str  # formatted with `length` and `present`
    status: NtStatus


BUFFER = Framing("partial chunk header", "{length} bytes run past the buffer",
                 NtStatus.INVALID_BUFFER_SIZE)
BODY = Framing("truncated chunk header", "truncated: {length} bytes declared, {present} present",
               NtStatus.DATA_ERROR)


def iter_chunks(read: Callable[[int], bytes], *, base: int = 0, framing: Framing = BODY,
                admit: Callable[[int, int, int, int], None] | None = None,
                admitted: Container[int] = (),
                stream_if: Callable[[int, int], bool] | None = None,
                on_block: Callable[[bytes], None] | None = None) -> Iterator[RawChunk]:
    """The chunk stream: framed chunks read from `read(n)` (fewer bytes only at the
    stream's end), each checked as it comes: header (flags, required bit, the length
    cap) before its data is read, then its CRC32C. The one parser of chunk framing: a
    blob's body and a buffer handed to RestoreFromBuffer go through it alike.

    `base` is the offset of the first chunk (errors say `chunk@<offset>`). `admit(type,
    flags, length, offset)` may refuse a chunk before its data is read (one of a type in
    `admitted` is not asked about). A chunk
    `stream_if(type, length)` picks comes with its data as `blocks` (each also handed to
    `on_block`), its CRC checked after the last; whatever the caller left unread of them
    is read before the next chunk.

    (Every chunk passes here: a header whose fields are as a known chunk type has them
    is taken straight from the layout; any other goes through `parse_chunk_header` and
    `check_chunk_header`, which name what is wrong.)"""
    offset = base
    unpack, usual_flags, crc32c_value = CHUNK_HEADER.unpack, USUAL_FLAGS, google_crc32c.value
    while True:
        try:
            head = read(CHUNK_HEADER_SIZE)
            if len(head) != CHUNK_HEADER_SIZE and head:
                head += read_exact(read, CHUNK_HEADER_SIZE - len(head))
        except SourceFailed as exc:
            raise BlobError(f"body (decompressed offset {offset})", str(exc)) from None
        if len(head) != CHUNK_HEADER_SIZE:
            if not head:
                return
            raise BlobError(f"chunk@{offset}", framing.short_header, framing.status)
        kind, flags, reserved, length, crc = unpack(head)
        if reserved or usual_flags.get(kind) != flags or length > limits.MAX_CHUNK_LENGTH:
            check_chunk_header(parse_chunk_header(head, offset), offset)  # says what, if
        if admit is not None and kind not in admitted:
            admit(kind, flags, length, offset)
        if stream_if is not None and stream_if(kind, length):
            blocks = chunk_blocks(read, length, crc, offset, framing, on_block)
            yield RawChunk(kind, flags, b"", offset, head, blocks, length)
            for _ in blocks:
                pass
        else:
            try:
                data = read(length)
                if len(data) != length and data:
                    data += read_exact(read, length - len(data))
            except SourceFailed as exc:
                raise BlobError(f"chunk@{offset} (decompressed)", str(exc)) from None
            if len(data) != length:
                raise BlobError(f"chunk@{offset}.length", framing.short_data.format(
                    length=length, present=len(data)), framing.status)
            if crc32c_value(data) != crc:
                raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch",
                                NtStatus.CRC_ERROR)
            yield RawChunk(kind, flags, data, offset, head, None, length)
        offset += CHUNK_HEADER_SIZE + length


def chunk_blocks(read: Callable[[int], bytes], length: int, expected_crc: int, offset: int,
                 framing: Framing, on_block: Callable[[bytes], None] | None,
                 ) -> Iterator[bytes]:
    """A chunk's data in blocks; its CRC is checked when the last has been read."""
    crc, left = 0, length
    while left:
        try:
            block = read_exact(read, min(left, STREAM_BLOCK))
        except SourceFailed as exc:
            raise BlobError(f"chunk@{offset} (decompressed)", str(exc)) from None
        if not block:
            raise BlobError(f"chunk@{offset}.length", framing.short_data.format(
                length=length, present=length - left), framing.status)
        crc = google_crc32c.extend(crc, block)
        if on_block is not None:
            on_block(block)
        left -= len(block)
        yield block
    if crc != expected_crc:
        raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch", NtStatus.CRC_ERROR)


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to `n` bytes, fewer only at the end of the stream (one buffer when it can)."""
    data = read(n)
    if len(data) == n or not data:
        return data
    parts, left = [data], n - len(data)
    while left:
        block = read(min(left, 1 << 20))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def split_chunks(buffer: bytes, base: int = 0) -> list[RawChunk]:
    """A buffer of whole chunks (RestoreFromBuffer's input), each checked (flags, cap,
    CRC) before anything else."""
    return list(iter_chunks(io.BytesIO(buffer).read, base=base, framing=BUFFER))


def decode_chunk(raw: RawChunk, where: str) -> Any:
    """The chunk's data parsed with its type's grammar (None for an unknown type), once:
    a chunk handed on (a reader's to RestoreFromBuffer) is not parsed again."""
    if raw.parsed is not None:
        return raw.parsed
    kind = CHUNK_KINDS.get(raw.type)
    if kind is None:
        return None
    raw.parsed = codec.parse(GRAMMARS[raw.type], raw.data, f"{where}.{kind.name}",
                             raw.offset + CHUNK_HEADER_SIZE)
    return raw.parsed


def scan_chunk(raw: RawChunk, where: str) -> Any:
    """The chunk's data scanned (`codec.scan`: tuples, views of the data), for a check
    that keeps nothing of it; not kept with the chunk."""
    kind = CHUNK_KINDS[raw.type]
    return codec.scan(GRAMMARS[raw.type], raw.data, f"{where}.{kind.name}",
                      raw.offset + CHUNK_HEADER_SIZE)
