"""Matching-engine throughput: replay a LOBSTER message file through the OrderBook.

    python benchmarks/matching.py --messages FILE [--json OUT] [--repeat N] [--gc-off] [--profile]

Loading is not timed. Each repeat replays every message into a fresh book on one
core with the same replay code as ``mars-ray data check-lobster``
(``LobsterReplay``), minus the orderbook comparisons; the best repeat is
reported as {"messages", "seconds", "msgs_per_s"}. By default the book is in
continuous trading, so every submission pays the crossing check of a live
engine; ``--no-match`` runs it exactly as the check does (orders rest as given).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path

from mars_ray.data.lobster import Messages, data_root, read_message_columns
from mars_ray.data.lobster_check import LobsterReplay

DEFAULT_MESSAGES = "lobster/GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"


def run_once(msgs: Messages, match: bool = True, gc_off: bool = False) -> float:
    """Seconds to replay all of ``msgs`` into a fresh book (the numpy -> list step included)."""
    replay = LobsterReplay(match=match)
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        replay.replay(msgs)
        return time.perf_counter() - start
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        type=Path,
        default=None,
        help=f"LOBSTER message file (default: {DEFAULT_MESSAGES} in the shared data)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is reported")
    parser.add_argument(
        "--no-match",
        action="store_true",
        help="run the book as the check does (call phase: orders rest without the crossing check)",
    )
    parser.add_argument("--gc-off", action="store_true", help="pause the garbage collector")
    parser.add_argument("--profile", action="store_true", help="cProfile one extra replay")
    args = parser.parse_args(argv)
    path = args.messages or data_root() / DEFAULT_MESSAGES
    if not path.is_file():
        print(f"error: message file {path} not found", file=sys.stderr)
        return 2
    msgs = read_message_columns(path)
    n = len(msgs)
    times = [run_once(msgs, not args.no_match, args.gc_off) for _ in range(max(1, args.repeat))]
    best = min(times)
    result = {"messages": n, "seconds": best, "msgs_per_s": n / best}
    print(f"{'file':<12} {path.name}")
    print(f"{'messages':<12} {n:,}")
    print(f"{'repeats':<12} {len(times)} ({', '.join(f'{t:.3f}' for t in times)} s)")
    print(f"{'best':<12} {best:.3f} s")
    print(f"{'msgs/s':<12} {n / best:,.0f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.profile:
        profiler = cProfile.Profile()
        replay = LobsterReplay(match=not args.no_match)
        profiler.enable()
        replay.replay(msgs)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
