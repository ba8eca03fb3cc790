"""The streamed restore (`snapshot.restore_file`, what `vmbtool restore` runs): a checking
pass in bounded memory, then each channel's chunks into RestoreFromBuffer as they are
decoded. What it restores re-saves to the blob it read; what it refuses, validate's lean
check (`check_file`) refuses too, and the first problem that check lists (or the
BlobError it raises, as `load_blob` raises it) is the one named."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, FIXTURE_KEY, ROOT
from test_semantic_lies import build_lies

from vmbtool import kmcl
from vmbtool.blob import load_blob
from vmbtool.chunks import split_chunks
from vmbtool.errors import BlobError
from vmbtool.scenarios import SCENARIOS
from vmbtool.snapshot import check_file, restore_file, save_blob, split_buffers
from vmbtool.tools import validate_file

HUGE = 1 << 30


def outcome(restore) -> tuple:
    """What a restore gave: the restored scenario re-saved, or the error it raised."""
    try:
        return ("restored", save_blob(restore(), created_ns=0))
    except BlobError as exc:
        return ("refused", exc.where, exc.why, exc.status)


# restore_file's ways through a blob, by its one-read bounds (ONE_PASS_MAX decoded bytes,
# or ONE_PASS_RATIO times the compressed size): one read that stages as it checks, and
# two reads (validate's check, then the restore) for a body beyond them
PATHS = {"one read": (HUGE, 0), "two reads": (0, 0)}


def take_way(monkeypatch, way: str) -> None:
    from vmbtool.snapshot import restore as snapshot

    most, ratio = PATHS[way]
    monkeypatch.setattr(snapshot, "ONE_PASS_MAX", most)
    monkeypatch.setattr(snapshot, "ONE_PASS_RATIO", ratio)


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    take_way(monkeypatch, request.param)
    return request.param


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_way_through_restores_the_same(name, path):
    scenario = SCENARIOS[name].create(5)
    scenario.run(150)
    blob = save_blob(scenario, created_ns=0)
    restored = restore_file(blob, buffer_size=8191)
    assert restored.steps_taken == 150
    assert save_blob(restored, created_ns=0) == blob


def test_each_way_through_refuses_every_lie_as_validate(lies, path):
    """Each semantic lie: restore_file refuses it, naming the first problem validate's
    lean check (`check_file`, what `tools.validate_file` lists) finds."""
    for name, lie in lies.items():
        streamed = outcome(lambda p=lie: restore_file(str(p)))
        assert streamed[0] == "refused", name
        assert streamed[1:3] == first_problem(str(lie)), name
        assert streamed[1:3] == validate_file(str(lie)).problems[0], name


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_each_way_through_refuses_damage_as_load_blob(where, path):
    """A truncated or bit-flipped blob: restore_file's refusal is load_blob's BlobError
    (where, why and status) and the one validate's check raises."""
    blob = bytearray((ROOT / "fixtures" / "v1.1" / "network.vmb").read_bytes())
    flipped = blob.copy()
    flipped[int(len(blob) * where)] ^= 0x40
    for damaged in (bytes(blob[:int(len(blob) * where)]), bytes(flipped)):
        with pytest.raises(BlobError) as loading:
            load_blob(damaged)
        error = loading.value
        streamed = outcome(lambda d=damaged: restore_file(d))
        assert streamed == ("refused", error.where, error.why, error.status)
        assert streamed[1:3] == first_problem(damaged)


@pytest.mark.parametrize("size", [1, 8191, HUGE])
@pytest.mark.parametrize("steps", [0, 40, 150])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_streamed_restore_resaves_to_the_same_blob(name, steps, size):
    scenario = SCENARIOS[name].create(5)
    scenario.run(steps)
    blob = save_blob(scenario, created_ns=0)
    restored = restore_file(blob, buffer_size=size)
    assert restored.steps_taken == steps
    assert save_blob(restored, created_ns=0) == blob  # statistics and guests included


def test_restore_from_buffer_gets_whole_chunks_at_most_a_buffer_at_a_time(monkeypatch):
    scenario = SCENARIOS["storage"].create(5)
    scenario.run(150)
    blob = save_blob(scenario, created_ns=0)
    loaded = load_blob(blob)
    size = 4096
    buffers: list[bytes] = []
    from vmbtool.snapshot import restore as snapshot

    original = snapshot.restore_chunks

    def spy(channel, chunks, *checked):
        chunks = list(chunks)
        buffers.append(b"".join(raw.framed for raw in chunks))
        return original(channel, chunks, *checked)

    monkeypatch.setattr(snapshot, "restore_chunks", spy)
    restore_file(blob, buffer_size=size)
    expected = [b for chunks in loaded.channel_chunks
                for b in split_buffers([raw.framed for raw in chunks], size)]
    assert buffers == expected  # each channel's chunks as split_buffers groups them
    assert len(buffers) > 2 * len(loaded.channels)  # several buffers a channel
    for buffer in buffers:
        assert len(buffer) <= size or len(split_chunks(buffer)) == 1


