"""The chunk registry: chunk types, their grammars and whether a reader must know them.

Dispatch by table: readers, writers and the schema look chunk types up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import google_crc32c
from construct import Construct

from vmbtool import codec
from vmbtool.formats.channel import ChannelContext
from vmbtool.formats.chunk import ChunkHeader
from vmbtool.formats.end import BlobEnd, ChannelEnd
from vmbtool.formats.gpadl import GpadlTable
from vmbtool.formats.incoming import PendingIncoming
from vmbtool.formats.packet import PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.formats.scenario import ScenarioState
from vmbtool.formats.stats import Annotation, ChannelStats

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
