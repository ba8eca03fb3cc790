#!/usr/bin/env python3
"""decode's peak memory, one pass (issue 15): `vmbtool decode` against the whole read
(jsonview.decode(load_blob(...)) and json.dumps), on a blob of several channels and on
a blob of one channel of the same size; both outputs must be byte-identical.

    python3 benchmarks/decode_peak.py [--workdir DIR] [--mib 200] [--channels 4]

Not part of the test run. Peak RSS of each child process (resource.getrusage).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import workloads  # noqa: E402

OLD = """
import json, sys
from vmbtool import jsonview
from vmbtool.blob import load_blob
from vmbtool.output import check_output
doc = jsonview.decode(load_blob(sys.argv[1], None))
check_output(sys.argv[2]).write((json.dumps(doc, indent=1) + "\\n").encode())
"""

LARGEST = """
import sys
from vmbtool.blob import BlobReader
from vmbtool.formats.chunk import CHUNK_HEADER_SIZE
sizes = []
with BlobReader(sys.argv[1], None, keep_chunks=False) as reader:
    for saved, chunks in reader.channels():
        sizes.append(sum(CHUNK_HEADER_SIZE + len(c.data) for c in chunks))
        del saved, chunks
print(max(sizes))
"""


def child(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one child process (its own rusage)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed: {args}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def largest_channel(path: str) -> int:
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", LARGEST, path], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out)


def measure(path: str, workdir: str) -> None:
    old_out, new_out = os.path.join(workdir, "old.json"), os.path.join(workdir, "new.json")
    old = child(["-c", OLD, path, old_out])
    new = child(["-m", "vmbtool", "decode", path, "-o", new_out])
    same = filecmp.cmp(old_out, new_out, shallow=False)
    print(f"{os.path.basename(path)}: {os.path.getsize(path) / 1e6:.1f} MB file, "
          f"largest channel {largest_channel(path) / 1e6:.1f} MB decoded, "
          f"JSON {os.path.getsize(new_out) / 1e6:.1f} MB")
    print(f"  whole read: {old[1] / 1e6:7.1f} MB peak RSS, {old[0]:5.2f} s")
    print(f"  one pass:   {new[1] / 1e6:7.1f} MB peak RSS, {new[0]:5.2f} s"
          f"  (output {'identical' if same else 'DIFFERENT'})")
    for name in (old_out, new_out):
        os.unlink(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "vmbtool-bench"))
    parser.add_argument("--mib", type=int, default=200, help="the blob's decoded size")
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    workloads.register()
    several = workloads.BlobSpec(target_bytes=args.mib * workloads.MIB,
                                 channels=args.channels, ring_pages=2048, awaiting=2000)
    one = workloads.BlobSpec(target_bytes=args.mib * workloads.MIB // args.channels,
                             channels=1, ring_pages=2048, awaiting=2000)
    for spec in (several, one):
        measure(workloads.ensure_blob(args.workdir, spec)["path"], args.workdir)


if __name__ == "__main__":
    main()
