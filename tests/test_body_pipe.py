"""A large body is decompressed and digested on threads (blob.pipe.BodyPipe,
blob.BackgroundDigest) while the main thread checks the chunks. It must read exactly as
the plain read in one thread does: the same channels and problems, and on damaged input
the same first error, at the same offset, from the same read; and it leaves no thread
behind, however the read ends."""

from __future__ import annotations

import random
import struct
import sys
import threading

import google_crc32c
import pytest
import zstandard
from conftest import FIXTURE_DIR, FIXTURE_KEY

from vmbtool.blob import BlobReader, encode_blob, load_blob
from vmbtool.blob import envelope as blob_envelope
from vmbtool.blob import pipe as blob_pipe
from vmbtool.blob import reader as blob_reader
from vmbtool.blob.consumers import Check
from vmbtool.chunks import frame_bytes
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.tools import validate_file

HEADER_SIZE = 56
SEAL_SIZE = 16
THREAD_NAMES = ("vmbtool-body", "vmbtool-digest")
# block sizes for the pipe: odd, tiny, and the size of a zstd block (a read that ends
# where a zstd block ends decodes the next one already)
PIPE_BLOCKS = (997, 1 << 17, 1 << 20)


def pipe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in THREAD_NAMES]


@pytest.fixture(scope="module")
def big() -> bytes:
    """The network fixture with 400 KB of optional chunks of a newer minor before its
    channels (a reader skips them): a valid blob whose zstd frame has several blocks."""
    blob = load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb"))
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    rng = random.Random(5)
    fillers = [frame_bytes(0x0100, bytes(32 + rng.getrandbits(5) for _ in range(25_000)), 0)
               for _ in range(16)]
    body = [*fillers, *chunks]
    return encode_blob(body, blob.header.channel_count, level=3, created_ns=0)


def reseal(data: bytes) -> bytes:
    """The seal frame's CRC32C recomputed over the (damaged) compressed bytes."""
    seal_at = len(data) - SEAL_SIZE
    crc = google_crc32c.value(data[HEADER_SIZE:seal_at])
    return data[:-4] + struct.pack("<I", crc)


def outcome(data: bytes) -> tuple:
    """What validate says, and what a lean read says (channels and problems, or the
    error with its offset)."""
    verdict = validate_file(data)
    try:
        with BlobReader(data, consumer=Check()) as reader:
            lean = [(saved.packet_count, saved.problems) for saved, _ in reader.channels()]
            lean.append(reader.tally)
    except VmbtoolError as exc:
        lean = [(exc.where, exc.why, exc.status)]
    return verdict.valid, verdict.problems, verdict.channels, verdict.packets, lean


def piped_and_direct(data: bytes, monkeypatch, block: int) -> tuple[tuple, tuple]:
    with monkeypatch.context() as m:
        m.setattr(blob_reader, "PIPE_MIN", 1 << 40)
        direct = outcome(data)
    with monkeypatch.context() as m:
        m.setattr(blob_reader, "PIPE_MIN", 0)
        m.setattr(blob_pipe, "PIPE_BLOCK", block)
        piped = outcome(data)
    assert not pipe_threads()
    return piped, direct


def test_the_big_blob_is_valid_and_spans_several_zstd_blocks(big, monkeypatch):
    size = zstandard.frame_content_size(big[HEADER_SIZE:])
    assert size > 3 * (1 << 17)
    piped, direct = piped_and_direct(big, monkeypatch, 997)
    assert piped == direct
    assert piped[0] is True


