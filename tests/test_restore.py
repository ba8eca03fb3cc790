"""VmbChannelRestoreFromBuffer (DOMAIN.md §3): restored scenarios carry on exactly as the
originals would (checked like CRIU's zdtm: same final state, same transcript), a restore
re-saves to the same bytes, and every failure leaves the fresh channel untouched."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections import deque

import pytest
from conftest import fresh_channel

from vmbtool.blob import load_blob
from vmbtool.chunks import frame_bytes, split_chunks
from vmbtool.formats.channel import ChannelContext
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE, ChunkType
from vmbtool.formats.end import ChannelEnd
from vmbtool.formats.gpadl import GpadlTable
from vmbtool.formats.incoming import PendingIncoming
from vmbtool.formats.packet import PacketRecord
from vmbtool.formats.ring import RingState
from vmbtool.kmcl import restore_from_buffer, save_channel
from vmbtool.scenarios import SCENARIOS
from vmbtool.sim.channel import ServerChannel
from vmbtool.snapshot import restore as snapshot_restore
from vmbtool.snapshot import restore_file, save_blob, split_buffers
from vmbtool.status import NtStatus, nt_success

SUCCESS = NtStatus.SUCCESS
MORE = NtStatus.MORE_PROCESSING_REQUIRED
HUGE = 1 << 30
SAVE_POINTS = (20, 75, 150)
RUN_ON = 60
SEED = 3


# -- equivalence (zdtm) -------------------------------------------------------------
def restore_sizes(blob) -> dict[str, int]:
    largest = max(len(raw.framed) for chunks in blob.channel_chunks for raw in chunks)
    return {"largest": largest, "prime": 8191, "huge": HUGE}


@pytest.mark.parametrize("size_kind", ["largest", "prime", "huge"])
@pytest.mark.parametrize("steps", SAVE_POINTS)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_restored_scenario_carries_on_like_the_original(name, steps, size_kind,
                                                        monkeypatch):
    """`vmbtool restore`'s path (`restore_file`): RestoreFromBuffer's staging gets as
    many buffers as `split_buffers` makes of each channel of the blob as load_blob reads
    it, and the restored scenario carries on as the original does."""
    cls = SCENARIOS[name]
    a = cls.create(SEED)
    a.run(steps)
    data = save_blob(a, created_ns=0)
    blob = load_blob(data)
    size = restore_sizes(blob)[size_kind]

    calls = []
    original = snapshot_restore.restore_chunks

    def counting(channel, chunks, *checked):
        status = original(channel, chunks, *checked)
        calls.append(status)
        return status

    monkeypatch.setattr(snapshot_restore, "restore_chunks", counting)
    r = restore_file(data, buffer_size=size)
    monkeypatch.undo()
    expected_buffers = sum(len(split_buffers([c.framed for c in chunks], size))
                           for chunks in blob.channel_chunks)
    assert len(calls) == expected_buffers
    assert calls.count(SUCCESS) == len(blob.channels)
    if size_kind != "huge":
        assert MORE in calls  # the restore really came in several buffers

    r.start()
    r.run(RUN_ON)
    c = cls.create(SEED)
    c.run(steps + RUN_ON, pause_at=steps)
    assert r.steps_taken == c.steps_taken == steps + RUN_ON
    assert save_blob(r, created_ns=0) == save_blob(c, created_ns=0)

    # the same events from the save point on: what `a` logged while it paused for the
    # save (entries of step `steps`), then everything the restored scenario logged
    from_save_point = [e for e in c.transcript if int(e.split(":", 1)[0]) >= steps]
    at_pause = [e for e in a.transcript if e.startswith(f"{steps}:")]
    assert from_save_point == at_pause + r.transcript
    assert len(r.transcript) > 10  # it did carry on


@pytest.mark.parametrize("steps", SAVE_POINTS)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_restore_then_save_gives_the_same_blob(name, steps):
    a = SCENARIOS[name].create(SEED)
    a.run(steps)
    for level, sizes in ((3, (1, HUGE)), (None, (8191,))):
        blob = save_blob(a, created_ns=0, level=level)
        for size in sizes:
            again = save_blob(restore_file(blob, buffer_size=size), created_ns=0, level=level)
            assert again == blob


# -- helpers for single channels ----------------------------------------------------
def source_chunks(name: str, steps: int = 75, index: int = 0, seed: int = SEED):
    """A paused scenario and one channel's framed chunks, in save order."""
    scenario = SCENARIOS[name].create(seed)
    scenario.run(steps)
    blob = load_blob(save_blob(scenario, created_ns=0))
    return scenario, [raw.framed for raw in blob.channel_chunks[index]]


