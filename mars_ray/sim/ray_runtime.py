"""How this project starts or joins Ray: one bootstrap for the simulator and the server.

``ensure_ray`` joins the configured cluster (or the one ``ray job submit`` runs the driver
on, through ``RAY_ADDRESS``) or starts an embedded local Ray. A Ray started here gets
Ray Serve's throughput-optimised request path, since an LMM agent with ``backend: serve``
or ``mars-ray serve`` may run Serve on it:

Ray 2.55+ ships a faster Serve data plane behind ``RAY_SERVE_THROUGHPUT_OPTIMIZED``
(gRPC between handles and replicas, user code on the replica's own event loop,
buffered request logs), worth well over half again the throughput of the Serve load
benchmark (docs/performance.md). It also moves handle routers
onto the caller's event loop, which breaks handles called from threads (the
trajectory API runs simulations in worker threads), so the router keeps its own
loop.

The fast path also serves HTTP from the ingress replica itself ("direct ingress"),
and such a replica keeps serving for ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S``
(30 s by default) when it stops, so that a load balancer in front of a cluster can
route around it. Every Serve shutdown and ``serve.delete`` waited for it, Ctrl-C on
``mars-ray serve`` included. A Ray this project starts has no balancer in front, so it
drains for 2 s (``EMBEDDED_ENV``; in-flight requests are still waited for, up to the
deployment's graceful_shutdown_timeout_s); a cluster keeps what its own environment says.

The variables are read when Ray's processes import Serve, so they must be set
before ``ray.init`` starts a local Ray, or in the environment of ``ray start`` /
``serve run`` / the RayService pods for a cluster. A value already set wins.
"""

from __future__ import annotations

import os

import ray

FAST_PATH_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}
# Only for a Ray started here (a cluster's processes read their own environment).
EMBEDDED_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def enable_fast_path() -> None:
    """Set the variables in this process (and so in the Ray it starts) unless already set."""
    for name, value in {**FAST_PATH_ENV, **EMBEDDED_ENV}.items():
        os.environ.setdefault(name, value)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` (else ``RAY_ADDRESS``), or start an embedded local Ray with
    ``num_cpus`` (default: every core); nothing if this process is already connected."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    enable_fast_path()
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
