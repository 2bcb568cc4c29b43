"""The console that reports print to. Torch-free (rich only)."""
from __future__ import annotations

from rich.console import Console

# A CI log or a pipe has no width; rich would assume 80 columns and fold file names.
LOG_WIDTH = 120


def report_console() -> Console:
    """stdout as it is on a terminal; a fixed, wider page in a log or a pipe."""
    screen = Console()
    return screen if screen.is_terminal else Console(width=LOG_WIDTH)
