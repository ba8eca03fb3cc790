#!/usr/bin/env python3
"""What target 1 would gain from a fused per-channel loop: an experiment, not a road of
vmbtool's.

    python3 benchmarks/fused_restore.py [--packets 100000] [--rounds 6]

`restore_file` hands each PACKET chunk through the one reader's layers: the chunk
stream (`chunks.iter_chunks`, two reads of the body a chunk), the reader's loop, the
Feed consumer, the channel feed's buffer of pending chunks, RestoreFromBuffer's
staging (`stage_chunk`, the codec's scan, `_stage_scanned`). The prototype below
replaces, for a restore alone, the reader's loop with one that splits the body's
chunks out of 1 MiB pieces itself and scans, checks and stages each PACKET in the loop
(the same scan, the same duplicate and order checks, the same `ChannelCheck`, the same
staged tuples and LibBufs), so RestoreFromBuffer applies exactly what it applies today.
Everything else (header, seal, END digest, the other chunks, the VSP's callbacks, the
guest) is vmbtool's own code. It keeps no error path: it is run on valid blobs only.

Each round saves the N-packet channel (`workloads.write_blob`), restores it both ways
in turn (which one first alternates), and runs the pickle+zstd baseline; it prints the
medians and target 1's ratio with each restore. The two restores are checked to give
the same channels.

The prototype reaches into the reader's internals (`BlobReader.read_channels`, the
Feed's `ChannelFeed`, the staging): `tests/test_benchmarks_smoke.py` runs it on a small
channel, so it breaks there, not silently, when they change.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import google_crc32c

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as harness  # noqa: E402
import workloads  # noqa: E402

from vmbtool.blob import reader as blob_reader  # noqa: E402
from vmbtool.blob.consumers import Feed  # noqa: E402
from vmbtool.chunks import CHUNK_HEADER, USUAL_FLAGS, RawChunk, decode_chunk  # noqa: E402
from vmbtool.errors import BlobError  # noqa: E402
from vmbtool.formats.kinds import ChunkType  # noqa: E402
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE  # noqa: E402
from vmbtool.generated.packet import PacketRecord  # noqa: E402
from vmbtool.snapshot import restore_file  # noqa: E402

_PACKET, _END = ChunkType.PACKET, ChunkType.END
_PACKET_FLAGS = USUAL_FLAGS[_PACKET]
LIB_BUF_SIZE = struct.Struct("<I")  # PacketRecord's lib_buf length prefix (u32)
PIECE = 1 << 20
ORIGINAL = blob_reader.BlobReader.read_channels


def fused_read_channels(self: Any, stream: Any, digest: Any) -> Iterator[tuple[Any, list]]:
    """`BlobReader.read_channels` for a restore (a Feed consumer), PACKETs in one loop."""
    if not isinstance(self.consumer, Feed):
        yield from ORIGINAL(self, stream, digest)
        return
    feed = self.consumer.feed.__self__  # the snapshot's ChannelFeed
    tally, unpack_from, crc32c = self.tally, CHUNK_HEADER.unpack_from, google_crc32c.value
    scan = PacketRecord.scan_from
    buf, pos, offset = b"", 0, 0
    staging, target = None, None  # the reader's staging; the server's, in a packet run
    saved: Any = None  # and the server staging's parts, bound once a run
    check: Any = None
    keep_packet: Any = None
    keep_lib_buf: Any = None
    while True:
        if pos + CHUNK_HEADER_SIZE > len(buf):
            buf, pos = buf[pos:] + stream.read(PIECE), 0
            if len(buf) < CHUNK_HEADER_SIZE:
                break
        kind, flags, reserved, length, crc = unpack_from(buf, pos)
        start = pos + CHUNK_HEADER_SIZE
        while start + length > len(buf):
            more = stream.read(max(PIECE, start + length - len(buf)))
            if not more:
                raise BlobError(f"chunk@{offset}", "truncated (prototype)")
            buf, start, pos = buf[pos:] + more, start - pos, 0
        data = buf[start:start + length]
        if crc32c(data) != crc:
            raise BlobError(f"chunk@{offset}.crc32c", "checksum mismatch (prototype)")
        if kind != _END and digest is not None:
            digest.update(buf[pos:start + length])
        if kind == _PACKET and target is not None and flags == _PACKET_FLAGS and not reserved:
            value, _used = scan(data)
            lib = value[0]
            txid, state, ptype = lib[0], lib[1], lib[2]
            key = txid << 1 | (ptype == "completion")
            last = target.last
            if key in check.seen or (last is not None and state != "backlog" and (
                    last[1] == "backlog" or last[0] >= txid)):
                raise BlobError(f"chunk@{offset}", "duplicate or out of order (prototype)")
            target.last = (txid, state)
            saved.packet_count += 1
            keep_packet(value)
            (size,) = LIB_BUF_SIZE.unpack_from(data)
            keep_lib_buf(data[LIB_BUF_SIZE.size:LIB_BUF_SIZE.size + size])
            check.packet_fields(txid, ptype, state, lib[3], lib[4], len(lib[7]), lib[8])
            staging.saved.packet_count += 1
            tally.chunks += 1
            tally.bytes += CHUNK_HEADER_SIZE + length
            pos, offset = start + length, offset + CHUNK_HEADER_SIZE + length
            continue
        raw = RawChunk(kind, flags, data, offset, buf[pos:start], None, length)
        pos, offset = start + length, offset + CHUNK_HEADER_SIZE + length
        if kind == _END:
            self.end = decode_chunk(raw, "blob")
            self.check_end(digest.digest() if digest is not None else
                           stream.digest_before(raw.offset), raw.offset)
            continue
        tally.chunks += 1
        tally.bytes += CHUNK_HEADER_SIZE + length
        if kind == _PACKET and staging is not None:
            # a channel's first PACKET goes the usual way; what is pending is restored,
            # so the server's staging exists and the run goes straight into it
            self.consumer.take(staging, raw, tally.channels)
            feed.restore(tally.channels, final=False)
            target = feed.server.restore_context
            saved, check = target.saved, target.check
            keep_packet, keep_lib_buf = saved.packets.append, target.lib_bufs.append
            continue
        target = None
        staging = self.add_chunk(staging, raw, [])
        if staging is not None and staging.saved.end is not None:
            done, staging = staging.saved, None
            tally.channels += 1
            tally.packets += done.packet_count
            yield done, []
    if self.end is None:
        raise BlobError(f"body (decompressed offset {offset})", "no end chunk (prototype)")


@contextlib.contextmanager
def fused() -> Iterator[None]:
    """The prototype in place of the reader's loop, for the block."""
    blob_reader.BlobReader.read_channels = fused_read_channels
    try:
        yield
    finally:
        blob_reader.BlobReader.read_channels = ORIGINAL


