"""The library-wording guard: every message the test suite provokes is scanned for the
text of a library (construct, struct, Python's bytes repr, a traceback).

What is recorded, for each test in turn: every `VmbtoolError` constructed in this
process (shown or not: a message that exists can reach a user), what `CliRunner` results
print to stderr and validate's `INVALID at` verdict lines on their stdout, an exception a
`CliRunner` run let escape (a traceback in real life), and the captured stderr of every
subprocess (`Popen.communicate`, which `subprocess.run` uses too). A run given `--debug`
asked for a traceback and is not held to it. conftest.py installs the recorders once and
fails the test that provoked such a message at its teardown, so the culprit is named.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import click.testing
import pytest

from vmbtool.errors import VmbtoolError

LIBRARY_WORDING = re.compile(
    r"""(?<![\w'"])b['"]|struct '|Container\(|ListContainer\(|parsing expected"""
    r"|error during building|Traceback|Error in path")

provoked: list[str] = []
installed = False


def record(text: Any) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(text, str) and text:
        provoked.append(text)


def leaks(messages: list[str]) -> list[str]:
    """The messages (one line each) that carry a library's wording."""
    return [line for text in messages for line in text.splitlines()
            if LIBRARY_WORDING.search(line)]


def install() -> None:
    """Wrap the three sources once (a conftest loaded again, as pytester does, finds
    them wrapped)."""
    global installed
    if installed:
        return
    installed = True
    original_init = VmbtoolError.__init__

    def recording_init(self: VmbtoolError, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        record(str(self))

    VmbtoolError.__init__ = recording_init  # type: ignore[method-assign]

    original_invoke = click.testing.CliRunner.invoke

    def recording_invoke(self: click.testing.CliRunner, *args: Any, **kwargs: Any) -> Any:
        result = original_invoke(self, *args, **kwargs)
        if asks_for_traceback(args[1] if len(args) > 1 else kwargs.get("args")):
            return result
        record(result.stderr_bytes)
        # validate's verdicts (made in worker processes too) are on stdout
        record("\n".join(line for line in result.stdout.splitlines() if " INVALID at " in line))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            record(f"Traceback (a CliRunner run let it escape): "
                   f"{type(result.exception).__name__}: {result.exception}")
        return result

    click.testing.CliRunner.invoke = recording_invoke  # type: ignore[method-assign]

    original_communicate = subprocess.Popen.communicate

    def recording_communicate(self: subprocess.Popen, *args: Any, **kwargs: Any) -> Any:
        stdout, stderr = original_communicate(self, *args, **kwargs)
        if not asks_for_traceback(self.args):
            record(stderr)
        return stdout, stderr

    # (subprocess.run and check_output communicate too)
    subprocess.Popen.communicate = recording_communicate  # type: ignore[method-assign]


def asks_for_traceback(args: Any) -> bool:
    """`--debug` asks for the traceback: a run with it may show one."""
    if isinstance(args, (str, bytes)):
        args = args.split()
    return any(str(a) == "--debug" for a in args or ())


def register_marker(config: Any) -> None:
    config.addinivalue_line(
        "markers", "library_wording_ok(reason): the test's messages may quote library "
        "text on purpose (--debug's traceback, the guard's own tests)")


@pytest.fixture(autouse=True)
def no_library_wording(request: Any) -> Any:
    """Fails, at teardown, a test that provoked a message in a library's words."""
    provoked.clear()
    yield
    found = leaks(provoked)
    provoked.clear()
    if found and request.node.get_closest_marker("library_wording_ok") is None:
        pytest.fail("library wording reached a message:\n  " + "\n  ".join(found[:10]),
                    pytrace=False)
