"""VmbChannelSaveBegin / SaveContinue / SaveEnd and the per-packet save callback on a
paused server channel of every scenario (DOMAIN.md §3)."""

from __future__ import annotations

import struct

import pytest

from vmbtool.chunks import split_chunks
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE, ChunkType
from vmbtool.formats.packet import PacketRecord
from vmbtool.kmcl import save_begin, save_continue, save_end
from vmbtool.scenarios import SCENARIOS
from vmbtool.sim import StateCallbacks
from vmbtool.status import NtStatus

SUCCESS = NtStatus.SUCCESS
OVERFLOW = NtStatus.BUFFER_OVERFLOW
TOO_SMALL = NtStatus.BUFFER_TOO_SMALL
BAD_STATE = NtStatus.INVALID_DEVICE_STATE
HUGE = 1 << 30
SMALL_PRIME = 97
STEPS = {"storage": 60, "network": 30, "pipe": 90}  # each leaves packets in use


def paused(name: str, seed: int = 3):
    scenario = SCENARIOS[name].create(seed)
    scenario.run(STEPS[name])
    scenario.pause()
    assert all(s.paused and not s.started for s in scenario.servers)
    return scenario


def frames(stream: bytes) -> list[bytes]:
    """Split a saved stream into its framed chunks from the chunk header alone."""
    out, pos = [], 0
    while pos < len(stream):
        (length,) = struct.unpack_from("<I", stream, pos + 4)
        out.append(stream[pos:pos + CHUNK_HEADER_SIZE + length])
        pos += CHUNK_HEADER_SIZE + length
    assert pos == len(stream)
    return out


def save_all(channel, size: int, *, grow: bool = False) -> tuple[bytes, list[tuple]]:
    """Drive one save with buffers of `size`; on BUFFER_TOO_SMALL retry with
    bytes_required (growing the buffer for good when `grow`). Returns the stream and
    every call's (size, status, len(written), required)."""
    assert save_begin(channel) == SUCCESS
    calls, out = [], []
    try:
        while True:
            status, data, required = save_continue(channel, size)
            calls.append((size, status, len(data), required))
            assert len(data) <= size
            if status == TOO_SMALL:
                assert data == b"" and required > size
                status, data, _ = save_continue(channel, required)
                calls.append((required, status, len(data), _))
                assert status in (SUCCESS, OVERFLOW)
                assert len(data) == required  # exactly one chunk: the one it asked room for
                if grow:
                    size = required
            out.append(data)
            if status == SUCCESS:
                return b"".join(out), calls
            assert status == OVERFLOW
    finally:
        assert save_end(channel) == SUCCESS


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request):
    return paused(request.param)


# -- the save context's state machine -------------------------------------------------
def test_continue_before_begin(scenario):
    server = scenario.servers[0]
    status, data, required = save_continue(server, HUGE)
    assert (status, data, required) == (BAD_STATE, b"", 0)


def test_end_without_begin(scenario):
    assert save_end(scenario.servers[0]) == BAD_STATE


def test_begin_twice(scenario):
    server = scenario.servers[0]
    assert save_begin(server) == SUCCESS
    assert save_begin(server) == BAD_STATE
    # the first save context is intact: the whole save still comes out
    status, data, _ = save_continue(server, HUGE)
    assert status == SUCCESS and split_chunks(data)[0].type == ChunkType.CHANNEL
    assert save_end(server) == SUCCESS
    assert save_end(server) == BAD_STATE
    assert save_continue(server, HUGE)[0] == BAD_STATE


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_begin_on_an_active_channel(name):
    scenario = SCENARIOS[name].create(3)
    scenario.run(STEPS[name])
    for server in scenario.servers:
        assert server.started
        assert save_begin(server) == BAD_STATE
        assert save_continue(server, HUGE)[0] == BAD_STATE
        assert save_end(server) == BAD_STATE
    scenario.run(5)  # nothing was left behind: the channel carries on


def test_begin_on_a_cleaned_up_channel():
    channel = SCENARIOS["storage"](3).allocate_server(0)
    assert channel.cleanup() == SUCCESS
    assert save_begin(channel) == BAD_STATE
    assert save_continue(channel, HUGE)[0] == BAD_STATE


