"""The KMCL save/restore contract on a simulated server channel (DOMAIN.md §3).

Save produces the channel's state as whole framed chunks (see vmbtool.chunks):
CHANNEL, RING (incoming), RING (outgoing), GPADLS, one PACKET per packet object in
use, INCOMING, CHANNEL_END.  Restore takes whole chunks, stages them, checks every
invariant on the final chunk and only then changes the channel; a failure at any point
leaves the freshly allocated channel exactly as it was.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vmbtool import codec
from vmbtool.chunks import (
    CHUNK_HEADER_SIZE,
    FLAG_REQUIRED,
    KNOWN_CHUNK_FLAGS,
    MAX_CHUNK_LENGTH,
    REGISTRY,
    ChunkType,
    crc32c,
    frame,
)
from vmbtool.errors import BlobError
from vmbtool.formats.chunk import ChunkHeader
from vmbtool.formats.packet import PacketContext
from vmbtool.invariants import ChannelCheck, check_channel
from vmbtool.sim.channel import ServerChannel
from vmbtool.sim.packet import PacketState, VmbPacket
from vmbtool.state import (
    SavedChannel,
    channel_context,
    config_from,
    fill_packet,
    gpadl_table,
    gpadl_table_from,
    incoming_entries,
    incoming_from,
    packet_context,
    ring_from,
    ring_state,
    set_life_cycle,
)
from vmbtool.status import NtStatus, NtStatusError, nt_success

# -- framed chunks in a buffer ------------------------------------------------------


@dataclass
class RawChunk:
    type: int
    flags: int
    data: bytes
    offset: int  # of the chunk header, in whatever stream it came from
    head: bytes = b""  # the 12 header bytes as read, when they were
    blocks: Iterator[bytes] | None = None  # the data, streamed (then `data` is empty)

    @property
    def length(self) -> int:
        """The data's length, as its header declares it (a streamed chunk's `data` is
        empty)."""
        return int.from_bytes(self.head[4:8], "little") if self.head else len(self.data)

    @property
    def required(self) -> bool:
        return bool(self.flags & 1)

    @property
    def header_bytes(self) -> bytes:
        """The chunk's header as it stands in a stream (length and CRC of its data)."""
        return self.head or codec.build(ChunkHeader, {
            "type": self.type, "flags": self.flags, "reserved": 0,
            "length": len(self.data), "crc32c": crc32c(self.data)}, "chunk_header")

    @property
    def framed(self) -> bytes:
        """The chunk as it stands in a stream: header (with its CRC) and data."""
        return self.header_bytes + self.data


def check_chunk_header(header, offset: int) -> None:
    if header["flags"] & ~KNOWN_CHUNK_FLAGS:
        raise BlobError(f"chunk@{offset}.flags", f"unknown flag bits {header['flags']:#x}")
    kind = REGISTRY.get(header["type"])
    if kind is not None and bool(header["flags"] & FLAG_REQUIRED) != kind.required:
        # the END chunk's own header is under no checksum: its flags byte must be exact
        raise BlobError(f"chunk@{offset}.flags", f"a {kind.name} chunk has the required bit "
                        f"{'clear' if kind.required else 'set'}")
    if header["length"] > MAX_CHUNK_LENGTH:
        raise BlobError(f"chunk@{offset}.length",
                        f"{header['length']} bytes exceeds the {MAX_CHUNK_LENGTH}-byte cap",
                        NtStatus.INVALID_BUFFER_SIZE)


def check_chunk_crc(header, data: bytes, offset: int) -> None:
    if crc32c(data) != header["crc32c"]:
        raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch", NtStatus.CRC_ERROR)


def split_chunks(buffer: bytes, base: int = 0) -> list[RawChunk]:
    """A buffer of whole chunks, each checked (flags, cap, CRC) before anything else."""
    chunks, pos, view = [], 0, memoryview(buffer)
    while pos < len(buffer):
        if len(buffer) - pos < CHUNK_HEADER_SIZE:
            raise BlobError(f"chunk@{base + pos}", "partial chunk header",
                            NtStatus.INVALID_BUFFER_SIZE)
        head = bytes(view[pos:pos + CHUNK_HEADER_SIZE])
        header = codec.parse(ChunkHeader, head, "chunk_header", base + pos)
        check_chunk_header(header, base + pos)
        start, length = pos + CHUNK_HEADER_SIZE, header["length"]
        if start + length > len(buffer):
            raise BlobError(f"chunk@{base + pos}.length", f"{length} bytes run past the buffer",
                            NtStatus.INVALID_BUFFER_SIZE)
        data = bytes(view[start:start + length])
        check_chunk_crc(header, data, base + pos)
        chunks.append(RawChunk(header["type"], header["flags"], data, base + pos, head))
        pos = start + length
    return chunks


