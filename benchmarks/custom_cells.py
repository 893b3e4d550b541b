"""User-defined cells (examples/cells/*.toml): the generated module against the eager Python
loop a researcher writes, and against ``torch.compile`` of that loop; section of
docs/benchmarks.md.

    python benchmarks/custom_cells.py [--quick] [--out docs/benchmarks.md] [--compile-cap S]

For MGU, the peephole LSTM and IndRNN, at (T, B, I, H) = (100, 32, 64, 128) and
(500, 16, 32, 64), float32 and float64, on the CPU with ``run.THREADS`` threads:

* *eager*: the step written by hand in plain torch, row convention (``x @ W.T``), one step at
  a time in a Python loop, reading the generated module's own parameter tensors; autograd does
  the backward. It is the baseline of every ratio, measured in the same process.
* *compiled*: ``torch.compile`` of that same loop. Its compile time (the first forward +
  backward, which compiles both) is reported apart; a failure, or a compile past
  ``--compile-cap`` seconds (it is then stopped), is written in the table instead of a time.
* *generated*: ``symbptt.derive(cell=Cell.from_file(...), loop=True).load()``.

Before anything is timed the generated module's output, final states and gradients (input and
every parameter) are checked against the eager loop's in float64 (relative 1e-10); a module
that fails is not timed and its row says so. The three contenders take turns within each
round (:func:`benchmarks.timing.take_turns`), median of the rounds, each (cell, size, dtype) in
a fresh interpreter. Saved memory: the bytes :func:`benchmarks.memory.saved_bytes` sees saved
for backward during one forward (``saved_tensors_hooks``; the generated module's
``autograd.Function`` saves through ``ctx.save_for_backward``, which the same hooks see).

The target judged per row: generated ≤ 0.5 × eager forward + backward time, and generated
saved memory ≤ autograd's (the eager loop's).

The section ``## User-defined cells ...`` of ``--out`` is replaced (appended when absent); the
rest of the file is left as it is. ``benchmarks/run.py`` rewrites the whole file, so run this
after it. ``--quick``: tiny sizes, one round, for a smoke run (use ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import THREADS, machine  # noqa: E402
from benchmarks.status import LARGE, MEDIUM  # noqa: E402

CELLS_DIR = ROOT / "examples" / "cells"
CELLS = ("mgu", "peephole_lstm", "indrnn")
SIZES = (MEDIUM, LARGE)
QUICK_SIZES = ((6, 3, 4, 5),)
DTYPES = ("float32", "float64")
TIME_TARGET = 0.5
"""Generated forward + backward seconds / eager's, at most."""
RTOL = 1e-10
"""Largest relative difference (max |a - b| / max |b|, per tensor) allowed between the
generated module's float64 results and gradients and the eager loop's."""
HEADING = "## User-defined cells against an eager loop"


# The eager loops, row convention, as a researcher writes them. ``p`` maps a cell file's
# parameter name (W_f) to the tensor; x is (T, B, I); returns (output (T, B, H), finals).


def mgu_loop(p: dict, x):
    import torch

    h = x.new_zeros(x.shape[1], p["U_f"].shape[0])
    outputs = []
    for x_t in x:
        f = torch.sigmoid(x_t @ p["W_f"].T + h @ p["U_f"].T + p["b_f"])
        n = torch.tanh(x_t @ p["W_n"].T + (f * h) @ p["U_n"].T + p["b_n"])
        h = (1 - f) * h + f * n
        outputs.append(h)
    return torch.stack(outputs), (h,)


