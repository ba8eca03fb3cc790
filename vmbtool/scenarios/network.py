"""`network`: a primary channel plus subchannels, receive buffers, bursts from the host.

Our simulated netvsp protocol (invented, documented in the README):

- after open, the guest creates a receive-buffer GPADL per queue (16 pages) and the host
  maps it; the host splits it into 64 sections of 1024 bytes;
- RECEIVE (host -> guest, transfer pages, wait-for-completion): an RNDIS-like header
  (u32 message type 1, u32 message length, u32 data offset, u32 data length) and
  48..240 bytes of frame, plus one transfer-page range naming the section it filled;
  the guest's completion returns the section;
- SEND (guest -> host, inband, wait-for-completion): a frame; the host completes it at once.

Bursts of up to 6 receives per queue per step fill the guest's 2-page ring while the
guest drains at most 2 packets per queue per step, so a backlog forms. The VSP saves,
per RECEIVE packet object, (queue, section, frame length).
"""

from __future__ import annotations

import random
import struct
from uuid import UUID

from vmbtool.scenarios.base import Scenario, check, unpack
from vmbtool.sim import (
    ByteRange,
    ClientChannel,
    ExternalData,
    IncomingPacket,
    PacketState,
    PacketType,
    SendFlags,
    ServerChannel,
    VmbPacket,
)
from vmbtool.status import NtStatus

RNDIS_HEADER = struct.Struct("<IIII")
RECEIVE_STATE = struct.Struct("<HHI")  # VSP SaveBuf: queue, section, frame length
SEND_HEADER = struct.Struct("<II")
RECV_BUFFER_PAGES = 16
SECTION_SIZE = 1024
SECTIONS = RECV_BUFFER_PAGES * 4096 // SECTION_SIZE
RECV_BUFFER_PFN_BASE = 0x40000