def framed_chunks(buffer: bytes) -> list[bytes]:
    """The whole chunks of a buffer SaveContinue filled, as they stand. Nothing is
    checked: SaveContinue framed them a moment ago (restore uses `split_chunks`)."""
    chunks, pos, size = [], 0, len(buffer)
    while pos < size:
        end = pos + CHUNK_HEADER_SIZE + int.from_bytes(buffer[pos + 4:pos + 8], "little")
        chunks.append(buffer[pos:end])
        pos = end
    return chunks


def decode_chunk(raw: RawChunk, where: str):
    kind = REGISTRY.get(raw.type)
    if kind is None:
        return None
    return codec.parse(kind.grammar, raw.data, f"{where}.{kind.name}",
                       raw.offset + CHUNK_HEADER_SIZE)


# -- save -----------------------------------------------------------------------------


@dataclass
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
    if status == NtStatus.SUCCESS:
        return b""
    if status != NtStatus.BUFFER_TOO_SMALL or needed <= 0:
        raise NtStatusError(NtStatus(status), "the VSP's save callback failed",
                            f"packets[txid={packet.transaction_id}]")
    status, data, _ = channel.save_packet(channel, packet, needed)
    if status != NtStatus.SUCCESS or len(data) > needed:
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
    if len(packets) > MAX_PACKETS_PER_CHANNEL:  # no reader would take the blob
        raise NtStatusError(NtStatus.INSUFFICIENT_RESOURCES, f"{len(packets)} packet objects "
                            f"in use, a blob holds at most {MAX_PACKETS_PER_CHANNEL} a channel",
                            "packets")
    for packet in packets:
        # queued completions are the library's own: no VSP state to ask for
        save_buf = b"" if packet.type == 0xB else _packet_save_buf(channel, packet)
        yield frame(ChunkType.PACKET, {"lib_buf": packet_context(packet), "save_buf": save_buf})
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


# -- restore --------------------------------------------------------------------------

MAX_PACKETS_PER_CHANNEL = 1 << 18  # packet objects in use one channel may hold (FORMAT.md)
MAX_GPADLS_PER_CHANNEL = 1 << 16  # and GPADLs (a lean read's caps: FORMAT.md "Limits")
MAX_GUESTS = 1 << 12  # guest channels of a scenario chunk
ORDER = {ChunkType.CHANNEL: 0, ChunkType.RING: 1, ChunkType.GPADLS: 2,
         ChunkType.PACKET: 3, ChunkType.INCOMING: 4, ChunkType.CHANNEL_END: 5}


@dataclass
class RestoreStaging:
    saved: SavedChannel = field(default_factory=SavedChannel)
    last_order: int = -1
    chunks_seen: int = 0
    seen: set[int] = field(default_factory=set)  # chunk types staged so far
    check: ChannelCheck | None = None  # fed each part as it is staged (lean reads)
    keep_packets: bool = True  # False: packets (and pending incoming) checked, not kept
    keep_gpadls: bool = True
    last_record: Any = None  # the last PacketRecord staged
    lib_bufs: list[bytes] = field(default_factory=list)  # each kept packet's LibBuf bytes
    # the LibBuf the VSP's restore callback is handed, and what it parsed to: the
    # callback's VmbPacketRestore of those very bytes need not parse them again
    restoring: tuple[bytes, Any] | None = None
    # transaction id << 1 | is a queued completion, of each packet staged (without a
    # check: a check keeps its own)
    packet_keys: set[int] = field(default_factory=set)

    def has_packet(self, key: int) -> bool:
        return key in (self.check.seen if self.check is not None else self.packet_keys)