def peephole_lstm_loop(p: dict, x):
    import torch

    h = x.new_zeros(x.shape[1], p["U_f"].shape[0])
    c = torch.zeros_like(h)
    outputs = []
    for x_t in x:
        i = torch.sigmoid(x_t @ p["W_i"].T + h @ p["U_i"].T + p["p_i"] * c + p["b_i"])
        f = torch.sigmoid(x_t @ p["W_f"].T + h @ p["U_f"].T + p["p_f"] * c + p["b_f"])
        ct = torch.tanh(x_t @ p["W_c"].T + h @ p["U_c"].T + p["b_c"])
        c = f * c + i * ct
        o = torch.sigmoid(x_t @ p["W_o"].T + h @ p["U_o"].T + p["p_o"] * c + p["b_o"])
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), (h, c)


def indrnn_loop(p: dict, x):
    import torch

    h = x.new_zeros(x.shape[1], p["u"].shape[0])
    outputs = []
    for x_t in x:
        h = torch.relu(x_t @ p["W"].T + p["u"] * h + p["b"])
        outputs.append(h)
    return torch.stack(outputs), (h,)


EAGER: dict[str, Callable] = {
    "mgu": mgu_loop,
    "peephole_lstm": peephole_lstm_loop,
    "indrnn": indrnn_loop,
}


def cell_parameters(net) -> dict:
    """The generated module's parameters under the cell file's names (``W_f_l0`` → ``W_f``)."""
    return {name.removesuffix("_l0"): tensor for name, tensor in net.named_parameters()}


@functools.cache
def generated_module(cell: str, steps: int, input_size: int, hidden_size: int):
    """The generated module's class for ``examples/cells/<cell>.toml``, loop form."""
    from symbptt import derive
    from symbptt.core.cell_definition import Cell

    definition = Cell.from_file(CELLS_DIR / f"{cell}.toml")
    derivation = derive(
        cell=definition, steps=steps, input_size=input_size, hidden_size=hidden_size, loop=True
    )
    return getattr(derivation.load(), definition.name)


def generated_run(net, x):
    """``(output, finals)`` of the generated module, finals a tuple (h,) or (h, c) of (B, H)."""
    output, finals = net(x)
    finals = finals if isinstance(finals, tuple) else (finals,)
    return output, tuple(final[0] for final in finals)


