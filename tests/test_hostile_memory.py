"""Bounded memory and time on hostile blobs, each read by a real `vmbtool` process.

Every case is a file built cheaply here (zstd frames of run-length blocks written by hand,
streaming compression of a repeated pattern, lying length and count fields under correct
checksums) that would need gigabytes, or forever, if the reader believed it. The process
must refuse it (exit 1, one `Error:` line, no traceback) within WALL_LIMIT seconds with a
peak RSS (wait4's ru_maxrss) below RSS_LIMIT_MB. A watchdog kills the child as soon as it
passes either limit, so a failing case costs seconds, not the machine.

Run with `-s` to see each case's figures.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from conftest import EXE, FIXTURE_DIR
from construct import Struct

from vmbtool import codec
from vmbtool.blob import load_blob
from vmbtool.chunks import crc32c, frame, frame_bytes
from vmbtool.formats import limits
from vmbtool.formats.chunk import ChunkType
from vmbtool.formats.header import FileHeader
from vmbtool.formats.scenario import GuestChannel, ScenarioState

pytestmark = pytest.mark.skipif(EXE is None, reason="the vmbtool console script is not on PATH")
FIXTURES = FIXTURE_DIR / "v1"
RSS_LIMIT_MB = 100
WALL_LIMIT = 120.0  # a hang guard for the watchdog, not a figure a case must meet
PARALLEL = 2  # the cores this suite assumes; the cases are CPU-bound
ZSTD_MAGIC = 0xFD2FB528
RLE_BLOCK = 128 * 1024  # the largest zstd block


# -- building hostile files -------------------------------------------------------------


def header(compression: str = "zstd", channels: int = 1) -> bytes:
    """A correct format 1.0 header (1.0 blobs stay readable forever: fixtures/v1)."""
    head = codec.build(FileHeader, {
        "format_major": 1, "format_minor": 0, "header_size": 56, "flags": 0,
        "compression": compression, "level": 3 if compression == "zstd" else 0,
        "reserved": 0, "writer_version": "hostile", "created_ns": 0,
        "channel_count": channels}, "header")
    return head + struct.pack("<I", crc32c(head))


def rle_frame(prefix: bytes, fill: int, size: int) -> bytes:
    """One zstd frame: `prefix` as a raw block, then `size` bytes of `fill` as RLE blocks
    (4 bytes per 128 KiB), built by hand (RFC 8878) so 16 GiB cost 512 KiB."""
    return zstd_frame([prefix, (fill, size)])


def zstd_frame(segments: list) -> bytes:
    """One zstd frame of raw blocks (bytes) and RLE runs ((byte, count)), by hand."""
    blocks: list[tuple[int, int, bytes]] = []  # (block type, size, content)
    for segment in segments:
        if isinstance(segment, bytes):
            for at in range(0, len(segment), RLE_BLOCK):
                part = segment[at:at + RLE_BLOCK]
                blocks.append((0, len(part), part))
        else:
            fill, size = segment
            full, rest = divmod(size, RLE_BLOCK)
            blocks += [(1, RLE_BLOCK, bytes([fill]))] * full
            blocks += [(1, rest, bytes([fill]))] if rest else []
    out = [struct.pack("<IBB", ZSTD_MAGIC, 0x00, (17 - 10) << 3)]  # window 128 KiB
    for i, (kind, size, content) in enumerate(blocks):
        last = i == len(blocks) - 1
        out.append((last | kind << 1 | size << 3).to_bytes(3, "little") + content)
    return b"".join(out)


def repeated_frame(prefix: bytes, pattern: bytes, total: int) -> bytes:
    """One zstd frame of `prefix` then `pattern` repeated to about `total` bytes,
    compressed as a stream so building it costs about a second per GiB."""
    block = pattern * max(1, (1 << 20) // len(pattern))
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    out = [compressor.compress(prefix)]
    for _ in range(max(1, total // len(block))):
        out.append(compressor.compress(block))
    out.append(compressor.flush())
    return b"".join(out)


def fixture_chunks(name: str = "storage.vmb") -> list[bytes]:
    """The framed chunks of a golden blob, END excluded."""
    blob = load_blob(str(FIXTURES / name))
    return [c.framed for c in blob.chunks if c.type != ChunkType.END]


def end_chunk(head: bytes, chunks: list[bytes], **lies: int) -> bytes:
    digest = hashlib.sha256(head + b"".join(chunks)).digest()
    counts = {"channel_count": sum(c[:2] == b"\x01\x00" for c in chunks),
              "chunk_count": len(chunks),
              "packet_count": sum(c[:2] == b"\x04\x00" for c in chunks), **lies}
    return frame(ChunkType.END, {**counts, "digest": digest})


def sealed(chunks: list[bytes], channels: int | None = None, **end_lies: int) -> bytes:
    """A complete, correctly checksummed zstd blob of these chunks (1.0, one frame)."""
    count = sum(c[:2] == b"\x01\x00" for c in chunks) if channels is None else channels
    head = header(channels=count)
    body = b"".join(chunks) + end_chunk(head, chunks, **end_lies)
    return head + zstandard.ZstdCompressor(level=3).compress(body)


def patched(chunk: bytes, offset: int, fmt: str, value: int) -> bytes:
    """A framed chunk with a field of its data changed and its CRC recomputed."""
    data = bytearray(chunk[12:])
    struct.pack_into(fmt, data, offset, value)
    return frame_bytes(int.from_bytes(chunk[:2], "little"), bytes(data), chunk[2])


def replace_first(chunks: list[bytes], ctype: int, make) -> list[bytes]:
    out = list(chunks)
    i = next(i for i, c in enumerate(out) if int.from_bytes(c[:2], "little") == ctype)
    out[i] = make(out[i])
    return out


def zero_bomb() -> bytes:
    """16 GiB of zeros: each 12 zero bytes is a valid empty chunk of unknown optional type
    0 (its CRC32C, of nothing, is 0) -- 1.4 billion of them."""
    return header() + rle_frame(b"", 0, 16 << 30)


def big_chunk_then_zeros() -> bytes:
    """A chunk header declaring the 32 MiB cap, then gigabytes of zeros."""
    head = struct.pack("<HBBII", ChunkType.CHANNEL, 1, 0, 32 << 20, 0x12345678)
    return header() + rle_frame(head, 0, 4 << 30)


def big_optional_chunks() -> bytes:
    """Valid 32 MiB chunks (zeros, correct CRC) of an unknown optional type, 128 of them."""
    size = 32 << 20
    head = struct.pack("<HBBII", 0x7777, 0, 0, size, crc32c(bytes(size)))
    return header() + zstd_frame([head, (0, size)] * 128)


def big_ring() -> bytes:
    """A complete blob whose incoming RING declares 8191 data pages (32 MiB - 4 KiB of
    zeros), every checksum correct: twice the 4095-page limit."""
    chunks = fixture_chunks()
    at = next(i for i, c in enumerate(chunks) if c[:2] == b"\x02\x00")
    pages = 8191
    fields = bytes(chunks[at][12:12 + 21]) + struct.pack("<I", pages)  # RingState up to data
    crc = crc32c(fields + bytes(pages * 4096))
    ring_head = struct.pack("<HBBII", ChunkType.RING, 1, 0, len(fields) + pages * 4096, crc)
    head = header(channels=1)
    before, after = b"".join(chunks[:at]), b"".join(chunks[at + 1:])
    digest = hashlib.sha256(head + before + ring_head + fields)
    digest.update(bytes(pages * 4096))
    digest.update(after)
    end = frame(ChunkType.END, {"channel_count": 1, "chunk_count": len(chunks),
                                "packet_count": sum(c[:2] == b"\x04\x00" for c in chunks),
                                "digest": digest.digest()})
    return head + zstd_frame([before + ring_head + fields, (0, pages * 4096), after + end])


def length_max_raw() -> bytes:
    """An uncompressed body whose first chunk declares 2^32-1 bytes."""
    return header("none") + struct.pack("<HBBII", ChunkType.CHANNEL, 1, 0, 0xFFFFFFFF, 0)


def length_max_zstd() -> bytes:
    head = struct.pack("<HBBII", ChunkType.CHANNEL, 1, 0, 0xFFFFFFFF, 0)
    return header() + zstandard.ZstdCompressor().compress(head + bytes(4096))


def header_channels_max() -> bytes:
    return sealed(fixture_chunks(), channels=0xFFFFFFFF)


def end_packets_max() -> bytes:
    return sealed(fixture_chunks(), packet_count=0xFFFFFFFF)


def channel_end_packets_max() -> bytes:
    # ChannelEnd: u32 gpadl_count, u32 packet_count, u32 incoming_count
    return sealed(replace_first(fixture_chunks(), ChunkType.CHANNEL_END,
                                lambda c: patched(c, 4, "<I", 0xFFFFFFFF)))


def payload_4gib() -> bytes:
    """A PACKET whose LibBuf payload length says 4 GiB - 1 (PacketRecord: u32 lib_size,
    then PacketContext: txid u64, state u8, type u16, send_flags u32, ring_offset u32,
    pointer u64, routine u8 + chars, payload u32 + bytes)."""
    def lie(chunk: bytes) -> bytes:
        routine_length = chunk[12 + 4 + 27]
        return patched(chunk, 4 + 28 + routine_length, "<I", 0xFFFFFFFF)
    return sealed(replace_first(fixture_chunks(), ChunkType.PACKET, lie))


def save_buf_4gib() -> bytes:
    def lie(chunk: bytes) -> bytes:
        lib_size = int.from_bytes(chunk[12:16], "little")
        return patched(chunk, 4 + lib_size, "<I", 0xFFFFFFFF)
    return sealed(replace_first(fixture_chunks(), ChunkType.PACKET, lie))


def ring_pages_max() -> bytes:
    # RingState: u8 direction, 5 x u32, u32 data_pages at offset 21
    return sealed(replace_first(fixture_chunks(), ChunkType.RING,
                                lambda c: patched(c, 21, "<I", 0xFFFFFFFF)))


def gpadl_count_max() -> bytes:
    return sealed(replace_first(fixture_chunks(), ChunkType.GPADLS,
                                lambda c: patched(c, 0, "<I", 0xFFFFFFFF)))


def scenario_guests_max() -> bytes:
    """The SCENARIO chunk's guest array says 2^32-1 guests."""
    def lie(chunk: bytes) -> bytes:
        data = chunk[12:]
        name = data[0]
        pos = 1 + name + 16
        for _ in range(2):  # vsp_state, vsc_state
            pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
        return patched(chunk, pos, "<I", 0xFFFFFFFF)
    return sealed(replace_first(fixture_chunks(), ChunkType.SCENARIO, lie))


