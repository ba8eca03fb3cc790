"""Pending incoming packets: handed to process-packet, not yet completed.

    PENDING_INCOMING ::= u32 count, { INCOMING }
    INCOMING         ::= u64 number (arrival order), u64 transaction_id, u16 type,
                         u16 flags, u32 payload_length, u8 payload[], EXTERNAL_DATA
"""

from construct import GreedyBytes, Int16ul, Int32ul, Int64ul, Prefixed, PrefixedArray, Struct

from .common import ExternalData
from .packet import PacketType

Incoming = Struct(
    "number" / Int64ul,
    "transaction_id" / Int64ul,
    "type" / PacketType,
    "flags" / Int16ul,
    "payload" / Prefixed(Int32ul, GreedyBytes),
    "external" / ExternalData,
)

PendingIncoming = Struct("packets" / PrefixedArray(Int32ul, Incoming))
