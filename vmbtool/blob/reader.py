"""One blob read as a stream: header, signature, body extent, then channel by channel,
the END chunk's counts and digest checked last."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import zstandard

from vmbtool.blob import envelope
from vmbtool.blob.channels import ChannelSorting
from vmbtool.blob.consumers import Consumer, Keep
from vmbtool.blob.envelope import read_header, verify_signature
from vmbtool.blob.source import open_source
from vmbtool.chunks import (
    RawChunk,
    SourceFailed,
    decode_chunk,
    iter_chunks,
)
from vmbtool.errors import BlobError
from vmbtool.formats import FORMAT_MAJOR, READS
from vmbtool.formats.kinds import ChunkType, known_to
from vmbtool.frame import (
    SealScan,
    check_seal,
    read_seal,
    skip_frames,
    zstd_frame_end,
)
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.generated.frames import SEALED_SINCE, SealFrame
from vmbtool.generated.header import FLAG_SIGNED
from vmbtool.kmcl.staging import RestoreStaging
from vmbtool.state import SavedChannel
from vmbtool.status import NtStatus

if TYPE_CHECKING:
    from vmbtool.blob.pipe import BodyPipe

_END, _PACKET = ChunkType.END, ChunkType.PACKET  # (bound once: see kmcl.staging)
# a stored body this large is decompressed and digested on threads (`pipe.BodyPipe`,
# imported only then: a small blob's read starts no thread and loads none of it)
PIPE_MIN = 1 << 20


def body_chunks(stream: IO[bytes] | BodyPipe,
                admit: Callable[[int, int, int, int], None] | None = None,
                admitted: Container[int] = (),
                stream_if: Callable[[int, int], bool] | None = None,
                on_block: Callable[[bytes], None] | None = None) -> Iterator[RawChunk]:
    """The chunk stream of a (decompressed) body: `chunks.iter_chunks` over it, a zstd
    error in the body named where the parser was."""

    def read(n: int) -> bytes:
        try:
            return stream.read(n)
        except zstandard.ZstdError as exc:
            raise SourceFailed(f"zstd: {exc}") from None

    # (a BodyPipe says SourceFailed itself: the most read body goes without the wrapper)
    says_failed = getattr(stream, "says_source_failed", False)
    return iter_chunks(stream.read if says_failed else read, admit=admit,
                       admitted=admitted, stream_if=stream_if, on_block=on_block)


@dataclass
class BlobTally:
    """What the END chunk is checked against, counted as the chunks stream past."""

    chunks: int = 0
    channels: int = 0
    packets: int = 0
    bytes: int = 0  # decoded chunk bytes, headers included


class BlobReader(ChannelSorting):
    """One blob read as a stream: header, signature, body extent, then channel by channel.

    `channels()` yields each channel as soon as its CHANNEL_END is read, as its
    `consumer` made it (`consumers`: kept whole, checked as it streamed past and dropped,
    counted, or handed on to RestoreFromBuffer)."""

    def __init__(self, source: str | bytes | IO[bytes], key: bytes | None = None,
                 consumer: Consumer | None = None, reads: tuple[int, int] = READS,
                 defer_seal: bool = False) -> None:
        self.f, self.size = open_source(source)
        self.owns_file = not hasattr(source, "read")
        self.reads = reads
        # what becomes of each channel's chunks (consumers.py); may be set until the
        # channels are read (validate and restore choose once they know the body's size)
        self.consumer: Consumer = consumer if consumer is not None else Keep()
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
        sealed = (FORMAT_MAJOR, minor) >= SEALED_SINCE and self.reads >= SEALED_SINCE
        newer = minor > self.reads[1]
        if sealed and not newer:
            seal_at = end - SealFrame.size
            if self.defer_seal:
                self.deferred_seal = read_seal(self.f, start, seal_at, end)
                return seal_at
            return self.check_sealed_frame()
        frame_end = zstd_frame_end(self.f, start, end)
        pos = check_seal(self.f, start, frame_end, end) + SealFrame.size if sealed \
            else frame_end
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
        seal_at = check_seal(self.f, start, end - SealFrame.size, end)
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
                return envelope.body_stream(scan, self.header, start, end, read_size, owns_f)
            return envelope.body_stream(self.f, self.header, start, end, read_size, owns_f)

        if end - start < PIPE_MIN:
            if scan is None:
                yield from self.read_channels(open_body(), hashlib.sha256(self.header_bytes))
                return
            try:  # the decompressor reads the compressed bytes through the seal's scan
                yield from self.read_channels(open_body(owns_f=True),
                                              hashlib.sha256(self.header_bytes))
                scan.drain()
                self.settle_seal(scan)
            except Exception:
                self.settle_seal(None)
                raise
            return
        from vmbtool.blob.pipe import BodyPipe

        piped = BodyPipe(open_body, self.header_bytes, scan.drain if scan else None)
        self.workers = [piped]
        try:
            yield from self.read_channels(piped, None)
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
        tally, consumer, add_chunk = self.tally, self.consumer, self.add_chunk
        keeps_chunks, keeps_channel_chunks = consumer.keeps_chunks, consumer.keeps_channel_chunks
        take = getattr(consumer, "take_packet", consumer.take)  # (the PACKETs in a channel)
        stream_if = consumer.streams if consumer.lean else None
        on_block = digest.update if digest is not None else None
        raw = None
        # (`admit` is about unknown types: a known one is not asked about)
        for raw in body_chunks(stream, self.admit, self.known, stream_if, on_block):
            if self.end is not None:
                raise BlobError(f"chunk@{raw.offset}", "chunks after the end chunk")
            if keeps_chunks:
                self.chunks.append(raw)
            if raw.type == _END:
                self.end = decode_chunk(raw, "blob")
                self.check_end(digest.digest() if digest is not None else
                               stream.digest_before(raw.offset), raw.offset)
                continue
            if digest is not None:
                digest.update(raw.head)  # (iter_chunks' chunks come with their header)
                digest.update(raw.data)
            tally.chunks += 1
            tally.bytes += CHUNK_HEADER_SIZE + (raw.declared or 0)  # (iter_chunks' say it)
            if raw.type == _PACKET and staging is not None:  # most chunks: handed on here
                if keeps_channel_chunks:
                    channel_chunks.append(raw)
                take(staging, raw, tally.channels)
                continue
            staging = add_chunk(staging, raw, channel_chunks)
            if staging is not None and staging.saved.end is not None:
                saved, chunks = staging.saved, channel_chunks
                staging, channel_chunks = None, []
                self.tally.channels += 1
                self.tally.packets += saved.packet_count
                yield saved, chunks
                del saved, chunks  # a caller that dropped the channel has freed it
        offset = 0 if raw is None else raw.offset + CHUNK_HEADER_SIZE + len(raw.data)
        if self.end is None:
            raise BlobError(f"body (decompressed offset {offset})",
                            "truncated: the body ends before the end chunk")
        if staging is not None:
            raise BlobError(f"channels[{self.tally.channels}]", "channel without its end chunk")

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
