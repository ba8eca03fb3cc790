"""The small things of issue 14, through the CLI: counts agree with their noun, `run`
prints words (and `--json`), `--level` with `--no-compress` is a usage error, every
option has help, and the README's ring-picture legend has every character inspect draws.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import Result
from conftest import ROOT, cli

from vmbtool.cli import main

README = ROOT / "README.md"
# "1 channels", "1 steps", …: a count of one with a plural noun
ONE_PLURAL = re.compile(r"(?<![\d.,])1 (channels|steps|packets|differences|events|chunks|"
                        r"bytes|transactions|restored transactions|pages|findings)\b")
PLURAL_ONE = re.compile(r"(?<![\d.,])(?:[02-9]|\d\d+) (channel|step|packet|difference|event|"
                        r"chunk|byte|restored transaction|page|finding)\b(?!s)")


def ok(*args: object) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


def words(result: Result) -> str:
    text = result.stdout + result.stderr
    assert not ONE_PLURAL.search(text), ONE_PLURAL.search(text)
    assert not PLURAL_ONE.search(text), PLURAL_ONE.search(text)
    return text


@pytest.fixture(scope="module")
def one_step(tmp_path_factory) -> dict[str, Path]:
    """Blobs after one step and after two (a storage blob has one channel)."""
    folder = tmp_path_factory.mktemp("small")
    out = {}
    for steps in (1, 2):
        out[steps] = folder / f"s{steps}.vmb"
        ok("save", "--steps", steps, "-o", out[steps])
    return out


# -- counts and their nouns ----------------------------------------------------------


def test_save_says_1_channel_and_3_channels(tmp_path):
    text = words(ok("save", "--steps", 1, "-o", tmp_path / "a.vmb"))
    assert text.startswith("saved storage seed 1 at step 1: 1 channel, ")
    text = words(ok("save", "--scenario", "network", "--steps", 1, "-o", tmp_path / "b.vmb"))
    assert text.startswith("saved network seed 1 at step 1: 3 channels, ")


def test_inspect_says_1_step_taken(one_step):
    assert "seed 1, 1 step taken;" in words(ok("inspect", one_step[1]))
    assert "seed 1, 2 steps taken;" in words(ok("inspect", one_step[2]))


def test_validate_says_1_channel(one_step):
    text = words(ok("validate", one_step[1]))
    assert re.fullmatch(rf"{re.escape(str(one_step[1]))}: valid \(format 1\.1, 1 channel, "
                        rf"\d+ packets?\)\n1 valid, 0 invalid\n", text), text


@pytest.mark.parametrize("steps", [1, 2])
def test_restore_says_ran_1_step(one_step, steps):
    text = words(ok("restore", one_step[1], "--run-steps", steps))
    assert text.startswith("restored storage seed 1 at step 1: 1 channel, ")
    assert f"\nran {steps} step{'s' * (steps > 1)}: " in text


def test_diff_says_1_difference(one_step, tmp_path):
    doc = json.loads(ok("decode", one_step[1]).stdout)
    doc["scenario"]["seed"] = 2
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    ok("encode", edited, "-o", tmp_path / "e.vmb")
    result = cli("diff", one_step[1], tmp_path / "e.vmb")
    assert result.exit_code == 1
    assert words(result) == "scenario.seed: 1 → 2\n1 difference\n"
    result = cli("diff", one_step[1], one_step[2])
    assert re.search(r"^\d+ differences$", words(result), re.M)


def test_run_says_1_step():
    for steps in (0, 1, 2):
        text = words(ok("run", "--steps", steps))
        assert text.startswith(f"scenario storage, seed 1, {steps} step{'s' * (steps != 1)}\n")


# -- run: words, and --json -----------------------------------------------------------


@pytest.mark.parametrize("scenario", ["storage", "network", "pipe"])
def test_run_prints_no_python_repr(scenario):
    text = ok("run", "--scenario", scenario, "--steps", 40).stdout
    lines = text.splitlines()
    assert not re.search(r"[{}\[\]]|': ", text), text  # no dict, list or repr'd key
    channels = [line for line in lines if line.startswith("  channel ")]
    assert channels
    for line in channels:
        assert re.fullmatch(r"  channel \d+ \(\S+\): \w+, out ring \d+/\d+ B, in ring \d+/\d+ B, "
                            r"packets: (none|\d+ [a-z-]+(, \d+ [a-z-]+)*); backlog \d+; "
                            r"pending incoming \d+", line), line
    assert re.fullmatch(r"  \d+ events?; last: \d+:.*", lines[-1]), lines[-1]


@pytest.mark.parametrize("scenario, pause_at", [("storage", None), ("network", 20),
                                                ("pipe", None)])
def test_run_json_has_the_documented_shape(scenario, pause_at):
    args = ["run", "--scenario", scenario, "--steps", 40]
    args += ["--pause-at", pause_at] if pause_at is not None else []
    doc = json.loads(ok(*args, "--json").stdout)
    assert list(doc) == ["scenario", "seed", "steps_taken", "channels", "events",
                         "last_event"]
    assert (doc["scenario"], doc["seed"], doc["steps_taken"]) == (scenario, 1, 40)
    text = ok(*args).stdout.splitlines()
    assert text[-1] == f"  {doc['events']} events; last: {doc['last_event']}"
    assert len(doc["channels"]) == len(text) - 2
    for ch, line in zip(doc["channels"], text[1:-1], strict=True):
        assert list(ch) == ["channel", "friendly_name", "state", "rings", "packets",
                            "backlog", "pending_incoming"]
        assert set(ch["rings"]) == {"outgoing", "incoming"}
        assert all(list(r) == ["used_bytes", "size"] for r in ch["rings"].values())
        packets = ", ".join(f"{n} {s}" for s, n in ch["packets"].items()) or "none"
        assert line == (f"  channel {ch['channel']} ({ch['friendly_name']}): {ch['state']}, "
                        f"out ring {ch['rings']['outgoing']['used_bytes']}/"
                        f"{ch['rings']['outgoing']['size']} B, in ring "
                        f"{ch['rings']['incoming']['used_bytes']}/"
                        f"{ch['rings']['incoming']['size']} B, packets: {packets}; backlog "
                        f"{ch['backlog']}; pending incoming {ch['pending_incoming']}")


def test_run_json_is_in_the_readme():
    section = README.read_text().split("`run --json`:")[1]
    for key in ("steps_taken", "friendly_name", "used_bytes", "pending_incoming",
                "last_event"):
        assert f'"{key}"' in section.split("```")[1], key


# -- --level with --no-compress -------------------------------------------------------


@pytest.mark.parametrize("args", [["--no-compress", "--level", 19],
                                  ["--level", 3, "--no-compress"],  # the default, given
                                  ["--level=1", "--no-compress"]])
def test_level_with_no_compress_is_a_usage_error(tmp_path, args):
    result = cli("save", "--steps", 1, *args, "-o", tmp_path / "x.vmb")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[-1] == (
        "Error: --level sets the zstd level; --no-compress stores the body uncompressed: "
        "give one or the other")
    assert list(tmp_path.iterdir()) == []
    # either alone is fine
    for alone, compression in ((["--no-compress"], "none"), (["--level", 19], "zstd level 19")):
        ok("save", "--steps", 1, *alone, "-o", tmp_path / "x.vmb")
        assert f", {compression}, unsigned\n" in ok("inspect", tmp_path / "x.vmb").stdout


# -- every option of every command has help --------------------------------------------


def options(command: click.Command, path: str = "vmbtool"):
    ctx = click.Context(command)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            yield f"{path} {param.opts[-1]}", param
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from options(sub, f"{path} {name}")


def test_every_option_has_help():
    walked = list(options(main))
    assert {name.split()[1] for name, _ in walked if len(name.split()) > 2} == \
        set(main.commands)  # the walk reached every command
    assert len(walked) > 50
    assert [name for name, option in walked
            if not option.help or len(option.help.split()) < 2] == []
    # and `--help` shows it
    for name, option in walked:
        command = name.split()[1:-1]
        if option.opts[-1] not in ("--help", "--version"):
            text = re.sub(r"\s+", " ", ok(*command, "--help").stdout)
            assert " ".join(option.help.split()[:2]) in text, name


# -- the ring picture's legend ---------------------------------------------------------


def test_every_ring_picture_character_is_in_the_readme(tmp_path):
    """`X` (read and write in one cell, bytes unread) and `=` (one cell, empty) included:
    blobs at a few points of a few runs draw every character."""
    drawn = set()
    for scenario, steps in (("storage", 30), ("storage", 0), ("network", 60), ("pipe", 5)):
        path = tmp_path / f"{scenario}{steps}.vmb"
        ok("save", "--scenario", scenario, "--steps", steps, "-o", path)
        for picture in re.findall(r"^  (?:incoming|outgoing) +\[([^\]]*)\]",
                                  ok("inspect", path).stdout, re.M):
            drawn |= set(picture)
    assert {"X", "="} <= drawn  # the cases the legend lacked are drawn by these blobs
    inspect = README.read_text().split("### `vmbtool inspect`")[1].split("###")[0]
    legend = set(re.findall(r"`(.)`\s+[a-z]", inspect))
    assert drawn <= legend, drawn - legend
