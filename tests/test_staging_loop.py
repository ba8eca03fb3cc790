"""RestoreFromBuffer stages a buffer's run of PACKETs in one loop (`stage_chunks`), not
chunk by chunk through `stage_chunk`: the two must stage the same state and refuse the
same chunks with the same words, whatever the buffer holds."""

from __future__ import annotations

import struct

import pytest
from conftest import FIXTURE_DIR

from vmbtool import codec
from vmbtool.blob import load_blob
from vmbtool.chunks import RawChunk
from vmbtool.errors import BlobError
from vmbtool.formats import limits
from vmbtool.invariants import ChannelCheck
from vmbtool.kmcl.staging import RestoreStaging, stage_chunk, stage_chunks

FIXTURES = sorted(FIXTURE_DIR.glob("v*/*.vmb"))


def channels_of(path) -> list[list[RawChunk]]:
    key = (FIXTURE_DIR / "v1" / "test-key").read_bytes() if "signed" in path.name else None
    return [c for c in load_blob(path.read_bytes(), key).channel_chunks if c]


def staged(chunks: list[RawChunk], together: bool, checked: bool = False,
           check: bool = True) -> tuple:
    """What a RestoreFromBuffer staging holds after `chunks` (or the refusal)."""
    staging = RestoreStaging(scans=True, check=ChannelCheck("channel") if check else None)
    staging.checked = checked
    try:
        if together:
            final = stage_chunks(staging, chunks, "channel")
        else:
            final = False
            for raw in chunks:
                if final:
                    raise BlobError(f"channel.chunk@{raw.offset}",
                                    "chunks after the channel end")
                final = stage_chunk(staging, raw, "channel")
    except BlobError as exc:
        return "refused", exc.where, exc.why, exc.status
    saved = staging.saved
    return (final, saved.packets, staging.lib_bufs, saved.packet_count, staging.last,
            sorted(staging.packet_keys), saved.problems, saved.incoming_count)


def both_ways(chunks: list[RawChunk], **kw) -> tuple:
    one_by_one, together = staged(chunks, False, **kw), staged(chunks, True, **kw)
    assert together == one_by_one
    return together


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_channel_stages_the_same_in_one_loop(path):
    for chunks in channels_of(path):
        assert both_ways(chunks)[0] is True
        both_ways(chunks, check=False)
        both_ways(chunks, checked=True, check=False)


def with_packet(chunks: list[RawChunk], n: int, data: bytes) -> list[RawChunk]:
    """The channel's chunks with its n-th PACKET's data replaced."""
    packets = [i for i, raw in enumerate(chunks) if raw.type == 0x0004]
    out = list(chunks)
    raw = out[packets[n]]
    out[packets[n]] = RawChunk(raw.type, raw.flags, data, raw.offset, b"", None, len(data))
    return out


def a_channel_with_packets(minimum: int = 3) -> list[RawChunk]:
    for path in FIXTURES:
        for chunks in channels_of(path):
            if sum(raw.type == 0x0004 for raw in chunks) >= minimum:
                return chunks
    raise AssertionError("no fixture channel has enough packets")


def txid_of(raw: RawChunk) -> int:
    return struct.unpack_from("<Q", raw.data, 4)[0]  # LibBuf length, then transaction_id


def test_a_duplicate_and_an_out_of_order_packet_are_refused_alike():
    chunks = a_channel_with_packets()
    packets = [raw for raw in chunks if raw.type == 0x0004]
    first, second = packets[0].data, packets[1].data
    duplicate = second[:4] + first[4:12] + second[12:]
    refused = both_ways(with_packet(chunks, 1, duplicate))
    assert refused[0] == "refused" and "duplicate transaction id" in refused[2]
    both_ways(with_packet(chunks, 1, duplicate), check=False)
    # the second packet's id below the first's: out of order (unless a backlog's)
    backwards = second[:4] + struct.pack("<Q", max(1, txid_of(packets[0]) - 1)) + second[12:]
    both_ways(with_packet(chunks, 1, backwards))


def test_a_record_the_generated_code_refuses_is_refused_by_the_grammar_alike():
    chunks = a_channel_with_packets()
    packets = [raw for raw in chunks if raw.type == 0x0004]
    for data in (packets[1].data + b"\x00",  # a byte past the record
                 packets[1].data[:-1],  # one short
                 packets[1].data[:4] + b"\xff" * 8 + packets[1].data[12:]):
        assert both_ways(with_packet(chunks, 1, data))[0] == "refused"
    assert codec.fast_path_enabled()
    previous = codec.use_fast_path(False)  # VMBTOOL_PLAIN_GRAMMARS: the grammar alone
    try:
        both_ways(chunks)
        both_ways(with_packet(chunks, 1, packets[1].data + b"\x00"))
    finally:
        codec.use_fast_path(previous)


def test_the_packet_cap_and_chunks_after_the_end_are_refused_alike(monkeypatch):
    chunks = a_channel_with_packets()
    monkeypatch.setattr(limits, "MAX_PACKETS_PER_CHANNEL", 2)
    refused = both_ways(chunks)
    assert refused[0] == "refused" and "more than 2 packet objects" in refused[2]
    monkeypatch.undo()
    refused = both_ways([*chunks, chunks[-1]])
    assert refused[1:3] == (f"channel.chunk@{chunks[-1].offset}", "chunks after the channel end")
