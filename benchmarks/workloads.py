"""Benchmark workloads: paused channels with N packet objects in use, and big blobs.

Everything is built through the simulated bus's own calls (allocate, send, poll, pause),
so the state is one the library could really be in:

* the outgoing ring first carries packets the guest reads but does not complete
  (awaiting completion; the guest holds them as pending incoming packets), then packets
  it has not read yet (in the ring), then fire-and-forget filler until the ring has no
  room for another packet object, so the rest wait in the backlog;
* the guest fills the incoming ring with fire-and-forget packets the host has not read;
* every packet object carries 64-256 bytes of inline payload and 64-256 bytes of VSP
  state, which the VSP's save-packet callback hands to the library.

The `bench-<pages>p` scenarios are not vmbtool's: `register()` adds them to
`vmbtool.scenarios.SCENARIOS` in this process so that `restore_file` (and `validate`,
run through `CLI_WRAPPER`) know them.

Blob files are written by `write_blob` only: the one place to switch to a streaming
writer.
"""

from __future__ import annotations

import json
import os
import random
import struct
from dataclasses import asdict, dataclass
from uuid import UUID

from vmbtool.scenarios import SCENARIOS
from vmbtool.scenarios.base import Scenario, check
from vmbtool.sim import (
    ClientChannel,
    IncomingPacket,
    SendFlags,
    ServerChannel,
    VmbPacket,
)
from vmbtool.status import NtStatus

PAGE = 4096
WIRE_OVERHEAD = 16 + 8  # descriptor + trailer of an inband packet
SMALL = (64, 256)  # inline payload and VSP state of the N-packet workloads
LARGE = (16 << 10, 60 << 10)  # payload of the big blob's in-ring and backlog packets
MIB = 1 << 20
MAX_PACKET = 0x10000  # the bench VSP's and VSC's maximum packet size
RING_SIZES = (256, 2048, 4095)  # pages: the N-packet channels, the quick and 1 GiB blobs
WORKLOAD_VERSION = 4  # part of a kept blob's name: bump when the builder changes
# SaveContinue / RestoreFromBuffer buffer size: the largest chunk must fit (a ring of
# 4095 pages is a 16 MiB chunk; vmbtool's default of 1 MiB is too small for these rings)
BUFFER_SIZE = 32 * MIB + 4096


class BenchScenario(Scenario):
    """A VSP that sends inband requests and keeps opaque per-packet state.

    A scenario's VSP and VSC configure their channels themselves (restore checks the
    saved configuration against theirs), so each ring size is its own scenario:
    `bench-<pages>p`, made by `bench_scenario`."""

    name = "bench"
    interface_type = UUID("5be0a1c4-3f1e-4d8a-9c55-0b3e2a7d9f01")
    ring_pages = 256

    def configure_server(self, channel: ServerChannel, index: int) -> None:
        check(channel.init_set_maximum_packet_size(MAX_PACKET), "max packet size")

    def configure_client(self, channel: ClientChannel, index: int) -> None:
        check(channel.init_set_ring_buffer_page_counts(self.ring_pages, self.ring_pages),
              "ring pages")
        check(channel.init_set_maximum_packet_size(MAX_PACKET), "max packet size")

    def host_process_packet(self, channel: ServerChannel, incoming: IncomingPacket) -> None:
        pass  # the host never polls in these workloads

    def guest_process_packet(self, channel: ClientChannel, incoming: IncomingPacket) -> None:
        pass  # the guest holds what it read: pending incoming until it completes

    def host_step(self, rng: random.Random) -> None:
        pass

    def guest_step(self, rng: random.Random) -> None:
        pass

    def completion_routines(self):
        return {"bench_done": self.packet_done}

    def packet_done(self, packet: VmbPacket, status: int, payload: bytes) -> None:
        pass

    def encode_packet_state(self, packet: VmbPacket) -> bytes:
        return packet.vsp_context or b""

    def decode_packet_state(self, channel, packet: VmbPacket, state: bytes) -> NtStatus:
        packet.vsp_context = bytes(state)
        return NtStatus.SUCCESS