@functools.cache
def _cached_chunks(name: str, steps: int) -> tuple[bytes, ...]:
    return tuple(source_chunks(name, steps)[1])


def saved_chunks(name: str, steps: int) -> list[bytes]:
    """Channel 0's chunks, computed once per (scenario, steps); a fresh list each call."""
    return list(_cached_chunks(name, steps))


fresh = functools.partial(fresh_channel, seed=SEED)  # a server channel to restore into


def snapshot(channel: ServerChannel) -> dict:
    """What a restore may change, copied so later changes show."""
    out = {}
    for key, value in channel.__dict__.items():
        if key == "restore_error":
            continue
        if isinstance(value, dict):
            value = list(value.items())
        elif isinstance(value, (deque, list)):
            value = list(value)
        elif dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        out[key] = value
    out["__keys__"] = sorted(channel.__dict__)
    out["__state__"] = channel.state
    out["__offers__"] = list(channel.bus.offers.items())
    out["__packet_states__"] = [(p.transaction_id, p.state) for p in channel.packets.values()]
    return out


def restore(channel: ServerChannel, chunks: list[bytes], size: int = HUGE) -> list[NtStatus]:
    """RestoreFromBuffer buffer by buffer, as a caller does: stop at the first status
    that is not MORE_PROCESSING_REQUIRED."""
    statuses = []
    for buffer in split_buffers(chunks, size):
        statuses.append(restore_from_buffer(channel, buffer))
        if statuses[-1] != MORE:
            break
    return statuses


def chunk_type(chunk: bytes) -> int:
    return int.from_bytes(chunk[:2], "little")


def data_of(chunk: bytes) -> bytes:
    return chunk[CHUNK_HEADER_SIZE:]


def reframe(chunk: bytes, data: bytes) -> bytes:
    return frame_bytes(chunk_type(chunk), data, chunk[2])


def index_of(chunks: list[bytes], ctype: int, nth: int = 0) -> int:
    return [i for i, c in enumerate(chunks) if chunk_type(c) == ctype][nth]


def resaved(channel: ServerChannel) -> list[bytes]:
    out = []
    for buffer in save_channel(channel, HUGE):
        out += [buffer[r.offset:r.offset + CHUNK_HEADER_SIZE + len(r.data)]
                for r in split_chunks(buffer)]
    return out


# -- buffer by buffer -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_more_processing_required_until_the_final_chunk(name):
    scenario = SCENARIOS[name].create(SEED)
    scenario.run(75)
    blob = load_blob(save_blob(scenario, created_ns=0))
    target = SCENARIOS[name](SEED)
    for index, raw_chunks in enumerate(blob.channel_chunks):
        chunks = [raw.framed for raw in raw_chunks]
        channel = target.allocate_server(index)
        statuses = restore(channel, chunks, 1)  # one chunk per buffer
        assert statuses == [MORE] * (len(chunks) - 1) + [SUCCESS]
        assert int(MORE) == 0xC0000016 and not nt_success(MORE)
        assert channel.restore_error is None
        assert resaved(channel) == chunks  # it holds exactly what was saved


