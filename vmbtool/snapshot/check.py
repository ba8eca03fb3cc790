"""Checking a blob's state: every channel's invariants and the scenario chunk against
the channels' offers, as validate lists them; `check_file` in bounded memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from vmbtool.blob import BlobReader
from vmbtool.blob.consumers import Check
from vmbtool.formats import READS
from vmbtool.invariants import Problems, check_guest
from vmbtool.scenarios import SCENARIOS
from vmbtool.scenarios.base import instance_guid
from vmbtool.sim.config import ClientState
from vmbtool.state import config_from


def check_scenario(state: Any, offers: list[tuple]) -> list[tuple[str, str]]:
    """The scenario chunk against the channels' offers (interface, instance, index)."""
    if state is None:
        return [("scenario", "missing: this blob cannot be continued")]
    problems = []
    cls = SCENARIOS.get(state.scenario)
    if cls is None:
        problems.append(("scenario.scenario", f"unknown scenario {state.scenario!r}"))
    else:
        instance = instance_guid(state.scenario, state.seed)
        for index, offer in enumerate(offers):
            if offer != (cls.interface_type, instance, index):
                problems.append((f"channels[{index}].context.offer",
                                 f"not the offer of {state.scenario} channel {index} "
                                 f"(seed {state.seed})"))
    if len(state.guests) != len(offers):
        problems.append(("scenario.guests", f"{len(state.guests)} guest channels for "
                         f"{len(offers)} channels"))
    for index, guest in enumerate(state.guests):
        where = f"scenario.guests[{index}]"
        # a lean read checked each guest as it came and kept only its problems
        problems.extend(guest.problems if "problems" in guest else check_guest(guest, where))
        if index < len(offers) and config_from(guest.context).offer_key != offers[index]:
            problems.append((f"{where}.context", "the guest channel names another offer"))
        if cls is not None and guest.context.state not in cls.guest_states:
            problems.append((f"{where}.context.state", f"{client_state(guest.context.state)}: "
                             f"the {state.scenario} VSC keeps its channels "
                             + " or ".join(client_state(s) for s in sorted(cls.guest_states))))
    return problems


def client_state(value: int) -> str:
    """A guest channel's saved state by name (its number when it names none)."""
    try:
        return ClientState(value).name.lower()
    except ValueError:
        return str(value)


@dataclass(eq=False, repr=False)  # (state in progress: no field-wise == or repr)
class FileCheck:
    """What a lean read with every check found in a blob: validate's verdict, and a
    streamed restore's first pass."""

    problems: Problems
    version: str
    channels: int
    packets: int
    decoded: int  # bytes of chunks (headers and data) the body decodes to
    scenario: Any  # the scenario chunk as a lean read keeps it (no guest packets)
    digest: bytes  # the END chunk's SHA-256 of the header and body that were checked


def check_file(source: str | bytes | IO[bytes], key: bytes | None = None,
               reads: tuple[int, int] = READS) -> FileCheck:
    """Grammar, checksums, version, signature and semantic invariants of one blob, in
    bounded memory: each channel's parts are checked as they stream past and dropped.

    Problems of the blob's content are listed; a blob that cannot be read on (framing,
    checksums, digest, caps) raises its BlobError."""
    with BlobReader(source, key, Check(), reads=reads, defer_seal=True) as reader:
        return check_reader(reader)


def check_reader(reader: BlobReader) -> FileCheck:
    """`check_file` on a reader opened for it (lean, with checks)."""
    problems, offers, packets = Problems(), [], 0
    for saved, _chunks in reader.channels():
        problems.extend(saved.problems or [])
        offers.append(config_from(saved.context).offer_key)
        packets += saved.packet_count
        del saved  # nothing of a checked channel outlives the next one
    problems.extend(check_scenario(reader.scenario, offers))
    return FileCheck(problems, reader.version, len(offers), packets, reader.tally.bytes,
                     reader.scenario, reader.end.digest)
