"""Whole scenarios to blobs and back: every server channel through the KMCL contract,
the simulated guest through the scenario chunk."""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from dataclasses import dataclass
from typing import IO, Any

from vmbtool import kmcl
from vmbtool.blob import Blob, BlobReader, encode_blob, rereadable
from vmbtool.chunks import RawChunk, decode_chunk, frame, framed_chunks
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.formats import FORMAT_MINOR, READS
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE, ChunkType
from vmbtool.formats.limits import MAX_CHUNK_LENGTH
from vmbtool.invariants import Problems, check_channel, check_guest
from vmbtool.kmcl.restore import rebuild_in_ring, restore_chunks
from vmbtool.scenarios import SCENARIOS, Scenario, by_interface
from vmbtool.scenarios.base import instance_guid
from vmbtool.sim.channel import ChannelStats, ClientChannel
from vmbtool.sim.config import ClientState
from vmbtool.sim.packet import PacketState, VmbPacket
from vmbtool.state import (
    channel_context,
    config_from,
    fill_packet,
    incoming_entries,
    incoming_from,
    packet_context,
    set_life_cycle,
)
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
    """Pause the scenario's channels, save each through SaveBegin/Continue/End.

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
            for buffer in kmcl.save_channel(server, chunk_size):
                chunks.extend(framed_chunks(buffer))
        except NtStatusError as exc:
            raise VmbtoolError("save failed", f"channels[{index}].{exc.where}",
                               f"{exc.args[0]} ({exc.status!s})", exc.status) from None
        if minor >= 1:
            chunks.append(frame(ChunkType.STATS, {"channel": index, **server.stats.as_dict()},
                                f"channels[{index}].stats"))
    chunks.append(frame(ChunkType.SCENARIO, scenario_state(scenario)))
    return chunks


def save_blob(scenario: Scenario, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
              level: int | None = 3, key: bytes | None = None,
              created_ns: int | None = None, minor: int = FORMAT_MINOR,
              note: str | None = None) -> bytes:
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


def check_blob(blob: Blob) -> list[tuple[str, str]]:
    """Every semantic problem in the blob's channels and scenario."""
    problems = []
    for index, saved in enumerate(blob.channels):
        problems.extend(check_channel(saved, f"channels[{index}]"))
    offers = [config_from(saved.context).offer_key for saved in blob.channels]
    return problems + check_scenario(blob.scenario, offers)


def check_scenario(state: Any, offers: list[tuple]) -> list[tuple[str, str]]:
    """The scenario chunk against the channels' offers (interface, instance, index)."""
    if state is None:
        return [("scenario", "missing: this blob cannot be continued")]
    problems = []
    cls = SCENARIOS.get(state.scenario)
    if cls is None:
        problems.append(("scenario.scenario", f"unknown scenario {state.scenario!r}"))
    else:
        instance = instance_guid(state.scenario, state.seed)
        for index, offer in enumerate(offers):
            if offer != (cls.interface_type, instance, index):
                problems.append((f"channels[{index}].context.offer",
                                 f"not the offer of {state.scenario} channel {index} "
                                 f"(seed {state.seed})"))
    if len(state.guests) != len(offers):
        problems.append(("scenario.guests", f"{len(state.guests)} guest channels for "
                         f"{len(offers)} channels"))
    for index, guest in enumerate(state.guests):
        where = f"scenario.guests[{index}]"
        # a lean read checked each guest as it came and kept only its problems
        problems.extend(guest.problems if "problems" in guest else check_guest(guest, where))
        if index < len(offers) and config_from(guest.context).offer_key != offers[index]:
            problems.append((f"{where}.context", "the guest channel names another offer"))
        if cls is not None and guest.context.state not in cls.guest_states:
            problems.append((f"{where}.context.state", f"{client_state(guest.context.state)}: "
                             f"the {state.scenario} VSC keeps its channels "
                             + " or ".join(client_state(s) for s in sorted(cls.guest_states))))
    return problems


def client_state(value: int) -> str:
    """A guest channel's saved state by name (its number when it names none)."""
    try:
        return ClientState(value).name.lower()
    except ValueError:
        return str(value)


