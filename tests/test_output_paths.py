"""Output paths through the real CLI, for each of the five writing commands (`save -o`,
`encode -o`, `decode -o`, `upgrade -o`, `restore --resave`): a regular file is replaced
atomically keeping its mode and owner, a symlink is followed and stays, a device, FIFO,
socket or /dev/fd/N is written through and never replaced, a bad path is refused before
any work, a failing or interrupted write leaves the old file and no temporary, and
stdout carries one stream.

Device nodes, FIFOs, sockets and links are made in temporary folders; nothing here opens
the machine's own devices. Most cases run in-process (CliRunner); what needs a process of
its own (a file-size limit, a terminal, a closed or borrowed descriptor) runs
`python -m vmbtool`.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from conftest import cli

from vmbtool import output
from vmbtool.formats.header import MAGIC

TIMEOUT = 60
OTHER_UID = 1234  # the owner a file is given to show that a replace keeps it
TEMPORARY = re.compile(r"^\..*\.[0-9a-f]{8}\.vmbtool-tmp$")
OLD = b"the old file, which must survive\n"

# what each writing command is given, and the call that is its work (which a bad output
# path must prevent from ever starting)
COMMANDS: dict[str, Callable[[dict[str, Path], str], list[str]]] = {
    "save": lambda src, out: ["save", "--steps", "5", "-o", out],
    "encode": lambda src, out: ["encode", str(src["json"]), "-o", out],
    "decode": lambda src, out: ["decode", str(src["blob"]), "-o", out],
    "upgrade": lambda src, out: ["upgrade", str(src["blob"]), "-o", out],
    "restore": lambda src, out: ["restore", str(src["blob"]), "--run-steps", "5",
                                 "--resave", out],
}
WORK = {"save": ("vmbtool.tools", "run_scenario"), "encode": ("vmbtool.jsonview", "encode"),
        "decode": ("vmbtool.blob", "load_blob"), "upgrade": ("vmbtool.upgrade", "upgrade_blob"),
        "restore": ("vmbtool.tools", "restore_and_run")}
BLOB_WRITERS = ("save", "encode", "upgrade", "restore")  # decode writes JSON text
each_command = pytest.mark.parametrize("command", list(COMMANDS))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod and chown need root")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    blob, doc = d / "source.vmb", d / "source.json"
    assert cli("save", "--steps", "5", "-o", blob).exit_code == 0
    assert cli("decode", blob, "-o", doc).exit_code == 0
    return {"blob": blob, "json": doc}


def run(command: str, sources: dict[str, Path], out: object) -> Result:
    return cli(*COMMANDS[command](sources, str(out)))


def written(command: str, data: bytes) -> bool:
    """The command's whole output: JSON for decode, a blob for the rest."""
    if command == "decode":
        return isinstance(json.loads(data), dict)
    return data.startswith(MAGIC) and len(data) > 256


