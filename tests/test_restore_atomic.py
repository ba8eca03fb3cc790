"""All-or-nothing VmbChannelRestoreFromBuffer: every failure path leaves the fresh channel
exactly as a never-touched channel built the same way, and returns the documented status.

DOMAIN.md §3: RestoreFromBuffer returns STATUS_SUCCESS when the final chunk is restored,
STATUS_MORE_PROCESSING_REQUIRED (0xC0000016) while more chunks remain, and any other
*failure* status otherwise.  The failure paths of `vmbtool.kmcl` and the status
each returns (FORMAT.md fixes the checksum, cap and revision ones):

=========================================================  ===============================
path                                                        status
=========================================================  ===============================
channel cleaned up, enabled, restored already               INVALID_DEVICE_STATE
no restore packet callback set                              INVALID_DEVICE_STATE
split_chunks: partial chunk header                          INVALID_BUFFER_SIZE
split_chunks: ChunkHeader.length over the 32 MiB cap        INVALID_BUFFER_SIZE
split_chunks: ChunkHeader.length runs past the buffer       INVALID_BUFFER_SIZE
split_chunks: reserved byte not 0, unknown flag bits        DATA_ERROR
split_chunks: data does not match ChunkHeader.crc32c        CRC_ERROR
a chunk after the channel's CHANNEL_END in the buffer       DATA_ERROR
stage_chunk: unknown chunk type with the required bit       REVISION_MISMATCH
stage_chunk: blob-level chunk (SCENARIO, END) in a channel  DATA_ERROR
stage_chunk: out of order, twice, before CHANNEL,           DATA_ERROR
             ring saved twice, buffers out of order
stage_chunk: chunk data that does not parse (grammar)       DATA_ERROR
final chunk: blob's offer differs from the channel's        INVALID_PARAMETER
final chunk: the offer is already on the bus                INVALID_DEVICE_STATE
final chunk: invariant (ChannelCheck) fails, e.g. the       DATA_ERROR
             CHANNEL_END counts, a saved state ACTIVE
_apply: the VSP's restore callback fails                    the callback's own failure status
        (VmbPacketRestore's INVALID_PARAMETER_2 passes        (INSUFFICIENT_RESOURCES,
        through it)                                           INVALID_PARAMETER, ...)
_apply: the callback answers with a status that is not a    UNSUCCESSFUL
        failure (MORE_PROCESSING_REQUIRED, PENDING, a
        warning is a failure and passes) or no NTSTATUS
_apply: the callback says SUCCESS but restored nothing      DATA_ERROR
_apply: the callback raises                                 the exception propagates
=========================================================  ===============================

`channel.restore_error` (an NtStatusError naming where) is the one thing a failure
leaves behind; it is not channel state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from typing import Any

import pytest
from conftest import fresh_channel

from vmbtool.blob import load_blob
from vmbtool.chunks import crc32c, frame_bytes, split_chunks
from vmbtool.formats.channel import ChannelContext
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE, ChunkType
from vmbtool.formats.end import ChannelEnd
from vmbtool.formats.limits import MAX_CHUNK_LENGTH
from vmbtool.formats.packet import PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.kmcl import restore_from_buffer, save_channel
from vmbtool.scenarios import SCENARIOS
from vmbtool.sim.channel import ServerChannel
from vmbtool.sim.config import ServerState
from vmbtool.snapshot import save_blob, split_buffers
from vmbtool.status import NtStatus, nt_success

SUCCESS = NtStatus.SUCCESS
MORE = NtStatus.MORE_PROCESSING_REQUIRED
SEED = 5
STEPS = 150
HUGE = 1 << 30


# -- the observable state of a channel ---------------------------------------------------
def _norm(value: Any, depth: int = 0) -> Any:
    """A comparable picture of a value: bound callbacks by name, objects by their fields."""
    if depth > 6:
        return repr(type(value))
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if hasattr(value, "__self__") and hasattr(value, "__func__"):  # a bound method
        return f"{type(value.__self__).__name__}.{value.__func__.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    if isinstance(value, dict):
        return {repr(k): _norm(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, deque)):
        return [_norm(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value):
        return {f.name: _norm(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value) if f.name != "channel"}
    return repr(value)


def observable(channel: ServerChannel) -> dict:
    """Everything a restore could change: every attribute, ring bytes, GPADLs, packets in
    use with their states, the life cycle and the bus's offers."""
    out: dict[str, Any] = {}
    for key, value in vars(channel).items():
        if key in ("restore_error", "bus"):
            continue
        if key == "connection":
            continue
        out[key] = _norm(value)
    out["__keys__"] = sorted(vars(channel))
    out["__state__"] = channel.state
    out["__offers__"] = sorted(repr(k) for k in channel.bus.offers)
    out["__packets_in_use__"] = [(p.transaction_id, p.state) for p in channel.packets_in_use()]
    connection = channel.connection
    if connection is None:
        out["__connection__"] = None
    else:
        out["__connection__"] = {
            "incoming": bytes(channel.incoming_ring.memory),
            "outgoing": bytes(channel.outgoing_ring.memory),
            "gpadls": _norm(connection.gpadls),
        }
    return out


