"""Ray Serve: the LMM as a batched deployment, and an HTTP API for trajectories."""
