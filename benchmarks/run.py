#!/usr/bin/env python3
"""vmbtool's performance harness: build the workloads, run each measurement several
times, print the medians and the six target ratios (see benchmarks/README.md).

    python3 benchmarks/run.py [--quick] [--repeat N] [--repeat-big N] [--only 1,5,6]

Not part of the test run. Workloads that take long to build (the big blobs, the small
blobs for --jobs) are kept in --workdir and reused by later runs.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import workloads  # noqa: E402

MB = 10**6

# Target 4's baseline: stream-decompress the blob's body with zstandard, CRC32C over it.
DECOMPRESS_CRC_BASELINE = """
import sys, google_crc32c, zstandard
path, start = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    f.seek(start)
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    crc = total = 0
    while block := reader.read(1 << 20):
        crc = google_crc32c.extend(crc, block)
        total += len(block)
print(total, hex(crc))
"""

# Target 4's floor: what any reader of format 1.x must do before it checks anything:
# stream-decompress the body and digest it (the END digest's SHA-256, on a thread of its
# own, as validate does; CRC32C of the chunks beside it). Its time over the baseline's is
# the best ratio a validate whose checks cost nothing could show.
DECOMPRESS_DIGEST_FLOOR = """
import hashlib, queue, sys, threading, google_crc32c, zstandard
path, start = sys.argv[1], int(sys.argv[2])
blocks, digest = queue.Queue(2), hashlib.sha256()
def run():
    while (block := blocks.get()) is not None:
        digest.update(block)
worker = threading.Thread(target=run)
worker.start()
with open(path, "rb") as f:
    f.seek(start)
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    crc = total = 0
    while block := reader.read(1 << 20):
        blocks.put(block)
        crc = google_crc32c.extend(crc, block)
        total += len(block)
blocks.put(None)
worker.join()
print(total, hex(crc), digest.hexdigest())
"""

# Target 6's ceiling: the same pure-Python loop in one process, then in two at once.
SPIN = "s = 0\nfor i in range(4_000_000):\n    s += i * i"
SPIN_PAIR = f"""
import subprocess, sys
procs = [subprocess.Popen([sys.executable, "-S", "-c", {SPIN!r}]) for _ in range(2)]
sys.exit(max(p.wait() for p in procs))
"""


# -- measuring ------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    unit: str  # "s" or "MB"
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


class Results:
    def __init__(self) -> None:
        self.measures: dict[str, Measure] = {}
        self.targets: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.ceilings: list[str] = []  # what the machine allows a target, measured

    def add(self, key: str, name: str, value: float, unit: str = "s") -> None:
        self.measures.setdefault(key, Measure(name, unit)).values.append(value)

    def median(self, key: str) -> float:
        return self.measures[key].median

    def target(self, number: str, what: str, value: float, limit: str, met: bool,
               shown: str) -> None:
        self.targets.append({"target": number, "what": what, "value": value,
                             "shown": shown, "limit": limit, "met": met})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of fn(); what it returns is freed after the clock stops."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str
    cpu: float = 0.0  # seconds of CPU, user and system, over all its threads


# Runs one command and reports its wall time, peak RSS and CPU time. A child's ru_maxrss starts
# from the memory of the process that forked it (Linux records the replaced address
# space's high-water mark at exec), so commands are started from this small launcher,
# never from the harness, which holds the workloads.
LAUNCHER = """
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    start = time.perf_counter()
    proc = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "maxrss": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


REPO = os.path.dirname(HERE)


