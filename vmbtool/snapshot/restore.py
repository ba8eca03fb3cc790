"""Restoring a blob: fresh server channels through RestoreFromBuffer as the chunks come,
the simulated guest and the VSP's and VSC's own state at the end."""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from typing import IO, Any

from vmbtool.blob import BlobReader, rereadable
from vmbtool.blob.consumers import Feed, Whole
from vmbtool.chunks import RawChunk, decode_chunk
from vmbtool.errors import BlobError, VmbtoolError
from vmbtool.formats import READS
from vmbtool.formats.kinds import ChunkType
from vmbtool.generated.chunk import CHUNK_HEADER_SIZE
from vmbtool.kmcl.restore import rebuild_in_ring, restore_chunks
from vmbtool.scenarios import SCENARIOS, Scenario, by_interface
from vmbtool.sim.channel import ChannelStats, ClientChannel
from vmbtool.sim.packet import PacketState, VmbPacket
from vmbtool.sim.wire import PacketType
from vmbtool.snapshot.check import check_file, check_scenario
from vmbtool.snapshot.save import DEFAULT_CHUNK_SIZE, paused_gc
from vmbtool.state import config_from, fill_packet, incoming_from, set_life_cycle
from vmbtool.status import NtStatus


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


# A body is restored in one read when it decodes to at most ONE_PASS_MAX bytes, or to at
# most ONE_PASS_RATIO times its compressed size. A one-read restore stages what it reads
# (about 1.2 KB of parsed state a staged packet, from at least 54 decoded bytes) before it
# knows the END digest, so what a blob can make it hold before a refusal grows with the
# bytes it really decodes: the first bound caps it for any small file (a PACKET chunk is at
# least 54 bytes, so such a body never stages a channel up to the packet cap, 300 MB), the
# second keeps it in proportion to the file for a large one (blobs of real payloads
# compress 1.5-3x; the benchmarks' 100,000-packet blob 1.65x, the 1 GiB blob 1.76x). A body
# that decodes to more (a compression bomb of valid state: a 1.9 MB file of 300,000
# packets), or does not declare its size, is checked first, in bounded memory, and
# restored in a second read.
ONE_PASS_MAX = 12 << 20
ONE_PASS_RATIO = 4
_CHANNEL, _CHANNEL_END = ChunkType.CHANNEL, ChunkType.CHANNEL_END  # (bound once: see kmcl.staging)


def reads_once(reader: BlobReader) -> bool:
    """Whether `restore_file` restores this reader's body as it checks it (one read)."""
    decoded = reader.decoded_size()
    compressed = reader.frame_end - reader.header.header_size
    return 0 < decoded <= max(ONE_PASS_MAX, ONE_PASS_RATIO * compressed)


def restore_file(source: str | bytes | IO[bytes], key: bytes | None = None,
                 buffer_size: int = DEFAULT_CHUNK_SIZE,
                 reads: tuple[int, int] = READS) -> Scenario:
    """Fresh channels restored from a blob: every problem `validate` finds refuses it,
    the one it names first is named, and nothing restored outlives a refusal.

    A body within the one-read bounds (`reads_once`) is read once (`restore_reader`).
    One the restore refuses for a reason of its own (not the blob's framing) is read
    again by validate's check, whose first problem, if any, is named before the
    restore's own reason. Any other body is checked first (`check_file`), then restored."""
    with paused_gc():
        with rereadable(source) as src:
            error: VmbtoolError | None = None
            with BlobReader(src, key, Whole(), reads=reads,
                            defer_seal=True) as reader:
                once = reads_once(reader)
                if once:
                    try:
                        restored = restore_reader(reader, buffer_size)
                    except RestoreFailed as failed:
                        error = failed.error
            # what the reader holds (the guests' entries, parsed) goes before the collector
            # is back on: its first pass walks every object alive
            del reader
            if once and error is None:
                return restored
            found = check_file(src, key, reads)
            if found.problems:
                raise BlobError(*found.problems[0])
            if error is not None:
                raise error
            try:
                return restore_once(src, key, buffer_size, reads, checked=found.digest)
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
                 reads: tuple[int, int] = READS, checked: bytes | None = None) -> Scenario:
    """One read of a blob: header, signature, body decompressed and digested once, each
    chunk's framing and CRC32C checked once and each channel's chunks handed to a fresh
    server channel's RestoreFromBuffer as they come (`ChannelFeed`), the scenario's
    guest put back at the end. Nothing restored is handed out before the END digest and
    the seal are settled. A problem with the blob's state raises RestoreFailed; one with
    its framing, the reader's BlobError.

    `checked` is the END digest of an earlier read that checked these bytes
    (`check_file`): the channels' invariants are then not checked again, and the blob
    must give that digest again, or nothing restored is handed out."""
    with BlobReader(source, key, Whole(), reads=reads, defer_seal=True) as reader:
        return restore_reader(reader, buffer_size, checked)


def restore_reader(reader: BlobReader, buffer_size: int = DEFAULT_CHUNK_SIZE,
                   checked: bytes | None = None) -> Scenario:
    """`restore_once` on a reader opened for it: its chunks go to the channels."""
    feed = ChannelFeed(buffer_size, checked=checked is not None)
    reader.consumer = Feed(feed.take, feed.take_packet)
    for _channel in reader.channels():
        pass  # each channel was restored as its chunks came
    state, stats = reader.scenario, reader.stats
    if checked is not None and reader.end.digest != checked:
        # the bytes changed between the two reads: what was restored was not checked
        raise BlobError("end.digest", "the blob changed between its check and its restore",
                        NtStatus.CRC_ERROR)
    try:
        if state is None:  # validate names it so too (check_scenario)
            raise BlobError("scenario", "missing: this blob cannot be continued")
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

    def __init__(self, buffer_size: int, checked: bool = False) -> None:
        self.buffer_size = buffer_size
        self.checked = checked  # an earlier read checked the state: not again
        self.scenario: Scenario | None = None  # picked by the first channel's offer
        self.server: Any = None
        self.pending: list[RawChunk] = []
        self.size = 0

    def take(self, index: int, raw: RawChunk) -> None:
        try:
            if raw.type == _CHANNEL and self.server is None:  # its first chunk
                self.start_channel(index, decode_chunk(raw, f"channels[{index}]"))
            elif self.server is None:  # (RestoreFromBuffer would say so of its buffer too)
                raise BlobError(f"channels[{index}].chunk@{raw.offset}.type",
                                "state before the channel chunk")
            size = CHUNK_HEADER_SIZE + len(raw.data)  # a Feed's chunks come whole
            if self.pending and self.size + size > self.buffer_size:
                self.restore(index, final=False)
            self.pending.append(raw)
            self.size += size
            if raw.type == _CHANNEL_END:
                self.restore(index, final=True)
                self.scenario.servers.append(self.server)
                self.server = None
        except VmbtoolError as exc:
            raise RestoreFailed(exc) from None

    def take_packet(self, index: int, raw: RawChunk) -> None:
        """`take` of a PACKET inside the channel (most chunks): into the buffer, which
        goes to RestoreFromBuffer first if it has no room left for it."""
        size = CHUNK_HEADER_SIZE + len(raw.data)
        if self.size + size > self.buffer_size and self.pending:
            try:
                self.restore(index, final=False)
            except VmbtoolError as exc:
                raise RestoreFailed(exc) from None
        self.pending.append(raw)
        self.size += size

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
        status = restore_chunks(self.server, chunks, self.checked)
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
    routines = scenario.routines_by_name
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
        if packet.type != PacketType.COMPLETION:
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
