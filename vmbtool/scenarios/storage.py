"""`storage`: SCSI-like requests from the guest, completed out of order by the host.

Our simulated storvsp protocol (invented, documented in the README):

    REQUEST  (guest -> host, GPA direct, wait-for-completion)
             u32 tag, u16 lun, u8 op (0x28 read / 0x2A write), u8 reserved,
             u32 length, u64 lba; the data buffer is one GPA-direct range
    TRANSFER (host -> guest, inband, wait-for-completion)
             u32 tag, u32 offset, u32 count, u32 reserved: one piece of a request moved
    REQUEST completion payload: u32 tag, u32 bytes done, u8 scsi status (0 good, 8 busy)

The VSP keeps per-request state (tag, LUN, bytes remaining), works on requests out of
order and saves, per TRANSFER packet object, (tag, LUN, bytes remaining after it).
On pause its suspend callback completes every outstanding request with BUSY; the guest
re-issues busy requests later.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from uuid import UUID

from vmbtool.scenarios.base import ProtocolError, Scenario, check, unpack
from vmbtool.sim import (
    ClientChannel,
    ExternalData,
    GpaRange,
    IncomingPacket,
    PacketType,
    SendFlags,
    ServerChannel,
    StateCallbacks,
    VmbPacket,
)
from vmbtool.status import NtStatus

REQUEST = struct.Struct("<IHBBIQ")
TRANSFER = struct.Struct("<IIII")
REQUEST_DONE = struct.Struct("<IIB")
TRANSFER_STATE = struct.Struct("<IHI")  # VSP SaveBuf: tag, lun, bytes remaining
HOST_REQUEST = struct.Struct("<QIHBBII")
GUEST_REQUEST = struct.Struct("<IHBBIQ")
SCSI_GOOD, SCSI_BUSY = 0x00, 0x08
READ_10, WRITE_10 = 0x28, 0x2A
GUEST_DATA_PFN_BASE = 0x80000
MAX_OUTSTANDING = 6
MAX_REQUEST_LENGTH = 65536  # the largest request the guest issues (the VSP's max external)


@dataclass
class HostRequest:
    """The VSP's per-request state for a pending incoming REQUEST."""

    tag: int
    lun: int
    op: int
    length: int
    remaining: int
    incoming: IncomingPacket


