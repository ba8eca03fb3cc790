"""The save side of the KMCL contract (DOMAIN.md §3):

    VmbChannelSaveBegin(channel) — sets up a save context.
    VmbChannelSaveContinue(channel, buffer, size) → status, bytes_filled, bytes_required
      - the library writes its state in whole chunks and resumes where it stopped;
      - STATUS_SUCCESS: everything is saved;
      - STATUS_BUFFER_OVERFLOW: some chunks were written, more remain (call again);
      - STATUS_BUFFER_TOO_SMALL: nothing written; bytes_required is the size needed
        to make any progress (the next chunk).
    VmbChannelSaveEnd(channel) — releases the save context.

Save produces the channel's state as whole framed chunks (see vmbtool.chunks):
CHANNEL, RING (incoming), RING (outgoing), GPADLS, one PACKET per packet object in
use, INCOMING, CHANNEL_END.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmbtool import codec
from vmbtool.chunks import frame, frame_data
from vmbtool.formats import limits
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.packet import PacketRecord
from vmbtool.sim.wire import PacketType
from vmbtool.state import channel_context, gpadl_table, incoming_entries, packet_fields, ring_state
from vmbtool.status import NtStatus, NtStatusError

if TYPE_CHECKING:  # the channel and its packets are only handed in
    from vmbtool.sim.channel import ServerChannel
    from vmbtool.sim.packet import VmbPacket

# (bound once: see kmcl.staging)
_SUCCESS, _BUFFER_TOO_SMALL = NtStatus.SUCCESS, NtStatus.BUFFER_TOO_SMALL
_PACKET, _COMPLETION = ChunkType.PACKET, PacketType.COMPLETION


@dataclass(eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class SaveContext:
    chunks: Iterator[bytes]
    next_chunk: bytes | None = None
    done: bool = False
    failed: NtStatus | None = None  # a failed save stays failed until SaveEnd
    error: NtStatusError | None = None  # why, for the caller that drives the save


def _packet_save_buf(channel: ServerChannel, packet: VmbPacket) -> bytes:
    """KMCL: the first call passes size 0; a VSP with state fails it with the size."""
    if channel.save_packet is None:
        return b""
    status, data, needed = channel.save_packet(channel, packet, 0)
    if status == _SUCCESS:
        return b""
    if status != _BUFFER_TOO_SMALL or needed <= 0:
        raise NtStatusError(NtStatus(status), "the VSP's save callback failed",
                            f"packets[txid={packet.transaction_id}]")
    status, data, _ = channel.save_packet(channel, packet, needed)
    if status != _SUCCESS or len(data) > needed:
        raise NtStatusError(NtStatus(status), "the VSP's save callback failed on its 2nd call",
                            f"packets[txid={packet.transaction_id}]")
    return bytes(data)


def channel_chunks(channel: ServerChannel) -> Iterator[bytes]:
    """The library's state, chunk by chunk; packet callbacks run as their chunk comes."""
    yield frame(ChunkType.CHANNEL, channel_context(channel))
    connection = channel.connection
    if connection is not None:
        yield frame(ChunkType.RING, ring_state(channel.incoming_ring, "incoming"))
        yield frame(ChunkType.RING, ring_state(channel.outgoing_ring, "outgoing"))
    yield frame(ChunkType.GPADLS, gpadl_table(connection.gpadls if connection else None))
    packets = channel.packets_in_use()
    cap = limits.MAX_PACKETS_PER_CHANNEL
    if len(packets) > cap:  # no reader would take the blob
        raise NtStatusError(NtStatus.INSUFFICIENT_RESOURCES, f"{len(packets)} packet objects "
                            f"in use, a blob holds at most {cap} a channel", "packets")
    for packet in packets:
        # queued completions are the library's own: no VSP state to ask for
        completion = packet.type == _COMPLETION
        save_buf = b"" if completion else _packet_save_buf(channel, packet)
        # built from the packet's fields, in one step: no container (codec.pack)
        yield frame_data(_PACKET, codec.pack(
            PacketRecord, (packet_fields(packet), save_buf), "packet"))
    yield frame(ChunkType.INCOMING, incoming_entries(channel))
    yield frame(ChunkType.CHANNEL_END, {
        "gpadl_count": len(connection.gpadls.gpadls) if connection else 0,
        "packet_count": len(packets),
        "incoming_count": len(channel.pending_incoming)})


