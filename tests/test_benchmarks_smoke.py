"""The benchmark workload builder (benchmarks/workloads.py) builds what the harness
claims; the benchmark itself is not part of the test run (python3 benchmarks/run.py)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import ROOT

from vmbtool.scenarios import SCENARIOS
from vmbtool.sim import PacketState
from vmbtool.status import NtStatus

WORKLOADS = ROOT / "benchmarks" / "workloads.py"


@pytest.fixture(autouse=True)
def scenario_registry_kept():
    """The workloads register a `bench` scenario: other tests must not see it."""
    before = dict(SCENARIOS)
    yield
    SCENARIOS.clear()
    SCENARIOS.update(before)


def load_workloads():
    spec = importlib.util.spec_from_file_location("bench_workloads", WORKLOADS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_1000_packet_workload_has_the_requested_mix():
    workloads = load_workloads()
    scenario = workloads.build_channel_workload(1_000)
    assert workloads.packet_mix(scenario) == {
        "awaiting-completion": 333, "in-ring": 333, "backlog": 334}
    (server,) = scenario.servers
    assert server.paused and server.state.name == "PAUSED"
    assert server.outgoing_ring.data_size == server.incoming_ring.data_size == 256 * 4096
    assert scenario.clients[0].config.incoming_ring_pages == 256
    # the outgoing ring has no room for another packet object: the backlog is real
    assert server.outgoing_ring.free_bytes <= 16 + 64 + 8
    assert server.incoming_ring.used_bytes > 255 * 4096  # the guest's unread traffic
    packets = server.packets_in_use()
    assert len({p.transaction_id for p in packets}) == 1_000
    for packet in packets:
        assert 64 <= len(packet.payload) <= 256
        assert packet.wants_completion and packet.completion_routine_name == "bench_done"
        status, _, needed = server.save_packet(server, packet, 0)
        assert status == NtStatus.BUFFER_TOO_SMALL and 64 <= needed <= 256
        status, state, _ = server.save_packet(server, packet, needed)
        assert status == NtStatus.SUCCESS and state == packet.vsp_context
    awaiting = [p for p in packets if p.state == PacketState.AWAITING_COMPLETION]
    assert len(scenario.clients[0].pending_incoming) == len(awaiting)
    plain = workloads.plain_state(scenario)
    assert len(plain["channels"][0]["packets"]) == 1_000


def test_a_256_page_ring_saves_with_the_default_buffer_not_with_1_mib():
    """A 256-page ring's chunk is 1,048,613 bytes: save's default buffer holds it."""
    from vmbtool.errors import VmbtoolError
    from vmbtool.snapshot import SAVE_BUFFER_SIZE, save_blob

    scenario = load_workloads().build_channel_workload(20)
    assert save_blob(scenario, chunk_size=SAVE_BUFFER_SIZE)
    with pytest.raises(VmbtoolError, match="BUFFER_TOO_SMALL"):
        save_blob(scenario, chunk_size=1 << 20)


def test_the_fused_loop_experiment_restores_what_restore_file_restores(tmp_path, monkeypatch,
                                                                       capsys):
    """benchmarks/fused_restore.py's prototype reaches into the reader's internals: it
    must still restore the very channels restore_file restores, taking the PACKETs in
    its own loop (they do not go through the snapshot's channel feed)."""
    from vmbtool.snapshot import restore as snapshot_restore
    from vmbtool.snapshot import restore_file

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for name in ("run", "workloads", "fused_restore"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    spec = importlib.util.spec_from_file_location(
        "fused_restore", ROOT / "benchmarks" / "fused_restore.py")
    fused = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fused_restore", fused)
    spec.loader.exec_module(fused)
    assert fused.main(["--packets", "1500", "--rounds", "1"]) == 0
    assert "target 1:" in capsys.readouterr().out

    fused.workloads.register()
    blob = str(tmp_path / "c.vmb")
    fused.workloads.write_blob(blob, fused.workloads.build_channel_workload(1500))
    fed = []
    for name in ("take", "take_packet"):
        real = getattr(snapshot_restore.ChannelFeed, name)
        monkeypatch.setattr(snapshot_restore.ChannelFeed, name,
                            lambda self, index, raw, real=real:
                            fed.append(raw.type) or real(self, index, raw))
    with fused.fused():
        mine = fused.restored_state(restore_file(blob))
    fed_by_the_loop = fed.count(0x0004)
    fed.clear()
    assert mine == fused.restored_state(restore_file(blob))
    assert fed_by_the_loop == 1 and fed.count(0x0004) == 1500
    for name in ("run", "workloads"):
        sys.modules.pop(name, None)