@pytest.mark.parametrize("path", sorted(FIXTURE_DIR.glob("v*/*.vmb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_fixture_loads_the_same_through_the_pipe(path, monkeypatch):
    key = FIXTURE_KEY if path.stem.endswith("-signed") else None
    whole = load_blob(str(path), key)
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_pipe, "PIPE_BLOCK", 4096)
    piped = load_blob(str(path), key)
    assert [raw.framed for raw in piped.chunks] == [raw.framed for raw in whole.chunks]
    assert piped.end == whole.end
    assert not pipe_threads()


def zstd_blocks(data: bytes) -> list[int]:
    """Where each block of the body's zstd frame starts (RFC 8878 frame and block
    headers)."""
    descriptor = data[HEADER_SIZE + 4]
    single = bool(descriptor & 0x20)
    pos = HEADER_SIZE + 5 + (not single) + (0, 1, 2, 4)[descriptor & 3] + \
        ((1 if single else 0), 2, 4, 8)[descriptor >> 6]
    starts = []
    while True:
        starts.append(pos)
        value = int.from_bytes(data[pos:pos + 3], "little")
        pos += 3 + (1 if (value >> 1) & 3 == 1 else value >> 3)
        if value & 1:
            return starts


@pytest.mark.parametrize("block", PIPE_BLOCKS)
def test_damaged_compressed_bytes_give_the_same_first_error(big, monkeypatch, block):
    """Bytes of the zstd frame overwritten (and the seal made to match): zstd's own
    errors, raised on the decompressing thread, and the CRC and grammar errors of what
    it then decodes, are the errors of a read in one thread."""
    rng = random.Random(block)
    starts = zstd_blocks(big)
    assert len(starts) >= 4
    # the first bytes of each block (its literals header: zstd fails there) and anywhere
    places = [start + 3 + k for start in starts for k in range(4)] + \
        [rng.randrange(starts[0], len(big) - SEAL_SIZE - 8) for _ in range(12)]
    zstd_errors = set()
    for at in places:
        damaged = reseal(big[:at] + bytes([rng.getrandbits(8) | 1]) + big[at + 1:])
        piped, direct = piped_and_direct(damaged, monkeypatch, block)
        assert piped == direct, at
        zstd_errors |= {where for where, why in direct[1] if "zstd:" in why}
    # the decompressing thread did fail, deep in the body too, and it was told the same
    assert len(zstd_errors) >= 3


@pytest.mark.parametrize("block", PIPE_BLOCKS)
def test_a_bad_chunk_deep_in_the_body_is_found_at_the_same_offset(big, monkeypatch, block):
    blob = load_blob(big)
    last_packet = [raw for raw in blob.chunks if raw.type == 0x0004][-1]
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    index = [raw.offset for raw in blob.chunks].index(last_packet.offset)
    bad = bytearray(chunks[index])
    bad[-1] ^= 0x40  # its data no longer matches its CRC
    chunks[index] = bytes(bad)
    damaged = encode_blob(chunks, blob.header.channel_count, level=3, created_ns=0)
    piped, direct = piped_and_direct(damaged, monkeypatch, block)
    assert piped == direct
    assert direct[1] == [(f"chunk@{last_packet.offset}.crc32c", "checksum mismatch")]


def test_a_wrong_end_digest_is_found_through_the_pipe(big, monkeypatch):
    blob = load_blob(big)
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    header = bytearray(blob.header_bytes)
    damaged = bytearray(encode_blob(chunks, blob.header.channel_count, level=3,
                                    created_ns=1))  # digest over another header
    damaged[:HEADER_SIZE] = header
    piped, direct = piped_and_direct(bytes(damaged), monkeypatch, 4096)
    assert piped == direct
    assert direct[1][0][1] == "digest of the blob does not match"


def test_a_failing_thread_hands_over_to_a_direct_read(big, monkeypatch):
    """Whatever fails on the thread is read again here: a failure of the thread's own
    stream (not of the blob) is no problem at all."""
    real = blob_envelope.body_stream
    reads = []

    def failing(f, header, start, end, read_size=1 << 16, owns_f=False):
        stream = real(f, header, start, end, read_size, owns_f)
        if threading.current_thread().name != "vmbtool-body":
            return stream

        class Failing:
            def read(self, n):
                reads.append(n)
                if len(reads) > 3:
                    raise zstandard.ZstdError("the thread's stream broke")
                return stream.read(n)
        return Failing()

    monkeypatch.setattr(blob_envelope, "body_stream", failing)
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_pipe, "PIPE_BLOCK", 4096)
    assert outcome(big)[0] is True
    assert len(reads) > 3
    assert not pipe_threads()


def test_an_early_error_stops_the_threads(big, monkeypatch):
    blob = load_blob(big)
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    chunks[0] = chunks[0][:2] + b"\x02" + chunks[0][3:]  # unknown flag bits
    damaged = encode_blob(chunks, blob.header.channel_count, level=3, created_ns=0)
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_pipe, "PIPE_BLOCK", 997)  # the thread is far from done
    with pytest.raises(BlobError, match="unknown flag bits"):
        load_blob(damaged)
    assert not pipe_threads()


