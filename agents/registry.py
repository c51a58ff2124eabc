"""Agent kinds by the name a config uses for them (``agents[].kind``)."""

from __future__ import annotations

from typing import Any

from agents.lmm import LMMBackground
from agents.market_maker import MarketMakers
from agents.meta_order import MetaOrderTraders
from agents.momentum import MomentumTraders
from agents.noise import NoiseTraders
from agents.rl_policy import RLPolicyAgents
from agents.twap import TwapExecutors
from agents.value import ValueTraders

# kind -> class: an AgentPopulation (one book), or a book-spanning kind (``spans_books``)
AGENT_KINDS: dict[str, Any] = {
    cls.kind: cls
    for cls in (
        NoiseTraders,
        MarketMakers,
        MomentumTraders,
        ValueTraders,
        TwapExecutors,
        MetaOrderTraders,
        LMMBackground,
        RLPolicyAgents,
    )
}
