"""Scenario state: what the simulated guest side needs so the scenario carries on.

    SCENARIO_STATE ::= u8 name_length, ascii scenario, u64 seed, u64 steps_taken,
                       VSP_STATE vsp_state, VSP_STATE vsc_state,
                       u32 guest_count, { GUEST_CHANNEL }
    GUEST_CHANNEL  ::= u32 size, CHANNEL_CONTEXT (role client),
                       u32 packet_count, { PACKET_RECORD }, PENDING_INCOMING

In a real VM the guest's memory holds its rings and its driver state; the blob holds
them too so it restores on its own. The rings themselves are in the server's RING chunks.
"""

from construct import Int8ul, Int32ul, Int64ul, PascalString, PrefixedArray, Struct

from .channel import ChannelContext
from .common import StrictPrefixed
from .incoming import PendingIncoming
from .packet import PacketRecord
from .vsp import VspState

GuestChannel = Struct(
    "context" / StrictPrefixed(Int32ul, ChannelContext),
    "packets" / PrefixedArray(Int32ul, PacketRecord),
    "pending_incoming" / PendingIncoming,
)

ScenarioState = Struct(
    "scenario" / PascalString(Int8ul, "ascii"),
    "seed" / Int64ul,
    "steps_taken" / Int64ul,
    "vsp_state" / VspState,
    "vsc_state" / VspState,
    "guests" / PrefixedArray(Int32ul, GuestChannel),
)

# ScenarioState's fields before its guests: what a reader parses at once before it takes
# the guests apart one at a time
ScenarioHead = Struct(*ScenarioState.subcons[:-1])
