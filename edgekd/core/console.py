"""The console that reports print to. Torch-free (rich only)."""
from __future__ import annotations

from rich.console import Console

# A CI log or a pipe has no width; rich would assume 80 columns and fold file names. 160 holds
# bench's full table (about 156 columns with the demo bundle's file names): logs are read after
# the fact, and a narrower page would drop columns such as the comparison rows' size ratio.
LOG_WIDTH = 160


def report_console() -> Console:
    """stdout as it is on a terminal; a fixed, wider page in a log or a pipe."""
    screen = Console()
    return screen if screen.is_terminal else Console(width=LOG_WIDTH)
