"""``mars-ray report ...``: reports on simulation runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import numpy as np

    from mars_ray.reports.realism import Run, Source


def reference_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--reference",
        "reference_dir",
        required=True,
        metavar="LOBSTER_DIR",
        type=click.Path(path_type=Path),
        help=f"Folder of LOBSTER file pairs: {what}.",
    )


TICKER_OPTION = click.option(
    "--ticker", metavar="TICKER", help="Reference ticker, when LOBSTER_DIR holds several."
)


@click.group()
def report() -> None:
    """Compare simulation runs with real data."""


@report.command("realism")
@click.argument("run_dir", type=click.Path(path_type=Path))
@reference_option("the real day(s) to compare with")
@click.option(
    "--baseline",
    "baseline_dir",
    metavar="BASELINE_RUN_DIR",
    type=click.Path(path_type=Path),
    help="An agent-based run to compare the same way.",
)
@click.option(
    "--instrument", metavar="NAME", help="Run instrument to compare (default: the run's first)."
)
@TICKER_OPTION
@click.option(
    "--json",
    "json_out",
    metavar="OUT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the distances as JSON to this file.",
)
@click.option(
    "--plot",
    "plot_out",
    metavar="PNG",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG: one panel per metric, the three distributions overlaid.",
)
@click.option(
    "--skip-bad-rows",
    is_flag=True,
    help="Skip malformed rows of the LOBSTER files (counted) instead of stopping.",
)
def realism(
    run_dir: Path,
    reference_dir: Path,
    baseline_dir: Path | None,
    instrument: str | None,
    ticker: str | None,
    json_out: Path | None,
    plot_out: Path | None,
    skip_bad_rows: bool,
) -> None:
    """How close the order flow of RUN_DIR is to a real LOBSTER day, beside a baseline run.

    Every source is turned into orders the way the LMM corpus is (LOBSTER
    messages and top-of-book rows through derive_orders), cut to what a 1-level
    file shows, over continuous trading only. Prints one row per metric with the
    distance of the run (LMM) and of the baseline to the real day, and which is
    closer; --json writes {"metrics": {name: {"lmm": d, "baseline": d}},
    "sources": ..., "notes": [...]} (null: no samples on a side).
    """
    from mars_ray.reports import lob_suite as ls
    from mars_ray.reports import realism as rl

    try:
        run = rl.read_run(run_dir)
        base = rl.read_run(baseline_dir) if baseline_dir is not None else None
        name = instrument if instrument is not None else run.instruments[0]
        if name not in run.instruments:
            raise rl.RealismError(
                f"instrument {name!r} not in run {str(run_dir)!r}; it has {list(run.instruments)}"
            )
        base_name = name
        if base is not None and name not in base.instruments and instrument is None:
            # the default instrument falls back to the baseline's first when the runs name
            # theirs differently; an explicit --instrument must be in both
            base_name = base.instruments[0]
        pairs = rl.reference_pairs(reference_dir, ticker)
        sources: dict[str, rl.Source] = {"reference": rl.lobster_source(pairs, skip_bad_rows)}
        sources["lmm"] = rl.run_source(run, name)
        if base is not None:
            sources["baseline"] = rl.run_source(base, base_name)
    except rl.RealismError as exc:
        raise click.ClickException(str(exc)) from None
    for label, src in sources.items():
        if not src.info.get("orders"):
            where = src.info.get("run") or ", ".join(src.info.get("files", []))
            raise click.ClickException(
                f"{label} ({where}) has no orders in continuous trading "
                f"{'-'.join(src.info.get('window', []))}"
            )

    baseline = sources.get("baseline")
    metrics = rl.compare(
        sources["reference"].samples,
        sources["lmm"].samples,
        baseline.samples if baseline is not None else None,
    )
    notes = list(rl.NOTES) + rl.empty_metrics(sources)
    if baseline is None:
        notes.append("no --baseline given: baseline distances are null")
    elif base_name != name:
        notes.append(f"the baseline has no {name!r}: its first instrument {base_name!r} is used")

    try:
        suite, samples, levels = _lob_bench(
            pairs, run, name, base, base_name, skip_bad_rows=skip_bad_rows
        )
    except (rl.RealismError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    notes.append(
        f"LOB-Bench scores at the reference's depth ({levels} level"
        f"{'' if levels == 1 else 's'}); the floor is the reference's first half of "
        "20-minute windows against its second half"
    )

    click.echo(_describe(sources))
    click.echo("")
    click.echo(rl.format_table(metrics))
    click.echo("")
    labels = ["lmm", "baseline"] if base is not None else ["lmm"]
    click.echo(f"LOB-Bench scores, {levels} level{'' if levels == 1 else 's'}:")
    click.echo(ls.format_scores(suite, labels))
    click.echo("")
    click.echo(ls.format_facts(suite, labels))
    click.echo("")
    for note in notes:
        click.echo(f"note: {note}")

    if json_out is not None:
        described: dict[str, Any] = dict.fromkeys(rl.SOURCES)
        for label, src in sources.items():
            described[label] = {**src.info, "samples": rl.sample_counts(src.samples)}
        payload = {
            "metrics": metrics,
            "lob_bench": {"levels": levels, **suite},
            "sources": described,
            "notes": notes,
        }
        _write(json_out, lambda p: p.write_text(json.dumps(payload, indent=2) + "\n"))
        click.echo(f"json: {json_out}")
    if plot_out is not None:
        title = f"{run.name}:{name} vs {Path(pairs[0][0]).name.split('_')[0]} (level 1)"
        _write(
            plot_out,
            lambda p: rl.plot_realism(
                {k: v.samples for k, v in sources.items()}, metrics, p, title
            ),
        )
        click.echo(f"plot: {plot_out}")
        from mars_ray.reports.lob_plots import plot_pages

        depth = f"{run.name}:{name}, {levels} level{'' if levels == 1 else 's'}"
        pages: list[Path] = []
        _write(plot_out, lambda p: pages.extend(plot_pages(samples, suite, p, depth)))
        for page in pages:
            click.echo(f"plot: {page}")


def _lob_bench(
    pairs: list[tuple[Path, Path]],
    run: Run,
    name: str,
    base: Run | None,
    base_name: str,
    *,
    skip_bad_rows: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], int]:
    """LOB-Bench's scores of the run and the baseline at the reference's depth, with a floor
    (and each source's pooled samples, for the plots)."""
    from mars_ray.reports import lob_suite as ls
    from mars_ray.reports.realism import REAL_WINDOW

    reference, levels = ls.reference_books(pairs, REAL_WINDOW, skip_bad_rows)
    generated = {"lmm": ls.run_books(run, name, levels)}
    if base is not None:
        generated["baseline"] = ls.run_books(base, base_name, levels)
    result, samples = ls.compare_scores(reference, generated)
    return result, samples, levels


def _describe(sources: dict[str, Source]) -> str:
    """One line per source: where it came from and how many orders it gave."""
    from mars_ray.data.lobster_csv import read_note

    lines = []
    for label, src in sources.items():
        info = src.info
        window = "-".join(info.get("window", []))
        if label == "reference":
            files = info.get("files", [])
            what = ", ".join(Path(f).name for f in files)
            note = read_note(info.get("reads", {}).values())
            if note:
                what += f" ({note})"
        else:
            what = (
                f"{info['run']} ({info['instrument']}, {info['trajectories']} "
                f"trajector{'y' if info['trajectories'] == 1 else 'ies'})"
            )
        lines.append(f"{label:<10} {what}: {info.get('orders', 0):,} orders, {window}")
    return "\n".join(lines)


def _write(path: Path, write: Callable[[Path], object]) -> None:
    """Create the parent folder and write; an OS error becomes a clean click error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


@report.command("lob-bench")
@reference_option("the real day to start from and compare with")
@TICKER_OPTION
@click.option("--windows", default=8, show_default=True, help="Windows of the real day.")
@click.option(
    "--horizon-s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=1.0, max=23_400.0),
    help="Seconds generated after each real start.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--lmm-config",
    default="configs/lmm_realism.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The LMM generator's simulation config (its session and start are replaced).",
)
@click.option(
    "--baseline-config",
    default="configs/agents_realism.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent baseline's simulation config (its session and start are replaced).",
)
@click.option(
    "--json",
    "json_out",
    required=True,
    metavar="OUT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the scores, impact, facts, one-sided rows and message rates here.",
)
@click.option(
    "--plot",
    "plot_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write lob_bench_scores.png, lob_bench_impact.png and lob_bench_facts.png here.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def lob_bench(
    reference_dir: Path,
    ticker: str | None,
    windows: int,
    horizon_s: float,
    seed: int,
    lmm_config: Path,
    baseline_config: Path,
    json_out: Path,
    plot_dir: Path | None,
    quiet: bool,
) -> None:
    """LOB-Bench's protocol: the shipped LMM and the agent baseline, each started from the
    real state at WINDOWS times of a real day, generate the next HORIZON_S seconds; their
    continuations are scored against the real ones, beside a real-against-real floor.

    --json writes {"scores": {NAME: {"lmm": {"l1", "w1", "l1_ci95"}, "baseline", "floor"}},
    "impact": {"lmm", "baseline", "floor"}, "stylized_facts": {FACT: {"real", "lmm",
    "baseline"}}, "one_sided_rows", "messages_per_s", ...} (null: no samples on a side).
    """
    from tqdm import tqdm

    from mars_ray.reports import lob_bench as lb
    from mars_ray.reports import lob_suite as ls
    from mars_ray.reports import realism as rl
    from mars_ray.schema.clock import NS_PER_S
    from mars_ray.schema.validation import ConfigError, read_yaml

    try:
        pairs = rl.reference_pairs(reference_dir, ticker)
        message, orderbook = pairs[0]
        msgs, rows = lb.read_reference(message, orderbook)
        horizon = round(horizon_s * NS_PER_S)
        starts = lb.window_starts(msgs.time_ns, windows, horizon)
        templates = {"lmm": read_yaml(lmm_config), "baseline": read_yaml(baseline_config)}
        protocol = lb.Protocol(message, orderbook, tuple(starts), horizon, seed, templates)
        for g in lb.GENERATORS:  # every window's config is valid before anything runs
            for k in range(len(starts)):
                lb.window_config(protocol, g, k)
        reference = lb.real_continuations(msgs, rows, starts, horizon)
        levels = rows.shape[1] // 4
        bar = tqdm(
            total=len(starts) * len(lb.GENERATORS),
            unit="run",
            disable=quiet,
            desc="lob-bench",
            dynamic_ncols=True,
        )
        with bar:

            def step(done: str) -> None:
                bar.set_postfix_str(done)
                bar.update()

            out, result, samples = lb.run_protocol(protocol, levels, reference, step)
    except (rl.RealismError, ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    notes = list(lb.NOTES)
    if len(pairs) > 1:
        notes.append(f"the reference holds {len(pairs)} days: the first ({message.name}) is used")
    out["protocol"]["levels"] = levels
    out["notes"] = notes
    labels = list(lb.GENERATORS)
    click.echo(f"LOB-Bench protocol, {len(starts)} windows of {horizon_s:g} s, {levels} level(s):")
    click.echo(ls.format_scores(result, labels))
    click.echo("")
    click.echo(ls.format_facts(result, labels))
    _write(json_out, lambda p: p.write_text(json.dumps(out, indent=2) + "\n"))
    click.echo(f"json: {json_out}")
    if plot_dir is not None:
        from mars_ray.reports.lob_plots import plot_pages

        ticker_name = message.name.split("_")[0]
        title = f"{ticker_name}: {len(starts)} windows of {horizon_s:g} s from real states"
        pages: list[Path] = []
        _write(
            plot_dir / "lob_bench.png",
            lambda p: pages.extend(plot_pages(samples, result, p, title)),
        )
        for page in pages:
            click.echo(f"plot: {page}")
