"""What a read does with a blob's channels: the one reader (`BlobReader`) checks the
envelope, frames the chunks, checks their CRCs, the END digest and counts, and sorts the
chunks into channels; a consumer decides what each channel's chunks become.

    Whole   each channel staged whole (decode, diff): parsed state, chunks not kept
    Keep    Whole, and every chunk kept in order (`load_blob`: library callers, tests)
    Check   each part checked as it streams past and dropped (validate): bounded memory
    Tally   Check, and each packet record handed to a callback (inspect's summary)
    Relay   Whole, each chunk kept in order only until the caller takes it (upgrade)
    Feed    each chunk handed on as it comes (a restore's RestoreFromBuffer), not parsed
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from vmbtool import lean
from vmbtool.chunks import RawChunk, decode_chunk
from vmbtool.formats import limits
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.invariants import ChannelCheck
from vmbtool.kmcl.staging import RestoreStaging, stage_chunk

STREAMED_MIN = 1 << 20  # a ring chunk this large is streamed through a lean read
_PACKET, _CHANNEL_END = ChunkType.PACKET, ChunkType.CHANNEL_END  # (bound once: see kmcl.staging)


class Consumer:
    """Stages each chunk of a channel as RestoreFromBuffer would, whole (the default)."""

    lean = False  # large rings stream through in blocks; arrays are walked element-wise
    keeps_chunks = False  # every chunk of the blob kept, in order (`BlobReader.chunks`)
    keeps_skipped = False  # the unknown optional chunks skipped kept (`BlobReader.extra`)
    keeps_channel_chunks = True  # each channel's chunks yielded with it

    def staging(self, index: int) -> RestoreStaging:
        """A fresh staging for channel `index`."""
        return RestoreStaging(where=f"channels[{index}]")

    def streams(self, kind: int, length: int) -> bool:
        """Whether a chunk of this type and length comes with its data in blocks instead
        of whole."""
        return self.lean and kind == ChunkType.RING and length >= STREAMED_MIN

    def take(self, staging: RestoreStaging, raw: RawChunk, index: int, value: Any = None,
             blocks: Iterable[bytes] | None = None) -> None:
        """One chunk of channel `index` (the reader has decoded a streamed ring's control
        fields into `value`; its data follow in `blocks`)."""
        stage_chunk(staging, raw, staging.where, value, blocks)

    def scenario(self, raw: RawChunk) -> Any:
        """The scenario chunk, as this read needs it."""
        return decode_chunk(raw, "scenario")


class Whole(Consumer):
    """Each channel parsed whole, its chunks yielded with it (not kept); the unknown
    optional chunks skipped kept when `keeps_skipped` (decode shows them; the format caps
    them)."""

    def __init__(self, keeps_skipped: bool = False) -> None:
        self.keeps_skipped = keeps_skipped


class Keep(Whole):
    """Whole, and every chunk of the blob kept in order (a blob read whole)."""

    keeps_chunks = True

    def __init__(self) -> None:
        super().__init__(keeps_skipped=True)


class Relay(Whole):
    """Whole (each channel staged and parsed as a whole read does), the chunks of the
    blob kept in order in `BlobReader.chunks` for the caller to take and clear as each
    channel is yielded (and once more when the read ends): a blob passes through one
    channel at a time (upgrade)."""

    keeps_chunks = True
    keeps_channel_chunks = False


class Check(Consumer):
    """Each part of a channel checked as it arrives (`SavedChannel.problems`,
    `invariants.ChannelCheck`) and dropped; large rings stream through in blocks and only
    their control fields stay; arrays are walked element by element: any blob is read in
    bounded memory."""

    lean = True
    keeps_channel_chunks = False
    checks = True
    keep_gpadls = False
    scans = True  # no packet is kept or handed on: each is scanned (`codec.scan`)

    def staging(self, index: int) -> RestoreStaging:
        where = f"channels[{index}]"
        check = ChannelCheck(where) if self.checks else None
        return RestoreStaging(check=check, keep_packets=False, keep_gpadls=self.keep_gpadls,
                              where=where, scans=self.scans)

    def take(self, staging: RestoreStaging, raw: RawChunk, index: int, value: Any = None,
             blocks: Iterable[bytes] | None = None) -> None:
        where = staging.where
        if value is None and raw.type in (ChunkType.INCOMING, ChunkType.GPADLS):
            value = lean.array_value(raw.type, raw.data, raw.offset + CHUNK_HEADER_SIZE,
                                     where)
        stage_chunk(staging, raw, where, value, blocks)

    def scenario(self, raw: RawChunk) -> Any:
        return lean.scenario(raw.data, raw.offset + CHUNK_HEADER_SIZE, limits.MAX_GUESTS,
                             limits.MAX_PACKETS_PER_CHANNEL)


class Tally(Check):
    """Check, each packet record handed to `on_packet(index, record)` as it comes; the
    GPADLs kept when `keep_gpadls`; rings held whole (not streamed) unless `lean`."""

    scans = False  # each packet is handed on, parsed

    def __init__(self, on_packet: Callable[[int, Any], None], keep_gpadls: bool = False,
                 lean: bool = True) -> None:
        self.on_packet, self.keep_gpadls, self.lean = on_packet, keep_gpadls, lean

    def take(self, staging: RestoreStaging, raw: RawChunk, index: int, value: Any = None,
             blocks: Iterable[bytes] | None = None) -> None:
        super().take(staging, raw, index, value, blocks)
        if raw.type == _PACKET:
            self.on_packet(index, staging.last_record)


class Feed(Consumer):
    """Each chunk of channel i handed to `feed(i, raw)` as it comes, neither parsed nor
    kept here (RestoreFromBuffer parses and checks it); the staging only counts the
    packets and notes the channel's end. The scenario chunk is read under the lean
    caps, its guests' packets kept (a restore puts them back)."""

    keeps_channel_chunks = False

    def __init__(self, feed: Callable[[int, RawChunk], None],
                 feed_packet: Callable[[int, RawChunk], None] | None = None) -> None:
        self.feed = feed
        # a PACKET inside a channel (most chunks), handed on by a shorter way, if given
        self.feed_packet = feed if feed_packet is None else feed_packet

    def take_packet(self, staging: RestoreStaging, raw: RawChunk, index: int) -> None:
        """`take` of a PACKET inside channel `index` (the reader's most taken chunk)."""
        self.feed_packet(index, raw)
        staging.saved.packet_count += 1

    def take(self, staging: RestoreStaging, raw: RawChunk, index: int, value: Any = None,
             blocks: Iterable[bytes] | None = None) -> None:
        self.feed(index, raw)
        if raw.type == _PACKET:
            staging.saved.packet_count += 1
        elif raw.type == _CHANNEL_END:
            staging.saved.end = decode_chunk(raw, f"channels[{index}]")

    def scenario(self, raw: RawChunk) -> Any:
        return lean.scenario(raw.data, raw.offset + CHUNK_HEADER_SIZE, limits.MAX_GUESTS,
                             limits.MAX_PACKETS_PER_CHANNEL, keep=True)
