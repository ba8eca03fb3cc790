"""The installed `vmbtool` executable and `python -m vmbtool`, run as real processes.

What CliRunner cannot show: the console script is installed and works, pipes between
processes carry blobs, a real stderr never shows a traceback, and colour follows the
terminal and NO_COLOR.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXE
from pty_support import read_until_closed

from vmbtool import __version__
from vmbtool.formats.header import MAGIC

# the console script installed beside this interpreter (not a version-manager shim), else PATH
pytestmark = pytest.mark.skipif(EXE is None, reason="the vmbtool console script is not on PATH")
TIMEOUT = 60
KEY = b"VMBTOOL-SUBPROCESS-KEY:kestrel-lantern-5583"


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "VMBTOOL_KEY_FILE", "FORCE_COLOR")}
    out.update(extra)
    return out


def vmbtool(*args: object, input: bytes | None = None, environ: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *map(str, args)], input=input, capture_output=True,
                          env=environ or env(), cwd=cwd, timeout=TIMEOUT)


def ok(*args: object, **kw) -> subprocess.CompletedProcess:
    p = vmbtool(*args, **kw)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr.decode())
    assert b"Traceback" not in p.stderr
    return p


def error_line(p: subprocess.CompletedProcess, code: int = 1) -> str:
    stderr = p.stderr.decode()
    assert p.returncode == code, (p.returncode, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_the_console_script_is_installed():
    assert os.access(EXE, os.X_OK)
    p = ok("--version")
    assert p.stdout.decode().strip() == f"vmbtool, version {__version__}"
    assert p.stderr == b""


def test_python_dash_m():
    p = subprocess.run([sys.executable, "-m", "vmbtool", "--version"], capture_output=True,
                       env=env(), timeout=TIMEOUT)
    assert p.returncode == 0
    assert p.stdout.decode().strip() == f"vmbtool, version {__version__}"
    p = subprocess.run([sys.executable, "-m", "vmbtool", "--help"], capture_output=True,
                       env=env(), timeout=TIMEOUT)
    assert p.returncode == 0
    for name in ("run", "save", "inspect", "diff", "validate", "restore", "decode", "encode"):
        assert f"  {name} " in p.stdout.decode()


def test_python_dash_m_reports_errors_the_same_way(tmp_path):
    p = subprocess.run([sys.executable, "-m", "vmbtool", "inspect", tmp_path / "none.vmb"],
                       capture_output=True, env=env(), timeout=TIMEOUT)
    assert error_line(p, code=2) == f"Error: cannot read blob at {tmp_path / 'none.vmb'}: " \
                            "No such file or directory"


@pytest.mark.parametrize("scenario, seed, n, m", [
    ("storage", 11, 60, 40),
    ("network", 12, 60, 40),
    ("pipe", 13, 60, 40),
])
def test_round_trip_restore_equals_an_unbroken_run(tmp_path, scenario, seed, n, m):
    """save N; restore + run M + resave  ==  save N+M paused at N (README's round trip)."""
    a, b, c = tmp_path / "a.vmb", tmp_path / "b.vmb", tmp_path / "c.vmb"
    ok("save", "--scenario", scenario, "--seed", seed, "--steps", n, "-o", a)
    p = ok("restore", a, "--run-steps", m, "--resave", b)
    assert p.stdout.decode().splitlines()[-1] == f"resaved -> {b}"
    ok("save", "--scenario", scenario, "--seed", seed, "--steps", n + m, "--pause-at", n,
       "-o", c)
    p = ok("diff", b, c)
    assert p.stdout == b""
    assert p.stderr.decode().strip() == "equal"
    # the comparison has teeth: the blob before the run differs from both
    p = vmbtool("diff", a, c)
    assert p.returncode == 1
    assert f"scenario.steps_taken: {n} → {n + m}" in p.stdout.decode().splitlines()


def test_pipe_save_into_inspect(tmp_path):
    save = subprocess.Popen([EXE, "save", "--scenario", "network", "--steps", "30", "-o", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    inspect = subprocess.Popen([EXE, "inspect", "-", "--packets"], stdin=save.stdout,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    save.stdout.close()  # inspect owns the read end now
    out, err = inspect.communicate(timeout=TIMEOUT)
    save_err = save.stderr.read()
    save.stderr.close()
    assert save.wait(timeout=TIMEOUT) == 0, save_err
    assert inspect.returncode == 0, err
    assert save_err == b"" and err == b""
    text = out.decode()
    assert text.startswith("format 1.1, ")
    assert "scenario network, seed 1, 30 steps taken" in text
    assert text.count('channel ') >= 3 and "    txid " in text


def test_shell_pipeline(tmp_path):
    p = subprocess.run(
        f"set -o pipefail; '{EXE}' save --scenario pipe --seed 3 --steps 20 -o - "
        f"| '{EXE}' inspect - --json", shell=True, executable="/bin/bash",
        capture_output=True, env=env(), timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert b'"scenario": "pipe"' in p.stdout and b'"steps_taken": 20' in p.stdout


def test_decode_encode_pipe_is_byte_identical(tmp_path):
    blob = tmp_path / "k.vmb"
    key = tmp_path / "k.key"
    key.write_bytes(KEY)
    ok("save", "--scenario", "network", "--steps", 25, "--key-file", key, "-o", blob)
    p = subprocess.run(
        f"set -o pipefail; '{EXE}' decode '{blob}' | '{EXE}' encode - -o -", shell=True,
        executable="/bin/bash", capture_output=True, timeout=TIMEOUT,
        env=env(VMBTOOL_KEY_FILE=str(key)))
    assert p.returncode == 0, p.stderr
    assert p.stdout == blob.read_bytes()
    assert KEY not in p.stdout and KEY not in p.stderr


def test_save_to_stdout_is_a_blob():
    p = ok("save", "--steps", 10, "-o", "-")
    assert p.stdout.startswith(MAGIC)
    assert p.stderr == b""
    p = ok("validate", "-", input=p.stdout)
    assert p.stdout.decode().startswith("-: valid (format 1.1, 1 channel,")


def test_errors_in_a_real_process(tmp_path):
    blob = tmp_path / "a.vmb"
    ok("save", "--steps", 20, "--no-compress", "-o", blob)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.vmb"
    bad.write_bytes(bytes(data))
    assert "checksum mismatch" in error_line(vmbtool("inspect", bad))
    assert "checksum mismatch" in error_line(vmbtool("restore", bad))
    (tmp_path / "e.vmb").write_bytes(b"")
    assert "empty file" in error_line(vmbtool("decode", tmp_path / "e.vmb"))
    (tmp_path / "bad.json").write_text("{")
    assert "not JSON" in error_line(vmbtool("encode", tmp_path / "bad.json", "-o", "-"))
    assert "Invalid value for '--level'" in error_line(
        vmbtool("save", "--level", "99", "-o", tmp_path / "x.vmb"), code=2)
    assert list(tmp_path.glob("*.vmbtool-tmp")) == [] and not (tmp_path / "x.vmb").exists()


def test_debug_shows_a_traceback_in_a_real_process(tmp_path):
    p = vmbtool("--debug", "inspect", tmp_path / "none.vmb")
    assert p.returncode == 2  # a missing input is trouble
    stderr = p.stderr.decode()
    assert "Traceback (most recent call last)" in stderr
    assert stderr.count("\nError: ") + stderr.startswith("Error: ") == 1


def test_key_from_environment_never_printed(tmp_path):
    key = tmp_path / "site.key"
    key.write_bytes(KEY)
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(KEY[::-1])
    blob = tmp_path / "s.vmb"
    environ = env(VMBTOOL_KEY_FILE=str(key))
    outputs = [ok("save", "--steps", 15, "-o", blob, environ=environ)]
    outputs.append(ok("inspect", blob, environ=environ))
    outputs.append(ok("validate", blob, "--json", environ=environ))
    outputs.append(ok("restore", blob, "--run-steps", 5, "--json", environ=environ))
    outputs.append(ok("decode", blob, environ=environ))
    p = vmbtool("inspect", blob, environ=env(VMBTOOL_KEY_FILE=str(wrong)))
    assert "HMAC does not match" in error_line(p)
    outputs.append(p)
    p = vmbtool("inspect", blob)
    assert "give its key" in error_line(p)
    for p in outputs:
        for stream in (p.stdout, p.stderr):
            assert KEY not in stream and KEY[::-1] not in stream
            assert KEY.hex().encode() not in stream


def test_broken_pipe_is_quiet(tmp_path):
    blob = tmp_path / "n.vmb"
    ok("save", "--scenario", "network", "--steps", 200, "-o", blob)
    p = subprocess.Popen([EXE, "inspect", blob, "--packets", "--hexdump"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    assert p.stdout.readline().startswith(b"format 1.1")
    p.stdout.close()
    err = p.stderr.read()
    p.stderr.close()
    p.wait(timeout=TIMEOUT)
    assert b"Traceback" not in err
    assert b"Exception ignored" not in err


# -- a real terminal: colour and NO_COLOR ------------------------------------------------


def run_on_a_terminal(args: list[object], environ: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run with stdout on a pseudo-terminal; stderr to a pipe. Returns (rc, tty, stderr)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([EXE, *map(str, args)], stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=subprocess.PIPE, env=environ)
        os.close(slave)
        slave = -1
        shown = read_until_closed(master)
        err = p.stderr.read()
        p.stderr.close()
        return p.wait(timeout=TIMEOUT), shown, err
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


@pytest.fixture(scope="module")
def good_and_bad(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("colour")
    good = d / "good.vmb"
    ok("save", "--steps", 20, "-o", good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = d / "bad.vmb"
    bad.write_bytes(bytes(data))
    return [good, bad]


def test_validate_colours_an_invalid_verdict_on_a_terminal(good_and_bad):
    # the control for the NO_COLOR test below: without it there is colour
    rc, out, _ = run_on_a_terminal(["validate", *good_and_bad], env(TERM="xterm"))
    assert rc == 1
    assert b"\x1b[" in out
    assert b"INVALID" in out


def test_no_color_means_no_escapes(good_and_bad):
    rc, out, err = run_on_a_terminal(["validate", *good_and_bad],
                                     env(TERM="xterm", NO_COLOR="1"))
    assert rc == 1
    assert b"INVALID" in out and b": valid (" in out
    assert b"\x1b[" not in out
    assert b"\x1b[" not in err


def test_no_blob_to_a_terminal():
    rc, out, err = run_on_a_terminal(["save", "--steps", 5, "-o", "-"], env(TERM="xterm"))
    assert rc == 2
    assert MAGIC not in out
    lines = [line for line in err.decode().splitlines() if line.startswith("Error:")]
    assert lines == ["Error: refusing to write a binary blob to a terminal"]