def relative_difference(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs| (the plain maximum when theirs is all zeros)."""
    scale = theirs.abs().max().item()
    return (ours - theirs).abs().max().item() / (scale if scale > 0 else 1.0)


def check_gradients(cell: str, steps: int, batch: int, input_size: int, hidden_size: int):
    """Largest relative difference, float64, between the generated module and the eager loop:
    output, final states, and the gradients of x and of every parameter for random cotangents
    on the output and the final states. Returns ``(worst, name of the worst tensor)``."""
    import torch

    torch.manual_seed(0)
    net = generated_module(cell, steps, input_size, hidden_size)().to(torch.float64)
    params = cell_parameters(net)
    x = torch.randn(steps, batch, input_size, dtype=torch.float64, requires_grad=True)
    results = {}
    for name, run in (
        ("generated", lambda: generated_run(net, x)),
        ("eager", lambda: EAGER[cell](params, x)),
    ):
        output, finals = run()
        generator = torch.Generator().manual_seed(1)
        cotangents = [
            torch.randn(t.shape, dtype=t.dtype, generator=generator) for t in (output, *finals)
        ]
        leaves = [x, *params.values()]
        grads = torch.autograd.grad([output, *finals], leaves, cotangents, allow_unused=True)
        grads = [
            torch.zeros_like(leaf) if g is None else g
            for leaf, g in zip(leaves, grads, strict=True)
        ]
        names = ["output", *(f"final {i}" for i in range(len(finals))), "x", *params]
        values = [output.detach(), *(final.detach() for final in finals), *grads]
        results[name] = dict(zip(names, values, strict=True))
    differences = {
        name: relative_difference(results["generated"][name], results["eager"][name])
        for name in results["eager"]
    }
    worst = max(differences, key=differences.get)
    return differences[worst], worst


def measure(
    cell: str,
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    dtype: str,
    runs: int,
    warmup: int,
    compiled: bool,
    compile_cap: float = math.inf,
) -> dict:
    """One row's figures, in this process: ``check`` (relative difference, float64, and the
    tensor), ``eager``, ``compiled``, ``generated`` (median seconds of forward + backward, or an
    error text), ``compile_s``, and ``saved_eager``, ``saved_generated`` (bytes). The first
    compiled forward + backward is stopped after ``compile_cap`` seconds (then the row says
    so and the other two are still timed)."""
    import torch

    from benchmarks.memory import saved_bytes
    from benchmarks.timing import take_turns

    torch.set_num_threads(THREADS)
    row: dict = {}
    contenders: dict[str, Callable[[], object]] = {}
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    x = torch.randn(steps, batch, input_size, dtype=torch_dtype, requires_grad=True)
    g = torch.randn(steps, batch, hidden_size, dtype=torch_dtype)
    net = params = None
    try:
        worst, tensor = check_gradients(cell, steps, batch, input_size, hidden_size)
        row["check"] = [worst, tensor]
        net = generated_module(cell, steps, input_size, hidden_size)().to(torch_dtype)
        params = cell_parameters(net)
    except Exception as error:  # the generated module is not there: eager and compiled only
        row["generated"] = error_text(error)
    if params is None:  # the same parameters the generated module would have: uniform ±1/√H
        params = eager_parameters(cell, input_size, hidden_size, torch_dtype)
    eager = EAGER[cell]

    def eager_step():
        output, _ = eager(params, x)
        output.backward(g)

    contenders["eager"] = eager_step
    if net is not None:
        if row["check"][0] <= RTOL:

            def generated_step():
                output, _ = net(x)
                output.backward(g)

            contenders["generated"] = generated_step
        else:
            row["generated"] = f"not timed: {row['check'][1]} differs by {row['check'][0]:.1e}"
    if compiled:
        try:
            compiled_loop = torch.compile(eager)

            def compiled_step():
                output, _ = compiled_loop(params, x)
                output.backward(g)

            start = time.perf_counter()
            with time_limit(compile_cap):
                compiled_step()
            row["compile_s"] = time.perf_counter() - start
            expected = grads_of(eager_step, x, params)
            got = grads_of(compiled_step, x, params)
            worst = max(relative_difference(a, b) for a, b in zip(got, expected, strict=True))
            tolerance = 1e-4 if dtype == "float32" else 1e-9
            if worst > tolerance:
                row["compiled"] = f"wrong gradients ({worst:.1e})"
            else:
                contenders["compiled"] = compiled_step
        except CompileTimeout:
            row["compiled"] = f"compile > {compile_cap:g} s (stopped)"
        except Exception as error:
            if isinstance(error.__cause__, CompileTimeout) or "CompileTimeout" in str(error):
                row["compiled"] = f"compile > {compile_cap:g} s (stopped)"
            else:
                row["compiled"] = error_text(error)
    else:
        row["compiled"] = "not run"
    row |= take_turns(contenders, runs, warmup=warmup)
    exclude = [x, *params.values()]
    row["saved_eager"] = saved_bytes(lambda: eager(params, x), exclude=exclude)["bytes"]
    if "generated" in contenders:
        row["saved_generated"] = saved_bytes(lambda: net(x), exclude=exclude)["bytes"]
    return row


class CompileTimeout(Exception):
    """torch.compile's first call went past its cap."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CompileTimeout` in the block after ``seconds`` (SIGALRM, main thread)."""
    if not math.isfinite(seconds) or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise CompileTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def grads_of(step: Callable[[], object], x, params: dict) -> list:
    """The gradients one ``step()`` (forward + backward) leaves on x and the parameters."""
    leaves = [x, *params.values()]
    for leaf in leaves:
        leaf.grad = None
    step()
    grads = [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    return grads


def eager_parameters(cell: str, input_size: int, hidden_size: int, dtype) -> dict:
    """Parameters with the cell file's shapes, uniform ±1/√H, for when no generated module
    can be built (so that the eager and compiled loops are still measured)."""
    import torch

    from symbptt.core.cell_definition import Cell

    sizes = {"I": input_size, "H": hidden_size}
    bound = 1 / math.sqrt(hidden_size)
    return {
        name: torch.empty(*(sizes[letter] for letter in shape), dtype=dtype)
        .uniform_(-bound, bound)
        .requires_grad_()
        for name, shape in Cell.from_file(CELLS_DIR / f"{cell}.toml").parameters
    }


def error_text(error: BaseException) -> str:
    """One short table cell for an exception."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"error: {type(error).__name__}: {first}"[:160].replace("|", "/")


# Running each row in a fresh interpreter.


def measure_in_child(args: argparse.Namespace, config: tuple, compiled: bool) -> dict | None:
    """:func:`measure` in a fresh interpreter; None when it ran past the time limit."""
    cell, steps, batch, n_in, n_h, dtype = config
    command = [sys.executable, __file__, "--measure", json.dumps([*config, args.runs])]
    command += ["--warmup", str(args.warmup), "--compile-cap", str(args.compile_cap)]
    command += [] if compiled else ["--no-compile"]
    limit = args.compile_cap + args.timing_cap + 60 if compiled else args.timing_cap
    with tempfile.TemporaryDirectory(prefix="symbptt-inductor-") as cache:
        # a fresh inductor cache: the compile time is a cold compile's, not a cached one's
        env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache}
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=limit, cwd=ROOT, env=env
            )
        except subprocess.TimeoutExpired:
            return None
    if result.returncode != 0:
        text = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return {"eager": f"error: {text}"[:160].replace("|", "/")}
    return json.loads(result.stdout.strip().splitlines()[-1])


def row_figures(args: argparse.Namespace, config: tuple) -> dict:
    """The row for ``config``, torch.compile included; when the run with torch.compile goes
    past its time limit, again without it, the compile recorded as past the cap."""
    row = measure_in_child(args, config, compiled=True)
    if row is None:
        row = measure_in_child(args, config, compiled=False) or {"eager": "error: timed out"}
        row["compiled"] = f"row with it > {args.compile_cap + args.timing_cap + 60:g} s"
    return row


def milliseconds(value) -> str:
    return f"{value * 1e3:.2f}" if isinstance(value, float) else str(value)


def table_row(config: tuple, row: dict) -> tuple[str, bool | None]:
    """The markdown row and whether the target is met (None: not judged)."""
    cell, steps, batch, n_in, n_h, dtype = config
    eager, compiled, generated = row.get("eager"), row.get("compiled"), row.get("generated")
    timed = isinstance(eager, float)

    def ratio(value) -> str:
        return f"{value / eager:.2f}" if timed and isinstance(value, float) else "—"

    compile_s = f"{row['compile_s']:.1f}" if "compile_s" in row else "—"
    saved_e, saved_g = row.get("saved_eager"), row.get("saved_generated")
    saved_ratio = f"{saved_g / saved_e:.3f}" if saved_e and saved_g is not None else "—"
    check = f"{row['check'][0]:.1e}" if "check" in row else "—"
    met = None
    if timed and isinstance(generated, float) and saved_g is not None:
        met = generated <= TIME_TARGET * eager and saved_g <= saved_e
    verdict = {True: "met", False: "not met", None: "—"}[met]
    cells = [
        cell,
        steps,
        batch,
        n_in,
        n_h,
        dtype,
        check,
        milliseconds(eager),
        milliseconds(compiled),
        ratio(compiled),
        compile_s,
        milliseconds(generated),
        ratio(generated),
        f"{saved_e:,}" if saved_e is not None else "—",
        f"{saved_g:,}" if saved_g is not None else "—",
        saved_ratio,
        verdict,
    ]
    return "| " + " | ".join(str(value) for value in cells) + " |", met


def section(args: argparse.Namespace, argv: list[str]) -> tuple[list[str], list[dict]]:
    """The section's markdown lines, and the raw rows."""
    sizes = QUICK_SIZES if args.quick else SIZES
    lines = [
        f"{HEADING} (CPU, {THREADS} threads, forward + backward)",
        "",
        f"Generated by `{shlex.join(['python', 'benchmarks/custom_cells.py', *argv])}`"
        + (" (a `--quick` smoke run: tiny sizes, one round)" if args.quick else "")
        + ".",
        "",
        *machine(),
        "",
        "Cells from `examples/cells/`. *Eager*: the step hand-written in plain torch (row "
        "convention, `x_t @ W.T`, one step at a time in a Python loop over the generated "
        "module's own parameter tensors), autograd doing the backward: the baseline of every "
        "ratio. *Compiled*: `torch.compile` of that loop (default mode); its compile time, "
        "the first forward + backward in a fresh process with an empty inductor cache, is "
        "apart. *Generated*: `symbptt.derive(cell=..., "
        f"loop=True).load()`. Median of {args.runs} rounds, the three taking turns in each, "
        "each row in a fresh process, after "
        f"{args.warmup} untimed round(s); the loss is `output.backward(g)`, g random, "
        "zero initial states. *Check*: the largest relative difference between the generated "
        "module and the eager loop (output, final states, gradients of x and of every "
        f"parameter; float64); a module past {RTOL:g} is not timed. *Saved*: bytes saved for "
        "backward in one forward (`saved_tensors_hooks`, unique storages, parameters and x "
        "excluded; see the saved-activations section). Target: generated ≤ "
        f"{TIME_TARGET:g} × eager time and generated saved ≤ eager saved.",
        "",
        "| cell | T | B | I | H | dtype | check | eager (ms) | compiled (ms) | compiled / eager "
        "| compile (s) | generated (ms) | generated / eager | saved, eager (bytes) "
        "| saved, generated (bytes) | saved ratio | target |",
        "| --- |" + " --- |" * 16,
    ]
    rows = []
    for cell in CELLS:
        for steps, batch, n_in, n_h in sizes:
            for dtype in DTYPES:
                config = (cell, steps, batch, n_in, n_h, dtype)
                start = time.perf_counter()
                row = row_figures(args, config)
                line, met = table_row(config, row)
                print(line, f"[{time.perf_counter() - start:.0f} s]", flush=True)
                lines.append(line)
                rows.append({"config": config, **row, "met": met})
    met = sum(row["met"] is True for row in rows)
    lines += ["", f"Target met in {met} of {len(rows)} rows."]
    return lines, rows


def replace_section(path: Path, lines: list[str]) -> None:
    """Put ``lines`` in ``path`` in place of its section that starts with :data:`HEADING` (up
    to the next ``## `` heading), or at its end when it has none."""
    old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    start = next((i for i, line in enumerate(old) if line.startswith(HEADING)), None)
    if start is None:
        new = old + ([""] if old and old[-1] else []) + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start] + lines + ([""] if end < len(old) else []) + old[end:]
    path.write_text("\n".join(new) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--runs", type=int, help="timed rounds (default 20, 1 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds (default 3, 1 with --quick)")
    parser.add_argument(
        "--compile-cap",
        type=float,
        default=600.0,
        help="seconds allowed to torch.compile's first forward + backward (default 600)",
    )
    parser.add_argument(
        "--timing-cap", type=float, default=900.0, help="seconds allowed to the rest of a row"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.measure:
        cell, steps, batch, n_in, n_h, dtype, runs = json.loads(args.measure)
        row = measure(
            cell,
            steps,
            batch,
            n_in,
            n_h,
            dtype,
            runs,
            args.warmup,
            not args.no_compile,
            args.compile_cap,
        )
        print(json.dumps(row))
        return 0
    lines, _ = section(args, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_section(out, lines)
    print(f"wrote the section to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
