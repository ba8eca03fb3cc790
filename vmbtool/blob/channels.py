"""How a reader sorts the chunks of a body into channels: staging each channel's
parts (checked as they come in a lean read, handed on in a feed), the scenario chunk,
the 1.1 annexes and the unknown optional chunks it skips."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from construct import Container

from vmbtool import codec, lean
from vmbtool.chunks import (
    RawChunk,
    decode_chunk,
)
from vmbtool.errors import BlobError
from vmbtool.formats import limits
from vmbtool.formats.chunk import (
    CHUNK_HEADER_SIZE,
    CHUNK_TYPES,
    FLAG_REQUIRED,
    ChunkType,
)
from vmbtool.formats.gpadl import Gpadl
from vmbtool.formats.ring import RingControl
from vmbtool.invariants import ChannelCheck
from vmbtool.kmcl.staging import ORDER, RestoreStaging, stage_chunk
from vmbtool.status import NtStatus

STREAMED_MIN = 1 << 20  # a ring chunk this large is streamed through a lean read
PACKET_HOLD_COST = 3000  # what a parsed packet holds beyond its bytes, about
ARRAY_HOLD_FACTOR = 40  # and an array of small elements, per byte
RING_CONTROL_SIZE = RingControl.sizeof()


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
        index = self.tally.channels
        if raw.type == ChunkType.SCENARIO:
            if staging is not None or self.scenario is not None:
                raise BlobError(f"chunk@{raw.offset}", "scenario chunk out of place")
            # a lean read keeps each guest's context and problems; a feed (a restore)
            # its packets too, read under the same caps (no more than they allow held)
            self.scenario = lean.scenario(raw.data, raw.offset + CHUNK_HEADER_SIZE,
                                          limits.MAX_GUESTS, limits.MAX_PACKETS_PER_CHANNEL,
                                          keep=self.feed is not None) \
                if self.lean or self.feed is not None else decode_chunk(raw, "scenario")
            return None
        if raw.type in (ChunkType.STATS, ChunkType.NOTE) and raw.type in self.known:
            if staging is not None:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{CHUNK_TYPES[raw.type].name} chunk inside a channel")
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
            if raw.type != ChunkType.CHANNEL and raw.type in CHUNK_TYPES:
                raise BlobError(f"channels[{index}] (chunk@{raw.offset})",
                                f"{CHUNK_TYPES[raw.type].name} chunk outside a channel")
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
        if header["type"] not in self.known and not header["flags"] & FLAG_REQUIRED and \
                self.skipped_bytes + header["length"] > limits.MAX_SKIPPED_BYTES:
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


def lean_value(raw: RawChunk, where: str) -> Container:
    """A PENDING_INCOMING or GPADLS chunk whose array is parsed as it is read."""
    base = raw.offset + CHUNK_HEADER_SIZE
    if raw.type == ChunkType.INCOMING:
        return Container(packets=lean.incoming_entries(raw.data, base, where,
                                                       limits.MAX_PACKETS_PER_CHANNEL))
    return Container(gpadls=lean.gpadl_entries(Gpadl, raw.data, base, where,
                                                limits.MAX_GPADLS_PER_CHANNEL))


class HoldBudgetExceeded(Exception):
    """A full read passed its budget of held state (not a problem with the blob)."""
