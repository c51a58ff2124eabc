"""Ray Serve's throughput-optimised request path, for every Ray this project starts.

Ray 2.55+ ships a faster Serve data plane behind ``RAY_SERVE_THROUGHPUT_OPTIMIZED``
(gRPC between handles and replicas, user code on the replica's own event loop,
buffered request logs). On the 2-core machine, run back to back with and without
it, ``benchmarks/serve_load.py`` went from 1,383 / 1,229 to 2,266 / 2,041 orders/s
batched and from 539 / 421 to 786 / 643 unbatched. It also moves handle routers
onto the caller's event loop, which breaks handles called from threads (the
trajectory API runs simulations in worker threads), so the router keeps its own
loop.

The variables are read when Ray's processes import Serve, so they must be set
before ``ray.init`` starts a local Ray, or in the environment of ``ray start`` /
``serve run`` / the RayService pods for a cluster. A value already set wins.
"""

from __future__ import annotations

import os

FAST_PATH_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}


def enable_fast_path() -> None:
    """Set the variables in this process (and so in the Ray it starts) unless already set."""
    for name, value in FAST_PATH_ENV.items():
        os.environ.setdefault(name, value)
