"""Thin click commands over the vmbtool library: parse options, call, print."""

from __future__ import annotations

import click

from vmbtool import __version__

SCENARIO_NAMES = ("storage", "network", "pipe")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmbtool")
def main() -> None:
    """Save, inspect, diff, validate and restore the saved state of VMBus channels."""


@main.command()
@click.option("--scenario", type=click.Choice(SCENARIO_NAMES), default="storage",
              show_default=True, help="Which simulated VSP/VSC pair to run.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=1, show_default=True)
@click.option("--steps", type=click.IntRange(0, 10_000_000), default=100, show_default=True)
@click.option("--pause-at", type=click.IntRange(0), default=None,
              help="Pause and start the channels at this step (a save point minus the save).")
def run(scenario: str, seed: int, steps: int, pause_at: int | None) -> None:
    """Run a simulated scenario and print what it did."""
    from vmbtool.scenarios import SCENARIOS

    sim = SCENARIOS[scenario].create(seed)
    sim.run(steps, pause_at=pause_at)
    for line in sim.describe():
        click.echo(line)
    last = sim.transcript[-1] if sim.transcript else "-"
    click.echo(f"  {len(sim.transcript)} events; last: {last}")
