"""How a reader sorts the chunks of a body into channels: staging each channel's
parts (checked as they come in a lean read, handed on in a feed), the scenario chunk,
the 1.1 annexes and the unknown optional chunks it skips."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from vmbtool import codec
from vmbtool.chunks import RawChunk, decode_chunk
from vmbtool.errors import BlobError
from vmbtool.formats import limits
from vmbtool.formats.kinds import CHUNK_KINDS, FLAG_REQUIRED, ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.generated.ring import RingControl
from vmbtool.kmcl.staging import ORDER, RestoreStaging
from vmbtool.status import NtStatus

RING_CONTROL_SIZE = RingControl.size


def split_head(blocks: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `n` bytes of a stream of blocks (fewer at its end), and the rest."""
    head = b""
    for block in blocks:
        head += block
        if len(head) >= n:
            break
    rest = head[n:]
    return head[:n], itertools.chain((rest,) if rest else (), blocks)


class ChannelSorting:
    """The chunk-by-chunk half of `BlobReader`: what to do with each chunk of the body."""

    def add_chunk(self, staging: RestoreStaging | None, raw: RawChunk,
                  channel_chunks: list[RawChunk]) -> RestoreStaging | None:
        """A chunk of the body (not END), with the channel it belongs to: `staging`, or
        None between channels. (A PACKET inside a channel, most chunks of a blob, is
        handed to the consumer by `BlobReader.read_channels` itself.)"""
        index = self.tally.channels
        consumer = self.consumer
        if raw.type == ChunkType.SCENARIO:
            if staging is not None or self.scenario is not None:
                raise BlobError(f"chunk@{raw.offset}", "scenario chunk out of place")
            self.scenario = consumer.scenario(raw)
            return None
        if raw.type in (ChunkType.STATS, ChunkType.NOTE) and raw.type in self.known:
            if staging is not None:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{CHUNK_KINDS[raw.type].name} chunk inside a channel")
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
            if raw.type != ChunkType.CHANNEL and raw.type in CHUNK_KINDS:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{CHUNK_KINDS[raw.type].name} chunk outside a channel")
            staging = consumer.staging(index)
        if consumer.keeps_channel_chunks:
            channel_chunks.append(raw)
        if raw.type not in ORDER and not raw.required:
            self.skip(raw)  # inside a channel: stage_chunk notes it as skipped
        try:
            if raw.blocks is not None:
                where = f"channels[{index}]"
                control, rest = split_head(raw.blocks, RING_CONTROL_SIZE)
                consumer.take(staging, raw, index, self.ring_control(raw, control, where), rest)
            else:
                consumer.take(staging, raw, index)
        except BlobError as exc:
            if exc.status == NtStatus.REVISION_MISMATCH:
                raise BlobError(exc.where, f"{exc.why} (blob format {self.version}, this "
                                f"vmbtool reads {self.reads[0]}.{self.reads[1]})",
                                exc.status) from None
            raise
        return staging

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

    def admit(self, kind: int, flags: int, length: int, offset: int) -> None:
        if kind not in self.known and not flags & FLAG_REQUIRED and \
                self.skipped_bytes + length > limits.MAX_SKIPPED_BYTES:
            raise BlobError(f"chunk@{offset}.length", f"more than {limits.MAX_SKIPPED_BYTES} bytes "
                            "of unknown optional chunks", NtStatus.INVALID_BUFFER_SIZE)

    def skip(self, raw: RawChunk) -> None:
        """Unknown optional chunks are skipped, within limits: no endless stream of them."""
        self.skipped_chunks += 1
        self.skipped_bytes += len(raw.data)
        if self.skipped_chunks > limits.MAX_SKIPPED_CHUNKS or \
                self.skipped_bytes > limits.MAX_SKIPPED_BYTES:
            raise BlobError(f"chunk@{raw.offset}",
                            f"more than {limits.MAX_SKIPPED_CHUNKS} unknown optional chunks or "
                            f"{limits.MAX_SKIPPED_BYTES} bytes of them",
                            NtStatus.INVALID_BUFFER_SIZE)
        if self.consumer.keeps_skipped:
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
