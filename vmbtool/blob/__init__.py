"""Blob files: header, zstd-compressed chunk stream, optional HMAC signature frame.

    BLOB ::= FILE_HEADER BODY [SIGNATURE_FRAME]
    BODY ::= one zstd frame of CHUNK... END_CHUNK, [SEAL_FRAME]  (or the raw chunks)

The layouts are formats/'s (header, frames, chunk); this package reads and writes them:
`source` (where the bytes come from), `envelope` (header, signature, decompression),
`pipe` (a large body on threads), `reader` (one blob as a stream, channel by channel),
`channels` (sorting the chunks into channels), `load` (a blob read whole), `writer`.
Reading streams with bounded memory: declared lengths are capped before allocating.
"""

from typing import TYPE_CHECKING

from vmbtool.blob.envelope import (
    HEADER_PREFIX_SIZE,
    body_stream,
    read_header,
    read_stream_header,
    verify_signature,
)
from vmbtool.blob.reader import PIPE_MIN, BlobReader, BlobTally
from vmbtool.blob.source import open_source, rereadable
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR, READS
from vmbtool.generated.header import FLAG_SIGNED, HEADER_SIZE, KNOWN_HEADER_FLAGS
from vmbtool.lazy import exports

if TYPE_CHECKING:
    from vmbtool.blob.load import Blob, load_blob
    from vmbtool.blob.writer import DEFAULT_LEVEL, encode_blob, seal_body, sign, write_atomic

# a blob read whole and the writer: imported when first asked for (a read needs neither)
__getattr__ = exports(__name__, {
    "load": ("Blob", "load_blob"),
    "writer": ("DEFAULT_LEVEL", "encode_blob", "seal_body", "sign", "write_atomic")})

__all__ = [
    "DEFAULT_LEVEL", "FLAG_SIGNED", "FORMAT_MAJOR", "FORMAT_MINOR", "HEADER_PREFIX_SIZE",
    "HEADER_SIZE", "KNOWN_HEADER_FLAGS", "PIPE_MIN", "READS", "Blob", "BlobReader",
    "BlobTally", "body_stream", "encode_blob",
    "load_blob", "open_source", "read_header", "read_stream_header", "rereadable",
    "seal_body", "sign", "verify_signature", "write_atomic",
]