def restored_state(scenario: Any) -> list[Any]:
    """What a restore put back, to hold the two restores to the same channels."""
    state = []
    for server in scenario.servers:
        packets = sorted((p.transaction_id, p.state, p.type, p.send_flags, p.ring_offset,
                          p.payload, p.vsp_context, p.completion_routine_name)
                         for p in server.packets.values())
        state.append((packets, [p.transaction_id for p in server.backlog],
                      [offset for offset, _ in server.in_ring], server.next_transaction_id,
                      sorted(server.pending_incoming)))
    state.append([sorted(c.pending_incoming) for c in scenario.clients])
    return state


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    workloads.register()
    scenario = workloads.build_channel_workload(args.packets)
    state = workloads.plain_state(scenario)
    times: dict[str, list[float]] = {"save": [], "restore": [], "fused": [], "base": []}
    with tempfile.TemporaryDirectory() as tmp:
        blob, pickled = os.path.join(tmp, "channel.vmb"), os.path.join(tmp, "p.zst")
        workloads.write_blob(blob, scenario)
        with fused():
            mine = restored_state(restore_file(blob))
        if mine != restored_state(restore_file(blob)):
            raise SystemExit("the prototype restored other channels than restore_file")
        del mine
        for round_ in range(args.rounds):
            times["save"].append(timed(lambda: workloads.write_blob(blob, scenario))[0])
            for way in ("restore", "fused") if round_ % 2 == 0 else ("fused", "restore"):
                with fused() if way == "fused" else contextlib.nullcontext():
                    seconds, restored = timed(lambda: restore_file(blob))
                times[way].append(seconds)
                del restored
            seconds, _ = timed(lambda: (harness.baseline_save(pickled, state),
                                        harness.baseline_restore(pickled)))
            times["base"].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.packets:,} packets, {args.rounds} rounds, load average "
          f"{os.getloadavg()[0]:.1f}")
    for key, label in (("save", "save"), ("restore", "restore_file"),
                       ("fused", "restore, PACKETs in one loop (prototype)"),
                       ("base", "pickle+zstd save + restore")):
        print(f"  {label:42s} {med[key]:.3f} s  {[round(t, 3) for t in times[key]]}")
    print(f"  the loop takes {1 - med['fused'] / med['restore']:.0%} off restore_file; "
          f"target 1: {(med['save'] + med['restore']) / med['base']:.2f}x now, "
          f"{(med['save'] + med['fused']) / med['base']:.2f}x with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