def unknown_optional_chunks() -> bytes:
    """Millions of tiny unknown optional chunks (type 0x7777, empty) before any channel."""
    empty = frame_bytes(0x7777, b"", 0)
    return header() + repeated_frame(b"", empty, 1 << 30)


def endless_packets(fixture: str) -> bytes:
    """A CHANNEL, its rings and GPADLs, then its first PACKET chunk repeated forever."""
    chunks = fixture_chunks(fixture)
    packet = next(c for c in chunks if c[:2] == b"\x04\x00")
    first = chunks.index(packet)
    return header() + repeated_frame(b"".join(chunks[:first]), packet, 1 << 30)


def rising_packets(count: int = 300_000) -> bytes:
    """A pipe channel's state, then `count` backlog PACKET chunks, each valid and with a
    transaction id of its own (no duplicate to stop at): ~300 bytes each compressed."""
    chunks = fixture_chunks("pipe.vmb")
    packet = next(c for c in chunks if c[:2] == b"\x04\x00")
    first = chunks.index(packet)
    data = bytearray(packet[12:])
    body = [b"".join(chunks[:first])]
    for txid in range(1 << 20, (1 << 20) + count):
        struct.pack_into("<Q", data, 4, txid)  # PacketRecord: u32 lib_size, u64 txid
        chunk = bytes(data)
        body.append(struct.pack("<HBBII", ChunkType.PACKET, 1, 0, len(chunk), crc32c(chunk)))
        body.append(chunk)
    return header() + zstandard.ZstdCompressor(level=1).compress(b"".join(body))