def test_a_failed_buffer_discards_what_was_staged():
    _, chunks = source_chunks("storage")
    channel = fresh("storage")
    pristine = snapshot(channel)
    bad = list(chunks)
    k = index_of(bad, ChunkType.PACKET, 1)
    bad[k] = bad[k][:-1] + bytes([bad[k][-1] ^ 0x40])
    statuses = restore(channel, bad, 1)
    assert statuses == [MORE] * k + [NtStatus.CRC_ERROR]
    assert snapshot(channel) == pristine
    # what comes next does not continue the lost restore: it needs a new CHANNEL chunk
    rest = [restore_from_buffer(channel, c) for c in chunks[k + 1:]]
    assert rest[0] == NtStatus.DATA_ERROR
    assert "before the channel chunk" in channel.restore_error.args[0]
    assert snapshot(channel) == pristine
    assert restore(channel, chunks, 1)[-1] == SUCCESS


# -- failures leave the channel pristine ---------------------------------------------
def corrupt_data(chunks):
    k = index_of(chunks, ChunkType.RING, 1)
    c = chunks[k]
    chunks[k] = c[:CHUNK_HEADER_SIZE + 100] + bytes([c[CHUNK_HEADER_SIZE + 100] ^ 1]) \
        + c[CHUNK_HEADER_SIZE + 101:]


def bad_order(chunks):
    g, r = index_of(chunks, ChunkType.GPADLS), index_of(chunks, ChunkType.RING)
    chunks[g], chunks[r] = chunks[r], chunks[g]


def channel_twice(chunks):
    chunks.insert(1, chunks[0])


def unknown_required(chunks):
    chunks.insert(3, frame_bytes(0x0777, b"from a newer minor", 1))


def _edit_end(chunks, **changes):
    k = index_of(chunks, ChunkType.CHANNEL_END)
    end = ChannelEnd.parse(data_of(chunks[k]))
    end.update(changes)
    chunks[k] = reframe(chunks[k], ChannelEnd.build(end))
    return end


def duplicate_packet(chunks):
    k = index_of(chunks, ChunkType.PACKET)
    chunks.insert(k + 1, chunks[k])
    end = ChannelEnd.parse(data_of(chunks[-1]))
    _edit_end(chunks, packet_count=end.packet_count + 1)


def write_index_not_aligned(chunks):
    k = index_of(chunks, ChunkType.RING, 1)  # outgoing
    ring = RingState.parse(data_of(chunks[k]))
    assert str(ring.direction) == "outgoing"
    ring.write_index = (ring.write_index + 4) % (ring.data_pages * 4096)
    chunks[k] = reframe(chunks[k], RingState.build(ring))


def txid_from_the_future(chunks):
    k = index_of(chunks, ChunkType.PACKET)
    record = PacketRecord.parse(data_of(chunks[k]))
    record.lib_buf.transaction_id = 1 << 40
    chunks[k] = reframe(chunks[k], PacketRecord.build(record))


def end_counts_wrong(chunks):
    end = ChannelEnd.parse(data_of(chunks[-1]))
    _edit_end(chunks, packet_count=end.packet_count + 1)


def ring_twice(chunks):
    k = index_of(chunks, ChunkType.RING)
    chunks[k] = chunks[k + 1]  # the outgoing ring where the incoming one was


def ring_missing(chunks):
    del chunks[index_of(chunks, ChunkType.RING)]


def incoming_out_of_range(chunks):
    k = index_of(chunks, ChunkType.INCOMING)
    table = PendingIncoming.parse(data_of(chunks[k]))
    table.packets.append({"number": 1 << 40, "transaction_id": 5, "type": "inband",
                          "flags": 1, "payload": b"x",
                          "external": {"kind": "none", "body": None}})
    chunks[k] = reframe(chunks[k], PendingIncoming.build(table))
    end = ChannelEnd.parse(data_of(chunks[-1]))
    _edit_end(chunks, incoming_count=end.incoming_count + 1)