def test_begin_while_a_pause_waits():
    """A pause that still waits for pending incoming packets is not a save point."""
    scenario = SCENARIOS["storage"].create(3)
    for _ in range(200):
        scenario.step()
        if scenario.servers[0].pending_incoming:
            break
    server = scenario.servers[0]
    assert server.pending_incoming
    server.callbacks = StateCallbacks()  # no suspend callback: nothing completes them
    assert server.pause() == NtStatus.PENDING
    assert server.pausing and not server.paused
    assert save_begin(server) == BAD_STATE
    for incoming in list(server.pending_incoming.values()):
        assert server.packet_complete(incoming) == SUCCESS
    assert server.paused
    assert save_begin(server) == SUCCESS
    assert save_end(server) == SUCCESS


# -- buffer sizes ---------------------------------------------------------------------
def test_buffer_too_small_writes_nothing(scenario):
    for server in scenario.servers:
        expected = frames(save_all(server, HUGE)[0])
        assert save_begin(server) == SUCCESS
        for chunk in expected:
            for size in (0, 1, len(chunk) - 1):
                assert save_continue(server, size) == (TOO_SMALL, b"", len(chunk))
            status, data, _ = save_continue(server, len(chunk))
            assert data == chunk
            assert status == (SUCCESS if chunk is expected[-1] else OVERFLOW)
        assert save_end(server) == SUCCESS


def test_overflow_when_some_chunks_were_written(scenario):
    for server in scenario.servers:
        expected = frames(save_all(server, HUGE)[0])
        assert len(expected) >= 5
        assert save_begin(server) == SUCCESS
        # room for the first two chunks and all but one byte of the third
        size = sum(map(len, expected[:3])) - 1
        status, data, _ = save_continue(server, size)
        assert (status, data) == (OVERFLOW, b"".join(expected[:2]))
        status, data, _ = save_continue(server, HUGE)
        assert (status, data) == (SUCCESS, b"".join(expected[2:]))
        assert save_end(server) == SUCCESS


def test_success_at_the_end(scenario):
    for server in scenario.servers:
        stream, calls = save_all(server, HUGE)
        assert [c[1] for c in calls] == [SUCCESS]
        types = [c.type for c in split_chunks(stream)]
        assert types[:4] == [ChunkType.CHANNEL, ChunkType.RING, ChunkType.RING,
                             ChunkType.GPADLS]
        assert types[-2:] == [ChunkType.INCOMING, ChunkType.CHANNEL_END]
        assert set(types[4:-2]) <= {ChunkType.PACKET}
        assert types.count(ChunkType.PACKET) == len(server.packets_in_use())


def test_buffer_sizes_give_the_same_bytes(scenario):
    for server in scenario.servers:
        reference, _ = save_all(server, HUGE)
        chunks = frames(reference)
        largest = max(map(len, chunks))
        at_largest, calls = save_all(server, largest)
        assert at_largest == reference
        assert TOO_SMALL not in [c[1] for c in calls]
        assert all(c[1] == OVERFLOW for c in calls[:-1]) and calls[-1][1] == SUCCESS
        for grow in (False, True):
            resized, calls = save_all(server, SMALL_PRIME, grow=grow)
            assert resized == reference
            assert TOO_SMALL in [c[1] for c in calls]  # the resize loop really ran
        # every call wrote whole chunks only
        for size in (largest, SMALL_PRIME * 50, 8191):
            assert save_begin(server) == SUCCESS
            pieces = []
            while True:
                status, data, required = save_continue(server, size)
                if status == TOO_SMALL:
                    status, data, required = save_continue(server, required)
                assert frames(data) and b"".join(frames(data)) == data
                pieces.append(data)
                if status == SUCCESS:
                    break
            assert save_end(server) == SUCCESS
            assert b"".join(pieces) == reference


def test_save_does_not_change_the_channel(scenario):
    """Saving twice gives the same bytes, and the channel still restarts."""
    first = [save_all(s, HUGE)[0] for s in scenario.servers]
    second = [save_all(s, HUGE)[0] for s in scenario.servers]
    assert first == second
    scenario.start()
    scenario.run(5)


def test_negative_buffer_size(scenario):
    server = scenario.servers[0]
    assert save_begin(server) == SUCCESS
    assert save_continue(server, -1)[0] == NtStatus.INVALID_PARAMETER_3
    assert save_end(server) == SUCCESS


