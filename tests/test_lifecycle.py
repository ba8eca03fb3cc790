"""Channel life cycle, init calls and NTSTATUS values (DOMAIN.md §2 and §4)."""

from __future__ import annotations

from uuid import UUID

import pytest

from vmbtool.sim import (
    ClientChannel,
    ClientState,
    IncomingPacket,
    SendFlags,
    ServerChannel,
    ServerState,
    StateCallbacks,
    VmBus,
)
from vmbtool.status import NtStatus

IFACE = UUID("11111111-2222-4333-8444-555555555555")
INSTANCE = UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")
OK = NtStatus.SUCCESS


def _noop_process(channel, incoming) -> None:
    pass


def _noop_save(channel, packet, size):
    return NtStatus.SUCCESS, b"", 0


def _noop_restore(channel, lib_buf, save_buf):
    return NtStatus.SUCCESS


def configure(channel, process=_noop_process, callbacks: StateCallbacks | None = None) -> None:
    """The init calls every channel needs before enable (as Scenario.configure_common)."""
    assert channel.init_set_target_interface_id(IFACE, INSTANCE, 0) == OK
    assert channel.init_set_process_packet_callbacks(process) == OK
    if callbacks is not None:
        assert channel.init_set_state_change_callbacks(callbacks) == OK
    if isinstance(channel, ClientChannel):
        assert channel.init_set_ring_buffer_page_counts(1, 1) == OK


def make_pair(bus: VmBus | None = None, start: bool = True) -> tuple[ServerChannel, ClientChannel]:
    bus = bus or VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    configure(server)
    configure(client)
    assert server.enable() == OK
    assert client.enable() == OK
    if start:
        assert server.start() == OK
        assert client.start() == OK
    return server, client


# -- DOMAIN §4: the NTSTATUS table, copied by hand ------------------------------------
DOMAIN_STATUS_TABLE = {
    "SUCCESS": 0x00000000,
    "PENDING": 0x00000103,
    "BUFFER_OVERFLOW": 0x80000005,
    "UNSUCCESSFUL": 0xC0000001,
    "INVALID_PARAMETER": 0xC000000D,
    "MORE_PROCESSING_REQUIRED": 0xC0000016,
    "BUFFER_TOO_SMALL": 0xC0000023,
    "DATA_ERROR": 0xC000003E,
    "CRC_ERROR": 0xC000003F,
    "REVISION_MISMATCH": 0xC0000059,
    "INSUFFICIENT_RESOURCES": 0xC000009A,
    "INVALID_PARAMETER_1": 0xC00000EF,
    "INVALID_PARAMETER_2": 0xC00000F0,
    "INVALID_PARAMETER_3": 0xC00000F1,
    "CANCELLED": 0xC0000120,
    "INVALID_DEVICE_STATE": 0xC0000184,
    "INVALID_BUFFER_SIZE": 0xC0000206,
    "DEVICE_REMOVED": 0xC00002B6,
}


def test_ntstatus_values_match_domain_table_exactly():
    assert {s.name: s.value for s in NtStatus} == DOMAIN_STATUS_TABLE


@pytest.mark.parametrize(("name", "value"), sorted(DOMAIN_STATUS_TABLE.items()))
def test_ntstatus_str_names_the_status_and_value(name, value):
    assert str(NtStatus[name]) == f"STATUS_{name} (0x{value:08X})"