def succeeded(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exc_info
    assert result.exit_code == 0, (result.exit_code, result.stderr)


def error_line(result: Result, code: int = 2) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exc_info
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- regular files and symlinks: replaced atomically -----------------------------------


@each_command
def test_a_replaced_file_keeps_its_mode_and_owner(command, sources, tmp_path):
    target = tmp_path / "kept.out"
    target.write_bytes(OLD)
    target.chmod(0o600)
    owner = (OTHER_UID, OTHER_UID) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(target, *owner)
    succeeded(run(command, sources, target))
    st = target.stat()
    assert written(command, target.read_bytes())
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == owner
    assert listing(tmp_path) == ["kept.out"]


@each_command
def test_a_new_file_gets_0666_less_the_umask(command, sources, tmp_path):
    old_mask = os.umask(0o027)
    try:
        succeeded(run(command, sources, tmp_path / "new.out"))
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE((tmp_path / "new.out").stat().st_mode) == 0o640


@each_command
def test_a_file_nobody_may_write_is_refused_even_to_root(command, sources, tmp_path):
    target = tmp_path / "readonly.out"
    target.write_bytes(OLD)
    target.chmod(0o444)
    assert "no write permission (mode 0444" in error_line(run(command, sources, target))
    assert target.read_bytes() == OLD
    assert listing(tmp_path) == ["readonly.out"]


@each_command
def test_a_symlink_is_followed_and_stays(command, sources, tmp_path):
    (tmp_path / "blobs").mkdir()
    real = tmp_path / "blobs" / "x.out"
    real.write_bytes(OLD)
    link = tmp_path / "latest.out"
    link.symlink_to("blobs/x.out")
    succeeded(run(command, sources, link))
    assert link.is_symlink() and os.readlink(link) == "blobs/x.out"
    assert written(command, real.read_bytes())
    assert listing(tmp_path / "blobs") == ["x.out"]


@each_command
def test_a_dangling_symlink_creates_its_target(command, sources, tmp_path):
    (tmp_path / "sub").mkdir()
    link = tmp_path / "next.out"
    link.symlink_to(tmp_path / "sub" / "made.out")
    succeeded(run(command, sources, link))
    assert link.is_symlink()
    assert written(command, (tmp_path / "sub" / "made.out").read_bytes())


@each_command
def test_a_long_name_still_works(command, sources, tmp_path, monkeypatch):
    name = "n" * 250
    seen = spy_on_temporaries(monkeypatch)
    succeeded(run(command, sources, tmp_path / name))
    assert written(command, (tmp_path / name).read_bytes())
    assert listing(tmp_path) == [name]
    [temporary] = seen
    assert len(temporary) <= 255 and temporary.startswith("." + "n" * 200)
    assert TEMPORARY.match(temporary)


@each_command
def test_the_temporary_goes_beside_the_target(command, sources, tmp_path, monkeypatch):
    (tmp_path / "deep").mkdir()
    monkeypatch.chdir(tmp_path)
    seen = spy_on_temporaries(monkeypatch)
    succeeded(run(command, sources, "deep/x.out"))
    [temporary] = seen
    assert os.path.dirname(seen[temporary]) == str(tmp_path / "deep")


def spy_on_temporaries(monkeypatch) -> dict[str, str]:
    """Records each temporary file being written: its name -> its full path."""
    seen: dict[str, str] = {}
    real = output.write_all

    def write_all(fd: int, data: bytes) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(".vmbtool-tmp"):
            seen[os.path.basename(path)] = path
        real(fd, data)

    monkeypatch.setattr(output, "write_all", write_all)
    return seen


# -- failing and interrupted writes ---------------------------------------------------


def limited_file_size() -> None:  # in the child, before exec: writes past 256 bytes fail
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killing signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))


@each_command
def test_a_full_disk_leaves_the_old_file_and_no_temporary(command, sources, tmp_path):
    target = tmp_path / "full.out"
    target.write_bytes(OLD)
    p = subprocess.run([sys.executable, "-m", "vmbtool", *COMMANDS[command](sources, str(target))],
                       capture_output=True, timeout=TIMEOUT, env=child_env(),
                       preexec_fn=limited_file_size)
    line = process_error_line(p)
    assert line == (f"Error: cannot write output at {target}: File too large; the old file "
                    "is unchanged")
    assert target.read_bytes() == OLD
    assert listing(tmp_path) == ["full.out"]