# -- the per-packet save callback -----------------------------------------------------
class Recorder:
    """Wraps a channel's save callback, recording (packet, size, status, needed)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __call__(self, channel, packet, size):
        status, data, needed = self.inner(channel, packet, size)
        self.calls.append((packet, size, status, needed, bytes(data)))
        return status, data, needed


def test_save_callback_for_every_packet_in_use(scenario):
    for server in scenario.servers:
        recorder = Recorder(server.save_packet)
        server.save_packet = recorder
        in_use = server.packets_in_use()
        stream, _ = save_all(server, SMALL_PRIME)
        # queued completions (type 0xB) are the library's own: no VSP state to ask for
        vsp_packets = [p for p in in_use if p.type != 0xB]
        assert vsp_packets, "the scenario should leave packets in use"
        if scenario.name == "network":
            assert len(vsp_packets) < len(in_use)  # queued completions are skipped

        by_packet: dict[int, list] = {}
        order = []
        for packet, size, status, needed, data in recorder.calls:
            if id(packet) not in by_packet:
                order.append(packet)
            by_packet.setdefault(id(packet), []).append((size, status, needed, data))
        assert order == vsp_packets  # each packet once, in packets_in_use order

        records = [PacketRecord.parse(c.data) for c in split_chunks(stream)
                   if c.type == ChunkType.PACKET]
        assert len(records) == len(in_use)
        saved_bufs = [r.save_buf for r, p in zip(records, in_use, strict=True)
                      if p.type != 0xB]
        for packet, save_buf in zip(vsp_packets, saved_bufs, strict=True):
            calls = by_packet[id(packet)]
            size0, status0, needed0, _ = calls[0]
            assert size0 == 0  # KMCL: the first call passes size 0
            if status0 == SUCCESS:  # a VSP without per-packet state
                assert len(calls) == 1 and save_buf == b""
                continue
            assert status0 == TOO_SMALL and needed0 > 0
            assert len(calls) == 2
            size1, status1, _, data1 = calls[1]
            assert size1 == needed0 and status1 == SUCCESS  # then the reported size
            assert save_buf == data1 == scenario.encode_packet_state(packet)


def test_save_callback_called_again_for_a_second_save(scenario):
    server = scenario.servers[0]
    recorder = Recorder(server.save_packet)
    server.save_packet = recorder
    save_all(server, HUGE)
    first = len(recorder.calls)
    save_all(server, HUGE)
    assert len(recorder.calls) == 2 * first


def _fail_on(server, call_number: int, status: NtStatus):
    inner, seen = server.save_packet, []

    def failing(channel, packet, size):
        seen.append(packet)
        if len(seen) == call_number:
            return status, b"", 0
        return inner(channel, packet, size)

    server.save_packet = failing


@pytest.mark.parametrize("size", [SMALL_PRIME, HUGE])
def test_save_callback_failure_fails_the_save(size):
    scenario = paused("storage")
    server = scenario.servers[0]
    _fail_on(server, 5, NtStatus.INSUFFICIENT_RESOURCES)
    assert save_begin(server) == SUCCESS
    statuses = []
    while True:
        status, _, required = save_continue(server, size)
        if status == TOO_SMALL:
            status, _, _ = save_continue(server, required)
        statuses.append(status)
        if status != OVERFLOW:
            break
    assert statuses[-1] == NtStatus.INSUFFICIENT_RESOURCES
    assert save_end(server) == SUCCESS


def test_save_callback_failure_is_not_followed_by_success():
    """After SaveContinue failed, the save is lost: another SaveContinue must not report
    SUCCESS for a stream that has no CHANNEL_END (only SaveEnd, then a new SaveBegin)."""
    scenario = paused("storage")
    server = scenario.servers[0]
    _fail_on(server, 3, NtStatus.INSUFFICIENT_RESOURCES)
    assert save_begin(server) == SUCCESS
    assert save_continue(server, HUGE)[0] == NtStatus.INSUFFICIENT_RESOURCES
    status, data, _ = save_continue(server, HUGE)
    assert status not in (SUCCESS, OVERFLOW), (NtStatus(status), len(data))
    assert save_end(server) == SUCCESS


@pytest.mark.parametrize("needed_first", [10, 0])
def test_save_callback_too_small_is_not_the_callers_buffer(needed_first):
    """A VSP callback that fails with BUFFER_TOO_SMALL (again on its second call, or on
    the first call with bytes_needed 0) is the VSP's failure. SaveContinue must not
    report it as its own BUFFER_TOO_SMALL, which tells the caller "retry with a buffer of
    bytes_required" -- here bytes_required would be 0, smaller than the buffer given."""
    scenario = paused("storage")
    server = scenario.servers[0]

    def broken(channel, packet, size):
        return NtStatus.BUFFER_TOO_SMALL, b"", needed_first

    server.save_packet = broken
    assert save_begin(server) == SUCCESS
    status, data, required = save_continue(server, HUGE)
    assert status not in (SUCCESS, OVERFLOW) and data == b""
    assert status != TOO_SMALL or required > HUGE, (NtStatus(status), required)
    assert save_end(server) == SUCCESS