def endless_channels() -> bytes:
    """One whole, valid channel's chunks repeated forever (no SCENARIO, no END)."""
    chunks = fixture_chunks("pipe.vmb")
    channel = b"".join(c for c in chunks if c[:2] != b"\x10\x00")
    return header() + repeated_frame(b"", channel, 1 << 30)


TINY_INCOMING = struct.pack("<QQHHIH", 1, 1, 6, 0, 0, 0)  # number, txid, inband, no data
TINY_COUNT = (32 << 20) // len(TINY_INCOMING) - 1  # 1.3 million fit in one chunk


def tiny_incoming(count: int = TINY_COUNT) -> bytes:
    """A PENDING_INCOMING chunk of 1.3 million valid-looking 26-byte entries (32 MiB):
    parsed whole, ~1.3 GB of containers."""
    data = struct.pack("<I", count) + TINY_INCOMING * TINY_COUNT
    return sealed(replace_first(fixture_chunks("pipe.vmb"), ChunkType.INCOMING,
                                lambda _chunk: frame_bytes(ChunkType.INCOMING, data, 1)))


def guest_tiny_incoming() -> bytes:
    """A SCENARIO chunk whose one guest holds 1.3 million tiny pending incoming entries."""
    blob = load_blob(str(FIXTURES / "pipe.vmb"))
    scenario = blob.scenario
    head = codec.build(Struct(*ScenarioState.subcons[:-1]), scenario, "scenario")
    context = codec.build(GuestChannel.subcons[0], scenario.guests[0].context, "context")
    data = head + struct.pack("<I", 1) + context + struct.pack("<II", 0, TINY_COUNT - 100) \
        + TINY_INCOMING * (TINY_COUNT - 100)
    return sealed(replace_first(fixture_chunks("pipe.vmb"), ChunkType.SCENARIO,
                                lambda _chunk: frame_bytes(ChunkType.SCENARIO, data, 1)))


