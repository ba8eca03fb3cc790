"""The chunk stream: chunk types, their grammars and whether a reader must know them;
framing a chunk, and splitting a buffer of whole chunks (RestoreFromBuffer's input).

    CHUNK ::= HEADER(type, flags, reserved, length, crc32c) DATA[length]

Dispatch by table: readers, writers and the schema look chunk types up here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import google_crc32c
from construct import Construct

from vmbtool import codec
from vmbtool.errors import BlobError
from vmbtool.formats.channel import ChannelContext
from vmbtool.formats.chunk import ChunkHeader
from vmbtool.formats.end import BlobEnd, ChannelEnd
from vmbtool.formats.gpadl import GpadlTable
from vmbtool.formats.incoming import PendingIncoming
from vmbtool.formats.packet import PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.formats.scenario import ScenarioState
from vmbtool.formats.stats import Annotation, ChannelStats
from vmbtool.status import NtStatus

CHUNK_HEADER_SIZE = ChunkHeader.sizeof()
FLAG_REQUIRED = 0x1
KNOWN_CHUNK_FLAGS = FLAG_REQUIRED
MAX_CHUNK_LENGTH = 32 * 1024 * 1024  # refuse larger declared lengths before allocating


class ChunkType(IntEnum):
    CHANNEL = 0x0001
    RING = 0x0002
    GPADLS = 0x0003
    PACKET = 0x0004
    INCOMING = 0x0005
    CHANNEL_END = 0x0006
    STATS = 0x0007
    SCENARIO = 0x0010
    NOTE = 0x0011
    END = 0x00FF


@dataclass(frozen=True)
class ChunkKind:
    type: ChunkType
    name: str
    grammar: Construct
    required: bool
    since: str = "1.0"  # the format version that added the chunk type (vmbtool.schema)


REGISTRY: dict[int, ChunkKind] = {
    kind.type: kind
    for kind in (
        ChunkKind(ChunkType.CHANNEL, "channel", ChannelContext, True),
        ChunkKind(ChunkType.RING, "ring", RingState, True),
        ChunkKind(ChunkType.GPADLS, "gpadls", GpadlTable, True),
        ChunkKind(ChunkType.PACKET, "packet", PacketRecord, True),
        ChunkKind(ChunkType.INCOMING, "pending_incoming", PendingIncoming, True),
        ChunkKind(ChunkType.CHANNEL_END, "channel_end", ChannelEnd, True),
        ChunkKind(ChunkType.STATS, "stats", ChannelStats, False, "1.1"),
        ChunkKind(ChunkType.SCENARIO, "scenario", ScenarioState, True),
        ChunkKind(ChunkType.NOTE, "note", Annotation, False, "1.1"),
        ChunkKind(ChunkType.END, "end", BlobEnd, True),
    )
}


def version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor)


def known_to(reads: tuple[int, int]) -> dict[int, ChunkKind]:
    """The chunk types a reader of format `reads` knows: those added up to it."""
    return {t: k for t, k in REGISTRY.items() if version_tuple(k.since) <= reads}


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def frame(chunk_type: ChunkType, obj: object, where: str = "") -> bytes:
    """Build a chunk's data with its grammar and frame it."""
    kind = REGISTRY[chunk_type]
    data = codec.build(kind.grammar, obj, where or kind.name)
    return frame_bytes(chunk_type, data, FLAG_REQUIRED if kind.required else 0)


def frame_bytes(chunk_type: int, data: bytes, flags: int) -> bytes:
    header = codec.build(ChunkHeader, {
        "type": chunk_type, "flags": flags, "reserved": 0, "length": len(data),
        "crc32c": crc32c(data)}, "chunk_header")
    return header + data


# -- framed chunks in a buffer (whole chunks, as RestoreFromBuffer takes them) ------


@dataclass
class RawChunk:
    type: int
    flags: int
    data: bytes
    offset: int  # of the chunk header, in whatever stream it came from
    head: bytes = b""  # the 12 header bytes as read, when they were
    blocks: Iterator[bytes] | None = None  # the data, streamed (then `data` is empty)

    @property
    def length(self) -> int:
        """The data's length, as its header declares it (a streamed chunk's `data` is
        empty)."""
        return int.from_bytes(self.head[4:8], "little") if self.head else len(self.data)

    @property
    def required(self) -> bool:
        return bool(self.flags & 1)

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
    kind = REGISTRY.get(header["type"])
    if kind is not None and bool(header["flags"] & FLAG_REQUIRED) != kind.required:
        # the END chunk's own header is under no checksum: its flags byte must be exact
        raise BlobError(f"chunk@{offset}.flags", f"a {kind.name} chunk has the required bit "
                        f"{'clear' if kind.required else 'set'}")
    if header["length"] > MAX_CHUNK_LENGTH:
        raise BlobError(f"chunk@{offset}.length",
                        f"{header['length']} bytes exceeds the {MAX_CHUNK_LENGTH}-byte cap",
                        NtStatus.INVALID_BUFFER_SIZE)


def check_chunk_crc(header: Any, data: bytes, offset: int) -> None:
    if crc32c(data) != header["crc32c"]:
        raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch", NtStatus.CRC_ERROR)


def split_chunks(buffer: bytes, base: int = 0) -> list[RawChunk]:
    """A buffer of whole chunks, each checked (flags, cap, CRC) before anything else."""
    chunks: list[RawChunk] = []
    pos, view = 0, memoryview(buffer)
    while pos < len(buffer):
        if len(buffer) - pos < CHUNK_HEADER_SIZE:
            raise BlobError(f"chunk@{base + pos}", "partial chunk header",
                            NtStatus.INVALID_BUFFER_SIZE)
        head = bytes(view[pos:pos + CHUNK_HEADER_SIZE])
        header = codec.parse(ChunkHeader, head, "chunk_header", base + pos)
        check_chunk_header(header, base + pos)
        start, length = pos + CHUNK_HEADER_SIZE, header["length"]
        if start + length > len(buffer):
            raise BlobError(f"chunk@{base + pos}.length", f"{length} bytes run past the buffer",
                            NtStatus.INVALID_BUFFER_SIZE)
        data = bytes(view[start:start + length])
        check_chunk_crc(header, data, base + pos)
        chunks.append(RawChunk(header["type"], header["flags"], data, base + pos, head))
        pos = start + length
    return chunks


def framed_chunks(buffer: bytes) -> list[bytes]:
    """The whole chunks of a buffer SaveContinue filled, as they stand. Nothing is
    checked: SaveContinue framed them a moment ago (restore uses `split_chunks`)."""
    chunks: list[bytes] = []
    pos, size = 0, len(buffer)
    while pos < size:
        end = pos + CHUNK_HEADER_SIZE + int.from_bytes(buffer[pos + 4:pos + 8], "little")
        chunks.append(buffer[pos:end])
        pos = end
    return chunks


def decode_chunk(raw: RawChunk, where: str) -> Any:
    kind = REGISTRY.get(raw.type)
    if kind is None:
        return None
    return codec.parse(kind.grammar, raw.data, f"{where}.{kind.name}",
                       raw.offset + CHUNK_HEADER_SIZE)