def role_client(chunks):
    context = ChannelContext.parse(data_of(chunks[0]))
    context.role = "client"
    chunks[0] = reframe(chunks[0], ChannelContext.build(context))


# name -> (edit, expected status, a piece of restore_error.where)
FAILURES = {
    "crc": (corrupt_data, NtStatus.CRC_ERROR, "crc32c"),
    "order": (bad_order, NtStatus.DATA_ERROR, ".type"),
    "channel twice": (channel_twice, NtStatus.DATA_ERROR, ".type"),
    "unknown required chunk": (unknown_required, NtStatus.REVISION_MISMATCH, ".type"),
    "duplicate packet": (duplicate_packet, NtStatus.DATA_ERROR, "packets[txid="),
    "write_index not multiple of 8": (write_index_not_aligned, NtStatus.DATA_ERROR,
                                      "rings.outgoing.write_index"),
    "txid from the future": (txid_from_the_future, NtStatus.DATA_ERROR, "packets[txid="),
    "channel end counts": (end_counts_wrong, NtStatus.DATA_ERROR,
                           "channel_end.packet_count"),
    "ring twice": (ring_twice, NtStatus.DATA_ERROR, "rings.outgoing"),
    "ring missing": (ring_missing, NtStatus.DATA_ERROR, "rings.incoming"),
    "pending incoming number out of range": (incoming_out_of_range, NtStatus.DATA_ERROR,
                                             "pending_incoming[number="),
    "role client": (role_client, NtStatus.DATA_ERROR, "context.role"),
}


@pytest.mark.parametrize("size", [1, HUGE])
@pytest.mark.parametrize("case", sorted(FAILURES))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_failure_leaves_the_channel_pristine(name, case, size):
    edit, status, where = FAILURES[case]
    chunks = saved_chunks(name, 150)
    bad = list(chunks)
    edit(bad)
    assert bad != chunks
    channel = fresh(name)
    pristine = snapshot(channel)
    statuses = restore(channel, bad, size)
    assert statuses[-1] == status
    assert all(s == MORE for s in statuses[:-1])
    assert snapshot(channel) == pristine
    error = channel.restore_error
    assert error is not None and error.status == status
    assert where in error.where, error.where
    # the channel is still fresh: the real state restores into it
    assert restore(channel, chunks, size)[-1] == SUCCESS
    assert channel.restore_error is None
    assert resaved(channel) == chunks


def test_failure_on_the_last_chunk_after_more_processing():
    _, chunks = source_chunks("network", 150, index=1)
    bad = list(chunks)
    end_counts_wrong(bad)
    channel = fresh("network", index=1)
    pristine = snapshot(channel)
    statuses = restore(channel, bad, 1)
    assert len(statuses) == len(chunks) > 10
    assert statuses[:-1] == [MORE] * (len(chunks) - 1)
    assert statuses[-1] == NtStatus.DATA_ERROR
    assert snapshot(channel) == pristine


def test_chunk_after_the_channel_end():
    _, chunks = source_chunks("storage")
    channel = fresh("storage")
    pristine = snapshot(channel)
    # in the same buffer: refused, nothing applied
    assert restore_from_buffer(channel, b"".join(chunks + chunks[-1:])) == NtStatus.DATA_ERROR
    assert snapshot(channel) == pristine
    assert "chunk@" in channel.restore_error.where
    # in a buffer of its own after the final one: the channel is no longer fresh
    assert restore(channel, chunks)[-1] == SUCCESS
    assert restore_from_buffer(channel, chunks[-1]) == NtStatus.INVALID_DEVICE_STATE


def test_partial_chunk_in_a_buffer():
    _, chunks = source_chunks("storage")
    channel = fresh("storage")
    pristine = snapshot(channel)
    assert restore_from_buffer(channel, chunks[0] + chunks[1][:20]) == \
        NtStatus.INVALID_BUFFER_SIZE
    assert snapshot(channel) == pristine
    assert channel.restore_error.where.startswith("chunk@")
    assert restore_from_buffer(channel, chunks[0][:5]) == NtStatus.INVALID_BUFFER_SIZE
    assert snapshot(channel) == pristine


