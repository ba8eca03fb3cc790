"""`vmbtool upgrade` streams: one read of the source, channel by channel, the output
written through `BlobWriter` to a spooled file and handed on only once the read has
checked everything. Its bytes are the ones the whole-blob upgrade wrote (the oracle
here: `load_blob`, then the chunks framed, compressed in one call, sealed and signed)."""

from __future__ import annotations

import hashlib
import hmac
import io
import random
from collections import Counter
from pathlib import Path

import pytest
import zstandard
from conftest import FIXTURE_DIR, FIXTURE_KEY, cli, peak

from vmbtool import upgrade as upgrade_module
from vmbtool.blob import encode_blob, load_blob, seal_body
from vmbtool.blob import writer as writer_module
from vmbtool.blob.writer import BlobWriter, encode_header
from vmbtool.chunks import crc32c, frame, frame_bytes
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.formats.chunk import FLAG_REQUIRED, ChunkType, known_to
from vmbtool.formats.frames import SealFrame, SignatureFrame
from vmbtool.snapshot import save_blob
from vmbtool.tools import run_scenario
from vmbtool.upgrade import describe_loss, upgrade_blob

FIXTURES = sorted(FIXTURE_DIR.glob("*/*.vmb"))
TARGETS = [(1, 0), (1, 1)]


def key_of(path: Path) -> bytes | None:
    return FIXTURE_KEY if "signed" in path.name else None


def oracle_seal(header: bytes, chunks: list[bytes], level: int | None, key: bytes | None,
                minor: int) -> bytes:
    """The blob as the whole-blob writer made it: one join, one `compress` call."""
    digest = hashlib.sha256(header + b"".join(chunks)).digest()
    types = Counter(int.from_bytes(c[:2], "little") for c in chunks)
    body = b"".join(chunks) + frame(ChunkType.END, {
        "channel_count": types[ChunkType.CHANNEL], "chunk_count": len(chunks),
        "packet_count": types[ChunkType.PACKET], "digest": digest})
    if level is not None:
        threads = 1 if len(body) > writer_module.THREADED_MIN else 0  # the same bytes
        body = zstandard.ZstdCompressor(level=level, threads=threads).compress(body)
        if minor >= 1:
            body += SealFrame.build({"crc32c": crc32c(body)})
    out = header + body
    if key:
        out += SignatureFrame.build({"hmac": hmac.new(key, out, hashlib.sha256).digest()})
    return out


def oracle_upgrade(path: Path, to: tuple[int, int], allow_loss: bool) -> bytes | str:
    """What the whole-blob upgrade wrote, or the start of its refusal."""
    key = key_of(path)
    blob = load_blob(str(path), key)
    known = known_to(to)
    body = [raw for raw in blob.chunks if raw.type != ChunkType.END]
    lost = Counter(raw.type for raw in body if raw.type not in known)
    if lost and not allow_loss:
        return f"it would drop {', '.join(describe_loss(lost))}"
    level = None if str(blob.header.compression) == "none" else blob.header.level
    header = encode_header(blob.header.channel_count, level=level, signed=blob.signed,
                           created_ns=blob.header.created_ns, minor=to[1])
    return oracle_seal(header, [raw.framed for raw in body if raw.type in known], level,
                       key if blob.signed else None, to[1])


@pytest.mark.parametrize("allow_loss", [False, True])
@pytest.mark.parametrize("to", TARGETS, ids=lambda t: f"{t[0]}.{t[1]}")
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_upgrade_writes_the_bytes_the_whole_upgrade_wrote(path, to, allow_loss):
    expect = oracle_upgrade(path, to, allow_loss)
    if isinstance(expect, str):
        with pytest.raises(VmbtoolError) as refused:
            upgrade_blob(str(path), key_of(path), to, allow_loss)
        assert refused.value.why.startswith(expect)
        return
    result = upgrade_blob(str(path), key_of(path), to, allow_loss)
    assert result.size == len(expect)
    assert result.take() == expect


