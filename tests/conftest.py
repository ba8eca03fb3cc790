"""Shared test set-up: the fast path's compiled-code cache goes to a fresh temporary
directory for the whole run (never the user's ~/.cache/vmbtool; subprocesses inherit
the environment variable). It does not exist yet, as on a fresh CI machine."""

from __future__ import annotations

import os
import shutil
import tempfile

_CACHE_PARENT = tempfile.mkdtemp(prefix="vmbtool-test-cache-")
os.environ["VMBTOOL_CACHE_DIR"] = os.path.join(_CACHE_PARENT, "fastpath")


def pytest_unconfigure(config) -> None:
    shutil.rmtree(_CACHE_PARENT, ignore_errors=True)
