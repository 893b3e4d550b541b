"""The terminal the commands print to."""

from __future__ import annotations

import shutil


def terminal_width() -> int:
    """Columns to wrap output at: the terminal's, kept between 60 and 100."""
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