# -- sources ------------------------------------------------------------------------------
@functools.cache
def _source(name: str, index: int) -> tuple[bytes, ...]:
    scenario = SCENARIOS[name].create(SEED)
    scenario.run(STEPS)
    blob = load_blob(save_blob(scenario, created_ns=0))
    return tuple(raw.framed for raw in blob.channel_chunks[index])


def chunks_of(name: str = "storage", index: int = 0) -> list[bytes]:
    """One channel's framed chunks in save order (a fresh list each call)."""
    return list(_source(name, index))


fresh = functools.partial(fresh_channel, seed=SEED)  # a server channel to restore into


def pristine_view(name: str = "storage", index: int = 0) -> dict:
    """The observable state of a channel nobody touched, built the same way."""
    return observable(fresh(name, index))


def feed(channel: ServerChannel, buffers: list[bytes]) -> list[NtStatus]:
    """RestoreFromBuffer buffer by buffer, stopping at the first status that is not MORE."""
    statuses = []
    for buffer in buffers:
        statuses.append(restore_from_buffer(channel, buffer))
        if statuses[-1] != MORE:
            break
    return statuses


def kind(chunk: bytes) -> int:
    return int.from_bytes(chunk[:2], "little")


def data_of(chunk: bytes) -> bytes:
    return chunk[CHUNK_HEADER_SIZE:]


def reframe(chunk: bytes, data: bytes) -> bytes:
    return frame_bytes(kind(chunk), data, chunk[2])


def nth(chunks: list[bytes], ctype: int, n: int = 0) -> int:
    return [i for i, c in enumerate(chunks) if kind(c) == ctype][n]


def with_header_field(chunk: bytes, offset: int, value: bytes) -> bytes:
    return chunk[:offset] + value + chunk[offset + len(value):]


def resaved(channel: ServerChannel) -> list[bytes]:
    return [raw.framed for buffer in save_channel(channel, HUGE) for raw in split_chunks(buffer)]


def assert_pristine_and_reusable(channel: ServerChannel, name: str, index: int,
                                 good: list[bytes]) -> None:
    """The channel equals a never-touched one, and the real state still restores into it."""
    assert channel.restore_context is None
    assert observable(channel) == pristine_view(name, index)
    assert feed(channel, split_buffers(good, HUGE)) == [SUCCESS]
    assert channel.restore_error is None
    assert resaved(channel) == good


def assert_failure(statuses: list[NtStatus], expected: NtStatus) -> None:
    assert statuses[-1] == expected, f"{NtStatus(statuses[-1])!s}, expected {expected!s}"
    assert all(s == MORE for s in statuses[:-1]), statuses
    assert not nt_success(expected) and expected != MORE  # a failure, not "continue"


# -- buffer and chunk edits ----------------------------------------------------------------
def edit_crc(chunks):
    k = nth(chunks, ChunkType.PACKET, 1)
    c = chunks[k]
    chunks[k] = c[:-1] + bytes([c[-1] ^ 0x10])


def edit_crc_last(chunks):
    c = chunks[-1]
    chunks[-1] = c[:-1] + bytes([c[-1] ^ 0x01])


