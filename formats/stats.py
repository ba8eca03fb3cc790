"""Format 1.1 additions: per-channel statistics and a free-form annotation.

    CHANNEL_STATS ::= u32 channel, u64 packets_sent, u64 packets_completed,
                      u64 bytes_sent, u64 backlog_entries, u64 backlog_packet_steps
    ANNOTATION    ::= u32 length, utf8 text[length]

Both chunks are optional (required bit clear): a 1.0 reader skips them.  Statistics
follow their channel's CHANNEL_END; the annotation comes before the first channel.
"""

from construct import Int32ul, Int64ul, PascalString, Struct

ChannelStats = Struct(
    "channel" / Int32ul,
    "packets_sent" / Int64ul,
    "packets_completed" / Int64ul,
    "bytes_sent" / Int64ul,
    "backlog_entries" / Int64ul,
    "backlog_packet_steps" / Int64ul,
)

Annotation = Struct(
    "text" / PascalString(Int32ul, "utf8"),
)