def command_env() -> dict[str, str]:
    """The commands' environment: this checkout's vmbtool first on the path, and
    bytecode caching on. An installed vmbtool has its bytecode compiled; with
    PYTHONDONTWRITEBYTECODE set (some sandboxes set it) every run would compile vmbtool's
    sources while click's come precompiled from site-packages."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def run_command(argv: list[str]) -> Run:
    """Run a command; wall time, peak resident memory (os.wait4's ru_maxrss) and CPU
    time (its ru_utime + ru_stime: every thread's)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        launcher = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, out, err, *argv],
                                  capture_output=True, text=True, check=True,
                                  env=command_env())
        result = json.loads(launcher.stdout)
        with open(out, "rb") as f_out, open(err, "rb") as f_err:
            stdout = f_out.read().decode(errors="replace")
            stderr = f_err.read().decode(errors="replace")
    rss = result["maxrss"] * (1 if sys.platform == "darwin" else 1024)
    return Run(result["seconds"], rss, result["code"], stdout, stderr, result["cpu"])


def must(run: Run, argv: list[str], code: int = 0) -> Run:
    if run.returncode != code:
        raise SystemExit(f"benchmark command failed ({run.returncode}): {' '.join(argv)}\n"
                         f"{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return run


def vmbtool_script() -> list[str]:
    """The installed console script, run directly (not through a pyenv/asdf shim)."""
    beside = os.path.join(os.path.dirname(sys.executable), "vmbtool")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("vmbtool")
    if found:
        return [found]
    return [sys.executable, "-m", "vmbtool"]


def where_vmbtool_is() -> list[str]:
    """Notes when the commands would not run this checkout's code (e.g. the editable
    install points at another checkout: vmbtool.formats comes from there)."""
    probe = ("import vmbtool, vmbtool.cli, vmbtool.formats; "
             "print(vmbtool.cli.__file__); print(vmbtool.formats.__file__)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, env=command_env(), cwd=tempfile.gettempdir())
    return [f"WARNING: the commands import {path}, not this checkout ({REPO})"
            for path in run.stdout.split() if not path.startswith(REPO + os.sep)]


def vmbtool_with_bench() -> list[str]:
    """The vmbtool CLI with the `bench` scenario registered (for the bench blobs)."""
    return [sys.executable, "-c", workloads.CLI_WRAPPER]


# -- the measurements -----------------------------------------------------------------


def baseline_save(path: str, state: dict, level: int = 3) -> None:
    import zstandard

    data = zstandard.ZstdCompressor(level=level).compress(
        pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    with open(path, "wb") as f:
        f.write(data)


def baseline_restore(path: str) -> dict:
    import zstandard

    with open(path, "rb") as f:
        data = f.read()
    return pickle.loads(zstandard.ZstdDecompressor().decompress(data))


def measure_channel(res: Results, n: int, repeat: int, workdir: str) -> None:
    scenario = workloads.build_channel_workload(n)
    mix = workloads.packet_mix(scenario)
    state = workloads.plain_state(scenario)
    blob_path = os.path.join(workdir, f"channel-{n}.vmb")
    pickle_path = os.path.join(workdir, f"channel-{n}.pickle.zst")
    log(f"  {n:,} packets {mix}")
    for rep in range(repeat):
        t_save, size = timed(lambda: workloads.write_blob(blob_path, scenario))
        t_restore, restored = timed(lambda: workloads.read_and_restore(blob_path))
        if rep == 0 and workloads.packet_mix(restored) != mix:
            raise SystemExit(f"restore of {n} packets lost packets: "
                             f"{workloads.packet_mix(restored)} != {mix}")
        del restored
        b_save, _ = timed(lambda: baseline_save(pickle_path, state))
        b_restore, loaded = timed(lambda: baseline_restore(pickle_path))
        del loaded
        res.add(f"save-{n}", f"vmbtool save, {n:,} packets", t_save)
        res.add(f"restore-{n}", f"vmbtool restore, {n:,} packets", t_restore)
        res.add(f"vmb-{n}", f"vmbtool save + restore, {n:,} packets", t_save + t_restore)
        res.add(f"base-{n}", f"pickle+zstd save + restore, {n:,} packets", b_save + b_restore)
        log(f"    run {rep + 1}: vmbtool {t_save:.2f} + {t_restore:.2f} s ({size:,} B), "
            f"baseline {b_save:.2f} + {b_restore:.2f} s "
            f"({os.path.getsize(pickle_path):,} B)")


def measure_save_restore(res: Results, sizes: list[int], repeat: int, workdir: str) -> None:
    """Targets 1 and 2: save + restore of an N-packet channel through a compressed file,
    against pickle + zstd of the same state as plain Python objects."""
    for n in sizes:
        measure_channel(res, n, repeat, workdir)
    big, small = max(sizes), min(sizes)
    ratio = res.median(f"vmb-{big}") / res.median(f"base-{big}")
    res.target("1", f"save+restore {big:,} packets / pickle+zstd baseline", ratio, "<= 2",
               ratio <= 2, f"{ratio:.2f}x")
    save, restore, base = (res.median(f"{k}-{big}") for k in ("save", "restore", "base"))
    res.ceilings.append(
        f"target 1: the pickle baseline takes {base / big * 1e6:.1f} us a packet for save "
        f"and restore together; vmbtool's save alone takes {save / big * 1e6:.1f} us "
        f"({save / base:.2f}x the baseline's whole time), so within 2x its restore would "
        f"have {max(0.0, 2 * base - save) / big * 1e6:.1f} us a packet for the checking "
        f"pass, RestoreFromBuffer and the VSP's callbacks; it takes "
        f"{restore / big * 1e6:.1f} us")
    per_big = res.median(f"vmb-{big}") / big
    per_small = res.median(f"vmb-{small}") / small
    ratio = per_big / per_small
    res.target("2", f"time per packet at {big:,} / at {small:,} "
               f"({per_big * 1e6:.0f} / {per_small * 1e6:.0f} us)", ratio, "<= 1.25",
               ratio <= 1.25, f"{ratio:.2f}x")


def measure_big_blobs(res: Results, big_spec: workloads.BlobSpec,
                      small_spec: workloads.BlobSpec, repeat: int, workdir: str,
                      rebuild: bool, targets: set[str]) -> None:
    """Targets 3 and 4: peak RSS of validate / inspect on the big and the 10 MB blob;
    validate's read speed against stream-decompress + CRC32C of the same file."""
    infos = {}
    for label, spec in (("big", big_spec), ("10MB", small_spec)):
        start = time.perf_counter()
        infos[label] = info = workloads.ensure_blob(workdir, spec, rebuild=rebuild)
        log(f"  {label} blob: {info['uncompressed_bytes'] / MB:,.1f} MB uncompressed, "
            f"{info['file_bytes'] / MB:,.1f} MB file, {info['packets']:,} packets "
            f"{info['mix']} ({time.perf_counter() - start:.1f} s)")
    res.notes.append(f"big blob: {infos['big']['uncompressed_bytes'] / MB:,.1f} MB "
                     f"uncompressed, {infos['big']['file_bytes'] / MB:,.1f} MB on disk, "
                     f"{big_spec.channels} channels of {big_spec.ring_pages}-page rings; "
                     f"small blob: {infos['10MB']['uncompressed_bytes'] / MB:,.1f} MB "
                     "uncompressed")
    cli = vmbtool_with_bench()
    big_path = infos["big"]["path"]
    must(run_command([*cli, "validate", infos["10MB"]["path"]]), cli)  # bytecode, page cache
    for rep in range(repeat):
        for label in ("big", "10MB"):
            if label == "10MB" and "3" not in targets:
                continue  # target 4 needs only validate on the big blob
            path = infos[label]["path"]
            for command in ("validate", "inspect") if "3" in targets else ("validate",):
                argv = [*cli, command, path]
                run = must(run_command(argv), argv)
                if command == "validate" and ": valid (" not in run.stdout:
                    raise SystemExit(f"the {label} blob is not valid: {run.stdout}")
                res.add(f"{command}-{label}-rss", f"vmbtool {command} peak RSS, {label} blob",
                        run.peak_rss / MB, "MB")
                res.add(f"{command}-{label}-time", f"vmbtool {command} time, {label} blob",
                        run.seconds)
                if command == "validate" and label == "big":
                    res.add("validate-big-cpu", "vmbtool validate CPU time, big blob",
                            run.cpu)
                log(f"    run {rep + 1}: {command} {label}: {run.seconds:.2f} s, "
                    f"{run.peak_rss / MB:,.1f} MB")
        if "4" in targets:
            argv = [sys.executable, "-c", DECOMPRESS_CRC_BASELINE, big_path,
                    str(workloads.blob_body_offset(big_path))]
            run = must(run_command(argv), argv)
            body = infos["big"]["uncompressed_bytes"] - workloads.blob_body_offset(big_path)
            if int(run.stdout.split()[0]) != body:
                raise SystemExit(f"the baseline decompressed {run.stdout.split()[0]} bytes, "
                                 f"the body is {body}")
            res.add("baseline-big-time", "zstd stream-decompress + CRC32C, big blob",
                    run.seconds)
            res.add("baseline-big-rss", "zstd stream-decompress + CRC32C peak RSS, big blob",
                    run.peak_rss / MB, "MB")
            log(f"    run {rep + 1}: decompress+crc32c big: {run.seconds:.2f} s, "
                f"{run.peak_rss / MB:,.1f} MB")
            argv = [sys.executable, "-c", DECOMPRESS_DIGEST_FLOOR, big_path,
                    str(workloads.blob_body_offset(big_path))]
            run = must(run_command(argv), argv)
            res.add("floor-big-time", "zstd stream-decompress + SHA-256 + CRC32C, big blob",
                    run.seconds)
            res.add("floor-big-cpu", "zstd stream-decompress + SHA-256 + CRC32C CPU time, "
                    "big blob", run.cpu)
            log(f"    run {rep + 1}: decompress+sha256+crc32c big: {run.seconds:.2f} s")
    if "3" in targets:
        for number, command in (("3a", "validate"), ("3b", "inspect")):
            peak, small = (res.median(f"{command}-big-rss"), res.median(f"{command}-10MB-rss"))
            res.target(number, f"{command} peak RSS on the big blob", peak, "< 100 MB",
                       peak < 100, f"{peak:,.1f} MB")
            res.target(number, f"{command} peak RSS big / 10 MB blob", peak / small,
                       "<= 1.2", peak / small <= 1.2, f"{peak / small:.2f}x")
    if "4" in targets:
        size = infos["big"]["uncompressed_bytes"]
        v_time, b_time = res.median("validate-big-time"), res.median("baseline-big-time")
        ratio = b_time / v_time
        res.target("4", f"validate speed / decompress+CRC32C speed "
                   f"({size / v_time / MB:,.0f} / {size / b_time / MB:,.0f} MB/s)", ratio,
                   ">= 0.5", ratio >= 0.5, f"{ratio:.2f}x")
        floor = res.median("floor-big-time")
        res.target("4", f"validate speed / the format's floor (decompress + SHA-256 + "
                   f"CRC32C, {size / floor / MB:,.0f} MB/s)", floor / v_time, ">= 0.9",
                   floor / v_time >= 0.9, f"{floor / v_time:.2f}x")
        res.ceilings.append(
            f"target 4: decompressing and digesting the body (the format's own work, no "
            f"check made) takes {floor:.2f} s against the baseline's {b_time:.2f} s: a "
            f"validate whose checks cost nothing would read {b_time / floor:.2f}x; the "
            f"checks take the other {v_time - floor:.2f} s of validate's {v_time:.2f} s")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count() or 1
        v_cpu, f_cpu = res.median("validate-big-cpu"), res.median("floor-big-cpu")
        res.ceilings.append(
            f"target 4, in CPU time: validate's threads use {v_cpu:.2f} s of CPU, the "
            f"floor's {f_cpu:.2f} s; on {cores} cores validate cannot end in less than "
            f"{v_cpu / cores:.2f} s, so it reads at most {floor / (v_cpu / cores):.2f}x "
            f"the floor's speed with no other job on the machine and no wait between its "
            f"threads (0.9x needs its CPU time at most {cores * floor / 0.9:.2f} s)")


def measure_help(res: Results, repeat: int) -> None:
    """Target 5: `vmbtool --help` against `python -c "import click"`."""
    help_argv = [*vmbtool_script(), "--help"]
    ratio = alternately(res, repeat,
                        ("help", " ".join(os.path.basename(a) for a in help_argv), help_argv),
                        ("import-click", 'python -c "import click"',
                         [sys.executable, "-c", "import click"]))
    res.target("5", 'vmbtool --help / python -c "import click"', ratio, "<= 1.3",
               ratio <= 1.3, f"{ratio:.2f}x")


def measure_small_validate(res: Results, repeat: int, workdir: str) -> None:
    """Target 5, its second half: `vmbtool validate` of one small blob against
    `python -c "import click, zstandard, google_crc32c"` (the imports no vmbtool can
    avoid)."""
    blob = os.path.join(small_blobs(workdir, 1), "storage-0001.vmb")
    floor = "import click, zstandard, google_crc32c"
    ratio = alternately(res, repeat,
                        ("small-validate", "vmbtool validate, one small blob",
                         [*vmbtool_script(), "validate", blob]),
                        ("import-floor", f'python -c "{floor}"', [sys.executable, "-c", floor]))
    res.target("5", "validate one small blob / import click, zstandard, google_crc32c",
               ratio, "<= 1.5", ratio <= 1.5, f"{ratio:.2f}x")


def alternately(res: Results, repeat: int, *commands: tuple[str, str, list[str]]) -> float:
    """Each (key, name, argv) run once to warm bytecode and the page cache, then all of
    them in turn `repeat` times; the first's median over the second's."""
    for _key, _name, argv in commands:
        must(run_command(argv), argv)
    for _ in range(repeat):
        for key, name, argv in commands:
            res.add(key, name, must(run_command(argv), argv).seconds)
    return res.median(commands[0][0]) / res.median(commands[1][0])


def small_blobs(workdir: str, count: int) -> str:
    """`count` storage-scenario blobs (seeds 1..count, 100 steps), built once."""
    from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR
    from vmbtool.snapshot import save_blob
    from vmbtool.tools import run_scenario

    directory = os.path.join(workdir, f"small-{count}-f{FORMAT_MAJOR}.{FORMAT_MINOR}")
    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return directory
    os.makedirs(directory, exist_ok=True)
    for seed in range(1, count + 1):
        data = save_blob(run_scenario("storage", seed, 100), created_ns=0)
        with open(os.path.join(directory, f"storage-{seed:04d}.vmb"), "wb") as f:
            f.write(data)
    open(marker, "w").close()
    return directory


def measure_jobs(res: Results, count: int, repeat: int, workdir: str) -> None:
    """Target 6: validate a directory of small blobs with --jobs 1 and --jobs 2."""
    directory = small_blobs(workdir, count)
    script = vmbtool_script()
    warm = [*script, "validate", os.path.join(directory, "storage-0001.vmb")]
    must(run_command(warm), warm)  # bytecode, page cache
    for rep in range(repeat):
        for jobs in (1, 2):
            argv = [*script, "validate", directory, "--jobs", str(jobs)]
            run = must(run_command(argv), argv)
            if run.stdout.count(": valid (") != count:
                raise SystemExit(f"validate --jobs {jobs} did not find {count} valid blobs")
            res.add(f"jobs-{jobs}", f"vmbtool validate {count} small blobs --jobs {jobs}",
                    run.seconds)
            log(f"    run {rep + 1}: --jobs {jobs}: {run.seconds:.2f} s")
        measure_jobs_ceiling(res, directory, script)
    ratio = res.median("jobs-1") / res.median("jobs-2")
    # issue 15: against the machine's own two-process scaling, not a fixed 1.7x (which
    # benchmarks/README.md shows no program reaches on a busy 2-core machine)
    scaling = 2 * res.median("spin-1") / res.median("spin-2")
    share = ratio / scaling
    res.target("6", f"validate {count} blobs: (--jobs 1 / --jobs 2 = {ratio:.2f}x) / the "
               f"machine's 2-process scaling ({scaling:.2f}x)", share, ">= 0.9",
               share >= 0.9, f"{share:.2f}x")
    res.ceilings.append(jobs_ceiling(res, count))


def measure_jobs_ceiling(res: Results, directory: str, script: list[str]) -> None:
    """What bounds target 6 whatever vmbtool does: the start-up no number of jobs
    shares (the bare interpreter's, and vmbtool's on one blob), and how much faster two
    processes of pure Python run than one on this machine."""
    one = [*script, "validate", os.path.join(directory, "storage-0001.vmb")]
    bare = [sys.executable, "-c", "pass"]
    spin = [sys.executable, "-S", "-c", SPIN]
    pair = [sys.executable, "-S", "-c", SPIN_PAIR]
    for argv, key, name in ((one, "jobs-one", "vmbtool validate, 1 small blob"),
                            (bare, "python-bare", 'python -c "pass"'),
                            (spin, "spin-1", "pure-Python loop, 1 process"),
                            (pair, "spin-2", "the same loop, 2 processes at once")):
        res.add(key, name, must(run_command(argv), argv).seconds)


def jobs_ceiling(res: Results, count: int) -> str:
    """Start-up S, work W = (--jobs 1) - S, two processes' speed-up k on this machine:
    --jobs 2 takes at least S + W / k, so the ratio is at most (S + W) / (S + W / k)."""
    one, bare = res.median("jobs-one"), res.median("python-bare")
    work = res.median("jobs-1") - one
    scaling = 2 * res.median("spin-1") / res.median("spin-2")

    def best(start: float, k: float) -> float:
        return (start + work) / (start + work / k)

    return (f"target 6: start-up is {one:.3f} s (vmbtool validate on one blob; the bare "
            f"interpreter alone {bare:.3f} s), the other {count - 1} blobs "
            f"{work:.3f} s. With every blob split perfectly, --jobs 2 can be at most "
            f"{best(one, 2):.2f}x as fast as --jobs 1 ({best(bare, 2):.2f}x if vmbtool "
            f"imported nothing); two processes of pure Python here run {scaling:.2f}x "
            f"as fast as one, which makes these {best(one, scaling):.2f}x and "
            f"{best(bare, scaling):.2f}x")


# -- report -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from vmbtool import __version__

    return {"date": datetime.date.today().isoformat(), "cores": str(os.cpu_count()),
            "cpu": model, "python": platform.python_version(), "vmbtool": __version__,
            "load": load()}


def load() -> str:
    """The 1-minute load average: the ratios mean little on a busy machine."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def fmt(value: float, unit: str) -> str:
    return f"{value:,.1f} MB" if unit == "MB" else f"{value:.3f} s"


def report(res: Results, info: dict[str, str], mode: str, out=sys.stdout) -> None:
    p = lambda line="": print(line, file=out)  # noqa: E731
    p(f"vmbtool benchmarks ({mode}), {info['date']}: {info['cores']} cores, {info['cpu']}, "
      f"Python {info['python']}, vmbtool {info['vmbtool']}; load average {info['load']} "
      f"at the start, {load()} at the end")
    for note in res.notes:
        p(f"  {note}")
    p()
    width = max([len(m.name) for m in res.measures.values()] + [20])
    p(f"| {'measurement':<{width}} | {'median':>12} | runs |")
    p(f"| {'-' * width} | {'-' * 12}:| ----:|")
    for m in res.measures.values():
        p(f"| {m.name:<{width}} | {fmt(m.median, m.unit):>12} | {len(m.values):>4} |")
    p()
    width = max([len(t["what"]) for t in res.targets] + [20])
    p(f"| #  | {'target':<{width}} | {'value':>10} | {'limit':>9} | met |")
    p(f"| -- | {'-' * width} | {'-' * 10}:| {'-' * 9}:| --- |")
    for t in res.targets:
        p(f"| {t['target']:<2} | {t['what']:<{width}} | {t['shown']:>10} | {t['limit']:>9} | "
          f"{'yes' if t['met'] else 'NO':<3} |")
    if res.ceilings:
        p()
        p("What this machine allows, measured in the same run:")
        for line in res.ceilings:
            p(f"- {line}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads for a smoke run (the ratios are then "
                             "indicative only)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each measurement (default 5; 3 with --quick)")
    parser.add_argument("--repeat-big", type=int, default=None,
                        help="runs of the big-blob measurements (default 3)")
    parser.add_argument("--only", default="1,2,3,4,5,6",
                        help="comma-separated targets to measure (default all)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "vmbtool-bench"),
                        help="where workloads are built and kept (default %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the kept blobs")
    parser.add_argument("--json", metavar="FILE", help="also write every raw value here")
    args = parser.parse_args(argv)

    targets = {t.strip() for t in args.only.split(",") if t.strip()}
    repeat = args.repeat or (3 if args.quick else 5)
    repeat_big = args.repeat_big or min(repeat, 3)
    os.makedirs(args.workdir, exist_ok=True)
    workloads.register()
    res = Results()
    info = machine()
    res.notes.extend(where_vmbtool_is())
    started = time.perf_counter()

    if targets & {"1", "2"}:
        sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
        log(f"targets 1, 2: save + restore, {repeat} runs")
        measure_save_restore(res, sizes, repeat, args.workdir)
    if targets & {"3", "4"}:
        big = workloads.QUICK_BLOB if args.quick else workloads.GIB_BLOB
        log(f"targets 3, 4: validate / inspect on big blobs, {repeat_big} runs")
        measure_big_blobs(res, big, workloads.SMALL_BLOB, repeat_big, args.workdir,
                          args.rebuild, targets)
    if "5" in targets:
        log("target 5: vmbtool --help")
        measure_help(res, 5 if args.quick else max(10, repeat))
        measure_small_validate(res, 5 if args.quick else max(10, repeat), args.workdir)
    if "6" in targets:
        count = 60 if args.quick else 200
        log(f"target 6: validate {count} blobs with --jobs 1 and 2, {repeat} runs")
        measure_jobs(res, count, repeat, args.workdir)

    log(f"done in {time.perf_counter() - started:.0f} s")
    report(res, info, "quick" if args.quick else "full")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "quick": args.quick, "notes": res.notes,
                       "measures": {k: {"name": m.name, "unit": m.unit, "values": m.values,
                                        "median": m.median}
                                    for k, m in res.measures.items()},
                       "targets": res.targets, "ceilings": res.ceilings}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
