"""A large sealed body's seal and frame walk, made on the way (frame.SealScan): the
checking read (`check_file`, validate's and restore's first pass) reads the compressed
bytes once, for the decompressor, instead of once more up front. It must come to the
same outcome as the up-front checks: the same verdict on a sound blob, the same first
error, at the same offset, on a damaged one."""

from __future__ import annotations

import io
import random
import struct

import google_crc32c
import pytest
import zstandard
from conftest import FIXTURE_DIR

from vmbtool import frame
from vmbtool.blob import encode_blob, load_blob
from vmbtool.blob import pipe as blob_pipe
from vmbtool.blob import reader as blob_reader
from vmbtool.chunks import frame_bytes
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.snapshot import check_file

HEADER_SIZE = 56
SEAL_SIZE = 16


@pytest.fixture(scope="module")
def big() -> bytes:
    """The network fixture behind 400 KB of optional chunks: several zstd blocks."""
    blob = load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb"))
    chunks = [raw.framed for raw in blob.chunks if raw.type != 0xFF]
    rng = random.Random(7)
    fillers = [frame_bytes(0x0100, bytes(32 + rng.getrandbits(5) for _ in range(25_000)), 0)
               for _ in range(16)]
    return encode_blob([*fillers, *chunks], blob.header.channel_count, level=3,
                       created_ns=0)


def sealed(body: bytes, head: bytes) -> bytes:
    """`head` + compressed `body` + a seal frame whose CRC32C matches it."""
    # the seal frame written by hand, as FORMAT.md lays it out (an oracle beside the grammar)
    return head + body + struct.pack("<II4sI", 0x184D2A5B, 8, b"SEAL", google_crc32c.value(body))


def parts(data: bytes) -> tuple[bytes, bytes]:
    """A blob's header and compressed body (the seal dropped)."""
    return data[:HEADER_SIZE], data[HEADER_SIZE:-SEAL_SIZE]


def check_outcome(data: bytes) -> tuple:
    try:
        found = check_file(data)
    except VmbtoolError as exc:
        return "error", exc.where, exc.why, exc.status
    return "read", found.problems, found.channels, found.packets, found.decoded


def scanned_and_up_front(data: bytes, monkeypatch) -> tuple[tuple, tuple]:
    with monkeypatch.context() as m:
        m.setattr(blob_reader, "PIPE_MIN", 1 << 40)  # no pipe: the seal checked up front
        up_front = check_outcome(data)
    with monkeypatch.context() as m:
        m.setattr(blob_reader, "PIPE_MIN", 0)
        m.setattr(blob_pipe, "PIPE_BLOCK", 4096)
        scanned = check_outcome(data)
    return scanned, up_front


@pytest.mark.parametrize("read_size", [1, 3, 997, 1 << 17, 1 << 20])
def test_the_scan_finds_what_the_up_front_checks_find(big, read_size):
    f = io.BytesIO(big)
    seal_at = len(big) - SEAL_SIZE
    stored = frame.read_seal(f, HEADER_SIZE, seal_at, len(big))
    scan = frame.SealScan(f, HEADER_SIZE, seal_at, stored)
    scan.seek(HEADER_SIZE)
    while scan.read(read_size):
        pass
    scan.drain()
    assert scan.sound
    assert scan.crc == stored
    assert scan.frame_end == frame.zstd_frame_end(f, HEADER_SIZE, seal_at) == seal_at


@pytest.mark.parametrize("path", sorted(FIXTURE_DIR.glob("v1.1/*.vmb")), ids=lambda p: p.name)
def test_every_sealed_fixture_checks_the_same_either_way(path, monkeypatch):
    data = path.read_bytes()
    if data[16] & 1 or data[20] != 1:  # signed, or not zstd
        pytest.skip("a signed or uncompressed fixture")
    scanned, up_front = scanned_and_up_front(data, monkeypatch)
    assert scanned == up_front
    assert scanned[0] == "read"


def test_a_sound_large_body_is_not_read_twice(big, monkeypatch):
    """The up-front checks do not run at all on a sound blob: the scan stands for them."""
    def no(*_args):
        raise AssertionError("the compressed bytes were read up front")

    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_reader, "check_seal", no)
    monkeypatch.setattr(blob_reader, "zstd_frame_end", no)
    found = check_file(big)
    assert not found.problems and found.channels == 3


def damaged_blobs(big: bytes) -> dict[str, bytes]:
    head, body = parts(big)
    whole = len(big) - SEAL_SIZE
    rng = random.Random(11)
    flips = {}
    for _ in range(6):
        at = rng.randrange(HEADER_SIZE, whole)
        flips[f"a byte flipped at {at}, seal as it was"] = \
            big[:at] + bytes([big[at] ^ 0x20]) + big[at + 1:]
    return {
        **flips,
        "the seal's CRC changed": big[:-4] + struct.pack("<I", (google_crc32c.value(body)
                                                               ^ 1)),
        "the seal's tag damaged": big[:-8] + b"SEAX" + big[-4:],
        "8 bytes between the frame and the seal": sealed(body + bytes(8), head),
        "a second frame before the seal": sealed(
            body + zstandard.ZstdCompressor().compress(b"x"), head),
        "the frame's last 5 bytes cut": sealed(body[:-5], head),
        "the frame header's reserved bit": sealed(body[:4] + bytes([body[4] | 0x08])
                                                  + body[5:], head),
        "a reserved block type": sealed(body[:6] + bytes([body[6] | 0x06]) + body[7:],
                                        head),
        "only a frame header": sealed(body[:6], head),
        "no body at all": sealed(b"", head),
    }


def test_damage_the_seal_or_the_frame_walk_finds_is_found_first_either_way(big,
                                                                           monkeypatch):
    seen = set()
    for what, data in damaged_blobs(big).items():
        scanned, up_front = scanned_and_up_front(data, monkeypatch)
        assert scanned == up_front, what
        assert scanned[0] == "error", what
        seen.add(scanned[1].split(" ")[0])
    # the seal, the frame walk and the bytes after the frame all had their say
    assert {"body.seal.crc32c", "body.seal", "body.block_header", "body.frame_header",
            "body"} <= seen


def test_a_body_that_reads_differently_the_second_time_is_refused(big, monkeypatch):
    """The scan saw bytes whose CRC is wrong, the up-front checks then saw right ones:
    the file changed under the read, and no verdict of it holds."""
    class Changing(frame.SealScan):
        def drain(self) -> None:
            super().drain()
            self.crc ^= 1

    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_reader, "SealScan", Changing)
    with pytest.raises(BlobError, match="the blob changed while it was read"):
        check_file(big)


def test_a_scan_that_never_finished_leaves_the_verdict_to_the_up_front_checks(
        big, monkeypatch):
    """The decompressing thread stopped early (its own failure, not the blob's): the
    up-front checks are made after the read, and a sound blob stays valid."""
    class Stopped(frame.SealScan):
        def drain(self) -> None:
            pass  # as if the thread had ended before reading on to the seal

    calls = []
    real = blob_reader.check_seal
    monkeypatch.setattr(blob_reader, "PIPE_MIN", 0)
    monkeypatch.setattr(blob_reader, "SealScan", Stopped)
    monkeypatch.setattr(blob_reader, "check_seal", lambda *a: calls.append(a) or real(*a))
    found = check_file(big)
    assert not found.problems and calls
