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
    # (a field path is written only for a packet with a problem, or external data to
    # look at: kind "none" has no shape to get wrong)
    for record in guest.packets:
        p = record["lib_buf"]
        txid, external = p["transaction_id"], p["external"]
        completion = p["type"] == "completion"
        key = txid << 1 | completion
        if key in seen or external["kind"] != "none":
            pw = f"{where}.packets[{'completion' if completion else 'txid'}={txid}]"
            if key in seen:
                problems.append((pw, f"duplicate transaction id {txid}"))
            check_external_shape(external, pw, str(p["type"]), problems)
        seen.add(key)
    numbers: set[int] = set()
    for entry in guest.pending_incoming.packets:
        number, external = entry["number"], entry["external"]
        if number in numbers or external["kind"] != "none":
            iw = f"{where}.pending_incoming[number={number}]"
            if number in numbers:
                problems.append((iw, "duplicate arrival number"))
            check_external_shape(external, iw, str(entry["type"]), problems)
        numbers.add(number)
    return problems