def edit_crc_field(chunks):
    chunks[2] = with_header_field(chunks[2], 8, (crc32c(data_of(chunks[2])) ^ 1).to_bytes(4,
                                                                                        "little"))


def edit_reserved(chunks):
    chunks[1] = with_header_field(chunks[1], 3, b"\x01")


def edit_flags(chunks):
    chunks[1] = with_header_field(chunks[1], 2, b"\x03")


def edit_length(value: int):
    def edit(chunks):
        k = nth(chunks, ChunkType.GPADLS)
        chunks[k] = with_header_field(chunks[k], 4, value.to_bytes(4, "little"))
    return edit


def edit_length_past(chunks):
    k = nth(chunks, ChunkType.PACKET, 0)
    length = len(data_of(chunks[k]))
    # the whole channel is one buffer: run just past its end
    total_after = sum(len(c) for c in chunks[k:]) - CHUNK_HEADER_SIZE
    chunks[k] = with_header_field(chunks[k], 4, (total_after + 1).to_bytes(4, "little"))
    assert total_after + 1 > length


def edit_unknown_required(chunks):
    chunks.insert(3, frame_bytes(0x0777, b"a chunk of a newer revision", 1))


def edit_scenario_chunk_inside(chunks):
    chunks.insert(2, frame_bytes(ChunkType.SCENARIO, b"\x00", 1))


def edit_end_chunk_inside(chunks):
    chunks.insert(2, frame_bytes(ChunkType.END, bytes(44), 1))


def edit_out_of_order(chunks):
    g, r = nth(chunks, ChunkType.GPADLS), nth(chunks, ChunkType.RING)
    chunks[g], chunks[r] = chunks[r], chunks[g]


def edit_channel_twice(chunks):
    chunks.insert(1, chunks[0])


def edit_incoming_before_packets(chunks):
    i = nth(chunks, ChunkType.INCOMING)
    chunks.insert(nth(chunks, ChunkType.PACKET), chunks.pop(i))


def edit_no_channel_chunk(chunks):
    del chunks[0]


def edit_ring_twice(chunks):
    r = nth(chunks, ChunkType.RING)
    chunks[r] = chunks[r + 1]


def edit_grammar(chunks):
    """Resealed (CRC right) chunk data that does not parse: a bytes left over."""
    k = nth(chunks, ChunkType.GPADLS)
    chunks[k] = reframe(chunks[k], data_of(chunks[k]) + b"\x00")


def edit_packet_state_enum(chunks):
    k = nth(chunks, ChunkType.PACKET, 2)
    record = bytearray(data_of(chunks[k]))
    record[4 + 8] = 9  # lib_size u32, transaction_id u64, then the state byte
    chunks[k] = reframe(chunks[k], bytes(record))


def edit_chunk_after_end(chunks):
    chunks.append(chunks[0])


def _edit_end(chunks, **changes):
    k = nth(chunks, ChunkType.CHANNEL_END)
    end = ChannelEnd.parse(data_of(chunks[k]))
    end.update(changes)
    chunks[k] = reframe(chunks[k], ChannelEnd.build(end))


def edit_end_count(field: str, value: int):
    def edit(chunks):
        _edit_end(chunks, **{field: value})
    return edit


def edit_end_count_plus_one(chunks):
    end = ChannelEnd.parse(data_of(chunks[-1]))
    _edit_end(chunks, packet_count=end.packet_count + 1)


def _edit_context(chunks, **changes):
    context = ChannelContext.parse(data_of(chunks[0]))
    context.update(changes)
    chunks[0] = reframe(chunks[0], ChannelContext.build(context))


def edit_state_active(chunks):
    _edit_context(chunks, state=int(ServerState.ACTIVE))


def edit_state_unknown(chunks):
    _edit_context(chunks, state=9)


def edit_role_client(chunks):
    _edit_context(chunks, role="client")


def edit_write_index(chunks):
    k = nth(chunks, ChunkType.RING, 1)
    ring = RingState.parse(data_of(chunks[k]))
    ring.write_index = (ring.write_index + 4) % (ring.data_pages * 4096)
    chunks[k] = reframe(chunks[k], RingState.build(ring))


