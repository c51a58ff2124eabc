"""``mars-ray data ...``: data tools."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Ingest, check and convert order-level data."""
