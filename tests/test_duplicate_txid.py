"""A repeated transaction id is called a duplicate, with its number, by every reader.

Blobs are made the way a user makes one: decode, repeat a packet in the JSON, encode.
The packet-order check would refuse most of them too ("packet chunk out of order"),
which is true but sends the user looking for the wrong mistake.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import ROOT, cli


def decoded(name: str) -> dict:
    return json.loads(cli("decode", ROOT / "fixtures" / "v1.1" / name).stdout)


def repeat(channel: int, index: int, to: int, kind: str | None = None):
    """An edit: the packet at `index` (of `kind` when given) repeated at `to`."""
    def edit(doc: dict) -> tuple[str, int]:
        packets = doc["channels"][channel]["packets"]
        chosen = [p for p in packets if kind is None or p["type"] == kind]
        packet = copy.deepcopy(chosen[index])
        packets.insert(to if to >= 0 else len(packets) + 1 + to, packet)
        doc["channels"][channel]["channel_end"]["packet_count"] += 1
        doc["end"]["packet_count"] += 1
        doc["end"]["chunk_count"] += 1
        label = "completion" if packet["type"] == "completion" else "txid"
        return f"channels[{channel}].packets[{label}={packet['transaction_id']}]", \
            packet["transaction_id"]
    return edit


CASES = {
    "in-ring, next to itself": ("storage.vmb", repeat(0, 0, 1)),
    "in-ring, at the end": ("storage.vmb", repeat(0, 0, -1)),
    "in-ring, among later ones": ("storage.vmb", repeat(0, 2, 9)),
    "backlog, next to itself": ("pipe.vmb", repeat(0, 3, 4)),
    "backlog, at the end": ("pipe.vmb", repeat(0, 0, -1)),
    "awaiting completion, in the backlog": ("network.vmb", repeat(1, 0, -1)),
    "a queued completion twice": ("network.vmb", repeat(2, 0, -1, kind="completion")),
}
COMMANDS = ("validate", "inspect", "decode", "restore", "diff")


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[str, tuple[Path, str, int]]:
    out = {}
    folder = tmp_path_factory.mktemp("duplicates")
    for number, (case, (fixture, edit)) in enumerate(CASES.items()):
        doc = decoded(fixture)
        where, txid = edit(doc)
        src, blob = folder / f"{number}.json", folder / f"{number}.vmb"
        src.write_text(json.dumps(doc))
        result = cli("encode", src, "-o", blob)
        assert result.exit_code == 0, result.stderr
        out[case] = blob, where, txid
    return out


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_repeated_transaction_id_is_called_a_duplicate(blobs, case, command):
    blob, where, txid = blobs[case]
    args = {"restore": ["restore", blob, "--run-steps", "1"],
            "diff": ["diff", ROOT / "fixtures" / "v1.1" / "storage.vmb", blob]}.get(
        command, [command, blob])
    result = cli(*args)
    says = f"at {where}: duplicate transaction id {txid}"
    if command == "validate":
        assert result.exit_code == 1
        assert result.stdout == f"{blob}: INVALID {says}\n"
        return
    assert result.exit_code == (2 if command == "diff" else 1)
    side = f" B ({blob})" if command == "diff" else ""
    assert result.stderr == f"Error: bad blob{side} {says}\n"


def test_a_guest_packet_repeated_is_a_duplicate_too(tmp_path):
    doc = decoded("network.vmb")
    packets = doc["scenario"]["guests"][0]["packets"]
    packets.append(copy.deepcopy(packets[0]))
    src, blob = tmp_path / "g.json", tmp_path / "g.vmb"
    src.write_text(json.dumps(doc))
    assert cli("encode", src, "-o", blob).exit_code == 0
    result = cli("validate", blob)
    assert result.exit_code == 1
    txid = packets[0]["transaction_id"]
    assert f"scenario.guests[0].packets[txid={txid}]: duplicate transaction id {txid}" \
        in result.stdout