def edit_txid_duplicate(chunks):
    k = nth(chunks, ChunkType.PACKET, 0)
    chunks.insert(k + 1, chunks[k])
    end = ChannelEnd.parse(data_of(chunks[-1]))
    _edit_end(chunks, packet_count=end.packet_count + 1)


def edit_save_buf_short(chunks):
    k = nth(chunks, ChunkType.PACKET, 3)
    record = PacketRecord.parse(data_of(chunks[k]))
    assert len(record.save_buf) > 0
    record.save_buf = bytes(record.save_buf)[:-1]
    chunks[k] = reframe(chunks[k], PacketRecord.build(record))


def edit_routine_unknown(chunks):
    k = nth(chunks, ChunkType.PACKET, 4)
    record = PacketRecord.parse(data_of(chunks[k]))
    assert record.lib_buf.completion_routine
    record.lib_buf.completion_routine = "routine_nobody_has"
    chunks[k] = reframe(chunks[k], PacketRecord.build(record))


# name -> (edit, status, a piece of restore_error.where)
CHUNK_FAILURES = {
    "bad chunk crc (data)": (edit_crc, NtStatus.CRC_ERROR, ".crc32c"),
    "bad chunk crc (field)": (edit_crc_field, NtStatus.CRC_ERROR, ".crc32c"),
    "bad crc on the last chunk": (edit_crc_last, NtStatus.CRC_ERROR, ".crc32c"),
    "chunk reserved byte": (edit_reserved, NtStatus.DATA_ERROR, "chunk_header"),
    "chunk unknown flag bits": (edit_flags, NtStatus.DATA_ERROR, ".flags"),
    "chunk length 0": (edit_length(0), NtStatus.CRC_ERROR, ".crc32c"),
    "chunk length over the cap": (edit_length(MAX_CHUNK_LENGTH + 1),
                                  NtStatus.INVALID_BUFFER_SIZE, ".length"),
    "chunk length 2^32-1": (edit_length(0xFFFF_FFFF), NtStatus.INVALID_BUFFER_SIZE, ".length"),
    "chunk length past the buffer": (edit_length_past, NtStatus.INVALID_BUFFER_SIZE, ".length"),
    "unknown required chunk (wrong revision)": (edit_unknown_required,
                                                NtStatus.REVISION_MISMATCH, ".type"),
    "scenario chunk in a channel": (edit_scenario_chunk_inside, NtStatus.DATA_ERROR, ".type"),
    "end chunk in a channel": (edit_end_chunk_inside, NtStatus.DATA_ERROR, ".type"),
    "chunks out of order": (edit_out_of_order, NtStatus.DATA_ERROR, ".type"),
    "channel chunk twice": (edit_channel_twice, NtStatus.DATA_ERROR, ".type"),
    "incoming before the packets": (edit_incoming_before_packets, NtStatus.DATA_ERROR, ".type"),
    "no channel chunk": (edit_no_channel_chunk, NtStatus.DATA_ERROR, ".type"),
    "ring twice": (edit_ring_twice, NtStatus.DATA_ERROR, "rings.outgoing"),
    "chunk data does not parse": (edit_grammar, NtStatus.DATA_ERROR, "gpadls"),
    "unknown packet state value": (edit_packet_state_enum, NtStatus.DATA_ERROR, "packet"),
    "chunk after the channel end": (edit_chunk_after_end, NtStatus.DATA_ERROR, "chunk@"),
    "channel end packet_count + 1 (last chunk)": (edit_end_count_plus_one, NtStatus.DATA_ERROR,
                                                  "channel_end.packet_count"),
    "channel end packet_count 0": (edit_end_count("packet_count", 0), NtStatus.DATA_ERROR,
                                   "channel_end.packet_count"),
    "channel end gpadl_count 2^32-1": (edit_end_count("gpadl_count", 0xFFFF_FFFF),
                                       NtStatus.DATA_ERROR, "channel_end.gpadl_count"),
    "channel end incoming_count 2^32-1": (edit_end_count("incoming_count", 0xFFFF_FFFF),
                                          NtStatus.DATA_ERROR, "channel_end.incoming_count"),
    "saved while active (invariant)": (edit_state_active, NtStatus.DATA_ERROR, "context.state"),
    "unknown saved state (invariant)": (edit_state_unknown, NtStatus.DATA_ERROR,
                                        "context.state"),
    "role client (invariant)": (edit_role_client, NtStatus.DATA_ERROR, "context.role"),
    "write index not aligned (invariant)": (edit_write_index, NtStatus.DATA_ERROR,
                                            "rings.outgoing.write_index"),
    "duplicate transaction id (invariant)": (edit_txid_duplicate, NtStatus.DATA_ERROR,
                                             "packets[txid="),
    "VSP refuses its SaveBuf": (edit_save_buf_short, NtStatus.INVALID_PARAMETER,
                                "packets[txid="),
    "VSP has no such completion routine": (edit_routine_unknown, NtStatus.INVALID_PARAMETER,
                                           "packets[txid="),
}


