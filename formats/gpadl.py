"""GPADL table: every GPADL the channel's client created and has not deleted.

    GPADL_TABLE ::= u32 count, { GPADL }
    GPADL       ::= u32 handle, u8 read_only, u8 mapped, u32 byte_offset,
                    u32 byte_length, u32 pfn_count, u64 pfn[pfn_count]
"""

from construct import Int32ul, Int64ul, PrefixedArray, Struct

from .common import StrictFlag

Gpadl = Struct(
    "handle" / Int32ul,
    "read_only" / StrictFlag,
    "mapped" / StrictFlag,
    "byte_offset" / Int32ul,
    "byte_length" / Int32ul,
    "pfns" / PrefixedArray(Int32ul, Int64ul),
)

GpadlTable = Struct("gpadls" / PrefixedArray(Int32ul, Gpadl))
