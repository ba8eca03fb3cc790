"""The seeded scenarios: deterministic, and each exercising what it claims to."""

from __future__ import annotations

import pytest

from vmbtool.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario
from vmbtool.sim import ClientState, PacketState, PacketType, ServerState

STEPS = 60
NAMES = sorted(SCENARIOS)


def ring_bytes(scenario: Scenario) -> list[tuple[bytes, bytes]]:
    return [(bytes(s.outgoing_ring.memory), bytes(s.incoming_ring.memory))
            for s in scenario.servers]


def run(name: str, seed: int, steps: int = STEPS, pause_at: int | None = None) -> Scenario:
    scenario = SCENARIOS[name].create(seed)
    scenario.run(steps, pause_at=pause_at)
    return scenario


def test_registry():
    assert set(SCENARIOS) == {"storage", "network", "pipe"}
    assert DEFAULT_SCENARIO in SCENARIOS
    for name, cls in SCENARIOS.items():
        assert cls.name == name and issubclass(cls, Scenario)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes_and_transcript(name):
    first, second = run(name, 7), run(name, 7)
    assert first.steps_taken == second.steps_taken == STEPS
    assert ring_bytes(first) == ring_bytes(second)
    assert first.transcript == second.transcript
    assert first.describe() == second.describe()
    assert len(first.transcript) > STEPS  # it did something
    # the rings hold traffic, not just zeroed memory
    assert any(out.strip(b"\0")[4096:] for out, _ in ring_bytes(first))


@pytest.mark.parametrize("name", NAMES)
def test_client_rings_are_the_server_rings(name):
    scenario = run(name, 3, steps=10)
    for server, client in zip(scenario.servers, scenario.clients, strict=True):
        assert client.incoming_ring is server.outgoing_ring
        assert client.outgoing_ring is server.incoming_ring


@pytest.mark.parametrize("name", NAMES)
def test_different_seed_different_bytes(name):
    a, b = run(name, 1), run(name, 2)
    assert ring_bytes(a) != ring_bytes(b)
    assert a.transcript != b.transcript


@pytest.mark.parametrize("name", NAMES)
def test_steps_are_cumulative(name):
    """run(a) then run(b) is run(a + b): the future depends on (seed, steps taken)."""
    whole = run(name, 11, steps=40)
    split = run(name, 11, steps=15)
    split.run(25)
    assert split.steps_taken == 40
    assert ring_bytes(split) == ring_bytes(whole)
    assert split.transcript == whole.transcript


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pause_at", [0, 5, STEPS - 1])
def test_run_with_pause_at(name, pause_at):
    scenario = SCENARIOS[name].create(5)
    paused_at: list[int] = []
    real_pause = scenario.pause

    def pause() -> None:
        paused_at.append(scenario.steps_taken)
        real_pause()
        assert all(s.state == ServerState.PAUSED for s in scenario.servers)

    scenario.pause = pause  # type: ignore[method-assign]
    scenario.run(STEPS, pause_at=pause_at)
    assert paused_at == [pause_at]
    assert scenario.steps_taken == STEPS
    assert all(s.state == ServerState.ACTIVE for s in scenario.servers)
    assert all(c.state == ClientState.ACTIVE for c in scenario.clients)
    again = run(name, 5, pause_at=pause_at)
    assert ring_bytes(again) == ring_bytes(scenario)
    assert again.transcript == scenario.transcript


@pytest.mark.parametrize("name", NAMES)
def test_pause_at_beyond_the_run_never_pauses(name):
    plain, late = run(name, 9), run(name, 9, pause_at=STEPS + 1)
    assert ring_bytes(plain) == ring_bytes(late)
    assert plain.transcript == late.transcript


def test_storage_pause_answers_outstanding_requests_busy():
    """The storage VSP's suspend callback completes every pending request with BUSY."""
    for pause_at in range(5, STEPS):
        probe = run("storage", 4, steps=pause_at)
        if probe.host_requests:
            break
    else:
        pytest.fail("storage never had a request outstanding at a step boundary")
    outstanding = len(probe.host_requests)
    scenario = run("storage", 4, steps=pause_at + 1, pause_at=pause_at)
    busy = [line for line in scenario.transcript
            if line.startswith(f"{pause_at}:host completed") and line.endswith("status=8")]
    assert len(busy) == outstanding
    assert scenario.servers[0].state == ServerState.ACTIVE


def test_network_has_three_channels_each_with_a_mapped_receive_buffer():
    scenario = run("network", 1, steps=0)
    assert len(scenario.servers) == len(scenario.clients) == 3
    assert [s.config.subchannel_index for s in scenario.servers] == [0, 1, 2]
    assert len({s.connection for s in scenario.servers}) == 3
    pfn_sets = []
    for server in scenario.servers:
        gpadls = list(server.connection.gpadls.gpadls.values())
        assert len(gpadls) == 1
        (gpadl,) = gpadls
        assert gpadl.mapped and len(gpadl.pfns) == 16 and gpadl.byte_length == 16 * 4096
        pfn_sets.append(set(gpadl.pfns))
    assert not (pfn_sets[0] & pfn_sets[1] or pfn_sets[1] & pfn_sets[2]
                or pfn_sets[0] & pfn_sets[2])


def test_network_forms_a_backlog_and_receives_name_the_receive_buffer():
    scenario = SCENARIOS["network"].create(1)
    most = receives = 0
    for _ in range(STEPS):
        scenario.step()
        for server in scenario.servers:
            most = max(most, len(server.backlog))
            assert all(p.state == PacketState.BACKLOG for p in server.backlog)
            (handle,) = server.connection.gpadls.gpadls
            for wire in server.outgoing_ring.packets():
                if wire.type == PacketType.COMPLETION:  # of a guest SEND
                    assert wire.flags == 0
                    continue
                assert wire.type == PacketType.TRANSFER_PAGES
                assert wire.flags == 1 and wire.external.handle == handle
                receives += 1
    assert most >= 2 and receives > 0


def test_storage_has_several_requests_outstanding():
    scenario = SCENARIOS["storage"].create(1)
    most_host = most_guest = 0
    for _ in range(STEPS):
        scenario.step()
        most_host = max(most_host, len(scenario.host_requests))
        client = scenario.clients[0]
        awaiting = [p for p in client.packets.values()
                    if p.state == PacketState.AWAITING_COMPLETION]
        most_guest = max(most_guest, len(awaiting))
        for wire in client.outgoing_ring.packets():
            assert wire.type in (PacketType.GPA_DIRECT, PacketType.COMPLETION)
    assert most_host >= 2
    assert most_guest >= 2


def test_pipe_packets_carry_no_completion_flag():
    scenario = SCENARIOS["pipe"].create(1)
    seen = 0
    for _ in range(STEPS):
        scenario.step()
        for channel in (*scenario.servers, *scenario.clients):
            for wire in channel.outgoing_ring.packets():
                assert wire.flags == 0 and wire.type == PacketType.INBAND
                seen += 1
            assert channel.pending_incoming == {}
            # a datagram is complete once in the ring: only the backlog is in use
            assert all(p.state == PacketState.BACKLOG for p in channel.packets.values())
            assert len(channel.packets) == len(channel.backlog)
    assert seen > 0
