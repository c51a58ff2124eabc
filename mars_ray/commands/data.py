"""``mars-ray data ...``: data tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import pyarrow as pa


@click.group()
def data() -> None:
    """Ingest, check and convert order-level data."""


SKIP_BAD_ROWS = click.option(
    "--skip-bad-rows",
    is_flag=True,
    help="Skip malformed rows (and their orderbook rows), counted and listed, "
    "instead of stopping at the first.",
)


def _json_option(what: str):
    return click.option(
        "--json",
        "json_out",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help=f"Also write {what} as JSON to this file.",
    )


def _write_json(path: Path | None, payload: str) -> None:
    if path is None:
        return
    try:
        path.write_text(payload + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


@data.command("check-lobster")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("orderbook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option("the result")
@SKIP_BAD_ROWS
def check_lobster(
    message: Path, orderbook: Path, json_out: Path | None, skip_bad_rows: bool
) -> None:
    """Replay a LOBSTER MESSAGE file and compare the rebuilt book with every ORDERBOOK row.

    Prints a table and the JSON {"messages", "rows", "level1_match",
    "all_levels_match", "queue_priority_agreement", "long_decimal_times",
    "skipped_rows", "skipped"} (fractions of rows; queue_priority_agreement is the
    share of visible executions that hit the head of their level's queue; then the
    times rounded to the ns and the bad rows skipped, the first few with file, line,
    column, value and reason). Exits non-zero when a file with 5 or more levels
    agrees at level 1 on fewer than 99.9% of rows or at all levels on fewer than 97%.
    """
    # Imported here so `mars-ray --help` stays fast.
    from mars_ray.data.lobster import LobsterFormatError
    from mars_ray.data.lobster_check import check_files

    try:
        result = check_files(message, orderbook, skip_bad_rows)
    except LobsterFormatError as exc:
        raise click.ClickException(str(exc)) from None
    payload = json.dumps(result.as_json(), indent=2)
    click.echo(result.table())
    click.echo(payload)
    _write_json(json_out, payload)
    failures = result.failures()
    if failures:
        raise click.ClickException("check failed: " + "; ".join(failures))


@data.command("ingest-lobster")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--instrument", help="Instrument name (default: the ticker in the file name).")
@_json_option('{"events", "out", "long_decimal_times", "skipped_rows", "skipped"}')
@SKIP_BAD_ROWS
def ingest_lobster(
    message: Path, out: Path, instrument: str | None, json_out: Path | None, skip_bad_rows: bool
) -> None:
    """Convert a LOBSTER MESSAGE file into an event-schema Parquet file OUT.

    Prints the events written, the times rounded to the ns and the bad rows skipped
    (also in OUT's metadata as mars_ray.read_report).
    """
    import pyarrow.parquet as pq

    from mars_ray.data.lobster import (
        LobsterFormatError,
        messages_to_table,
        read_message_columns,
        ticker_of,
    )
    from mars_ray.schema.events import with_metadata

    try:
        name = instrument if instrument is not None else ticker_of(message)
        msgs = read_message_columns(message, skip_bad_rows=skip_bad_rows)
    except (LobsterFormatError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    table = messages_to_table(msgs, name)
    report = msgs.report.summary()
    meta = {"mars_ray.source": str(message), "mars_ray.read_report": json.dumps(report)}
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(with_metadata(table, meta), out, compression="zstd")
    click.echo(f"{table.num_rows:,} events -> {out}")
    click.echo(msgs.report.text())
    payload = {"events": table.num_rows, "out": str(out), **report}
    _write_json(json_out, json.dumps(payload, indent=2))


@data.command("to-lobster")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--levels", type=click.IntRange(1, 50), default=10, show_default=True)
@click.option(
    "--trajectory",
    type=click.IntRange(min=0),
    help="Write this trajectory only (default: every trajectory of the run).",
)
def to_lobster(run_dir: Path, out_dir: Path, levels: int, trajectory: int | None) -> None:
    """Write a simulated run (the events in RUN_DIR) as LOBSTER message + orderbook files.

    A LOBSTER file pair holds one day of one book: one pair per instrument and trajectory,
    named as LOBSTER names its files (TICKER_DATE_START_END_message_LEVELS.csv). One
    trajectory (a one-trajectory run, or --trajectory K) is written into OUT_DIR; several
    each into their own folder, OUT_DIR/trajectory-K.
    """
    import pyarrow.compute as pc

    from mars_ray.sim.run_files import RunFilesError, read_events, read_manifest

    try:
        date = read_manifest(run_dir)["config"]["session"]["date"]
        where = None if trajectory is None else pc.field("trajectory_id") == trajectory
        events = read_events(run_dir, filter=where)
    except (RunFilesError, KeyError) as exc:
        raise click.ClickException(f"{run_dir}: not a mars-ray simulate output ({exc})") from None
    if events.num_rows == 0:
        which = "" if trajectory is None else f" for trajectory {trajectory}"
        raise click.ClickException(f"no events{which} in {run_dir}")
    trajectories = sorted(set(events["trajectory_id"].to_pylist()))
    for traj in trajectories:
        folder = out_dir if len(trajectories) == 1 else out_dir / f"trajectory-{traj}"
        label = "" if len(trajectories) == 1 else f"trajectory {traj}, "
        one = events.filter(pc.equal(events["trajectory_id"], traj))
        _write_trajectory(one, folder, date, levels, label)


def _write_trajectory(events: pa.Table, out_dir: Path, date: str, levels: int, label: str) -> None:
    """One trajectory's books as LOBSTER file pairs in ``out_dir``."""
    import pyarrow.compute as pc

    from mars_ray.data.lobster_write import write_lobster

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(set(events["instrument"].to_pylist())):
        book = events.filter(pc.equal(events["instrument"], name)).sort_by("seq")
        times = book["time_ns"].to_numpy()
        start, end = int(times[0] // 1_000_000), int(times[-1] // 1_000_000) + 1
        stem = f"{name}_{date}_{start}_{end}"
        message = out_dir / f"{stem}_message_{levels}.csv"
        orderbook = out_dir / f"{stem}_orderbook_{levels}.csv"
        msgs, _, stats = write_lobster(book, message, orderbook, levels)
        skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items())) or "none"
        click.echo(
            f"{label}{name}: {len(msgs):,} messages -> {message} (not expressible: {skipped})"
        )


