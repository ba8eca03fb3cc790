"""Crash-safe writes: `vmbtool save` killed with SIGKILL at random moments (seeded).

A SIGKILL cannot be caught, so nothing in vmbtool runs after it: what is on disk is what
the write protocol (blob.write_atomic: temporary file `.<name>.<random>.vmbtool-tmp`
beside the target, write, fsync, rename, fsync the directory) left there. After every
kill the destination is absent, the old file byte for byte, or a complete new blob that
validates -- never partial -- and every other file is a temporary of the documented name.

Kills land three ways: at a uniformly random moment of the whole run (mostly start-up and
the simulation), the moment the temporary file appears, and a few milliseconds after it
(write, fsync, rename); half of the destinations already hold an old valid blob. Two
more runs write a 2 MB blob and are killed as soon as its temporary file has data.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXE, FIXTURE_DIR

from vmbtool import jsonview
from vmbtool.blob import load_blob
from vmbtool.snapshot import check_file, save_blob
from vmbtool.tools import run_scenario

pytestmark = pytest.mark.skipif(EXE is None, reason="the vmbtool console script is not on PATH")
FIXTURES = FIXTURE_DIR / "v1"
OLD = (FIXTURES / "storage.vmb").read_bytes()  # the old valid blob a destination may hold
SEED = 20240611
SMALL = ("pipe", 300)  # ~50 KB
LARGE = ("pipe", 24000)  # ~2 MB, uncompressed
RUNS = 48  # small runs; plus the two large ones: 50 kills in all
PARALLEL = 2
NAME = "dest.vmb"
TEMPORARY = re.compile(rf"^\.{re.escape(NAME)}\.[A-Za-z0-9_]+\.vmbtool-tmp$")


def save_args(scenario: tuple[str, int], directory: Path) -> list[str]:
    name, steps = scenario
    return [EXE, "save", "--scenario", name, "--seed", "1", "--steps", str(steps),
            "--no-compress", "-o", str(directory / NAME)]


@dataclass
class Run:
    directory: Path
    had_old: bool
    mode: str  # "uniform", "at-temporary", "after-temporary", "during-write"
    delay: float
    large: bool = False
    finished_first: bool = False  # the save completed before the kill came
    temporary_size: int | None = None  # the temporary's size when the kill was sent


def kill_run(run: Run, scenario: tuple[str, int]) -> Run:
    run.directory.mkdir(parents=True)
    if run.had_old:
        (run.directory / NAME).write_bytes(OLD)
    proc = subprocess.Popen(save_args(scenario, run.directory), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if run.mode == "uniform":
        deadline = time.monotonic() + run.delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.002)
    else:  # wait for the temporary file (its life is milliseconds: write, fsync, rename)
        while proc.poll() is None and not any(TEMPORARY.match(n)
                                              for n in os.listdir(run.directory)):
            time.sleep(0.0005)
        if run.mode == "after-temporary":
            time.sleep(run.delay)
        elif run.mode == "during-write":  # spin until the data starts to land
            temporary = next((run.directory / n for n in os.listdir(run.directory)
                              if TEMPORARY.match(n)), None)
            while temporary is not None and proc.poll() is None:
                try:
                    if os.stat(temporary).st_size:
                        break
                except FileNotFoundError:
                    break
    for n in os.listdir(run.directory):
        if TEMPORARY.match(n):
            try:
                run.temporary_size = os.stat(run.directory / n).st_size
            except FileNotFoundError:
                pass
    run.finished_first = proc.poll() is not None
    if not run.finished_first:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return run


def reference_doc(scenario: tuple[str, int]) -> dict:
    """What a completed save writes, created_ns aside (the save is deterministic)."""
    name, steps = scenario
    doc = jsonview.decode(load_blob(save_blob(run_scenario(name, 1, steps), level=None,
                                              created_ns=0)))
    doc["header"]["created_ns"] = 0
    return doc


def check_complete(path: Path, expected: dict | None) -> None:
    """A complete new blob: it loads (every CRC, the END digest and counts), passes the
    semantic checks (validate's `check_file`) and, when `expected` is given, equals a
    fresh save."""
    blob = load_blob(str(path))
    assert check_file(str(path)).problems == []
    if expected is None:
        return
    doc = jsonview.decode(blob)
    doc["header"]["created_ns"] = 0
    assert doc == expected


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Run]:
    base = tmp_path_factory.mktemp("kills")
    rng = random.Random(SEED)
    # one undisturbed run times a small save, so the uniform kills cover all of it
    started = time.monotonic()
    full = subprocess.run(save_args(SMALL, base), capture_output=True)
    assert full.returncode == 0, full.stderr
    span = time.monotonic() - started
    plans = [Run(base / f"large{i}", had_old=i == 0, mode="during-write", delay=0.0,
                 large=True) for i in range(2)]
    modes = ("uniform", "at-temporary", "after-temporary")
    for i in range(RUNS):
        mode = modes[i % 3]
        delay = rng.uniform(0, span * 1.1) if mode == "uniform" else rng.uniform(0, 0.02)
        plans.append(Run(base / f"run{i}", had_old=rng.random() < 0.5, mode=mode,
                         delay=delay))
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda r: kill_run(r, LARGE if r.large else SMALL), plans))


@pytest.fixture(scope="module")
def expected() -> dict:
    return reference_doc(SMALL)


def outcome(run: Run, expected: dict) -> str:
    files = set(os.listdir(run.directory))
    strays = {n for n in files if n != NAME}
    assert all(TEMPORARY.match(n) for n in strays), f"unexpected files {strays}"
    if NAME not in files:
        assert not run.had_old, "the old blob vanished"
        return "absent"
    data = (run.directory / NAME).read_bytes()
    if run.had_old and data == OLD:
        return "old"
    check_complete(run.directory / NAME, None if run.large else expected)
    return "new"


def test_every_kill_leaves_absent_old_or_complete(runs, expected):
    tally: dict[str, int] = {}
    for run in runs:
        result = outcome(run, expected)
        key = f"{'large ' if run.large else ''}{run.mode}: {result}"
        tally[key] = tally.get(key, 0) + 1
    strays = sum(1 for r in runs for n in os.listdir(r.directory) if TEMPORARY.match(n))
    print(f"\n{len(runs)} SIGKILLed saves: {dict(sorted(tally.items()))}; "
          f"{sum(r.finished_first for r in runs)} had finished first; "
          f"{strays} stray temporaries; large runs' temporary at kill: "
          f"{[r.temporary_size for r in runs if r.large]} bytes")
    assert len(runs) >= 50


def test_kills_landed_mid_write(runs):
    """The interesting moments were hit: a temporary existed when the kill was sent (the
    destination not yet replaced), for the large blobs too."""
    mid_write = [r for r in runs if r.temporary_size is not None and not r.finished_first]
    assert len(mid_write) >= 10
    assert any(r.large for r in mid_write)


def test_a_later_save_succeeds_beside_stale_temporaries(runs, expected):
    """SIGKILL leaves `.<name>.<random>.vmbtool-tmp` files behind: they never stop a
    later save, and `validate DIR` (which takes *.vmb) never mistakes them for blobs."""
    stale = next(r for r in runs if any(TEMPORARY.match(n)
                                        for n in os.listdir(r.directory)))
    before = {n for n in os.listdir(stale.directory) if TEMPORARY.match(n)}
    done = subprocess.run(save_args(SMALL, stale.directory), capture_output=True)
    assert done.returncode == 0, done.stderr
    check_complete(stale.directory / NAME, expected)
    after = {n for n in os.listdir(stale.directory) if TEMPORARY.match(n)}
    assert after <= before  # no new stray; the stale ones are left for the user to delete
    listed = subprocess.run([EXE, "validate", str(stale.directory)], capture_output=True,
                            text=True)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 1
