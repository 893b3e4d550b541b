"""Timing by turns: every contender is timed once per round, round after round, so that load
on the machine hits them all alike; the figure is each one's median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def take_turns(
    contenders: dict[str, Callable[[], object]],
    runs: int,
    warmup: int = 0,
    repeat: int = 1,
    before: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median seconds of one call of each contender over ``runs`` rounds, after ``warmup``
    untimed rounds. A timed run makes ``repeat`` calls (for calls too short to time one by one)
    and ``before()``, when given, runs untimed ahead of each."""
    for _ in range(warmup):
        for run in contenders.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            if before is not None:
                before()
            start = time.perf_counter()
            for _ in range(repeat):
                run()
            times[name].append((time.perf_counter() - start) / repeat)
    return {name: statistics.median(values) for name, values in times.items()}
