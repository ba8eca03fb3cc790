"""Packet objects (VMBPACKET) and incoming packets awaiting VmbChannelPacketComplete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from vmbtool.sim.wire import FLAG_COMPLETION_REQUESTED, ExternalData, PacketType


class SendFlags(IntFlag):
    """VmbPacketSend flags (DOMAIN §2)."""

    NONE = 0
    WAIT_FOR_COMPLETION = 0x1
    FORCE_MDL_LENGTH = 0x2
    PAGED_BUFFER = 0x4


# every flag VmbPacketSend takes, as an int (the ~ of a flag keeps only its known bits)
KNOWN_SEND_FLAGS = int(SendFlags.WAIT_FOR_COMPLETION | SendFlags.FORCE_MDL_LENGTH
                       | SendFlags.PAGED_BUFFER)


class PacketState(IntEnum):
    """Where a packet object in use stands; the saved names are the JSON states."""

    ALLOCATED = 0  # allocated, not yet sent
    BACKLOG = 1  # queued on the channel: the outgoing ring had no room
    IN_RING = 2  # in the outgoing ring, not yet read by the opposite endpoint
    AWAITING_COMPLETION = 3  # read by the opposite endpoint, completion not yet back
    FREE = 4

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


CompletionRoutine = Callable[["VmbPacket", int, bytes], None]


@dataclass(eq=False, slots=True)
class VmbPacket:
    """One outgoing message through its whole transaction."""

    channel: Any
    transaction_id: int = 0
    type: PacketType = PacketType.INBAND
    send_flags: int = 0
    payload: bytes = b""
    external: ExternalData | None = None
    completion_routine_name: str = ""
    completion_routine: CompletionRoutine | None = field(default=None, repr=False)
    pointer: int = 0
    state: PacketState = PacketState.ALLOCATED
    ring_offset: int = 0
    vsp_context: Any = field(default=None, repr=False)  # the VSP's own per-packet state

    @property
    def wants_completion(self) -> bool:
        return bool(self.send_flags & SendFlags.WAIT_FOR_COMPLETION)

    @property
    def wire_flags(self) -> int:
        return FLAG_COMPLETION_REQUESTED if self.wants_completion else 0

    # KMCL names ---------------------------------------------------------------
    def set_completion_routine(self, name: str, routine: CompletionRoutine | None) -> None:
        """VmbPacketSetCompletionRoutine; the name is what a save keeps of the routine."""
        self.completion_routine_name = name
        self.completion_routine = routine

    def set_pointer(self, pointer: int) -> None:
        """VmbPacketSetPointer: an opaque u64 tag the VSP keeps with the packet."""
        self.pointer = pointer & 0xFFFF_FFFF_FFFF_FFFF

    def get_pointer(self) -> int:
        return self.pointer


@dataclass(eq=False, slots=True)
class IncomingPacket:
    """A packet handed to process-packet, pending until packet_complete."""

    transaction_id: int
    type: PacketType
    flags: int
    payload: bytes
    external: ExternalData | None = None
    completed: bool = False
    number: int = 0  # arrival order on the channel; keys the pending table

    @property
    def wants_completion(self) -> bool:
        return bool(self.flags & FLAG_COMPLETION_REQUESTED)
