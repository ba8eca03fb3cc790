"""End chunks: one closes each channel's saved state, one closes the blob.

    CHANNEL_END ::= u32 gpadl_count, u32 packet_count, u32 incoming_count
    BLOB_END    ::= u32 channel_count, u32 chunk_count, u32 packet_count,
                    u8 sha256[32] (of the header and every chunk before this one)
"""

from construct import Bytes, Int32ul, Struct

ChannelEnd = Struct(
    "gpadl_count" / Int32ul,
    "packet_count" / Int32ul,
    "incoming_count" / Int32ul,
)

BlobEnd = Struct(
    "channel_count" / Int32ul,
    "chunk_count" / Int32ul,
    "packet_count" / Int32ul,
    "digest" / Bytes(32),
)
