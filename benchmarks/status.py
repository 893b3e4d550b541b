"""The issue's performance targets, each judged from the benchmark's results.

:func:`status_rows` runs every function of :data:`TARGETS` on the results ``run.py`` collects
and :func:`status_table` writes them as a markdown table. A new target is one more small
function appended to :data:`TARGETS`; one whose figure comes from elsewhere (the GPU report)
says where. The results are a dict (any part may be missing: its targets read "not measured"):

* ``cap``: seconds allowed to the naive side;
* ``derivation``: rows ``{steps, input, hidden, ours, naive}`` (naive None: past the cap);
* ``linear``: ``{t100, t200}``, derive + render seconds at T = 100 and 200;
* ``commands``: ``{"derive --steps 3": seconds, ...}``, cold-start wall time;
* ``source_size``: ``{cell: {steps: bytes}}`` of the loop form's source;
* ``scalar_view``: ``{backend: seconds}``, None where the scalar view is not available and
  ``inf`` past its cap;
* ``modules``: rows ``{cell, steps, batch, input, hidden, dtype, ours, torch, matmul, flops}``
  with ``runs`` (runs per median) and ``threads``;
* ``memory``: rows ``{cell, steps, batch, input, hidden, dtype, generated, torch,
  generated_tensors, torch_tensors}``;
* ``gpu_report``: the GPU benchmark's markdown, relative to the repository (default
  :data:`GPU_REPORT`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FOUNDING = (3, 1, 1, 2)
MEDIUM = (100, 32, 64, 128)
LARGE = (500, 16, 32, 64)
CELLS = ("rnn", "lstm", "gru")
ROOT = Path(__file__).resolve().parent.parent
GPU_REPORT = "docs/benchmarks-gpu.md"
"""The GPU benchmark's report (benchmarks/gpu.py writes it), relative to the repository."""
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Status:
    """One target: what it asks, the measured figure, and whether it is met (None: not judged)."""

    target: str
    figure: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "not met", None: "—"}[self.met]


def status_table(rows: list[Status]) -> list[str]:
    """Markdown lines of the status table: target, figure, met / not met / — (not judged)."""
    lines = ["| target | measured | status |", "| --- | --- | --- |"]
    for row in rows:
        cells = (row.target, row.figure, row.verdict)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def _missing(target: str) -> Status:
    return Status(target, "not measured in this run", None)


def _seconds(value: float | None, cap: float | None = None) -> str:
    if value is None:
        return f"> {cap:g} s, the cap" if cap is not None else "not available"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _derivation_row(results: dict, steps: int, n_in: int, n_h: int) -> dict | None:
    for row in results.get("derivation", []):
        if (row["steps"], row["input"], row["hidden"]) == (steps, n_in, n_h):
            return row
    return None


def linear_in_steps(results: dict) -> Status:
    target = "derivation + codegen time(T=200) / time(T=100) ≤ 2.2"
    if "linear" not in results:
        return _missing(target)
    ratio = results["linear"]["t200"] / results["linear"]["t100"]
    return Status(target, f"{ratio:.2f}", ratio <= 2.2)


def faster_than_naive(results: dict) -> Status:
    target = "≥ 100× faster than naive SymPy diff at (T=10, I=1, H=2)"
    row = _derivation_row(results, 10, 1, 2)
    if row is None:
        return _missing(target)
    if row["naive"] is None:  # the speed-up is more than the cap allows to measure
        bound = results["cap"] / row["ours"]
        figure = f"> {bound:.0f}× (naive past the {results['cap']:g} s cap)"
        return Status(target, figure, bound >= 100)
    speedup = row["naive"] / row["ours"]
    return Status(target, f"{speedup:.0f}×", speedup >= 100)


def large_derivation(results: dict) -> Status:
    target = "(T=8, I=2, H=4) derived under 1 s (naive past the cap)"
    row = _derivation_row(results, 8, 2, 4)
    if row is None:
        return _missing(target)
    naive = _seconds(row["naive"], results.get("cap"))
    return Status(target, f"{row['ours']:.3f} s; naive {naive}", row["ours"] < 1.0)


def _command(results: dict, command: str, target: str, limit: float) -> Status:
    seconds = results.get("commands", {}).get(command)
    if seconds is None:
        return _missing(target)
    return Status(target, f"{seconds:.2f} s (`symbptt {command}`)", seconds < limit)


