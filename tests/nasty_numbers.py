"""Values that break numeric fields, for the fuzz tests of every entrance: non-finite,
huge, tiny, negative, beyond int64, and not numbers at all."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from mars_ray.schema.quantities import MAX_SHARES, MAX_TICKS

# one of each kind, for a sweep over every field
EXTREMES = [math.nan, math.inf, -math.inf, 1e300, -1e300, 1e-300, 0, -1, 2**64, "abc", None]

NASTY = st.one_of(
    st.sampled_from(
        [
            *EXTREMES,
            -0.0,
            0.5,
            2**53 + 1,
            2**63,
            10**30,
            MAX_TICKS,
            MAX_SHARES + 1,
            True,
            "12",
            [],
            {},
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
)


def is_non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