@each_command
@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_write_leaves_no_temporary(command, interruption, sources, tmp_path,
                                                  monkeypatch):
    target = tmp_path / "x.out"
    target.write_bytes(OLD)

    def write_half(fd: int, data: bytes) -> None:
        os.write(fd, data[:len(data) // 2])
        raise interruption(143) if interruption is SystemExit else interruption()

    monkeypatch.setattr(output, "write_all", write_half)
    result = run(command, sources, target)
    assert result.exit_code != 0
    assert target.read_bytes() == OLD
    assert listing(tmp_path) == ["x.out"]


@each_command
def test_a_directory_that_cannot_be_synced_does_not_undo_a_done_write(command, sources,
                                                                     tmp_path, monkeypatch):
    real = os.fsync

    def fsync(fd: int) -> None:  # as on a write-only directory or some network filesystems
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    succeeded(run(command, sources, tmp_path / "x.out"))
    assert written(command, (tmp_path / "x.out").read_bytes())


# -- written through, never replaced ---------------------------------------------------


def make_device(path: Path, device: int) -> None:
    try:  # makedev(1, 3) is a null device, makedev(1, 7) a full one
        os.mknod(path, stat.S_IFCHR | 0o666, device)
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")


@needs_root
@each_command
def test_a_null_device_is_written_through(command, sources, tmp_path):
    node = tmp_path / "null-node"
    make_device(node, os.makedev(1, 3))
    succeeded(run(command, sources, node))
    st = node.lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert listing(tmp_path) == ["null-node"]


@needs_root
@each_command
def test_a_full_device_is_one_error_line(command, sources, tmp_path):
    node = tmp_path / "full-node"
    make_device(node, os.makedev(1, 7))
    line = error_line(run(command, sources, node))
    assert line == f"Error: cannot write output at {node}: No space left on device"
    assert stat.S_ISCHR(node.lstat().st_mode)
    assert listing(tmp_path) == ["full-node"]


@each_command
def test_a_fifo_is_written_through(command, sources, tmp_path, tmp_path_factory):
    fifo = tmp_path / "pipe.out"
    os.mkfifo(fifo)
    # a second name for the same FIFO, to release the reader even if the command
    # wrongly replaced the first name with a file
    handle = tmp_path_factory.mktemp("handle") / "fifo"
    os.link(fifo, handle)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(handle.read_bytes()),
                              daemon=True)
    reader.start()
    try:
        result = run(command, sources, fifo)
    finally:
        if reader.is_alive():  # no writer came: a writer that closes at once ends the read
            try:
                os.close(os.open(handle, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:  # ENXIO: the reader had its end and closed, not yet gone
                if exc.errno != errno.ENXIO:
                    raise
        reader.join(TIMEOUT)
    succeeded(result)
    assert written(command, received[0])
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@each_command
def test_a_socket_is_written_through(command, sources):
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # AF_UNIX paths are short
        path = os.path.join(short, "s")
        received: list[bytes] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(path)
            server.listen(1)
            server.settimeout(TIMEOUT)

            def accept() -> None:
                conn, _ = server.accept()
                with conn:
                    received.append(b"".join(iter(lambda: conn.recv(1 << 16), b"")))

            reader = threading.Thread(target=accept, daemon=True)
            reader.start()
            result = None
            try:
                result = run(command, sources, path)
            finally:
                if result is None or result.exit_code != 0:  # no writer came: wake accept()
                    server.shutdown(socket.SHUT_RDWR)
                reader.join(TIMEOUT)
        succeeded(result)
        assert written(command, received[0])
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


@each_command
def test_a_descriptor_path_is_written_through(command, sources, tmp_path):
    """`-o >(wc -c)`: the shell passes a pipe as /dev/fd/N."""
    r, w = os.pipe()
    with open(tmp_path / "stderr", "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "vmbtool",
                              *COMMANDS[command](sources, f"/dev/fd/{w}")],
                             pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             env=child_env())
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        received = pipe.read()
    assert p.wait(timeout=TIMEOUT) == 0, (tmp_path / "stderr").read_text()
    assert written(command, received)


# -- refused before any work -----------------------------------------------------------


def unwritable_directory(tmp_path: Path) -> str:
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0o555)  # refused to root as well: judged by the bits
    return str(d / "x.out")


def dangling_into_nowhere(tmp_path: Path) -> str:
    (tmp_path / "link.out").symlink_to(tmp_path / "gone" / "x.out")
    return str(tmp_path / "link.out")


BAD_PATHS: dict[str, tuple[Callable[[Path], str], str]] = {
    "directory": (lambda t: str(t), "it is a directory"),
    "dot": (lambda t: ".", "it is a directory"),
    "trailing slash": (lambda t: str(t / "x.vmb") + "/", "a name ending in / is a directory"),
    "empty": (lambda t: "", "the file name is empty"),
    "missing directory": (lambda t: str(t / "nowhere" / "x.out"), "does not exist"),
    "file as directory": (lambda t: str(t / "old.out" / "x.out"), "is not a directory"),
    "unwritable directory": (unwritable_directory, "no write permission (mode 0555"),
    "dangling link, missing directory": (dangling_into_nowhere, "does not exist"),
}


@each_command
@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_a_bad_path_is_refused_before_any_work(command, case, sources, tmp_path,
                                               monkeypatch):
    make, why = BAD_PATHS[case]
    (tmp_path / "old.out").write_bytes(OLD)
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    before = {d: listing(d) for d in (tmp_path, *(p for p in tmp_path.iterdir() if p.is_dir()))}
    module, name = WORK[command]

    def work_started(*args, **kwargs):
        raise AssertionError(f"{command} started its work before checking its output")

    monkeypatch.setattr(f"{module}.{name}", work_started)
    result = run(command, sources, path)
    line = error_line(result)
    assert line.startswith("Error: cannot write output at ") and why in line
    assert result.stdout == ""  # restore printed no report: it never ran
    assert {d: listing(d) for d in before} == before
    assert (tmp_path / "old.out").read_bytes() == OLD


@each_command
def test_a_relative_name_in_a_removed_directory_is_refused(command, sources, tmp_path,
                                                           monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    (tmp_path / "here").rmdir()
    line = error_line(run(command, sources, "x.out"))
    assert line == "Error: cannot write output at x.out: the current directory no longer exists"


def test_restore_resave_to_a_missing_directory_fails_before_restoring(sources, tmp_path,
                                                                      monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("vmbtool.tools.restore_file", lambda *a, **k: calls.append("restore"))
    result = cli("restore", sources["blob"], "--run-steps", 20000, "--resave",
                 "/nonexistent/x.vmb")
    assert error_line(result) == ("Error: cannot write output at /nonexistent/x.vmb: "
                                  "directory /nonexistent does not exist")
    assert calls == [] and result.stdout == ""


# -- stdout is one stream --------------------------------------------------------------


@each_command
def test_stdout_carries_the_output_alone(command, sources, tmp_path):
    result = run(command, sources, "-")
    succeeded(result)
    assert written(command, result.stdout_bytes)
    if command in BLOB_WRITERS:  # the blob decodes: no report line inside it
        (tmp_path / "out.vmb").write_bytes(result.stdout_bytes)
        succeeded(cli("validate", tmp_path / "out.vmb"))


def test_restore_resave_to_stdout_sends_its_report_to_stderr(sources):
    result = cli("restore", sources["blob"], "--run-steps", 5, "--resave", "-")
    succeeded(result)
    assert result.stdout_bytes.startswith(MAGIC)
    assert result.stderr.startswith("restored storage seed 1 at step 5:")
    assert result.stderr.splitlines()[-1] == "resaved -> -"


def test_restore_resave_to_stdout_with_json_is_a_usage_error(sources, monkeypatch):
    monkeypatch.setattr("vmbtool.tools.restore_and_run", lambda *a, **k: 1 / 0)
    result = cli("restore", sources["blob"], "--resave", "-", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--resave - and --json both want stdout" in result.stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_restore_resave_to_a_descriptor_that_is_also_stdout(as_json, sources, tmp_path):
    """`--resave /dev/fd/N` where N is the pipe stdout is on: one stream, as with `-`."""
    r, w = os.pipe()
    with open(tmp_path / "stderr", "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "vmbtool", "restore", str(sources["blob"]),
                              "--run-steps", "5", "--resave", f"/dev/fd/{w}",
                              *(["--json"] if as_json else [])],
                             pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=w, stderr=err,
                             env=child_env())
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        received = pipe.read()
    code = p.wait(timeout=TIMEOUT)
    report = (tmp_path / "stderr").read_text()
    if as_json:
        assert code == 2 and received == b""
        assert f"--resave /dev/fd/{w} and --json both want stdout" in report
    else:
        assert code == 0, report
        assert received.startswith(MAGIC) and b"restored" not in received
        (tmp_path / "out.vmb").write_bytes(received)
        succeeded(cli("validate", tmp_path / "out.vmb"))
        assert report.startswith("restored storage seed 1 at step 5:")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "VMBTOOL_KEY_FILE"}


def process_error_line(p: subprocess.CompletedProcess, code: int = 2) -> str:
    stderr = p.stderr.decode()
    assert p.returncode == code, (p.returncode, stderr)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", BLOB_WRITERS)
def test_a_blob_is_never_written_to_a_terminal(command, sources):
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "vmbtool", *COMMANDS[command](sources, "-")],
                           stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                           env=child_env(), timeout=TIMEOUT)
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 1 << 16)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(slave)
        os.close(master)
    assert process_error_line(p) == "Error: refusing to write a binary blob to a terminal"
    assert MAGIC not in shown


