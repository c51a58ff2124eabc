"""The ``mars-ray`` command. Each sub-command lives in its own module under mars_ray.commands."""

from __future__ import annotations

import click

from mars_ray.commands.data import data
from mars_ray.commands.report import report
from mars_ray.commands.rl import rl
from mars_ray.commands.serve import serve
from mars_ray.commands.simulate import simulate
from mars_ray.commands.train import fit_decoding, train, train_batch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mars-ray")
def cli() -> None:
    """mars-ray: market simulation with a generative Large Market Model, on Ray."""


cli.add_command(simulate)
cli.add_command(data)
cli.add_command(train)
cli.add_command(train_batch)
cli.add_command(fit_decoding)
cli.add_command(report)
cli.add_command(serve)
cli.add_command(rl)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
