"""The flow's numbers drawn against t on a log scale, with matplotlib (the ``plot`` extra)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .equations import chain_notation
from .numbers import Flow, FlowError

PLOT_SUFFIXES = (".png", ".svg")
MISSING_MATPLOTLIB = "--plot needs matplotlib: pip install 'symbptt[plot]'"
SVG_HASH_SALT = "symbptt"
"""matplotlib's ``svg.hashsalt`` for plots: the SVG's ids are the same in every run."""


def check_plot_path(path: Path, force: bool) -> None:
    """Fail before any work: a .png or .svg name, matplotlib installed, the file writable."""
    from ..fileio import check_writable

    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise FlowError(f"--plot {path}: the plot must end in .png or .svg")
    _matplotlib()
    check_writable(path, force=force)


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise FlowError(MISSING_MATPLOTLIB) from None
    return matplotlib


def plot(flow: Flow, path: Path, force: bool = False) -> Path:
    """Draw the chain's norms and singular values and the step terms against t (log scale).

    The file is byte-identical between runs: no date, and SVG ids from a fixed salt.
    """
    from ..fileio import PLOT_MARKER, write_generated

    matplotlib = _matplotlib()
    # the Agg canvas, without pyplot: no global backend switch, no window
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    notation = chain_notation(flow.spec)
    rows = sorted(flow.rows, key=lambda r: r.t)
    steps = [r.t for r in rows]

    def positive(values):
        return [v if v is not None and v > 0 and math.isfinite(v) else math.nan for v in values]

    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    count = len(rows[0].singular_values)
    for i in range(count):
        top.plot(
            steps,
            positive([r.singular_values[i] for r in rows]),
            color="0.6",
            linewidth=0.8,
            marker=".",
            label="singular values" if i == 0 else None,
        )
    top.plot(steps, positive([r.spectral for r in rows]), "o-", label="spectral norm ‖·‖₂")
    top.plot(steps, positive([r.frobenius for r in rows]), "s--", label="Frobenius norm ‖·‖_F")
    top.set_ylabel(notation["chain"])
    top.set_title(f"Gradient flow: {flow.spec.describe()}", fontsize=10)
    terms = positive([r.contribution for r in rows])
    bottom.plot(steps, terms, "o-", color="C3", label=f"‖step t term of ∂L/∂{flow.parameter}‖_F")
    bottom.set_ylabel("step t's term of ∂L/∂W_hh")
    bottom.set_xlabel("t")
    for axes, series in ((top, [r.spectral for r in rows]), (bottom, terms)):
        finite = [s for s in series if s is not None and math.isfinite(s) and s > 0]
        if finite:
            axes.set_yscale("log")
        else:
            axes.text(0.5, 0.5, "all zero", transform=axes.transAxes, ha="center")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fmt = path.suffix.lower().lstrip(".")
    meta_key = "Software" if fmt == "png" else "Description"
    metadata = {meta_key: f"{PLOT_MARKER}{flow.spec.describe()}"}
    if fmt == "svg":
        metadata["Date"] = None
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        figure.savefig(buffer, format=fmt, metadata=metadata)
    return write_generated(path, buffer.getvalue(), force=force)
