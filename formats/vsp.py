"""VSP state: what a simulated VSP or VSC keeps beyond its packets.

    VSP_STATE ::= u32 size, u8 state[size]

The bytes are the scenario's own (like a VSP's SaveBuf, opaque to the library); each
scenario documents its layout in FORMAT.md.
"""

from construct import GreedyBytes, Int32ul, Prefixed

VspState = Prefixed(Int32ul, GreedyBytes)
