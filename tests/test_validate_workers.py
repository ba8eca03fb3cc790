"""`validate_files`' worker processes (a ProcessPoolExecutor, forked on Linux): the
verdicts in order whatever order they finish in, a worker's exception raised in the
caller, a worker that dies named with the first blob left without a verdict, nothing
left behind (processes, frozen objects)."""

from __future__ import annotations

import gc
import os
import sys
import time

import pytest

from vmbtool import tools
from vmbtool.errors import VmbtoolError
from vmbtool.tools import Verdict, validate_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fake validate_file reaches forked workers only")


def fake_validate(path: str, key: bytes | None = None) -> Verdict:
    """What a worker does with each made-up path: `sleep-N`, `die`, `raise`, `ok`."""
    kind, _, arg = path.partition("-")
    if kind == "sleep":
        time.sleep(int(arg) / 1000)
    elif kind == "die":
        os._exit(7)
    elif kind == "raise":
        raise ValueError(f"a bug at {path}")
    return Verdict(path, True, version="1.1", channels=len(path), packets=len(key or b""))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(tools, "validate_file", fake_validate)


def no_children_left() -> bool:
    """Every worker has been waited for (this process has no child at all)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("jobs", [2, 3, 8])
def test_verdicts_come_in_order_whatever_order_the_workers_finish(fake, jobs):
    paths = [f"sleep-{d}" for d in (60, 0, 30, 0, 0, 45, 1, 0, 20, 0, 0, 0)] + ["ok"] * 30
    seen = []
    verdicts = validate_files(paths, key=b"k3y", jobs=jobs, done=seen.append)
    assert [v.path for v in verdicts] == paths
    assert seen == verdicts
    assert all(v.valid and v.packets == 3 for v in verdicts)
    assert gc.get_freeze_count() == 0
    assert no_children_left()


def test_a_workers_exception_is_raised_in_the_caller(fake):
    paths = ["ok"] * 5 + ["raise-5"] + ["sleep-50"] * 6
    with pytest.raises(ValueError, match="a bug at raise-5"):
        validate_files(paths, jobs=2)
    assert gc.get_freeze_count() == 0
    assert no_children_left()


def test_a_worker_that_dies_is_named_with_the_first_blob_without_a_verdict(fake):
    paths = ["ok"] * 3 + ["die"] + ["sleep-50"] * 6
    seen = []
    with pytest.raises(VmbtoolError, match=r"at die: a worker process ended before this "
                                           r"blob's verdict"):
        validate_files(paths, jobs=2, done=seen.append)
    assert [v.path for v in seen] == ["ok"] * 3
    assert no_children_left()


def test_an_error_in_the_callback_stops_the_workers(fake):
    def done(verdict):
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        validate_files(["sleep-200"] * 20, jobs=2, done=done)
    assert no_children_left()


def test_a_caller_that_froze_its_objects_keeps_them_frozen(fake):
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        validate_files(["ok"] * 4, jobs=2)
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
