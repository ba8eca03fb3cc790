"""Chunk framing: the body of a blob is a stream of framed chunks.

    BODY   ::= { CHUNK } END_CHUNK
    CHUNK  ::= u16 type, u8 flags (bit 0: required), u8 reserved (0),
               u32 length, u32 crc32c (of the data), u8 data[length]

A reader that meets a chunk type it does not know skips it when the required bit is
clear and refuses the blob when it is set.
"""

from construct import Const, Int8ul, Int16ul, Int32ul, Struct

ChunkHeader = Struct(
    "type" / Int16ul,
    "flags" / Int8ul,
    "reserved" / Const(0, Int8ul),
    "length" / Int32ul,
    "crc32c" / Int32ul,
)
