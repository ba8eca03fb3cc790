"""`validate DIR` takes the regular `*.vmb` files of DIR (links to one followed): a FIFO
named `x.vmb` would hang it, so FIFOs, sockets, device nodes and folders named `*.vmb`
are skipped, and said so on stderr. A folder without blobs is a usage mistake that says
where its subfolders hold some."""

from __future__ import annotations

import os
import shutil
import socket

import pytest
from inputs_support import PLAIN, STORAGE, cli, mknod, no_crash, one_error, run


def test_only_regular_files_are_validated(tmp_path):
    shutil.copyfile(STORAGE, tmp_path / "a.vmb")
    os.mkfifo(tmp_path / "b-fifo.vmb")
    (tmp_path / "c-folder.vmb").mkdir()
    (tmp_path / "d-link.vmb").symlink_to(PLAIN)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "e-socket.vmb"))
    except OSError:  # a path too long for a socket address
        server = None
    (tmp_path / "notes.txt").write_text("not a blob, not named *.vmb\n")
    try:
        p = run("validate", tmp_path)  # a hang (reading the FIFO) is the safety net's
    finally:
        if server is not None:
            server.close()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "a.vmb"),
                                                      str(tmp_path / "d-link.vmb")]
    skipped = "b-fifo.vmb, c-folder.vmb" + (", e-socket.vmb" if server else "")
    count = 3 if server else 2
    assert p.stderr.decode().splitlines() == [
        f"{tmp_path}: skipped {count} entries that are not regular files: {skipped}",
        "2 valid, 0 invalid"]


def test_device_nodes_are_skipped(tmp_path):
    shutil.copyfile(STORAGE, tmp_path / "a.vmb")
    mknod(tmp_path / "zero.vmb", 5)
    result = cli("validate", tmp_path)
    no_crash(result)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == \
        f"{tmp_path}: skipped 1 entry that is not a regular file: zero.vmb"


def test_a_dangling_link_is_an_unreadable_blob(tmp_path):
    shutil.copyfile(STORAGE, tmp_path / "a.vmb")
    (tmp_path / "b.vmb").symlink_to(tmp_path / "gone.vmb")
    result = cli("validate", tmp_path)
    assert result.exit_code == 2
    assert result.stdout.splitlines()[1] == f"{tmp_path / 'b.vmb'}: UNREADABLE: No such " \
                                            "file or directory"


def test_a_folder_whose_blobs_are_in_subfolders(tmp_path):
    for sub in ("v1", "v2"):
        (tmp_path / sub).mkdir()
        shutil.copyfile(STORAGE, tmp_path / sub / "a.vmb")
    shutil.copyfile(STORAGE, tmp_path / "v2" / "b.vmb")
    (tmp_path / "v2" / "deeper").mkdir()
    shutil.copyfile(STORAGE, tmp_path / "v2" / "deeper" / "c.vmb")  # two levels: not counted
    result = cli("validate", tmp_path)
    no_crash(result)
    assert one_error(result.exit_code, 2, result.stderr) == (
        f"Error: no blobs to validate at {tmp_path}: no *.vmb file in it (3 in its "
        f"subdirectories: give them, or {tmp_path}/*/)")
    ok = cli("validate", tmp_path / "v1", tmp_path / "v2")  # as the hint says
    assert ok.exit_code == 0 and ok.stderr == "3 valid, 0 invalid\n"


@pytest.mark.parametrize("contents", ["nothing", "only a FIFO", "other files"])
def test_a_folder_without_blobs_is_a_usage_mistake(contents, tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    if contents == "only a FIFO":
        os.mkfifo(folder / "x.vmb")
    elif contents == "other files":
        (folder / "x.json").write_text("{}")
    p = run("validate", folder, STORAGE)
    assert one_error(p.returncode, 2, p.stderr) == \
        f"Error: no blobs to validate at {folder}: no *.vmb file in it"
    assert p.stdout == b""
