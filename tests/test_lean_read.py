"""The lean read (validate, inspect's summary) checks what the same checks find in a
channel read whole (`check_channel` here, the oracle), in bounded memory: rings streamed
in blocks, packets counted and never kept, a cap on packet objects per channel, a cap on
listed problems."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURE_DIR, FIXTURE_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_semantic_lies import LIES, build_lies

from vmbtool import codec, invariants, lean, tools
from vmbtool.blob import BlobReader, load_blob
from vmbtool.blob import consumers as blob_consumers
from vmbtool.blob.consumers import Check, Keep
from vmbtool.cli import main
from vmbtool.errors import BlobError
from vmbtool.formats import limits
from vmbtool.formats.chunk import ChunkType
from vmbtool.formats.incoming import Incoming, PendingIncoming
from vmbtool.invariants import ChannelCheck, check_ring
from vmbtool.sim.ring import RingBuffer
from vmbtool.sim.wire import PacketType
from vmbtool.snapshot import check_file
from vmbtool.state import SavedChannel, ring_state

BLOBS = sorted(FIXTURE_DIR.glob("v*/*.vmb"))


def key_for(path: Path) -> bytes | None:
    return FIXTURE_KEY if path.stem.endswith("-signed") else None


def lean_problems(source, key=None) -> list:
    with BlobReader(source, key, Check()) as reader:
        return [p for saved, _ in reader.channels() for p in saved.problems]


@pytest.fixture
def stream_every_ring(monkeypatch):
    """Every RING chunk streamed in blocks, however small (fixture rings are < 1 MiB)."""
    monkeypatch.setattr(blob_consumers, "STREAMED_MIN", 0)


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lean_read_of_a_fixture_finds_no_problem_and_counts_every_packet(
        path, stream_every_ring):
    whole = load_blob(str(path), key_for(path))
    with BlobReader(str(path), key_for(path), Check()) as reader:
        channels = list(reader.channels())
    assert [saved.problems for saved, _ in channels] == [[] for _ in whole.channels]
    assert [saved.packet_count for saved, _ in channels] == \
        [len(saved.packets) for saved in whole.channels]
    assert all(not saved.packets and not chunks for saved, chunks in channels)
    assert all(ring.data is None for saved, _ in channels for ring in saved.rings.values())


def check_channel(saved: SavedChannel, where: str) -> list[tuple[str, str]]:
    """The oracle: every problem of one channel read whole (`load_blob`'s containers),
    its parts fed to the channel check in blob order."""
    if saved.context is None:
        return [(where, "no channel context chunk")]
    check = ChannelCheck(where)
    check.context(saved.context)
    for direction in ("incoming", "outgoing"):
        if direction in saved.rings:
            check.ring(saved.rings[direction])
    check.gpadl_table(saved.gpadls)
    for record in saved.packets:
        check.packet(record)
    check.pending_incoming(saved.incoming)
    return check.channel_end(saved.end)


@pytest.fixture(scope="module")
def lies(tmp_path_factory) -> dict[str, Path]:
    return build_lies(tmp_path_factory, "lean-lie")


@pytest.mark.parametrize("lie", list(LIES))
def test_lean_read_lists_the_problems_the_whole_check_lists(lie, lies, stream_every_ring):
    """Every semantic lie: the lean read's problems (rings streamed) are exactly, in
    order, those `check_channel` finds in the channels load_blob reads whole."""
    try:
        whole = load_blob(str(lies[lie]))
    except BlobError as exc:  # a lie the reader refuses outright: so must the lean read
        with pytest.raises(BlobError) as lean:
            lean_problems(str(lies[lie]))
        assert lean.value.where.split(" ")[0] == exc.where.split(" ")[0]
        return
    expected = [p for index, saved in enumerate(whole.channels)
                for p in check_channel(saved, f"channels[{index}]")]
    assert lean_problems(str(lies[lie])) == expected
    assert expected


# -- the ring walk, streamed -------------------------------------------------------------


def filled_ring(rng: random.Random, pages: int, start: int, count: int) -> RingBuffer:
    """A ring whose packets start at `start` (so they may wrap) and partly read."""
    ring = RingBuffer(pages)
    ring.write_index = ring.read_index = start
    offsets = []
    for i in range(count):
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        kind = rng.choice([PacketType.INBAND, PacketType.COMPLETION])
        try:
            offsets.append(ring.write_packet(kind, rng.randrange(2), 1000 + i, payload))
        except Exception:  # RingFull: the ring holds what it holds
            break
    for _ in range(rng.randrange(len(offsets) + 1) // 2):
        ring.read_packet()
    return ring


def split(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class Control:
    """A RING chunk's fields without its data, as a lean read has them."""

    def __init__(self, state: dict) -> None:
        self.__dict__.update({k: v for k, v in state.items() if k != "data"})
        self.data = None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), pages=st.integers(1, 3), damage=st.booleans())