def bench_scenario(ring_pages: int) -> type[BenchScenario]:
    """The `bench` scenario with rings of `ring_pages`, known to this process's vmbtool."""
    name = f"bench-{ring_pages}p"
    cls = SCENARIOS.get(name)
    if cls is None:
        cls = type(f"BenchScenario{ring_pages}", (BenchScenario,),
                   {"name": name, "ring_pages": ring_pages, "__module__": __name__})
        SCENARIOS[name] = cls
    return cls


def register() -> None:
    """Make the `bench` scenarios of every ring size used here known to vmbtool."""
    for pages in RING_SIZES:
        bench_scenario(pages)


# `python3 -c CLI_WRAPPER validate big.vmb`: the vmbtool console script with `bench` known.
HERE = os.path.dirname(os.path.abspath(__file__))
CLI_WRAPPER = (f"import sys; sys.path.insert(0, {HERE!r}); import workloads; "
               "workloads.register(); sys.argv[0] = 'vmbtool'; from vmbtool.cli import main; "
               "main()")


# -- content ------------------------------------------------------------------------


class Content:
    """Deterministic, moderately compressible bytes (about 5 bits of entropy a byte),
    cut from a pool larger than a zstd level-3 window so repeats are rare."""

    POOL = 16 * MIB

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"bench-content/{seed}")
        alphabet = bytes(range(0x20, 0x40))  # 32 symbols
        self.pool = self.rng.randbytes(self.POOL).translate(bytes(alphabet[b % 32]
                                                                 for b in range(256)))

    def take(self, size_range: tuple[int, int]) -> bytes:
        size = self.rng.randint(*size_range)
        start = self.rng.randrange(self.POOL - size)
        return self.pool[start:start + size]


# -- channel workloads -------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """How one channel is filled. Counts are packet objects in use."""

    awaiting: int
    in_ring: int  # at most: fewer when the ring fills first (the rest go to the backlog)
    backlog: int
    ring_pages: int = 256
    payload: tuple[int, int] = SMALL  # in-ring and backlog packets
    awaiting_payload: tuple[int, int] = SMALL
    vsp_state: tuple[int, int] = SMALL
    filler_payload: int = 0x1000  # largest fire-and-forget filler packet

    @property
    def packets(self) -> int:
        return self.awaiting + self.in_ring + self.backlog


def mix(n_packets: int, ring_pages: int = 256) -> ChannelSpec:
    """N packet objects: a third awaiting completion, a third (at most) in the ring, the
    rest in the backlog."""
    third = n_packets // 3
    return ChannelSpec(awaiting=third, in_ring=third, backlog=n_packets - 2 * third,
                       ring_pages=ring_pages)


def wire_size(payload: bytes) -> int:
    return WIRE_OVERHEAD + ((len(payload) + 7) & ~7)


def _send(channel, packet, payload: bytes, flags: int, what: str) -> NtStatus:
    status = channel.packet_send(packet, payload, flags)
    if status not in (NtStatus.SUCCESS, NtStatus.PENDING):
        raise RuntimeError(f"{what}: packet_send failed with {NtStatus(status)!s}")
    return status


def _fill_ring(channel, content: Content, max_payload: int, what: str) -> None:
    """Fire-and-forget packets until no packet object of >= 64 bytes fits."""
    ring = channel.outgoing_ring
    while True:
        room = ring.free_bytes - 1 - WIRE_OVERHEAD  # the writer needs free > total
        size = min(max_payload, room) & ~7
        if size < 8:
            return
        packet = channel.packet_allocate()
        start = content.rng.randrange(content.POOL - size)
        status = _send(channel, packet, content.pool[start:start + size], 0, what)
        assert status == NtStatus.SUCCESS, what


def _object(scenario, server, content: Content, spec: ChannelSpec,
            payload_range: tuple[int, int]) -> tuple[VmbPacket, bytes]:
    packet = server.packet_allocate()
    packet.set_completion_routine("bench_done", scenario.packet_done)
    packet.set_pointer(packet.transaction_id * 0x1000)
    packet.vsp_context = content.take(spec.vsp_state)
    return packet, content.take(payload_range)