def stage_chunk(staging: RestoreStaging, raw: RawChunk, where: str, value: Any = None,
                blocks: Iterable[bytes] | None = None) -> bool:
    """Add one chunk to the staged state; True when it was the final chunk.

    `value` is the chunk already decoded; a ring streamed in `blocks` comes without
    its data (only a `check` reads them)."""
    order = ORDER.get(raw.type)
    if order is None:
        if raw.type in REGISTRY or raw.required:
            raise BlobError(f"{where}.chunk@{raw.offset}.type",
                            f"chunk type {raw.type:#06x} is not part of a channel's state"
                            if raw.type in REGISTRY else
                            f"unknown required chunk type {raw.type:#06x}",
                            NtStatus.REVISION_MISMATCH if raw.type not in REGISTRY
                            else NtStatus.DATA_ERROR)
        staging.saved.skipped.append(raw.type)
        return False
    if order < staging.last_order or (order == staging.last_order and raw.type in (
            ChunkType.CHANNEL, ChunkType.GPADLS, ChunkType.INCOMING)):
        raise BlobError(f"{where}.chunk@{raw.offset}.type",
                        f"{REGISTRY[raw.type].name} chunk out of order")
    if order > 0 and staging.saved.context is None:
        raise BlobError(f"{where}.chunk@{raw.offset}.type", "state before the channel chunk")
    if raw.type == ChunkType.CHANNEL_END:
        # CHANNEL_STATE ::= CHANNEL RING RING GPADLS {PACKET} INCOMING CHANNEL_END: the
        # GPADLS and INCOMING chunks are always written, empty or not
        for needed in (ChunkType.GPADLS, ChunkType.INCOMING):
            if needed not in staging.seen:
                raise BlobError(f"{where}.chunk@{raw.offset}.type",
                                f"channel_end chunk without the channel's "
                                f"{REGISTRY[needed].name} chunk")
    staging.last_order = order
    staging.seen.add(raw.type)
    saved, check = staging.saved, staging.check
    if raw.type == ChunkType.PACKET and saved.packet_count >= MAX_PACKETS_PER_CHANNEL:
        raise BlobError(f"{where}.packets (chunk@{raw.offset})", f"more than "
                        f"{MAX_PACKETS_PER_CHANNEL} packet objects in one channel",
                        NtStatus.INSUFFICIENT_RESOURCES)
    if value is None:
        value = decode_chunk(raw, where)
    if raw.type == ChunkType.PACKET:  # the most of them, by far
        _check_new_packet(staging, value["lib_buf"], where)
        staging.last_record = value
        saved.packet_count += 1
        if staging.keep_packets:
            saved.packets.append(value)
            if raw.data:  # the LibBuf's bytes as saved: what VmbPacketRestore takes back
                size = int.from_bytes(raw.data[:4], "little")
                staging.lib_bufs.append(raw.data[4:4 + size])
        if check is not None:
            check.packet(value)
    elif raw.type == ChunkType.CHANNEL:
        saved.context = value
        if check is not None:
            check.context(value)
    elif raw.type == ChunkType.RING:
        direction = str(value.direction)
        if direction in saved.rings:
            raise BlobError(f"{where}.rings.{direction}", "ring saved twice")
        if direction == "incoming" and "outgoing" in saved.rings:
            raise BlobError(f"{where}.chunk@{raw.offset}.type",
                            "ring chunk out of order: the incoming ring comes first")
        saved.rings[direction] = value
        if check is not None:
            check.ring(value, blocks)
    elif raw.type == ChunkType.GPADLS:
        gpadls = value.gpadls  # a lean read's are parsed as they are checked
        if staging.keep_gpadls:
            gpadls = saved.gpadls = list(gpadls)
        saved.gpadl_count = check.gpadl_table(gpadls) if check else sum(1 for _ in gpadls)
    elif raw.type == ChunkType.INCOMING:
        entries = value.packets
        if staging.keep_packets:
            entries = saved.incoming = list(entries)
        saved.incoming_count = check.pending_incoming(entries) if check else \
            sum(1 for _ in entries)
    elif raw.type == ChunkType.CHANNEL_END:
        saved.end = value
        if check is not None:
            saved.problems = check.channel_end(value)
        return True
    return False


def _check_new_packet(staging: RestoreStaging, lib: Any, where: str) -> None:
    """A repeated transaction id is called one (before the order check, which it would
    fail too), as it comes: not after an endless channel."""
    completion = str(lib["type"]) == "completion"
    key = lib["transaction_id"] << 1 | completion
    if staging.has_packet(key):
        label = "completion" if completion else "txid"
        raise BlobError(f"{where}.packets[{label}={lib['transaction_id']}]",
                        f"duplicate transaction id {lib['transaction_id']}")
    _check_packet_order(staging.last_record, lib, where)
    if staging.check is None:
        staging.packet_keys.add(key)


