"""`vmbtool validate --jobs N`: worker processes change nothing but the speed.

The verdicts come in input order, the one summary line and the exit code are those of a
serial run, with a damaged blob among valid ones too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import cli as in_process

from vmbtool.snapshot import save_blob
from vmbtool.tools import default_jobs, run_scenario, validate_file, validate_files


def cli(*args: object, input: bytes | None = None):
    """conftest's `cli`, raising what escapes the command."""
    result = in_process(*args, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory):
    """Nine valid blobs of three scenarios and one with a flipped byte, in a directory."""
    d = tmp_path_factory.mktemp("blobs")
    for i, scenario in enumerate(("storage", "network", "pipe") * 3):
        (d / f"b{i}-{scenario}.vmb").write_bytes(
            save_blob(run_scenario(scenario, i + 1, 20 + i), created_ns=0))
    data = bytearray((d / "b4-network.vmb").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "b5-bad.vmb").write_bytes(bytes(data))
    (d / "notes.txt").write_text("not a blob")
    return d


def test_jobs_2_gives_what_jobs_1_gives(blob_dir):
    one, two = cli("validate", blob_dir, "--jobs", 1), cli("validate", blob_dir, "-j", 2)
    assert one.exit_code == two.exit_code == 1
    assert one.stdout == two.stdout
    assert one.stderr == two.stderr == "9 valid, 1 invalid\n"
    lines = two.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == \
        sorted(str(p) for p in blob_dir.glob("*.vmb"))
    assert [": INVALID at " in line for line in lines].count(True) == 1
    assert f"{blob_dir / 'b5-bad.vmb'}: INVALID at " in two.stdout


def test_jobs_json_is_the_same_document(blob_dir):
    one = json.loads(cli("validate", blob_dir, "--json", "--jobs", 1).stdout)
    two = json.loads(cli("validate", blob_dir, "--json", "--jobs", 2).stdout)
    assert one == two
    assert one["valid"] is False
    assert one["summary"] == {"blobs": 10, "valid": 9, "invalid": 1, "unreadable": 0}
    assert [b["valid"] for b in one["blobs"]].count(False) == 1


def test_a_list_keeps_its_order(blob_dir):
    paths = sorted(blob_dir.glob("*.vmb"), reverse=True)
    paths.insert(3, paths[0])  # the same blob twice is validated twice
    result = cli("validate", *paths, "--jobs", 2)
    assert result.exit_code == 1
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == \
        [str(p) for p in paths]


def test_all_valid_exits_0_with_workers(blob_dir):
    paths = [p for p in sorted(blob_dir.glob("*.vmb")) if "bad" not in p.name]
    result = cli("validate", *paths, "--jobs", 3)
    assert result.exit_code == 0, result.output
    cores = default_jobs()
    capped = (f"note: --jobs 3 capped to {cores}, the cores this process may use\n"
              if cores < 3 else "")
    assert result.stderr == capped + "9 valid, 0 invalid\n"


def test_library_call_reports_each_verdict_in_order(blob_dir):
    paths = [str(p) for p in sorted(blob_dir.glob("*.vmb"))]
    seen = []
    verdicts = validate_files(paths, jobs=2, done=seen.append)
    assert seen == verdicts
    assert [v.path for v in verdicts] == paths
    assert [v.as_json() for v in verdicts] == [validate_file(p).as_json() for p in paths]
    assert default_jobs() >= 1


def test_stdin_among_files_is_read_by_the_main_process(blob_dir):
    good = sorted(blob_dir.glob("b0-*.vmb"))[0]
    result = cli("validate", "-", good, "--jobs", 2, input=good.read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("-: valid (")


def test_jobs_must_be_positive(blob_dir):
    result = cli("validate", blob_dir, "--jobs", 0)
    assert result.exit_code == 2
    assert "--jobs" in result.stderr


def test_the_console_command_with_default_jobs(blob_dir):
    """Default --jobs (every core) in a real process: same lines, same exit code."""
    run = subprocess.run([sys.executable, "-m", "vmbtool", "validate", str(blob_dir)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stdout == cli("validate", blob_dir, "--jobs", 1).stdout
    assert run.stderr == "9 valid, 1 invalid\n"