def shown_on(master: int) -> bytes:
    """What reached the terminal whose master side is `master` (without waiting)."""
    os.set_blocking(master, False)
    try:
        return os.read(master, 1 << 16)
    except BlockingIOError:
        return b""


@needs_root
@pytest.mark.parametrize("command", BLOB_WRITERS)
def test_a_blob_is_never_written_to_a_terminal_behind_a_path(command, sources, tmp_path):
    master, slave = pty.openpty()
    try:  # a node for this test's own pseudo-terminal, made in the temporary folder
        node = tmp_path / "tty-node"
        make_device(node, os.fstat(slave).st_rdev)
        result = run(command, sources, node)
        shown = shown_on(master)
    finally:
        os.close(slave)
        os.close(master)
    assert error_line(result) == (f"Error: refusing to write a binary blob at {node}: it is "
                                  "a terminal")
    assert shown == b""


def test_a_blob_is_never_written_to_a_terminal_behind_a_descriptor(sources):
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "vmbtool",
                            *COMMANDS["save"](sources, f"/dev/fd/{slave}")],
                           pass_fds=(slave,), stdin=subprocess.DEVNULL,
                           capture_output=True, env=child_env(),
                           timeout=TIMEOUT)
        shown = shown_on(master)
    finally:
        os.close(slave)
        os.close(master)
    assert process_error_line(p) == (f"Error: refusing to write a binary blob at "
                                     f"/dev/fd/{slave}: it is a terminal")
    assert shown == b""


@each_command
def test_a_closed_pipe_on_stdout_is_one_error_line(command, sources):
    r, w = os.pipe()
    os.close(r)  # the reader went away before the first byte
    try:
        p = subprocess.run([sys.executable, "-m", "vmbtool", *COMMANDS[command](sources, "-")],
                           stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE,
                           env=child_env(), timeout=TIMEOUT)
    finally:
        os.close(w)
    assert process_error_line(p) == ("Error: cannot write output at stdout: the reader "
                                     "closed the pipe")


@pytest.mark.parametrize("args", [["save", "--steps", "5", "-o", "-"], ["decode"],
                                  ["inspect"], ["validate"]], ids=" ".join)
def test_a_closed_stdout_is_one_error_line(args, sources):
    """Started with stdout closed (`vmbtool ... >&-`): what would go there fails."""
    if args[0] != "save":
        args = [*args, str(sources["blob"])]
    p = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "vmbtool",
                        *args], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=child_env(), timeout=TIMEOUT)
    assert process_error_line(p) == "Error: cannot write output at stdout: stdout is closed"
