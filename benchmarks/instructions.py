#!/usr/bin/env python3
"""Instructions, not seconds: save and restore of an N-packet channel counted by
valgrind's callgrind, a figure that does not move with the machine's load.

    python3 benchmarks/instructions.py [--packets 10000] [--only save,restore]
                                       [--keep DIR] [--json FILE]

`--keep DIR` keeps callgrind's files there, for `callgrind_annotate DIR/callgrind.save`.

On this shared 2-core machine one restore of 100,000 packets took from 1.7 to 3.2 s
within minutes, the same code in the same process; a change worth 5% cannot be seen in
seconds. The instructions one operation executes are the same from run to run (a save's
to the instruction, a restore's within 2%: its threads hand over blocks at other
moments): run this at two commits to see what a change saves.

What is counted: the instructions of the thread that runs the operation, from its
start to its end (`sys.call_tracing` marks it: callgrind's `--toggle-collect`). The
threads it starts are not counted: restore's decompression and SHA-256, save's
compression on zstd's workers. Those are C code whose work is set by the body's bytes;
what is counted is the work that holds the GIL. The pickle+zstd baseline is counted
alike, for scale only: under valgrind C code is not weighed as a CPU runs it (no
SHA extensions, for one), so the ratio of instructions is not target 1's ratio of
seconds. Setting up (imports, building the workload, writing its files) is not
counted either.

A restore's count moves from run to run: its threads hand over blocks at other moments,
and the collector's first pass after the restore (it walks every object the restore
made) falls inside the count or not, and walks more or fewer objects, as allocations
happened to go. `--exact` takes both out: the body is read on the counted thread (its
decompression and SHA-256 are then counted too, the same work in any two trees) and the
collector is off while counting. A restore's count is then the same to the instruction
from run to run, and two commits' counts differ by what their Python code does. (A change
that took 2.4% off a restore's interpreted work counted 1.5% more without it: the
collector's pass had moved into the count.)

Needs valgrind on PATH (Debian: `apt-get install valgrind`). Takes about two minutes at
10,000 packets, all four operations; about ten at 100,000 for save and restore.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# run under valgrind: set up, then the one operation inside sys.call_tracing
CHILD = """
import os, sys
sys.path.insert(0, {here!r})
import run, workloads
workloads.register()
what, n, blob, pickled = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if what in ("save", "pickle-save"):
    scenario = workloads.build_channel_workload(n)
if what == "pickle-save":
    state = workloads.plain_state(scenario)
operation = {{
    "save": lambda: workloads.write_blob(blob, scenario),
    "restore": lambda: workloads.read_and_restore(blob),
    "pickle-save": lambda: run.baseline_save(pickled, state),
    "pickle-restore": lambda: run.baseline_restore(pickled),
}}[what]
operation()  # once, outside the count: the imports and caches a first call makes
if sys.argv[5] == "exact":  # one thread, no collection: the same count every run
    import gc
    from vmbtool.blob import reader
    reader.PIPE_MIN = 1 << 62
    gc.collect()
    gc.disable()
sys.call_tracing(operation, ())
"""
OPERATIONS = ("save", "restore", "pickle-save", "pickle-restore")
COLLECTED = re.compile(r"Collected : (\d+)")


def count(what: str, n: int, blob: str, pickled: str, workdir: str,
          exact: bool = False) -> int:
    """The instructions `what` executes on its own thread (`exact`: see --exact)."""
    out = os.path.join(workdir, f"callgrind.{what}")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--collect-atstart=no", "--toggle-collect=sys_call_tracing",
            sys.executable, "-c", CHILD.format(here=HERE), what, str(n), blob, pickled,
            "exact" if exact else "usual"]
    # a fixed hash seed: the same dict and set layouts from run to run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = done.stderr.strip().splitlines()[-5:]
        raise SystemExit(f"error: callgrind of {what} failed: " + " | ".join(tail))
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=10_000, metavar="N")
    parser.add_argument("--only", metavar="OPS", default=",".join(OPERATIONS),
                        help="of " + ", ".join(OPERATIONS))
    parser.add_argument("--keep", metavar="DIR", help="keep callgrind's files there")
    parser.add_argument("--json", metavar="FILE", help="the counts as JSON")
    parser.add_argument("--exact", action="store_true",
                        help="the body read on one thread and the collector off while "
                             "counting: the same count every run (see the docstring)")
    args = parser.parse_args()
    only = args.only.split(",")
    if not set(only) <= set(OPERATIONS):
        parser.error(f"--only: not an operation: {', '.join(set(only) - set(OPERATIONS))}")
    if shutil.which("valgrind") is None:
        raise SystemExit("error: valgrind is not on PATH (Debian: apt-get install valgrind)")
    sys.path.insert(0, HERE)
    import run
    import workloads

    workloads.register()
    n = args.packets
    with tempfile.TemporaryDirectory(prefix="vmbtool-instructions-") as workdir:
        blob, pickled = os.path.join(workdir, "channel.vmb"), os.path.join(workdir, "p.zst")
        scenario = workloads.build_channel_workload(n)
        workloads.write_blob(blob, scenario)
        run.baseline_save(pickled, workloads.plain_state(scenario))
        del scenario
        counts = {}
        for what in only:
            counts[what] = count(what, n, blob, pickled, args.keep or workdir, args.exact)
            print(f"{what:15s} {counts[what]:>15,} instructions  "
                  f"{counts[what] / n:>10,.0f} a packet", file=sys.stderr)
    print(f"\n{n:,} packets, {sys.version.split()[0]}, commit {commit()}"
          + (", --exact" if args.exact else ""))
    print("| operation | instructions | a packet |\n| --- | ---: | ---: |")
    for what in only:
        print(f"| {what} | {counts[what]:,} | {counts[what] / n:,.0f} |")
    for label, pair in (("vmbtool save + restore", ("save", "restore")),
                        ("pickle+zstd save + restore (for scale)",
                         ("pickle-save", "pickle-restore"))):
        if set(pair) <= set(counts):
            total = counts[pair[0]] + counts[pair[1]]
            print(f"| {label} | {total:,} | {total / n:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"packets": n, "commit": commit(), "instructions": counts}, f, indent=2)


def commit() -> str:
    done = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (done.stdout.strip() or "?") + ("+" if dirty else "")


if __name__ == "__main__":
    main()
