"""Packet context: the library's own state of one packet object in use ("LibBuf").

    PACKET_RECORD  ::= u32 lib_size, PACKET_CONTEXT, u32 save_size, u8 save_buf[save_size]
    PACKET_CONTEXT ::= u64 transaction_id, u8 state, u16 type, u32 send_flags,
                       u32 ring_offset, u64 pointer, u8 routine_length,
                       ascii completion_routine, u32 payload_length, u8 payload[],
                       EXTERNAL_DATA

save_buf is the VSP's (or, for guest packets, the VSC's) own per-transaction state,
opaque to the library, stored beside the LibBuf as KMCL hands them over.
"""

from construct import (
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    PascalString,
    Prefixed,
    Struct,
)

from .common import ExternalData, StrictEnum, StrictPrefixed

PacketState = StrictEnum(
    Int8ul, allocated=0, backlog=1, in_ring=2, awaiting_completion=3
)

PacketType = StrictEnum(
    Int16ul, inband=6, transfer_pages=7, data_using_gpadl=8, gpa_direct=9, completion=11
)

PacketContext = Struct(
    "transaction_id" / Int64ul,
    "state" / PacketState,
    "type" / PacketType,
    "send_flags" / Int32ul,
    "ring_offset" / Int32ul,
    "pointer" / Int64ul,
    "completion_routine" / PascalString(Int8ul, "ascii"),
    "payload" / Prefixed(Int32ul, GreedyBytes),
    "external" / ExternalData,
)

PacketRecord = Struct(
    "lib_buf" / StrictPrefixed(Int32ul, PacketContext),
    "save_buf" / Prefixed(Int32ul, GreedyBytes),
)
