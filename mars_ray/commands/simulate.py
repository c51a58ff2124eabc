"""``mars-ray simulate``."""

from __future__ import annotations

import click


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
def simulate(config: str) -> None:
    """Run the simulation described by CONFIG."""
    raise click.ClickException("not wired yet")
