"""Agent kinds by the name a config uses for them (``agents[].kind``)."""

from __future__ import annotations

from typing import Any, TypeVar

_Kind = TypeVar("_Kind")

# kind -> class: an AgentPopulation (one book), or a book-spanning kind (``spans_books``)
AGENT_KINDS: dict[str, Any] = {}


def register(cls: _Kind) -> _Kind:
    AGENT_KINDS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


# Importing the registry registers every built-in kind (the modules import ``register`` above,
# so they must not import each other: whichever is imported first is still half-initialised).
from agents import lmm, market_maker, momentum, noise, twap, value  # noqa: E402, F401
