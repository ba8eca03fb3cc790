"""Blob files: header, zstd-compressed chunk stream, optional HMAC signature frame.

    BLOB ::= FILE_HEADER BODY [SIGNATURE_FRAME]
    BODY ::= one zstd frame of CHUNK... END_CHUNK, [SEAL_FRAME]  (or the raw chunks)
    SEAL_FRAME ::= u32 0x184D2A5B, u32 8, "SEAL", u32 crc32c    (format 1.1+, zstd only)
    SIGNATURE_FRAME ::= u32 0x184D2A5A, u32 36, "HMS1", u8 hmac_sha256[32]

Seal and signature are zstd skippable frames, so `zstd -d` still reads the body.  The
seal covers the compressed bytes, the chunk CRCs and END digest what they decode to.
Reading streams with bounded memory: declared lengths are capped before allocating.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import itertools
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import google_crc32c
import zstandard
from construct import Container, Struct

from vmbtool import __version__, codec, inputs, lean, sniff
from vmbtool.chunks import (
    CHUNK_HEADER_SIZE,
    REGISTRY,
    ChunkType,
    RawChunk,
    check_chunk_crc,
    check_chunk_header,
    crc32c,
    decode_chunk,
    frame,
    known_to,
)
from vmbtool.errors import BlobError
from vmbtool.formats.chunk import ChunkHeader
from vmbtool.formats.gpadl import Gpadl
from vmbtool.formats.header import MAGIC, FileHeader, HeaderPrefix
from vmbtool.formats.ring import RingState
from vmbtool.frame import (
    SEAL,
    SEAL_MAGIC,
    SEAL_TAG,
    SealScan,
    blocks,
    check_seal,
    read_at,
    read_seal,
    skip_frames,
    zstd_frame_end,
)
from vmbtool.generated.chunk import CHUNK_HEADER_LAYOUT
from vmbtool.invariants import ChannelCheck
from vmbtool.keys import SIGNED_NEEDS_KEY, UNSIGNED_REFUSED, accepts_unsigned
from vmbtool.kmcl.limits import MAX_GPADLS_PER_CHANNEL, MAX_GUESTS, MAX_PACKETS_PER_CHANNEL
from vmbtool.kmcl.staging import ORDER, RestoreStaging, stage_chunk
from vmbtool.state import SavedChannel
from vmbtool.status import NtStatus

FORMAT_MAJOR = 1
FORMAT_MINOR = 1
READS = (1, 1)  # the newest format this reader knows
SEALED_SINCE_MINOR = 1
FLAG_SIGNED = 0x1
KNOWN_HEADER_FLAGS = FLAG_SIGNED
HEADER_PREFIX_SIZE = HeaderPrefix.sizeof()
HEADER_SIZE = FileHeader.sizeof() + 4  # + header_crc32c
MAX_HEADER_SIZE = 4096
SIGNATURE = struct.Struct("<II4s32s")
SIGNATURE_MAGIC = 0x184D2A5A
SIGNATURE_TAG = b"HMS1"
MAX_SKIPPED_CHUNKS = 65536  # unknown optional chunks a reader skips in one blob
MAX_SKIPPED_BYTES = 32 << 20  # and their data, in bytes
# a RING chunk's fields before its data area: what a lean read parses of a streamed ring
RingControl = Struct(*RingState.subcons[:-1])
RING_CONTROL_SIZE = RingControl.sizeof()
LOAD_BUDGET = 24 << 20  # estimated bytes of parsed state a one-pass load may hold
PACKET_HOLD_COST = 3000  # what a parsed packet holds beyond its bytes, about
ARRAY_HOLD_FACTOR = 40  # and an array of small elements, per byte
DECODED_HOLD_FACTOR = 8  # a body's parsed state over its decoded size, about (packets)
MAX_WINDOW_SIZE = 1 << 23  # 8 MiB: refuse frames that would need more decoder memory
DEFAULT_LEVEL = 3


@dataclass
class Blob:
    """A blob read whole: its header and every chunk in order, parsed."""

    header: Any
    header_bytes: bytes
    chunks: list[RawChunk]
    channels: list[SavedChannel] = field(default_factory=list)
    channel_chunks: list[list[RawChunk]] = field(default_factory=list)
    scenario: Any = None
    end: Any = None
    signed: bool = False
    size: int = 0
    note: str | None = None
    stats: dict[int, Any] = field(default_factory=dict)
    extra: list[tuple[int, RawChunk]] = field(default_factory=list)

    @property
    def version(self) -> str:
        return f"{self.header.format_major}.{self.header.format_minor}"


# -- writing ----------------------------------------------------------------------


def encode_blob(body_chunks: list[bytes], channel_count: int, *, level: int | None,
                key: bytes | None = None, created_ns: int | None = None,
                writer_version: str = __version__, minor: int = FORMAT_MINOR) -> bytes:
    """Header + (compressed) chunks + END chunk + optional signature frame."""
    header = codec.build(FileHeader, {
        "format_major": FORMAT_MAJOR, "format_minor": minor,
        "header_size": HEADER_SIZE, "flags": FLAG_SIGNED if key else 0,
        "compression": "none" if level is None else "zstd",
        "level": 0 if level is None else level, "reserved": 0,
        "writer_version": writer_version,
        "created_ns": time.time_ns() if created_ns is None else created_ns,
        "channel_count": channel_count}, "header")
    header += struct.pack("<I", crc32c(header))
    return seal_body(header, body_chunks, level, key)


def seal_body(header: bytes, body_chunks: list[bytes], level: int | None,
              key: bytes | None, end_counts: dict | None = None) -> bytes:
    """Body chunks + END (counts, digest), compressed; signed when a key is given.

    `end_counts` overrides the counted values (encode writes what the JSON says)."""
    digest = hashlib.sha256(header)
    packets = 0
    for chunk in body_chunks:
        digest.update(chunk)
        packets += int.from_bytes(chunk[:2], "little") == ChunkType.PACKET
    channel_count = sum(int.from_bytes(c[:2], "little") == ChunkType.CHANNEL
                        for c in body_chunks)
    counts = {"channel_count": channel_count, "chunk_count": len(body_chunks),
              "packet_count": packets, **(end_counts or {})}
    end = frame(ChunkType.END, {**counts, "digest": digest.digest()})
    body = b"".join(body_chunks) + end
    if level is not None:
        body = zstandard.ZstdCompressor(level=level).compress(body)
        if int.from_bytes(header[10:12], "little") >= SEALED_SINCE_MINOR:
            body += SEAL.pack(SEAL_MAGIC, SEAL.size - 8, SEAL_TAG, crc32c(body))
    out = header + body
    if key:
        out += SIGNATURE.pack(SIGNATURE_MAGIC, 36, SIGNATURE_TAG, sign(key, out))
    return out


def sign(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def write_atomic(path: str, data: bytes) -> None:
    """Temporary file beside the target, fsync, rename: never a partial blob (what
    vmbtool.output does for every kind of path; kept here for library callers)."""
    from vmbtool.output import write_output

    write_output(path, data)


# -- reading ----------------------------------------------------------------------


def open_source(source: str | bytes | IO[bytes]) -> tuple[IO[bytes], int]:
    """A seekable stream and its size. A path or `-` that is no regular file (stdin, a
    pipe, a FIFO, a /proc file) is spooled once its header is checked (`inputs`)."""
    if hasattr(source, "read"):
        size = source.seek(0, os.SEEK_END)
        source.seek(0)
        return source, size
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source), len(source)
    return inputs.open_blob(source, read_stream_header)


@contextlib.contextmanager
def rereadable(source: str | bytes | IO[bytes]) -> Iterator[str | bytes | IO[bytes]]:
    """A source that can be read more than once: a stream (stdin, a pipe) is spooled
    first."""
    if not isinstance(source, str) or not inputs.names_a_stream(source):
        yield source
        return
    f, _size = open_source(source)
    try:
        yield f
    finally:
        f.close()


def read_stream_header(stream: IO[bytes]) -> bytes:
    """The header of a blob arriving on a stream, checked as `read_header` checks a
    file's (the same errors) before anything after it is read: endless zeros or a text
    are refused at once. Returns the bytes read."""
    head = read_exact(stream, HEADER_PREFIX_SIZE)
    if len(head) == HEADER_PREFIX_SIZE and head.startswith(MAGIC):
        declared = codec.parse(HeaderPrefix, head, "header", 0, exact=False).header_size
        head += read_exact(stream, max(0, min(declared, MAX_HEADER_SIZE) - len(head)))
    read_header(io.BytesIO(head), len(head))
    return head


def read_header(f: IO[bytes], size: int, reads: tuple[int, int] = READS) -> tuple[Any, bytes]:
    prefix_bytes = f.read(HEADER_PREFIX_SIZE)
    if not prefix_bytes and not size:
        raise BlobError("header (offset 0)", "empty file")
    if len(prefix_bytes) < min(size, HEADER_PREFIX_SIZE):  # `size` when it was opened
        raise BlobError(f"header (offset {len(prefix_bytes)})", inputs.CHANGED)
    if not prefix_bytes.startswith(MAGIC):  # the wrong file, most likely: say what it is
        head = prefix_bytes + f.read(sniff.SNIFF_SIZE - len(prefix_bytes))
        raise BlobError("header.magic (offset 0)", sniff.describe(head))
    if len(prefix_bytes) < HEADER_PREFIX_SIZE:
        raise BlobError("header (offset 0)", f"truncated: file is {len(prefix_bytes)} bytes")
    prefix = codec.parse(HeaderPrefix, prefix_bytes, "header", 0, exact=False)
    if prefix.format_major != FORMAT_MAJOR:
        raise BlobError("header.format_major (offset 8)",
                        f"blob is format {prefix.format_major}.{prefix.format_minor}, this "
                        f"vmbtool reads {FORMAT_MAJOR}.x (at {reads[0]}.{reads[1]})",
                        NtStatus.REVISION_MISMATCH)
    if not HEADER_SIZE <= prefix.header_size <= MAX_HEADER_SIZE or \
            (prefix.format_minor <= reads[1] and prefix.header_size != HEADER_SIZE):
        raise BlobError("header.header_size (offset 12)",
                        f"{prefix.header_size} is not a valid header size")
    if prefix.header_size > size:
        raise BlobError("header (offset 0)", f"truncated: file is {size} bytes")
    header_bytes = prefix_bytes + f.read(prefix.header_size - HEADER_PREFIX_SIZE)
    if len(header_bytes) < prefix.header_size:  # it was `size` bytes long when opened
        raise BlobError(f"header (offset {len(header_bytes)})", inputs.CHANGED)
    (stored_crc,) = struct.unpack_from("<I", header_bytes, len(header_bytes) - 4)
    if crc32c(header_bytes[:-4]) != stored_crc:
        raise BlobError(f"header.header_crc32c (offset {len(header_bytes) - 4})",
                        "checksum mismatch", NtStatus.CRC_ERROR)
    header = codec.parse(FileHeader, header_bytes[:FileHeader.sizeof()], "header", 0)
    if header.flags & ~KNOWN_HEADER_FLAGS:
        raise BlobError("header.flags (offset 16)", f"unknown flag bits {header.flags:#x}")
    return header, header_bytes


class LimitedReader(io.RawIOBase):
    """Reads [start, end) of a stream and nothing past it."""

    def __init__(self, f: IO[bytes], start: int, end: int) -> None:
        self.f, self.pos, self.end = f, start, end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.end - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.pos)
        data = self.f.read(n)
        if not data:  # `end` is within the size the file had when it was opened
            raise BlobError(f"file (offset {self.pos})", inputs.CHANGED)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to `n` bytes, fewer only at the end of the stream (one buffer when it can)."""
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts, left = [data], n - len(data)
    while left:
        block = stream.read(min(left, 1 << 20))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def verify_signature(f: IO[bytes], size: int, header: Any, key: bytes | None) -> int:
    """Check the HMAC frame; returns where the body ends."""
    signed = bool(header.flags & FLAG_SIGNED)
    if not signed:
        if not accepts_unsigned(key):
            raise BlobError("header.flags (offset 16)", UNSIGNED_REFUSED,
                            NtStatus.UNSUCCESSFUL)
        return size
    if key is None:
        raise BlobError("signature", SIGNED_NEEDS_KEY, NtStatus.UNSUCCESSFUL)
    if size < header.header_size + SIGNATURE.size:
        raise BlobError("signature", "truncated: no signature frame")
    magic, frame_size, tag, mac = SIGNATURE.unpack(
        read_at(f, size - SIGNATURE.size, SIGNATURE.size, "signature"))
    if magic != SIGNATURE_MAGIC or frame_size != 36 or tag != SIGNATURE_TAG:
        raise BlobError(f"signature (offset {size - SIGNATURE.size})", "no signature frame")
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for block in blocks(f, 0, size - SIGNATURE.size):
        digest.update(block)
    if not hmac.compare_digest(digest.digest(), mac):
        raise BlobError(f"signature (offset {size - SIGNATURE.size})",
                        "HMAC does not match: wrong key or the blob was changed",
                        NtStatus.UNSUCCESSFUL)
    return size - SIGNATURE.size


