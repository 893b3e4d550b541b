"""Benchmarks of symbptt, written to docs/benchmarks.md (figures as PNG files beside it).

    python benchmarks/run.py [--quick] [--cap N] [--out docs/benchmarks.md]

Every figure is a ratio against a baseline measured in the same run on the same machine:
the derivation against SymPy's brute-force ``diff`` of the unrolled scalar loss (the obvious
approach), the generated modules against torch's own modules with autograd and against the
same matrix products run alone (what this machine's matmul attains), their saved activations
against autograd's. Timings are medians of repeated runs, each measurement in a fresh
interpreter; the naive symbolic side runs under a time cap and is reported as "> cap" when it
does not finish. The last table judges every target of the issue from these figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import flops, memory, plots, status  # noqa: E402

FOUNDING, MEDIUM, LARGE = status.FOUNDING, status.MEDIUM, status.LARGE
CELLS, DTYPES = status.CELLS, status.DTYPES
THREADS = 2


class MeasurementError(RuntimeError):
    """A measuring interpreter failed; the message carries its stderr."""


def _python(code: str, timeout: float) -> object | None:
    """Run ``code`` in a fresh interpreter; it prints one JSON value last. None on time-out."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        raise MeasurementError(result.stderr.strip()[-2000:] or f"exit {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# Measurements, each in a fresh interpreter.


def derivation_time(steps: int, input_size: int, hidden_size: int, repeats: int = 5) -> float:
    """Median seconds of derive + render (equations and generated code), in a fresh process."""
    return derivation_times((steps,), input_size, hidden_size, repeats)[steps]


def derivation_times(
    steps: tuple[int, ...], input_size: int, hidden_size: int, repeats: int
) -> dict[int, float]:
    """Median seconds of derive + render for each T in ``steps``, in one fresh process, the
    T's taking turns in each round (so that load on the machine hits them alike).

    A one-step derivation first loads the modules (the cold start is measured on its own, by
    the command-line section); SymPy's cache is cleared and the garbage collected before each
    timed run, so no run reuses another's work.
    """
    code = f"""
import gc, json, symbptt
from sympy.core.cache import clear_cache
from benchmarks.timing import take_turns
symbptt.derive(steps=1).render()

def fresh():
    clear_cache()
    gc.collect()

contenders = {{
    steps: lambda steps=steps: symbptt.derive(
        steps=steps, input_size={input_size}, hidden_size={hidden_size}
    ).render()
    for steps in {steps!r}
}}
print(json.dumps(take_turns(contenders, {repeats}, before=fresh)))
"""
    return {int(steps): seconds for steps, seconds in _python(code, 600).items()}


def naive_time(steps: int, input_size: int, hidden_size: int, cap: float) -> float | None:
    """Seconds for SymPy diff of the fully unrolled scalar loss w.r.t. every parameter entry."""
    code = f"""
import json, time, symbptt
from symbptt.scalar.explicit import brute_force_gradients
d = symbptt.derive(steps={steps}, input_size={input_size}, hidden_size={hidden_size})
start = time.perf_counter()
brute_force_gradients(d)
print(json.dumps(time.perf_counter() - start))
"""
    return _python(code, cap)


def command_time(*args: str, repeats: int = 3) -> float:
    """Median wall seconds of ``python -m symbptt ARGS`` from a cold start."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "symbptt", *args],
            cwd=ROOT / "build",
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def source_sizes(cells: tuple[str, ...], steps: tuple[int, ...]) -> dict[str, dict[int, int]]:
    """Bytes of the loop form's generated source, per cell and number of steps (I=1, H=2)."""
    code = f"""
import json, symbptt
print(json.dumps({{
    cell: {{
        steps: len(symbptt.derive(cell=cell, steps=steps, loop=True).render().encode())
        for steps in {steps!r}
    }}
    for cell in {cells!r}
}}))
"""
    sizes = _python(code, 600)
    return {
        cell: {int(t): size for t, size in by_steps.items()} for cell, by_steps in sizes.items()
    }


def scalar_view_time(
    steps: int, input_size: int, hidden_size: int, backend: str, cap: float = 120.0
) -> float | None:
    """Seconds of ``symbptt.scalar.view.scalar_view`` (with CSE) on a derived RNN layer.

    Runs in a fresh interpreter under ``cap`` seconds. Not timed: the matrix-level derivation
    (its per-step equations included, the same SymPy work for both backends, which ``symbptt
    derive`` does anyway) and the backend's import (a one-step view is built first); SymPy's
    cache is cleared before the timed call, so neither backend reuses earlier work. Returns
    ``math.inf`` past the cap and None when the module is missing or the call fails.
    """
    code = f"""
import json, time, symbptt
from sympy.core.cache import clear_cache
from symbptt.scalar.view import scalar_view
scalar_view(symbptt.derive(steps=1), backend={backend!r})
d = symbptt.derive(steps={steps}, input_size={input_size}, hidden_size={hidden_size})
d.forward, d.backward
clear_cache()
start = time.perf_counter()
scalar_view(d, backend={backend!r})
print(json.dumps(time.perf_counter() - start))
"""
    try:
        seconds = _python(code, cap)
    except (MeasurementError, ValueError):
        return None
    return math.inf if seconds is None else seconds


def module_times(
    cell: str,
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    dtype: str,
    runs: int,
    warmup: int = 3,
) -> dict:
    """Median forward+backward seconds: generated module, torch's, and the plain matmuls;
    for torch's float32 LSTM, which runs oneDNN's fused kernel on the CPU, also torch with
    oneDNN turned off (``torch_no_onednn``: its per-operation path, as for every other row).

    They run in turn within each round (so load on the machine hits them alike), after
    ``warmup`` rounds, with ``THREADS`` threads.
    """
    code = f"""
import json, warnings, torch, symbptt
from symbptt.verification.agreement import torch_reference
from benchmarks.flops import plain_matmuls
from benchmarks.timing import take_turns
torch.set_num_threads({THREADS})
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
d = symbptt.derive(cell={cell!r}, steps={steps}, input_size={input_size},
                   hidden_size={hidden_size})
dtype = getattr(torch, {dtype!r})
reference = torch_reference(d.spec, "cpu", dtype)
generated = getattr(d.load(), d.spec.torch_class)(dtype=dtype)
generated.load_state_dict(reference.state_dict())
x = torch.randn({steps}, {batch}, {input_size}, dtype=dtype, requires_grad=True)
g = torch.randn({steps}, {batch}, d.spec.output_size, dtype=dtype)

def step(layer):
    output, _ = layer(x)
    output.backward(g)

def without_onednn():
    with torch.backends.mkldnn.flags(enabled=False):
        step(reference)

contenders = {{
    "ours": lambda: step(generated),
    "torch": lambda: step(reference),
    "matmul": plain_matmuls({cell!r}, {steps}, {batch}, {input_size}, {hidden_size}, dtype),
}}
if {(cell, dtype) == ("lstm", "float32")!r}:
    contenders["torch_no_onednn"] = without_onednn
print(json.dumps(take_turns(contenders, {runs}, warmup={warmup})))
"""
    return _python(code, 900)


def founding_breakdown(cell: str, dtype: str, runs: int) -> dict:
    """Microseconds of one forward + backward at the founding size: torch's module, the
    generated module in its default (unrolled) and loop forms, and the overhead floor: the
    generated module with its ``forward``/``backward`` replaced by functions that return
    precomputed results, so that only the module, ``autograd.Function`` and autograd's engine
    run (what no choice of tensor operations can remove)."""
    steps, batch, n_in, n_h = FOUNDING
    code = f"""
import json, torch, symbptt
from symbptt.verification.agreement import torch_reference
from benchmarks.timing import take_turns
torch.set_num_threads({THREADS})
dtype = getattr(torch, {dtype!r})
layers = {{}}
for form, loop in (("unrolled", False), ("loop", True), ("floor", False)):
    d = symbptt.derive(cell={cell!r}, steps={steps}, input_size={n_in}, hidden_size={n_h},
                       loop=loop)
    reference = torch_reference(d.spec, "cpu", dtype)
    module = d.load()
    layer = getattr(module, d.spec.torch_class)(dtype=dtype)
    layer.load_state_dict(reference.state_dict())
    layers[form] = layer
layers["torch"] = reference
x = torch.randn({steps}, {batch}, {n_in}, dtype=dtype, requires_grad=True)
g = torch.randn({steps}, {batch}, d.spec.output_size, dtype=dtype)
states = [x.new_zeros({batch}, {n_h})] * len(d.step.states)
with torch.no_grad():
    weights = [p.detach() for p in layers["floor"].parameters()]
    result = module.forward(x.detach(), *states, *weights)
grads = {{name: torch.zeros_like(p) for name, p in layers["floor"].named_parameters()}}
grads |= {{"input": torch.zeros_like(x), "h_0": states[0], "c_0": states[0]}}
module.forward = lambda *args: result
module.backward = lambda *args, **kwargs: grads

def step(layer):
    output, _ = layer(x)
    output.backward(g)

contenders = {{name: lambda layer=layer: step(layer) for name, layer in layers.items()}}
seconds = take_turns(contenders, {runs}, warmup=200, repeat=50)
print(json.dumps({{name: value * 1e6 for name, value in seconds.items()}}))
"""
    return _python(code, 900)


def memory_rows(sizes: list[tuple[int, int, int, int]]) -> list[dict]:
    """Saved-for-backward bytes of every cell, size and dtype (benchmarks/memory.py)."""
    code = f"""
import json
from benchmarks.memory import saved_memory
rows = []
for cell in {CELLS!r}:
    for steps, batch, n_in, n_h in {sizes!r}:
        for dtype in {DTYPES!r}:
            row = dict(cell=cell, steps=steps, batch=batch, input=n_in, hidden=n_h, dtype=dtype)
            rows.append(row | saved_memory(cell, steps, batch, n_in, n_h, dtype))
print(json.dumps(rows))
"""
    return _python(code, 900)


# Sections: each measures, fills ``results`` and returns its markdown lines.


def _say(line: str) -> str:
    print(line, flush=True)
    return line


def derivation_section(args: argparse.Namespace, results: dict) -> list[str]:
    lines = [
        "## Derivation",
        "",
        "| T | I | H | symbptt derive + render (s) | naive SymPy diff (s) | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    results["derivation"] = []
    for steps, n_in, n_h in ((3, 1, 2), (10, 1, 2), (8, 2, 4)):
        ours = derivation_time(steps, n_in, n_h)
        naive = naive_time(steps, n_in, n_h, args.cap)
        results["derivation"].append(
            {"steps": steps, "input": n_in, "hidden": n_h, "ours": ours, "naive": naive}
        )
        naive_text = f"> {args.cap:g}" if naive is None else f"{naive:.2f}"
        ratio = f"> {args.cap / ours:.0f}×" if naive is None else f"{naive / ours:.0f}×"
        lines.append(_say(f"| {steps} | {n_in} | {n_h} | {ours:.3f} | {naive_text} | {ratio} |"))
    linear = derivation_times((100, 200), 4, 8, repeats=9)
    t100, t200 = linear[100], linear[200]
    results["linear"] = {"t100": t100, "t200": t200}
    return lines + [
        "",
        _say(
            "Linear in T (I = 4, H = 8, median of 9, the two T's taking turns in one process): "
            f"derive + render at T = 100: {t100:.3f} s, "
            f"T = 200: {t200:.3f} s, ratio {t200 / t100:.2f} (target ≤ 2.2)."
        ),
    ]


def scaling_section(args: argparse.Namespace, results: dict, out: Path) -> list[str]:
    """Derivation time against T (I=1, H=2): symbptt up to T=1000, naive T=1..6 under the cap."""
    if args.quick:
        ours_steps = (1, 3, 10, 100, 1000)
    else:
        ours_steps = (1, 2, 3, 4, 5, 6, 8, 10, 16, 17, 20, 50, 100, 200, 500, 1000)
    ours = {steps: derivation_time(steps, 1, 2) for steps in ours_steps}
    naive: dict[int, float | None] = {}
    for steps in range(1, 7):
        naive[steps] = naive_time(steps, 1, 2, args.cap)
        if naive[steps] is None:
            break  # it only grows with T
    for row in results.get("derivation", []):
        if (row["input"], row["hidden"]) == (1, 2):
            naive.setdefault(row["steps"], row["naive"])
    results["scaling"] = {"ours": ours, "naive": naive}
    path = plots.derivation_plot(ours, naive, args.cap, out.with_name(f"{out.stem}-derivation.png"))
    lines = [
        "## Derivation time against T",
        "",
        f"![Derivation time against T]({path.name})",
        "",
        "RNN, I = 1, H = 2; symbptt derive + render (median of 5, fresh process per T, modules "
        "loaded first, SymPy's cache cleared before each run; the code "
        "switches from unrolled to loop form above 16 steps) and SymPy's diff of the unrolled "
        f"scalar loss (T = 1 … 6, and T = 10 from the table above; cap {args.cap:g} s).",
        "",
        "| T | " + " | ".join(str(t) for t in ours) + " |",
        "| --- |" + " --- |" * len(ours),
        "| symbptt (s) | " + " | ".join(f"{ours[t]:.3f}" for t in ours) + " |",
        "",
        "| T | " + " | ".join(str(t) for t in sorted(naive)) + " |",
        "| --- |" + " --- |" * len(naive),
        "| naive (s) | "
        + " | ".join(
            f"> {args.cap:g}" if naive[t] is None else f"{naive[t]:.2f}" for t in sorted(naive)
        )
        + " |",
    ]
    print(f"derivation plot: {path}", flush=True)
    return lines


def source_section(results: dict) -> list[str]:
    sizes = source_sizes(CELLS, (100, 1000))
    results["source_size"] = sizes
    lines = [
        "## Loop form: generated source size",
        "",
        "Bytes of `Derivation.render()` with `loop=True` (I = 1, H = 2); the loop form's source "
        "should not grow with T (only the digits of T change).",
        "",
        "| module | T = 100 (bytes) | T = 1000 (bytes) | difference |",
        "| --- | --- | --- | --- |",
    ]
    for cell, by_steps in sizes.items():
        small, large = by_steps[100], by_steps[1000]
        lines.append(_say(f"| {cell} | {small:,} | {large:,} | {large - small:+,} |"))
    return lines


def scalar_view_section(args: argparse.Namespace, results: dict) -> list[str]:
    views = {
        backend: scalar_view_time(50, 4, 8, backend, args.cap) for backend in ("sympy", "symengine")
    }
    results["scalar_view"] = views

    def text(seconds: float | None) -> str:
        if seconds is None:
            return "not available"
        return f"> {args.cap:g} (cap)" if math.isinf(seconds) else f"{seconds:.2f}"

    return [
        "## Scalar view with CSE (T = 50, I = 4, H = 8)",
        "",
        "Seconds of `symbptt.scalar.view.scalar_view(derivation, backend=...)` in a fresh "
        "process; not timed: the matrix-level derivation (the same SymPy work for both "
        "backends) and the backend's import; SymPy's cache is cleared first. "
        '"not available" where the module is missing or the call fails.',
        "",
        "| backend | seconds |",
        "| --- | --- |",
        *(_say(f"| {backend} | {text(seconds)} |") for backend, seconds in views.items()),
    ]


def command_section(args: argparse.Namespace, results: dict) -> list[str]:
    repeats = 1 if args.quick else 3
    lines = [
        f"## Command line, cold start (wall time, median of {repeats})",
        "",
        "| command | seconds |",
        "| --- | --- |",
    ]
    results["commands"] = {}
    for command in (
        ["derive", "--steps", "3"],
        ["derive", "--steps", "1000", "--no-verify"],
        ["derive", "--steps", "1000"],
    ):
        seconds = command_time(*command, repeats=repeats)
        results["commands"][" ".join(command)] = seconds
        lines.append(_say(f"| `symbptt {' '.join(command)}` | {seconds:.2f} |"))
    return lines


def module_section(args: argparse.Namespace, results: dict, out: Path) -> list[str]:
    runs = 5 if args.quick else 20
    sizes = [FOUNDING, MEDIUM] + ([] if args.quick else [LARGE])
    results.update(runs=runs, threads=THREADS, modules=[])
    lines = [
        f"## Generated modules against torch (CPU, {THREADS} threads, forward + backward)",
        "",
        f"Median of {runs} runs; ratio = generated / torch (below 1: the generated module is "
        "faster). Generated module, torch and the plain matmuls take turns within each run.",
        "",
        "Torch's float32 LSTM runs oneDNN's fused RNN kernel on the CPU; for it the last two "
        "columns time torch with oneDNN turned off (`torch.backends.mkldnn.flags(enabled=False)`"
        "), its per-operation path, which every other row's torch takes anyway.",
        "",
        "| module | T | B | I | H | dtype | generated (ms) | torch (ms) | ratio "
        "| torch, oneDNN off (ms) | ratio to it |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in CELLS:
        for steps, batch, n_in, n_h in sizes:
            for dtype in DTYPES:
                times = module_times(
                    cell, steps, batch, n_in, n_h, dtype, runs, warmup=1 if args.quick else 3
                )
                row = {"cell": cell, "steps": steps, "batch": batch, "input": n_in}
                row |= {"hidden": n_h, "dtype": dtype, **times}
                row["flops"] = flops.matmul_flops(cell, steps, batch, n_in, n_h)["total"]
                results["modules"].append(row)
                plain = times.get("torch_no_onednn")
                off = f"{plain * 1e3:.3f} | {times['ours'] / plain:.2f}" if plain else "— | —"
                lines.append(
                    _say(
                        f"| {cell} | {steps} | {batch} | {n_in} | {n_h} | {dtype} | "
                        f"{times['ours'] * 1e3:.3f} | {times['torch'] * 1e3:.3f} | "
                        f"{times['ours'] / times['torch']:.2f} | {off} |"
                    )
                )
    path = plots.ratio_plot(results["modules"], out.with_name(f"{out.stem}-ratio.png"))
    print(f"ratio plot: {path}", flush=True)
    return lines + ["", f"![generated / torch against size]({path.name})"]


def founding_section(args: argparse.Namespace, results: dict) -> list[str]:
    runs = 5 if args.quick else 20
    steps, batch, n_in, n_h = FOUNDING
    lines = [
        f"## Founding size (T = {steps}, B = {batch}, I = {n_in}, H = {n_h}): where the time goes",
        "",
        f"Microseconds of one forward + backward (median of {runs} runs of 50, all four taking "
        "turns in one process). *Floor*: the generated module with its forward and backward "
        "functions replaced by ones that return precomputed results: the module, "
        "`autograd.Function` and autograd's engine alone, which no choice of tensor operations "
        "removes. *Left for the arithmetic*: 0.6 × torch − floor, what the whole forward + "
        "backward may take for the ≤ 0.6 target; a tensor operation on tensors this small "
        "costs 1–3.5 µs of dispatch.",
        "",
        "| module | dtype | torch (µs) | unrolled (µs) | loop (µs) | floor (µs) "
        "| floor / torch | left for the arithmetic (µs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    results["founding"] = []
    for cell in CELLS:
        for dtype in DTYPES:
            times = founding_breakdown(cell, dtype, runs)
            results["founding"].append({"cell": cell, "dtype": dtype, **times})
            lines.append(
                _say(
                    f"| {cell} | {dtype} | {times['torch']:.0f} | "
                    f"{times['unrolled']:.0f} ({times['unrolled'] / times['torch']:.2f}) | "
                    f"{times['loop']:.0f} ({times['loop'] / times['torch']:.2f}) | "
                    f"{times['floor']:.0f} | {times['floor'] / times['torch']:.2f} | "
                    f"{0.6 * times['torch'] - times['floor']:.0f} |"
                )
            )
    return lines + [
        "",
        "The default form at this size is the unrolled one, written for reading (every step's "
        "equation on its own line); the loop form (`--loop`) runs fewer operations.",
    ]


def gflops_section(results: dict) -> list[str]:
    lines = [
        "## Matmul throughput (GFLOP/s)",
        "",
        flops.FORMULA,
        "",
        "GFLOP/s = those FLOPs / median forward + backward seconds (the table above). The plain "
        "matmul baseline runs the same products, same shapes, nothing else, in the same "
        "process: the input projection and the weight and input gradients over all steps at "
        "once, (T·B, I) @ (I, G·H), (G·H, T·B) @ (T·B, I + H), (T·B, G·H) @ (G·H, I), and the "
        "state products step by step, (B, H) @ (H, G·H) forward and (B, G·H) @ (G·H, H) "
        "backward. % of matmul = achieved / plain-matmul GFLOP/s: how close each module gets to "
        "what this machine's matmul attains for those shapes; above 100 %: faster than the "
        "products run one by one, as a fused kernel can be (torch's float32 LSTM on CPU runs "
        "oneDNN's).",
        "",
        "| module | T | B | I | H | dtype | FLOP | matmuls (ms) | matmul GFLOP/s "
        "| generated GFLOP/s | torch GFLOP/s | generated % of matmul | torch % of matmul |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["modules"]:
        rates = {name: row["flops"] / row[name] / 1e9 for name in ("matmul", "ours", "torch")}
        lines.append(
            f"| {row['cell']} | {row['steps']} | {row['batch']} | {row['input']} | "
            f"{row['hidden']} | {row['dtype']} | {_si(row['flops'])} | "
            f"{row['matmul'] * 1e3:.3f} | {rates['matmul']:.3g} | {rates['ours']:.3g} | "
            f"{rates['torch']:.3g} | {100 * rates['ours'] / rates['matmul']:.0f} % | "
            f"{100 * rates['torch'] / rates['matmul']:.0f} % |"
        )
    return lines


def _si(count: float) -> str:
    """``count`` with an SI prefix: 108, 472 M, 1.89 G."""
    for factor, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if count >= factor:
            return f"{count / factor:.3g}{prefix}"
    return f"{count:g}"


def memory_section(results: dict) -> list[str]:
    rows = memory_rows([FOUNDING, MEDIUM, LARGE])
    results["memory"] = rows
    lines = [
        "## Saved activations (peak memory kept for backward)",
        "",
        memory.NOTE,
        "",
        "| module | T | B | I | H | dtype | generated (bytes) | torch (bytes) | generated / torch "
        "| tensors saved (generated / torch) | held: generated / torch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            _say(
                f"| {row['cell']} | {row['steps']} | {row['batch']} | {row['input']} | "
                f"{row['hidden']} | {row['dtype']} | {row['generated']:,} | {row['torch']:,} | "
                f"{row['generated'] / row['torch']:.3f} | "
                f"{row['generated_tensors']} / {row['torch_tensors']} | "
                f"{row['generated_held'] / row['torch_held']:.3f} |"
            )
        )
    seen = all(row["generated"] > 0 and row["generated_tensors"] > 0 for row in rows)
    return lines + [
        "",
        "Where torch saves only a handful of tensors (its float32 LSTM on CPU) it ran oneDNN's "
        "fused LSTM kernel, which keeps a workspace, instead of autograd's graph of operations.",
        "",
        "Check that the hook sees what the generated `autograd.Function` saves: "
        + (
            "yes, every generated module above saved a non-zero number of bytes."
            if seen
            else "NO: some generated module shows nothing saved, the figures are not valid."
        ),
    ]


def status_section(results: dict) -> list[str]:
    return ["## Status against the targets", "", *status.status_table(status.status_rows(results))]


def machine() -> list[str]:
    """Markdown bullet lines describing this machine and software."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return [
        f"- CPU: {model}, {os.cpu_count()} logical cores ({usable} usable by this process)",
        f"- torch threads: {torch.get_num_threads()} by default; the module timings set {THREADS}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}",
    ]


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="fewer sizes and runs")
    parser.add_argument(
        "--cap",
        type=float,
        help="seconds allowed to the naive side and the scalar view (default 120, 20 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.cap is None:
        args.cap = 20.0 if args.quick else 120.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (ROOT / "build").mkdir(exist_ok=True)
    results: dict = {"cap": args.cap, "gpu_report": status.GPU_REPORT}
    started, load = time.perf_counter(), _load()
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{shlex.join(['python', 'benchmarks/run.py', *argv])}`"
        + (" (a `--quick` trial: fewer sizes and runs)" if args.quick else "")
        + "; every ratio is measured in the same run, each measurement in a fresh process.",
        "",
        *machine(),
        "",
    ]
    for section in (
        lambda: derivation_section(args, results),
        lambda: scaling_section(args, results, out),
        lambda: source_section(results),
        lambda: scalar_view_section(args, results),
        lambda: command_section(args, results),
        lambda: module_section(args, results, out),
        lambda: founding_section(args, results),
        lambda: gflops_section(results),
        lambda: memory_section(results),
        lambda: status_section(results),
    ):
        start = time.perf_counter()
        lines += section() + [""]
        print(f"[{time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    lines += [
        f"The run took {time.perf_counter() - started:.0f} s; 1-minute load average "
        f"{load:.2f} before it and {_load():.2f} at its end (the run accounts for about 1 of "
        f"the latter; more means other work shared the {os.cpu_count()} cores and the timings "
        "read high)."
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