def derive_t1000(results: dict) -> Status:
    return _command(
        results, "derive --steps 1000", "`symbptt derive` T=1000 (loop form) under 5 s", 5.0
    )


def derive_cold_start(results: dict) -> Status:
    return _command(
        results,
        "derive --steps 3",
        "`symbptt derive --steps 3` under 3 s from a cold start, with verification",
        3.0,
    )


def source_size(results: dict) -> Status:
    target = "loop form source size does not grow with T (T=100 and T=1000)"
    sizes = results.get("source_size")
    if not sizes:
        return _missing(target)
    parts, met = [], True
    for cell, by_steps in sizes.items():
        small, large = by_steps[100], by_steps[1000]
        parts.append(f"{cell} {small:,} / {large:,} B")
        met = met and large - small <= 0.01 * small  # only the digits of T may change
    return Status(target, "; ".join(parts), met)


def scalar_view_cse(results: dict) -> Status:
    target = "scalar view with CSE (T=50, I=4, H=8) under 10 s"
    if "scalar_view" not in results:
        return _missing(target)
    seconds = results["scalar_view"].get("sympy")
    if seconds is None:
        return Status(target, "not available (symbptt.scalar.view missing or failed)", None)
    if math.isinf(seconds):
        return Status(target, "past its cap", False)
    return Status(target, f"{seconds:.2f} s (SymPy backend)", seconds < 10)


def symengine_speedup(results: dict) -> Status:
    target = "SymEngine backend ≥ 10× faster than SymPy for that scalar view"
    views = results.get("scalar_view")
    if views is None:
        return _missing(target)
    sympy_s, symengine_s = views.get("sympy"), views.get("symengine")
    if sympy_s is None or symengine_s is None:
        return Status(target, "not available (symbptt.scalar.view missing or failed)", None)
    if math.isinf(symengine_s):
        return Status(target, "SymEngine past its cap", False)
    speedup = sympy_s / symengine_s
    prefix = "> " if math.isinf(sympy_s) else ""
    return Status(target, f"{prefix}{speedup:.1f}×", speedup >= 10)


def _ratios(results: dict, size: tuple[int, int, int, int]) -> list[tuple[str, str, float]]:
    return [
        (row["cell"], row["dtype"], row["ours"] / row["torch"])
        for row in results.get("modules", [])
        if (row["steps"], row["batch"], row["input"], row["hidden"]) == size
    ]


def _size_text(size: tuple[int, int, int, int]) -> str:
    return "(T={}, B={}, I={}, H={})".format(*size)


def _module_target(results: dict, size: tuple[int, int, int, int], limit: float) -> Status:
    target = (
        f"generated/torch ≤ {limit:g} at {_size_text(size)}, RNN, LSTM, GRU, float32 and float64"
    )
    ratios = _ratios(results, size)
    if not ratios:
        return _missing(target)
    by_cell = []
    for cell in CELLS:
        values = [r for c, _, r in ratios if c == cell]
        if values:
            low, high = min(values), max(values)
            by_cell.append(f"{cell} {low:.2f}" + (f"–{high:.2f}" if high > low else ""))
    over = [f"{c} {d}" for c, d, r in ratios if r > limit]
    complete = len(ratios) == len(CELLS) * len(DTYPES)
    figure = ", ".join(by_cell) + (f"; over: {', '.join(over)}" if over else "")
    plain = [
        f"{row['cell']} {row['dtype']} {row['ours'] / row['torch_no_onednn']:.2f}"
        for row in results.get("modules", [])
        if (row["steps"], row["batch"], row["input"], row["hidden"]) == size
        and row.get("torch_no_onednn")
    ]
    if plain:
        figure += f" (against torch with oneDNN off: {', '.join(plain)})"
    return Status(target, figure, not over and complete)


def founding_ratio(results: dict) -> Status:
    status = _module_target(results, FOUNDING, 0.6)
    rows = results.get("founding", [])
    if not rows:
        return status
    floors = [row["floor"] / row["torch"] for row in rows]
    loops = [row["loop"] / row["torch"] for row in rows]
    figure = (
        f"{status.figure}; loop form {min(loops):.2f}–{max(loops):.2f}; module + "
        f"autograd overhead alone {min(floors):.2f}–{max(floors):.2f} of torch (see the "
        "founding-size table)"
    )
    return Status(status.target, figure, status.met)


def medium_ratio(results: dict) -> Status:
    return _module_target(results, MEDIUM, 1.0)


