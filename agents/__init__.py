"""Agents that act in the market: populations of background, execution and strategy agents."""
