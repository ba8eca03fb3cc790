"""Shared by the tests/test_inputs_*.py modules: the golden blobs, the CLI in-process
and as a real process, device nodes and pipes made in a temporary folder.

A subprocess's timeout is a safety net against a hang only: no test measures time."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import Result
from conftest import ROOT, cli  # noqa: F401 - cli: the test_inputs_* modules take it here

FIXTURES = ROOT / "fixtures" / "v1.1"
STORAGE = FIXTURES / "storage.vmb"
SIGNED = FIXTURES / "storage-signed.vmb"
PLAIN = FIXTURES / "pipe-plain.vmb"
KEY_FILE = FIXTURES / "test-key"
SAFETY_NET = 60  # seconds: only ever reached by a hang, which fails the test
OUR_ERROR = re.compile(r"^Error: \S.* at \S.*: \S.*$")
# what must never reach a user from reading an input (Python's own wording; what a
# non-blob's bytes look like is the messages' part of issue 14)
RAW = ("Traceback", "struct.error", "unpack requires", "Errno", "UnsupportedOperation",
       "AttributeError", "NoneType", "seekable")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("VMBTOOL_KEY_FILE", "NO_COLOR")}
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def run(*args: object, **kw) -> subprocess.CompletedProcess:
    """`python -m vmbtool ARGS` as a real process (bytes out)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "vmbtool", *map(str, args)],
                          capture_output=True, env=env(), timeout=SAFETY_NET, **kw)


def error_lines(stderr: str | bytes) -> list[str]:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    return [line for line in text.splitlines() if line.startswith("Error:")]


def one_error(code: int, expected: int, stderr: str | bytes) -> str:
    """The one `Error:` line of a failed command, in our words, with the exit code."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert code == expected, (code, text)
    lines = error_lines(text)
    assert len(lines) == 1, text
    assert OUR_ERROR.match(lines[0]), lines[0]
    assert not any(raw in text for raw in RAW), text
    return lines[0]


def no_crash(result: Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.stderr


def mknod(path: Path, minor: int) -> Path:
    """A character device node of the memory driver (1, minor): 3 null, 5 zero, 7 full.
    Made only in a test's temporary folder; the test is skipped where it cannot be."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CI runs as root)")
    return path


def feed(fd: int, data: bytes, then_zeros: bool = False) -> threading.Thread:
    """Writes `data` (and, with `then_zeros`, zeros until the reader leaves) into the
    pipe's write end `fd` from a thread, then closes it; `thread.written` counts."""

    def write() -> None:
        with os.fdopen(fd, "wb", buffering=0) as w:
            try:
                w.write(data)
                thread.written = len(data)
                block = bytes(1 << 16)
                while then_zeros:
                    thread.written += w.write(block) or 0
            except (BrokenPipeError, OSError):
                pass

    thread = threading.Thread(target=write, daemon=True)
    thread.written = 0
    thread.start()
    return thread


def pipe_path(data: bytes) -> tuple[str, int, threading.Thread]:
    """A pipe holding `data`, named as process substitution names it (`/dev/fd/N`)."""
    r, w = os.pipe()
    return f"/dev/fd/{r}", r, feed(w, data)