def gpadl_pfns_max() -> bytes:
    """A GPADL declaring 2^28 PFNs over 32 MiB of them (4 million parse as 150 MB)."""
    pfns = (32 << 20) // 8 - 8
    gpadl = struct.pack("<IBBIII", 256, 0, 1, 0, 65536, 1 << 28) + bytes(8 * pfns)
    return sealed(replace_first(fixture_chunks("network.vmb"), ChunkType.GPADLS,
                                lambda _chunk: frame_bytes(ChunkType.GPADLS,
                                                           struct.pack("<I", 1) + gpadl, 1)))


def packet_pfns() -> bytes:
    """A PACKET whose one GPA range carries 4 million PFNs (a list of them: 160 MB)."""
    n = (32 << 20) // 8 - 16
    lib = struct.pack("<QBHIIQBI", 5, 1, 9, 0, 0, 0, 0, 0) + \
        struct.pack("<HIIII", 9, 1, 4096 * 1000, 0, n) + bytes(8 * n)
    record = struct.pack("<I", len(lib)) + lib + struct.pack("<I", 0)
    return sealed(replace_first(fixture_chunks("pipe.vmb"), ChunkType.PACKET,
                                lambda _chunk: frame_bytes(ChunkType.PACKET, record, 1)))


def packet_ranges() -> bytes:
    """A data-using-GPADL PACKET with 4 million byte ranges (containers: gigabytes)."""
    n = (32 << 20) // 8 - 16
    lib = struct.pack("<QBHIIQBI", 5, 1, 8, 0, 0, 0, 0, 0) + \
        struct.pack("<HIBI", 8, 256, 0, n) + bytes(8 * n)
    record = struct.pack("<I", len(lib)) + lib + struct.pack("<I", 0)
    return sealed(replace_first(fixture_chunks("network.vmb"), ChunkType.PACKET,
                                lambda _chunk: frame_bytes(ChunkType.PACKET, record, 1)))