@pytest.mark.parametrize("level, reads", [(None, 1), (3, 2)])
def test_a_body_past_one_pass_max_is_read_once_only_in_proportion_to_its_file(
        monkeypatch, level, reads):
    """Past ONE_PASS_MAX, a body is restored in one read only when it decodes to at most
    ONE_PASS_RATIO times its compressed size: this storage blob stored plain decodes to
    1x its file, compressed to 4.7x (as a compression bomb of valid state does, it would
    make a one-read restore stage far more than its file), so that one is checked first.
    Both restore the same channels."""
    from vmbtool.snapshot import restore as snapshot

    scenario = SCENARIOS["storage"].create(5)
    scenario.run(150)
    blob = save_blob(scenario, created_ns=0, level=level)
    checks: list[int] = []
    original = snapshot.check_file
    monkeypatch.setattr(snapshot, "check_file", lambda *a: checks.append(1) or original(*a))
    monkeypatch.setattr(snapshot, "ONE_PASS_MAX", 0)
    assert snapshot.ONE_PASS_RATIO == 4
    assert save_blob(restore_file(blob), created_ns=0, level=level) == blob
    assert 1 + len(checks) == reads


@pytest.fixture(scope="module")
def lies(tmp_path_factory) -> dict[str, Path]:
    return build_lies(tmp_path_factory, "stream")


def first_problem(source) -> tuple[str, str]:
    """What validate names first: the lean check's first problem, or its BlobError."""
    try:
        problems = check_file(source).problems
    except BlobError as exc:
        return exc.where, exc.why
    assert problems, "the check finds nothing wrong"
    return problems[0]


def test_a_lie_stops_the_one_read_before_anything_is_handed_out(lies):
    """restore_once refuses every lie the check finds, as RestoreFailed (the caller then
    asks the check which problem to name), or the reader's own error."""
    from vmbtool.snapshot import RestoreFailed, restore_once

    refused = 0
    for path in lies.values():
        with pytest.raises((RestoreFailed, BlobError)):
            restore_once(path.read_bytes())
        refused += 1
    assert refused > 10


def test_check_file_counts_what_it_read():
    path = ROOT / "fixtures" / "v1.1" / "storage.vmb"
    found = check_file(str(path))
    blob = load_blob(str(path))
    assert not found.problems
    assert (found.version, found.channels) == ("1.1", len(blob.channels))
    assert found.packets == sum(len(saved.packets) for saved in blob.channels)
    assert found.scenario.seed == blob.scenario.seed


def test_vmb_packet_restore_parses_only_bytes_it_was_not_handed_parsed(monkeypatch):
    """The LibBuf the library hands the VSP's callback was parsed with its chunk; the
    callback's VmbPacketRestore of those bytes reuses that. Other bytes are parsed."""
    from vmbtool import codec
    from vmbtool.formats.packet import PacketContext

    scenario = SCENARIOS["storage"].create(5)
    scenario.run(150)
    blob = save_blob(scenario, created_ns=0)
    parsed = []
    original = codec.parse

    def counting(grammar, data, *args, **kwargs):
        parsed.append(codec.compiled(grammar) is codec.compiled(PacketContext))
        return original(grammar, data, *args, **kwargs)

    monkeypatch.setattr(codec, "parse", counting)
    assert save_blob(restore_file(blob), created_ns=0) == blob
    assert not any(parsed)

    handed_a_copy = kmcl.packet_restore
    monkeypatch.setattr(kmcl, "packet_restore",
                        lambda packet, lib_buf: handed_a_copy(packet, bytes(bytearray(lib_buf))))
    assert save_blob(restore_file(blob), created_ns=0) == blob
    assert sum(parsed) > 10


# -- found by the fuzzer (session 7): the one-pass restore met a blob whose state lies -----
REGRESSIONS = ROOT / "tests" / "regressions"


@pytest.mark.parametrize("name", ["no-scenario-chunk.vmb", "state-before-channel.keyed.vmb"])
def test_fuzzer_finds_are_refused_as_validate_refuses_them(name):
    """A blob without its scenario chunk, and one whose channel state starts with another
    chunk than CHANNEL: restore refuses them with validate's first problem (they crashed
    the one-pass restore with an AttributeError before)."""
    from vmbtool.tools import validate_file

    path = REGRESSIONS / name
    key = FIXTURE_KEY if ".keyed." in name else None
    verdict = validate_file(str(path), key)
    assert not verdict.valid
    refused = outcome(lambda: restore_file(str(path), key))
    assert refused[0] == "refused"
    assert refused[1:3] == verdict.problems[0]