def test_packet_names_a_gpadl_that_is_gone():
    """network: RECEIVE packets name the receive buffer GPADL; drop the table."""
    _, chunks = source_chunks("network", 150, index=1)
    bad = list(chunks)
    k = index_of(bad, ChunkType.GPADLS)
    bad[k] = reframe(bad[k], GpadlTable.build({"gpadls": []}))
    _edit_end(bad, gpadl_count=0)
    channel = fresh("network", index=1)
    pristine = snapshot(channel)
    assert restore(channel, bad)[-1] == NtStatus.DATA_ERROR
    assert snapshot(channel) == pristine
    assert channel.restore_error.where.endswith(".external.handle")


@pytest.mark.parametrize("enable", [False, True], ids=["disabled", "offered"])
def test_restore_of_a_channel_never_opened(enable):
    """A channel saved before any client opened it (no connection, so no RING chunks:
    DOMAIN §3 still wants its offer, configuration and state back)."""
    source = fresh("storage")
    if enable:
        assert source.enable() == SUCCESS
    chunks = resaved(source)
    assert ChunkType.RING not in [chunk_type(c) for c in chunks]
    channel = fresh("storage")
    statuses = restore(channel, chunks)
    error = channel.restore_error
    assert statuses[-1] == SUCCESS, f"{NtStatus(statuses[-1])!s}: {error}"
    assert channel.state == source.state
    assert resaved(channel) == chunks


def test_unknown_optional_chunk_is_skipped():
    _, chunks = source_chunks("storage")
    with_optional = list(chunks)
    with_optional.insert(3, frame_bytes(0x0777, b"from a newer minor", 0))
    channel = fresh("storage")
    assert restore(channel, with_optional, 1)[-1] == SUCCESS
    assert resaved(channel) == chunks


def test_offer_mismatch():
    _, chunks = source_chunks("storage")
    channel = fresh("storage", seed=SEED + 1)  # another device instance
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_PARAMETER
    assert snapshot(channel) == pristine
    assert channel.restore_error.where == "channel.context.interface_instance"


def test_subchannel_mismatch():
    _, chunks = source_chunks("network", index=2)
    channel = fresh("network", index=1)
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_PARAMETER
    assert snapshot(channel) == pristine
    assert channel.restore_error.where == "channel.context.subchannel_index"


def test_interface_type_mismatch():
    _, chunks = source_chunks("pipe")
    channel = fresh("storage")
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_PARAMETER
    assert snapshot(channel) == pristine
    assert channel.restore_error.where == "channel.context.interface_type"


def test_offer_already_on_the_bus():
    scenario, chunks = source_chunks("storage")
    channel = scenario.allocate_server(0)  # same bus: the original still offers it
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_DEVICE_STATE
    assert snapshot(channel) == pristine
    assert "interface_instance" in channel.restore_error.where


# -- the VSP's restore callback -------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_restore_callback_failing_midway(name):
    _, chunks = source_chunks(name, 150)
    assert sum(chunk_type(c) == ChunkType.PACKET for c in chunks) >= 3
    channel = fresh(name)
    good = channel.restore_packet
    calls = []

    def third_fails(ch, lib_buf, save_buf):
        calls.append(lib_buf)
        if len(calls) == 3:
            return NtStatus.INSUFFICIENT_RESOURCES
        return good(ch, lib_buf, save_buf)

    channel.restore_packet = third_fails
    pristine = snapshot(channel)
    assert restore(channel, chunks, 1)[-1] == NtStatus.INSUFFICIENT_RESOURCES
    assert len(calls) == 3
    assert snapshot(channel) == pristine
    assert channel.restore_error.where.startswith("channel.packets[txid=")
    assert channel.packets == {} and not channel.backlog and channel.connection is None

    channel.restore_packet = good
    assert restore(channel, chunks, 1)[-1] == SUCCESS
    assert resaved(channel) == chunks