def body_stream(f: IO[bytes], header: Any, start: int, end: int,
                read_size: int = 1 << 16, owns_f: bool = False) -> IO[bytes]:
    """The decompressed body. A reader that `owns_f` (nothing else moves its position
    meanwhile) reads a zstd body straight from it: the decompressor reads the frame's
    input in `read_size` pieces and decodes nothing past the frame's end."""
    if owns_f and str(header.compression) != "none":
        f.seek(start)
        raw = f
    else:
        raw = io.BufferedReader(LimitedReader(f, start, end), read_size)
        if str(header.compression) == "none":
            return raw
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    return decompressor.stream_reader(raw, read_across_frames=False, read_size=read_size)


PIPE_MIN = 1 << 20  # a stored body this large is decompressed and digested on threads
PIPE_BLOCK = 1 << 20  # in blocks of this size
PIPE_DEPTH = 2  # blocks decompressed ahead (the checks of a ring are quick, of packets slow)
DIGEST_DEPTH = 1  # blocks read and waiting for the digest
SWITCH_INTERVAL = 0.0005  # seconds: the GIL switch interval while the threads run
PIPE_END, PIPE_FAILED = object(), object()


class BodyPipe:
    """A body stream decompressed ahead on a thread of its own (zstd releases the GIL)
    and digested on another (so does hashlib) while this one checks the chunks:
    `read(n)` as on the stream itself, and `digest_before(offset)`.

    Only bytes a direct read could not have failed on are handed over: a block once the
    next one has decompressed too (a read that ends where a zstd block ends decodes the
    next block already). If the thread fails, reads from the first byte it did not hand
    over are made here, on a fresh stream replayed to the same offset, so an error is
    raised by the same read, at the same offset, as without the thread.

    Every block is digested once it has been read, but the last two: the END digest
    covers the header and the body before the END chunk, which starts in one of them."""

    def __init__(self, open_stream: Callable[..., IO[bytes]], header_bytes: bytes,
                 on_end: Callable[[], None] | None = None) -> None:
        self.open_stream = open_stream  # (read_size, owns_f) -> a fresh body stream
        self.on_end = on_end  # run on the thread once the stream has ended (must not raise)
        self.queue: queue.Queue = queue.Queue(PIPE_DEPTH)
        self.stop = threading.Event()
        self.block, self.pos, self.start = b"", 0, 0  # self.block[0] is body byte `start`
        self.previous = b""  # the block before self.block
        self.ended = False
        self.direct: IO[bytes] | None = None
        self.digest = BackgroundDigest(header_bytes)
        self.thread = threading.Thread(target=self.decode, name="vmbtool-body", daemon=True)
        self.thread.start()
        self.switching = PromptSwitching()

    def decode(self) -> None:
        held = None  # the last block read, handed over once the next one was read too
        try:
            stream = self.open_stream(PIPE_BLOCK, True)  # this thread alone reads the file
            while block := stream.read(PIPE_BLOCK):
                if self.stop.is_set():
                    return
                if held is not None:
                    self.queue.put(held)
                held = block
        except BaseException:  # noqa: BLE001 - the read made here raises it again
            self.queue.put(PIPE_FAILED)
            return
        if self.on_end is not None:
            self.on_end()
        if held is not None:
            self.queue.put(held)
        self.queue.put(PIPE_END)

    def read(self, n: int) -> bytes:
        if self.direct is not None:
            data = self.direct.read(n)
            if data:
                self.advance(data, len(data))
            return data
        pos = self.pos
        if pos + n <= len(self.block):
            self.pos = pos + n
            return self.block[pos:pos + n]
        parts, have, taken = [self.block[pos:]], len(self.block) - pos, []
        while have < n and not self.ended:
            block = self.queue.get()
            if block is PIPE_FAILED:
                return self.read_directly(n)
            if block is PIPE_END:
                self.ended = True
                break
            taken.append(block)
            parts.append(block[:n - have])
            have += len(parts[-1])
        for block in taken:
            self.advance(block, len(block))
        self.pos = len(parts[-1]) if taken else len(self.block)
        return b"".join(parts)

    def advance(self, block: bytes, pos: int) -> None:
        """On to the next block, read up to `pos`; the one before the last is digested."""
        self.digest.update(self.previous)
        self.start += len(self.block)
        self.previous, self.block, self.pos = self.block, block, pos

    def read_directly(self, n: int) -> bytes:
        """From here on the body is read in this thread, replayed to where this read
        starts first."""
        self.stop_decoding()
        at = self.start + self.pos
        self.block = self.block[:self.pos]  # what is read of it (and digested, in time)
        stream = self.open_stream()
        while at:  # the thread decoded all of this: these reads do not fail
            skipped = stream.read(min(at, 1 << 20))
            if not skipped:
                break
            at -= len(skipped)
        self.direct = stream
        return self.read(n)

    def digest_before(self, offset: int) -> bytes:
        """SHA-256 of the header and the body before `offset`: the END digest, `offset`
        where the END chunk starts (in the block read last or the one before: the chunk
        is 56 bytes, a block PIPE_BLOCK but the last)."""
        digest = self.digest.copy()
        start = self.start - len(self.previous)
        digest.update(self.previous[:max(0, offset - start)])
        digest.update(self.block[:max(0, offset - self.start)])
        return digest.digest()

    def stop_decoding(self) -> None:
        """Stop the thread (it may wait to hand over a block: make room) and join it."""
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self.queue.get_nowait()
            self.thread.join(0.01)

    def close(self) -> None:
        self.stop_decoding()
        self.digest.close()
        self.switching.release()


