"""Progress bars on long `save`, `run` and `restore` work: drawn when stderr is a terminal
(a pty here) and the run is long (2,000 steps or more), never on a pipe.

Real processes (`python -m vmbtool`), all started at once and drained as they run, so the
checks take the time of the slowest one; nothing depends on how fast that is.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner
from conftest import ROOT
from pty_support import read_until_closed

from vmbtool.cli import main
from vmbtool.clikit import PROGRESS_MIN_STEPS

LONG = PROGRESS_MIN_STEPS
WORK = {  # command -> (arguments, the bar's label)
    "run": (["run", "--steps", LONG], "running storage"),
    "save": (["save", "--steps", LONG, "-o", "{tmp}/long.vmb"], "running storage"),
    "restore": (["restore", "{tmp}/short.vmb", "--run-steps", LONG],
                "running the restored channels"),
}


def env() -> dict[str, str]:
    root = str(ROOT)
    return {**{k: v for k, v in os.environ.items() if k != "VMBTOOL_KEY_FILE"},
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
            "TERM": "xterm", "COLUMNS": "100"}


class Run:
    """`python -m vmbtool ARGS` with stderr on a fresh pty or a pipe; stdout a pipe."""

    def __init__(self, args: list[str], on_terminal: bool) -> None:
        self.chunks: list[bytes] = []
        master = slave = None
        if on_terminal:
            master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vmbtool", *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=slave if on_terminal else subprocess.PIPE,
            env=env())
        if on_terminal:
            os.close(slave)
            self.reader = threading.Thread(target=self.drain, args=(master,))
            self.reader.start()

    def drain(self, master: int) -> None:
        try:
            self.chunks.append(read_until_closed(master))
        finally:
            os.close(master)

    def finish(self) -> tuple[int, bytes, bytes]:
        stdout, stderr = self.process.communicate(timeout=120)
        if stderr is None:
            self.reader.join(timeout=120)
            stderr = b"".join(self.chunks)
        return self.process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], tuple[int, bytes, bytes]]:
    """Every command on a terminal and on a pipe, and run just short of the threshold."""
    tmp = tmp_path_factory.mktemp("progress")
    result = CliRunner().invoke(main, ["save", "--steps", 5, "-o", str(tmp / "short.vmb")])
    assert result.exit_code == 0, result.stderr
    started = {}
    for command, (args, _label) in WORK.items():
        args = [str(a).format(tmp=tmp) for a in args]
        for where in ("terminal", "pipe"):
            target = [a.replace("long.vmb", f"long-{where}.vmb") for a in args]
            started[command, where] = Run(target, where == "terminal")
    started["short run", "terminal"] = Run(["run", "--steps", str(LONG - 1)], True)
    return {key: run.finish() for key, run in started.items()}


@pytest.mark.parametrize("command", list(WORK))
def test_a_bar_on_a_terminal_never_on_a_pipe(runs, command):
    label = WORK[command][1]
    code, _stdout, stderr = runs[command, "terminal"]
    assert code == 0, stderr
    text = stderr.decode()
    assert label in text and "100%" in text, text[-500:]
    assert "#" in text  # click's bar fills with #

    code, stdout, stderr = runs[command, "pipe"]
    assert code == 0, stderr
    text = stderr.decode()
    assert label not in text and "%" not in text and "\r" not in text
    if command == "save":  # only the one report line
        assert text.startswith("saved storage seed 1 at step 2000: 1 channel, ")
        assert text.count("\n") == 1
        assert stdout == b""
    else:  # the report itself on stdout, as ever
        assert text == ""
        assert stdout

    if command == "run":  # one step short of a long run: no bar on the terminal either
        code, stdout, stderr = runs["short run", "terminal"]
        assert code == 0
        assert stderr == b""
        assert stdout.startswith(f"scenario storage, seed 1, {LONG - 1} steps\n".encode())
