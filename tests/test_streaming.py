"""The streaming paths (validate, inspect's summary) say what the whole-blob paths say."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import FIXTURE_DIR, FIXTURE_KEY

from vmbtool import jsonview, report, tools
from vmbtool.blob import load_blob
from vmbtool.packetfilter import parse_filter

BLOBS = sorted(FIXTURE_DIR.glob("v*/*.vmb"))
OPTIONS = [{}, {"packets": True, "gpadls": True, "rings": True},
           {"hexdump_rings": True}, {"flt": parse_filter("channel=0,state=in_ring")}]


def key_for(path: Path) -> bytes | None:
    return FIXTURE_KEY if path.stem.endswith("-signed") else None


@pytest.mark.parametrize("path", BLOBS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_streamed_summary_is_the_whole_blob_summary(path, options):
    full = {"packets": False, "rings": False, "gpadls": False, "hexdump_rings": False,
            "flt": parse_filter(None), **options}
    whole, streamed = io.StringIO(), io.StringIO()
    doc = jsonview.decode(load_blob(str(path), key_for(path)),
                          with_data=full["hexdump_rings"])
    report.summary(doc, whole, **full)
    report.stream_summary(str(path), key_for(path), streamed, **full)
    assert streamed.getvalue() == whole.getvalue()


@pytest.mark.parametrize("budget", [0, tools.DRY_RUN_BUDGET])
def test_validate_without_the_dry_run_still_checks_every_channel(budget, monkeypatch,
                                                                 tmp_path):
    """Above the dry-run budget validate still checks invariants and offers."""
    monkeypatch.setattr(tools, "DRY_RUN_BUDGET", budget)
    doc = jsonview.decode(load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb")))
    assert tools.validate_file(str(FIXTURE_DIR / "v1.1" / "network.vmb")).valid
    doc["channels"][2]["rings"]["outgoing"]["write_index"] += 4
    bad = tmp_path / "misaligned.vmb"
    bad.write_bytes(jsonview.encode(doc))
    verdict = tools.validate_file(str(bad))
    assert not verdict.valid
    assert verdict.problems[0][0].startswith("channels[2].rings.outgoing")
    doc = jsonview.decode(load_blob(str(FIXTURE_DIR / "v1.1" / "network.vmb")))
    doc["channels"][0], doc["channels"][1] = doc["channels"][1], doc["channels"][0]
    bad.write_bytes(jsonview.encode(doc))
    verdict = tools.validate_file(str(bad))
    assert not verdict.valid
    assert verdict.problems[0][0] in ("channels[0].context.offer", "channels[0]") or \
        "offer" in verdict.problems[0][1]