def restore_blob(blob: Blob, buffer_size: int = DEFAULT_CHUNK_SIZE) -> Scenario:
    """Fresh channels, restored chunk by chunk, the guest rebuilt; nothing started.

    Every channel and the scenario are checked first (the first problem named is the
    one `validate` lists first), so nothing is restored from a blob with a lie in it;
    each RestoreFromBuffer then checks its own channel again, as the contract says."""
    problems = check_blob(blob)
    if problems:
        where, why = problems[0]
        raise BlobError(where, why)
    state = blob.scenario
    scenario = SCENARIOS[state.scenario](state.seed)
    scenario.steps_taken = state.steps_taken
    feed = ChannelFeed(buffer_size, scenario, as_buffers=True)
    try:
        for index, raw_chunks in enumerate(blob.channel_chunks):
            for raw in raw_chunks:
                feed.take(index, raw)
    except RestoreFailed as failed:
        raise failed.error from None
    restore_scenario(scenario, state, blob.stats)
    return scenario


def restore_scenario(scenario: Scenario, state: Any, stats: dict[int, Any]) -> None:
    """Once the server channels are back: their statistics (`stats`: the STATS chunks
    by channel), the guest's channels and the VSP's and VSC's own state."""
    for index, saved in stats.items():
        scenario.servers[index].stats = ChannelStats(
            **{k: saved[k] for k in ChannelStats().as_dict()})
    for index, guest in enumerate(state.guests):
        client = scenario.allocate_client(index)
        restore_guest(scenario, client, guest, index)
        scenario.clients.append(client)
    for name in ("vsp_state", "vsc_state"):
        try:
            getattr(scenario, f"decode_{name}")(bytes(getattr(state, name)))
        except (ValueError, KeyError, struct.error) as exc:
            raise BlobError(f"scenario.{name}", f"cannot be restored: {exc}") from None


@dataclass
class FileCheck:
    """What a lean read with every check found in a blob: validate's verdict, and a
    streamed restore's first pass."""

    problems: Problems
    version: str
    channels: int
    packets: int
    decoded: int  # bytes of chunks (headers and data) the body decodes to
    scenario: Any  # the scenario chunk as a lean read keeps it (no guest packets)


def check_file(source: str | bytes | IO[bytes], key: bytes | None = None,
               reads: tuple[int, int] = READS) -> FileCheck:
    """Grammar, checksums, version, signature and semantic invariants of one blob, in
    bounded memory: each channel's parts are checked as they stream past and dropped.

    Problems of the blob's content are listed; a blob that cannot be read on (framing,
    checksums, digest, caps) raises its BlobError."""
    with BlobReader(source, key, keep_chunks=False, reads=reads, lean=True,
                    defer_seal=True) as reader:
        return check_reader(reader)


def check_reader(reader: BlobReader) -> FileCheck:
    """`check_file` on a reader opened for it (lean, with checks)."""
    problems, offers, packets = Problems(), [], 0
    for saved, _chunks in reader.channels():
        problems.extend(saved.problems or [])
        offers.append(config_from(saved.context).offer_key)
        packets += saved.packet_count
        del saved  # nothing of a checked channel outlives the next one
    problems.extend(check_scenario(reader.scenario, offers))
    return FileCheck(problems, reader.version, len(offers), packets, reader.tally.bytes,
                     reader.scenario)


# A body that decodes to at most this is restored in one read. A PACKET chunk is at
# least 54 bytes, so such a body holds fewer than limits.MAX_PACKETS_PER_CHANNEL of
# them: the one read never stages a channel up to the packet cap (about 1.2 KB of parsed
# state a staged packet: 300 MB at the cap). A larger body, or one that does not declare
# its size, is checked first, in bounded memory, and restored in a second read.
ONE_PASS_MAX = 12 << 20


