"""Writing a blob: the header and its CRC, the body's chunks and END (counts and
digest), compressed and sealed, signed when a key is given."""

from __future__ import annotations

import hashlib
import hmac
import io
import mmap
import tempfile
import time
from typing import IO

import zstandard

from vmbtool import __version__, codec
from vmbtool.chunks import (
    CHUNK_HEADER,
    crc32c,
    frame,
)
from vmbtool.errors import BlobError
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.generated.frames import SEALED_SINCE, SealFrame, SignatureFrame
from vmbtool.generated.header import (
    FLAG_SIGNED,
    HEADER_SIZE,
    FileHeader,
    HeaderPrefix,
    HeaderTrailer,
)
from vmbtool.status import NtStatus

DEFAULT_LEVEL = 3
# the body of a compressed blob is spooled, decoded, past this much memory to a
# temporary file, and compressed from there at its end (see BlobWriter)
SPOOL_MAX = 8 << 20
# a body larger than this is compressed by zstd's multi-threaded mode, on every core:
# its bytes are the same whatever the number of threads ("the multi-threaded output is
# the same for any number of threads": facebook/zstd#2238; the one-call case that broke
# it, #2327, is fixed; tests/test_upgrade_stream.py holds the bytes to threads=1's),
# and are the single-threaded mode's up to its first job's end (8 MiB at level 3)
THREADED_MIN = SPOOL_MAX
# the highest level zstd compresses at (the header's i8 `level` holds up to 127)
MAX_LEVEL = zstandard.MAX_COMPRESSION_LEVEL
_PACKET, _CHANNEL = ChunkType.PACKET, ChunkType.CHANNEL  # (bound once: see kmcl.staging)


def encode_blob(body_chunks: list[bytes], channel_count: int, *, level: int | None,
                key: bytes | None = None, created_ns: int | None = None,
                writer_version: str = __version__, minor: int = FORMAT_MINOR) -> bytes:
    """Header + (compressed) chunks + END chunk + optional signature frame. Each item
    of `body_chunks` holds one or more whole framed chunks."""
    header = encode_header(channel_count, level=level, signed=bool(key),
                           created_ns=created_ns, writer_version=writer_version, minor=minor)
    return seal_body(header, body_chunks, level, key)


def encode_header(channel_count: int, *, level: int | None, signed: bool,
                  created_ns: int | None = None, writer_version: str = __version__,
                  minor: int = FORMAT_MINOR) -> bytes:
    """The file header and its CRC."""
    header = codec.build(FileHeader, {
        "format_major": FORMAT_MAJOR, "format_minor": minor,
        "header_size": HEADER_SIZE, "flags": FLAG_SIGNED if signed else 0,
        "compression": "none" if level is None else "zstd",
        "level": 0 if level is None else level, "reserved": 0,
        "writer_version": writer_version,
        "created_ns": time.time_ns() if created_ns is None else created_ns,
        "channel_count": channel_count}, "header")
    return header + codec.build(HeaderTrailer, {"header_crc32c": crc32c(header)}, "header")


def seal_body(header: bytes, body_chunks: list[bytes], level: int | None,
              key: bytes | None, end_counts: dict | None = None) -> bytes:
    """Body chunks + END (counts, digest), compressed; signed when a key is given.

    `end_counts` overrides the counted values (encode writes what the JSON says)."""
    out = io.BytesIO()
    writer = BlobWriter(out, header, level, key)
    for chunk in body_chunks:
        writer.add(chunk)
    writer.finish(end_counts)
    return out.getvalue()


