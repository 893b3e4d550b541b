"""The benchmark's pure pieces: the FLOP count, the saved-memory measure, the status table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import flops, status  # noqa: E402
from benchmarks.memory import saved_bytes, saved_memory  # noqa: E402


def _mm(m: int, k: int, n: int) -> int:
    """FLOPs of an (m, k) @ (k, n) product: m·n dot products of k multiplies and k adds."""
    return 2 * m * k * n


def test_flops_match_a_hand_count_for_a_tiny_lstm():
    # LSTM, T=2, B=3, I=1, H=2: 4 gates, so the weights have G·H = 8 rows.
    per_step_forward = _mm(3, 1, 8) + _mm(3, 2, 8)  # x_t W_ihᵀ + h_{t-1} W_hhᵀ = 48 + 96
    per_step_backward = (
        _mm(3, 8, 1)  # δ_t W_ih: the input gradient
        + _mm(3, 8, 2)  # δ_t W_hh: the state gradient
        + _mm(8, 3, 1)  # δ_tᵀ x_t: W_ih's gradient
        + _mm(8, 3, 2)  # δ_tᵀ h_{t-1}: W_hh's gradient
    )
    assert per_step_forward == 144 and per_step_backward == 288
    counted = flops.matmul_flops("lstm", steps=2, batch=3, input_size=1, hidden_size=2)
    assert counted == {"forward": 288, "backward": 576, "total": 864}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_plain_matmul_baseline_runs_exactly_the_counted_products(cell):
    size = {"steps": 5, "batch": 4, "input_size": 3, "hidden_size": 6}
    shapes = flops.matmul_shapes(cell, **size)
    assert sum(_mm(*shape) for shape in shapes) == flops.matmul_flops(cell, **size)["total"]
    flops.plain_matmuls(cell, **size, dtype=None)()  # runs, default dtype


def test_saved_bytes_sees_what_a_function_saves_and_excludes_parameters():
    import torch

    weight = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(2, 3, requires_grad=True)
    measured = saved_bytes(lambda: torch.tanh(x @ weight), exclude=[x, weight])
    # matmul saves x and weight (excluded); tanh saves its (2, 3) float32 output, which is
    # also what it returns: held counts that storage once
    assert measured == {"bytes": 2 * 3 * 4, "tensors": 1, "storages": 1, "held": 2 * 3 * 4}
    held = saved_bytes(lambda: (torch.tanh(x @ weight), x + 1), exclude=[x, weight])["held"]
    assert held == 2 * (2 * 3 * 4)  # and x + 1, returned, saved by nothing


def test_saved_memory_of_both_modules_at_a_tiny_size():
    steps, batch, hidden = 3, 2, 2
    measured = saved_memory("rnn", steps, batch, 1, hidden, "float64")
    assert measured["generated"] > 0 and measured["generated_tensors"] > 0
    assert measured["torch"] > 0
    # torch's RNN: every step's tanh saves its output h_t (and the next step's matmul saves the
    # same tensor again); step 1's matmul saves the zero initial state h_0. So h_1 … h_T at
    # least, h_0 … h_T at most, 8 bytes an entry.
    entry = batch * hidden * 8
    assert steps * entry <= measured["torch"] <= (steps + 1) * entry


def test_status_table_writes_every_verdict():
    rows = [
        status.Status("a ≤ 2.2", "1.77", True),
        status.Status("b under 1 s", "1.5 s", False),
        status.Status("GPU | cuDNN", "see docs/benchmarks-gpu.md", None),
    ]
    assert status.status_table(rows) == [
        "| target | measured | status |",
        "| --- | --- | --- |",
        "| a ≤ 2.2 | 1.77 | met |",
        "| b under 1 s | 1.5 s | not met |",
        "| GPU \\| cuDNN | see docs/benchmarks-gpu.md | — |",
    ]


def test_status_rows_list_every_target_even_with_nothing_measured():
    rows = status.status_rows({"gpu_report": "docs/no-such-report.md"})
    assert len(rows) == len(status.TARGETS) == 15
    assert all(row.met is None for row in rows if "GFLOP" not in row.target)
    assert any("docs/no-such-report.md: not written yet" in row.figure for row in rows)


def _module_rows(size: tuple[int, int, int, int], ours: float, torch: float) -> list[dict]:
    """Module timings of every cell and dtype at one size, as benchmarks/run.py records them."""
    steps, batch, n_in, n_h = size
    row = {"steps": steps, "batch": batch, "input": n_in, "hidden": n_h, "matmul": 1.0}
    return [
        row | {"flops": 1, "cell": cell, "dtype": dtype, "ours": ours, "torch": torch}
        for cell in status.CELLS
        for dtype in status.DTYPES
    ]


def test_status_rows_judge_measured_figures():
    results = {
        "cap": 60.0,
        "linear": {"t100": 1.0, "t200": 2.5},
        "derivation": [{"steps": 10, "input": 1, "hidden": 2, "ours": 0.1, "naive": None}],
        "modules": _module_rows(status.FOUNDING, ours=1.0, torch=2.0),
        "scalar_view": {"sympy": None, "symengine": None},
    }
    by_target = {row.target: row for row in status.status_rows(results)}
    assert by_target["derivation + codegen time(T=200) / time(T=100) ≤ 2.2"].met is False
    naive = by_target["≥ 100× faster than naive SymPy diff at (T=10, I=1, H=2)"]
    assert naive.met is True and naive.figure.startswith("> 600×")
    founding_row = next(row for row in by_target.values() if "≤ 0.6" in row.target)
    assert founding_row.met is True and "rnn 0.50" in founding_row.figure
    scalar = next(row for row in by_target.values() if row.target.startswith("scalar view"))
    assert scalar.met is None and "not available" in scalar.figure


def test_gpu_rows_are_read_from_the_gpu_report():
    from benchmarks.status import gpu_speed_rows

    report = """
