"""SIGINT and SIGTERM as KeyboardInterrupt while a long-running command waits.

A shell script's background job (``mars-ray serve &``) inherits SIGINT ignored, so
``kill -INT`` did nothing and the server ran on. SIGTERM, which process managers send,
already unwound the command (Ray's driver turns it into ``sys.exit(15)``), but skipped
its Ctrl-C path and exited 15. Within ``stop_on_signals`` both take that path: the
command says it is stopping, shuts Serve and Ray down and exits 0.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt (main thread only)."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
