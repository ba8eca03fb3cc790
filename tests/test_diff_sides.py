"""`diff` names which of its two files (A or B, with its path) it could not read.

A blob diff cannot read, or that is not a valid blob, leaves it without an answer:
exit 2 (trouble), never 1 ("different"), one `Error:` line naming the side, text or
--json alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, cli

GOOD = ROOT / "fixtures" / "v1.1" / "storage.vmb"
SIGNED = ROOT / "fixtures" / "v1.1" / "storage-signed.vmb"


def damaged(tmp_path: Path) -> Path:
    data = bytearray(GOOD.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.vmb"
    path.write_bytes(bytes(data))
    return path


def text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a blob\n")
    return path


# name: (A, B, the side named, how its error goes on after the label)
CASES = {
    "B not a blob": (lambda t: GOOD, text, "B", " at header.magic (offset 0): not a blob but "
                                                "a text file"),
    "A not a blob": (text, lambda t: GOOD, "A", " at header.magic (offset 0): not a blob "
                                                "but a text file"),
    "both bad: A first": (text, damaged, "A", " at header.magic"),
    "B damaged": (lambda t: GOOD, damaged, "B", " at body"),
    "A missing": (lambda t: t / "none.vmb", lambda t: GOOD, "A",
                  " at {path}: No such file or directory"),
    "B missing": (lambda t: GOOD, lambda t: t / "none.vmb", "B",
                  " at {path}: No such file or directory"),
    "B signed, no key": (lambda t: GOOD, lambda t: SIGNED, "B",
                         " at signature: blob is signed: give its key (--key-file) to verify "
                         "and read it"),
}


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", list(CASES))
def test_diff_names_the_side_it_cannot_read(tmp_path, case, as_json):
    make_a, make_b, side, rest = CASES[case]
    a, b = make_a(tmp_path), make_b(tmp_path)
    result = cli("diff", a, b, *(["--json"] if as_json else []))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    path = a if side == "A" else b
    missing = "missing" in case
    label = f"cannot read blob {side}" if missing else f"bad blob {side} ({path})"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {label}{rest.format(path=path)}"), lines[0]

