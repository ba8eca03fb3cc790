"""Saving a scenario: every server channel through SaveBegin/Continue/End, its
statistics, and the simulated guest in the scenario chunk."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from vmbtool import kmcl
from vmbtool.chunks import frame
from vmbtool.errors import VmbtoolError
from vmbtool.formats import FORMAT_MINOR
from vmbtool.formats.kinds import ChunkType
from vmbtool.formats.limits import MAX_CHUNK_LENGTH
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.scenarios import Scenario
from vmbtool.state import channel_context, incoming_entries, packet_context
from vmbtool.status import NtStatus, NtStatusError

DEFAULT_CHUNK_SIZE = 1 << 20  # RestoreFromBuffer's buffer (a larger chunk goes alone)
SAVE_BUFFER_SIZE = CHUNK_HEADER_SIZE + MAX_CHUNK_LENGTH  # save's: it holds any chunk


def scenario_state(scenario: Scenario) -> dict:
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "steps_taken": scenario.steps_taken,
        "vsp_state": scenario.encode_vsp_state(),
        "vsc_state": scenario.encode_vsc_state(),
        "guests": [
            {"context": channel_context(client),
             "packets": [{"lib_buf": packet_context(p), "save_buf": b""}
                         for p in client.packets_in_use()],
             "pending_incoming": incoming_entries(client)}
            for client in scenario.clients
        ],
    }


def save_chunks(scenario: Scenario, chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                minor: int = FORMAT_MINOR, note: str | None = None) -> list[bytes]:
    """Pause the scenario's channels, save each through SaveBegin/Continue/End: the
    body's framed chunks, in order, each item one or more whole chunks (a channel's
    come in the buffers SaveContinue filled).

    From format 1.1: the note first, each channel's statistics after its state."""
    if note is not None and minor < 1:
        raise VmbtoolError("bad option", "--note", "format 1.0 has no place for a note",
                           NtStatus.INVALID_PARAMETER)
    for server in scenario.servers:
        if server.started:
            status = server.pause()
            if status != NtStatus.SUCCESS:
                raise VmbtoolError("cannot pause", f"channels[{server.config.subchannel_index}]",
                                   f"{NtStatus(status)!s}", NtStatus(status))
    chunks: list[bytes] = []
    if note is not None:
        chunks.append(frame(ChunkType.NOTE, {"text": note}, "note"))
    for index, server in enumerate(scenario.servers):
        try:
            chunks.extend(kmcl.save_channel(server, chunk_size))  # buffers of whole chunks
        except NtStatusError as exc:
            raise VmbtoolError("save failed", f"channels[{index}].{exc.where}",
                               f"{exc.args[0]} ({exc.status!s})", exc.status) from None
        if minor >= 1:
            chunks.append(frame(ChunkType.STATS, {"channel": index, **server.stats.as_dict()},
                                f"channels[{index}].stats"))
    chunks.append(frame(ChunkType.SCENARIO, scenario_state(scenario)))
    return chunks


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a save or a restore makes its many small
    objects (it was 22-28% of a 100,000-packet restore's time; the objects it would
    walk are not garbage), and back as it was after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def save_blob(scenario: Scenario, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
              level: int | None = 3, key: bytes | None = None,
              created_ns: int | None = None, minor: int = FORMAT_MINOR,
              note: str | None = None) -> bytes:
    from vmbtool.blob import encode_blob  # (the writer: a restore imports this module too)

    with paused_gc():
        chunks = save_chunks(scenario, chunk_size, minor=minor, note=note)
        return encode_blob(chunks, len(scenario.servers), level=level, key=key,
                           created_ns=created_ns, minor=minor)


def split_buffers(chunks: list[bytes], buffer_size: int) -> list[bytes]:
    """Group whole chunks into buffers of at most `buffer_size` (one chunk if larger)."""
    buffers, current, size = [], [], 0
    for chunk in chunks:
        if current and size + len(chunk) > buffer_size:
            buffers.append(b"".join(current))
            current, size = [], 0
        current.append(chunk)
        size += len(chunk)
    if current:
        buffers.append(b"".join(current))
    return buffers