class BlobWriter:
    """`seal_body` as a stream: `header` written to `out` at once, then each body chunk
    `add`ed in turn (digested and counted as it passes), then `finish`: END, the body
    compressed and sealed, the signature (an HMAC taken as the bytes pass).

    An uncompressed body goes straight to `out`. A compressed one is spooled, decoded
    (memory up to SPOOL_MAX, then a temporary file), and compressed in one call at its
    end: zstd (1.5.7) splits the blocks of a frame by what it sees of the whole input,
    so a streaming compressor's bytes differ from `ZstdCompressor.compress`'s for
    bodies past some 256 KB (the same size pledged, whatever the pieces), and a blob's
    bytes have one definition: `ZstdCompressor(level).compress` of the body, with
    `threads=1` past THREADED_MIN (run on every core: the same bytes). A body spooled
    to a file is compressed from a read-only map of it, not from a copy."""

    def __init__(self, out: IO[bytes], header: bytes, level: int | None,
                 key: bytes | None = None) -> None:
        if level is not None and level > MAX_LEVEL:  # refused before anything is written
            raise BlobError("header.level", f"{level} is not a zstd level: zstd compresses "
                            f"at levels up to {MAX_LEVEL}", NtStatus.INVALID_PARAMETER)
        self.out, self.header, self.level = out, header, level
        self.mac = hmac.new(key, digestmod=hashlib.sha256) if key else None
        self.digest = hashlib.sha256(header)
        self.chunks = self.packets = self.channels = 0
        self.size = 0  # bytes written to `out`
        self.body: IO[bytes] | None = None if level is None else \
            tempfile.SpooledTemporaryFile(SPOOL_MAX)
        self.emit(header)

    def emit(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.size += len(data)
        if self.mac is not None:
            self.mac.update(data)

    def add(self, chunks: bytes) -> None:
        """Framed body chunks (not END): one, or several whole ones back to back (a
        buffer SaveContinue filled), counted by their headers."""
        self.digest.update(chunks)
        unpack, pos, size = CHUNK_HEADER.unpack_from, 0, len(chunks)
        packets = channels = count = 0
        while pos < size:
            chunk_type, _flags, _reserved, length, _crc = unpack(chunks, pos)
            packets += chunk_type == _PACKET
            channels += chunk_type == _CHANNEL
            count += 1
            pos += CHUNK_HEADER_SIZE + length
        self.packets, self.channels = self.packets + packets, self.channels + channels
        self.chunks += count
        if self.body is not None:
            self.body.write(chunks)
        else:
            self.emit(chunks)

    def finish(self, end_counts: dict | None = None) -> int:
        """END, the compressed body and its seal, the signature; the size written.

        `end_counts` overrides the counted values (encode writes what the JSON says)."""
        counts = {"channel_count": self.channels, "chunk_count": self.chunks,
                  "packet_count": self.packets, **(end_counts or {})}
        end = frame(ChunkType.END, {**counts, "digest": self.digest.digest()})
        if self.body is None:
            self.emit(end)
        else:
            self.body.write(end)
            compressed = self.compress(self.body)
            self.close()
            self.emit(compressed)
            prefix = codec.parse(HeaderPrefix, self.header, "header", 0, exact=False)
            if (prefix.format_major, prefix.format_minor) >= SEALED_SINCE:
                self.emit(codec.build(SealFrame, {"crc32c": crc32c(compressed)}, "body.seal"))
            del compressed
        if self.mac is not None:
            self.emit(codec.build(SignatureFrame, {"hmac": self.mac.digest()}, "signature"))
        return self.size

    def close(self) -> None:
        """The spooled body dropped (finished, or abandoned)."""
        if self.body is not None:
            self.body.close()

    def compress(self, body: IO[bytes]) -> bytes:
        """The spooled body compressed as `ZstdCompressor.compress` does, in one call:
        past THREADED_MIN on every core (`threads=-1`), as `threads=1` would."""
        size = body.tell()
        compressor = zstandard.ZstdCompressor(level=self.level,
                                              threads=-1 if size > THREADED_MIN else 0)
        if size <= SPOOL_MAX:
            body.seek(0)
            return compressor.compress(body.read())
        body.flush()
        with mmap.mmap(body.fileno(), size, access=mmap.ACCESS_READ) as view:
            return compressor.compress(view)


def sign(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def write_atomic(path: str, data: bytes) -> None:
    """Temporary file beside the target, fsync, rename: never a partial blob (what
    vmbtool.output does for every kind of path; kept here for library callers)."""
    from vmbtool.output import write_output

    write_output(path, data)


# -- reading ----------------------------------------------------------------------
