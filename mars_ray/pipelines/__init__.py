"""Pipelines that run simulations to produce data: the LMM's training corpus."""
