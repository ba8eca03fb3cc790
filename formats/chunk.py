"""Chunk framing and the chunk-type table: the body of a blob is a stream of framed
chunks.

    BODY   ::= { CHUNK } END_CHUNK
    CHUNK  ::= u16 type, u8 flags (bit 0: required), u8 reserved (0),
               u32 length, u32 crc32c (of the data), u8 data[length]

A reader that meets a chunk type it does not know skips it when the required bit is
clear and refuses the blob when it is set. `CHUNK_TYPES` says, for each type, the
grammar its data parses with, whether it is required and the format version that
added it (`kinds.CHUNK_KINDS`, which names the grammars; readers, writers, the schema
and FORMAT.md's table all look types up there).
"""

from construct import Const, Int8ul, Int16ul, Int32ul, Struct

from . import channel, end, gpadl, incoming, packet, ring, scenario, stats
from .kinds import CHUNK_KINDS, FLAG_REQUIRED, KNOWN_CHUNK_FLAGS, ChunkKind, ChunkType
from .kinds import known_to as _known_to

__all__ = ["CHUNK_HEADER_SIZE", "CHUNK_TYPES", "FLAG_REQUIRED", "KNOWN_CHUNK_FLAGS",
           "ChunkHeader", "ChunkKind", "ChunkType", "known_to"]

ChunkHeader = Struct(
    "type" / Int16ul,
    "flags" / Int8ul,
    "reserved" / Const(0, Int8ul),
    "length" / Int32ul,
    "crc32c" / Int32ul,
)

CHUNK_HEADER_SIZE = ChunkHeader.sizeof()


_MODULES = {m.__name__.rpartition(".")[2]: m
            for m in (channel, end, gpadl, incoming, packet, ring, scenario, stats)}


def _grammar(name: str):
    module, _, grammar = name.partition(".")
    return getattr(_MODULES[module], grammar)


# `kinds.CHUNK_KINDS` with each chunk type's grammar itself
CHUNK_TYPES: dict[int, ChunkKind] = {
    t: kind._replace(grammar=_grammar(kind.grammar)) for t, kind in CHUNK_KINDS.items()}


def known_to(reads: tuple[int, int]) -> dict[int, ChunkKind]:
    """The chunk types a reader of format `reads` knows: those added up to it."""
    return _known_to(reads, CHUNK_TYPES)
