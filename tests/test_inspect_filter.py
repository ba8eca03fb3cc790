"""`inspect --filter` through the CLI: every value is checked against the tool's own tables
(a wrong one is a usage error, exit 2, listing the valid values), `_`/`-` and decimal/hex
spellings mean the same, a repeated field means "any of", and the text and `--json`
select the same channels and packets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import Result
from conftest import cli

from vmbtool.jsonview import PACKET_STATE_JSON
from vmbtool.state import PACKET_TYPE_NAMES

STATES = ", ".join(PACKET_STATE_JSON.values())  # the tables the rest of the tool uses
TYPES = ", ".join(PACKET_TYPE_NAMES.values())
ROW = re.compile(r"^    txid +(\d+) (\S+) +(\S+) +flags ")


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[str, Path]:
    """network: 3 channels with in-ring, awaiting-completion and backlogged packets and
    queued completions; storage: 1 channel."""
    folder = tmp_path_factory.mktemp("filter")
    out = {}
    for scenario in ("network", "storage"):
        out[scenario] = folder / f"{scenario}.vmb"
        result = cli("save", "--scenario", scenario, "--seed", 5, "--steps", 60,
                     "-o", out[scenario])
        assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def network(blobs) -> dict:
    return json.loads(cli("decode", blobs["network"]).stdout)


def text_rows(result: Result) -> list[tuple[int, int, str, str]]:
    """(channel, txid, state, type) of every packet row, and the channels shown."""
    assert result.exit_code == 0, result.stderr
    rows, channel = [], None
    for line in result.stdout.splitlines():
        if line.startswith("channel "):
            channel = int(line.split()[1])
        elif match := ROW.match(line):
            rows.append((channel, int(match[1]), match[2], match[3]))
    return rows


def channels_shown(result: Result) -> list[int]:
    return [int(line.split()[1]) for line in result.stdout.splitlines()
            if line.startswith("channel ")]


def json_rows(doc: dict, indexes: list[int]) -> list[tuple[int, int, str, str]]:
    return [(index, p["transaction_id"], p["state"], p["type"])
            for index, ch in zip(indexes, doc["channels"], strict=True) for p in ch["packets"]]


def expected(network: dict, keep) -> list[tuple[int, int, str, str]]:
    return [(i, p["transaction_id"], p["state"], p["type"])
            for i, ch in enumerate(network["channels"]) for p in ch["packets"] if keep(i, p)]


# -- a wrong value is a usage error that lists the valid ones ---------------------------

REFUSED = [
    ("state=bogus", f"state is one of {STATES}"),
    ("state=in ring", f"state is one of {STATES}"),
    ("state=inring", f"state is one of {STATES}"),
    ("type=transfer-page", f"type is one of {TYPES}"),
    ("type=bogus", f"type is one of {TYPES}"),
    ("txid=abc", "is not a transaction id: give it in decimal or hex"),
    ("txid=-1", "is not a transaction id"),
    ("txid=0x", "is not a transaction id"),
    ("txid=0x1g", "is not a transaction id"),
    (f"txid={2**64}", "is not a transaction id"),
    ("channel=abc", "is not a channel number"),
    ("channel=-1", "is not a channel number"),
    ("channel=3", "this blob has channels 0-2"),
    ("channel=9", "this blob has channels 0-2"),
    ("channel=1,channel=0x10", "this blob has channels 0-2"),
    ("foo=1", "use FIELD=VALUE with FIELD one of channel, txid, state, type"),
    ("state=backlog,colour=red", "use FIELD=VALUE with FIELD one of"),
    ("channel", "use FIELD=VALUE with FIELD one of"),
    ("txid=", "use FIELD=VALUE with FIELD one of"),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("expr, why", REFUSED, ids=[e for e, _ in REFUSED])
def test_a_wrong_value_is_a_usage_error(blobs, expr, why, as_json):
    result = cli("inspect", blobs["network"], "--filter", expr, *(["--json"] * as_json))
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    line, = result.stderr.splitlines()
    assert line.startswith("Error: bad filter at --filter ")
    assert why in line, line


def test_a_one_channel_blob_names_its_one_channel(blobs):
    result = cli("inspect", blobs["storage"], "--filter", "channel=1")
    assert result.exit_code == 2
    assert result.stderr == "Error: bad filter at --filter 'channel=1': this blob has " \
                            "channel 0 only\n"


# -- spellings that mean the same -----------------------------------------------------

SAME = [
    ("state=in-ring", ["state=in_ring", "state=IN_RING", "state= in-ring "]),
    ("state=awaiting-completion", ["state=awaiting_completion"]),
    ("type=transfer_pages", ["type=transfer-pages", "type=Transfer-Pages"]),
    ("type=completion,state=backlog", ["type=COMPLETION,state=BACKLOG"]),
    ("txid=45", ["txid=0x2d", "txid=0X2D", "txid=045"]),
    ("channel=1", ["channel=0x1", "channel=01"]),
]


@pytest.mark.parametrize("canonical, spellings", SAME, ids=[c for c, _ in SAME])
def test_spellings_that_mean_the_same(blobs, network, canonical, spellings):
    reference = cli("inspect", blobs["network"], "--filter", canonical)
    assert text_rows(reference)
    for spelling in spellings:
        result = cli("inspect", blobs["network"], "--filter", spelling)
        assert result.stdout == reference.stdout, spelling


# -- a repeated field means "any of"; different fields all must match ------------------

ANY_OF = [
    ("channel=0,channel=2", lambda i, p: i in (0, 2)),
    ("state=backlog,state=awaiting-completion",
     lambda i, p: p["state"] in ("backlog", "awaiting-completion")),
    ("txid=45,txid=0x35,channel=0,channel=1",
     lambda i, p: p["transaction_id"] in (45, 53) and i in (0, 1)),
    ("type=completion,type=inband,channel=2", lambda i, p: p["type"] != "transfer_pages"
     and i == 2),
]


@pytest.mark.parametrize("expr, keep", ANY_OF, ids=[e for e, _ in ANY_OF])
def test_a_repeated_field_means_any_of(blobs, network, expr, keep):
    rows = text_rows(cli("inspect", blobs["network"], "--filter", expr))
    assert rows == expected(network, keep)
    assert len(rows) > 0


# -- text and JSON select the same channels and packets --------------------------------

ALIKE = [
    ("channel=1", [1]),
    ("channel=2,channel=0", [0, 2]),
    ("channel=0,state=in_ring", [0]),
    ("channel=1,type=completion,txid=0x2c,txid=999", [1]),
    ("state=backlog,state=in-ring,type=completion,txid=0x2d", [0, 1, 2]),
]


@pytest.mark.parametrize("expr, indexes", ALIKE, ids=[e for e, _ in ALIKE])
def test_text_and_json_filter_alike(blobs, network, expr, indexes):
    text = cli("inspect", blobs["network"], "--filter", expr)
    result = cli("inspect", blobs["network"], "--filter", expr, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert channels_shown(text) == indexes
    assert len(doc["channels"]) == len(indexes)
    assert [ch["offer"]["subchannel_index"] for ch in doc["channels"]] == \
        [network["channels"][i]["offer"]["subchannel_index"] for i in indexes]
    assert text_rows(text) == json_rows(doc, indexes)
    assert set(doc["filter"]) <= {"channel", "txid", "state", "type"}
    assert doc["filter"].get("channel", list(range(3))) == indexes
