"""A simulated VMBus: endpoints, rings with the real byte layout, GPADLs, packets."""

from vmbtool.sim.bus import Connection, VmBus
from vmbtool.sim.channel import Channel, ClientChannel, ServerChannel
from vmbtool.sim.config import (
    ChannelConfig,
    ClientFlags,
    ClientState,
    Role,
    ServerFlags,
    ServerState,
    StateCallbacks,
)
from vmbtool.sim.packet import IncomingPacket, PacketState, SendFlags, VmbPacket
from vmbtool.sim.ring import RingBuffer, RingFull
from vmbtool.sim.wire import ByteRange, ExternalData, GpaRange, PacketType

__all__ = [
    "ByteRange", "Channel", "ChannelConfig", "ClientChannel", "ClientFlags", "ClientState",
    "Connection", "ExternalData", "GpaRange", "IncomingPacket", "PacketState", "PacketType",
    "RingBuffer", "RingFull", "Role", "SendFlags", "ServerChannel", "ServerFlags",
    "ServerState", "StateCallbacks", "VmBus", "VmbPacket",
]
