"""The library calls behind the commands: each usable without the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vmbtool import codec, stop
from vmbtool.blob import HEADER_PREFIX_SIZE, open_source
from vmbtool.errors import BlobError, InputError, VmbtoolError
from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR
from vmbtool.generated.header import MAGIC, HeaderPrefix
from vmbtool.inputs import blobs_in, names_a_stream, read_key_file
from vmbtool.sim.packet import PacketState
from vmbtool.sim.wire import PacketType
from vmbtool.snapshot import (
    DEFAULT_CHUNK_SIZE,
    RestoreFailed,
    check_file,
    check_reader,
    restore_file,
    restore_reader,
)
from vmbtool.status import NtStatus
from vmbtool.text import escape, plural
from vmbtool.workers import WorkerDied, fd_job_limit, map_in_workers, usable_cores


def read_key(path: str | None, blob_sources: Iterable[str] = ()) -> bytes | None:
    """The HMAC key: the file's bytes (never printed), at most 64 KiB; `-` reads it from
    stdin, which then cannot be one of the command's `blob_sources` too. None when no
    file is named. A key file that cannot be read is a usage mistake (exit 2)."""
    if not path:
        return None
    return read_key_file(path, blob_sources)


def header_info(source: str) -> dict[str, Any] | None:
    """What any version can say about a blob: magic, version, header size. None for a
    stream (stdin, a pipe): it can be read once only, by the reader itself."""
    if names_a_stream(source):
        return None
    f, _size = open_source(source)
    try:
        prefix = f.read(HEADER_PREFIX_SIZE)
    finally:
        f.close()
    if len(prefix) < HEADER_PREFIX_SIZE or not prefix.startswith(MAGIC):
        return None
    head = codec.parse(HeaderPrefix, prefix, "header", 0)
    return {"major": head.format_major, "minor": head.format_minor,
            "header_size": head.header_size,
            "reads": f"{FORMAT_MAJOR}.{FORMAT_MINOR}"}


def unverified_head(source: str) -> dict[str, Any] | None:
    """A signed blob's header as `decode` shows it, marked unverified, read without
    the key (only the header, whose CRC is checked: nothing of the unauthenticated
    body is parsed); None when the blob is not signed."""
    from vmbtool.blob import FLAG_SIGNED, read_header
    from vmbtool.jsonview import header_json

    f, size = open_source(source)
    try:
        header, _header_bytes = read_header(f, size)
    finally:
        f.close()
    if not header.flags & FLAG_SIGNED:
        return None
    head = header_json(header, True, None)
    head["header"]["signature"] = "unverified"
    return head


@dataclass
class Verdict:
    """What `validate` says of one blob: valid or not, its problems, what it holds."""

    path: str
    valid: bool
    problems: list[tuple[str, str]] = field(default_factory=list)
    version: str = ""
    channels: int = 0
    packets: int = 0
    unlisted: int = 0  # problems beyond those listed (invariants.MAX_PROBLEMS a channel)
    unreadable: bool = False  # not read at all (missing, no permission, an I/O error)

    def line(self) -> str:
        """One line whatever the path or the problem holds: they are escaped."""
        path = escape(self.path)
        if self.unreadable:
            where, why = self.problems[0]
            at = "" if where == self.path else f" at {escape(where)}"
            return f"{path}: UNREADABLE{at}: {escape(why)}"
        if self.valid:
            return (f"{path}: valid (format {escape(self.version)}, "
                    f"{plural(self.channels, 'channel')}, {plural(self.packets, 'packet')})")
        where, why = self.problems[0]
        others = len(self.problems) - 1 + self.unlisted
        more = f" (+{others} more)" if others else ""
        return f"{path}: INVALID at {escape(where)}: {escape(why)}{more}"

    def as_json(self) -> dict:
        return {"path": self.path, "valid": self.valid, "format": self.version or None,
                "channels": self.channels, "packets": self.packets,
                "unlisted_problems": self.unlisted, "unreadable": self.unreadable,
                "problems": [{"where": w, "why": y} for w, y in self.problems]}


DRY_RUN_BUDGET = 8 << 20  # decoded chunk bytes of a blob validate also restores


def validate_file(path: str, key: bytes | None = None) -> Verdict:
    """Grammar, checksums, version, signature and semantic invariants of one blob, read
    once.

    A blob whose body decodes to at most `DRY_RUN_BUDGET` bytes is restored into
    throwaway channels as it is read, as `restore` would (`snapshot.restore_reader`): the
    library's checks and the scenario's VSP and VSC judge it in the same pass. A larger
    one is checked as it streams past, in bounded memory (`snapshot.check_reader`). A
    blob the dry run refuses is read again by the check, which lists every problem (the
    dry run stops at the first); the dry run's own reason is listed when the check
    finds none."""
    from vmbtool.blob import BlobReader, rereadable
    from vmbtool.blob.consumers import Check
    from vmbtool.invariants import Problems

    try:
        with rereadable(path) as source:
            with BlobReader(source, key, Check(), defer_seal=True) as reader:
                decoded = reader.decoded_size()
                if not 0 < decoded <= DRY_RUN_BUDGET:
                    found = check_reader(reader)
                    return Verdict(path, not found.problems, found.problems, found.version,
                                   found.channels, found.packets, found.problems.dropped)
                try:
                    restore_reader(reader)
                except RestoreFailed as failed:
                    error = failed.error
                else:
                    tally = reader.tally
                    return Verdict(path, True, Problems(), reader.version, tally.channels,
                                   tally.packets)
            found = check_file(source, key)
            problems = found.problems
            if not problems:
                problems.append((error.where, error.why))
    except InputError as exc:
        return Verdict(path, False, [(exc.where, exc.why)], unreadable=True)
    except VmbtoolError as exc:
        return Verdict(path, False, [(exc.where, exc.why)])
    return Verdict(path, not problems, problems, found.version, found.channels,
                   found.packets, problems.dropped)


def expand_paths(paths: list[str], notice: Callable[[str], None] | None = None) -> list[str]:
    """Directories stand for the blobs (regular *.vmb files) inside them; `notice` hears
    of the entries skipped (`inputs.blobs_in`)."""
    out = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            out.extend(blobs_in(path, notice))
        else:
            out.append(path)
    return out


def default_jobs() -> int:
    """Every core this process may run on."""
    return usable_cores()


def validate_files(paths: list[str], key: bytes | None = None, jobs: int | None = None,
                   done: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """validate_file over many blobs; the verdicts in the order of `paths`.

    With more than one blob, `jobs` worker processes (default: every core; never more
    than the open-file limit leaves room for) share them; `done` is called with each
    verdict as it comes, in order. A list with `-` (stdin) is validated in this
    process. Interrupted, the workers are killed before the interruption goes on."""
    jobs = default_jobs() if jobs is None else jobs
    jobs = max(1, min(jobs, len(paths)))
    if jobs > 1:  # (the open-file limit: asked only when there are workers to start)
        jobs = max(1, min(jobs, fd_job_limit()))
    if jobs == 1 or "-" in paths:
        verdicts = []
        for path in paths:
            stop.check()
            verdicts.append(validate_file(path, key))
            if done is not None:
                done(verdicts[-1])
        return verdicts
    import contextlib
    import functools

    chunksize = max(1, len(paths) // (jobs * 16))  # small: the last chunks end together
    verdicts: list[Verdict] = []
    answers = map_in_workers(functools.partial(validate_file, key=key), paths, jobs,
                             chunksize)
    try:
        with contextlib.closing(answers):
            for verdict in answers:
                verdicts.append(verdict)
                if done is not None:
                    done(verdict)
    except WorkerDied as died:
        raise VmbtoolError("validate worker died", paths[died.index],
                           "a worker process ended before this blob's verdict (killed, "
                           "or out of memory?)", NtStatus.UNSUCCESSFUL) from None
    return verdicts


def run_scenario(name: str, seed: int, steps: int, pause_at: int | None = None,
                 on_step: Callable[[], None] | None = None):
    from vmbtool.scenarios import SCENARIOS

    if pause_at is not None and pause_at > steps:
        raise VmbtoolError("bad option", "--pause-at", f"{pause_at} is past --steps {steps}",
                           NtStatus.INVALID_PARAMETER)
    scenario = SCENARIOS[name].create(seed)
    scenario.run(steps, pause_at=pause_at, on_step=on_step)
    return scenario


def restore_and_run(source: str, steps: int, key: bytes | None = None,
                    buffer_size: int = DEFAULT_CHUNK_SIZE,
                    on_step: Callable[[], None] | None = None) -> tuple[Any, dict]:
    """Restore into fresh channels, start them, run `steps` more (calling `on_step`
    after each); report what happened."""
    scenario = restore_file(source, key, buffer_size)
    restored_at = scenario.steps_taken
    before = {(i, t): p.state.label for i, s in enumerate(scenario.servers)
              for t, p in s.packets.items()}
    restored = {"channels": len(scenario.servers),
                "packets": len(before) + sum(
                    sum(p.type == PacketType.COMPLETION for p in s.backlog)
                    for s in scenario.servers),
                "pending_incoming": sum(len(s.pending_incoming) for s in scenario.servers),
                "backlog": sum(len(s.backlog) for s in scenario.servers)}
    backlogged = [p for s in scenario.servers for p in s.backlog]
    scenario.start()
    scenario.run(steps, on_step=on_step)
    after = {(i, t) for i, s in enumerate(scenario.servers) for t in s.packets}
    completed = sorted(k for k in before if k not in after)
    report = {
        "scenario": scenario.name, "seed": scenario.seed,
        "restored_at_step": restored_at, "ran_steps": steps,
        "restored": restored,
        "completed_transactions": [{"channel": i, "transaction_id": t} for i, t in completed],
        "backlog_now": sum(len(s.backlog) for s in scenario.servers),
        # every packet that was in the backlog at restore has left it
        "backlog_drained": all(p.state != PacketState.BACKLOG for p in backlogged),
        "steps_taken": scenario.steps_taken,
    }
    return scenario, report


__all__ = ["BlobError", "Verdict", "default_jobs", "expand_paths", "header_info", "read_key",
           "restore_and_run", "run_scenario", "validate_file", "validate_files"]
