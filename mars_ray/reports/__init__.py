"""Reports on simulation runs: the run plot and realism against real days."""
