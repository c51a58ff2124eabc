"""Matching-engine throughput: replay a LOBSTER message file through the OrderBook.

    python benchmarks/matching.py --messages FILE [--json OUT] [--repeat N] [--gc-off] [--profile]
                                  [--engine {reference,fast}]

Loading is not timed. Each repeat replays every message into a fresh book on one
core with the same replay code as ``mars-ray data check-lobster``
(``LobsterReplay``), minus the orderbook comparisons; the best repeat is
reported as {"messages", "seconds", "msgs_per_s"}. By default the book is in
continuous trading, so every submission pays the crossing check of a live
engine; ``--no-match`` runs it exactly as the check does (orders rest as given).

``--engine fast`` times the numba-compiled replay (``mars_ray.exchange.fast_book``,
held identical to ``LobsterReplay`` after every message by tests/test_fast_book.py)
in the same mode instead; one untimed warm-up replay compiles it (or loads the
cached machine code) first, and the result also carries "engine": "fast".
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
from mars_ray.exchange.fast_book import fast_replay

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


def run_once_fast(msgs: Messages, match: bool = True, gc_off: bool = False) -> float:
    """Seconds for one compiled replay of all of ``msgs`` (the column conversion included)."""
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        fast_replay(msgs, match=match)
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
    parser.add_argument(
        "--engine",
        choices=("reference", "fast"),
        default="reference",
        help="reference: LobsterReplay on OrderBook; fast: the numba replay (identical books)",
    )
    args = parser.parse_args(argv)
    if args.profile and args.engine == "fast":
        parser.error("--profile profiles the Python reference engine; compiled code has no frames")
    path = args.messages or data_root() / DEFAULT_MESSAGES
    if not path.is_file():
        print(f"error: message file {path} not found", file=sys.stderr)
        return 2
    msgs = read_message_columns(path)
    n = len(msgs)
    once = run_once
    if args.engine == "fast":
        once = run_once_fast
        once(msgs, not args.no_match)  # compile or load the cache: not timed
    times = [once(msgs, not args.no_match, args.gc_off) for _ in range(max(1, args.repeat))]
    best = min(times)
    result = {"messages": n, "seconds": best, "msgs_per_s": n / best}
    if args.engine == "fast":
        result["engine"] = "fast"
        print(f"{'engine':<12} fast (numba)")
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