# -- init calls ------------------------------------------------------------------------
# (role, call name, good arguments, [(bad arguments, expected status), ...])
INIT_CALLS = [
    ("any", "init_set_maximum_packet_size", (0x800,), [
        ((0,), NtStatus.INVALID_PARAMETER_2),
        ((-1,), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("any", "init_set_maximum_external_data", (0x10000, 17), [
        ((0, 17), NtStatus.INVALID_PARAMETER_2),
        ((0x10000, 0), NtStatus.INVALID_PARAMETER_3),
    ]),
    ("any", "init_set_client_context_size", (64,), [
        ((-1,), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("any", "init_set_friendly_name", ("disk-0",), [
        (("",), NtStatus.INVALID_PARAMETER_2),
        (("x" * 65,), NtStatus.INVALID_PARAMETER_2),
        ((b"bytes",), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("server", "init_set_flags", (0x1F,), [
        ((0x20,), NtStatus.INVALID_PARAMETER_2),
        ((-1,), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("client", "init_set_flags", (0x1,), [
        ((0x2,), NtStatus.INVALID_PARAMETER_2),
        ((0x1F,), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("any", "init_set_mmio_megabytes", (16, 8), [
        ((-1, 0), NtStatus.INVALID_PARAMETER_2),
        ((16, -1), NtStatus.INVALID_PARAMETER_3),
    ]),
    ("any", "init_set_target_interface_id", (IFACE, INSTANCE, 2), [
        ((UUID(int=0), INSTANCE, 0), NtStatus.INVALID_PARAMETER_2),
        ((str(IFACE), INSTANCE, 0), NtStatus.INVALID_PARAMETER_2),
        ((IFACE, str(INSTANCE), 0), NtStatus.INVALID_PARAMETER_3),
    ]),
    ("any", "init_set_process_packet_callbacks", (_noop_process, _noop_process), [
        ((None,), NtStatus.INVALID_PARAMETER_2),
        (("not callable",), NtStatus.INVALID_PARAMETER_2),
        ((_noop_process, 42), NtStatus.INVALID_PARAMETER_3),
    ]),
    ("any", "init_set_state_change_callbacks", (StateCallbacks(),), [
        ((None,), NtStatus.INVALID_PARAMETER_2),
        (({"opened": None},), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("client", "init_set_ring_buffer_page_counts", (2, 3), [
        ((0, 1), NtStatus.INVALID_PARAMETER_2),
        ((1, 0), NtStatus.INVALID_PARAMETER_3),
        ((4096, 1), NtStatus.INVALID_PARAMETER_2),
    ]),
    ("server", "init_set_save_restore_packet_callbacks", (_noop_save, _noop_restore), [
        ((None, _noop_restore), NtStatus.INVALID_PARAMETER_2),
        ((_noop_save, "nope"), NtStatus.INVALID_PARAMETER_3),
    ]),
]


def _cases(kind: str):
    for role, name, good, bad in INIT_CALLS:
        roles = ("server", "client") if role == "any" else (role,)
        for r in roles:
            if kind == "good":
                yield pytest.param(r, name, good, id=f"{r}-{name}")
            elif kind == "bad":
                for i, (args, status) in enumerate(bad):
                    yield pytest.param(r, name, args, status, id=f"{r}-{name}-{i}")


def _channel(role: str) -> ServerChannel | ClientChannel:
    bus = VmBus()
    return bus.allocate_server_channel() if role == "server" else bus.allocate_client_channel()


@pytest.mark.parametrize(("role", "name", "args"), list(_cases("good")))
def test_init_call_succeeds_in_init_state(role, name, args):
    channel = _channel(role)
    assert getattr(channel, name)(*args) == OK


def test_init_calls_store_what_they_set():
    server = _channel("server")
    for _role, name, good, _bad in INIT_CALLS:
        if _role != "client":
            assert getattr(server, name)(*good) == OK
    cfg = server.config
    assert cfg.max_packet_size == 0x800
    assert (cfg.max_external_data_size, cfg.max_chain_length) == (0x10000, 17)
    assert cfg.client_context_size == 64
    assert cfg.friendly_name == "disk-0"
    assert cfg.flags == 0x1F
    assert (cfg.mmio_megabytes, cfg.mmio_megabytes_optional) == (16, 8)
    assert cfg.offer_key == (IFACE, INSTANCE, 2)
    assert server.process_packet is _noop_process
    assert server.processing_complete is _noop_process
    assert server.save_packet is _noop_save and server.restore_packet is _noop_restore

    client = _channel("client")
    assert client.init_set_ring_buffer_page_counts(2, 3) == OK
    assert (client.config.incoming_ring_pages, client.config.outgoing_ring_pages) == (2, 3)


@pytest.mark.parametrize(("role", "name", "args", "status"), list(_cases("bad")))
def test_init_call_rejects_bad_argument(role, name, args, status):
    channel = _channel(role)
    before = channel.config
    snapshot = dict(vars(before))
    assert getattr(channel, name)(*args) == status
    assert vars(channel.config) == snapshot  # a refused call changes nothing


def test_server_has_no_ring_page_call_and_client_no_save_restore_call():
    assert not hasattr(_channel("server"), "init_set_ring_buffer_page_counts")
    assert not hasattr(_channel("client"), "init_set_save_restore_packet_callbacks")


def _after(when: str, role: str) -> ServerChannel | ClientChannel:
    """A channel that has left its init state: enabled, disabled again, or cleaned up."""
    server, client = make_pair(start=False)
    channel = server if role == "server" else client
    if when == "enabled":
        return channel
    if role == "server":
        assert server.disable() == OK
    else:
        assert client.disable() == OK
    if when == "disabled":
        return channel
    assert channel.cleanup() == OK
    return channel


@pytest.mark.parametrize("when", ["enabled", "disabled", "cleaned-up"])
@pytest.mark.parametrize(("role", "name", "args"), list(_cases("good")))
def test_init_call_outside_init_state_is_invalid_parameter_1(when, role, name, args):
    channel = _after(when, role)
    assert getattr(channel, name)(*args) == NtStatus.INVALID_PARAMETER_1


@pytest.mark.parametrize(("role", "name", "args"), list(_cases("good")))
def test_init_call_after_cleanup_of_never_enabled_channel(role, name, args):
    channel = _channel(role)
    assert channel.cleanup() == OK
    assert getattr(channel, name)(*args) == NtStatus.INVALID_PARAMETER_1


@pytest.mark.parametrize("role", ["server", "client"])
def test_enable_needs_process_callback(role):
    bus = VmBus()
    if role == "client":
        offered = bus.allocate_server_channel()
        configure(offered)
        assert offered.enable() == OK
        channel = bus.allocate_client_channel()
    else:
        channel = bus.allocate_server_channel()
    assert channel.init_set_target_interface_id(IFACE, INSTANCE) == OK
    assert channel.enable() == NtStatus.INVALID_DEVICE_STATE
    assert channel.state == 0  # DISABLED in both enums
    assert channel.init_set_friendly_name("still-init") == OK  # still in its init state
    assert channel.init_set_process_packet_callbacks(_noop_process) == OK
    assert channel.enable() == OK


def test_server_enable_needs_an_interface_type():
    server = VmBus().allocate_server_channel()
    assert server.init_set_process_packet_callbacks(_noop_process) == OK
    assert server.enable() == NtStatus.INVALID_DEVICE_STATE
    assert server.state == ServerState.DISABLED


def test_client_enable_without_offer_is_device_removed():
    client = VmBus().allocate_client_channel()
    configure(client)
    assert client.enable() == NtStatus.DEVICE_REMOVED
    assert client.state == ClientState.DISABLED


def test_second_server_for_same_offer_is_refused():
    bus = VmBus()
    first, second = bus.allocate_server_channel(), bus.allocate_server_channel()
    configure(first)
    configure(second)
    assert first.enable() == OK
    assert second.enable() == NtStatus.INVALID_DEVICE_STATE
    assert second.state == ServerState.DISABLED


def test_pipe_mode_must_match_the_offer():
    bus = VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    configure(server)
    configure(client)
    assert server.init_set_flags(0x4) == OK  # offer as pipe
    assert server.enable() == OK
    assert client.enable() == NtStatus.INVALID_PARAMETER
    assert client.state == ClientState.DISABLED


# -- callback order (DOMAIN §2 step 2) ----------------------------------------------
class Recorder:
    def __init__(self, who: str) -> None:
        self.who = who
        self.events: list[str] = []
        self.incoming: list[IncomingPacket] = []

    def callbacks(self) -> StateCallbacks:
        def cb(name):
            return lambda channel: self.events.append(name)

        return StateCallbacks(opened=cb("opened"), started=cb("started"),
                              post_started=cb("post_started"), suspend=cb("suspend"),
                              closed=cb("closed"))

    def process(self, channel, incoming: IncomingPacket) -> None:
        self.events.append(f"packet {incoming.transaction_id}")
        self.incoming.append(incoming)


def recorded_pair() -> tuple[ServerChannel, ClientChannel, Recorder, Recorder]:
    bus = VmBus()
    host, guest = Recorder("host"), Recorder("guest")
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    configure(server, host.process, host.callbacks())
    configure(client, guest.process, guest.callbacks())
    return server, client, host, guest


def test_opened_then_started_then_incoming_queue_then_post_started():
    server, client, host, guest = recorded_pair()
    assert server.enable() == OK
    assert host.events == []  # offered, nobody opened it yet
    assert server.start() == OK
    assert host.events == []  # started but not opened: no Started callback yet
    assert server.state == ServerState.STARTED

    assert client.enable() == OK
    assert host.events == ["opened", "started", "post_started"]
    assert guest.events == ["opened"]
    assert client.state == ClientState.OPENED

    # a packet already in the client's incoming ring before the client starts
    packet = server.packet_allocate()
    assert server.packet_send(packet, b"early!!!", SendFlags.WAIT_FOR_COMPLETION) == OK
    assert guest.events == ["opened"]  # not started: nothing is processed
    assert client.poll() == 0

    assert client.start() == OK
    assert guest.events == ["opened", "started", f"packet {packet.transaction_id}",
                            "post_started"]
    assert client.state == ClientState.ACTIVE


def test_server_started_after_open_runs_its_queue_between_started_and_post_started():
    server, client, host, guest = recorded_pair()
    assert server.enable() == OK
    assert client.enable() == OK
    assert host.events == ["opened"]
    assert server.state == ServerState.STOPPED
    assert client.start() == OK
    packet = client.packet_allocate()
    assert client.packet_send(packet, b"to host!") == OK
    assert host.events == ["opened"]
    assert server.start() == OK
    assert host.events == ["opened", "started", f"packet {packet.transaction_id}",
                           "post_started"]
    assert server.state == ServerState.ACTIVE


def test_pause_calls_suspend_first_and_waits_for_pending_incoming():
    server, client, host, guest = recorded_pair()
    for channel in (server, client):
        assert channel.enable() == OK
        assert channel.start() == OK
    packet = server.packet_allocate()
    assert server.packet_send(packet, b"pending!", SendFlags.WAIT_FOR_COMPLETION) == OK
    assert client.poll() == 1
    (incoming,) = guest.incoming
    guest.events.clear()

    assert client.pause() == NtStatus.PENDING
    assert guest.events == ["suspend"]
    assert client.pausing and not client.paused  # waiting for the pending packet
    # no new I/O while pausing: polling reads nothing, a second pause/start is refused
    assert client.poll() == 0
    assert client.start() == NtStatus.INVALID_DEVICE_STATE
    assert client.pause() == NtStatus.INVALID_DEVICE_STATE

    assert client.packet_complete(incoming, b"done....") == OK
    assert client.paused and not client.pausing
    assert client.state == ClientState.PAUSED
    # the completion still went out while the pause waited for it
    assert server.poll() == 1
    assert packet.transaction_id not in server.packets

    assert client.start() == OK
    assert guest.events == ["suspend", "started", "post_started"]
    assert client.state == ClientState.ACTIVE


def test_pause_completes_at_once_when_suspend_completes_everything():
    completed = []
    bus = VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    pending: list[IncomingPacket] = []

    def suspend(channel):
        for incoming in pending:
            completed.append(channel.packet_complete(incoming))

    configure(server)
    configure(client, lambda ch, inc: pending.append(inc), StateCallbacks(suspend=suspend))
    for channel in (server, client):
        assert channel.enable() == OK
        assert channel.start() == OK
    for _ in range(2):
        assert server.packet_send(server.packet_allocate(), b"x",
                                  SendFlags.WAIT_FOR_COMPLETION) == OK
    assert client.poll() == 2
    assert client.pause() == OK  # suspend ran before the library looked for pending packets
    assert completed == [OK, OK]
    assert client.paused


def test_pause_without_pending_incoming_is_immediate():
    server, client = make_pair()
    assert server.pause() == OK
    assert server.paused and server.state == ServerState.PAUSED
    assert server.pause() == NtStatus.INVALID_DEVICE_STATE
    assert server.start() == OK
    assert server.state == ServerState.ACTIVE


def test_server_disable_closes_the_client():
    server, client, host, guest = recorded_pair()
    for channel in (server, client):
        assert channel.enable() == OK
        assert channel.start() == OK
    status, handle = client.gpadl_create((0x10,), 0, 4096)
    assert status == OK
    assert server.gpadl_map(handle)[0] == OK
    connection = server.connection
    host.events.clear()
    guest.events.clear()

    assert server.disable() == OK
    assert guest.events == ["closed"]
    assert host.events == ["closed"]
    assert client.state == ClientState.CLOSED
    assert server.state == ServerState.DISABLED
    assert connection.gpadls.gpadls == {}  # torn down with the channel
    assert client.connection is None and server.connection is None
    assert client.packet_send(client.packet_allocate(), b"x") == NtStatus.INVALID_DEVICE_STATE

    # the closed client can be disabled and freed; the offer is gone from the bus
    assert client.disable() == OK
    assert client.state == ClientState.DISABLED
    assert client.cleanup() == OK
    assert server.cleanup() == OK
    assert server.bus.offers == {}


def test_client_disable_refused_while_gpadls_exist():
    server, client, host, guest = recorded_pair()
    for channel in (server, client):
        assert channel.enable() == OK
        assert channel.start() == OK
    status, handle = client.gpadl_create((0x10, 0x11), 0, 8192)
    assert status == OK
    host.events.clear()
    guest.events.clear()

    assert client.disable() == NtStatus.INVALID_DEVICE_STATE
    assert client.state == ClientState.ACTIVE and guest.events == []
    assert client.gpadl_delete(handle) == OK
    assert client.disable() == OK
    assert guest.events == ["closed"] and host.events == ["closed"]
    assert client.state == ClientState.DISABLED
    assert server.connection is None


def test_cleanup_only_when_disabled_and_nothing_works_after_it():
    server, client = make_pair()
    assert server.cleanup() == NtStatus.INVALID_DEVICE_STATE
    assert client.cleanup() == NtStatus.INVALID_DEVICE_STATE
    assert client.disable() == OK
    assert server.disable() == OK
    for channel in (client, server):
        assert channel.cleanup() == OK
        assert channel.cleanup() == NtStatus.INVALID_PARAMETER_1
        assert channel.enable() == NtStatus.INVALID_DEVICE_STATE
        assert channel.disable() == NtStatus.INVALID_DEVICE_STATE
        assert channel.start() == NtStatus.INVALID_DEVICE_STATE
        assert channel.pause() == NtStatus.INVALID_DEVICE_STATE
        assert channel.packet_allocate() is None
        assert channel.poll() == 0


def test_disable_twice_is_refused():
    server, client = make_pair()
    assert client.disable() == OK
    assert client.disable() == NtStatus.INVALID_DEVICE_STATE
    assert server.disable() == OK
    assert server.disable() == NtStatus.INVALID_DEVICE_STATE


# -- states through the life cycle ------------------------------------------------------
def test_server_and_client_states_through_the_life_cycle():
    bus = VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    configure(server)
    configure(client)
    seen = []

    def snap():
        seen.append((server.state, client.state))

    snap()
    assert server.start() == NtStatus.INVALID_DEVICE_STATE  # not enabled
    assert server.enable() == OK
    snap()
    assert client.enable() == OK
    snap()
    assert server.start() == OK
    snap()
    assert client.start() == OK
    snap()
    assert server.pause() == OK
    snap()
    assert client.pause() == OK
    snap()
    assert server.start() == OK
    snap()
    assert client.start() == OK
    snap()
    assert server.disable() == OK
    snap()
    assert client.disable() == OK
    snap()
    S, C = ServerState, ClientState
    assert seen == [
        (S.DISABLED, C.DISABLED),
        (S.ENABLED, C.DISABLED),
        (S.STOPPED, C.OPENED),
        (S.ACTIVE, C.OPENED),
        (S.ACTIVE, C.ACTIVE),
        (S.PAUSED, C.ACTIVE),
        (S.PAUSED, C.PAUSED),
        (S.ACTIVE, C.PAUSED),
        (S.ACTIVE, C.ACTIVE),
        (S.DISABLED, C.CLOSED),
        (S.DISABLED, C.DISABLED),
    ]


def test_server_started_before_open_is_started_then_active():
    bus = VmBus()
    server, client = bus.allocate_server_channel(), bus.allocate_client_channel()
    configure(server)
    configure(client)
    assert server.enable() == OK
    assert server.start() == OK
    assert server.state == ServerState.STARTED
    assert server.start() == NtStatus.INVALID_DEVICE_STATE  # already started
    assert server.pause() == NtStatus.INVALID_DEVICE_STATE  # nothing open to pause
    assert client.enable() == OK
    assert server.state == ServerState.ACTIVE


def test_start_is_orthogonal_to_open_closed_on_the_server():
    """DOMAIN §2.3: Start/Pause are orthogonal to open/closed. A started server whose
    client closes stays started, and a new client's open runs Started again."""
    bus = VmBus()
    host = Recorder("host")
    server = bus.allocate_server_channel()
    configure(server, host.process, host.callbacks())
    assert server.enable() == OK
    assert server.start() == OK
    client = bus.allocate_client_channel()
    configure(client)
    assert client.enable() == OK
    assert server.state == ServerState.ACTIVE
    assert client.disable() == OK
    assert server.state == ServerState.STARTED

    again = bus.allocate_client_channel()
    configure(again)
    host.events.clear()
    assert again.enable() == OK
    assert host.events == ["opened", "started", "post_started"]
    assert server.state == ServerState.ACTIVE