| device | cell | T | ratio | ≤ 1.5× | graph generated (ms) | graph ratio |
| --- | --- | --- | --- | --- | --- | --- |
| Card X | rnn | 100 | 2.50 | over | 1.0 | 1.20 |
| Card X | gru | 100 | 1.40 | ok | error: capture failed | |
"""
    assert gpu_speed_rows(report) == [
        {"device": "Card X", "cell": "rnn", "ratio": 2.5, "graph_ratio": 1.2},
        {"device": "Card X", "cell": "gru", "ratio": 1.4, "graph_ratio": None},
    ]


def test_the_founding_status_carries_the_overhead_floor_when_measured():
    results = {
        "modules": _module_rows(status.FOUNDING, ours=3.0, torch=2.0),
        "founding": [
            {"cell": "rnn", "dtype": "float32", "torch": 200.0, "loop": 240.0, "floor": 80.0},
            {"cell": "lstm", "dtype": "float32", "torch": 300.0, "loop": 390.0, "floor": 90.0},
        ],
    }
    row = status.founding_ratio(results)
    assert row.met is False
    assert "loop form 1.20–1.30" in row.figure
    assert "overhead alone 0.30–0.40 of torch" in row.figure


def test_a_row_timed_without_onednn_is_reported_beside_the_verdict():
    rows = _module_rows(status.MEDIUM, ours=1.0, torch=2.0)
    lstm = next(r for r in rows if (r["cell"], r["dtype"]) == ("lstm", "float32"))
    lstm |= {"ours": 3.0, "torch": 1.5, "torch_no_onednn": 4.0}
    row = status.medium_ratio({"modules": rows})
    assert row.met is False  # the verdict stays against torch as it runs
    assert "over: lstm float32" in row.figure
    assert "against torch with oneDNN off: lstm float32 0.75" in row.figure


def test_contenders_take_turns_and_each_gets_its_median():
    from benchmarks.timing import take_turns

    calls: list[str] = []
    before: list[int] = []
    contenders = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    medians = take_turns(contenders, runs=3, warmup=2, repeat=4, before=lambda: before.append(1))
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())
    assert calls[:4] == ["a", "b", "a", "b"]  # warm-up rounds, in turn
    assert calls[4:] == (["a"] * 4 + ["b"] * 4) * 3  # each timed run makes `repeat` calls
    assert len(before) == 3 * 2  # once ahead of every timed run
