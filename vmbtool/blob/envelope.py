"""A blob's envelope: its header (checked as it is read, also from a stream), its
signature frame, and its body's bytes decompressed."""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import IO, Any

import zstandard

from vmbtool import codec, inputs, sniff
from vmbtool.chunks import (
    crc32c,
    read_exact,
)
from vmbtool.errors import BlobError
from vmbtool.formats import FORMAT_MAJOR, READS, limits
from vmbtool.frame import (
    blocks,
    read_at,
)
from vmbtool.generated.frames import SignatureFrame
from vmbtool.generated.header import (
    FLAG_SIGNED,
    HEADER_SIZE,
    KNOWN_HEADER_FLAGS,
    MAGIC,
    FileHeader,
    HeaderPrefix,
    HeaderTrailer,
)
from vmbtool.keys import SIGNED_NEEDS_KEY, UNSIGNED_REFUSED, accepts_unsigned
from vmbtool.status import NtStatus

HEADER_PREFIX_SIZE = HeaderPrefix.size


def read_stream_header(stream: IO[bytes]) -> bytes:
    """The header of a blob arriving on a stream, checked as `read_header` checks a
    file's (the same errors) before anything after it is read: endless zeros or a text
    are refused at once. Returns the bytes read."""
    head = read_exact(stream.read, HEADER_PREFIX_SIZE)
    if len(head) == HEADER_PREFIX_SIZE and head.startswith(MAGIC):
        declared = codec.parse(HeaderPrefix, head, "header", 0, exact=False).header_size
        head += read_exact(stream.read, max(0, min(declared, limits.MAX_HEADER_SIZE) - len(head)))
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
    if not HEADER_SIZE <= prefix.header_size <= limits.MAX_HEADER_SIZE or \
            (prefix.format_minor <= reads[1] and prefix.header_size != HEADER_SIZE):
        raise BlobError("header.header_size (offset 12)",
                        f"{prefix.header_size} is not a valid header size")
    if prefix.header_size > size:
        raise BlobError("header (offset 0)", f"truncated: file is {size} bytes")
    header_bytes = prefix_bytes + f.read(prefix.header_size - HEADER_PREFIX_SIZE)
    if len(header_bytes) < prefix.header_size:  # it was `size` bytes long when opened
        raise BlobError(f"header (offset {len(header_bytes)})", inputs.CHANGED)
    trailer_at = len(header_bytes) - HeaderTrailer.size
    stored_crc = codec.parse(HeaderTrailer, header_bytes[trailer_at:], "header",
                             trailer_at).header_crc32c
    if crc32c(header_bytes[:trailer_at]) != stored_crc:
        raise BlobError(f"header.header_crc32c (offset {len(header_bytes) - 4})",
                        "checksum mismatch", NtStatus.CRC_ERROR)
    header = codec.parse(FileHeader, header_bytes[:FileHeader.size], "header", 0)
    if header.flags & ~KNOWN_HEADER_FLAGS:
        raise BlobError("header.flags (offset 16)", f"unknown flag bits {header.flags:#x}")
    return header, header_bytes


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
    frame_size = SignatureFrame.size
    at = size - frame_size
    if at < header.header_size:
        raise BlobError("signature", "truncated: no signature frame")
    try:
        mac = codec.parse(SignatureFrame, read_at(f, at, frame_size, "signature"),
                          "signature", at).hmac
    except BlobError as exc:
        if inputs.CHANGED in exc.why:
            raise
        raise BlobError(f"signature (offset {at})", "no signature frame") from None
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for block in blocks(f, 0, at):
        digest.update(block)
    if not hmac.compare_digest(digest.digest(), mac):
        raise BlobError(f"signature (offset {at})",
                        "HMAC does not match: wrong key or the blob was changed",
                        NtStatus.UNSUCCESSFUL)
    return at


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
    decompressor = zstandard.ZstdDecompressor(max_window_size=limits.MAX_WINDOW_SIZE)
    return decompressor.stream_reader(raw, read_across_frames=False, read_size=read_size)


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
