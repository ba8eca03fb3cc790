"""`vmbtool --help` starts fast: the CLI module imports only click and light modules; the
heavy ones (construct, zstandard, google_crc32c) load in the commands that need them."""

from __future__ import annotations

import ast
import subprocess
import sys

HEAVY = "{'construct', 'zstandard', 'google_crc32c'}"


def loaded_after(code: str) -> list[str]:
    probe = (f"{code}; import sys; "
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY}))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return ast.literal_eval(run.stdout)


def test_importing_the_cli_loads_no_heavy_module():
    assert loaded_after("import vmbtool.cli") == []


def test_help_loads_no_heavy_module():
    code = ("import contextlib, io, vmbtool.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.suppress(SystemExit):\n"
            "    vmbtool.cli.main(['--help'])")
    assert loaded_after(f"exec({code!r})") == []


def test_a_command_still_loads_what_it_needs():
    code = ("import contextlib, io, vmbtool.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.suppress(SystemExit):\n"
            "    vmbtool.cli.main(['validate', 'no-such-blob.vmb'])")
    assert "zstandard" in loaded_after(f"exec({code!r})")
