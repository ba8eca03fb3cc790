"""The init calls of a channel endpoint (VmbChannelInitSet*, DOMAIN.md §2): what it is
configured with, allowed only until its first enable.

Calls return an NtStatus as KMCL does; nothing here raises for a caller's mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from vmbtool.sim.config import (
    KNOWN_FLAGS,
    MAX_FRIENDLY_NAME,
    MAX_PACKET_SIZE_LIMIT,
    ChannelConfig,
    Role,
    StateCallbacks,
)
from vmbtool.sim.packet import IncomingPacket
from vmbtool.status import NtStatus

if TYPE_CHECKING:
    from vmbtool.sim.bus import VmBus
    from vmbtool.sim.endpoint import Channel

ProcessPacket = Callable[["Channel", IncomingPacket], None]
ProcessingComplete = Callable[["Channel"], None]


class ChannelInit:
    """The init calls both endpoints take, and what they set."""

    role: Role

    def __init__(self, bus: VmBus) -> None:
        self.bus = bus
        self.config = ChannelConfig()
        self.callbacks = StateCallbacks()
        self.process_packet: ProcessPacket | None = None
        self.processing_complete: ProcessingComplete | None = None
        self.initializing = True  # init calls allowed until the first enable
        self.cleaned_up = False

    # -- init calls ------------------------------------------------------------
    def _init_check(self) -> NtStatus | None:
        if self.cleaned_up or not self.initializing:
            return NtStatus.INVALID_PARAMETER_1
        return None

    def init_set_maximum_packet_size(self, size: int) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not 0 < size <= MAX_PACKET_SIZE_LIMIT:
            return NtStatus.INVALID_PARAMETER_2
        self.config.max_packet_size = size
        return NtStatus.SUCCESS

    def init_set_maximum_external_data(self, size: int, chain_length: int) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if size <= 0 or size > 0xFFFF_FFFF:
            return NtStatus.INVALID_PARAMETER_2
        if chain_length <= 0 or chain_length > 0xFFFF_FFFF:
            return NtStatus.INVALID_PARAMETER_3
        self.config.max_external_data_size = size
        self.config.max_chain_length = chain_length
        return NtStatus.SUCCESS

    def init_set_client_context_size(self, size: int) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not 0 <= size <= 0xFFFF_FFFF:
            return NtStatus.INVALID_PARAMETER_2
        self.config.client_context_size = size
        return NtStatus.SUCCESS

    def init_set_friendly_name(self, name: str) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not isinstance(name, str) or not name or len(name) > MAX_FRIENDLY_NAME:
            return NtStatus.INVALID_PARAMETER_2
        self.config.friendly_name = name
        return NtStatus.SUCCESS

    def init_set_flags(self, flags: int) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if flags < 0 or flags & ~KNOWN_FLAGS[self.role]:
            return NtStatus.INVALID_PARAMETER_2  # unknown flag bits are invalid
        self.config.flags = flags
        return NtStatus.SUCCESS

    def init_set_mmio_megabytes(self, megabytes: int, megabytes_optional: int = 0) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not 0 <= megabytes <= 0xFFFF_FFFF:
            return NtStatus.INVALID_PARAMETER_2
        if not 0 <= megabytes_optional <= 0xFFFF_FFFF:
            return NtStatus.INVALID_PARAMETER_3
        self.config.mmio_megabytes = megabytes
        self.config.mmio_megabytes_optional = megabytes_optional
        return NtStatus.SUCCESS

    def init_set_target_interface_id(
        self, interface_type: UUID, interface_instance: UUID, subchannel_index: int = 0
    ) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not isinstance(interface_type, UUID) or interface_type.int == 0:
            return NtStatus.INVALID_PARAMETER_2
        if not isinstance(interface_instance, UUID):
            return NtStatus.INVALID_PARAMETER_3
        if not 0 <= subchannel_index <= 0xFFFF:
            return NtStatus.INVALID_PARAMETER
        self.config.interface_type = interface_type
        self.config.interface_instance = interface_instance
        self.config.subchannel_index = subchannel_index
        return NtStatus.SUCCESS

    def init_set_process_packet_callbacks(
        self, process_packet: ProcessPacket, processing_complete: ProcessingComplete | None = None
    ) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not callable(process_packet):
            return NtStatus.INVALID_PARAMETER_2
        if processing_complete is not None and not callable(processing_complete):
            return NtStatus.INVALID_PARAMETER_3
        self.process_packet = process_packet
        self.processing_complete = processing_complete
        return NtStatus.SUCCESS

    def init_set_state_change_callbacks(self, callbacks: StateCallbacks) -> NtStatus:
        if (bad := self._init_check()) is not None:
            return bad
        if not isinstance(callbacks, StateCallbacks):
            return NtStatus.INVALID_PARAMETER_2
        self.callbacks = callbacks
        return NtStatus.SUCCESS
