"""The benchmark's figures (matplotlib, Agg backend), written as PNG files."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def derivation_plot(
    ours: dict[int, float],
    naive: dict[int, float | None],
    cap: float,
    path: Path,
    title: str = "RNN, I = 1, H = 2",
) -> Path:
    """Derivation seconds against T on log axes: symbptt, and SymPy's diff (None: past ``cap``)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9.5, 4.5))
    steps = sorted(ours)
    axes.plot(steps, [ours[t] for t in steps], "o-", label="symbptt derive + render")
    finished = sorted(t for t, seconds in naive.items() if seconds is not None)
    axes.plot(finished, [naive[t] for t in finished], "s-", color="C3", label="naive SymPy diff")
    past = sorted(t for t, seconds in naive.items() if seconds is None)
    if past:
        axes.plot(
            past,
            [cap] * len(past),
            "^",
            color="C3",
            markerfacecolor="none",
            markersize=9,
            label=f"naive past the {cap:g} s cap (drawn at the cap)",
        )
    if max(steps) > 16:
        axes.axvline(16.5, color="grey", linestyle=":", label="loop form above 16 steps")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("time steps T")
    axes.set_ylabel("seconds")
    axes.set_title(f"Derivation time against T ({title})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def ratio_plot(rows: list[dict], path: Path) -> Path:
    """generated / torch time against the layer size, one line per cell and dtype.

    ``rows`` are the module benchmark's: cell, dtype, steps, batch, input, hidden, ours, torch.
    """
    plt = _pyplot()
    sizes = sorted({(r["steps"], r["batch"], r["input"], r["hidden"]) for r in rows}, key=_work)
    labels = [f"T={t}, B={b}\nI={i}, H={h}" for t, b, i, h in sizes]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, cell in enumerate(dict.fromkeys(r["cell"] for r in rows)):
        for dtype, style in (("float32", "o-"), ("float64", "s--")):
            points = {
                (r["steps"], r["batch"], r["input"], r["hidden"]): r["ours"] / r["torch"]
                for r in rows
                if r["cell"] == cell and r["dtype"] == dtype
            }
            if not points:
                continue
            xs = [k for k, size in enumerate(sizes) if size in points]
            axes.plot(
                xs,
                [points[sizes[k]] for k in xs],
                style,
                color=f"C{index}",
                label=f"{cell} {dtype}",
            )
    axes.axhline(1.0, color="grey", linewidth=1, label="target ≤ 1.0")
    axes.axhline(0.6, color="grey", linewidth=1, linestyle=":", label="target ≤ 0.6 (founding)")
    axes.set_xticks(range(len(sizes)), labels)
    axes.set_yscale("log")
    axes.set_ylabel("generated / torch (forward + backward)")
    axes.set_title("Generated module against torch (CPU, 2 threads)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _work(size: tuple[int, int, int, int]) -> int:
    steps, batch, n_in, n_h = size
    return steps * batch * n_h * (n_in + n_h)