CASES = {
    "zstd bomb: 16 GiB of zeros (empty optional chunks)": zero_bomb,
    "zstd bomb: 32 MiB chunk header then 4 GiB of zeros": big_chunk_then_zeros,
    "zstd bomb: 128 valid 32 MiB optional chunks": big_optional_chunks,
    "RING chunk of 8191 pages (32 MiB), correct CRC": big_ring,
    "chunk length 2^32-1 (uncompressed)": length_max_raw,
    "chunk length 2^32-1 (zstd)": length_max_zstd,
    "header channel_count 2^32-1": header_channels_max,
    "END packet_count 2^32-1": end_packets_max,
    "CHANNEL_END packet_count 2^32-1": channel_end_packets_max,
    "packet payload length 4 GiB - 1": payload_4gib,
    "packet save_buf length 4 GiB - 1": save_buf_4gib,
    "ring data_pages 2^32-1": ring_pages_max,
    "GPADL count 2^32-1": gpadl_count_max,
    "scenario guest count 2^32-1": scenario_guests_max,
    "endless tiny unknown optional chunks": unknown_optional_chunks,
    "endless repeat of one valid PACKET chunk (in the ring)": (
        lambda: endless_packets("storage.vmb")),
    "endless repeat of one valid PACKET chunk (backlog)": lambda: endless_packets("pipe.vmb"),
    "endless backlog PACKET chunks, each its own transaction id": rising_packets,
    "endless repeat of a whole valid channel": endless_channels,
    "PENDING_INCOMING of 1.3 million tiny entries (32 MiB)": tiny_incoming,
    "PENDING_INCOMING count 2^32-1 over 32 MiB of entries": lambda: tiny_incoming(2**32 - 1),
    "scenario guest with 1.3 million tiny pending incoming entries": guest_tiny_incoming,
    "GPADL declaring 2^28 PFNs over 32 MiB of them": gpadl_pfns_max,
    "PACKET with 4 million PFNs in one GPA range (32 MiB)": packet_pfns,
    "PACKET with 4 million byte ranges (32 MiB)": packet_ranges,
}


# -- running the cases --------------------------------------------------------------------

# Runs in a small python3 process (not forked from pytest, whose high-water RSS a forked
# child would report as its own): spawns vmbtool, kills it past the limits, and prints
# its exit code, wall time and wait4 peak RSS as JSON.
WATCHDOG = r"""
import json, os, signal, sys, time
rss_limit, wall_limit, err_path, argv = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], \
    sys.argv[4:]
err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
null = os.open(os.devnull, os.O_RDWR)
start = time.monotonic()
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
    (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
    (os.POSIX_SPAWN_DUP2, err, 2)])
killed = None
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:")), 0)
    except OSError:
        rss = 0
    if rss > rss_limit:
        killed = f"RSS passed {rss_limit:.0f} MB"
    elif time.monotonic() - start > wall_limit:
        killed = f"still running after {wall_limit:.0f} s"
    if killed:
        os.kill(pid, signal.SIGKILL)
        done, status, usage = os.wait4(pid, 0)
        break
    time.sleep(0.02)
print(json.dumps({"exit_code": None if killed else os.waitstatus_to_exitcode(status),
                  "wall": time.monotonic() - start, "peak_mb": usage.ru_maxrss / 1024,
                  "killed": killed}))
"""


@dataclass
class Outcome:
    size: int
    exit_code: int | None
    stderr: str
    wall: float
    peak_mb: float
    killed: str | None  # why the watchdog killed it

    def figures(self) -> str:
        return (f"{self.size} bytes: exit {self.exit_code}, {self.wall:.2f} s, peak RSS "
                f"{self.peak_mb:.1f} MB{f', KILLED: {self.killed}' if self.killed else ''}")


def run_case(name: str, directory: Path) -> Outcome:
    build = CASES[name]
    data = build()
    directory.mkdir(parents=True, exist_ok=True)
    path, err = directory / "hostile.vmb", directory / "stderr.txt"
    path.write_bytes(data)
    # restore: load, check and restore -- every reader stage, and an Error: line on refusal
    proc = subprocess.run(
        [sys.executable, "-c", WATCHDOG, str(RSS_LIMIT_MB), str(WALL_LIMIT), str(err), EXE,
         "restore", str(path), "--run-steps", "0"],
        capture_output=True, text=True, timeout=WALL_LIMIT + 30)
    result = json.loads(proc.stdout)
    return Outcome(len(data), result["exit_code"], err.read_text(errors="replace"),
                   result["wall"], result["peak_mb"], result["killed"])


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Every selected case, a few at a time: the ones that run to a limit overlap."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.originalname == "test_hostile_blob_is_refused_in_bounded_memory"]
    base = tmp_path_factory.mktemp("hostile")
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {name: pool.submit(run_case, name, base / f"case{i}")
                   for i, name in enumerate(selected)}
        return {name: future.result() for name, future in futures.items()}