def save_begin(channel: ServerChannel) -> NtStatus:
    """VmbChannelSaveBegin: only on a channel not running I/O, one save at a time."""
    if channel.cleaned_up or channel.save_context is not None:
        return NtStatus.INVALID_DEVICE_STATE
    if channel.started or channel.pausing:
        return NtStatus.INVALID_DEVICE_STATE  # pause first: a save point is a pause
    channel.save_context = SaveContext(channel_chunks(channel))
    return NtStatus.SUCCESS


def save_continue(channel: ServerChannel, buffer_size: int) -> tuple[NtStatus, bytes, int]:
    """VmbChannelSaveContinue: as many whole chunks as fit in `buffer_size`.

    Returns (status, bytes written, bytes required): SUCCESS when all is out,
    BUFFER_OVERFLOW when more remain, BUFFER_TOO_SMALL (nothing written) with the
    size of the next chunk.
    """
    context: SaveContext | None = channel.save_context
    if context is None:
        return NtStatus.INVALID_DEVICE_STATE, b"", 0
    if buffer_size < 0:
        return NtStatus.INVALID_PARAMETER_3, b"", 0
    if context.failed is not None:
        return context.failed, b"", 0
    out: list[bytes] = []
    used = 0
    while not context.done:
        if context.next_chunk is None:
            try:
                context.next_chunk = next(context.chunks)
            except StopIteration:
                context.done = True
                break
            except NtStatusError as exc:
                # the VSP's sizing statuses are not about the caller's buffer
                status = exc.status if exc.status not in (
                    NtStatus.BUFFER_TOO_SMALL, NtStatus.BUFFER_OVERFLOW) \
                    else NtStatus.UNSUCCESSFUL
                context.failed, context.error = status, exc
                return status, b"", 0
        size = len(context.next_chunk)
        if used + size > buffer_size:
            if not out:
                return NtStatus.BUFFER_TOO_SMALL, b"", size
            return NtStatus.BUFFER_OVERFLOW, b"".join(out), size
        out.append(context.next_chunk)
        used += size
        context.next_chunk = None
    return NtStatus.SUCCESS, b"".join(out), 0


def save_end(channel: ServerChannel) -> NtStatus:
    """VmbChannelSaveEnd: releases the save context."""
    if channel.save_context is None:
        return NtStatus.INVALID_DEVICE_STATE
    channel.save_context = None
    return NtStatus.SUCCESS


def save_channel(channel: ServerChannel, buffer_size: int) -> list[bytes]:
    """Drive SaveBegin / SaveContinue / SaveEnd with a fixed buffer size."""
    status = save_begin(channel)
    if status != NtStatus.SUCCESS:
        raise NtStatusError(status, "SaveBegin refused", "channel.state")
    buffers = []
    try:
        while True:
            status, data, required = save_continue(channel, buffer_size)
            if status == NtStatus.BUFFER_TOO_SMALL:
                raise NtStatusError(status, f"a chunk needs {required} bytes, the buffer is "
                                    f"{buffer_size}", "chunk_size")
            if status not in (NtStatus.SUCCESS, NtStatus.BUFFER_OVERFLOW):
                error = channel.save_context.error
                raise NtStatusError(status, f"SaveContinue failed: {error.args[0]}" if error else
                                    "SaveContinue failed", "save_continue")
            buffers.append(data)
            if status == NtStatus.SUCCESS:
                return buffers
    finally:
        save_end(channel)
