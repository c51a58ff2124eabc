"""``mars-ray data ...``: data tools."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def data() -> None:
    """Ingest, check and convert order-level data."""


@data.command("check-lobster")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("orderbook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the result as JSON to this file.",
)
def check_lobster(message: Path, orderbook: Path, json_out: Path | None) -> None:
    """Replay a LOBSTER MESSAGE file and compare the rebuilt book with every ORDERBOOK row.

    Prints a table and the JSON {"messages", "rows", "level1_match",
    "all_levels_match", "queue_priority_agreement"} (fractions of rows; the last
    is the share of visible executions that hit the head of their level's queue).
    Exits non-zero when a file with 5 or more levels agrees at level 1 on fewer
    than 99.9% of rows or at all levels on fewer than 97%.
    """
    # Imported here so `mars-ray --help` stays fast.
    from mars_ray.data.lobster import LobsterFormatError
    from mars_ray.data.lobster_check import check_files

    try:
        result = check_files(message, orderbook)
    except LobsterFormatError as exc:
        raise click.ClickException(str(exc)) from None
    payload = json.dumps(result.summary(), indent=2)
    click.echo(result.table())
    click.echo(payload)
    if json_out is not None:
        try:
            json_out.write_text(payload + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write {json_out}: {exc.strerror}") from None
    failures = result.failures()
    if failures:
        raise click.ClickException("check failed: " + "; ".join(failures))