@data.command("build-corpus")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: the config's out).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_corpus(config: Path, out_dir: Path | None, quiet: bool) -> None:
    """Build the LMM's order corpus described by the YAML file CONFIG.

    Reads every LOBSTER file pair of the configured folder and simulates the
    configured seeds (Ray tasks, one per seed, on an embedded local Ray unless
    the simulation config names a cluster), then writes OUT/corpus.parquet (one
    row per order) and OUT/corpus.json (orders and units per source and split).
    """
    from tqdm import tqdm

    from mars_ray.data.lobster_csv import read_note
    from mars_ray.lmm.corpus import SOURCES, SPLITS, CorpusError
    from mars_ray.pipelines.corpus import build_corpus as build
    from mars_ray.pipelines.corpus import load_corpus_config
    from mars_ray.schema.validation import ConfigError

    try:
        cfg = load_corpus_config(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    bars: list[tqdm] = []  # made on the first finished unit, so errors print cleanly

    def progress(done: int, total: int, label: str) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, unit="unit", disable=quiet, desc=cfg.name, dynamic_ncols=True)
            )
        bars[0].n = done
        bars[0].set_postfix_str(label, refresh=False)
        bars[0].refresh()

    try:
        result = build(cfg, out_dir, progress=progress)
    except (CorpusError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    counts = result.counts
    rows = [("source", "split", "units", "orders")]
    for source in SOURCES:
        for split in SPLITS:
            cell = counts["sources"].get(source, {}).get(split)
            if cell:
                rows.append((source, split, f"{cell['units']:,}", f"{cell['orders']:,}"))
    rows.append(("all", "", f"{counts['units']:,}", f"{counts['orders']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    click.echo("")
    for k, row in enumerate(rows):
        click.echo(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0 or k == len(rows) - 2:
            click.echo("  ".join("-" * w for w in widths))
    for message, read in counts.get("lobster_reads", {}).items():
        note = read_note([read])
        if note:
            click.echo(f"{Path(message).name}: {note}")
    size_mb = result.paths["corpus"].stat().st_size / 1e6
    click.echo(f"\nbuilt in {result.seconds:,.1f} s; {size_mb:,.1f} MB")
    for kind, path in result.paths.items():
        click.echo(f"{kind:>7}: {path}")
