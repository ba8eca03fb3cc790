"""Unseekable inputs are read as streams: stdin (`-`), a pipe named `/dev/fd/N` (process
substitution), a FIFO, a `/proc` file, a character device. The header is checked before
anything is spooled, so a stream that is no blob (endless zeros) is refused at once, and
what is spooled is capped (`inputs.MAX_SPOOLED_BLOB`). A closed stdin is trouble."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from inputs_support import (
    KEY_FILE,
    PLAIN,
    SIGNED,
    STORAGE,
    cli,
    env,
    error_lines,
    feed,
    mknod,
    no_crash,
    one_error,
    pipe_path,
    run,
)

from vmbtool import inputs

READERS = {  # each reading command, as it names its one blob input {}
    "validate": ["validate", "{}"],
    "inspect": ["inspect", "{}"],
    "inspect --json": ["inspect", "--json", "{}"],
    "decode": ["decode", "{}"],
    "diff": ["diff", str(STORAGE), "{}"],
    "restore": ["restore", "--run-steps", "3", "{}"],
    "upgrade": ["upgrade", "{}", "-o", "{out}"],
}


def args_for(command: str, source: str, tmp_path) -> list[str]:
    return [a.format(source, out=tmp_path / "upgraded.vmb") for a in READERS[command]]


def reference(command: str, tmp_path) -> str:
    """What the command prints for the golden blob given as a file."""
    result = cli(*args_for(command, str(STORAGE), tmp_path))
    no_crash(result)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", list(READERS))
def test_a_pipe_path_reads_as_the_file_does(command, tmp_path):
    expected = reference(command, tmp_path)
    path, r, writer = pipe_path(STORAGE.read_bytes())
    try:
        result = cli(*args_for(command, path, tmp_path))
    finally:
        writer.join()
        os.close(r)
    no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected.replace(str(STORAGE), path)


@pytest.mark.parametrize("command", list(READERS))
def test_stdin_reads_as_the_file_does(command, tmp_path):
    expected = reference(command, tmp_path)
    result = cli(*args_for(command, "-", tmp_path), input=STORAGE.read_bytes())
    no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == expected.replace(str(STORAGE), "-")


def test_a_signed_uncompressed_and_a_fifo_blob_stream(tmp_path):
    fifo = tmp_path / "blob.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(PLAIN.read_bytes(),),
                              daemon=True)
    writer.start()
    p = run("validate", fifo, "--json")
    writer.join()
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["blobs"][0]["valid"] is True
    p = run("inspect", "-", "--key-file", KEY_FILE, input=SIGNED.read_bytes(),
            stdin=None)
    assert p.returncode == 0, p.stderr
    assert b"signed" in p.stdout.splitlines()[0]


def test_process_substitution_in_a_real_shell():
    bash = "/bin/bash"
    if not os.access(bash, os.X_OK):
        pytest.skip("no bash for process substitution")
    command = f'{sys.executable} -m vmbtool validate <(cat "$1") && ' \
              f'{sys.executable} -m vmbtool diff "$1" <(cat "$1")'
    p = subprocess.run([bash, "-c", command, "bash", STORAGE], capture_output=True,
                       env=env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"/dev/fd/") and b": valid (format 1.1" in p.stdout
    assert p.stderr.decode().splitlines()[-1] == "equal"


@pytest.mark.parametrize("command", ["validate", "inspect", "decode", "restore", "upgrade"])
def test_endless_zeros_on_stdin_are_refused_at_once(command, tmp_path):
    """Nothing is spooled: the process reads a few kilobytes (one buffer), refuses the
    magic and leaves; the writer stops at a full pipe, far below 1 MiB."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "vmbtool",
                             *args_for(command, "-", tmp_path)], stdin=r,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    os.close(r)
    writer = feed(w, b"", then_zeros=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    writer.join(60)
    assert not writer.is_alive()
    assert writer.written < 1 << 20
    if command == "validate":
        assert proc.returncode == 1
        assert out.startswith(b"-: INVALID at header")
    else:
        assert one_error(proc.returncode, 1, err).startswith("Error: bad blob at header")
    assert not (tmp_path / "upgraded.vmb").exists()


def test_a_zero_device_is_refused_at_its_header(tmp_path):
    zero = mknod(tmp_path / "zero.vmb", 5)
    p = run("validate", zero)
    assert p.returncode == 1
    assert p.stdout.decode().startswith(f"{zero}: INVALID at header")
    p = run("inspect", zero)
    assert one_error(p.returncode, 1, p.stderr).startswith("Error: bad blob at header")
    p = run("diff", STORAGE, zero)
    assert one_error(p.returncode, 2, p.stderr).startswith(f"Error: bad blob B ({zero}) at "
                                                           "header")


def test_a_proc_file_is_read_as_a_stream():
    p = run("validate", "/proc/self/status")  # regular, size 0, cannot seek to its end
    assert p.returncode == 1, p.stderr
    assert p.stdout.decode().startswith("/proc/self/status: INVALID at header")
    p = run("inspect", "/proc/self/cmdline")
    assert one_error(p.returncode, 1, p.stderr).startswith("Error: bad blob at header")


def test_a_valid_header_then_garbage_is_refused_after_the_header(tmp_path):
    data = STORAGE.read_bytes()
    result = cli("validate", "-", input=data[:56] + bytes(4096))
    no_crash(result)
    assert result.exit_code == 1
    assert result.stdout.startswith("-: INVALID at body")
    # a header that is short, or whose checksum does not match, is refused as in a file
    for damaged, words in ((data[:40], "truncated"), (data[:30] + b"x" + data[31:],
                                                      "checksum mismatch")):
        result = cli("inspect", "-", input=damaged)
        assert words in one_error(result.exit_code, 1, result.stderr)


def test_what_is_spooled_is_capped(monkeypatch):
    """A stream past the cap (here 64 KiB, to keep the test small) is trouble, named."""
    monkeypatch.setattr(inputs, "MAX_SPOOLED_BLOB", 64 << 10)
    data = STORAGE.read_bytes()
    assert len(data) < 64 << 10
    assert cli("validate", "-", input=data).exit_code == 0  # under the cap: as before
    for command in (["inspect", "-"], ["decode", "-"], ["restore", "-"]):
        result = cli(*command, input=data[:56] + bytes(100 << 10))
        assert one_error(result.exit_code, 2, result.stderr) == (
            "Error: cannot read blob at stdin: longer than 64 KiB, the most vmbtool keeps "
            "of a blob read from a pipe or stdin (give it as a file)")
    result = cli("validate", "-", input=data[:56] + bytes(100 << 10))
    assert result.exit_code == 2
    assert result.stdout.startswith("-: UNREADABLE at stdin: longer than")


def closed_stdin() -> None:
    os.close(0)


@pytest.mark.parametrize("command", [["inspect", "-"], ["decode", "-"], ["restore", "-"],
                                     ["diff", str(STORAGE), "-"],
                                     ["upgrade", "-", "-o", "{out}"],
                                     ["inspect", str(SIGNED), "--key-file", "-"]])
def test_a_closed_stdin_is_one_error_line(command, tmp_path):
    args = [a.format(out=tmp_path / "up.vmb") for a in command]
    p = run(*args, stdin=None, preexec_fn=closed_stdin)
    line = one_error(p.returncode, 2, p.stderr)
    assert line.endswith(": stdin is closed"), line
    assert not (tmp_path / "up.vmb").exists()


def test_validate_with_a_closed_stdin_is_unreadable():
    p = run("validate", STORAGE, "-", stdin=None, preexec_fn=closed_stdin)
    assert p.returncode == 2
    assert p.stdout.decode().splitlines()[1] == "-: UNREADABLE at stdin: stdin is closed"
    assert error_lines(p.stderr) == []
    assert p.stderr.decode().splitlines()[-1] == "1 valid, 0 invalid, 1 unreadable"


@pytest.mark.parametrize("command", [["inspect", "-"], ["decode", "-"], ["validate", "-"]])
def test_a_terminal_on_stdin_is_refused_not_waited_on(command):
    import pty

    controller, terminal = pty.openpty()
    try:
        p = run(*command, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    why = "stdin is a terminal: give the blob as a file, or pipe it in"
    if command[0] == "validate":
        assert p.returncode == 2
        assert p.stdout.decode() == f"-: UNREADABLE at stdin: {why}\n"
    else:
        assert one_error(p.returncode, 2, p.stderr) == f"Error: cannot read blob at stdin: {why}"


@pytest.mark.parametrize("args", [["diff", "-", "-"], ["validate", "-", str(STORAGE), "-"]])
def test_stdin_is_one_input_only(args):
    result = cli(*args, input=STORAGE.read_bytes())
    no_crash(result)
    assert one_error(result.exit_code, 2, result.stderr) == \
        "Error: bad arguments at -: stdin can be read once: give - for one input only"
    assert result.stdout == ""
