"""Thin click commands over the vmbtool library: parse options, call, print.

Exit codes as GNU diff has them: 0 yes, 1 no (invalid, different), 2 trouble (usage,
unreadable input, I/O); 130 and 143 when stopped by SIGINT or SIGTERM. Errors are one
`Error:` line on stderr; `--debug` adds the traceback. Heavy modules are imported inside
the commands that need them; the shared pieces live in vmbtool/clikit.py, the commands
about the format itself (schema, compat) in vmbtool/cliformat.py.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

if os.path.basename(sys.argv[0]) in ("vmbtool", "__main__.py"):
    # run as the program: a Ctrl-C while the modules below load ends it quietly, by the
    # signal (the group sets the handlers that turn it into a clean exit 130)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import click  # noqa: E402 - after the quiet Ctrl-C above

from vmbtool import __version__  # noqa: E402
from vmbtool.cliformat import compat, schema  # noqa: E402
from vmbtool.clikit import (  # noqa: E402
    MAX_NOTE,
    VmbtoolGroup,
    allow_unsigned_option,
    cap_jobs,
    check_pause_at,
    checking_key,
    colour,
    emit_json,
    key_option,
    output_to,
    scenario_options,
    step_progress,
    view_key,
)


@click.group(cls=VmbtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmbtool")
@click.option("--debug", is_flag=True, help="Show a traceback with errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Save, inspect, diff, validate and restore the saved state of VMBus channels."""
    ctx.obj = {"debug": debug}


@main.command()
@scenario_options
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
def run(scenario: str, seed: int, steps: int, pause_at: int | None, as_json: bool) -> None:
    """Run a simulated scenario and print what it did."""
    from vmbtool.text import escape, plural
    from vmbtool.tools import run_scenario

    check_pause_at(steps, pause_at)
    with step_progress(steps, f"running {scenario}") as tick:
        sim = run_scenario(scenario, seed, steps, pause_at, on_step=tick)
    if as_json:
        emit_json(sim.summary())
        return
    for line in sim.describe():
        click.echo(escape(line))
    last = sim.transcript[-1] if sim.transcript else "-"
    click.echo(f"  {plural(len(sim.transcript), 'event')}; last: {escape(last)}")


# snapshot.SAVE_BUFFER_SIZE (a chunk header and the largest chunk data), written out so
# that `--help` imports nothing heavy; tests/test_cli.py checks the two agree
SAVE_BUFFER_SIZE = 12 + (32 << 20)


@main.command()
@scenario_options
@click.option("--chunk-size", type=click.IntRange(1, 1 << 30), default=SAVE_BUFFER_SIZE,
              show_default=True, help="SaveContinue buffer size in bytes (the default "
              "holds the largest chunk, a 32 MiB one; a chunk larger than a smaller "
              "size fails the save with BUFFER_TOO_SMALL).")
@click.option("--level", type=click.IntRange(1, 19), default=3, show_default=True,
              help="zstd compression level.")
@click.option("--no-compress", is_flag=True, help="Store the body uncompressed.")
@click.option("--note", metavar="TEXT", help="A free-form note to keep in the blob "
              f"(format 1.1; up to {MAX_NOTE} UTF-8 bytes); inspect shows it.")