def fill_channel(scenario: BenchScenario, index: int, spec: ChannelSpec,
                 content: Content) -> None:
    server, client = scenario.servers[index], scenario.clients[index]
    ring = server.outgoing_ring
    wait = SendFlags.WAIT_FOR_COMPLETION
    # awaiting completion: sent, read by the guest, not completed
    for _ in range(spec.awaiting):
        packet, payload = _object(scenario, server, content, spec, spec.awaiting_payload)
        if not ring.can_write(wire_size(payload)):
            client.poll()
        status = _send(server, packet, payload, wait, "awaiting")
        assert status == NtStatus.SUCCESS
    client.poll()
    # in the ring: sent, not read
    sent = 0
    while sent < spec.in_ring:
        packet, payload = _object(scenario, server, content, spec, spec.payload)
        if not ring.can_write(wire_size(payload)):
            server.packet_free(packet)
            break
        _send(server, packet, payload, wait, "in-ring")
        sent += 1
    _fill_ring(server, content, spec.filler_payload, "host filler")
    # the backlog: no room in the ring
    for _ in range(spec.packets - spec.awaiting - sent):
        packet, payload = _object(scenario, server, content, spec, spec.payload)
        status = _send(server, packet, payload, wait, "backlog")
        assert status == NtStatus.PENDING
    # the guest's unread traffic towards the host
    _fill_ring(client, content, spec.filler_payload, "guest filler")


def build_scenario(specs: list[ChannelSpec], seed: int = 1) -> BenchScenario:
    """A paused `bench` scenario, one server channel per spec, filled as described."""
    (ring_pages,) = {spec.ring_pages for spec in specs}  # one scenario, one ring size
    scenario = bench_scenario(ring_pages)(seed)
    content = Content(seed)
    for index in range(len(specs)):
        server = scenario.allocate_server(index)
        scenario.servers.append(server)
        check(server.enable(), "server enable")
        check(server.start(), "server start")
    for index in range(len(specs)):
        client = scenario.allocate_client(index)
        scenario.clients.append(client)
        check(client.enable(), "client enable")
        check(client.start(), "client start")
    for index, spec in enumerate(specs):
        fill_channel(scenario, index, spec, content)
    scenario.pause()
    return scenario


def build_channel_workload(n_packets: int, seed: int = 1) -> BenchScenario:
    """One channel with `n_packets` packet objects in use on rings of 256 pages."""
    return build_scenario([mix(n_packets)], seed)


def packet_mix(scenario: Scenario) -> dict[str, int]:
    counts: dict[str, int] = {}
    for server in scenario.servers:
        for packet in server.packets_in_use():
            counts[packet.state.label] = counts.get(packet.state.label, 0) + 1
    return counts


# -- the baseline's view of the same state ----------------------------------------


def plain_state(scenario: Scenario) -> dict:
    """The same logical state as plain Python objects (dicts, lists, bytes, ints)."""
    from vmbtool.snapshot import scenario_state
    from vmbtool.state import (
        channel_context,
        gpadl_table,
        incoming_entries,
        packet_context,
        ring_state,
    )

    channels = []
    for server in scenario.servers:
        connection = server.connection
        channels.append({
            "context": channel_context(server),
            "rings": [ring_state(server.incoming_ring, "incoming"),
                      ring_state(server.outgoing_ring, "outgoing")],
            "gpadls": gpadl_table(connection.gpadls if connection else None),
            "packets": [{"lib_buf": packet_context(p), "save_buf":
                         b"" if p.type == 0xB else scenario.encode_packet_state(p)}
                        for p in server.packets_in_use()],
            "incoming": incoming_entries(server),
        })
    return {"channels": channels, "scenario": scenario_state(scenario)}


# -- blob files ----------------------------------------------------------------------


