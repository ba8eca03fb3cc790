"""Thin click commands over the vmbtool library: parse options, call, print.

Exit codes: 0 success / yes, 1 the answer is no (invalid, different) or the operation
failed, 2 usage error. Errors are one `Error:` line on stderr; `--debug` adds the
traceback. Heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from vmbtool import __version__

SCENARIO_NAMES = ("storage", "network", "pipe")
KEY_ENV = "VMBTOOL_KEY_FILE"


class VmbtoolGroup(click.Group):
    """Turns the project's errors into one `Error:` line and their exit code (1 no, 2
    trouble)."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        if args is None:  # the console script (not a caller passing arguments)
            import atexit
            import gc

            # the interpreter's last garbage collection at exit walks every object
            # the command made (about 15 ms after validate); the process ends anyway
            atexit.register(gc.freeze)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        from vmbtool.errors import VmbtoolError

        try:
            return super().invoke(ctx)
        except VmbtoolError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            sys.stderr.close()
            ctx.exit(1)


MAX_NOTE = 65536
KEY_FILE_TYPE = click.Path(dir_okay=False)  # one instance for every command: a faster start


def key_option(f):
    return click.option("--key-file", type=KEY_FILE_TYPE, envvar=KEY_ENV,
                        help=f"HMAC-SHA256 key file (or ${KEY_ENV}); the key is never "
                             "printed.")(f)


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=False))


def colour(text: str, **style: Any) -> str:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return text
    return click.style(text, **style)


