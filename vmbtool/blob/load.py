"""A blob read whole (`load_blob`): decode, diff, upgrade and the tests take it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

from vmbtool.blob.channels import HoldBudgetExceeded
from vmbtool.blob.consumers import Guard, Keep
from vmbtool.blob.reader import BlobReader
from vmbtool.blob.source import rereadable
from vmbtool.chunks import (
    RawChunk,
)
from vmbtool.formats import READS
from vmbtool.state import SavedChannel

LOAD_BUDGET = 24 << 20  # estimated bytes of parsed state a one-pass load may hold
DECODED_HOLD_FACTOR = 8  # a body's parsed state over its decoded size, about (packets)


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
        with BlobReader(src, key, Guard(), reads=reads) as reader:
            for _channel in reader.channels():
                pass
        return read_whole(src, key, reads, None)


def read_whole(source: str | bytes | IO[bytes], key: bytes | None, reads: tuple[int, int],
               budget: int | None) -> Blob:
    with BlobReader(source, key, Keep(), reads=reads, hold_budget=budget) as reader:
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