def _check_packet_order(last: Any, lib: Any, where: str) -> None:
    """PACKET chunks come as packets_in_use() hands them out: the packets not in the
    backlog by rising transaction id, then the backlog in its own order."""
    if last is None or lib["state"] == "backlog":
        return
    last = last["lib_buf"]
    if last["state"] == "backlog" or last["transaction_id"] >= lib["transaction_id"]:
        raise BlobError(f"{where}.packets[txid={lib.transaction_id}]",
                        "packet chunk out of order: packets not in the backlog come first, "
                        f"by rising transaction id (after txid={last.transaction_id} "
                        f"{last.state})")


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
        channel.restore_context = RestoreStaging()
    staging: RestoreStaging = channel.restore_context
    try:
        final = False
        for raw in split_chunks(bytes(buffer)):
            if final:
                raise BlobError(f"channel.chunk@{raw.offset}", "chunks after the channel end")
            final = stage_chunk(staging, raw, "channel")
        if not final:
            return NtStatus.MORE_PROCESSING_REQUIRED
        saved = staging.saved
        _check_target(channel, saved)
        problems = check_channel(saved, "channel")
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
        known = NtStatus(status)
    except ValueError:
        return NtStatus.UNSUCCESSFUL
    if nt_success(known) or known == NtStatus.MORE_PROCESSING_REQUIRED:
        return NtStatus.UNSUCCESSFUL
    return known


def _status_text(status: object) -> str:
    try:
        return str(NtStatus(status))
    except ValueError:
        return f"0x{status:08X}" if isinstance(status, int) else repr(status)


def _fail(channel: ServerChannel, error: NtStatusError) -> NtStatus:
    channel.restore_context = None
    channel.restore_error = error
    return error.status


def _apply(channel: ServerChannel, staging: RestoreStaging) -> None:
    """Rebuild the channel from checked state; on a callback failure, roll back."""
    from vmbtool.sim.bus import Connection

    saved, lib_bufs = staging.saved, staging.lib_bufs

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
        for number, record in enumerate(saved.packets):
            lib = record.lib_buf
            if str(lib.type) == "completion":
                # a completion the library queued itself: no VSP state, no callback
                queued = VmbPacket(channel=channel)
                fill_packet(queued, lib)
                channel.backlog.append(queued)
                continue
            lib_buf = lib_bufs[number] if number < len(lib_bufs) else \
                codec.build(PacketContext, lib, "lib_buf")
            staging.restoring = (lib_buf, lib)
            status = channel.restore_packet(channel, lib_buf, record.save_buf)
            staging.restoring = None
            if status != NtStatus.SUCCESS:
                raise NtStatusError(_callback_failure(status),
                                    f"the VSP's restore callback failed ({_status_text(status)})",
                                    f"channel.packets[txid={lib.transaction_id}]")
        channel.next_transaction_id = ctx.next_transaction_id  # allocate() moved it
        restored = len(channel.packets) + sum(p.type == 0xB for p in channel.backlog)
        if restored != len(saved.packets) or any(
                p.state == PacketState.ALLOCATED and p.transaction_id >= ctx.next_transaction_id
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


def rebuild_in_ring(channel) -> None:
    """What we wrote and the peer has not read, from a walk of the outgoing ring."""
    by_offset = {p.ring_offset: p for p in channel.packets.values()
                 if p.state == PacketState.IN_RING}
    channel.in_ring = deque(
        (wire.offset, by_offset.get(wire.offset)) for wire in channel.outgoing_ring.packets())


def packet_restore(channel: ServerChannel, packet: VmbPacket, lib_buf: bytes) -> NtStatus:
    """VmbPacketRestore: put the library's saved state into a freshly allocated packet."""
    if channel.packets.get(packet.transaction_id) is not packet:
        return NtStatus.INVALID_PARAMETER_1
    restoring = getattr(channel.restore_context, "restoring", None)
    if restoring is not None and restoring[0] is lib_buf:
        context = restoring[1]  # the bytes the library handed the callback, parsed
    else:
        try:
            context = codec.parse(PacketContext, bytes(lib_buf), "lib_buf")
        except BlobError:
            return NtStatus.INVALID_PARAMETER_2
    del channel.packets[packet.transaction_id]
    fill_packet(packet, context)
    if packet.type == 0xB:
        return NtStatus.INVALID_PARAMETER_2  # queued completions are the library's own
    if packet.transaction_id in channel.packets:
        return NtStatus.INVALID_PARAMETER_2
    channel.packets[packet.transaction_id] = packet
    if packet.state == PacketState.BACKLOG:
        channel.backlog.append(packet)
    return NtStatus.SUCCESS
