"""The console script skips the interpreter's last garbage collection at exit (it froze
every object: about 15 ms after `validate`); a caller passing arguments (tests,
CliRunner, a program embedding the CLI) is left alone."""

from __future__ import annotations

import atexit
import subprocess
import sys

from click.testing import CliRunner
from conftest import FIXTURE_DIR

from vmbtool.cli import main


def test_a_caller_with_arguments_gets_no_exit_hook():
    before = atexit._ncallbacks()
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert atexit._ncallbacks() == before


def test_the_console_script_freezes_at_exit():
    code = ("import atexit, gc, sys\n"
            "from vmbtool.cli import main\n"
            "sys.argv = ['vmbtool', '--version']\n"
            "before = atexit._ncallbacks()\n"
            "main(standalone_mode=False)\n"
            "added = atexit._ncallbacks() - before\n"
            "atexit._run_exitfuncs()\n"
            "print(added, gc.get_freeze_count() > 0)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.splitlines()[-1] == "1 True"


def test_text_output_to_a_closed_pipe_is_trouble_not_an_answer(tmp_path):
    """`vmbtool validate … | head -0`: the reader went away, so the verdicts could not
    be given. That is an I/O error (exit 2, one line), never "invalid" (1) nor a
    traceback."""
    import os
    import shutil

    blob = FIXTURE_DIR / "v1" / "pipe.vmb"
    for i in range(40):
        shutil.copy(blob, tmp_path / f"b{i:02}.vmb")
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    try:
        run = subprocess.run([sys.executable, "-m", "vmbtool", "validate", "--jobs", "1",
                              str(tmp_path)], stdout=write_end, stderr=subprocess.PIPE,
                             timeout=120)
    finally:
        os.close(write_end)
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        "Error: cannot write output at stdout: the reader closed the pipe"]
