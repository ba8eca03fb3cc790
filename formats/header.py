"""The file header: the only part of a blob that is never compressed.

    FILE_HEADER ::= magic "VMBSAVE\\0", u16 format_major, u16 format_minor,
                    u32 header_size, u32 flags, u8 compression, i8 level, u16 reserved (0),
                    char writer_version[16], u64 created_ns, u32 channel_count,
                    [fields of newer minors], HEADER_TRAILER
    HEADER_TRAILER ::= u32 header_crc32c (of every header byte before it)
    BLOB        ::= FILE_HEADER BODY [SIGNATURE_FRAME]

header_size counts everything up to and including header_crc32c, so a newer minor can
append fields that older readers skip.  header_crc32c covers every byte before it.
"""

from construct import (
    Const,
    Int8sl,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    PaddedString,
    Struct,
)

from .common import StrictEnum

MAGIC = b"VMBSAVE\x00"
FLAG_SIGNED = 0x1  # FileHeader.flags bit 0: a SIGNATURE_FRAME ends the file
KNOWN_HEADER_FLAGS = FLAG_SIGNED

# The fixed prefix every version shares: enough to say what a blob is.
HeaderPrefix = Struct(
    "magic" / Const(MAGIC),
    "format_major" / Int16ul,
    "format_minor" / Int16ul,
    "header_size" / Int32ul,
)

FileHeader = Struct(
    "magic" / Const(MAGIC),
    "format_major" / Int16ul,
    "format_minor" / Int16ul,
    "header_size" / Int32ul,
    "flags" / Int32ul,
    "compression" / StrictEnum(Int8ul, none=0, zstd=1),
    "level" / Int8sl,
    "reserved" / Const(0, Int16ul),
    "writer_version" / PaddedString(16, "ascii"),
    "created_ns" / Int64ul,
    "channel_count" / Int32ul,
)

# The last four bytes of the header, at header_size - 4, whatever a newer minor appended
HeaderTrailer = Struct(
    "header_crc32c" / Int32ul,
)

HEADER_SIZE = FileHeader.sizeof() + HeaderTrailer.sizeof()  # of a 1.0 or 1.1 header
