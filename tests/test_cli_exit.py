"""The console script skips the interpreter's last garbage collection at exit (it froze
every object: about 15 ms after `validate`); a caller passing arguments (tests,
CliRunner, a program embedding the CLI) is left alone."""

from __future__ import annotations

import atexit
import subprocess
import sys

from click.testing import CliRunner

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