@key_option
@click.option("-o", "--output", required=True, help="Blob file to write, or - for stdout.")
def save(scenario: str, seed: int, steps: int, pause_at: int | None, chunk_size: int,
         level: int, no_compress: bool, note: str | None, key_file: str | None,
         output: str) -> None:
    """Run a scenario N steps, pause its channels and save them to a blob."""
    from click.core import ParameterSource

    from vmbtool.snapshot import save_blob
    from vmbtool.text import escape, plural
    from vmbtool.tools import read_key, run_scenario

    out = output_to(output)
    if no_compress and click.get_current_context().get_parameter_source("level") \
            is not ParameterSource.DEFAULT:
        raise click.UsageError("--level sets the zstd level; --no-compress stores the body "
                               "uncompressed: give one or the other")
    check_pause_at(steps, pause_at)
    if note is not None:
        try:
            size = len(note.encode("utf-8"))
        except UnicodeEncodeError:
            raise click.BadParameter("not valid UTF-8", param_hint="'--note'") from None
        if size > MAX_NOTE:
            raise click.BadParameter(f"{size} bytes, more than {MAX_NOTE}",
                                     param_hint="'--note'")
    key = read_key(key_file)
    with step_progress(steps, f"running {scenario}") as tick:
        sim = run_scenario(scenario, seed, steps, pause_at, on_step=tick)
    data = save_blob(sim, chunk_size=chunk_size, level=None if no_compress else level, key=key,
                     note=note)
    out.write(data)
    if output != "-":
        click.echo(f"saved {scenario} seed {seed} at step {steps}: "
                   f"{plural(len(sim.servers), 'channel')}, {plural(len(data), 'byte')} -> "
                   f"{escape(output)}", err=True)


@main.command()
@click.argument("blob")
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@click.option("--packets", is_flag=True, help="List every packet object in use.")
@click.option("--ring", is_flag=True, help="Ring control fields.")
@click.option("--gpadls", is_flag=True, help="List the GPADLs.")
@click.option("--hexdump", is_flag=True, help="Hex dump of each ring's unread bytes.")
@click.option("--filter", "filter_expr", metavar="EXPR",
              help="Only these packets (and channels): channel=N, txid=N (decimal or 0x "
                   "hex), state=S, type=T, comma-separated; a field given twice means "
                   "either value.")
@key_option
def inspect(blob: str, as_json: bool, packets: bool, ring: bool, gpadls: bool, hexdump: bool,
            filter_expr: str | None, key_file: str | None) -> None:
    """Summarise a blob: version, channels, rings, GPADLs, packets by state."""
    from vmbtool import report
    from vmbtool.errors import BlobError
    from vmbtool.formats import FORMAT_MAJOR
    from vmbtool.jsonstream import read_doc
    from vmbtool.keys import SIGNED_NEEDS_KEY
    from vmbtool.packetfilter import filter_doc, parse_filter
    from vmbtool.tools import header_info, unverified_head

    flt = parse_filter(filter_expr)
    key = view_key(key_file, (blob,))
    info = header_info(blob) if blob != "-" else None
    if info is not None and info["major"] != FORMAT_MAJOR:
        if as_json:
            emit_json({"format": {"major": info["major"], "minor": info["minor"]},
                       "decoded": False})
        else:
            report.newer_version_note(info, sys.stdout)
        raise BlobError("header.format_major", f"format {info['major']}.{info['minor']} "
                        f"is not readable by this vmbtool (format {info['reads']})")
    if info is not None and key is None and (head := unverified_head(blob)) is not None:
        if as_json:
            emit_json({**head, "decoded": False})
        else:
            report.write_head(head, None, sys.stdout)
            sys.stdout.write("signature NOT verified (no key given): the body is not read\n")
        raise BlobError("signature", SIGNED_NEEDS_KEY)
    if not as_json:
        report.stream_summary(blob, key, sys.stdout, packets=packets, rings=ring,
                              gpadls=gpadls, hexdump_rings=hexdump, flt=flt)
        return
    emit_json(filter_doc(read_doc(blob, key, with_data=hexdump), flt))


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@click.option("--ignore", multiple=True, metavar="PATH",
              help="Field path (or glob) to ignore; header.created_ns always is.")