SAME_BUFFER = {"chunk after the channel end"}


@pytest.mark.parametrize("size", [1, 8191, HUGE], ids=["chunk-per-buffer", "8191", "one-buffer"])
@pytest.mark.parametrize("case", sorted(CHUNK_FAILURES))
def test_chunk_failure_leaves_the_channel_pristine(case, size):
    edit, status, where = CHUNK_FAILURES[case]
    good = chunks_of()
    bad = list(good)
    edit(bad)
    assert bad != good
    channel = fresh()
    buffers = split_buffers(bad, size)
    if case in SAME_BUFFER and len(buffers) > 1:
        buffers[-2:] = [buffers[-2] + buffers[-1]]  # the extra chunk rides with the final one
    statuses = feed(channel, buffers)
    assert_failure(statuses, status)
    error = channel.restore_error
    assert error is not None and error.status == status
    assert where in error.where, error.where
    assert_pristine_and_reusable(channel, "storage", 0, good)


@pytest.mark.parametrize("name,index", [("storage", 0), ("network", 1), ("pipe", 0)])
def test_a_crc_failure_at_every_chunk(name, index):
    """Fail at chunk k (one chunk per buffer): k MOREs, then CRC_ERROR, nothing applied."""
    good = chunks_of(name, index)
    view = pristine_view(name, index)
    channel = fresh(name, index)
    for k in range(len(good)):
        bad = list(good)
        bad[k] = bad[k][:-1] + bytes([bad[k][-1] ^ 0x80])
        statuses = feed(channel, split_buffers(bad, 1))
        assert statuses == [MORE] * k + [NtStatus.CRC_ERROR]
        assert channel.restore_error.where.endswith(".crc32c")
        assert observable(channel) == view
    assert_pristine_and_reusable(channel, name, index, good)


def test_buffers_out_of_order():
    good = chunks_of()
    buffers = split_buffers(good, 1)
    channel = fresh()
    # the second buffer first: state before the channel chunk
    assert restore_from_buffer(channel, buffers[1]) == NtStatus.DATA_ERROR
    assert "before the channel chunk" in channel.restore_error.args[0]
    assert observable(channel) == pristine_view()
    # two buffers swapped in the middle: out of order once the later one arrives
    swapped = list(buffers)
    k = nth(good, ChunkType.PACKET, 0)
    swapped[k - 1], swapped[k] = swapped[k], swapped[k - 1]  # a PACKET before the GPADLS
    statuses = feed(channel, swapped)
    assert_failure(statuses, NtStatus.DATA_ERROR)
    assert "out of order" in channel.restore_error.args[0]
    assert observable(channel) == pristine_view()
    # the final buffer sent again after a complete restore is refused: no longer fresh
    assert_pristine_and_reusable(channel, "storage", 0, good)
    before = observable(channel)
    assert restore_from_buffer(channel, buffers[-1]) == NtStatus.INVALID_DEVICE_STATE
    assert observable(channel) == before