def large_ratio(results: dict) -> Status:
    return _module_target(results, LARGE, 1.0)


def timing_protocol(results: dict) -> Status:
    target = "module timings on CPU with 2 threads, median of ≥ 20 runs"
    if "runs" not in results:
        return _missing(target)
    runs, threads = results["runs"], results.get("threads")
    figure = f"{threads} threads, median of {runs} runs"
    return Status(target, figure, runs >= 20 and threads == 2)


def saved_memory(results: dict) -> Status:
    target = "peak saved memory ≤ autograd's (generated / torch bytes ≤ 1)"
    rows = results.get("memory")
    if not rows:
        return _missing(target)
    ratios = [(row, row["generated"] / row["torch"]) for row in rows]
    low, high = min(r for _, r in ratios), max(r for _, r in ratios)
    over = [
        f"{row['cell']} T={row['steps']} {row['dtype']} {ratio:.3f}"
        for row, ratio in ratios
        if ratio > 1.0
    ]
    seen = all(row["generated"] > 0 and row["generated_tensors"] > 0 for row in rows)
    figure = f"{low:.2f}–{high:.2f}" + (f"; over: {', '.join(over)}" if over else "")
    if all("generated_held" in row for row in rows):
        held = [row["generated_held"] / row["torch_held"] for row in rows]
        figure += f"; held after the forward (saved and outputs) {min(held):.2f}–{max(held):.2f}"
    if not seen:
        figure += "; the hook saw nothing saved by a generated module"
    return Status(target, figure, not over and seen)


def gpu(results: dict) -> Status:
    target = "GPU: generated ≤ 1.5× cuDNN"
    report = results.get("gpu_report", GPU_REPORT)
    if not (ROOT / report).exists():
        return Status(target, f"see {report}: not written yet (benchmarks/gpu.py, on a GPU)", None)
    rows = gpu_speed_rows((ROOT / report).read_text(encoding="utf-8"))
    if not rows:
        return Status(target, f"see {report}: no speed rows", None)
    eager = [row["ratio"] for row in rows]
    graphs = [row["graph_ratio"] for row in rows if row["graph_ratio"] is not None]
    met = [row for row in rows if min(row["ratio"], row["graph_ratio"] or row["ratio"]) <= 1.5]
    figure = f"{rows[0]['device']}: eager {min(eager):.2f}–{max(eager):.2f}×"
    if graphs:
        figure += f", CUDA graphs {min(graphs):.2f}–{max(graphs):.2f}×"
    figure += f"; ≤ 1.5× in {len(met)} of {len(rows)} rows ({report})"
    return Status(target, figure, len(met) == len(rows))


def gpu_speed_rows(markdown: str) -> list[dict]:
    """The speed table of docs/benchmarks-gpu.md: device, cell, sizes, eager and graph ratios."""
    rows, header = [], None
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "graph ratio" in cells and "ratio" in cells:
            header = cells
            continue
        if header is None or len(cells) != len(header) or cells[0].startswith("---"):
            continue
        row = dict(zip(header, cells, strict=True))
        try:
            ratio = float(row["ratio"])
        except ValueError:
            continue
        try:
            graph = float(row["graph ratio"])
        except ValueError:
            graph = None
        rows.append(
            {"device": row["device"], "cell": row["cell"], "ratio": ratio, "graph_ratio": graph}
        )
    return rows


def gflops(results: dict) -> Status:
    target = "GFLOP/s reported"
    rows = [row for row in results.get("modules", []) if "matmul" in row]
    if not rows:
        return _missing(target)
    best = max(rows, key=lambda row: row["flops"] / row["ours"])
    figure = (
        f"{len(rows)} rows; best generated {best['flops'] / best['ours'] / 1e9:.1f} GFLOP/s "
        f"({best['cell']} T={best['steps']} {best['dtype']}), with torch and plain matmul"
    )
    return Status(target, figure, True)


TARGETS: list[Callable[[dict], Status]] = [
    linear_in_steps,
    faster_than_naive,
    large_derivation,
    derive_t1000,
    scalar_view_cse,
    symengine_speedup,
    derive_cold_start,
    source_size,
    medium_ratio,
    large_ratio,
    founding_ratio,
    timing_protocol,
    saved_memory,
    gpu,
    gflops,
]
"""Every target of the issue, in its order; each maps the results to one :class:`Status`."""


def status_rows(results: dict) -> list[Status]:
    return [target(results) for target in TARGETS]
