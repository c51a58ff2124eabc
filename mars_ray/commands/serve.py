"""``mars-ray serve [CONFIG]``: the trajectory service on an embedded local Ray (or a cluster)."""

from __future__ import annotations

import time

import click

from mars_ray.commands.signals import stop_on_signals
from mars_ray.schema.validation import ConfigError


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--port", type=click.IntRange(1, 65535), help="HTTP port (default: 8000).")
@click.option("--host", help="HTTP host (default: 127.0.0.1).")
@click.option(
    "--address",
    help="Ray cluster to deploy on (default: RAY_ADDRESS, else an embedded local Ray).",
)
@click.option("--num-cpus", type=click.IntRange(min=1), help="CPUs of the embedded Ray.")
def serve(
    config: str | None,
    port: int | None,
    host: str | None,
    address: str | None,
    num_cpus: int | None,
) -> None:
    """Serve the LMM and the trajectory API over HTTP until Ctrl-C (SIGINT) or SIGTERM.

    CONFIG is configs/serve.yaml (the Serve config file `serve run` takes) or a
    plain ServeSettings file; without it, the shipped model with default limits.
    """
    from mars_ray.sim.ray_runtime import enable_fast_path, ensure_ray

    # Before anything imports Ray Serve: an embedded Ray inherits it (a cluster needs it
    # in the environment of `ray start`).
    enable_fast_path()
    from mars_ray.serve.settings import load_settings

    overrides = {}
    if port is not None:
        overrides["http.port"] = port
    if host is not None:
        overrides["http.host"] = host
    try:
        settings = load_settings(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    import ray
    from ray import serve as ray_serve

    from mars_ray.serve.app import build

    ensure_ray(address, num_cpus)
    http = settings.http
    try:
        ray_serve.start(
            proxy_location="HeadOnly", http_options={"host": http.host, "port": http.port}
        )
        started = time.perf_counter()
        ray_serve.run(build(settings), name=settings.app_name, route_prefix=settings.route_prefix)
        base = f"http://{http.host}:{http.port}{settings.route_prefix.rstrip('/')}"
        click.echo(
            f"serving {settings.app_name} in {time.perf_counter() - started:.1f} s: "
            f"{base}/v1/trajectories (docs: {base}/docs); Ctrl-C stops"
        )
        with stop_on_signals():
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        ray_serve.shutdown()
        ray.shutdown()