def test_a_failed_buffer_is_not_continued():
    """After a failure midway, later buffers do not carry on the lost restore."""
    good = chunks_of()
    buffers = split_buffers(good, 1)
    channel = fresh()
    k = nth(good, ChunkType.PACKET, 2)
    bad = list(buffers)
    bad[k] = bad[k][:-1] + bytes([bad[k][-1] ^ 1])
    assert feed(channel, bad) == [MORE] * k + [NtStatus.CRC_ERROR]
    for buffer in buffers[k + 1:]:
        status = restore_from_buffer(channel, buffer)
        assert status == NtStatus.DATA_ERROR  # "state before the channel chunk"
        assert observable(channel) == pristine_view()
    assert_pristine_and_reusable(channel, "storage", 0, good)


# -- the target's offer -----------------------------------------------------------------
def test_offer_mismatch():
    good = chunks_of("network", 2)
    channel = fresh("network", 1)  # another subchannel
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_PARAMETER)
    assert channel.restore_error.where == "channel.context.subchannel_index"
    assert_pristine_and_reusable(channel, "network", 1, chunks_of("network", 1))


def test_offer_already_on_the_bus():
    good = chunks_of()
    scenario = SCENARIOS["storage"](SEED)
    other = scenario.allocate_server(0)
    assert other.enable() == SUCCESS  # the same offer is already on this bus
    channel = scenario.allocate_server(0)
    before = observable(channel)
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_DEVICE_STATE)
    assert "interface_instance" in channel.restore_error.where
    assert observable(channel) == before
    assert channel.bus.offers == {other.config.offer_key: other}


# -- the VSP's restore callback ----------------------------------------------------------
def failing_at(channel: ServerChannel, call: int, result: Any):
    """Wrap the VSP's callback: call number `call` returns `result` (or raises it)."""
    good = channel.restore_packet
    calls: list[bytes] = []

    def callback(ch, lib_buf, save_buf):
        calls.append(lib_buf)
        if len(calls) == call:
            if isinstance(result, BaseException):
                raise result
            return result
        return good(ch, lib_buf, save_buf)

    channel.restore_packet = callback
    return good, calls


def vsp_packets(chunks: list[bytes]) -> int:
    """PACKET chunks the VSP's callback sees (queued completions are the library's)."""
    return sum(kind(c) == ChunkType.PACKET and
               PacketRecord.parse(data_of(c)).lib_buf.type != "completion" for c in chunks)


@pytest.mark.parametrize("where", ["first", "midway", "last"])
@pytest.mark.parametrize("name,index", [("storage", 0), ("network", 1)])
def test_restore_callback_fails(name, index, where):
    good = chunks_of(name, index)
    total = vsp_packets(good)
    assert total >= 3
    call = {"first": 1, "midway": total // 2, "last": total}[where]
    channel = fresh(name, index)
    callback, calls = failing_at(channel, call, NtStatus.INSUFFICIENT_RESOURCES)
    statuses = feed(channel, split_buffers(good, 1))
    assert_failure(statuses, NtStatus.INSUFFICIENT_RESOURCES)
    assert len(calls) == call  # packets before it were restored, then rolled back
    assert channel.restore_error.where.startswith("channel.packets[txid=")
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, name, index, good)


def test_packet_restore_refuses_a_bad_lib_buf():
    """VmbPacketRestore's own failure (INVALID_PARAMETER_2) comes back through the VSP."""
    good = chunks_of()
    channel = fresh()
    callback = channel.restore_packet
    seen = []

    def truncating(ch, lib_buf, save_buf):
        seen.append(1)
        if len(seen) == 2:
            lib_buf = lib_buf[:-1]
        return callback(ch, lib_buf, save_buf)

    channel.restore_packet = truncating
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_PARAMETER_2)
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


def test_restore_callback_that_restores_nothing():
    good = chunks_of()
    channel = fresh()
    callback = channel.restore_packet
    channel.restore_packet = lambda ch, lib_buf, save_buf: SUCCESS
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.DATA_ERROR)
    assert channel.restore_error.where == "channel.packets"
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


@pytest.mark.parametrize("answer", [MORE, NtStatus.PENDING, NtStatus.BUFFER_OVERFLOW, 0xC0000022,
                                    1, None, "fine"],
                         ids=["more-processing", "pending", "warning", "unknown-ntstatus",
                              "success-severity-int", "none", "not-a-status"])