@key_option
def diff(a: str, b: str, as_json: bool, ignore: tuple[str, ...], key_file: str | None) -> None:
    """Semantic diff by field path; exit 0 when equal, 1 when they differ, 2 when A or
    B cannot be read or is not a valid blob."""
    from vmbtool.diff import DEFAULT_IGNORES
    from vmbtool.inputs import stdin_once
    from vmbtool.jsonstream import diff_blobs
    from vmbtool.text import escape, plural

    stdin_once((a, b))
    key = view_key(key_file, (a, b))
    changes = diff_blobs(a, b, key, DEFAULT_IGNORES + tuple(ignore))
    if as_json:
        emit_json({"equal": not changes, "changes": [
            {"path": c.path, "old": None if c.old is not None and str(c.old) == "(absent)"
             else _jsonable(c.old), "new": _jsonable(c.new)} for c in changes]})
    else:
        for change in changes:
            click.echo(escape(change))
        click.echo("equal" if not changes else plural(len(changes), "difference"), err=True)
    sys.exit(1 if changes else 0)


def _jsonable(value: Any) -> Any:
    from vmbtool.diff import MISSING

    return None if value is MISSING else value


@main.command()
@click.argument("blobs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@click.option("-j", "--jobs", type=click.IntRange(1), metavar="N",
              help="Worker processes for several blobs (default: every core).")
@key_option
@allow_unsigned_option
def validate(blobs: tuple[str, ...], as_json: bool, jobs: int | None,
             key_file: str | None, allow_unsigned: bool) -> None:
    """Check grammar, checksums, version, signature and invariants of each blob
    (a directory stands for its *.vmb files)."""
    from vmbtool.inputs import stdin_once
    from vmbtool.tools import expand_paths, validate_files

    stdin_once(blobs)
    key = checking_key(key_file, allow_unsigned, blobs)
    paths = expand_paths(list(blobs), notice=lambda text: click.echo(text, err=True))
    if not paths:
        raise click.UsageError("no blobs to validate")
    jobs = cap_jobs(jobs)
    if sys.stderr.isatty() and len(paths) > 1 and not as_json:
        with click.progressbar(length=len(paths), label="validating",
                               file=sys.stderr) as bar:
            verdicts = validate_files(paths, key, jobs, done=lambda _verdict: bar.update(1))
    else:  # no bar (nor its module's import)
        verdicts = validate_files(paths, key, jobs)
    unreadable = sum(v.unreadable for v in verdicts)
    invalid = sum(not v.valid for v in verdicts) - unreadable
    valid = len(verdicts) - invalid - unreadable
    if as_json:
        emit_json({"valid": valid == len(verdicts), "blobs": [v.as_json() for v in verdicts],
                   "summary": {"blobs": len(verdicts), "valid": valid, "invalid": invalid,
                               "unreadable": unreadable}})
    else:
        for v in verdicts:
            click.echo(v.line() if v.valid else colour(v.line(), fg="red"))
        click.echo(f"{valid} valid, {invalid} invalid"
                   f"{f', {unreadable} unreadable' if unreadable else ''}", err=True)
    sys.exit(2 if unreadable else 1 if invalid else 0)  # trouble before "no"


@main.command()
@click.argument("blob")
@click.option("--run-steps", type=click.IntRange(0, 10_000_000), default=50,
              show_default=True, help="Steps to run after the restore.")
