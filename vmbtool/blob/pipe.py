"""A large body decompressed and digested on threads of their own while the reader's
thread checks the chunks."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import zstandard

from vmbtool.chunks import SourceFailed

PIPE_BLOCK = 1 << 20  # in blocks of this size
PIPE_DEPTH = 2  # blocks decompressed ahead (the checks of a ring are quick, of packets slow)
DIGEST_DEPTH = 1  # blocks read and waiting for the digest
SWITCH_INTERVAL = 0.0005  # seconds: the GIL switch interval while the threads run
PIPE_END, PIPE_FAILED = object(), object()


class BodyPipe:
    """A body stream decompressed ahead on a thread of its own (zstd releases the GIL)
    and digested on another (so does hashlib) while this one checks the chunks:
    `read(n)` as on the stream itself (a zstd error raised as `SourceFailed`), and
    `digest_before(offset)`.

    Only bytes a direct read could not have failed on are handed over: a block once the
    next one has decompressed too (a read that ends where a zstd block ends decodes the
    next block already). If the thread fails, reads from the first byte it did not hand
    over are made here, on a fresh stream replayed to the same offset, so an error is
    raised by the same read, at the same offset, as without the thread.

    Every block is digested once it has been read, but the last two: the END digest
    covers the header and the body before the END chunk, which starts in one of them."""

    says_source_failed = True  # (`reader.body_chunks` adds no wrapper that would)

    def __init__(self, open_stream: Callable[..., IO[bytes]], header_bytes: bytes,
                 on_end: Callable[[], None] | None = None) -> None:
        self.open_stream = open_stream  # (read_size, owns_f) -> a fresh body stream
        self.on_end = on_end  # run on the thread once the stream has ended (must not raise)
        self.queue: queue.Queue = queue.Queue(PIPE_DEPTH)
        self.stop = threading.Event()
        self.block, self.pos, self.start = b"", 0, 0  # self.block[0] is body byte `start`
        self.previous = b""  # the block before self.block
        self.ended = False
        self.direct: IO[bytes] | None = None
        self.digest = BackgroundDigest(header_bytes)
        self.thread = threading.Thread(target=self.decode, name="vmbtool-body", daemon=True)
        self.thread.start()
        self.switching = PromptSwitching()

    def decode(self) -> None:
        held = None  # the last block read, handed over once the next one was read too
        try:
            stream = self.open_stream(PIPE_BLOCK, True)  # this thread alone reads the file
            while block := stream.read(PIPE_BLOCK):
                if self.stop.is_set():
                    return
                if held is not None:
                    self.queue.put(held)
                held = block
        except BaseException:  # noqa: BLE001 - the read made here raises it again
            self.queue.put(PIPE_FAILED)
            return
        if self.on_end is not None:
            self.on_end()
        if held is not None:
            self.queue.put(held)
        self.queue.put(PIPE_END)

    def read(self, n: int) -> bytes:
        if self.direct is not None:
            try:
                data = self.direct.read(n)
            except zstandard.ZstdError as exc:
                raise SourceFailed(f"zstd: {exc}") from None
            if data:
                self.advance(data, len(data))
            return data
        pos = self.pos
        if pos + n <= len(self.block):
            self.pos = pos + n
            return self.block[pos:pos + n]
        parts, have, taken = [self.block[pos:]], len(self.block) - pos, []
        while have < n and not self.ended:
            block = self.queue.get()
            if block is PIPE_FAILED:
                return self.read_directly(n)
            if block is PIPE_END:
                self.ended = True
                break
            taken.append(block)
            parts.append(block[:n - have])
            have += len(parts[-1])
        for block in taken:
            self.advance(block, len(block))
        self.pos = len(parts[-1]) if taken else len(self.block)
        return b"".join(parts)

    def advance(self, block: bytes, pos: int) -> None:
        """On to the next block, read up to `pos`; the one before the last is digested."""
        self.digest.update(self.previous)
        self.start += len(self.block)
        self.previous, self.block, self.pos = self.block, block, pos

    def read_directly(self, n: int) -> bytes:
        """From here on the body is read in this thread, replayed to where this read
        starts first."""
        self.stop_decoding()
        at = self.start + self.pos
        self.block = self.block[:self.pos]  # what is read of it (and digested, in time)
        stream = self.open_stream()
        while at:  # the thread decoded all of this: these reads do not fail
            skipped = stream.read(min(at, 1 << 20))
            if not skipped:
                break
            at -= len(skipped)
        self.direct = stream
        return self.read(n)

    def digest_before(self, offset: int) -> bytes:
        """SHA-256 of the header and the body before `offset`: the END digest, `offset`
        where the END chunk starts (in the block read last or the one before: the chunk
        is 56 bytes, a block PIPE_BLOCK but the last)."""
        digest = self.digest.copy()
        start = self.start - len(self.previous)
        digest.update(self.previous[:max(0, offset - start)])
        digest.update(self.block[:max(0, offset - self.start)])
        return digest.digest()

    def stop_decoding(self) -> None:
        """Stop the thread (it may wait to hand over a block: make room) and join it."""
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self.queue.get_nowait()
            self.thread.join(0.01)

    def close(self) -> None:
        self.stop_decoding()
        self.digest.close()
        self.switching.release()


class BackgroundDigest:
    """SHA-256 on a thread of its own (hashlib releases the GIL on large buffers)."""

    def __init__(self, data: bytes) -> None:
        self.hash = hashlib.sha256(data)
        self.queue: queue.Queue = queue.Queue(DIGEST_DEPTH)
        self.thread = threading.Thread(target=self.run, name="vmbtool-digest", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while (data := self.queue.get()) is not None:
            self.hash.update(data)
            self.queue.task_done()

    def update(self, data: bytes) -> None:
        if data:
            self.queue.put(data)

    def copy(self) -> Any:
        """The digest so far, once the thread has caught up: a hash object to go on with."""
        self.queue.join()
        return self.hash.copy()

    def close(self) -> None:
        """Drop what is not yet digested and join the thread."""
        if not self.thread.is_alive():
            return
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
                self.queue.task_done()
        self.queue.put(None)
        self.thread.join()


class PromptSwitching:
    """A short GIL switch interval while a pipe runs: a thread back from zstd or hashlib
    waits for the GIL while the main thread runs Python, up to the interval (5 ms by
    default, longer than a block takes to decode). The first pipe sets it, the last one
    to release it puts the old one back."""

    lock = threading.Lock()
    live = 0
    saved = 0.0

    def __init__(self) -> None:
        with self.lock:
            if PromptSwitching.live == 0:
                PromptSwitching.saved = sys.getswitchinterval()
                sys.setswitchinterval(min(PromptSwitching.saved, SWITCH_INTERVAL))
            PromptSwitching.live += 1
        self.held = True

    def release(self) -> None:
        """Once; later calls do nothing."""
        with self.lock:
            if not self.held:
                return
            self.held = False
            PromptSwitching.live -= 1
            if PromptSwitching.live == 0:
                sys.setswitchinterval(PromptSwitching.saved)
