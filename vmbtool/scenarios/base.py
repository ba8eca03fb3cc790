"""What every simulated scenario shares: a VSP (host) and VSC (guest) pair on one bus.

A scenario's future is a function of (seed, steps taken) and the channel state: each
step draws from a fresh RNG seeded by (scenario, seed, step number), so nothing of the
RNG needs saving and a restored scenario carries on exactly as the original would.
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
from collections.abc import Callable
from typing import ClassVar
from uuid import UUID

from vmbtool import kmcl, stop
from vmbtool.sim import (
    ClientChannel,
    ClientState,
    IncomingPacket,
    ServerChannel,
    StateCallbacks,
    VmbPacket,
    VmBus,
)
from vmbtool.status import NtStatus
from vmbtool.text import plural

# (each packet's save and restore meet these: bound once, as in kmcl.staging)
_SUCCESS, _BUFFER_TOO_SMALL = NtStatus.SUCCESS, NtStatus.BUFFER_TOO_SMALL


class ScenarioError(RuntimeError):
    """A simulated VSP or VSC saw its library call fail: a bug in the simulation."""


class ProtocolError(ValueError):
    """A peer's message that breaks the scenario's protocol (short, or naming something
    that does not exist): the simulated VSP or VSC logs it and drops it, as a real one
    must with whatever a restored ring or a hostile peer hands it."""


def unpack(layout: struct.Struct, payload: bytes, what: str) -> tuple:
    """A peer's message parsed with `layout`; one too short is a ProtocolError."""
    if len(payload) < layout.size:
        raise ProtocolError(f"{what} of {len(payload)} bytes, need {layout.size}")
    return layout.unpack_from(payload)


def check(status: NtStatus, what: str) -> None:
    if status not in (NtStatus.SUCCESS, NtStatus.PENDING):
        raise ScenarioError(f"{what} failed with {NtStatus(status)!s}")


def instance_guid(scenario: str, seed: int) -> UUID:
    """A device instance id derived from the seed, as a host would assign one."""
    return UUID(bytes=hashlib.sha256(f"{scenario}/{seed}".encode()).digest()[:16], version=4)


