"""The restore side of the KMCL contract (DOMAIN.md §3):

    VmbChannelRestoreFromBuffer(channel, buffer, size) — the buffer holds whole chunks;
    STATUS_SUCCESS when the final chunk is restored, STATUS_MORE_PROCESSING_REQUIRED
    when it went well and more chunks remain, any other failure status otherwise.
    Per-packet restore callback EvtVmbChannelRestorePacket(channel, lib_buf, lib_size,
    save_buf, save_size) → status: the VSP allocates a fresh packet (VmbPacketAllocate),
    hands lib_buf to VmbPacketRestore(packet, lib_buf, size) to put the library's packet
    state back, then restores its own state from save_buf.

Restore takes whole chunks, stages them (vmbtool.kmcl.staging: each PACKET scanned into
tuples) and checks each as it is staged (validate's `ChannelCheck`: the whole channel's
invariants at the final chunk), and only then changes the channel; a failure at any
point leaves the freshly allocated channel exactly as it was.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from vmbtool.chunks import RawChunk, split_chunks
from vmbtool.errors import BlobError
from vmbtool.invariants import ChannelCheck
from vmbtool.kmcl.staging import LIB_BUF, SAVE_BUF, TXID, TYPE, RestoreStaging, stage_chunks
from vmbtool.sim.bus import Connection
from vmbtool.sim.packet import PacketState, VmbPacket
from vmbtool.sim.wire import PacketType
from vmbtool.state import (
    config_from,
    fill_packet_fields,
    gpadl_table_from,
    incoming_from,
    lib_buf_fields,
    ring_from,
    set_life_cycle,
)
from vmbtool.status import NtStatus, NtStatusError, nt_success

if TYPE_CHECKING:  # the channel is only handed in, the staged state only read
    from vmbtool.sim.channel import Channel, ServerChannel
    from vmbtool.state import SavedChannel

# (bound once: see kmcl.staging)
_SUCCESS, _COMPLETION = NtStatus.SUCCESS, PacketType.COMPLETION
_ALLOCATED, _IN_RING, _BACKLOG = PacketState.ALLOCATED, PacketState.IN_RING, PacketState.BACKLOG


def _check_target(channel: ServerChannel, saved: SavedChannel) -> None:
    """The fresh channel must be configured with the same offer."""
    saved_config = config_from(saved.context)
    for name in ("interface_type", "interface_instance", "subchannel_index"):
        if getattr(saved_config, name) != getattr(channel.config, name):
            raise BlobError(f"channel.context.{name}",
                            f"blob has {getattr(saved_config, name)}, the channel is "
                            f"configured with {getattr(channel.config, name)}",
                            NtStatus.INVALID_PARAMETER)
    key = saved_config.offer_key
    if saved.context.state != 0 and key in channel.bus.offers:
        raise BlobError("channel.context.interface_instance",
                        "this offer is already on the bus", NtStatus.INVALID_DEVICE_STATE)


def restore_from_buffer(channel: ServerChannel, buffer: bytes) -> NtStatus:
    """VmbChannelRestoreFromBuffer: whole chunks in; MORE_PROCESSING_REQUIRED until the
    final chunk, then SUCCESS.  Any failure discards what was staged and leaves the
    channel untouched; `channel.restore_error` says what and where."""
    return _restore(channel, lambda: split_chunks(bytes(buffer)))


def restore_chunks(channel: ServerChannel, chunks: Iterable[RawChunk],
                   checked: bool = False) -> NtStatus:
    """`restore_from_buffer` for chunks a reader has already split and checked: a
    blob's chunk stream (`chunks.iter_chunks`) checked each chunk's framing, cap and
    CRC32C as it came, so they are staged as they are, not framed and checked again.
    The same staging, checks, statuses and `restore_error`.

    `checked`: the channel's state was checked whole by an earlier read of the same
    bytes (`snapshot.check_file`, the caller holding the two reads to one END digest):
    its invariants and transaction ids are not checked a second time."""
    return _restore(channel, lambda: chunks, checked)


def _restore(channel: ServerChannel, chunks: Callable[[], Iterable[RawChunk]],
             checked: bool = False) -> NtStatus:
    channel.restore_error = None
    if channel.cleaned_up or not channel.initializing or channel.enabled:
        return _fail(channel, NtStatusError(NtStatus.INVALID_DEVICE_STATE,
                                            "restore needs a freshly allocated channel",
                                            "channel.state"))
    if channel.restore_packet is None:
        return _fail(channel, NtStatusError(NtStatus.INVALID_DEVICE_STATE,
                                            "no restore packet callback was set",
                                            "channel.restore_packet"))
    if channel.restore_context is None:
        # each packet scanned into tuples, the channel's invariants checked as its parts
        # are staged (validate's check), unless an earlier read checked them
        channel.restore_context = RestoreStaging(
            scans=True, check=None if checked else ChannelCheck("channel"))
    staging: RestoreStaging = channel.restore_context
    staging.checked = checked
    try:
        if not stage_chunks(staging, chunks(), "channel"):
            return NtStatus.MORE_PROCESSING_REQUIRED
        saved = staging.saved
        _check_target(channel, saved)
        problems = saved.problems or []  # the check's, at the channel end
        if problems:
            where, why = problems[0]
            raise BlobError(where, why)
        _apply(channel, staging)
    except BlobError as exc:
        return _fail(channel, NtStatusError(exc.status, exc.why, exc.where))
    except NtStatusError as exc:
        return _fail(channel, exc)
    except BaseException:
        channel.restore_context = None  # a VSP callback raised: drop what was staged too
        raise
    channel.restore_context = None
    return NtStatus.SUCCESS


def _callback_failure(status: object) -> NtStatus:
    """What RestoreFromBuffer returns when the VSP's restore callback did not succeed.

    The callback's own failure status passes through; an answer that is no failure
    (MORE_PROCESSING_REQUIRED would read as "continue", PENDING as success) or is no
    NTSTATUS we know becomes UNSUCCESSFUL."""
    try:
        known = NtStatus(cast(int, status))  # anything else fails the lookup alike
    except ValueError:
        return NtStatus.UNSUCCESSFUL
    if nt_success(known) or known == NtStatus.MORE_PROCESSING_REQUIRED:
        return NtStatus.UNSUCCESSFUL
    return known


def _status_text(status: object) -> str:
    try:
        return str(NtStatus(cast(int, status)))
    except ValueError:
        return f"0x{status:08X}" if isinstance(status, int) else repr(status)


def _fail(channel: ServerChannel, error: NtStatusError) -> NtStatus:
    channel.restore_context = None
    channel.restore_error = error
    return error.status


def _apply(channel: ServerChannel, staging: RestoreStaging) -> None:
    """Rebuild the channel from checked state; on a callback failure, roll back."""
    saved, lib_bufs = staging.saved, staging.lib_bufs
    restore_packet = channel.restore_packet
    assert restore_packet is not None  # restore_from_buffer refuses a channel without one

    pristine = {k: (copy.copy(v) if isinstance(v, (dict, deque, list)) else v)
                for k, v in channel.__dict__.items()}
    pristine_config = copy.copy(channel.config)
    try:
        ctx = saved.context
        channel.config = config_from(ctx)
        channel.next_transaction_id = ctx.next_transaction_id
        channel.next_incoming_number = ctx.next_incoming_number
        channel.packets, channel.backlog, channel.in_ring = {}, deque(), deque()
        channel.pending_incoming = {}
        set_life_cycle(channel, ctx.state)
        if "incoming" in saved.rings:
            incoming, outgoing = ring_from(saved.rings["incoming"]), ring_from(
                saved.rings["outgoing"])
            channel.connection = Connection(
                channel, None, client_to_server=incoming, server_to_client=outgoing,
                gpadls=gpadl_table_from(saved.gpadls, ctx.next_gpadl_handle))
        # each staged packet (a scan's tuples) is dropped as its live one comes back, so
        # the two are not held whole at once (a failure throws both away)
        staged, completions = saved.packets, 0
        for number, record in enumerate(staged):
            staged[number] = None
            lib, save_buf = record[LIB_BUF], record[SAVE_BUF]
            if lib[TYPE] == "completion":
                # a completion the library queued itself: no VSP state, no callback
                queued = VmbPacket(channel=channel)
                fill_packet_fields(queued, lib)
                channel.backlog.append(queued)
                completions += 1
                continue
            lib_buf, lib_bufs[number] = lib_bufs[number], b""
            staging.restoring = (lib_buf, lib)
            status = restore_packet(channel, lib_buf, bytes(save_buf))
            staging.restoring = None
            if status != _SUCCESS:
                raise NtStatusError(_callback_failure(status),
                                    f"the VSP's restore callback failed ({_status_text(status)})",
                                    f"channel.packets[txid={lib[TXID]}]")
        channel.next_transaction_id = ctx.next_transaction_id  # allocate() moved it
        # (packet_restore refuses a completion: the backlog's are the ones queued here)
        restored = len(channel.packets) + completions
        if restored != len(saved.packets) or any(
                p.state == _ALLOCATED and p.transaction_id >= ctx.next_transaction_id
                for p in channel.packets.values()):
            raise NtStatusError(NtStatus.DATA_ERROR, "the VSP did not restore every packet",
                                "channel.packets")
        for entry in saved.incoming:
            packet = incoming_from(entry)
            channel.pending_incoming[packet.number] = packet
        if channel.connection is not None:
            rebuild_in_ring(channel)
        if channel.enabled:
            channel.bus.offers[channel.config.offer_key] = channel
    except BaseException:
        channel.__dict__.clear()
        channel.__dict__.update(pristine)
        channel.config = pristine_config
        raise


def rebuild_in_ring(channel: Channel) -> None:
    """What we wrote and the peer has not read, from a walk of the outgoing ring (of a
    restored server channel, or of a client channel the snapshot rebuilt)."""
    by_offset = {p.ring_offset: p for p in channel.packets.values()
                 if p.state == _IN_RING}
    channel.in_ring = deque(
        (wire.offset, by_offset.get(wire.offset)) for wire in channel.outgoing_ring.packets())


def packet_restore(packet: VmbPacket, lib_buf: bytes) -> NtStatus:
    """VmbPacketRestore(packet, lib_buf, size): put the library's saved state into a
    freshly allocated packet of the channel being restored (the packet knows it)."""
    channel: Any = packet.channel
    if channel is None or channel.packets.get(packet.transaction_id) is not packet:
        return NtStatus.INVALID_PARAMETER_1
    restoring = getattr(channel.restore_context, "restoring", None)
    if restoring is not None and restoring[0] is lib_buf:
        fields = restoring[1]  # the bytes the library handed the callback, scanned
    else:
        try:
            fields = lib_buf_fields(bytes(lib_buf))
        except BlobError:
            return NtStatus.INVALID_PARAMETER_2
    del channel.packets[packet.transaction_id]
    fill_packet_fields(packet, fields)
    if packet.type == _COMPLETION:
        return NtStatus.INVALID_PARAMETER_2  # queued completions are the library's own
    if packet.transaction_id in channel.packets:
        return NtStatus.INVALID_PARAMETER_2
    channel.packets[packet.transaction_id] = packet
    if packet.state == _BACKLOG:
        channel.backlog.append(packet)
    return _SUCCESS

