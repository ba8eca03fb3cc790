"""Writing a blob: the header and its CRC, the body's chunks and END (counts and
digest), compressed and sealed, signed when a key is given."""

from __future__ import annotations

import hashlib
import hmac
import time

import zstandard

from vmbtool import __version__, codec
from vmbtool.chunks import (
    crc32c,
    frame,
    parse_chunk_header,
)
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR
from vmbtool.formats.chunk import (
    CHUNK_HEADER_SIZE,
    ChunkType,
)
from vmbtool.formats.frames import SEALED_SINCE, SealFrame, SignatureFrame
from vmbtool.formats.header import (
    FLAG_SIGNED,
    HEADER_SIZE,
    FileHeader,
    HeaderPrefix,
    HeaderTrailer,
)

DEFAULT_LEVEL = 3


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
    header += codec.build(HeaderTrailer, {"header_crc32c": crc32c(header)}, "header")
    return seal_body(header, body_chunks, level, key)


def seal_body(header: bytes, body_chunks: list[bytes], level: int | None,
              key: bytes | None, end_counts: dict | None = None) -> bytes:
    """Body chunks + END (counts, digest), compressed; signed when a key is given.

    `end_counts` overrides the counted values (encode writes what the JSON says)."""
    digest = hashlib.sha256(header)
    packets = channel_count = 0
    for chunk in body_chunks:
        digest.update(chunk)
        chunk_type = parse_chunk_header(chunk[:CHUNK_HEADER_SIZE], 0)["type"]
        packets += chunk_type == ChunkType.PACKET
        channel_count += chunk_type == ChunkType.CHANNEL
    counts = {"channel_count": channel_count, "chunk_count": len(body_chunks),
              "packet_count": packets, **(end_counts or {})}
    end = frame(ChunkType.END, {**counts, "digest": digest.digest()})
    body = b"".join(body_chunks) + end
    if level is not None:
        body = zstandard.ZstdCompressor(level=level).compress(body)
        prefix = codec.parse(HeaderPrefix, header, "header", 0, exact=False)
        if (prefix.format_major, prefix.format_minor) >= SEALED_SINCE:
            body += codec.build(SealFrame, {"crc32c": crc32c(body)}, "body.seal")
    out = header + body
    if key:
        out += codec.build(SignatureFrame, {"hmac": sign(key, out)}, "signature")
    return out


def sign(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def write_atomic(path: str, data: bytes) -> None:
    """Temporary file beside the target, fsync, rename: never a partial blob (what
    vmbtool.output does for every kind of path; kept here for library callers)."""
    from vmbtool.output import write_output

    write_output(path, data)


# -- reading ----------------------------------------------------------------------