def write_blob(path: str, scenario: Scenario, level: int | None = 3) -> int:
    """Save the scenario to a blob file; returns the file's size.

    The one writer call of the benchmarks: switch it to a streaming writer here."""
    from vmbtool.snapshot import save_blob

    data = save_blob(scenario, chunk_size=BUFFER_SIZE, level=level, created_ns=0)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def read_and_restore(path: str) -> Scenario:
    """What `vmbtool restore` does: a checking pass, then RestoreFromBuffer (vmbtool's
    default buffer) fed as the chunks are decoded."""
    from vmbtool.snapshot import restore_file

    return restore_file(path)


@dataclass(frozen=True)
class BlobSpec:
    """A blob of about `target_bytes` uncompressed: several channels, large rings and
    payloads, a few thousand small packets awaiting completion per channel."""

    target_bytes: int
    channels: int
    ring_pages: int
    awaiting: int

    def channel_specs(self) -> list[ChannelSpec]:
        ring = self.ring_pages * PAGE
        per_channel = self.target_bytes // self.channels
        mean = (LARGE[0] + LARGE[1]) // 2 + (SMALL[0] + SMALL[1]) // 2 + 100
        # two rings, the in-ring packet records (about a ring's worth), awaiting packets
        # (record and the guest's pending copy)
        rest = per_channel - 3 * ring - self.awaiting * 2 * 300
        backlog = max(1, rest // mean)
        in_ring = ring // ((LARGE[0] + LARGE[1]) // 2 + WIRE_OVERHEAD)  # a full ring
        return [ChannelSpec(awaiting=self.awaiting, in_ring=in_ring, backlog=backlog,
                            ring_pages=self.ring_pages, payload=LARGE,
                            filler_payload=MAX_PACKET)
                for _ in range(self.channels)]


GIB_BLOB = BlobSpec(target_bytes=1 << 30, channels=6, ring_pages=4095, awaiting=4000)
SMALL_BLOB = BlobSpec(target_bytes=10 * 10**6, channels=1, ring_pages=256, awaiting=1000)
QUICK_BLOB = BlobSpec(target_bytes=96 * MIB, channels=2, ring_pages=2048, awaiting=2000)


def ensure_blob(directory: str, spec: BlobSpec, seed: int = 1,
                rebuild: bool = False) -> dict:
    """Build the blob once and keep it (with a description beside it) in `directory`."""
    from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR

    os.makedirs(directory, exist_ok=True)
    stem = (f"bench-v{WORKLOAD_VERSION}-{spec.target_bytes}-{spec.channels}x{spec.ring_pages}"
            f"-{spec.awaiting}-s{seed}-f{FORMAT_MAJOR}.{FORMAT_MINOR}")
    path = os.path.join(directory, stem + ".vmb")
    info_path = os.path.join(directory, stem + ".json")
    if not rebuild and os.path.exists(path) and os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        if info.get("file_bytes") == os.path.getsize(path):
            return info
    scenario = build_scenario(spec.channel_specs(), seed)
    info = {"path": path, "spec": asdict(spec), "seed": seed,
            "packets": sum(len(s.packets_in_use()) for s in scenario.servers),
            "mix": packet_mix(scenario)}
    info["file_bytes"] = write_blob(path, scenario)
    info["uncompressed_bytes"] = blob_body_offset(path) + decompressed_size(path)
    with open(info_path, "w") as f:
        json.dump(info, f, indent=1)
    return info


def decompressed_size(path: str) -> int:
    """Bytes of the blob's body after zstd (the header not counted)."""
    import zstandard

    total = 0
    with open(path, "rb") as f:
        f.seek(blob_body_offset(path))
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        while block := reader.read(1 << 20):
            total += len(block)
    return total


def blob_body_offset(path: str) -> int:
    """Where a blob's (compressed) body starts: its header size field."""
    with open(path, "rb") as f:
        prefix = f.read(16)
    return struct.unpack_from("<I", prefix, 12)[0]


__all__ = ["CLI_WRAPPER", "GIB_BLOB", "QUICK_BLOB", "SMALL_BLOB", "BenchScenario",
           "BlobSpec", "ChannelSpec", "bench_scenario", "build_channel_workload", "build_scenario",
           "ensure_blob", "mix", "packet_mix", "plain_state", "read_and_restore",
           "register", "write_blob"]
