"""Format evolution: every frozen fixture of every version validates, restores and
upgrades (upgrade then restore equals restore); 1.1 reads 1.0; a 1.0 reader (restricted,
and the real 1.0 code from git history) reads 1.1; downgrades refuse to lose anything
unless told; the 1.1 statistics mean what FORMAT.md says."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FIXTURE_DIR, FIXTURE_KEY, ROOT

from vmbtool import jsonview
from vmbtool.blob import load_blob
from vmbtool.cli import main
from vmbtool.diff import diff
from vmbtool.errors import VmbtoolError
from vmbtool.formats import FORMAT_MINOR
from vmbtool.formats.chunk import ChunkType
from vmbtool.scenarios import SCENARIOS
from vmbtool.sim.packet import PacketState
from vmbtool.sim.wire import PacketType
from vmbtool.snapshot import restore_file, save_blob
from vmbtool.status import NtStatus
from vmbtool.tools import validate_file
from vmbtool.upgrade import parse_version, upgrade_blob

VERSIONS = {FIXTURE_DIR / "v1": (1, 0), FIXTURE_DIR / "v1.1": (1, 1)}
BLOBS = sorted(p for directory in VERSIONS for p in directory.glob("*.vmb"))
V1_0_COMMIT = "77ced59"  # the last commit whose vmbtool wrote and read only format 1.0


def key_for(path: Path) -> bytes | None:
    return FIXTURE_KEY if path.stem.endswith("-signed") else None


def restored_doc(source: str | bytes, key: bytes | None) -> dict:
    """Restore into fresh channels (`restore_file`, `vmbtool restore`'s path), save them
    again, decode: the restored state."""
    again = save_blob(restore_file(source, key), created_ns=0, level=None, minor=FORMAT_MINOR)
    return jsonview.decode(load_blob(again), with_data=True)


def ids(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", BLOBS, ids=ids)
def test_every_fixture_validates_restores_and_upgrades(path):
    key = key_for(path)
    assert validate_file(str(path), key).valid
    upgraded = upgrade_blob(str(path), key)
    assert upgraded.target_version == f"1.{FORMAT_MINOR}" and not upgraded.dropped
    data = upgraded.take()
    blob = load_blob(data, key)
    assert blob.version == f"1.{FORMAT_MINOR}" and blob.signed == (key is not None)
    assert [c.data for c in blob.chunks[:-1]] == \
        [c.data for c in load_blob(str(path), key).chunks[:-1]]
    assert diff(restored_doc(str(path), key), restored_doc(data, key)) == []


@pytest.mark.parametrize("path", [p for p in BLOBS if p.parent.name == "v1.1"], ids=ids)
def test_a_reader_restricted_to_1_0_reads_1_1_and_skips_what_it_does_not_know(path):
    key = key_for(path)
    full = load_blob(str(path), key)
    old = load_blob(str(path), key, reads=(1, 0))
    assert old.stats == {} and old.note is None
    skipped = sorted(raw.type for _, raw in old.extra)
    assert skipped == sorted([ChunkType.STATS] * len(full.channels) +
                             [ChunkType.NOTE] * (full.note is not None))
    assert jsonview.decode(old)["channels"] == [
        {k: v for k, v in ch.items() if k != "stats"} for ch in jsonview.decode(full)["channels"]]
    # the 1.0 reader restores the same channels; only the statistics are not carried over
    a, b = restored_doc(str(path), key), restored_by_1_0_reader(str(path), key)
    assert [c for c in diff(a, b) if ".stats." not in c.path] == []


def restored_by_1_0_reader(source: str, key: bytes | None) -> dict:
    """`restore_file` with a reader restricted to format 1.0, saved again, decoded."""
    again = save_blob(restore_file(source, key, reads=(1, 0)), created_ns=0, level=None)
    return jsonview.decode(load_blob(again), with_data=True)


def test_a_reader_restricted_to_1_0_still_refuses_a_damaged_1_1_blob():
    data = bytearray((FIXTURE_DIR / "v1.1" / "network.vmb").read_bytes())
    data[len(data) // 2] ^= 0x10
    with pytest.raises(VmbtoolError):
        load_blob(bytes(data), reads=(1, 0))


@pytest.fixture(scope="module")
def vmbtool_1_0(tmp_path_factory) -> Path:
    """The vmbtool source at the 1.0 fixtures' commit, laid out as its installed package."""
    git = shutil.which("git")
    if git is None or subprocess.run([git, "-C", str(ROOT), "cat-file", "-e",
                                      f"{V1_0_COMMIT}^{{commit}}"],
                                     capture_output=True).returncode:
        pytest.skip(f"git history with {V1_0_COMMIT} is not available")
    root = tmp_path_factory.mktemp("vmbtool-1.0")
    archive = root / "src.tar"
    subprocess.run([git, "-C", str(ROOT), "archive", "-o", str(archive), V1_0_COMMIT,
                    "vmbtool", "formats"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(root / "src", filter="data")
    shutil.move(str(root / "src" / "formats"), str(root / "src" / "vmbtool" / "formats"))
    return root / "src"


@pytest.mark.parametrize("path", [p for p in BLOBS if p.parent.name == "v1.1"], ids=ids)
def test_the_real_1_0_code_reads_1_1_blobs(path, vmbtool_1_0):
    key = key_for(path)
    code = (
        "import sys\n"
        "from vmbtool.blob import FORMAT_MINOR, load_blob\n"
        "from vmbtool.snapshot import check_blob\n"
        "assert FORMAT_MINOR == 0\n"
        f"blob = load_blob({str(path)!r}, {key!r})\n"
        "assert check_blob(blob) == [], check_blob(blob)\n"
        "print(len(blob.channels), sum(len(c.packets) for c in blob.channels),"
        " sorted({c.type for c in blob.chunks if c.type not in (1, 2, 3, 4, 5, 6, 16, 255)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=vmbtool_1_0, env={"PYTHONPATH": str(vmbtool_1_0),
                                                  "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    blob = load_blob(str(path), key)
    extras = sorted({int(ChunkType.STATS)} | ({int(ChunkType.NOTE)} if blob.note else set()))
    assert result.stdout.strip().split(maxsplit=2) == [
        str(len(blob.channels)), str(sum(len(c.packets) for c in blob.channels)), str(extras)]


def test_downgrade_refuses_to_drop_the_note_and_statistics_unless_allowed():
    path = FIXTURE_DIR / "v1.1" / "storage.vmb"
    with pytest.raises(VmbtoolError) as refused:
        upgrade_blob(str(path), to=(1, 0))
    assert refused.value.status == NtStatus.REVISION_MISMATCH
    assert "1 stats chunk, 1 note chunk" in refused.value.why
    down = upgrade_blob(str(path), to=(1, 0), allow_loss=True)
    assert down.dropped == ["1 stats chunk", "1 note chunk"]
    data = down.take()
    blob = load_blob(data)
    assert blob.version == "1.0" and blob.note is None and blob.stats == {}
    assert data[-16:-8] != (0x184D2A5B).to_bytes(4, "little") + (8).to_bytes(4, "little")
    a, b = restored_doc(str(path), None), restored_doc(data, None)
    assert [c.path for c in diff(a, b)] == [] or all(".stats." in c.path for c in diff(a, b))


def test_a_1_0_blob_upgrades_and_round_trips_back_without_loss():
    path = FIXTURE_DIR / "v1" / "network.vmb"
    up = upgrade_blob(str(path))
    back = upgrade_blob(up.take(), to=(1, 0))
    assert back.dropped == []
    assert back.take() == path.read_bytes()  # same chunks, header, digest: the same bytes


def test_upgrade_of_a_signed_blob_needs_the_key_and_signs_again():
    path = FIXTURE_DIR / "v1" / "storage-signed.vmb"
    with pytest.raises(VmbtoolError, match="give its key"):
        upgrade_blob(str(path))
    up = upgrade_blob(str(path), FIXTURE_KEY)
    data = up.take()
    assert load_blob(data, FIXTURE_KEY).signed
    with pytest.raises(VmbtoolError, match="HMAC"):
        load_blob(data, bytes(32))


@pytest.mark.parametrize("text", ["2.0", "1.9", "0.9", "1", "one.two", "1.-1"])
def test_upgrade_refuses_versions_it_cannot_write(text):
    with pytest.raises(VmbtoolError):
        parse_version(text)


def test_upgrade_command(tmp_path):
    runner = CliRunner()
    out = tmp_path / "up.vmb"
    result = runner.invoke(main, ["upgrade", str(FIXTURE_DIR / "v1" / "pipe.vmb"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "format 1.0 -> 1.1" in result.stderr
    assert load_blob(str(out)).version == "1.1"
    result = runner.invoke(main, ["upgrade", str(FIXTURE_DIR / "v1.1" / "storage.vmb"), "-o",
                                  str(tmp_path / "down.vmb"), "--to", "1.0"])
    assert result.exit_code == 1 and not (tmp_path / "down.vmb").exists()
    assert result.stderr.startswith("Error: cannot downgrade at format 1.0: it would drop")
    result = runner.invoke(main, ["upgrade", str(out), "-o", str(out), "--to", "3.0"])
    assert result.exit_code == 2 and "--to" in result.stderr


def test_save_note_is_kept_shown_and_round_trips(tmp_path):
    runner = CliRunner()
    out = tmp_path / "n.vmb"
    note = "before the host update — ticket #4711"
    result = runner.invoke(main, ["save", "--steps", "30", "--note", note, "-o", str(out)])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(main, ["inspect", str(out)]).stdout
    assert f"note: {note}\n" in shown and "  stats: " in shown
    doc = jsonview.decode(load_blob(str(out)))
    assert doc["note"] == note
    assert jsonview.encode(doc) == out.read_bytes()
    too_long = runner.invoke(main, ["save", "--note", "x" * 65537, "-o", str(out)])
    assert too_long.exit_code == 2


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_statistics_mean_what_the_format_says(name):
    scenario = SCENARIOS[name].create(5)
    scenario.run(150)
    for server in scenario.servers:
        stats = server.stats
        in_flight = [p for p in server.packets_in_use()
                     if p.type != PacketType.COMPLETION
                     and p.state in (PacketState.IN_RING, PacketState.AWAITING_COMPLETION)]
        assert stats.packets_sent - stats.packets_completed == len(in_flight)
        if server.connection is not None:
            ring = server.outgoing_ring
            assert stats.bytes_sent % ring.data_size == ring.write_index
        assert stats.backlog_packet_steps >= stats.backlog_entries - len(server.backlog)
    blob = load_blob(save_blob(scenario, created_ns=0))
    for index, server in enumerate(scenario.servers):
        saved = blob.stats[index]
        assert {k: saved[k] for k in server.stats.as_dict()} == server.stats.as_dict()
