"""Shared test set-up: the fast path's compiled-code cache goes to a fresh temporary
directory for the whole run (never the user's ~/.cache/vmbtool; subprocesses inherit
the environment variable). It does not exist yet, as on a fresh CI machine.

Every test is also held to the library-wording guard (tests/wording.py): a message it
provokes in construct's, struct's or Python's words fails it at teardown."""

from __future__ import annotations

import os
import shutil
import tempfile

import wording
from wording import no_library_wording  # noqa: F401 - an autouse fixture for every test

pytest_plugins = ["pytester"]  # (test_library_wording runs the guard in a session)

_CACHE_PARENT = tempfile.mkdtemp(prefix="vmbtool-test-cache-")
os.environ["VMBTOOL_CACHE_DIR"] = os.path.join(_CACHE_PARENT, "fastpath")


def pytest_unconfigure(config) -> None:
    shutil.rmtree(_CACHE_PARENT, ignore_errors=True)


wording.install()


def pytest_configure(config) -> None:
    wording.register_marker(config)