class BackgroundDigest:
    """SHA-256 on a thread of its own (hashlib releases the GIL on large buffers)."""

    def __init__(self, data: bytes) -> None:
        self.hash = hashlib.sha256(data)
        self.queue: queue.Queue = queue.Queue(DIGEST_DEPTH)
        self.thread = threading.Thread(target=self.run, name="vmbtool-digest", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while (data := self.queue.get()) is not None:
            self.hash.update(data)
            self.queue.task_done()

    def update(self, data: bytes) -> None:
        if data:
            self.queue.put(data)

    def copy(self) -> Any:
        """The digest so far, once the thread has caught up: a hash object to go on with."""
        self.queue.join()
        return self.hash.copy()

    def close(self) -> None:
        """Drop what is not yet digested and join the thread."""
        if not self.thread.is_alive():
            return
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
                self.queue.task_done()
        self.queue.put(None)
        self.thread.join()


class PromptSwitching:
    """A short GIL switch interval while a pipe runs: a thread back from zstd or hashlib
    waits for the GIL while the main thread runs Python, up to the interval (5 ms by
    default, longer than a block takes to decode). The first pipe sets it, the last one
    to release it puts the old one back."""

    lock = threading.Lock()
    live = 0
    saved = 0.0

    def __init__(self) -> None:
        with self.lock:
            if PromptSwitching.live == 0:
                PromptSwitching.saved = sys.getswitchinterval()
                sys.setswitchinterval(min(PromptSwitching.saved, SWITCH_INTERVAL))
            PromptSwitching.live += 1
        self.held = True

    def release(self) -> None:
        """Once; later calls do nothing."""
        with self.lock:
            if not self.held:
                return
            self.held = False
            PromptSwitching.live -= 1
            if PromptSwitching.live == 0:
                sys.setswitchinterval(PromptSwitching.saved)


STREAMED_MIN = 1 << 20  # a ring chunk this large is streamed through a lean read
STREAM_BLOCK = 256 << 10  # in blocks of this size
CHUNK_HEADER = CHUNK_HEADER_LAYOUT  # the grammar's layout, as a struct (generated)


def parse_chunk_header(head: bytes, offset: int) -> Any:
    """A chunk header, unpacked directly: it is read for every chunk. Through the
    grammar when its reserved byte is not 0 (the grammar's Const says why)."""
    kind, flags, reserved, length, crc = CHUNK_HEADER.unpack(head)
    if reserved:
        return codec.parse(ChunkHeader, head, "chunk_header", offset)
    return {"type": kind, "flags": flags, "reserved": 0, "length": length, "crc32c": crc}


def iter_chunks(stream: IO[bytes], admit: Callable[[Any, int], None] | None = None,
                stream_if: Callable[[Any], bool] | None = None,
                on_block: Callable[[bytes], None] | None = None) -> Iterator[RawChunk]:
    """Framed chunks from a (decompressed) body stream, each checked as it comes.

    `admit(chunk_header, offset)` may refuse a chunk before its data is read. A chunk
    `stream_if(chunk_header)` picks comes with its data as `blocks` (each also handed to
    `on_block`), its CRC checked after the last; whatever the caller left unread of them
    is read before the next chunk."""
    offset = 0
    while True:
        try:
            head = read_exact(stream, CHUNK_HEADER_SIZE)
        except zstandard.ZstdError as exc:
            raise BlobError(f"body (decompressed offset {offset})",
                            f"zstd: {exc}") from None
        if not head:
            return
        if len(head) < CHUNK_HEADER_SIZE:
            raise BlobError(f"chunk@{offset}", "truncated chunk header")
        header = parse_chunk_header(head, offset)
        check_chunk_header(header, offset)
        if admit is not None:
            admit(header, offset)
        if stream_if is not None and stream_if(header):
            blocks = chunk_blocks(stream, header, offset, on_block)
            yield RawChunk(header["type"], header["flags"], b"", offset, head, blocks)
            for _ in blocks:
                pass
        else:
            try:
                data = read_exact(stream, header["length"])
            except zstandard.ZstdError as exc:
                raise BlobError(f"chunk@{offset} (decompressed)", f"zstd: {exc}") from None
            if len(data) < header["length"]:
                raise BlobError(f"chunk@{offset}.length", f"truncated: {header['length']} bytes "
                                f"declared, {len(data)} present")
            check_chunk_crc(header, data, offset)
            yield RawChunk(header["type"], header["flags"], data, offset, head)
        offset += CHUNK_HEADER_SIZE + header["length"]


def chunk_blocks(stream: IO[bytes], header: Any, offset: int,
                 on_block: Callable[[bytes], None] | None) -> Iterator[bytes]:
    """A chunk's data in blocks; its CRC is checked when the last has been read."""
    crc, left = 0, header["length"]
    while left:
        try:
            block = read_exact(stream, min(left, STREAM_BLOCK))
        except zstandard.ZstdError as exc:
            raise BlobError(f"chunk@{offset} (decompressed)", f"zstd: {exc}") from None
        if not block:
            raise BlobError(f"chunk@{offset}.length", f"truncated: {header['length']} bytes "
                            f"declared, {header['length'] - left} present")
        crc = google_crc32c.extend(crc, block)
        if on_block is not None:
            on_block(block)
        left -= len(block)
        yield block
    if crc != header["crc32c"]:
        raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch", NtStatus.CRC_ERROR)


def split_head(blocks: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `n` bytes of a stream of blocks (fewer at its end), and the rest."""
    head = b""
    for block in blocks:
        head += block
        if len(head) >= n:
            break
    rest = head[n:]
    return head[:n], itertools.chain((rest,) if rest else (), blocks)


@dataclass
class BlobTally:
    """What the END chunk is checked against, counted as the chunks stream past."""

    chunks: int = 0
    channels: int = 0
    packets: int = 0
    bytes: int = 0  # decoded chunk bytes, headers included


class BlobReader:
    """One blob read as a stream: header, signature, body extent, then channel by channel.

    `channels()` yields each channel as soon as its CHANNEL_END is read. A `lean` read
    keeps no chunks and no packets: each part of a channel is checked as it arrives
    (`SavedChannel.problems`, `invariants.ChannelCheck`), large rings stream through in
    blocks and only their control fields stay, so any blob is read in bounded memory."""

    def __init__(self, source: str | bytes | IO[bytes], key: bytes | None = None,
                 keep_chunks: bool = True, reads: tuple[int, int] = READS,
                 lean: bool = False,
                 on_packet: Callable[[int, Any], None] | None = None,
                 hold_budget: int | None = None, keep_gpadls: bool = False,
                 checks: bool = True, defer_seal: bool = False) -> None:
        self.f, self.size = open_source(source)
        self.owns_file = not hasattr(source, "read")
        self.keep_chunks, self.reads, self.lean = keep_chunks, reads, lean
        self.on_packet = on_packet  # called with (channel index, PacketRecord) as each comes
        self.hold_budget = hold_budget  # HoldBudgetExceeded past this estimate of held state
        self.held = 0  # estimated bytes of parsed state so far (with a hold budget)
        self.keep_gpadls = keep_gpadls  # a lean read that still keeps each channel's GPADLs
        self.checks = checks  # False: a lean read without the semantic checks (a guard)
        self.known = known_to(reads)
        self.workers: list[Any] = []  # a large body's BodyPipe while it is read
        # a large sealed body's seal CRC and frame walk, made as the body is decompressed
        # (the compressed bytes are read once) and settled before the read's outcome
        self.defer_seal = defer_seal
        self.deferred_seal: int | None = None  # the seal's CRC32C, when deferred
        self.seal_settled = False
        try:
            self.header, self.header_bytes = read_header(self.f, self.size, reads)
            self.body_end = verify_signature(self.f, self.size, self.header, key)
            self.frame_end = self.body_end
            if str(self.header.compression) == "zstd":
                self.frame_end = self.find_frame_end()
        except BaseException:
            self.close()
            raise
        self.signed = bool(self.header.flags & FLAG_SIGNED)
        self.chunks: list[RawChunk] = []
        self.extra: list[tuple[int, RawChunk]] = []  # optional chunks this reader skips
        self.scenario: Any = None
        self.note: str | None = None
        self.stats: dict[int, Any] = {}  # channel index -> ChannelStats
        self.end: Any = None
        self.tally = BlobTally()
        self.skipped_chunks = self.skipped_bytes = 0
        # set by a streamed restore's second pass: each chunk of channel i is handed to
        # feed(i, raw) as it comes, neither parsed nor kept (its first pass checked them)
        self.feed: Callable[[int, RawChunk], None] | None = None

    @property
    def version(self) -> str:
        return f"{self.header.format_major}.{self.header.format_minor}"

    def decoded_size(self) -> int:
        """The body's decoded size as its zstd frame header declares it (0 when it does
        not; the decompressor holds the frame to what it declares)."""
        start = self.header.header_size
        if str(self.header.compression) == "none":
            return self.frame_end - start
        self.f.seek(start)
        try:
            size = zstandard.frame_content_size(self.f.read(18))
        except zstandard.ZstdError:
            return 0
        return max(size, 0)

    def find_frame_end(self) -> int:
        """The body's one zstd frame, its seal, and (from a newer minor) skippable frames."""
        start, end, minor = self.header.header_size, self.body_end, self.header.format_minor
        sealed = minor >= SEALED_SINCE_MINOR and self.reads[1] >= SEALED_SINCE_MINOR
        newer = minor > self.reads[1]
        if sealed and not newer:
            seal_at = end - SEAL.size
            if self.defer_seal and seal_at - start >= PIPE_MIN:
                self.deferred_seal = read_seal(self.f, start, seal_at, end)
                return seal_at
            return self.check_sealed_frame()
        frame_end = zstd_frame_end(self.f, start, end)
        pos = check_seal(self.f, start, frame_end, end) + SEAL.size if sealed else frame_end
        if newer:
            skip_frames(self.f, pos, end)
        elif pos != end:
            raise BlobError(f"body (offset {pos})",
                            f"{end - pos} bytes after the body's zstd frame")
        return frame_end

    def check_sealed_frame(self) -> int:
        """A sealed body of this reader's minor: the seal's CRC32C, then the zstd frame,
        which must end right at the seal."""
        start, end = self.header.header_size, self.body_end
        seal_at = check_seal(self.f, start, end - SEAL.size, end)
        frame_end = zstd_frame_end(self.f, start, seal_at)
        if frame_end != seal_at:
            raise BlobError(f"body (offset {frame_end})",
                            f"{seal_at - frame_end} bytes between the zstd frame and the seal")
        return frame_end

    def settle_seal(self, scan: SealScan | None) -> None:
        """A deferred seal, once the body is read (or its read failed): what `scan` made
        of it, or, if that is not sound or the read failed, the up-front checks, whose
        error then comes first, as it would have before the read."""
        if self.deferred_seal is None or self.seal_settled:
            return
        self.seal_settled = True
        self.stop_workers()  # the body's thread reads the file no more
        if scan is None or not scan.sound:
            self.check_sealed_frame()
            if scan is not None and scan.drained:  # it read every byte, and differently
                raise BlobError("body", "the blob changed while it was read")

    def close(self) -> None:
        self.stop_workers()
        if self.owns_file:
            self.f.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def channels(self) -> Iterator[tuple[SavedChannel, list[RawChunk]]]:
        """Each channel's saved state and its chunks; checks the END chunk last.

        A large body is decompressed and digested on threads of their own while this
        one checks the chunks; they are stopped when the read ends, however it ends."""
        start, end = self.header.header_size, self.frame_end
        scan = None if self.deferred_seal is None else \
            SealScan(self.f, start, end, self.deferred_seal)

        def open_body(read_size: int = 1 << 16, owns_f: bool = False) -> IO[bytes]:
            if owns_f and scan is not None:  # the pipe's thread: through the seal's scan
                return body_stream(scan, self.header, start, end, read_size, owns_f)
            return body_stream(self.f, self.header, start, end, read_size, owns_f)

        if end - start < PIPE_MIN:
            yield from self.read_channels(open_body(), hashlib.sha256(self.header_bytes))
            return
        pipe = BodyPipe(open_body, self.header_bytes, scan.drain if scan else None)
        self.workers = [pipe]
        try:
            yield from self.read_channels(pipe, None)
            self.settle_seal(scan)
        except Exception:
            self.settle_seal(None)
            raise
        finally:
            self.stop_workers()

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []

    def read_channels(self, stream: IO[bytes] | BodyPipe, digest: Any) -> Iterator[
            tuple[SavedChannel, list[RawChunk]]]:
        """The channels of a body `stream`; `digest` takes every chunk before END (None:
        the stream is a BodyPipe, which digests what is read)."""
        staging: RestoreStaging | None = None
        channel_chunks: list[RawChunk] = []
        offset = 0
        tally = self.tally
        stream_if = self.streams if self.lean else None
        on_block = digest.update if digest is not None else None
        for raw in iter_chunks(stream, self.admit, stream_if, on_block):
            offset = raw.offset + CHUNK_HEADER_SIZE + len(raw.data)
            if self.end is not None:
                raise BlobError(f"chunk@{raw.offset}", "chunks after the end chunk")
            if self.keep_chunks:
                self.chunks.append(raw)
            if raw.type == ChunkType.END:
                self.end = decode_chunk(raw, "blob")
                self.check_end(digest.digest() if digest is not None else
                               stream.digest_before(raw.offset), raw.offset)
                continue
            if digest is not None:
                digest.update(raw.head)  # (iter_chunks' chunks come with their header)
                digest.update(raw.data)
            tally.chunks += 1
            tally.bytes += CHUNK_HEADER_SIZE + raw.length
            staging = self.add_chunk(staging, raw, channel_chunks)
            if staging is not None and staging.saved.end is not None:
                saved, chunks = staging.saved, channel_chunks
                staging, channel_chunks = None, []
                self.tally.channels += 1
                self.tally.packets += saved.packet_count
                yield saved, chunks
                del saved, chunks  # a caller that dropped the channel has freed it
        if self.end is None:
            raise BlobError(f"body (decompressed offset {offset})",
                            "truncated: the body ends before the end chunk")
        if staging is not None:
            raise BlobError(f"channels[{self.tally.channels}]", "channel without its end chunk")

    def add_chunk(self, staging: RestoreStaging | None, raw: RawChunk,
                  channel_chunks: list[RawChunk]) -> RestoreStaging | None:
        index = self.tally.channels
        if raw.type == ChunkType.SCENARIO:
            if staging is not None or self.scenario is not None:
                raise BlobError(f"chunk@{raw.offset}", "scenario chunk out of place")
            self.scenario = lean.scenario(raw.data, raw.offset + CHUNK_HEADER_SIZE, MAX_GUESTS,
                                          MAX_PACKETS_PER_CHANNEL) if self.lean \
                else decode_chunk(raw, "scenario")
            return None
        if raw.type in (ChunkType.STATS, ChunkType.NOTE) and raw.type in self.known:
            if staging is not None:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{REGISTRY[raw.type].name} chunk inside a channel")
            self.add_annex(raw)
            return None
        if raw.type not in self.known and not raw.required and staging is None:
            # an optional chunk of a newer minor, between channels: skipped
            self.skip(raw)
            return None
        if staging is None:
            if raw.type == ChunkType.CHANNEL and self.scenario is not None:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                "channel state after the scenario chunk")
            if raw.type == ChunkType.CHANNEL and index >= self.header.channel_count:
                raise BlobError("header.channel_count",
                                f"says {self.header.channel_count}, but channels[{index}] "
                                f"follows at chunk@{raw.offset}")
            if raw.type != ChunkType.CHANNEL and raw.type in REGISTRY:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{REGISTRY[raw.type].name} chunk outside a channel")
            staging = RestoreStaging(
                check=ChannelCheck(f"channels[{index}]") if self.checks else None,
                keep_packets=False, keep_gpadls=self.keep_gpadls) \
                if self.lean else RestoreStaging()
        if not self.lean and self.feed is None:
            channel_chunks.append(raw)
        if raw.type not in ORDER and not raw.required:
            self.skip(raw)  # inside a channel: stage_chunk notes it as skipped
        if self.feed is not None:
            return self.feed_chunk(staging, raw, index)
        try:
            where = f"channels[{index}]"
            if raw.blocks is not None:
                control, rest = split_head(raw.blocks, RING_CONTROL_SIZE)
                stage_chunk(staging, raw, where, self.ring_control(raw, control, where), rest)
            elif self.lean and raw.type in (ChunkType.INCOMING, ChunkType.GPADLS):
                stage_chunk(staging, raw, where, lean_value(raw, where))
            else:
                stage_chunk(staging, raw, where)
            if raw.type == ChunkType.PACKET and self.on_packet is not None:
                self.on_packet(index, staging.last_record)
        except BlobError as exc:
            if exc.status == NtStatus.REVISION_MISMATCH:
                raise BlobError(exc.where, f"{exc.why} (blob format {self.version}, this "
                                f"vmbtool reads {self.reads[0]}.{self.reads[1]})",
                                exc.status) from None
            raise
        return staging

    def feed_chunk(self, staging: RestoreStaging, raw: RawChunk, index: int) -> RestoreStaging:
        """Hand one chunk of a channel on; the staging only counts its packets and notes
        its end."""
        self.feed(index, raw)
        if raw.type == ChunkType.PACKET:
            staging.saved.packet_count += 1
        elif raw.type == ChunkType.CHANNEL_END:
            staging.saved.end = decode_chunk(raw, f"channels[{index}]")
        return staging

    def streams(self, header: Any) -> bool:
        """A lean read streams large rings instead of holding their data."""
        return header["type"] == ChunkType.RING and header["length"] >= STREAMED_MIN

    @staticmethod
    def ring_control(raw: RawChunk, control: bytes, where: str) -> Any:
        """A streamed RING chunk's fields before its data; the data's length checked as
        the grammar's `Bytes(data_pages * 4096)` would."""
        at = raw.offset + CHUNK_HEADER_SIZE
        value = codec.parse(RingControl, control, f"{where}.ring", at, exact=False)
        length = raw.length - RING_CONTROL_SIZE
        need = value.data_pages * 4096
        if length > need:
            raise BlobError(f"{where}.ring (offset {at + RING_CONTROL_SIZE + need})",
                            f"{length - need} bytes left over after the structure")
        if length < need:
            raise BlobError(f"{where}.ring.data (offset {at})", f"truncated: {value.data_pages}"
                            f" pages need {need} bytes, the chunk holds {length}")
        value.data = None
        return value

    def admit(self, header: Any, offset: int) -> None:
        if self.hold_budget is not None:
            # what the chunk will hold parsed: arrays of small elements cost ~40 times
            # their bytes as containers, a packet ~3 KB beyond its bytes
            self.held += header["length"] * (ARRAY_HOLD_FACTOR if header["type"] in (
                ChunkType.INCOMING, ChunkType.GPADLS, ChunkType.SCENARIO) else 1)
            self.held += PACKET_HOLD_COST if header["type"] == ChunkType.PACKET else 0
            if self.held > self.hold_budget:
                raise HoldBudgetExceeded(self.held)
        if header["type"] not in self.known and not header["flags"] & 1 and \
                self.skipped_bytes + header["length"] > MAX_SKIPPED_BYTES:
            raise BlobError(f"chunk@{offset}.length", f"more than {MAX_SKIPPED_BYTES} bytes "
                            "of unknown optional chunks", NtStatus.INVALID_BUFFER_SIZE)

    def skip(self, raw: RawChunk) -> None:
        """Unknown optional chunks are skipped, within limits: no endless stream of them."""
        self.skipped_chunks += 1
        self.skipped_bytes += len(raw.data)
        if self.skipped_chunks > MAX_SKIPPED_CHUNKS or self.skipped_bytes > MAX_SKIPPED_BYTES:
            raise BlobError(f"chunk@{raw.offset}",
                            f"more than {MAX_SKIPPED_CHUNKS} unknown optional chunks or "
                            f"{MAX_SKIPPED_BYTES} bytes of them", NtStatus.INVALID_BUFFER_SIZE)
        if self.keep_chunks:
            self.extra.append((self.tally.chunks - 1, raw))

    def add_annex(self, raw: RawChunk) -> None:
        """A 1.1 chunk beside the channels: the note, or the last channel's statistics."""
        if raw.type == ChunkType.NOTE:
            if self.note is not None:
                raise BlobError(f"note (chunk@{raw.offset})", "a blob has at most one note")
            self.note = decode_chunk(raw, "note").text
            return
        stats = decode_chunk(raw, f"channels[{self.tally.channels - 1}]")
        last = self.tally.channels - 1
        if stats.channel != last or last in self.stats:
            raise BlobError(f"channels[{last}].stats.channel (chunk@{raw.offset})",
                            f"statistics of channel {stats.channel} where those of channel "
                            f"{last} belong" if last >= 0 else
                            "statistics before any channel")
        self.stats[last] = stats

    def check_end(self, digest: bytes, offset: int) -> None:
        end, tally = self.end, self.tally
        expect = {"channel_count": tally.channels, "chunk_count": tally.chunks,
                  "packet_count": tally.packets}
        for name, value in expect.items():
            if getattr(end, name) != value:
                raise BlobError(f"end.{name} (chunk@{offset})",
                                f"says {getattr(end, name)}, the blob has {value}")
        if self.header.channel_count != tally.channels:
            raise BlobError("header.channel_count",
                            f"says {self.header.channel_count}, the blob has {tally.channels}")
        if not hmac.compare_digest(end.digest, digest):
            raise BlobError(f"end.digest (chunk@{offset})", "digest of the blob does not match",
                            NtStatus.CRC_ERROR)