@pytest.mark.parametrize("how", ["reader.close", "generator.close", "break"])
def test_a_read_left_early_stops_the_threads(big, monkeypatch, how):
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_pipe, "PIPE_BLOCK", 997)
    interval = sys.getswitchinterval()
    reader = BlobReader(big, consumer=Check())
    channels = reader.channels()
    if how == "break":
        for _saved in channels:
            assert len(pipe_threads()) == 2
            assert sys.getswitchinterval() == blob_pipe.SWITCH_INTERVAL
            break
        del channels  # as when a loop over reader.channels() is left
    else:
        next(channels)
        assert len(pipe_threads()) == 2
        (reader if how == "reader.close" else channels).close()
    assert not pipe_threads()
    assert sys.getswitchinterval() == interval
    reader.close()


def test_a_small_body_is_read_without_threads(monkeypatch):
    """A thread costs more than reading a small body (validate of many small blobs)."""
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 1 << 20)
    started = []
    monkeypatch.setattr(blob_pipe.BodyPipe, "__init__",
                        lambda *a: started.append(a) or pytest.fail("a thread for 4 KB"))
    assert validate_file(str(FIXTURE_DIR / "v1.1" / "storage.vmb")).valid
    assert not started


@pytest.mark.parametrize("block", [4096, 1 << 16, 1 << 17])
def test_a_read_that_ends_where_a_zstd_block_ends_fails_as_it_did(monkeypatch, block):
    """A chunk's data read that ends exactly where a zstd block ends decodes the next
    block already, and fails when that one is damaged: through the pipe it fails there
    too (the thread hands a block over only once the next one decoded)."""
    blob = load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb"))
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    rng = random.Random(7)
    # two chunks of a zstd block each, compressed small: the second block is in the
    # input buffer already when the first one has been read
    fillers = [frame_bytes(0x0100, bytes(rng.getrandbits(1) for _ in range((1 << 17) - 12)),
                           0) for _ in range(2)]
    data = encode_blob([*fillers, *chunks], blob.header.channel_count, level=3, created_ns=0)
    second = zstd_blocks(data)[1]
    assert second - HEADER_SIZE < 1 << 15
    damaged = reseal(data[:second + 3] + b"\xff\xff" + data[second + 5:])
    piped, direct = piped_and_direct(damaged, monkeypatch, block)
    assert direct[1][0][0] == "chunk@0 (decompressed)"  # not the next chunk header's read
    assert piped == direct


def test_the_chunk_header_is_unpacked_as_its_grammar_parses_it():
    from construct import Container

    from vmbtool import chunks as chunks_module
    from vmbtool import codec
    from vmbtool.formats.chunk import ChunkHeader

    assert chunks_module.CHUNK_HEADER.size == ChunkHeader.sizeof()
    rng = random.Random(3)
    for _ in range(200):
        head = bytearray(rng.getrandbits(8) for _ in range(12))
        head[3] = 0 if rng.random() < 0.8 else head[3] | 1
        try:
            parsed = codec.parse(ChunkHeader, bytes(head), "chunk_header", 40)
        except BlobError as exc:
            with pytest.raises(BlobError) as info:
                chunks_module.parse_chunk_header(bytes(head), 40)
            assert (info.value.where, info.value.why) == (exc.where, exc.why)
            continue
        fast = chunks_module.parse_chunk_header(bytes(head), 40)
        assert Container(fast) == parsed
        assert list(fast) == [k for k in parsed if not k.startswith("_")]


def test_the_end_digest_is_right_wherever_the_end_chunk_falls(big, monkeypatch):
    """The END chunk across two of the pipe's blocks, at the start of one, inside one."""
    end_at = [raw.offset for raw in load_blob(big).chunks][-1]
    straddles = [size for size in range(900, 3000) if end_at % size > size - 56][:3]
    starts = [size for size in range(900, 20000) if end_at % size == 0][:2]
    assert straddles and starts
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    for size in [*straddles, *starts, 1 << 16]:
        monkeypatch.setattr(blob_pipe, "PIPE_BLOCK", size)
        with BlobReader(big, consumer=Check()) as reader:
            assert len(list(reader.channels())) == 3  # the END digest matched
