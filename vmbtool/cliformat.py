"""The commands about the blob format itself, not about a blob: `schema` describes it,
`compat` tells whether one version of it reads blobs another wrote. vmbtool/cli.py adds
them to the group."""

from __future__ import annotations

import sys

import click

from vmbtool.clikit import colour, emit_json


@click.command()
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


@click.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Machine output (see README schema).")
@click.option("--reverse", is_flag=True,
              help="Can OLD read blobs NEW writes? (default: can NEW read OLD's?)")
def compat(old: str, new: str, as_json: bool, reverse: bool) -> None:
    """Can NEW read blobs OLD wrote? OLD and NEW are schema JSON files, a frozen version
    (1.0) or `current`. Exit 0 compatible, 1 not."""
    from vmbtool.compat import compare
    from vmbtool.schema import load
    from vmbtool.text import escape, plural

    report = compare(load(old), load(new), reverse=reverse)
    if as_json:
        emit_json(report.as_json())
    else:
        for finding in report.findings:
            click.echo(colour(escape(finding.line()), fg="red"))
        for note in report.notes:
            click.echo(f"note: {escape(note.line())}")
        verdict = ("compatible" if report.compatible else
                   f"not compatible: {plural(len(report.findings), 'finding')}")
        click.echo(f"{escape(report.question)} {verdict}", err=True)
    sys.exit(0 if report.compatible else 1)