@click.group(cls=VmbtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmbtool")
@click.option("--debug", is_flag=True, help="Show a traceback with errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Save, inspect, diff, validate and restore the saved state of VMBus channels."""
    ctx.obj = {"debug": debug}


def scenario_options(f):
    f = click.option("--pause-at", type=click.IntRange(0), default=None,
                     help="Pause and start the channels at this step (a save point "
                          "minus the save).")(f)
    f = click.option("--steps", type=click.IntRange(0, 10_000_000), default=100,
                     show_default=True)(f)
    f = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=1,
                     show_default=True)(f)
    return click.option("--scenario", type=click.Choice(SCENARIO_NAMES), default="storage",
                        show_default=True, help="Which simulated VSP/VSC pair to run.")(f)


def check_pause_at(steps: int, pause_at: int | None) -> None:
    if pause_at is not None and pause_at > steps:
        raise click.BadParameter(f"{pause_at} is past --steps {steps}",
                                 param_hint="'--pause-at'")


@main.command()
@scenario_options
def run(scenario: str, seed: int, steps: int, pause_at: int | None) -> None:
    """Run a simulated scenario and print what it did."""
    from vmbtool.tools import run_scenario

    check_pause_at(steps, pause_at)
    sim = run_scenario(scenario, seed, steps, pause_at)
    for line in sim.describe():
        click.echo(line)
    last = sim.transcript[-1] if sim.transcript else "-"
    click.echo(f"  {len(sim.transcript)} events; last: {last}")


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
    from vmbtool.blob import write_atomic
    from vmbtool.snapshot import save_blob
    from vmbtool.tools import read_key, run_scenario

    if output == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write a binary blob to a terminal")
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
    sim = run_scenario(scenario, seed, steps, pause_at)
    data = save_blob(sim, chunk_size=chunk_size, level=None if no_compress else level, key=key,
                     note=note)
    write_atomic(output, data)
    if output != "-":
        click.echo(f"saved {scenario} seed {seed} at step {steps}: {len(sim.servers)} "
                   f"channels, {len(data)} bytes -> {output}", err=True)


def load_doc(blob_path: str, key: bytes | None, with_data: bool) -> dict:
    from vmbtool import jsonview
    from vmbtool.blob import load_blob

    return jsonview.decode(load_blob(blob_path, key), with_data=with_data)


@main.command()
@click.argument("blob")
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@click.option("--packets", is_flag=True, help="List every packet object in use.")
@click.option("--ring", is_flag=True, help="Ring control fields.")
@click.option("--gpadls", is_flag=True, help="List the GPADLs.")
@click.option("--hexdump", is_flag=True, help="Hex dump of each ring's unread bytes.")
@click.option("--filter", "filter_expr", metavar="EXPR",
              help="channel=N, txid=N, state=backlog|in-ring|awaiting-completion, type=T; "
                   "comma-separated.")
@key_option
def inspect(blob: str, as_json: bool, packets: bool, ring: bool, gpadls: bool, hexdump: bool,
            filter_expr: str | None, key_file: str | None) -> None:
    """Summarise a blob: version, channels, rings, GPADLs, packets by state."""
    from vmbtool import report
    from vmbtool.blob import FORMAT_MAJOR
    from vmbtool.errors import BlobError
    from vmbtool.tools import header_info, read_key

    flt = report.parse_filter(filter_expr)
    key = read_key(key_file)
    info = header_info(blob) if blob != "-" else None
    if info is not None and info["major"] != FORMAT_MAJOR:
        if as_json:
            emit_json({"format": {"major": info["major"], "minor": info["minor"]},
                       "decoded": False})
        else:
            report.newer_version_note(info, sys.stdout)
        raise BlobError("header.format_major", f"format {info['major']}.{info['minor']} "
                        f"is not readable by this vmbtool (format {info['reads']})")
    if not as_json:
        report.stream_summary(blob, key, sys.stdout, packets=packets, rings=ring,
                              gpadls=gpadls, hexdump_rings=hexdump, flt=flt)
        return
    doc = load_doc(blob, key, with_data=hexdump)
    if flt:
        for index, ch in enumerate(doc["channels"]):
            ch["packets"] = [p for p in ch["packets"] if report.packet_matches(index, p, flt)]
    emit_json(doc)


@main.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.option("--ignore", multiple=True, metavar="PATH",
              help="Field path (or glob) to ignore; header.created_ns always is.")
@key_option
def diff(a: str, b: str, as_json: bool, ignore: tuple[str, ...], key_file: str | None) -> None:
    """Semantic diff by field path; exit 0 when equal, 1 when they differ, 2 when A or
    B cannot be read or is not a valid blob."""
    from vmbtool.diff import DEFAULT_IGNORES, read_side
    from vmbtool.diff import diff as semantic_diff
    from vmbtool.tools import read_key

    key = read_key(key_file)
    doc_a, doc_b = (read_side(side, path, lambda p: load_doc(p, key, True))
                    for side, path in (("A", a), ("B", b)))
    changes = semantic_diff(doc_a, doc_b, DEFAULT_IGNORES + tuple(ignore))
    if as_json:
        emit_json({"equal": not changes, "changes": [
            {"path": c.path, "old": None if c.old is not None and str(c.old) == "(absent)"
             else _jsonable(c.old), "new": _jsonable(c.new)} for c in changes]})
    else:
        for change in changes:
            click.echo(str(change))
        click.echo("equal" if not changes else f"{len(changes)} differences", err=True)
    sys.exit(1 if changes else 0)


def _jsonable(value: Any) -> Any:
    from vmbtool.diff import MISSING

    return None if value is MISSING else value


@main.command()
@click.argument("blobs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("-j", "--jobs", type=click.IntRange(1), metavar="N",
              help="Worker processes for several blobs (default: every core).")
@key_option
def validate(blobs: tuple[str, ...], as_json: bool, jobs: int | None,
             key_file: str | None) -> None:
    """Check grammar, checksums, version, signature and invariants of each blob
    (a directory stands for its *.vmb files)."""
    from vmbtool.tools import expand_paths, read_key, validate_files

    key = read_key(key_file)
    paths = expand_paths(list(blobs))
    if not paths:
        raise click.UsageError("no blobs to validate")
    if sys.stderr.isatty() and len(paths) > 1 and not as_json:
        with click.progressbar(length=len(paths), label="validating",
                               file=sys.stderr) as bar:
            verdicts = validate_files(paths, key, jobs, done=lambda _verdict: bar.update(1))
    else:  # no bar (nor its module's import)
        verdicts = validate_files(paths, key, jobs)
    bad = sum(not v.valid for v in verdicts)
    if as_json:
        emit_json({"valid": not bad, "blobs": [v.as_json() for v in verdicts],
                   "summary": {"blobs": len(verdicts), "valid": len(verdicts) - bad,
                               "invalid": bad}})
    else:
        for v in verdicts:
            click.echo(v.line() if v.valid else colour(v.line(), fg="red"))
        click.echo(f"{len(verdicts) - bad} valid, {bad} invalid", err=True)
    sys.exit(1 if bad else 0)


@main.command()
@click.argument("blob")
@click.option("--run-steps", type=click.IntRange(0, 10_000_000), default=50,
              show_default=True, help="Steps to run after the restore.")
@click.option("--resave", metavar="FILE", help="Save the restored channels' state here.")
@click.option("--level", type=click.IntRange(1, 19), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@key_option
def restore(blob: str, run_steps: int, resave: str | None, level: int, as_json: bool,
            key_file: str | None) -> None:
    """Restore into fresh channels, start them, run N steps and report."""
    from vmbtool.blob import write_atomic
    from vmbtool.snapshot import save_blob
    from vmbtool.tools import read_key, restore_and_run

    key = read_key(key_file)
    scenario, rep = restore_and_run(blob, run_steps, key)
    if resave:
        write_atomic(resave, save_blob(scenario, level=level, key=key))
        rep["resaved"] = resave
    if as_json:
        emit_json(rep)
        return
    r = rep["restored"]
    click.echo(f"restored {rep['scenario']} seed {rep['seed']} at step "
               f"{rep['restored_at_step']}: {r['channels']} channels, {r['packets']} packets "
               f"({r['backlog']} in the backlog), {r['pending_incoming']} pending incoming")
    done = rep["completed_transactions"]
    shown = ", ".join(f"{c['channel']}:{c['transaction_id']}" for c in done[:20])
    click.echo(f"ran {run_steps} steps: {len(done)} restored transactions completed"
               f"{' (' + shown + (' …' if len(done) > 20 else '') + ')' if done else ''}")
    click.echo(f"backlog {'drained' if rep['backlog_drained'] else 'NOT drained'}; "
               f"{rep['backlog_now']} packets in the backlog now")
    if resave:
        click.echo(f"resaved -> {resave}")


@main.command()
@click.argument("blob")
@click.option("-o", "--output", default="-", show_default=True)
@key_option
def decode(blob: str, output: str, key_file: str | None) -> None:
    """The whole blob as JSON."""
    import json

    from vmbtool.blob import write_atomic
    from vmbtool.tools import read_key

    text = json.dumps(load_doc(blob, read_key(key_file), True), indent=1) + "\n"
    if output == "-":
        click.echo(text, nl=False)
    else:
        write_atomic(output, text.encode())


@main.command()
@click.argument("json_file", metavar="JSON")
@click.option("-o", "--output", required=True, help="Blob file to write, or - for stdout.")
@key_option
def encode(json_file: str, output: str, key_file: str | None) -> None:
    """A blob from decode's JSON (byte-identical to the decoded blob)."""
    from vmbtool import jsonview
    from vmbtool.blob import write_atomic
    from vmbtool.tools import read_key

    doc = jsonview.read_document(json_file)
    write_atomic(output, jsonview.encode(doc, read_key(key_file)))


@main.command()
@click.argument("blob")
@click.option("-o", "--output", required=True, help="Blob file to write, or - for stdout.")
@click.option("--to", "to", metavar="VERSION", help="Target format (default: the newest).")
@click.option("--allow-loss", is_flag=True,
              help="Going down, drop optional information the target has no place for.")
@key_option
def upgrade(blob: str, output: str, to: str | None, allow_loss: bool,
            key_file: str | None) -> None:
    """Rewrite a blob in a newer (or, without loss, older) format version."""
    from vmbtool.blob import FORMAT_MAJOR, FORMAT_MINOR, write_atomic
    from vmbtool.errors import VmbtoolError
    from vmbtool.tools import read_key
    from vmbtool.upgrade import parse_version, upgrade_blob

    try:
        target = parse_version(to) if to else (FORMAT_MAJOR, FORMAT_MINOR)
    except VmbtoolError as exc:
        raise click.BadParameter(exc.why, param_hint="'--to'") from None
    result = upgrade_blob(blob, read_key(key_file), target, allow_loss)
    write_atomic(output, result.data)
    dropped = f"; dropped {', '.join(result.dropped)}" if result.dropped else ""
    click.echo(f"format {result.source_version} -> {result.target_version}: {result.chunks} "
               f"chunks, {len(result.data)} bytes -> {output}{dropped}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help="The machine-readable description (what formats/schemas/*.json hold).")
@click.option("--as-of", "as_of", metavar="VERSION",
              help="Describe an earlier minor version (e.g. 1.0) of the current major.")
def schema(as_json: bool, as_of: str | None) -> None:
    """Describe the blob format, derived from the grammars."""
    from vmbtool.schema import VERSION, describe_format, render_text, to_json

    if as_of is not None and not VERSION.match(as_of):
        raise click.BadParameter(f"{as_of!r} is not <major>.<minor>", param_hint="'--as-of'")
    description = describe_format(as_of)
    if as_json:
        click.echo(to_json(description), nl=False)
        return
    for line in render_text(description):
        click.echo(line)


@main.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True)
@click.option("--reverse", is_flag=True,
              help="Can OLD read blobs NEW writes? (default: can NEW read OLD's?)")
def compat(old: str, new: str, as_json: bool, reverse: bool) -> None:
    """Can NEW read blobs OLD wrote? OLD and NEW are schema JSON files, a frozen version
    (1.0) or `current`. Exit 0 compatible, 1 not."""
    from vmbtool.compat import compare
    from vmbtool.schema import load

    report = compare(load(old), load(new), reverse=reverse)
    if as_json:
        emit_json(report.as_json())
    else:
        for finding in report.findings:
            click.echo(colour(finding.line(), fg="red"))
        for note in report.notes:
            click.echo(f"note: {note.line()}")
        verdict = ("compatible" if report.compatible else
                   f"not compatible: {len(report.findings)} findings")
        click.echo(f"{report.question} {verdict}", err=True)
    sys.exit(0 if report.compatible else 1)