XFAIL: dict[str, str] = {}  # cases known to fail, strict: none today


@pytest.mark.parametrize("case", [
    pytest.param(name, id=name, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name])]
                 if name in XFAIL else []) for name in CASES])
def test_hostile_blob_is_refused_in_bounded_memory(case, outcomes):
    outcome = outcomes[case]
    print(f"\n{case}: {outcome.figures()}\n  {outcome.stderr.strip()[:200]}")
    assert outcome.killed is None, outcome.figures()
    assert outcome.exit_code == 1, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    assert outcome.peak_mb < RSS_LIMIT_MB
    # the time is not asserted: the watchdog's limit only stops a hang; the work each
    # case may cost is counted in test_hostile_blob_is_refused_after_bounded_work


def test_the_bombs_are_what_they_claim():
    """The hand-built frames decompress as declared (spot check, without inflating)."""
    frame_ = rle_frame(b"abc", 0, 3 * RLE_BLOCK + 5)
    data = zstandard.ZstdDecompressor().stream_reader(frame_).read(4 * RLE_BLOCK)
    assert data[:3] == b"abc" and len(data) == 3 + 3 * RLE_BLOCK + 5 and not any(data[3:])
    bomb = zero_bomb()
    assert len(bomb) < 600_000
    assert zstandard.ZstdDecompressor().stream_reader(bomb[56:]).read(1 << 20) == bytes(1 << 20)


# -- bounded work, counted (not timed) -------------------------------------------------------

# What refusing any of these may cost, from the caps a reader applies (formats/limits.py):
# a chunk's data, the unknown optional chunks' data, and a body's worth of small chunks
# up to the packet cap, decompressed; and parses up to the packet cap (each packet record
# and its LibBuf), plus the elements of a capped array.
WORK_BYTES = 2 * limits.MAX_CHUNK_LENGTH + limits.MAX_SKIPPED_BYTES + (64 << 20)
WORK_PARSES = 4 * limits.MAX_PACKETS_PER_CHANNEL + limits.MAX_GPADLS_PER_CHANNEL


@dataclass
class Work:
    decompressed: int = 0
    parses: int = 0


def counted_refusal(data: bytes, monkeypatch) -> tuple[Work, Exception | None]:
    """restore_file of `data` in this process, counting the bytes the decompressor hands
    out and the structures parsed; the error it refused with."""
    from vmbtool.blob import envelope
    from vmbtool.errors import VmbtoolError
    from vmbtool.snapshot import restore_file

    work = Work()
    real_stream, real_parse_at = envelope.body_stream, codec.parse_at

    class Counting:
        def __init__(self, inner) -> None:
            self.inner = inner

        def read(self, n: int = -1) -> bytes:
            block = self.inner.read(n)
            work.decompressed += len(block)
            return block

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    def parse_at(*args, **kwargs):
        work.parses += 1
        return real_parse_at(*args, **kwargs)

    monkeypatch.setattr(envelope, "body_stream", lambda *a, **k: Counting(real_stream(*a, **k)))
    monkeypatch.setattr(codec, "parse_at", parse_at)
    try:
        restore_file(data)
    except VmbtoolError as exc:
        return work, exc
    return work, None


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_blob_is_refused_after_bounded_work(case, monkeypatch):
    """Each case is refused having decompressed and parsed no more than the caps allow,
    whatever it claims: the work is counted, so a slow machine cannot fail it and a fast
    one cannot hide an unbounded loop."""
    work, error = counted_refusal(CASES[case](), monkeypatch)
    print(f"\n{case}: {work.decompressed:,} bytes decompressed, {work.parses:,} parses")
    assert error is not None, "accepted"
    assert work.decompressed <= WORK_BYTES
    assert work.parses <= WORK_PARSES
