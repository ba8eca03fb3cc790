"""Channel context: the offer, the configuration the init calls set, and the state.

    CHANNEL_CONTEXT ::= u8 role, u8 state, GUID interface_type, GUID interface_instance,
                        u16 subchannel_index, u32 flags, u32 max_packet_size,
                        u32 max_external_data_size, u32 max_chain_length,
                        u32 client_context_size, u32 mmio_megabytes,
                        u32 mmio_megabytes_optional, u32 incoming_ring_pages,
                        u32 outgoing_ring_pages, u16 name_length, utf8 friendly_name,
                        u64 next_transaction_id, u64 next_incoming_number,
                        u32 next_gpadl_handle
"""

from construct import Int8ul, Int16ul, Int32ul, Int64ul, PascalString, Struct

from .common import Guid, StrictEnum

# state values are ServerState for role server, ClientState for role client
ChannelContext = Struct(
    "role" / StrictEnum(Int8ul, server=0, client=1),
    "state" / Int8ul,
    "interface_type" / Guid,
    "interface_instance" / Guid,
    "subchannel_index" / Int16ul,
    "flags" / Int32ul,
    "max_packet_size" / Int32ul,
    "max_external_data_size" / Int32ul,
    "max_chain_length" / Int32ul,
    "client_context_size" / Int32ul,
    "mmio_megabytes" / Int32ul,
    "mmio_megabytes_optional" / Int32ul,
    "incoming_ring_pages" / Int32ul,
    "outgoing_ring_pages" / Int32ul,
    "friendly_name" / PascalString(Int16ul, "utf8"),
    "next_transaction_id" / Int64ul,
    "next_incoming_number" / Int64ul,
    "next_gpadl_handle" / Int32ul,
)
