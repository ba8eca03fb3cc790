"""An input that cannot be read (missing, a folder, no permission, an I/O error) is
trouble: exit 2, as GNU diff and cmp have it, never "invalid" or "different". `validate`
over many blobs says UNREADABLE on such a blob's line and exits 2 if any could not be
read, else 1 if any is invalid, else 0."""

from __future__ import annotations

import json
import os

import pytest
from inputs_support import STORAGE, cli, no_crash, one_error, run

READERS = {
    "inspect": ["inspect", "{}"],
    "inspect --json": ["inspect", "--json", "{}"],
    "decode": ["decode", "{}"],
    "restore": ["restore", "{}"],
    "upgrade": ["upgrade", "{}", "-o", "{out}"],
    "diff (A)": ["diff", "{}", str(STORAGE)],
    "diff (B)": ["diff", str(STORAGE), "{}"],
}


def unreadable_inputs(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, why): what cannot be read, each way it can happen here."""
    dangling = tmp_path / "dangling.vmb"
    dangling.symlink_to(tmp_path / "gone.vmb")
    return {"missing": (str(tmp_path / "missing.vmb"), "No such file or directory"),
            "folder": (str(tmp_path), "Is a directory"),
            "dangling link": (str(dangling), "No such file or directory"),
            # reading a process's own memory at offset 0 (never mapped) is an I/O error
            "I/O error": ("/proc/self/mem", "Input/output error")}


@pytest.mark.parametrize("command", list(READERS))
def test_an_unreadable_input_is_trouble(command, tmp_path):
    for name, (path, why) in unreadable_inputs(tmp_path).items():
        out = tmp_path / "out.vmb"
        result = cli(*[a.format(path, out=out) for a in READERS[command]])
        no_crash(result)
        line = one_error(result.exit_code, 2, result.stderr)
        side = {"diff (A)": " A", "diff (B)": " B"}.get(command, "")  # diff names the side
        assert line == f"Error: cannot read blob{side} at {path}: {why}", (name, line)
        assert result.stdout == ""
        assert not out.exists()


def test_permission_denied_is_trouble(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode (CI runs as root)")
    locked = tmp_path / "locked.vmb"
    locked.write_bytes(STORAGE.read_bytes())
    locked.chmod(0)
    result = cli("inspect", locked)
    assert one_error(result.exit_code, 2, result.stderr) == \
        f"Error: cannot read blob at {locked}: Permission denied"
    result = cli("validate", locked)
    assert result.exit_code == 2
    assert result.stdout == f"{locked}: UNREADABLE: Permission denied\n"


def test_validate_says_unreadable_and_exits_2(tmp_path):
    bad = tmp_path / "bad.vmb"
    bad.write_bytes(STORAGE.read_bytes()[:-1])
    cases = unreadable_inputs(tmp_path)
    paths = [str(STORAGE), str(bad)] + [path for path, _ in cases.values()
                                        if path != str(tmp_path)]
    result = cli("validate", *paths)
    no_crash(result)
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{STORAGE}: valid")
    assert lines[1].startswith(f"{bad}: INVALID at ")
    for line, (name, (path, why)) in zip(lines[2:], [(n, c) for n, c in cases.items()
                                                       if n != "folder"], strict=True):
        assert line == f"{path}: UNREADABLE: {why}", name
    assert result.stderr == "1 valid, 1 invalid, 3 unreadable\n"


def test_validate_exit_codes_in_order_of_trouble(tmp_path):
    bad = tmp_path / "bad.vmb"
    bad.write_bytes(STORAGE.read_bytes()[:-1])
    missing = tmp_path / "missing.vmb"
    for paths, code, summary in (([STORAGE], 0, "1 valid, 0 invalid"),
                                 ([STORAGE, bad], 1, "1 valid, 1 invalid"),
                                 ([STORAGE, missing], 2, "1 valid, 0 invalid, 1 unreadable"),
                                 ([missing, bad], 2, "0 valid, 1 invalid, 1 unreadable")):
        result = cli("validate", *paths)
        no_crash(result)
        assert (result.exit_code, result.stderr.strip()) == (code, summary)


def test_validate_json_has_the_unreadable_field(tmp_path):
    missing = tmp_path / "missing.vmb"
    result = cli("validate", STORAGE, missing, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert doc["summary"] == {"blobs": 2, "valid": 1, "invalid": 0, "unreadable": 1}
    good, gone = doc["blobs"]
    assert good["unreadable"] is False and good["valid"] is True
    assert gone == {"path": str(missing), "valid": False, "format": None, "channels": 0,
                    "packets": 0, "unlisted_problems": 0, "unreadable": True,
                    "problems": [{"where": str(missing), "why": "No such file or directory"}]}


def test_validate_workers_report_unreadable_blobs_too(tmp_path):
    missing = tmp_path / "missing.vmb"
    p = run("validate", "--jobs", 2, STORAGE, missing, STORAGE)
    assert p.returncode == 2
    assert p.stdout.decode().splitlines()[1] == f"{missing}: UNREADABLE: No such file or directory"
