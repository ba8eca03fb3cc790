"""`pipe`: pipe-mode datagrams both ways, no transactions.

Our simulated pipe protocol (invented, documented in the README): each datagram is an
inband packet without wait-for-completion carrying u32 sequence, u16 length, u16
reserved, then `length` bytes. The server offers as a pipe (0x4), the client opens in
pipe mode (0x1). A datagram is complete once in the ring, so the only packet objects in
use are those in the backlog; the VSP keeps no per-packet state (its save callback
reports 0 bytes needed).
"""

from __future__ import annotations

import random
import struct
from uuid import UUID

from vmbtool.scenarios.base import Scenario, check, unpack
from vmbtool.sim import (
    ClientChannel,
    ClientFlags,
    IncomingPacket,
    ServerChannel,
    ServerFlags,
)

DATAGRAM = struct.Struct("<IHH")


class PipeScenario(Scenario):
    name = "pipe"
    interface_type = UUID("9f8eb72d-1b2c-4c4e-8d0a-6b3c3e1d5a10")  # our simulated pipe

    def __init__(self, seed: int) -> None:
        super().__init__(seed)

    def configure_server(self, channel: ServerChannel, index: int) -> None:
        check(channel.init_set_flags(ServerFlags.OFFER_AS_PIPE), "init flags")

    def configure_client(self, channel: ClientChannel, index: int) -> None:
        check(channel.init_set_flags(ClientFlags.PIPE_MODE), "init flags")
        check(channel.init_set_ring_buffer_page_counts(1, 1), "init ring pages")

    def send_datagram(self, channel, rng: random.Random, who: str) -> None:
        packet = channel.packet_allocate()
        assert packet is not None
        body = rng.randbytes(rng.randint(16, 200))
        sequence = packet.transaction_id & 0xFFFFFFFF  # a u32 sequence number wraps
        check(channel.packet_send(packet, DATAGRAM.pack(sequence, len(body), 0) + body),
              f"{who} datagram send")

    def receive(self, who: str, channel, incoming: IncomingPacket) -> None:
        seq, length, _ = unpack(DATAGRAM, incoming.payload, "datagram")
        body = incoming.payload[DATAGRAM.size:DATAGRAM.size + length]
        self.log(f"{who} got datagram seq={seq} len={length} sum={sum(body) & 0xFFFF:#06x}")

    def host_process_packet(self, channel: ServerChannel, incoming: IncomingPacket) -> None:
        self.receive("host", channel, incoming)

    def guest_process_packet(self, channel: ClientChannel, incoming: IncomingPacket) -> None:
        self.receive("guest", channel, incoming)

    def host_step(self, rng: random.Random) -> None:
        channel = self.servers[0]
        if not channel.io_running:
            return
        channel.poll()
        for _ in range(rng.randint(0, 4)):
            self.send_datagram(channel, rng, "host")

    def guest_step(self, rng: random.Random) -> None:
        channel = self.clients[0]
        channel.poll(budget=rng.randint(0, 3))
        for _ in range(rng.randint(0, 2)):
            self.send_datagram(channel, rng, "guest")
