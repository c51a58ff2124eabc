"""mars-ray: a financial market simulation engine with a generative Large Market Model, on Ray."""

__version__ = "0.1.0"