def test_a_restore_after_its_check_does_not_check_again(monkeypatch):
    """A body beyond the one-read bounds is read twice (checked in bounded memory, then
    restored): each channel's invariants and each packet's checks run in the first read
    alone, and what the second restores re-saves to the same blob. A one-read restore
    runs each of them once too, as it stages."""
    from vmbtool.invariants.channel import ChannelCheck
    from vmbtool.kmcl import restore as kmcl_restore
    from vmbtool.snapshot import restore as snapshot

    scenario = SCENARIOS["storage"].create(5)
    scenario.run(150)
    blob = save_blob(scenario, created_ns=0)
    packets = check_file(blob).packets
    assert packets > 10
    checked, ends, restored = [], [], []
    original_packet, original_end = ChannelCheck.packet_fields, ChannelCheck.channel_end
    original_restore = kmcl_restore.restore_chunks
    monkeypatch.setattr(ChannelCheck, "packet_fields",
                        lambda self, *fields: checked.append(1) or original_packet(self, *fields))
    monkeypatch.setattr(ChannelCheck, "channel_end",
                        lambda self, end: ends.append(1) or original_end(self, end))
    monkeypatch.setattr(snapshot, "restore_chunks",
                        lambda channel, chunks, told=False: restored.append(told)
                        or original_restore(channel, chunks, told))
    take_way(monkeypatch, "two reads")
    assert save_blob(restore_file(blob), created_ns=0) == blob
    assert (len(checked), len(ends)) == (packets, len(scenario.servers))
    assert restored and all(restored)  # the second read was told: checked
    take_way(monkeypatch, "one read")  # the restore checks
    for counted in (checked, ends, restored):
        counted.clear()
    assert save_blob(restore_file(blob), created_ns=0) == blob
    assert (len(checked), len(ends)) == (packets, len(scenario.servers))
    assert restored and not any(restored)


def test_a_blob_changed_between_its_check_and_its_restore_is_refused(monkeypatch, tmp_path):
    """The second read of a two-read restore must give the END digest the check read:
    a file replaced in between (by another valid blob) restores nothing."""
    from vmbtool.snapshot import restore as snapshot

    path = tmp_path / "blob.vmb"
    first = SCENARIOS["storage"].create(5)
    first.run(40)
    path.write_bytes(save_blob(first, created_ns=0))
    other = SCENARIOS["storage"].create(5)
    other.run(41)
    replacement = save_blob(other, created_ns=0)
    original = snapshot.check_file

    def check_then_replace(*args):
        found = original(*args)
        path.write_bytes(replacement)
        return found

    monkeypatch.setattr(snapshot, "check_file", check_then_replace)
    take_way(monkeypatch, "two reads")
    with pytest.raises(BlobError) as refused:
        restore_file(str(path))
    assert (refused.value.where, refused.value.why) == (
        "end.digest", "the blob changed between its check and its restore")


# -- the garbage collector around a bulk save or restore ------------------------------------


def test_garbage_made_while_the_collector_is_paused_is_collected_after_it():
    """paused_gc turns the collector off for a save or a restore and back on after it,
    and leaves what the block made to the collector's usual passes: a cycle dropped in
    the block is gone once allocations have run the young collections again. (Moving
    what a block made straight to the oldest generation, with gc.freeze and
    gc.unfreeze, spared a restore's first collections; it also kept such cycles from
    ever being collected, and a fuzzing process grew by 56 KB a restore and save.)"""
    import gc
    import weakref

    from vmbtool.snapshot.save import paused_gc

    class Node:
        pass

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        node = Node()
        node.me = node
        dropped = weakref.ref(node)
        del node
    assert gc.isenabled()
    kept = [[] for _ in range(50_000)]  # allocations that run the young collections
    assert dropped() is None
    del kept
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_a_restore_drops_its_reader_before_the_collector_is_back_on(path, monkeypatch):
    """The collector's first pass after a restore walks every object alive: the reader
    and what it parsed (a guest's pending incoming entries) are gone by then, in each
    way through; the restored channels are what is left."""
    import contextlib
    import weakref

    from vmbtool.blob import reader as blob_reader
    from vmbtool.snapshot import restore as snapshot

    readers: list[weakref.ref] = []
    real_init = blob_reader.BlobReader.__init__

    def init(self, *args, **kwargs):
        readers.append(weakref.ref(self))
        real_init(self, *args, **kwargs)

    alive_at_exit: list[int] = []
    real_paused = snapshot.paused_gc

    @contextlib.contextmanager
    def paused():
        with real_paused():
            yield
            alive_at_exit.append(sum(ref() is not None for ref in readers))

    monkeypatch.setattr(blob_reader.BlobReader, "__init__", init)
    monkeypatch.setattr(snapshot, "paused_gc", paused)
    restored = restore_file(str(FIXTURE_DIR / "v1.1" / "network.vmb"))
    assert restored.servers and readers and alive_at_exit == [0]
