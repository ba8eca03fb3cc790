"""The simulated VMBus: offers, opens and the connection between two endpoints."""

from __future__ import annotations

from uuid import UUID

from vmbtool.sim.channel import Channel, ClientChannel, ServerChannel
from vmbtool.sim.gpadl import GpadlTable
from vmbtool.sim.ring import RingBuffer
from vmbtool.status import NtStatus


class Connection:
    """An open channel: two rings in guest memory and the GPADL table.

    The client's outgoing ring is the server's incoming ring and the other way round.
    A restored server's connection has no client until its guest is attached again.
    """

    def __init__(self, server: ServerChannel, client: ClientChannel | None,
                 client_to_server: RingBuffer, server_to_client: RingBuffer,
                 gpadls: GpadlTable | None = None) -> None:
        self.server = server
        self.client = client
        self.client_to_server = client_to_server
        self.server_to_client = server_to_client
        self.gpadls = gpadls if gpadls is not None else GpadlTable()

    def outgoing(self, endpoint: Channel) -> RingBuffer:
        return self.server_to_client if endpoint is self.server else self.client_to_server

    def incoming(self, endpoint: Channel) -> RingBuffer:
        return self.client_to_server if endpoint is self.server else self.server_to_client

    def peer(self, endpoint: Channel) -> Channel:
        peer = self.client if endpoint is self.server else self.server
        assert peer is not None  # a restored server has its guest back before any I/O
        return peer


class VmBus:
    """Holds the offers; channels are allocated from it."""

    def __init__(self) -> None:
        self.offers: dict[tuple[UUID, UUID, int], ServerChannel] = {}

    def allocate_server_channel(self) -> ServerChannel:
        """VmbChannelAllocate on the host: the channel starts Disabled, in its init state."""
        return ServerChannel(self)

    def allocate_client_channel(self) -> ClientChannel:
        return ClientChannel(self)

    def offer(self, server: ServerChannel) -> NtStatus:
        key = server.config.offer_key
        if key in self.offers:
            return NtStatus.INVALID_DEVICE_STATE  # one server per offer
        self.offers[key] = server
        return NtStatus.SUCCESS

    def open(self, client: ClientChannel) -> NtStatus:
        server = self.offers.get(client.config.offer_key)
        if server is None:
            return NtStatus.DEVICE_REMOVED  # no such offer
        if server.connection is not None:
            return NtStatus.INVALID_DEVICE_STATE  # already opened by another client
        if server.is_pipe != client.is_pipe:
            return NtStatus.INVALID_PARAMETER  # pipe mode must match the offer
        connection = Connection(
            server, client,
            client_to_server=RingBuffer(client.config.outgoing_ring_pages),
            server_to_client=RingBuffer(client.config.incoming_ring_pages),
        )
        self.attach(connection)
        return NtStatus.SUCCESS

    def attach(self, connection: Connection) -> None:
        """Connect both endpoints: opened callbacks, server first (it accepts the open)."""
        connection.server._on_connected(connection)
        assert connection.client is not None
        connection.client._on_connected(connection)

    def close(self, client: ClientChannel) -> None:
        assert client.connection is not None
        server = client.connection.server
        client._on_disconnected()
        server._on_disconnected()

    def rescind(self, server: ServerChannel) -> None:
        self.offers.pop(server.config.offer_key, None)
        if server.connection is not None:
            client = server.connection.client
            assert client is not None
            server.connection.gpadls.gpadls.clear()  # torn down with the channel
            client.rescinded = True
            client._on_disconnected()
            server._on_disconnected()