class NetworkScenario(Scenario):
    name = "network"
    interface_type = UUID("f8615163-df3e-46c5-913f-f2d2f965ed0e")  # synthetic network
    channel_count = 3  # primary + 2 subchannels, one per queue

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.receive_buffers: dict[int, int] = {}  # queue -> GPADL handle

    def configure_server(self, channel: ServerChannel, index: int) -> None:
        check(channel.init_set_maximum_packet_size(1600), "init max packet size")
        check(channel.init_set_maximum_external_data(RECV_BUFFER_PAGES * 4096, 64),
              "init max external data")

    def configure_client(self, channel: ClientChannel, index: int) -> None:
        check(channel.init_set_ring_buffer_page_counts(2, 1), "init ring pages")
        check(channel.init_set_maximum_packet_size(1600), "init max packet size")

    def after_open(self) -> None:
        for queue, (server, client) in enumerate(zip(self.servers, self.clients, strict=True)):
            first = RECV_BUFFER_PFN_BASE + queue * RECV_BUFFER_PAGES
            status, handle = client.gpadl_create(
                tuple(range(first, first + RECV_BUFFER_PAGES)), 0, RECV_BUFFER_PAGES * 4096)
            check(status, "receive buffer GPADL create")
            check(server.gpadl_map(handle)[0], "receive buffer GPADL map")

    def receive_buffer(self, channel: ServerChannel) -> int | None:
        """The handle of the queue's receive buffer: the one GPADL the server maps (None
        when a restored channel has none: no receives can be sent)."""
        assert channel.connection is not None
        return next((h for h, g in channel.connection.gpadls.gpadls.items() if g.mapped),
                    None)

    def completion_routines(self):
        return {"netvsp_receive_done": self.host_receive_done,
                "netvsc_send_done": self.guest_send_done}

    # -- host (VSP) ----------------------------------------------------------------
    def free_sections(self, channel: ServerChannel) -> list[int]:
        """Sections not held by a RECEIVE packet in use, lowest first (state-derived)."""
        used = {p.vsp_context[1] for p in channel.packets.values()
                if p.state != PacketState.FREE and p.vsp_context is not None}
        return [s for s in range(SECTIONS) if s not in used]

    def host_step(self, rng: random.Random) -> None:
        for channel in self.servers:
            if not channel.io_running:
                continue
            channel.poll()
            queue = channel.config.subchannel_index
            for _ in range(rng.randint(0, 6)):
                free = self.free_sections(channel)
                if not free or self.receive_buffer(channel) is None:
                    break
                self.host_receive(channel, queue, free[0], rng)

    def host_receive(self, channel: ServerChannel, queue: int, section: int,
                     rng: random.Random) -> None:
        frame = rng.randbytes(rng.randint(48, 240))
        header = RNDIS_HEADER.pack(1, RNDIS_HEADER.size + len(frame), RNDIS_HEADER.size,
                                   len(frame))
        packet = channel.packet_allocate()
        assert packet is not None
        packet.set_completion_routine("netvsp_receive_done", self.host_receive_done)
        packet.vsp_context = (queue, section, len(frame))
        external = ExternalData(
            PacketType.TRANSFER_PAGES, handle=self.receive_buffer(channel),
            byte_ranges=(ByteRange(len(frame), section * SECTION_SIZE),))
        check(channel.packet_send(packet, header + frame, SendFlags.WAIT_FOR_COMPLETION,
                                  external), "receive send")

    def host_receive_done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        queue, section, length = packet.vsp_context
        self.log(f"host receive done q={queue} section={section} len={length}")

    def host_process_packet(self, channel: ServerChannel, incoming: IncomingPacket) -> None:
        seq, length = unpack(SEND_HEADER, incoming.payload, "send")
        self.log(f"host got send q={channel.config.subchannel_index} seq={seq} len={length}")
        check(channel.packet_complete(incoming, SEND_HEADER.pack(seq, 0)), "send complete")

    def encode_packet_state(self, packet: VmbPacket) -> bytes:
        return RECEIVE_STATE.pack(*packet.vsp_context)

    def decode_packet_state(self, channel, packet, state: bytes) -> NtStatus:
        if len(state) != RECEIVE_STATE.size:
            return NtStatus.INVALID_PARAMETER
        queue, section, length = RECEIVE_STATE.unpack(state)
        if queue != channel.config.subchannel_index or section >= SECTIONS:
            return NtStatus.INVALID_PARAMETER
        packet.vsp_context = (queue, section, length)
        return NtStatus.SUCCESS

    # -- guest (VSC) ---------------------------------------------------------------
    def guest_process_packet(self, channel: ClientChannel, incoming: IncomingPacket) -> None:
        _type, _length, offset, data_length = unpack(RNDIS_HEADER, incoming.payload,
                                                     "receive")
        digest = sum(incoming.payload[offset:offset + data_length]) & 0xFFFF
        self.log(f"guest got receive q={channel.config.subchannel_index} len={data_length} "
                 f"sum={digest:#06x}")

    def guest_step(self, rng: random.Random) -> None:
        for channel in self.clients:
            channel.poll(budget=rng.randint(0, 2))  # a slow guest
            for _ in range(rng.randint(0, 2)):
                pending = list(channel.pending_incoming.values())
                if not pending:
                    break
                check(channel.packet_complete(pending[0]), "guest complete receive")
            if rng.random() < 0.3:
                self.guest_send(channel, rng)

    def guest_send(self, channel: ClientChannel, rng: random.Random) -> None:
        packet = channel.packet_allocate()
        assert packet is not None
        packet.set_completion_routine("netvsc_send_done", self.guest_send_done)
        frame = rng.randbytes(rng.randint(40, 200))
        sequence = packet.transaction_id & 0xFFFFFFFF  # a u32 sequence number wraps
        check(channel.packet_send(packet, SEND_HEADER.pack(sequence, len(frame)) + frame,
                                  SendFlags.WAIT_FOR_COMPLETION), "guest send")

    def guest_send_done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        if len(payload) < SEND_HEADER.size:  # a malformed completion: no sequence number
            self.log(f"guest send done txid={packet.transaction_id}: malformed completion")
            return
        seq, _ = SEND_HEADER.unpack_from(payload)
        self.log(f"guest send done seq={seq}")