class Scenario:
    """A seeded, deterministic VSP/VSC pair driving traffic step by step."""

    name: ClassVar[str]
    interface_type: ClassVar[UUID]
    channel_count: ClassVar[int] = 1
    # the states the VSC leaves its channels in: it opens and starts each at once and
    # never pauses one, so it has no code to carry on from a guest channel in another
    guest_states: ClassVar[frozenset[ClientState]] = frozenset({ClientState.ACTIVE})

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.instance = instance_guid(self.name, seed)  # the device instance it offers
        self.steps_taken = 0
        self.bus = VmBus()
        self.servers: list[ServerChannel] = []
        self.clients: list[ClientChannel] = []
        self.transcript: list[str] = []

    # -- set-up ------------------------------------------------------------------
    @classmethod
    def create(cls, seed: int) -> Scenario:
        """Allocate, configure, offer, open and start every channel."""
        scenario = cls(seed)
        scenario.servers = [scenario.allocate_server(i) for i in range(cls.channel_count)]
        for server in scenario.servers:
            check(server.enable(), "server enable")
            check(server.start(), "server start")
        for index in range(cls.channel_count):
            client = scenario.allocate_client(index)
            scenario.clients.append(client)
            check(client.enable(), "client enable")
            check(client.start(), "client start")
        scenario.after_open()
        return scenario

    @classmethod
    def restoring(cls, instance: UUID) -> Scenario:
        """A scenario to restore a blob into, before its seed is read: its channels
        offer `instance`, the device instance the blob's channels name (the seed and
        the steps taken come with the scenario chunk, after the channels; the chunk's
        check then holds the instance to the one its seed gives)."""
        scenario = cls(0)
        scenario.instance = instance
        return scenario

    def allocate_server(self, index: int) -> ServerChannel:
        """A fresh server channel configured with this scenario's offer: create and
        restore both start here, so a restore targets the same offer."""
        channel = self.bus.allocate_server_channel()
        self.configure_common(channel, index)
        check(channel.init_set_save_restore_packet_callbacks(
            self.save_packet, self.restore_packet), "init save/restore callbacks")
        self.configure_server(channel, index)
        return channel

    def allocate_client(self, index: int) -> ClientChannel:
        channel = self.bus.allocate_client_channel()
        self.configure_common(channel, index)
        self.configure_client(channel, index)
        return channel

    def configure_common(self, channel: ServerChannel | ClientChannel, index: int) -> None:
        check(channel.init_set_target_interface_id(
            self.interface_type, self.instance, index), "init interface id")
        check(channel.init_set_friendly_name(f"{self.name}-{index}"), "init friendly name")
        if isinstance(channel, ServerChannel):
            process = self.dropping_malformed("host", self.host_process_packet)
        else:
            process = self.dropping_malformed("guest", self.guest_process_packet)
        check(channel.init_set_process_packet_callbacks(process), "init process callbacks")
        check(channel.init_set_state_change_callbacks(StateCallbacks()), "init state callbacks")

    def configure_server(self, channel: ServerChannel, index: int) -> None:
        """Scenario-specific init calls on a server channel."""

    def configure_client(self, channel: ClientChannel, index: int) -> None:
        """Scenario-specific init calls on a client channel."""

    def after_open(self) -> None:
        """Set-up once every channel is open (GPADLs, handshakes)."""

    def dropping_malformed(self, who: str, handler: Callable) -> Callable:
        """A process-packet callback that completes and drops a malformed packet."""

        def process(channel, incoming: IncomingPacket) -> None:
            try:
                handler(channel, incoming)
            except ProtocolError as exc:
                self.log(f"{who} dropped malformed packet txid={incoming.transaction_id}: "
                         f"{exc}")
                channel.packet_complete(incoming)

        return process

    # -- running -----------------------------------------------------------------
    def rng(self) -> random.Random:
        return random.Random(f"{self.name}/{self.seed}/{self.steps_taken}")

    def step(self) -> None:
        rng = self.rng()
        self.host_step(rng)
        self.guest_step(rng)
        for server in self.servers:
            server.tick()
        self.steps_taken += 1

    def run(self, steps: int, pause_at: int | None = None,
            on_step: Callable[[], None] | None = None) -> None:
        """Run `steps` steps; at step `pause_at` pause and start the channels again
        (a save point minus the save). `on_step` is called after each step (a progress
        bar's tick). A stop asked for by a signal whose first raise CPython swallowed
        ends the run at the next step (`stop.check`)."""
        for _ in range(steps):
            stop.check()
            if pause_at is not None and self.steps_taken == pause_at:
                self.pause()
                self.start()
            self.step()
            if on_step is not None:
                on_step()

    def pause(self) -> None:
        """A save point: pause every server channel (the guest is frozen with the VM)."""
        for server in self.servers:
            check(server.pause(), "server pause")

    def start(self) -> None:
        for server in self.servers:
            check(server.start(), "server start")

    def channel_index(self, channel: ServerChannel | ClientChannel) -> int:
        return channel.config.subchannel_index

    def log(self, event: str) -> None:
        self.transcript.append(f"{self.steps_taken}:{event}")

    # -- what each scenario supplies ----------------------------------------------
    def host_step(self, rng: random.Random) -> None:
        raise NotImplementedError

    def guest_step(self, rng: random.Random) -> None:
        raise NotImplementedError

    def host_process_packet(self, channel: ServerChannel, incoming: IncomingPacket) -> None:
        raise NotImplementedError

    def guest_process_packet(self, channel: ClientChannel, incoming: IncomingPacket) -> None:
        raise NotImplementedError

    # KMCL per-packet save/restore callbacks (EvtVmbChannelSavePacket / RestorePacket)
    def save_packet(self, channel: ServerChannel, packet: VmbPacket,
                    size: int) -> tuple[NtStatus, bytes, int]:
        """First call passes size 0: a VSP with state fails it and says how much it needs."""
        state = self.encode_packet_state(packet)
        if size < len(state):
            return _BUFFER_TOO_SMALL, b"", len(state)
        return _SUCCESS, state, len(state)

    def restore_packet(self, channel: ServerChannel, lib_buf: bytes, save_buf: bytes) -> NtStatus:
        packet = channel.packet_allocate()
        if packet is None:
            return NtStatus.INSUFFICIENT_RESOURCES
        status = kmcl.packet_restore(packet, lib_buf)
        if status != _SUCCESS:
            return status
        name = packet.completion_routine_name
        if name:
            routine = self.routines_by_name.get(name)
            if routine is None:
                return NtStatus.INVALID_PARAMETER  # a routine this VSP never had
            packet.set_completion_routine(name, routine)
        return self.decode_packet_state(channel, packet, save_buf)

    def completion_routines(self) -> dict[str, Callable[[VmbPacket, int, bytes], None]]:
        """Completion routines by the name a save keeps of them (host and guest)."""
        return {}

    @functools.cached_property
    def routines_by_name(self) -> dict[str, Callable[[VmbPacket, int, bytes], None]]:
        """`completion_routines()`, asked once (a restore looks one up a packet)."""
        return self.completion_routines()

    def encode_packet_state(self, packet: VmbPacket) -> bytes:
        """The VSP's own per-transaction state for a packet object (may be empty)."""
        return b""

    def decode_packet_state(self, channel: ServerChannel, packet: VmbPacket,
                            state: bytes) -> NtStatus:
        if state:
            return NtStatus.INVALID_PARAMETER
        return NtStatus.SUCCESS

    # scenario-level state the simulated VSP and VSC keep beyond their packets
    def encode_vsp_state(self) -> bytes:
        return b""

    def decode_vsp_state(self, state: bytes) -> None:
        if state:
            raise ValueError(f"{self.name} VSP keeps no state, blob has {len(state)} bytes")

    def encode_vsc_state(self) -> bytes:
        return b""

    def decode_vsc_state(self, state: bytes) -> None:
        if state:
            raise ValueError(f"{self.name} VSC keeps no state, blob has {len(state)} bytes")

    # -- summary --------------------------------------------------------------------
    def summary(self) -> dict:
        """Where the scenario stands, as `vmbtool run --json` prints it."""
        channels = []
        for server in self.servers:
            states: dict[str, int] = {}
            for packet in server.packets_in_use():
                states[packet.state.label] = states.get(packet.state.label, 0) + 1
            channels.append({
                "channel": server.config.subchannel_index,
                "friendly_name": server.config.friendly_name,
                "state": server.state.name.lower(),
                "rings": {name: {"used_bytes": ring.used_bytes, "size": ring.data_size}
                          for name, ring in (("outgoing", server.outgoing_ring),
                                             ("incoming", server.incoming_ring))},
                "packets": states, "backlog": len(server.backlog),
                "pending_incoming": len(server.pending_incoming)})
        return {"scenario": self.name, "seed": self.seed, "steps_taken": self.steps_taken,
                "channels": channels, "events": len(self.transcript),
                "last_event": self.transcript[-1] if self.transcript else None}

    def describe(self) -> list[str]:
        """`summary()` in words, one line per channel."""
        s = self.summary()
        lines = [f"scenario {s['scenario']}, seed {s['seed']}, "
                 f"{plural(s['steps_taken'], 'step')}"]
        for ch in s["channels"]:
            out, inc = ch["rings"]["outgoing"], ch["rings"]["incoming"]
            packets = ", ".join(f"{n} {state}" for state, n in ch["packets"].items()) or "none"
            lines.append(
                f"  channel {ch['channel']} ({ch['friendly_name']}): {ch['state']}, "
                f"out ring {out['used_bytes']}/{out['size']} B, in ring "
                f"{inc['used_bytes']}/{inc['size']} B, packets: {packets}; backlog "
                f"{ch['backlog']}; pending incoming {ch['pending_incoming']}")
        return lines

