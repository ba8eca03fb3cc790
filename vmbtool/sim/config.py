"""Channel configuration set by the `*Init*` calls, and the channel state enums."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any
from uuid import UUID


class Role(IntEnum):
    SERVER = 0  # host side: the VSP offers the channel
    CLIENT = 1  # guest side: the VSC opens it


class ServerState(IntEnum):
    DISABLED = 0
    ENABLED = 1  # offered, not opened, not started
    STARTED = 2  # started, not yet opened by the client
    STOPPED = 3  # opened, not started
    PAUSED = 4  # opened, was started, paused
    ACTIVE = 5  # opened and started


class ClientState(IntEnum):
    DISABLED = 0
    ENABLED = 1  # enabled, the offer is not open
    OPENED = 2  # open, not started
    CLOSED = 3  # the server rescinded the offer
    PAUSED = 4
    ACTIVE = 5


class ClientFlags(IntFlag):
    PIPE_MODE = 0x1


class ServerFlags(IntFlag):
    LOOPBACK = 0x1
    ENUMERATE_DEVICE_INTERFACE = 0x2
    OFFER_AS_PIPE = 0x4
    FORCE_NEW_CHANNEL = 0x8
    SOCKET_PROVIDER = 0x10


KNOWN_FLAGS = {Role.SERVER: 0x1F, Role.CLIENT: 0x1}
MAX_FRIENDLY_NAME = 64  # characters; our limit, recorded in FORMAT.md
MAX_PACKET_SIZE_LIMIT = 0x10000  # larger packets could never fit a small ring
MAX_RING_PAGES = 4095


@dataclass
class ChannelConfig:
    """Everything the init calls set; saved as the channel's offer and configuration."""

    max_packet_size: int = 0x1000
    max_external_data_size: int = 0x10000
    max_chain_length: int = 32
    client_context_size: int = 0
    friendly_name: str = ""
    flags: int = 0
    mmio_megabytes: int = 0
    mmio_megabytes_optional: int = 0
    interface_type: UUID = UUID(int=0)
    interface_instance: UUID = UUID(int=0)
    subchannel_index: int = 0
    incoming_ring_pages: int = 16  # client side: the ring it reads
    outgoing_ring_pages: int = 16  # client side: the ring it writes

    @property
    def offer_key(self) -> tuple[UUID, UUID, int]:
        return (self.interface_type, self.interface_instance, self.subchannel_index)


StateCallback = Callable[[Any], None]


@dataclass(eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class StateCallbacks:
    """State-change callbacks, in the order the library calls them."""

    opened: StateCallback | None = None
    started: StateCallback | None = None
    post_started: StateCallback | None = None
    suspend: StateCallback | None = None
    closed: StateCallback | None = None