def test_streamed_ring_walk_is_the_whole_ring_walk(seed, pages, damage):
    """Rings that wrap or not, whole or damaged, fed in blocks of any size: the same
    packets (offsets, transaction ids, kinds) or the same problem."""
    rng = random.Random(seed)
    ring = filled_ring(rng, pages, rng.randrange(pages * 4096 // 8) * 8, rng.randrange(60))
    state = ring_state(ring, "outgoing")
    if damage:
        data = bytearray(state["data"])
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        state["data"] = bytes(data)
    whole_problems, streamed_problems = [], []
    whole = check_ring(_container(state), "r", whole_problems)
    streamed = check_ring(Control(state), "r", streamed_problems,
                          split(state["data"], rng))
    assert streamed_problems == whole_problems
    if whole is None:
        assert streamed is None and whole_problems
        return
    assert (list(streamed.offsets), list(streamed.txids), streamed.kinds) == \
        (list(whole.offsets), list(whole.txids), whole.kinds)
    if not damage:
        walked = RingBuffer.from_bytes(ring.control, state["data"]).packets()
        assert list(whole.offsets) == [w.offset for w in walked]
        assert list(whole.txids) == [w.transaction_id for w in walked]
        assert all(whole.find(w.offset) == i for i, w in enumerate(walked))


def _container(state: dict):
    control = Control(state)
    control.data = state["data"]
    return control


def test_a_wrapped_ring_is_walked_across_its_end():
    rng = random.Random(7)
    for _ in range(50):
        ring = filled_ring(rng, 1, 4096 - 64, 40)
        if ring.write_index < ring.read_index:
            break
    assert ring.write_index < ring.read_index  # it wraps
    index = check_ring(_container(ring_state(ring, "outgoing")), "r", [])
    assert index is not None and index.wrap is not None and len(index) == len(ring.packets())


# -- caps --------------------------------------------------------------------------------


@pytest.mark.parametrize("lean", [True, False])
def test_more_packets_than_the_cap_are_refused_as_they_come(lean, monkeypatch):
    monkeypatch.setattr(limits, "MAX_PACKETS_PER_CHANNEL", 3)
    path = str(FIXTURE_DIR / "v1.1" / "pipe.vmb")
    with pytest.raises(BlobError) as refused:
        with BlobReader(path, consumer=Check() if lean else Keep()) as reader:
            for _ in reader.channels():
                pass
    assert refused.value.where.startswith("channels[0].packets (chunk@")
    assert refused.value.why == "more than 3 packet objects in one channel"


def test_a_channel_lists_its_first_problems_and_counts_the_rest(monkeypatch, lies):
    """With one problem a channel listed, validate lists the first of the channels'
    problems validate's check (`check_file`) lists uncapped, and counts the rest."""
    path = lies["completion for an unknown transaction"]
    whole = [p for p in check_file(str(path)).problems if p[0].startswith("channels")]
    assert whole
    monkeypatch.setattr(invariants.problems, "MAX_PROBLEMS", 1)
    verdict = tools.validate_file(str(path))
    assert len(verdict.problems) == 1 and verdict.problems[0] == whole[0]
    assert verdict.unlisted == len(whole) - 1
    if len(whole) > 1:
        assert verdict.line().endswith(f"(+{len(whole) - 1} more)")


def test_save_refuses_a_channel_past_the_cap(monkeypatch, tmp_path):
    """No blob is written that no reader would take."""
    monkeypatch.setattr(limits, "MAX_PACKETS_PER_CHANNEL", 3)
    out = tmp_path / "big.vmb"
    result = CliRunner().invoke(main, ["save", "--scenario", "pipe", "--steps", "100",
                                       "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "packet objects in use, a blob holds at most 3 a channel" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_wrapped_ring_past_1_mib_is_spooled_and_walked_the_same():
    """The part of a wrapped ring before its read index waits on disk past 256 KiB: the
    streamed walk of a 2 MiB ring wrapped 1.5 MiB deep finds what the whole walk finds."""
    ring = RingBuffer(512)
    start = ring.data_size - 64 * 1024
    ring.write_index = ring.read_index = start
    txid = 0
    while ring.write_index >= start or ring.write_index < (3 << 19):
        txid += 1
        ring.write_packet(PacketType.INBAND, 1, txid, bytes([txid % 251]) * 4000)
    state = ring_state(ring, "outgoing")
    assert ring.write_index < ring.read_index and ring.write_index > 1 << 20
    whole = check_ring(_container(state), "r", [])
    data = state["data"]
    streamed = check_ring(Control(state), "r", [],
                          [data[i:i + 300_000] for i in range(0, len(data), 300_000)])
    assert list(streamed.offsets) == list(whole.offsets) == \
        [w.offset for w in ring.packets()]
    assert list(streamed.txids) == list(range(1, txid + 1))


def _scenario_chunk(path: Path):
    blob = load_blob(str(path), key_for(path))
    return next(raw for raw in blob.chunks if raw.type == ChunkType.SCENARIO)


@pytest.mark.parametrize("path", [p for p in BLOBS if p.stem == "network"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_kept_array_in_one_call_is_what_element_by_element_keeps(path, monkeypatch):
    """A kept array within its cap (a guest's pending incoming, the INCOMING and GPADLS
    chunks RestoreFromBuffer stages) is parsed by its generated code in one call: the
    entries the element-by-element walk keeps."""
    raw = _scenario_chunk(path)
    args = (raw.data, 0, limits.MAX_GUESTS, limits.MAX_PACKETS_PER_CHANNEL)
    calls = []
    real = codec.usual_parse_at
    monkeypatch.setattr(codec, "usual_parse_at", lambda *a: calls.append(a[0]) or real(*a))
    one_call = lean.scenario(*args, keep=True)
    assert calls and all(codec.compiled(grammar) is codec.compiled(PendingIncoming)
                         for grammar in calls)
    monkeypatch.setattr(codec, "usual_parse_at", lambda *a: None)  # element by element
    walked = lean.scenario(*args, keep=True)
    assert [g.pending_incoming.packets for g in one_call.guests] == \
        [g.pending_incoming.packets for g in walked.guests]
    assert sum(len(g.pending_incoming.packets) for g in walked.guests) > 0


def test_a_kept_array_the_generated_code_refuses_fails_as_the_walk_says(monkeypatch):
    """An entry of unknown packet type: the one-call parse refuses, and the walk names
    the entry, as it always has."""
    answers = []
    real = codec.usual_parse_at
    monkeypatch.setattr(codec, "usual_parse_at",
                        lambda *a: answers.append(real(*a)) or answers[-1])
    entries = [{"number": n, "transaction_id": n + 1, "type": "inband", "flags": 0,
                "payload": b"x" * n, "external": {"kind": "none", "body": None}}
               for n in range(3)]
    data = bytearray(PendingIncoming.build({"packets": entries}))
    second = 4 + len(Incoming.build(entries[0]))  # where the second entry starts
    data[second + 16:second + 18] = (0x7777).to_bytes(2, "little")  # its type
    with pytest.raises(BlobError) as refused:
        lean.array_value(ChunkType.INCOMING, bytes(data), 100, "channel", keep=True)
    assert answers == [None]  # tried, and refused
    assert refused.value.where.startswith("channel.pending_incoming.packets.items")
    assert refused.value.where.endswith("(offset 100)")
    data[second + 16:second + 18] = (6).to_bytes(2, "little")  # inband again
    kept = lean.array_value(ChunkType.INCOMING, bytes(data), 100, "channel", keep=True)
    assert answers[-1] is not None and [e.payload for e in kept.packets] == \
        [b"", b"x", b"xx"]