def random_chunks(rng: random.Random, big: bool = False) -> list[bytes]:
    chunks = []
    for _ in range(rng.randint(0, 40)):
        size = rng.choice([0, 1, 17, 300, 4096, 70000] + ([300000] * big))
        data = bytes(rng.choice(b"abcd\x00") for _ in range(size // 8)) * 8 + \
            rng.randbytes(size % 8)
        kind = rng.choice([ChunkType.CHANNEL, ChunkType.PACKET, ChunkType.RING, 0x0100])
        chunks.append(frame_bytes(kind, data, FLAG_REQUIRED if kind != 0x0100 else 0))
    return chunks


@pytest.mark.parametrize("seed", range(12))
def test_the_streaming_writer_writes_encode_blobs_bytes(seed):
    rng = random.Random(seed)
    chunks = random_chunks(rng)
    for level in (None, 1, 3):
        for key in (None, FIXTURE_KEY):
            for minor in (0, 1):
                header = encode_header(3, level=level, signed=bool(key), created_ns=seed,
                                       minor=minor)
                expect = oracle_seal(header, chunks, level, key, minor)
                assert encode_blob(chunks, 3, level=level, key=key, created_ns=seed,
                                   minor=minor) == expect
                out = io.BytesIO()
                writer = BlobWriter(out, header, level, key)
                for chunk in chunks:
                    writer.add(chunk)
                assert writer.finish() == len(expect)
                assert out.getvalue() == expect


@pytest.mark.parametrize("level", [23, 127])
def test_a_level_zstd_has_not_is_refused_before_anything_is_written(level):
    """The header's level is an i8; zstd compresses at levels up to 22. A writer asked
    for more (an edited document's, a blob header's that upgrade carries over) says so
    at header.level, as one error, before it writes a byte (the fuzzer found
    zstandard's own ValueError coming through `encode`)."""
    out = io.BytesIO()
    header = encode_header(1, level=3, signed=False, created_ns=0)
    with pytest.raises(BlobError) as refused:
        BlobWriter(out, header, level)
    assert (refused.value.where, refused.value.why) == (
        "header.level", f"{level} is not a zstd level: zstd compresses at levels up to 22")
    assert out.getvalue() == b""
    with pytest.raises(BlobError):
        seal_body(header, [], level, None)
    assert seal_body(header, [], 22, None)  # zstd's highest, and its fast negative ones
    assert seal_body(header, [], -5, None)


@pytest.mark.parametrize("threaded_min", [1 << 20, 64 << 20])
def test_a_large_body_is_compressed_on_every_core_to_one_threads_bytes(threaded_min,
                                                                       monkeypatch):
    """Past THREADED_MIN the body is compressed by zstd's multi-threaded mode: the bytes
    `threads=1` makes, whatever the machine's cores (which differ from the single-threaded
    mode's past its first job); below it, the single-threaded mode's. Either reads back."""
    monkeypatch.setattr(writer_module, "THREADED_MIN", threaded_min)
    rng = random.Random(7)
    chunks = [frame_bytes(ChunkType.PACKET, bytes(rng.choice(b"abcd") for _ in range(4096))
                          * 8 + rng.randbytes(64), FLAG_REQUIRED) for _ in range(400)]
    header = encode_header(1, level=3, signed=False, created_ns=0)
    blob = seal_body(header, chunks, 3, None)
    body = b"".join(chunks)
    end = frame(ChunkType.END, {"channel_count": 0, "chunk_count": len(chunks),
                                "packet_count": len(chunks),
                                "digest": hashlib.sha256(header + body).digest()})
    threads = 1 if threaded_min < len(body) else 0
    compressed = zstandard.ZstdCompressor(level=3, threads=threads).compress(body + end)
    assert blob == header + compressed + SealFrame.build({"crc32c": crc32c(compressed)})
    single = zstandard.ZstdCompressor(level=3).compress(body + end)
    assert (compressed != single) == (threads == 1)  # 13 MB: past the first job's 8 MiB
    assert zstandard.ZstdDecompressor().decompress(compressed) == body + end


@pytest.mark.parametrize("seed", range(3))
def test_a_body_spooled_to_disk_compresses_to_the_same_bytes(seed, monkeypatch):
    """Past the spool's memory the body is compressed from a map of its file; bodies
    past 256 KB are where a streaming compressor would have split blocks differently."""
    monkeypatch.setattr(writer_module, "SPOOL_MAX", 1 << 16)
    rng = random.Random(seed)
    chunks = random_chunks(rng, big=True) + [frame_bytes(0x0100, rng.randbytes(1 << 18), 0)]
    header = encode_header(1, level=3, signed=True, created_ns=0)
    assert seal_body(header, chunks, 3, FIXTURE_KEY) == \
        oracle_seal(header, chunks, 3, FIXTURE_KEY, 1)


def damaged(path: Path) -> bytes:
    """The blob with its END digest wrong (CRCs and counts right): found at the end."""
    blob = load_blob(str(path))
    chunks = [raw.framed for raw in blob.chunks if raw.type != ChunkType.END]
    end = frame(ChunkType.END, {**{k: getattr(blob.end, k) for k in (
        "channel_count", "chunk_count", "packet_count")}, "digest": bytes(32)})
    level = None if str(blob.header.compression) == "none" else blob.header.level
    body = b"".join(chunks) + end
    if level is not None:
        body = zstandard.ZstdCompressor(level=level).compress(body)
        if blob.header.format_minor >= 1:
            body += SealFrame.build({"crc32c": crc32c(body)})
    return blob.header_bytes + body


@pytest.mark.parametrize("name", ["v1/network.vmb", "v1.1/storage.vmb", "v1.1/pipe-plain.vmb"])
def test_upgrade_of_a_damaged_blob_refuses_and_writes_nothing(name, tmp_path):
    source = tmp_path / "bad.vmb"
    source.write_bytes(damaged(FIXTURE_DIR / name))
    with pytest.raises(BlobError) as whole:
        load_blob(str(source))
    with pytest.raises(BlobError) as streamed:
        upgrade_blob(str(source), to=(1, 0), allow_loss=True)
    assert "digest" in whole.value.why and str(streamed.value) == str(whole.value)
    out = tmp_path / "out" / "new.vmb"
    out.parent.mkdir()
    result = cli("upgrade", source, "-o", out, "--to", "1.0", "--allow-loss")
    assert result.exit_code == 1 and "digest of the blob does not match" in result.stderr
    assert list(out.parent.iterdir()) == []


def test_a_required_chunk_is_refused_where_it_is_met(monkeypatch):
    """No format this vmbtool writes lacks a required type of another: as if 1.0 did not
    know packets."""
    real = known_to
    monkeypatch.setattr(upgrade_module, "known_to", lambda to: {
        t: k for t, k in real(to).items() if t != ChunkType.PACKET})
    with pytest.raises(VmbtoolError) as refused:
        upgrade_blob(str(FIXTURE_DIR / "v1" / "pipe.vmb"), to=(1, 0), allow_loss=True)
    assert refused.value.why == "it has no place for 1 packet chunk that a restore needs"


def channels_blob(count: int, level: int | None) -> bytes:
    """A blob of one generated storage channel `count` times."""
    sim = run_scenario("storage", 3, 150, None)
    blob = load_blob(save_blob(sim, level=None, created_ns=0))
    one = [raw.framed for raw in blob.channel_chunks[0]]
    return encode_blob(one * count, count, level=level, created_ns=0)


@pytest.mark.parametrize("level", [None, 3])
def test_upgrade_holds_one_channel_not_the_blob(level, tmp_path, monkeypatch):
    """A compressed body is compressed in one call at its end (`BlobWriter`): zstd's
    output buffer is bounded by the decoded body's size (of it, only the compressed
    bytes are ever touched); besides it, one channel."""
    monkeypatch.setattr(upgrade_module, "SPOOL_MAX", 1)  # the output goes to disk at once
    monkeypatch.setattr(writer_module, "SPOOL_MAX", 1)  # and so does the body
    one, many = tmp_path / "one.vmb", tmp_path / "many.vmb"
    one.write_bytes(channels_blob(1, level))
    many.write_bytes(channels_blob(24, level))
    streamed_one = peak(lambda: upgrade_blob(str(one), to=(1, 0)).data.close())
    streamed_many = peak(lambda: upgrade_blob(str(many), to=(1, 0)).data.close())
    whole_many = peak(lambda: oracle_upgrade(many, (1, 0), False))
    print(f"level {level} peaks: streamed 1 channel {streamed_one}, 24 channels "
          f"{streamed_many}; whole 24 channels {whole_many}")
    decoded = 0 if level is None else \
        sum(len(raw.framed) for raw in load_blob(str(many)).chunks)
    assert streamed_many < 1.5 * streamed_one + 1.1 * decoded
    assert whole_many > (8 if level is None else 4) * streamed_many