@click.option("--resave", metavar="FILE", help="Save the restored channels' state here.")
@click.option("--level", type=click.IntRange(1, 19), default=3, show_default=True,
              help="zstd compression level of the --resave blob.")
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@key_option
@allow_unsigned_option
def restore(blob: str, run_steps: int, resave: str | None, level: int, as_json: bool,
            key_file: str | None, allow_unsigned: bool) -> None:
    """Restore into fresh channels, start them, run N steps and report."""
    from vmbtool.snapshot import save_blob
    from vmbtool.text import escape, plural
    from vmbtool.tools import restore_and_run

    out = output_to(resave) if resave is not None else None
    to_stderr = out is not None and out.shares_stdout  # stdout carries the blob alone
    if to_stderr and as_json:
        raise click.UsageError(f"--resave {resave} and --json both want stdout; give "
                               "--resave a file")
    key = checking_key(key_file, allow_unsigned, (blob,))
    with step_progress(run_steps, "running the restored channels") as tick:
        scenario, rep = restore_and_run(blob, run_steps, key, on_step=tick)
    if out is not None:
        out.write(save_blob(scenario, level=level, key=key))
        rep["resaved"] = resave
    if as_json:
        emit_json(rep)
        return
    r = rep["restored"]
    click.echo(f"restored {escape(rep['scenario'])} seed {rep['seed']} at step "
               f"{rep['restored_at_step']}: {plural(r['channels'], 'channel')}, "
               f"{plural(r['packets'], 'packet')} ({r['backlog']} in the backlog), "
               f"{r['pending_incoming']} pending incoming", err=to_stderr)
    done = rep["completed_transactions"]
    shown = ", ".join(f"{c['channel']}:{c['transaction_id']}" for c in done[:20])
    click.echo(f"ran {plural(run_steps, 'step')}: "
               f"{plural(len(done), 'restored transaction')} completed"
               f"{' (' + shown + (' …' if len(done) > 20 else '') + ')' if done else ''}",
               err=to_stderr)
    click.echo(f"backlog {'drained' if rep['backlog_drained'] else 'NOT drained'}; "
               f"{plural(rep['backlog_now'], 'packet')} in the backlog now",
               err=to_stderr)
    if out is not None:
        click.echo(f"resaved -> {escape(resave)}", err=to_stderr)


@main.command()
@click.argument("blob")
@click.option("-o", "--output", default="-", show_default=True,
              help="JSON file to write, or - for stdout.")
@key_option
def decode(blob: str, output: str, key_file: str | None) -> None:
    """The whole blob as JSON."""
    from vmbtool.jsonstream import decode_spooled

    out = output_to(output, blob=False)
    with decode_spooled(blob, view_key(key_file, (blob,)), out.where) as text:
        out.write(text)


@main.command()
@click.argument("json_file", metavar="JSON")
@click.option("-o", "--output", required=True, help="Blob file to write, or - for stdout.")
@key_option
def encode(json_file: str, output: str, key_file: str | None) -> None:
    """A blob from decode's JSON (byte-identical to the decoded blob)."""
    from vmbtool import jsonview
    from vmbtool.tools import read_key

    out = output_to(output)
    doc = jsonview.read_document(json_file)
    out.write(jsonview.encode(doc, read_key(key_file, (json_file,))))


@main.command()
@click.argument("blob")
@click.option("-o", "--output", required=True, help="Blob file to write, or - for stdout.")
@click.option("--to", "to", metavar="VERSION", help="Target format (default: the newest).")
@click.option("--allow-loss", is_flag=True,
              help="Going down, drop optional information the target has no place for.")
@key_option
@allow_unsigned_option
def upgrade(blob: str, output: str, to: str | None, allow_loss: bool,
            key_file: str | None, allow_unsigned: bool) -> None:
    """Rewrite a blob in a newer (or, without loss, older) format version."""
    from vmbtool.errors import VmbtoolError
    from vmbtool.formats import FORMAT_MAJOR, FORMAT_MINOR
    from vmbtool.text import escape, plural
    from vmbtool.upgrade import parse_version, upgrade_blob

    try:
        target = parse_version(to) if to else (FORMAT_MAJOR, FORMAT_MINOR)
    except VmbtoolError as exc:
        raise click.BadParameter(exc.why, param_hint="'--to'") from None
    out = output_to(output)
    result = upgrade_blob(blob, checking_key(key_file, allow_unsigned, (blob,)), target, allow_loss)
    with result.data:
        out.write([result.data])
    dropped = f"; dropped {', '.join(result.dropped)}" if result.dropped else ""
    click.echo(f"format {result.source_version} -> {result.target_version}: "
               f"{plural(result.chunks, 'chunk')}, {plural(result.size, 'byte')} -> "
               f"{escape(output)}{dropped}", err=True)


main.add_command(schema)  # the format's own commands (vmbtool/cliformat.py)
main.add_command(compat)