def test_restore_callback_answers_something_odd(answer):
    """A callback answer that is not a failure NTSTATUS must not come back as "continue"
    (MORE_PROCESSING_REQUIRED) or as a success code, nor escape as an exception."""
    good = chunks_of()
    channel = fresh()
    callback, calls = failing_at(channel, 2, answer)
    statuses = feed(channel, [b"".join(good)])
    expected = NtStatus.BUFFER_OVERFLOW if answer == NtStatus.BUFFER_OVERFLOW \
        else NtStatus.UNSUCCESSFUL
    assert_failure(statuses, expected)
    assert len(calls) == 2
    assert channel.restore_error.where.startswith("channel.packets[txid=")
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


def test_restore_callback_raises():
    """A VSP bug (an exception from its callback) propagates, and the channel is still
    the fresh one: nothing applied, nothing staged."""
    good = chunks_of()
    channel = fresh()
    callback, calls = failing_at(channel, 3, RuntimeError("VSP bug"))
    with pytest.raises(RuntimeError, match="VSP bug"):
        restore_from_buffer(channel, b"".join(good))
    assert len(calls) == 3
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


def test_restore_callback_raises_after_more_processing():
    good = chunks_of()
    buffers = split_buffers(good, 1)
    channel = fresh()
    callback, _ = failing_at(channel, 1, KeyError("VSP bug"))
    for buffer in buffers[:-1]:
        assert restore_from_buffer(channel, buffer) == MORE
    with pytest.raises(KeyError):
        restore_from_buffer(channel, buffers[-1])
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


# -- wrong life-cycle state ----------------------------------------------------------------
def test_restore_into_an_enabled_channel():
    good = chunks_of()
    channel = fresh()
    assert channel.enable() == SUCCESS
    before = observable(channel)
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_DEVICE_STATE)
    assert channel.restore_error.where == "channel.state"
    assert observable(channel) == before


def test_restore_into_a_started_channel():
    good = chunks_of()
    channel = fresh()
    assert channel.enable() == SUCCESS and channel.start() == SUCCESS
    before = observable(channel)
    assert_failure(feed(channel, split_buffers(good, 1)), NtStatus.INVALID_DEVICE_STATE)
    assert observable(channel) == before


def test_restore_into_a_cleaned_up_channel():
    good = chunks_of()
    channel = fresh()
    assert channel.cleanup() == SUCCESS
    before = observable(channel)
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_DEVICE_STATE)
    assert observable(channel) == before


def test_restore_twice():
    good = chunks_of("pipe")
    channel = fresh("pipe")
    assert feed(channel, [b"".join(good)]) == [SUCCESS]
    before = observable(channel)
    assert_failure(feed(channel, split_buffers(good, 1)), NtStatus.INVALID_DEVICE_STATE)
    assert observable(channel) == before


def test_restore_without_a_restore_callback():
    good = chunks_of()
    channel = fresh()
    callback = channel.restore_packet
    channel.restore_packet = None
    assert_failure(feed(channel, [b"".join(good)]), NtStatus.INVALID_DEVICE_STATE)
    assert channel.restore_error.where == "channel.restore_packet"
    channel.restore_packet = callback
    assert_pristine_and_reusable(channel, "storage", 0, good)


def test_partial_chunk_header():
    good = chunks_of()
    channel = fresh()
    for buffer in (good[0][:5], good[0] + good[1][:CHUNK_HEADER_SIZE - 1]):
        assert_failure(feed(channel, [buffer]), NtStatus.INVALID_BUFFER_SIZE)
        assert channel.restore_error.where.startswith("chunk@")
        assert observable(channel) == pristine_view()
    assert_pristine_and_reusable(channel, "storage", 0, good)


def test_the_observable_state_sees_a_restore():
    """The comparison is not vacuous: a successful restore changes what it compares."""
    good = chunks_of()
    channel = fresh()
    assert feed(channel, split_buffers(good, 1))[-1] == SUCCESS
    after = observable(channel)
    view = pristine_view()
    changed = {k for k in view if view[k] != after.get(k)}
    assert {"packets", "__connection__", "__state__", "__packets_in_use__", "initializing",
            "enabled", "next_transaction_id"} <= changed
