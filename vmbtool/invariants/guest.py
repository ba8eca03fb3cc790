"""The simulated guest's side of a channel: what its saved packets and pending incoming
packets must be."""

from __future__ import annotations

from vmbtool.invariants.external import check_external_shape
from vmbtool.invariants.problems import Problems
from vmbtool.sim.config import ClientState


def check_guest(guest, where: str) -> Problems:
    """The simulated guest's side of one channel (the scenario chunk's GuestChannel)."""
    problems: Problems = Problems()
    if guest.context.role != "client":
        problems.append((f"{where}.context.role", "a guest channel's context says server"))
    if guest.context.state not in ClientState._value2member_map_:
        problems.append((f"{where}.context.state", f"unknown client state {guest.context.state}"))
    seen: set[int] = set()  # transaction id << 1 | is a queued completion
    for record in guest.packets:
        p = record.lib_buf
        completion = str(p.type) == "completion"
        pw = f"{where}.packets[{'completion' if completion else 'txid'}={p.transaction_id}]"
        if p.transaction_id << 1 | completion in seen:
            problems.append((pw, f"duplicate transaction id {p.transaction_id}"))
        seen.add(p.transaction_id << 1 | completion)
        check_external_shape(p.external, pw, str(p.type), problems)
    numbers: set[int] = set()
    for entry in guest.pending_incoming.packets:
        iw = f"{where}.pending_incoming[number={entry.number}]"
        if entry.number in numbers:
            problems.append((iw, "duplicate arrival number"))
        numbers.add(entry.number)
        check_external_shape(entry.external, iw, str(entry.type), problems)
    return problems
