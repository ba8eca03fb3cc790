"""RestoreFromBuffer's staging: whole chunks are added one by one to a staged channel,
in the order the grammar lays them out, before anything is applied (DOMAIN.md §3):

    VmbChannelRestoreFromBuffer(channel, buffer, size) — the buffer holds whole chunks;
    STATUS_SUCCESS when the final chunk is restored, STATUS_MORE_PROCESSING_REQUIRED
    when it went well and more chunks remain, any other failure status otherwise.

    CHANNEL_STATE ::= CHANNEL RING RING GPADLS {PACKET} INCOMING CHANNEL_END

Each chunk type has its handler in `STAGE_CHUNK`, a table, not a ladder. The blob reader
stages a file's channels with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmbtool import codec, lean
from vmbtool.chunks import RawChunk, decode_chunk, scan_chunk
from vmbtool.errors import BlobError
from vmbtool.fastpath import Refuse, TooManyElements
from vmbtool.formats import limits
from vmbtool.formats.kinds import CHUNK_KINDS, ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.generated.packet import PacketContext, PacketRecord
from vmbtool.state import SavedChannel
from vmbtool.status import NtStatus

LIB_BUF_SIZE = codec.prefix_layout(PacketRecord, "lib_buf")  # a PACKET's LibBuf length
_LIB_BUF_AT = LIB_BUF_SIZE.size  # and where its bytes start
# where a scanned PACKET (`codec.scan`) holds its fields: the record a tuple of
# (lib_buf, save_buf), the LibBuf a tuple of PacketContext's fields, in their order
LIB_BUF, SAVE_BUF = (list(PacketRecord.fields).index(name)
                     for name in ("lib_buf", "save_buf"))
_LIB_FIELDS = list(PacketContext.fields)
TXID, STATE, TYPE, SEND_FLAGS, RING_OFFSET, PAYLOAD, EXTERNAL = (
    _LIB_FIELDS.index(name) for name in ("transaction_id", "state", "type", "send_flags",
                                         "ring_offset", "payload", "external"))

if TYPE_CHECKING:  # a check is handed in by the reader that stages (lean reads)
    from vmbtool.invariants import ChannelCheck

# where each chunk of a channel's state stands in CHANNEL_STATE
ORDER: dict[int, int] = {
    ChunkType.CHANNEL: 0, ChunkType.RING: 1, ChunkType.GPADLS: 2,
    ChunkType.PACKET: 3, ChunkType.INCOMING: 4, ChunkType.CHANNEL_END: 5}
PACKET_ORDER = ORDER[ChunkType.PACKET]
# The enum members a packet meets on a hot path are bound once, in each module that
# meets them: on Python 3.11 each `ChunkType.PACKET` runs EnumType's __getattr__ hook
# (gone in 3.12), and those lookups were 10% of a restore's instructions (callgrind).
_PACKET = ChunkType.PACKET


@dataclass(eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class RestoreStaging:
    """What RestoreFromBuffer has staged of one channel so far, chunk by chunk, before
    anything of it reaches the channel."""

    saved: SavedChannel = field(default_factory=SavedChannel)
    last_order: int = -1
    chunks_seen: int = 0
    seen: set[int] = field(default_factory=set)  # chunk types staged so far
    check: ChannelCheck | None = None  # fed each part as it is staged (lean reads)
    keep_packets: bool = True  # False: packets (and pending incoming) checked, not kept
    keep_gpadls: bool = True
    last_record: Any = None  # the last PacketRecord staged, parsed (a scan sets `last`)
    # each kept packet's LibBuf bytes, as saved: what RestoreFromBuffer (a scanning
    # staging) hands the VSP's restore callback; a reader that keeps parsed packets
    # (decode, diff) applies none of them and keeps no bytes
    lib_bufs: list[bytes] = field(default_factory=list)
    # the LibBuf the VSP's restore callback is handed, and its scanned fields: the
    # callback's VmbPacketRestore of those very bytes need not parse them again
    restoring: tuple[bytes, Any] | None = None
    # transaction id << 1 | is a queued completion, of each packet staged (without a
    # check: a check keeps its own)
    packet_keys: set[int] = field(default_factory=set)
    # the channel's state was checked whole by an earlier read of the same bytes: its
    # packets' transaction ids and order are not checked again (kmcl.restore_chunks)
    checked: bool = False
    where: str = "channel"  # how errors name the channel: `channels[i]` in a blob
    # each packet scanned (`codec.scan`: its record and LibBuf as tuples, payload and VSP
    # state as views of the chunk's data, not copies), not parsed into containers: for a
    # check that keeps none of them, and for RestoreFromBuffer, which keeps the tuples
    # (`saved.packets`) and their LibBufs' bytes for the VSP's restore callback
    scans: bool = False
    last: tuple[int, Any] | None = None  # the last packet staged: (transaction id, state)


def stage_chunk(staging: RestoreStaging, raw: RawChunk, where: str, value: Any = None,
                blocks: Iterable[bytes] | None = None) -> bool:
    """Add one chunk to the staged state; True when it was the final chunk.

    `value` is the chunk already decoded; a ring streamed in `blocks` comes without
    its data (only a `check` reads them)."""
    if raw.type == _PACKET and staging.last_order == PACKET_ORDER and value is None:
        # a packet after a packet (most chunks): in order, its channel begun
        if staging.saved.packet_count >= limits.MAX_PACKETS_PER_CHANNEL:
            raise too_many_packets(raw, where)
        if staging.scans:  # (the usual record's scan first, with no wrapper)
            value = codec.usual_scan(PacketRecord, raw.data)
            return _stage_scanned(staging, raw, where,
                                  scan_chunk(raw, where) if value is None else value)
        return _stage_packet(staging, raw, where, decode_chunk(raw, where), None)
    order = ORDER.get(raw.type)
    if order is None:
        if raw.type in CHUNK_KINDS or raw.required:
            raise BlobError(f"{where}.chunk@{raw.offset}.type",
                            f"chunk type {raw.type:#06x} is not part of a channel's state"
                            if raw.type in CHUNK_KINDS else
                            f"unknown required chunk type {raw.type:#06x}",
                            NtStatus.REVISION_MISMATCH if raw.type not in CHUNK_KINDS
                            else NtStatus.DATA_ERROR)
        staging.saved.skipped.append(raw.type)
        return False
    if order < staging.last_order or (order == staging.last_order and raw.type in (
            ChunkType.CHANNEL, ChunkType.GPADLS, ChunkType.INCOMING)):
        raise BlobError(f"{where}.chunk@{raw.offset}.type",
                        f"{CHUNK_KINDS[raw.type].name} chunk out of order")
    if order > 0 and staging.saved.context is None:
        raise BlobError(f"{where}.chunk@{raw.offset}.type", "state before the channel chunk")
    if raw.type == ChunkType.CHANNEL_END:
        # CHANNEL_STATE ::= CHANNEL RING RING GPADLS {PACKET} INCOMING CHANNEL_END: the
        # GPADLS and INCOMING chunks are always written, empty or not
        for needed in (ChunkType.GPADLS, ChunkType.INCOMING):
            if needed not in staging.seen:
                raise BlobError(f"{where}.chunk@{raw.offset}.type",
                                f"channel_end chunk without the channel's "
                                f"{CHUNK_KINDS[needed].name} chunk")
    staging.last_order = order
    staging.seen.add(raw.type)
    if raw.type == ChunkType.PACKET and \
            staging.saved.packet_count >= limits.MAX_PACKETS_PER_CHANNEL:
        raise too_many_packets(raw, where)
    if value is None and raw.type in (ChunkType.GPADLS, ChunkType.INCOMING):
        # element by element under the caps: a hostile count is refused before more
        # than a cap is held (a whole parse would build it all first)
        value = lean.array_value(raw.type, raw.data, raw.offset + CHUNK_HEADER_SIZE, where,
                                keep=True)
    elif value is None:
        if staging.scans and raw.type == ChunkType.PACKET:
            return _stage_scanned(staging, raw, where, scan_chunk(raw, where))
        value = decode_chunk(raw, where)
    return STAGE_CHUNK[raw.type](staging, raw, where, value, blocks)


def stage_chunks(staging: RestoreStaging, chunks: Iterable[RawChunk], where: str) -> bool:
    """`stage_chunk` for each of a buffer's chunks in turn (RestoreFromBuffer); True when
    the last was the channel's final chunk, after which no chunk may come.

    A packet after a packet, most chunks of a channel, is scanned, checked and staged in
    this loop itself, as `stage_chunk` and `_stage_scanned` stage it (a test holds the
    two to the same state and the same refusals): the four calls a packet they make
    (with the codec's `usual_scan` and `_check_new_packet`) were 2.4% of a restore's
    instructions on Python 3.11. A refusal is said by the code that said it before."""
    final = False
    saved, check = staging.saved, staging.check
    fast = codec.compiled(PacketRecord) if staging.scans and staging.keep_packets \
        and codec.fast_path_enabled() else None
    scan_from = fast.scan_from if fast is not None else None
    cap, lib_buf_at, unpack_size = limits.MAX_PACKETS_PER_CHANNEL, _LIB_BUF_AT, \
        LIB_BUF_SIZE.unpack_from
    keep_packet, keep_lib_buf = saved.packets.append, staging.lib_bufs.append
    seen = check.seen if check is not None else staging.packet_keys
    for raw in chunks:
        if final:
            raise BlobError(f"{where}.chunk@{raw.offset}", "chunks after the channel end")
        if raw.type != _PACKET or staging.last_order != PACKET_ORDER or scan_from is None:
            final = stage_chunk(staging, raw, where)
            continue
        if saved.packet_count >= cap:
            raise too_many_packets(raw, where)
        data = raw.data
        try:
            value, used = scan_from(data)
        except (Refuse, TooManyElements):
            used = -1
        if used != len(data):  # not the usual record: the grammar says what is wrong
            _stage_scanned(staging, raw, where, scan_chunk(raw, where))
            continue
        lib = value[LIB_BUF]
        txid, state, ptype = lib[TXID], lib[STATE], lib[TYPE]
        if not staging.checked:
            key = txid << 1 | (ptype == "completion")
            last = staging.last
            if key in seen or (last is not None and state != "backlog" and (
                    last[1] == "backlog" or last[0] >= txid)):
                _check_new_packet(staging, txid, state, ptype, where)  # says which
            if check is None:
                seen.add(key)
        staging.last = (txid, state)
        saved.packet_count += 1
        keep_packet(value)
        (size,) = unpack_size(data)  # what VmbPacketRestore takes back
        keep_lib_buf(data[lib_buf_at:lib_buf_at + size])
        if check is not None:
            check.packet_fields(txid, ptype, state, lib[SEND_FLAGS], lib[RING_OFFSET],
                                len(lib[PAYLOAD]), lib[EXTERNAL])
    return final


def too_many_packets(raw: RawChunk, where: str) -> BlobError:
    """Refused before its data is parsed: an endless channel costs no parses."""
    cap = limits.MAX_PACKETS_PER_CHANNEL
    return BlobError(f"{where}.packets (chunk@{raw.offset})",
                     f"more than {cap} packet objects in one channel",
                     NtStatus.INSUFFICIENT_RESOURCES)


# -- one handler a chunk type: (staging, raw, where, value, blocks) -> final chunk? ----


def _stage_channel(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                   blocks: Iterable[bytes] | None) -> bool:
    staging.saved.context = value
    if staging.check is not None:
        staging.check.context(value)
    return False


def _stage_ring(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                blocks: Iterable[bytes] | None) -> bool:
    saved = staging.saved
    direction = str(value.direction)
    if direction in saved.rings:
        raise BlobError(f"{where}.rings.{direction}", "ring saved twice")
    if direction == "incoming" and "outgoing" in saved.rings:
        raise BlobError(f"{where}.chunk@{raw.offset}.type",
                        "ring chunk out of order: the incoming ring comes first")
    saved.rings[direction] = value
    if staging.check is not None:
        staging.check.ring(value, blocks)
    return False


def _stage_gpadls(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                  blocks: Iterable[bytes] | None) -> bool:
    saved, check = staging.saved, staging.check
    gpadls = value.gpadls  # a lean read's are parsed as they are checked
    if staging.keep_gpadls:
        gpadls = saved.gpadls = list(gpadls)
    saved.gpadl_count = check.gpadl_table(gpadls) if check else sum(1 for _ in gpadls)
    return False


def _stage_packet(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                  blocks: Iterable[bytes] | None) -> bool:
    saved, lib = staging.saved, value["lib_buf"]
    txid, state = lib["transaction_id"], lib["state"]
    if not staging.checked:
        _check_new_packet(staging, txid, state, lib["type"], where)
    staging.last, staging.last_record = (txid, state), value
    saved.packet_count += 1
    if staging.keep_packets:
        saved.packets.append(value)
    if staging.check is not None:
        staging.check.packet(value)
    return False


def _stage_scanned(staging: RestoreStaging, raw: RawChunk, where: str, value: Any) -> bool:
    """A PACKET scanned: its fields as they lie in the scan's tuples, handed to the check
    one by one; the tuples kept when the staging keeps packets."""
    lib = value[LIB_BUF]
    txid, state, ptype = lib[TXID], lib[STATE], lib[TYPE]
    if not staging.checked:
        _check_new_packet(staging, txid, state, ptype, where)
    staging.last = (txid, state)
    saved = staging.saved
    saved.packet_count += 1
    if staging.keep_packets:
        saved.packets.append(value)
        data = raw.data
        (size,) = LIB_BUF_SIZE.unpack_from(data)  # what VmbPacketRestore takes back
        staging.lib_bufs.append(data[_LIB_BUF_AT:_LIB_BUF_AT + size])
    check = staging.check
    if check is not None:
        check.packet_fields(txid, ptype, state, lib[SEND_FLAGS], lib[RING_OFFSET],
                            len(lib[PAYLOAD]), lib[EXTERNAL])
    return False


def _stage_incoming(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                    blocks: Iterable[bytes] | None) -> bool:
    saved, check = staging.saved, staging.check
    entries = value.packets
    if staging.keep_packets:
        entries = saved.incoming = list(entries)
    saved.incoming_count = check.pending_incoming(entries) if check else \
        sum(1 for _ in entries)
    return False


def _stage_channel_end(staging: RestoreStaging, raw: RawChunk, where: str, value: Any,
                       blocks: Iterable[bytes] | None) -> bool:
    staging.saved.end = value
    if staging.check is not None:
        staging.saved.problems = staging.check.channel_end(value)
    return True


StageChunk = Callable[[RestoreStaging, RawChunk, str, Any, "Iterable[bytes] | None"], bool]

# Dispatch by table: the chunk types of a channel's state, each to its handler.
STAGE_CHUNK: dict[int, StageChunk] = {
    ChunkType.CHANNEL: _stage_channel,
    ChunkType.RING: _stage_ring,
    ChunkType.GPADLS: _stage_gpadls,
    ChunkType.PACKET: _stage_packet,
    ChunkType.INCOMING: _stage_incoming,
    ChunkType.CHANNEL_END: _stage_channel_end,
}


def _check_new_packet(staging: RestoreStaging, txid: int, state: Any, ptype: Any,
                      where: str) -> None:
    """A repeated transaction id is called one (before the order check, which it would
    fail too), as it comes: not after an endless channel. PACKET chunks come as
    packets_in_use() hands them out: the packets not in the backlog by rising
    transaction id, then the backlog in its own order."""
    completion = ptype == "completion"
    key = txid << 1 | completion
    check = staging.check
    if key in (check.seen if check is not None else staging.packet_keys):
        label = "completion" if completion else "txid"
        raise BlobError(f"{where}.packets[{label}={txid}]", f"duplicate transaction id {txid}")
    last = staging.last
    if last is not None and state != "backlog":
        last_txid, last_state = last
        if last_state == "backlog" or last_txid >= txid:
            raise BlobError(f"{where}.packets[txid={txid}]",
                            "packet chunk out of order: packets not in the backlog come "
                            f"first, by rising transaction id (after "
                            f"txid={last_txid} {last_state})")
    if check is None:
        staging.packet_keys.add(key)