def test_restore_callback_that_restores_nothing():
    """A VSP that says SUCCESS without putting the packet back is caught."""
    _, chunks = source_chunks("storage", 150)
    channel = fresh("storage")
    channel.restore_packet = lambda ch, lib_buf, save_buf: SUCCESS
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.DATA_ERROR
    assert snapshot(channel) == pristine
    assert channel.restore_error.where == "channel.packets"


def test_restore_callback_with_bad_save_buf():
    """The VSP's own state is checked by the VSP: a short SaveBuf fails its restore."""
    _, chunks = source_chunks("storage", 150)
    bad = list(chunks)
    k = index_of(bad, ChunkType.PACKET, 2)
    record = PacketRecord.parse(data_of(bad[k]))
    record.save_buf = bytes(record.save_buf)[:-1]
    bad[k] = reframe(bad[k], PacketRecord.build(record))
    channel = fresh("storage")
    pristine = snapshot(channel)
    assert restore(channel, bad)[-1] == NtStatus.INVALID_PARAMETER
    assert snapshot(channel) == pristine


# -- the target must be fresh ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_restore_into_an_enabled_channel(name):
    scenario, chunks = source_chunks(name)
    channel = scenario.servers[0]  # enabled, opened, paused: anything but fresh
    before = snapshot(channel)
    assert restore_from_buffer(channel, b"".join(chunks)) == NtStatus.INVALID_DEVICE_STATE
    assert snapshot(channel) == before
    assert channel.restore_error.where == "channel.state"
    scenario.start()
    scenario.run(5)


def test_restore_twice():
    _, chunks = source_chunks("pipe")
    channel = fresh("pipe")
    assert restore(channel, chunks)[-1] == SUCCESS
    before = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_DEVICE_STATE
    assert snapshot(channel) == before


def test_restore_without_a_restore_callback():
    _, chunks = source_chunks("storage")
    channel = fresh("storage")
    channel.restore_packet = None
    pristine = snapshot(channel)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_DEVICE_STATE
    assert snapshot(channel) == pristine
    assert channel.restore_error.where == "channel.restore_packet"


def test_restore_into_a_cleaned_up_channel():
    _, chunks = source_chunks("storage")
    channel = fresh("storage")
    assert channel.cleanup() == SUCCESS
    before = copy.copy(channel.__dict__)
    assert restore(channel, chunks)[-1] == NtStatus.INVALID_DEVICE_STATE
    assert {k: v for k, v in channel.__dict__.items() if k != "restore_error"} == \
        {k: v for k, v in before.items() if k != "restore_error"}


def test_restore_names_a_failed_channel_as_validate_would(tmp_path):
    """A VSP that refuses a packet: `vmbtool restore`'s path (`restore_file`) names
    `channels[0].packets[...]` (not `channels[0].channel.`), and the callback's status
    said once."""
    from vmbtool.errors import BlobError
    from vmbtool.snapshot import restore_failure
    from vmbtool.status import NtStatusError
    from vmbtool.tools import run_scenario

    blob = save_blob(run_scenario("storage", 1, 150))

    def refuse(self, channel, lib_buf, save_buf):
        return NtStatus.INVALID_PARAMETER

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SCENARIOS["storage"], "restore_packet", refuse)
        with pytest.raises(BlobError) as refused:
            restore_file(blob)
    where, why = refused.value.where, refused.value.why
    assert where.startswith("channels[0].packets[txid=") and ".channel." not in where
    assert why.count("STATUS_INVALID_PARAMETER") == 1
    error = NtStatusError(NtStatus.DATA_ERROR, "says 3, the channel has 2", "channel.end")
    assert (restore_failure(error, 2, NtStatus.DATA_ERROR).where,
            restore_failure(error, 2, NtStatus.DATA_ERROR).why) == \
        ("channels[2].end", "says 3, the channel has 2")
