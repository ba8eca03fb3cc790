"""The chunk-type table without the grammars themselves: each chunk type's number, name,
whether it is required, the format version that added it, and the grammar its data
parses with, by name ("packet.PacketRecord": `PacketRecord` of `formats/packet.py`).

This module imports no construct, so a reader's usual path (which runs the code generated
from those grammars, found by name: `vmbtool.codec.named`) never loads it.
`chunk.CHUNK_TYPES` is this table with the grammars themselves, for the schema.
"""

from enum import IntEnum
from typing import Any, NamedTuple

from . import version_tuple

FLAG_REQUIRED = 0x1  # ChunkHeader.flags bit 0
KNOWN_CHUNK_FLAGS = FLAG_REQUIRED


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


class ChunkKind(NamedTuple):  # (a NamedTuple: a fifth of a frozen dataclass's start-up)
    type: ChunkType
    name: str
    # the grammar the data parses with: its name here ("module.Grammar" of the formats),
    # the grammar itself in `chunk.CHUNK_TYPES`
    grammar: Any
    required: bool
    since: str = "1.0"  # the format version that added the chunk type


CHUNK_KINDS: dict[int, ChunkKind] = {
    kind.type: kind
    for kind in (
        ChunkKind(ChunkType.CHANNEL, "channel", "channel.ChannelContext", True),
        ChunkKind(ChunkType.RING, "ring", "ring.RingState", True),
        ChunkKind(ChunkType.GPADLS, "gpadls", "gpadl.GpadlTable", True),
        ChunkKind(ChunkType.PACKET, "packet", "packet.PacketRecord", True),
        ChunkKind(ChunkType.INCOMING, "pending_incoming", "incoming.PendingIncoming", True),
        ChunkKind(ChunkType.CHANNEL_END, "channel_end", "end.ChannelEnd", True),
        ChunkKind(ChunkType.STATS, "stats", "stats.ChannelStats", False, "1.1"),
        ChunkKind(ChunkType.SCENARIO, "scenario", "scenario.ScenarioState", True),
        ChunkKind(ChunkType.NOTE, "note", "stats.Annotation", False, "1.1"),
        ChunkKind(ChunkType.END, "end", "end.BlobEnd", True),
    )
}


def known_to(reads: tuple[int, int], table: dict[int, ChunkKind] | None = None
             ) -> dict[int, ChunkKind]:
    """The chunk types a reader of format `reads` knows: those of `table` (this module's
    by default) added up to it."""
    return {t: k for t, k in (CHUNK_KINDS if table is None else table).items()
            if version_tuple(k.since) <= reads}
