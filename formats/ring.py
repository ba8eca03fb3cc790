"""Ring state: one ring's control fields and its whole data area.

    RING_STATE ::= u8 direction (0 incoming, 1 outgoing, as the server sees them),
                   u32 write_index, u32 read_index, u32 interrupt_mask,
                   u32 pending_send_size, u32 feature_bits, u32 data_pages,
                   u8 data[data_pages * 4096]

The rest of the 4096-byte control page is reserved and restored as zeros.
"""

from construct import Bytes, Int8ul, Int32ul, Struct, this

from .common import StrictEnum

RingState = Struct(
    "direction" / StrictEnum(Int8ul, incoming=0, outgoing=1),
    "write_index" / Int32ul,
    "read_index" / Int32ul,
    "interrupt_mask" / Int32ul,
    "pending_send_size" / Int32ul,
    "feature_bits" / Int32ul,
    "data_pages" / Int32ul,
    "data" / Bytes(this.data_pages * 4096),
)

# RingState's fields before its data area: what a reader parses of a ring whose data it
# streams through in blocks instead of holding (a ring of 1 MiB or more)
RingControl = Struct(*RingState.subcons[:-1])
