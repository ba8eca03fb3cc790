"""Chunk framing and the chunk-type table: the body of a blob is a stream of framed
chunks.

    BODY   ::= { CHUNK } END_CHUNK
    CHUNK  ::= u16 type, u8 flags (bit 0: required), u8 reserved (0),
               u32 length, u32 crc32c (of the data), u8 data[length]

A reader that meets a chunk type it does not know skips it when the required bit is
clear and refuses the blob when it is set. `CHUNK_TYPES` says, for each type, the
grammar its data parses with, whether it is required and the format version that
added it; readers, writers, the schema and FORMAT.md's table all look types up there.
"""

from dataclasses import dataclass
from enum import IntEnum

from construct import Const, Construct, Int8ul, Int16ul, Int32ul, Struct

from . import version_tuple
from .channel import ChannelContext
from .end import BlobEnd, ChannelEnd
from .gpadl import GpadlTable
from .incoming import PendingIncoming
from .packet import PacketRecord
from .ring import RingState
from .scenario import ScenarioState
from .stats import Annotation, ChannelStats

FLAG_REQUIRED = 0x1  # ChunkHeader.flags bit 0
KNOWN_CHUNK_FLAGS = FLAG_REQUIRED

ChunkHeader = Struct(
    "type" / Int16ul,
    "flags" / Int8ul,
    "reserved" / Const(0, Int8ul),
    "length" / Int32ul,
    "crc32c" / Int32ul,
)

CHUNK_HEADER_SIZE = ChunkHeader.sizeof()


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
    since: str = "1.0"  # the format version that added the chunk type


CHUNK_TYPES: dict[int, ChunkKind] = {
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


def known_to(reads: tuple[int, int]) -> dict[int, ChunkKind]:
    """The chunk types a reader of format `reads` knows: those added up to it."""
    return {t: k for t, k in CHUNK_TYPES.items() if version_tuple(k.since) <= reads}
