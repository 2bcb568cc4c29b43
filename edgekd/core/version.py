"""The edgekd version, written into every document it makes (pyproject.toml reads it from here)."""
__version__ = "0.1.0"