def lean_value(raw: RawChunk, where: str) -> Container:
    """A PENDING_INCOMING or GPADLS chunk whose array is parsed as it is read."""
    base = raw.offset + CHUNK_HEADER_SIZE
    if raw.type == ChunkType.INCOMING:
        return Container(packets=lean.incoming_entries(raw.data, base, where,
                                                       MAX_PACKETS_PER_CHANNEL))
    return Container(gpadls=lean.gpadl_entries(Gpadl, raw.data, base, where,
                                                MAX_GPADLS_PER_CHANNEL))


class HoldBudgetExceeded(Exception):
    """A full read passed its budget of held state (not a problem with the blob)."""


def load_blob(source: str | bytes | IO[bytes], key: bytes | None = None,
              reads: tuple[int, int] = READS) -> Blob:
    """Read, check and parse a whole blob; every problem is a BlobError.

    A blob whose parsed state would pass `LOAD_BUDGET` is read twice: first lean, in
    bounded memory, so that an endless or lying stream is refused before anything of it
    is held, then whole. `reads` restricts the reader to an older format, as a vmbtool
    of that version."""
    with rereadable(source) as src:
        try:
            return read_whole(src, key, reads, LOAD_BUDGET)
        except HoldBudgetExceeded:
            pass  # (outside the handler: its traceback would keep the first read alive)
        # the guard: framing, checksums, digest, caps, repeated packets; the semantic
        # checks are for whoever uses the blob (restore checks each channel it takes)
        with BlobReader(src, key, keep_chunks=False, reads=reads, lean=True,
                        checks=False) as reader:
            for _channel in reader.channels():
                pass
        return read_whole(src, key, reads, None)


def read_whole(source: str | bytes | IO[bytes], key: bytes | None, reads: tuple[int, int],
               budget: int | None) -> Blob:
    with BlobReader(source, key, reads=reads, hold_budget=budget) as reader:
        if budget is not None and reader.decoded_size() * DECODED_HOLD_FACTOR > budget:
            raise HoldBudgetExceeded(reader.decoded_size())  # known at once: no wasted read
        blob = Blob(reader.header, reader.header_bytes, reader.chunks, signed=reader.signed,
                    size=reader.size)
        for saved, chunks in reader.channels():
            blob.channels.append(saved)
            blob.channel_chunks.append(chunks)
        blob.scenario, blob.end = reader.scenario, reader.end
        blob.note, blob.stats, blob.extra = reader.note, reader.stats, reader.extra
        return blob
