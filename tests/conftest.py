"""Shared test set-up.

The helpers every test module shares live here, once: `ROOT`, `FIXTURE_DIR`, the
fixtures' key, `EXE` (the console script), `cli` (the CLI in-process) and
`fresh_channel` (a server channel to restore into); tests import them
(`from conftest import cli`).

Every test is also held to the library-wording guard (tests/wording.py): a message it
provokes in construct's, struct's or Python's words fails it at teardown."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import wording
from wording import no_library_wording  # noqa: F401 - an autouse fixture for every test

pytest_plugins = ["pytester"]  # (test_library_wording runs the guard in a session)

wording.install()


def pytest_configure(config) -> None:
    wording.register_marker(config)


ROOT = Path(__file__).resolve().parent.parent  # the checkout
FIXTURE_DIR = ROOT / "fixtures"  # the fixture blobs, a directory a format version (v1, v1.1)
FIXTURE_KEY_FILE = FIXTURE_DIR / "v1" / "test-key"  # signs every *-signed fixture
FIXTURE_KEY = FIXTURE_KEY_FILE.read_bytes()
# the console script beside this interpreter (else on PATH)
EXE = shutil.which("vmbtool", path=os.path.dirname(sys.executable)) or shutil.which("vmbtool")


def cli(*args: object, input: bytes | str | None = None,
        env: dict[str, str | None] | None = None) -> Any:
    """`vmbtool ARGS` in this process (click's CliRunner), with no key from the
    environment (a key file named in the caller's own must not leak into the tests) but
    what `env` sets; the click Result, stdout and stderr apart."""
    from click.testing import CliRunner

    from vmbtool.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input,
                              env={"VMBTOOL_KEY_FILE": None, **(env or {})})


def fresh_channel(scenario: str = "storage", index: int = 0, *, seed: int) -> Any:
    """A freshly allocated, configured server channel of `scenario` (its channel `index`)
    on a bus of its own: what a restore goes into."""
    from vmbtool.scenarios import SCENARIOS

    return SCENARIOS[scenario](seed).allocate_server(index)


def peak(fn) -> int:
    """The most memory Python allocated while `fn()` ran (tracemalloc), in bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
