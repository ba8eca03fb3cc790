"""Channel endpoints with the kernel-mode client library's life cycle (DOMAIN.md §2).

Calls return an NtStatus as KMCL does; nothing here raises for a caller's mistake.
The server endpoint is the VSP's (host); the client endpoint is the VSC's (guest). What
both share is `vmbtool.sim.endpoint.Channel` (life cycle, rings, packets), on the init
calls of `vmbtool.sim.initcalls.ChannelInit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmbtool.sim.config import (
    MAX_RING_PAGES,
    ClientState,
    Role,
    ServerState,
)
from vmbtool.sim.endpoint import Channel, ChannelStats
from vmbtool.sim.gpadl import Gpadl
from vmbtool.sim.initcalls import ProcessingComplete, ProcessPacket
from vmbtool.sim.packet import VmbPacket
from vmbtool.status import NtStatus

if TYPE_CHECKING:
    from vmbtool.sim.bus import VmBus

__all__ = [
    "Channel", "ChannelStats", "ClientChannel", "ProcessPacket", "ProcessingComplete",
    "RestorePacket", "SavePacket", "ServerChannel",
]

SavePacket = Callable[["Channel", VmbPacket, int], tuple[NtStatus, bytes, int]]
RestorePacket = Callable[["Channel", bytes, bytes], NtStatus]


class ServerChannel(Channel):
    """The VSP's endpoint: offers the channel; owns the save/restore packet callbacks."""

    role = Role.SERVER

    def __init__(self, bus: VmBus) -> None:
        super().__init__(bus)
        self.save_packet: SavePacket | None = None
        self.restore_packet: RestorePacket | None = None
        # the contract's state, kept and read by vmbtool.kmcl: the bus itself knows
        # nothing of saving (the layers below kmcl never import it)
        self.save_context: Any = None
        self.restore_context: Any = None
        self.restore_error: Any = None  # NtStatusError of the last failed restore

    @property
    def state(self) -> ServerState:
        if not self.enabled:
            return ServerState.DISABLED
        if not self.opened:
            return ServerState.STARTED if self.started else ServerState.ENABLED
        if self.paused or self.pausing:
            return ServerState.PAUSED
        return ServerState.ACTIVE if self.started else ServerState.STOPPED

    def init_set_save_restore_packet_callbacks(
        self, save_packet: SavePacket, restore_packet: RestorePacket
    ) -> NtStatus:
        """VmbServerChannelInitSetSaveRestorePacketCallbacks: init-time only."""
        if (bad := self._init_check()) is not None:
            return bad
        if not callable(save_packet):
            return NtStatus.INVALID_PARAMETER_2
        if not callable(restore_packet):
            return NtStatus.INVALID_PARAMETER_3
        self.save_packet = save_packet
        self.restore_packet = restore_packet
        return NtStatus.SUCCESS

    def enable(self) -> NtStatus:
        """Offer the channel on the bus."""
        if self.cleaned_up or self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        if self.config.interface_type.int == 0 or self.process_packet is None:
            return NtStatus.INVALID_DEVICE_STATE  # nothing to offer, nobody to process
        status = self.bus.offer(self)
        if status == NtStatus.SUCCESS:
            self.enabled = True
            self.initializing = False
        return status

    def disable(self) -> NtStatus:
        """Rescind the offer; the client is closed and GPADLs are torn down."""
        if self.cleaned_up or not self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        self.bus.rescind(self)
        self.enabled = False
        return NtStatus.SUCCESS

    # -- GPADLs the client created -------------------------------------------------
    def gpadl_map(self, handle: int) -> tuple[NtStatus, Gpadl | None]:
        if self.connection is None:
            return NtStatus.INVALID_DEVICE_STATE, None
        return self.connection.gpadls.map(handle)

    def gpadl_unmap(self, handle: int) -> NtStatus:
        if self.connection is None:
            return NtStatus.INVALID_DEVICE_STATE
        return self.connection.gpadls.unmap(handle)


class ClientChannel(Channel):
    """The VSC's endpoint: opens an offer; creates and deletes GPADLs."""

    role = Role.CLIENT

    def __init__(self, bus: VmBus) -> None:
        super().__init__(bus)
        self.rescinded = False

    @property
    def state(self) -> ClientState:
        if not self.enabled:
            return ClientState.DISABLED
        if not self.opened:
            return ClientState.CLOSED if self.rescinded else ClientState.ENABLED
        if self.paused or self.pausing:
            return ClientState.PAUSED
        return ClientState.ACTIVE if self.started else ClientState.OPENED

    def init_set_ring_buffer_page_counts(self, incoming: int, outgoing: int) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not 0 < incoming <= MAX_RING_PAGES:
            return NtStatus.INVALID_PARAMETER_2
        if not 0 < outgoing <= MAX_RING_PAGES:
            return NtStatus.INVALID_PARAMETER_3
        self.config.incoming_ring_pages = incoming
        self.config.outgoing_ring_pages = outgoing
        return NtStatus.SUCCESS

    def enable(self) -> NtStatus:
        """Open the offer named by the target interface id."""
        if self.cleaned_up or self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        if self.process_packet is None:
            return NtStatus.INVALID_DEVICE_STATE
        status = self.bus.open(self)
        if status == NtStatus.SUCCESS:
            self.enabled = True
            self.initializing = False
        return status

    def disable(self) -> NtStatus:
        """Close the channel; every GPADL must have been torn down first."""
        if self.cleaned_up or not self.enabled:
            return NtStatus.INVALID_DEVICE_STATE
        if self.connection is not None and self.connection.gpadls.gpadls:
            return NtStatus.INVALID_DEVICE_STATE
        if self.connection is not None:
            self.bus.close(self)
        self.enabled = False
        return NtStatus.SUCCESS

    def gpadl_create(
        self, pfns: tuple[int, ...], byte_offset: int, byte_length: int, read_only: bool = False
    ) -> tuple[NtStatus, int]:
        if self.connection is None:
            return NtStatus.INVALID_DEVICE_STATE, 0
        return self.connection.gpadls.create(tuple(pfns), byte_offset, byte_length, read_only)

    def gpadl_delete(self, handle: int) -> NtStatus:
        if self.connection is None:
            return NtStatus.INVALID_DEVICE_STATE
        return self.connection.gpadls.delete(handle)