def restore_file(source: str | bytes | IO[bytes], key: bytes | None = None,
                 buffer_size: int = DEFAULT_CHUNK_SIZE,
                 reads: tuple[int, int] = READS) -> Scenario:
    """Fresh channels restored from a blob: every problem `validate` finds refuses it,
    the one it names first is named, and nothing restored outlives a refusal.

    A body of at most ONE_PASS_MAX decoded bytes is read once (`restore_reader`). One the
    restore refuses for a reason of its own (not the blob's framing) is read again by
    validate's check, whose first problem, if any, is named before the restore's own
    reason. A larger body is checked first (`check_file`), then restored."""
    with rereadable(source) as src:
        with BlobReader(src, key, keep_chunks=False, reads=reads,
                        defer_seal=True) as reader:
            if 0 < reader.decoded_size() <= ONE_PASS_MAX:
                try:
                    return restore_reader(reader, buffer_size)
                except RestoreFailed as failed:
                    error: VmbtoolError | None = failed.error
            else:
                error = None
        found = check_file(src, key, reads)
        if found.problems:
            raise BlobError(*found.problems[0])
        if error is not None:
            raise error
        try:
            return restore_once(src, key, buffer_size, reads)
        except RestoreFailed as failed:
            raise failed.error from None


class RestoreFailed(Exception):
    """A one-pass restore stopped on a problem with the blob's state (`error`), not
    with its framing: the caller asks validate's check which problem to name."""

    def __init__(self, error: VmbtoolError) -> None:
        super().__init__(error.where, error.why)
        self.error = error


def restore_once(source: str | bytes | IO[bytes], key: bytes | None = None,
                 buffer_size: int = DEFAULT_CHUNK_SIZE,
                 reads: tuple[int, int] = READS) -> Scenario:
    """One read of a blob: header, signature, body decompressed and digested once, each
    chunk's framing and CRC32C checked once and each channel's chunks handed to a fresh
    server channel's RestoreFromBuffer as they come (`ChannelFeed`), the scenario's
    guest put back at the end. Nothing restored is handed out before the END digest and
    the seal are settled. A problem with the blob's state raises RestoreFailed; one with
    its framing, the reader's BlobError."""
    with BlobReader(source, key, keep_chunks=False, reads=reads, defer_seal=True) as reader:
        return restore_reader(reader, buffer_size)


def restore_reader(reader: BlobReader, buffer_size: int = DEFAULT_CHUNK_SIZE) -> Scenario:
    """`restore_once` on a reader opened for it: its chunks go to the channels."""
    feed = ChannelFeed(buffer_size)
    reader.lean = False
    reader.feed = feed.take
    for _channel in reader.channels():
        pass  # each channel was restored as its chunks came
    state, stats = reader.scenario, reader.stats
    try:
        scenario = feed.scenario
        if scenario is None:  # a blob of no channels: its scenario chunk says which
            if state.scenario not in SCENARIOS:
                raise BlobError("scenario.scenario", f"unknown scenario {state.scenario!r}")
            scenario = SCENARIOS[state.scenario](state.seed)
        problems = check_scenario(state, [s.config.offer_key for s in scenario.servers])
        if problems:
            raise BlobError(*problems[0])
        scenario.seed, scenario.steps_taken = state.seed, state.steps_taken
        restore_scenario(scenario, state, stats)
    except VmbtoolError as exc:
        raise RestoreFailed(exc) from None
    return scenario


class ChannelFeed:
    """Each channel's chunks, as a reader checks them, into a fresh server channel
    through RestoreFromBuffer's staging (`kmcl.restore.restore_chunks`: the reader
    checked their framing and CRCs): whole chunks, at most `buffer_size` bytes a call (a
    larger chunk alone), with MORE_PROCESSING_REQUIRED until the channel's end.

    The VSP is picked by the interface type the first channel offers, its channels offer
    the device instance the blob's do (the scenario chunk, last in the blob, holds the
    seed that must give it)."""

    def __init__(self, buffer_size: int, scenario: Scenario | None = None,
                 as_buffers: bool = False) -> None:
        self.buffer_size = buffer_size
        self.scenario = scenario  # None: picked by the first channel's offer
        # True: each group framed into one buffer for the public restore_from_buffer,
        # which splits and checks it again (the whole-blob restore_blob)
        self.as_buffers = as_buffers
        self.server: Any = None
        self.pending: list[RawChunk] = []
        self.size = 0

    def take(self, index: int, raw: RawChunk) -> None:
        try:
            if raw.type == ChunkType.CHANNEL:  # a channel's first chunk
                self.start_channel(index, decode_chunk(raw, f"channels[{index}]"))
            size = CHUNK_HEADER_SIZE + raw.length
            if self.pending and self.size + size > self.buffer_size:
                self.restore(index, final=False)
            self.pending.append(raw)
            self.size += size
            if raw.type == ChunkType.CHANNEL_END:
                self.restore(index, final=True)
                self.scenario.servers.append(self.server)
        except VmbtoolError as exc:
            raise RestoreFailed(exc) from None

    def start_channel(self, index: int, context: Any) -> None:
        config = config_from(context)
        if self.scenario is None:
            cls = by_interface(config.interface_type)
            if cls is None:
                raise BlobError(f"channels[{index}].context.interface_type",
                                f"no scenario's VSP offers {config.interface_type}")
            self.scenario = cls.restoring(config.interface_instance)
        self.server = self.scenario.allocate_server(index)
        check_config(self.server.config, context, f"channels[{index}]",
                     f"{self.scenario.name} VSP")

    def restore(self, index: int, final: bool) -> None:
        chunks, self.pending, self.size = self.pending, [], 0
        if self.as_buffers:
            status = kmcl.restore_from_buffer(self.server, b"".join(c.framed for c in chunks))
        else:
            status = restore_chunks(self.server, chunks)
        if status != (NtStatus.SUCCESS if final else NtStatus.MORE_PROCESSING_REQUIRED):
            raise restore_failure(self.server.restore_error, index, NtStatus(status))


