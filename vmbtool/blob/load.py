"""A blob read whole (`load_blob`), every chunk kept: library callers and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

from vmbtool.blob.consumers import Keep
from vmbtool.blob.reader import BlobReader
from vmbtool.chunks import RawChunk
from vmbtool.formats import READS
from vmbtool.state import SavedChannel


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


def load_blob(source: str | bytes | IO[bytes], key: bytes | None = None,
              reads: tuple[int, int] = READS) -> Blob:
    """Read, check and parse a whole blob, every chunk kept; every problem is a BlobError.

    What it holds is bounded only by the format's caps: the commands read a blob as a
    stream instead (`BlobReader` and a consumer). `reads` restricts the reader to an
    older format, as a vmbtool of that version."""
    with BlobReader(source, key, Keep(), reads=reads) as reader:
        blob = Blob(reader.header, reader.header_bytes, reader.chunks, signed=reader.signed,
                    size=reader.size)
        for saved, chunks in reader.channels():
            blob.channels.append(saved)
            blob.channel_chunks.append(chunks)
        blob.scenario, blob.end = reader.scenario, reader.end
        blob.note, blob.stats, blob.extra = reader.note, reader.stats, reader.extra
        return blob