class StorageScenario(Scenario):
    name = "storage"
    interface_type = UUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f")  # synthetic SCSI

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.host_requests: dict[int, HostRequest] = {}  # by incoming arrival number
        self.guest_next_tag = 1
        self.guest_retry: list[int] = []  # tags the host answered BUSY
        self.guest_requests: dict[int, tuple[int, int, int, int]] = {}  # tag -> lun, op, len, lba

    def configure_server(self, channel: ServerChannel, index: int) -> None:
        check(channel.init_set_maximum_external_data(0x10000, 17), "init max external data")
        check(channel.init_set_state_change_callbacks(
            StateCallbacks(suspend=self.host_suspend)), "init state callbacks")

    def configure_client(self, channel: ClientChannel, index: int) -> None:
        check(channel.init_set_ring_buffer_page_counts(2, 2), "init ring pages")
        check(channel.init_set_maximum_external_data(0x10000, 17), "init max external data")

    def completion_routines(self):
        return {"storvsp_transfer_done": self.host_transfer_done,
                "storvsc_request_done": self.guest_request_done}

    # -- host (VSP) ----------------------------------------------------------------
    def host_process_packet(self, channel: ServerChannel, incoming: IncomingPacket) -> None:
        tag, lun, op, _reserved, length, _lba = unpack(REQUEST, incoming.payload, "request")
        if incoming.external is None or incoming.external.total_bytes != length:
            raise ProtocolError(f"request tag={tag}: its data buffer is not {length} bytes")
        self.host_requests[incoming.number] = HostRequest(tag, lun, op, length, length, incoming)
        self.log(f"host got request tag={tag} lun={lun} op={op:#x} len={length}")

    def host_step(self, rng: random.Random) -> None:
        channel = self.servers[0]
        if not channel.io_running:
            return
        channel.poll()
        for _ in range(rng.randint(0, 3)):
            if not self.host_requests:
                break
            number = rng.choice(sorted(self.host_requests))  # out of order
            self.host_transfer(channel, self.host_requests[number], rng)
            if self.host_requests[number].remaining == 0:
                request = self.host_requests.pop(number)
                self.host_complete(channel, request, SCSI_GOOD)

    def host_transfer(self, channel: ServerChannel, request: HostRequest,
                      rng: random.Random) -> None:
        count = min(request.remaining, rng.choice((512, 4096, 8192)))
        offset = request.length - request.remaining
        request.remaining -= count
        packet = channel.packet_allocate()
        assert packet is not None
        packet.set_completion_routine("storvsp_transfer_done", self.host_transfer_done)
        packet.set_pointer(request.tag)
        packet.vsp_context = (request.tag, request.lun, request.remaining)
        check(channel.packet_send(packet, TRANSFER.pack(request.tag, offset, count, 0),
                                  SendFlags.WAIT_FOR_COMPLETION), "transfer send")

    def host_complete(self, channel: ServerChannel, request: HostRequest, status: int) -> None:
        done = request.length - request.remaining
        check(channel.packet_complete(request.incoming, REQUEST_DONE.pack(request.tag, done,
                                                                          status)), "complete")
        self.log(f"host completed tag={request.tag} status={status}")

    def host_transfer_done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        tag, lun, remaining = packet.vsp_context
        self.log(f"host transfer done tag={tag} lun={lun} remaining={remaining}")

    def host_suspend(self, channel: ServerChannel) -> None:
        """Pause waits for pending incoming packets: answer them all BUSY now."""
        for number in sorted(self.host_requests):
            self.host_complete(channel, self.host_requests.pop(number), SCSI_BUSY)

    def encode_packet_state(self, packet: VmbPacket) -> bytes:
        return TRANSFER_STATE.pack(*packet.vsp_context)

    def decode_packet_state(self, channel, packet, state: bytes) -> NtStatus:
        if len(state) != TRANSFER_STATE.size:
            return NtStatus.INVALID_PARAMETER
        packet.vsp_context = TRANSFER_STATE.unpack(state)
        return NtStatus.SUCCESS

    # VSP state: u32 count, {u64 incoming number, u32 tag, u16 lun, u8 op, u8 0,
    #            u32 length, u32 remaining}
    def encode_vsp_state(self) -> bytes:
        out = [struct.pack("<I", len(self.host_requests))]
        for number, r in self.host_requests.items():
            out.append(HOST_REQUEST.pack(number, r.tag, r.lun, r.op, 0, r.length, r.remaining))
        return b"".join(out)

    def decode_vsp_state(self, state: bytes) -> None:
        (count,) = struct.unpack_from("<I", state)
        if len(state) != 4 + count * HOST_REQUEST.size:
            raise ValueError("storage VSP state has the wrong size")
        pending = self.servers[0].pending_incoming
        for i in range(count):
            number, tag, lun, op, _, length, remaining = HOST_REQUEST.unpack_from(
                state, 4 + i * HOST_REQUEST.size)
            if remaining > length:
                raise ValueError(f"storage VSP request tag={tag}: {remaining} bytes remain "
                                 f"of {length}")
            self.host_requests[number] = HostRequest(tag, lun, op, length, remaining,
                                                     pending[number])

    # VSC state: u32 next_tag, u32 retry count, {u32 tag}, u32 request count,
    #            {u32 tag, u16 lun, u8 op, u8 0, u32 length, u64 lba}
    def encode_vsc_state(self) -> bytes:
        out = [struct.pack("<II", self.guest_next_tag, len(self.guest_retry))]
        out += [struct.pack("<I", tag) for tag in self.guest_retry]
        out.append(struct.pack("<I", len(self.guest_requests)))
        for tag, (lun, op, length, lba) in self.guest_requests.items():
            out.append(GUEST_REQUEST.pack(tag, lun, op, 0, length, lba))
        return b"".join(out)

    def decode_vsc_state(self, state: bytes) -> None:
        self.guest_next_tag, retries = struct.unpack_from("<II", state)
        pos = 8
        self.guest_retry = list(struct.unpack_from(f"<{retries}I", state, pos))
        pos += 4 * retries
        (count,) = struct.unpack_from("<I", state, pos)
        pos += 4
        if len(state) != pos + count * GUEST_REQUEST.size:
            raise ValueError("storage VSC state has the wrong size")
        for i in range(count):
            tag, lun, op, _, length, lba = GUEST_REQUEST.unpack_from(
                state, pos + i * GUEST_REQUEST.size)
            if op not in (READ_10, WRITE_10) or length > MAX_REQUEST_LENGTH:
                raise ValueError(f"storage VSC request tag={tag}: op {op:#x}, {length} bytes")
            self.guest_requests[tag] = (lun, op, length, lba)
        if any(tag not in self.guest_requests for tag in self.guest_retry):
            raise ValueError("storage VSC state retries a request it does not have")

    # -- guest (VSC) ---------------------------------------------------------------
    def guest_process_packet(self, channel: ClientChannel, incoming: IncomingPacket) -> None:
        tag, offset, count, _ = unpack(TRANSFER, incoming.payload, "transfer")
        self.log(f"guest got transfer tag={tag} offset={offset} count={count}")

    def guest_step(self, rng: random.Random) -> None:
        channel = self.clients[0]
        channel.poll(budget=rng.randint(0, 3))
        for _ in range(rng.randint(0, 3)):
            pending = list(channel.pending_incoming.values())  # TRANSFERs, in arrival order
            if not pending:
                break
            incoming = pending[rng.randrange(len(pending))]
            check(channel.packet_complete(incoming), "guest complete transfer")
        for _ in range(rng.randint(0, 2)):
            if len(self.guest_requests) >= MAX_OUTSTANDING:
                break
            self.guest_issue(channel, rng)

    def guest_issue(self, channel: ClientChannel, rng: random.Random) -> None:
        if self.guest_retry:
            tag = self.guest_retry.pop(0)
            lun, op, length, lba = self.guest_requests[tag]
        else:
            tag = self.guest_next_tag
            self.guest_next_tag = (tag + 1) & 0xFFFFFFFF  # a u32 tag wraps
            lun, op = rng.randrange(4), rng.choice((READ_10, WRITE_10))
            length = rng.choice((512, 4096, 8192, 16384, MAX_REQUEST_LENGTH))
            lba = rng.randrange(1 << 20)
            self.guest_requests[tag] = (lun, op, length, lba)
        byte_offset = rng.choice((0, 512, 1024))
        first_pfn = GUEST_DATA_PFN_BASE + (tag % 4096) * 32
        pfns = tuple(range(first_pfn, first_pfn + (byte_offset + length + 4095) // 4096))
        external = ExternalData(PacketType.GPA_DIRECT,
                                gpa_ranges=(GpaRange(length, byte_offset, pfns),))
        packet = channel.packet_allocate()
        assert packet is not None
        packet.set_completion_routine("storvsc_request_done", self.guest_request_done)
        packet.set_pointer(tag)
        flags = SendFlags.WAIT_FOR_COMPLETION | (SendFlags.PAGED_BUFFER if op == READ_10 else 0)
        check(channel.packet_send(packet, REQUEST.pack(tag, lun, op, 0, length, lba), flags,
                                  external), "guest request send")
        self.log(f"guest sent request tag={tag}")

    def guest_request_done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        if len(payload) < REQUEST_DONE.size:
            self.log(f"guest request done txid={packet.transaction_id}: malformed completion")
            return
        tag, done, scsi_status = REQUEST_DONE.unpack_from(payload)
        if tag not in self.guest_requests:
            self.log(f"guest request done tag={tag}: no such request")
            return
        if scsi_status == SCSI_BUSY:
            self.guest_retry.append(tag)
        else:
            del self.guest_requests[tag]
        self.log(f"guest request done tag={tag} bytes={done} status={scsi_status}")
