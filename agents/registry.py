"""Agent kinds by the name a config uses for them (``agents[].kind``)."""

from __future__ import annotations

from agents.base import AgentPopulation

AGENT_KINDS: dict[str, type[AgentPopulation]] = {}


def register(cls: type[AgentPopulation]) -> type[AgentPopulation]:
    AGENT_KINDS[cls.kind] = cls
    return cls


# Importing the registry registers every built-in kind (the modules import ``register`` above,
# so they must not import each other: whichever is imported first is still half-initialised).
from agents import market_maker, momentum, noise, twap, value  # noqa: E402, F401