def restore_failure(error: Any, index: int, status: NtStatus) -> BlobError:
    """RestoreFromBuffer's failure, named as `validate` names it: `channels[i].<field>`
    (its own paths start at `channel`); a problem with the saved data (DATA_ERROR) is
    said as validate says it, any other status is added to the reason once."""
    where = f"channels[{index}]"
    if error is not None and error.where:
        path = error.where
        where += path[len("channel"):] if path.split(".")[0] == "channel" else f".{path}"
    why = error.args[0] if error is not None else "unexpected status"
    if status != NtStatus.DATA_ERROR and str(status) not in why:
        why = f"{why} ({status!s})"
    return BlobError(where, why, status)


def check_config(expected: Any, context: Any, where: str, who: str) -> None:
    """A scenario's VSP and VSC configure their own channels (the init calls): a saved
    configuration that differs is not theirs, and they cannot carry on with it."""
    saved = config_from(context)
    for item in dataclasses.fields(saved):
        ours, theirs = getattr(expected, item.name), getattr(saved, item.name)
        if ours != theirs:
            raise BlobError(f"{where}.context.{item.name}",
                            f"blob has {theirs}, the {who} configures {ours}")


def restore_guest(scenario: Scenario, client: ClientChannel, guest: Any, index: int) -> None:
    """Put the simulated guest's channel back: it lives in guest memory, not in KMCL."""
    where = f"scenario.guests[{index}]"
    server = scenario.servers[index]
    config = config_from(guest.context)
    if config.offer_key != server.config.offer_key:
        raise BlobError(f"{where}.context", "the guest channel names another offer")
    check_config(client.config, guest.context, where, f"{scenario.name} VSC")
    client.config = config
    ctx = guest.context
    client.next_transaction_id = ctx.next_transaction_id
    client.next_incoming_number = ctx.next_incoming_number
    set_life_cycle(client, ctx.state)
    if client.opened != (server.connection is not None):  # each end of one connection
        raise BlobError(f"{where}.context.state",
                        f"the guest channel is {'' if client.opened else 'not '}open, the "
                        f"server channel is {'' if server.connection else 'not '}open")
    routines = scenario.completion_routines()
    client.packets, client.backlog = {}, deque()
    for record in guest.packets:
        packet = VmbPacket(channel=client)
        fill_packet(packet, record.lib_buf)
        if packet.completion_routine_name:
            routine = routines.get(packet.completion_routine_name)
            if routine is None:
                raise BlobError(f"{where}.packets[txid={packet.transaction_id}]",
                                f"unknown completion routine {packet.completion_routine_name!r}")
            packet.completion_routine = routine
        if packet.type != 0xB:
            client.packets[packet.transaction_id] = packet
        if packet.state == PacketState.BACKLOG:
            client.backlog.append(packet)
    client.pending_incoming = {}
    for entry in guest.pending_incoming.packets:
        incoming = incoming_from(entry)
        client.pending_incoming[incoming.number] = incoming
    connection = server.connection
    if connection is not None and client.opened:
        connection.client = client
        client.connection = connection
        rebuild_in_ring(client)
