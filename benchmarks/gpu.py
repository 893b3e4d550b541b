"""symbptt's generated modules on a GPU, against torch's own modules (cuDNN).

    PYTHONPATH=. python benchmarks/gpu.py [--device cuda] [--out docs/benchmarks-gpu.md]
                                          [--quick] [--runs N] [--no-graphs] [--tf32]

A prepared script, run once on a lent GPU machine, that measures:

1. Correctness on the device: ``symbptt.verification.verify.compare`` of the generated module
against
   ``torch.nn.RNN`` / ``LSTM`` (also with ``proj_size``) / ``GRU`` (cuDNN on CUDA) at small
   sizes, float64 (tolerance 1e-10) and float32 (1e-4, see ``symbptt/verify.py``), TF32 off.
2. Speed, float32, forward + backward (``output.backward(cotangent)``): median milliseconds of
   ``--runs`` runs after warm-up, synchronized around every run; ratio generated / cuDNN, and
   the ratio of peak GPU memory of one forward + backward.
3. With CUDA graphs (on by default on CUDA, ``--no-graphs`` to skip): one whole forward +
   backward step of each module captured with ``torch.cuda.graph``; median replay time.

Every case runs on its own: a failure is written into its table cell and the rest goes on.
Results are printed and written to the markdown file as they come. ``--quick`` and
``--device cpu`` use tiny sizes and few runs, to exercise the script end to end without a GPU.
Speed rows not started ``--budget`` seconds (default 150) after the start are marked skipped.
``main`` returns 1 when a correctness check fails (2 when the device is unavailable).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

import symbptt
from symbptt.verification.agreement import TOLERANCE, torch_reference
from symbptt.verification.verify import compare

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("rnn", "lstm", "gru")
TARGET = 1.5  # generated / cuDNN time ratio aimed at
SEED = 0


@dataclass(frozen=True)
class Case:
    """One correctness case: a derivation's sizes and the batch fed to it."""

    cell: str
    steps: int
    input_size: int
    hidden_size: int
    proj_size: int
    batch: int


@dataclass(frozen=True)
class Size:
    """One speed case's sizes: steps, batch, input, hidden."""

    steps: int
    batch: int
    input_size: int
    hidden_size: int


SMALL = ((10, 3, 4, 5), (7, 5, 3, 2))  # (T, I, H, B); the second one non-square
SPEED_SIZES = (Size(100, 64, 256, 256), Size(100, 256, 512, 512), Size(500, 64, 256, 256))
QUICK_SIZES = (Size(5, 2, 3, 4), Size(20, 3, 4, 6))


class Markdown:
    """Lines of the report: each one printed as it comes, the file rewritten every time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line)
            print(line, flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def cell_text(error: BaseException) -> str:
    """An exception as one short table cell (first line, no pipes), its traceback to stderr."""
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()
    first = (str(error).strip().splitlines() or [""])[0]
    return f"error: {type(error).__name__}: {first}"[:160].replace("|", "/")


def row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def heading(*names: str) -> list[str]:
    return [row(*names), row(*(["---"] * len(names)))]


@functools.cache
def derivation(
    cell: str, steps: int, input_size: int, hidden_size: int, proj_size: int = 0
) -> symbptt.Derivation:
    return symbptt.derive(
        cell=cell,
        steps=steps,
        input_size=input_size,
        hidden_size=hidden_size,
        proj_size=proj_size,
    )


@functools.cache
def generated_module(cell: str, steps: int, input_size: int, hidden_size: int, proj_size: int = 0):
    return derivation(cell, steps, input_size, hidden_size, proj_size).load()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 on or off for cuDNN and cuBLAS matmuls within the block."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ----------------------------------------------------------------------------- header


def card_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {platform.processor() or platform.machine()}"


def driver_version() -> str:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout.strip().splitlines()[0]
    except Exception:  # optional detail
        return "unknown"


def machine_line(device: str, use_tf32: bool) -> str:
    parts = [card_name(device)]
    if device == "cuda":
        properties = torch.cuda.get_device_properties(torch.cuda.current_device())
        parts += [
            f"{properties.total_memory / 2**30:.0f} GiB",
            f"{properties.multi_processor_count} SMs",
            f"driver {driver_version()}",
        ]
    parts += [
        f"torch {torch.__version__}",
        f"CUDA {torch.version.cuda}",
        f"cuDNN {torch.backends.cudnn.version()}",
        f"Python {platform.python_version()}",
        f"TF32 {'on' if use_tf32 else 'off'} in the speed tables",
    ]
    return ", ".join(parts)


def header(report: Markdown, device: str, command: str, use_tf32: bool) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.add(
        f"# symbptt on {card_name(device)}: generated modules against torch's",
        "",
        f"Machine: {machine_line(device, use_tf32)}.",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {now}.",
        "",
    )


# ------------------------------------------------------------------------ correctness


def correctness_cases(quick: bool) -> list[Case]:
    cases = []
    for steps, n_in, n_h, batch in SMALL:
        for cell, proj in (("rnn", 0), ("lstm", 0), ("lstm", min(2, n_h - 1)), ("gru", 0)):
            cases.append(Case(cell, steps, n_in, n_h, proj, batch))
    if not quick:
        first = SPEED_SIZES[0]
        for cell in CELLS:
            cases.append(Case(cell, first.steps, first.input_size, first.hidden_size, 0, 16))
    return cases


def check_case(case: Case, device: str, dtype: str) -> tuple[str, bool]:
    """The table cells of one comparison (error, worst quantity, verdict) and whether it passed."""
    d = derivation(case.cell, case.steps, case.input_size, case.hidden_size, case.proj_size)
    module = generated_module(
        case.cell, case.steps, case.input_size, case.hidden_size, case.proj_size
    )
    with tf32(False):
        result = compare(d, module, device=device, dtype=dtype, seed=SEED, batch=case.batch)
    worst = max(result.checks, key=lambda check: check.rel_error)
    verdict = "passed" if result.ok else "FAILED"
    cells = f"{result.max_error:.2e} | {worst.name} | {TOLERANCE[dtype]:.0e} | {verdict}"
    return cells, result.ok


def correctness(report: Markdown, device: str, quick: bool) -> bool:
    """The correctness table; True when every case passed."""
    card = card_name(device)
    reference = "cuDNN" if device == "cuda" else "torch CPU"
    report.add(
        f"## Correctness on {card}: generated module vs torch.nn ({reference})",
        "",
        "`symbptt.verification.verify.compare`: same weights, random input, initial state and "
        "cotangents on "
        "every output (seed 0); max relative error `max|a − b| / max|b|` over the outputs and "
        "every gradient. TF32 off.",
        "",
        *heading(
            "device",
            "cell",
            "T",
            "I",
            "H",
            "proj",
            "B",
            "dtype",
            "max rel error",
            "worst",
            "tolerance",
            "result",
        ),
    )
    all_ok = True
    for case in correctness_cases(quick):
        label = "lstm (proj)" if case.proj_size else case.cell
        sizes = (case.steps, case.input_size, case.hidden_size, case.proj_size, case.batch)
        for dtype in ("float64", "float32"):
            try:
                cells, ok = check_case(case, device, dtype)
            except Exception as error:  # reported in the table
                cells, ok = f"{cell_text(error)} | | {TOLERANCE[dtype]:.0e} | FAILED", False
            all_ok = all_ok and ok
            report.add(row(card, label, *sizes, dtype, cells))
    verdict = "all passed" if all_ok else "SOME FAILED"
    report.add("", f"Correctness on {card}: {verdict}.", "")
    return all_ok


# ------------------------------------------------------------------------------ speed


@dataclass
class Pair:
    """The generated module and torch's, same weights, with a static input and cotangent."""

    generated: torch.nn.Module
    reference: torch.nn.Module
    x: torch.Tensor
    cotangent: torch.Tensor


def build_pair(cell: str, size: Size, device: str) -> Pair:
    d = derivation(cell, size.steps, size.input_size, size.hidden_size)
    module = generated_module(cell, size.steps, size.input_size, size.hidden_size)
    torch.manual_seed(SEED)
    reference = torch_reference(d.spec, device, torch.float32)
    generated = getattr(module, d.spec.torch_class)(device=device, dtype=torch.float32)
    generated.load_state_dict(reference.state_dict())
    generator = torch.Generator(device=device).manual_seed(SEED)
    options = {"generator": generator, "device": device, "dtype": torch.float32}
    x = torch.randn(size.steps, size.batch, size.input_size, **options).requires_grad_()
    cotangent = torch.randn(size.steps, size.batch, d.spec.output_size, **options)
    return Pair(generated, reference, x, cotangent)


def step(layer: torch.nn.Module, x: torch.Tensor, cotangent: torch.Tensor) -> None:
    """One forward + backward, gradients set to None first."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    output, _ = layer(x)
    output.backward(cotangent)


def median_ms(run: Callable[[], None], device: str, runs: int, warmup: int) -> float:
    """Median milliseconds of ``run``, synchronized before and after each run."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def peak_memory(layer: torch.nn.Module, x: torch.Tensor, cotangent: torch.Tensor) -> int:
    """Bytes allocated at the peak of one forward + backward, above what was held before."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step(layer, x, cotangent)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def gradients(layer: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [x.grad.detach().clone()] + [p.grad.detach().clone() for p in layer.parameters()]


def max_rel_diff(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        scale = b.abs().max().item() or 1.0
        worst = max(worst, (a - b).abs().max().item() / scale)
    return worst


def graph_replay_ms(
    layer: torch.nn.Module, x: torch.Tensor, cotangent: torch.Tensor, runs: int, warmup: int
) -> tuple[float, float]:
    """Capture one forward + backward in a CUDA graph; median replay ms, and the max relative
    difference of the replayed gradients from an eager step's."""
    step(layer, x, cotangent)
    eager = gradients(layer, x)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as torch's docs prescribe
        for _ in range(3):
            step(layer, x, cotangent)
    torch.cuda.current_stream().wait_stream(stream)
    layer.zero_grad(set_to_none=True)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        output, _ = layer(x)
        output.backward(cotangent)
    graph.replay()
    torch.cuda.synchronize()
    difference = max_rel_diff(gradients(layer, x), eager)
    milliseconds = median_ms(graph.replay, "cuda", runs, warmup)
    del graph
    layer.zero_grad(set_to_none=True)
    x.grad = None
    return milliseconds, difference


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}"


def eager_cells(pair: Pair, device: str, runs: int, warmup: int) -> list[str]:
    """generated ms, reference ms, ratio, target verdict."""
    times = []
    for layer in (pair.generated, pair.reference):
        times.append(
            median_ms(lambda layer=layer: step(layer, pair.x, pair.cotangent), device, runs, warmup)
        )
    ours, theirs = times
    verdict = "ok" if ours / theirs <= TARGET else "over"
    return [f"{ours:.3f}", f"{theirs:.3f}", ratio_text(ours, theirs), verdict]


def memory_cells(pair: Pair) -> list[str]:
    """generated MiB, reference MiB, ratio."""
    ours = peak_memory(pair.generated, pair.x, pair.cotangent)
    theirs = peak_memory(pair.reference, pair.x, pair.cotangent)
    return [f"{ours / 2**20:.1f}", f"{theirs / 2**20:.1f}", ratio_text(ours, theirs)]


def graph_cells(pair: Pair, runs: int, warmup: int) -> list[str]:
    """generated replay ms, reference replay ms, ratio; an error text where capture failed."""
    results: list[float | None] = []
    cells = []
    for layer in (pair.generated, pair.reference):
        try:
            milliseconds, difference = graph_replay_ms(layer, pair.x, pair.cotangent, runs, warmup)
        except Exception as error:  # reported in the table
            results.append(None)
            cells.append(cell_text(error))
            with contextlib.suppress(Exception):
                torch.cuda.synchronize()
            continue
        results.append(milliseconds)
        note = "" if difference <= TOLERANCE["float32"] else f" (grads differ {difference:.1e})"
        cells.append(f"{milliseconds:.3f}{note}")
    ours, theirs = results
    cells.append(ratio_text(ours, theirs) if ours is not None and theirs is not None else "–")
    return cells


def speed_columns(device: str, graphs: bool) -> list[str]:
    reference = "cuDNN" if device == "cuda" else "torch CPU"
    names = [
        "device",
        "cell",
        "T",
        "B",
        "I",
        "H",
        "generated (ms)",
        f"{reference} (ms)",
        "ratio",
        f"≤ {TARGET}×",
    ]
    if device == "cuda":
        names += ["peak mem generated (MiB)", f"peak mem {reference} (MiB)", "mem ratio"]
    if graphs:
        names += ["graph generated (ms)", f"graph {reference} (ms)", "graph ratio"]
    return names


def speed_row(cell: str, size: Size, device: str, graphs: bool, runs: int, warmup: int) -> list:
    """The measured cells of one speed row; an error in any group fills that group's cells."""
    columns = len(speed_columns(device, graphs)) - 6
    try:
        pair = build_pair(cell, size, device)
    except Exception as error:  # reported in the table
        return [cell_text(error)] + [""] * (columns - 1)
    cells = measure(pair, device, graphs, runs, warmup)
    del pair
    if device == "cuda":
        torch.cuda.empty_cache()
    return cells


def measure(pair: Pair, device: str, graphs: bool, runs: int, warmup: int) -> list[str]:
    cells = group(lambda: eager_cells(pair, device, runs, warmup), 4)
    if device == "cuda":
        cells += group(lambda: memory_cells(pair), 3)
    if graphs:
        cells += group(lambda: graph_cells(pair, runs, warmup), 3)
    return cells


def group(compute: Callable[[], list[str]], width: int) -> list[str]:
    """``compute()``, or the error in the first of ``width`` cells."""
    try:
        return compute()
    except Exception as error:  # reported in the table
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()
        return [cell_text(error)] + [""] * (width - 1)


def speed(report: Markdown, args: argparse.Namespace, graphs: bool, deadline: float) -> None:
    card = card_name(args.device)
    reference = "cuDNN" if args.device == "cuda" else "torch CPU"
    sizes = QUICK_SIZES if args.quick else SPEED_SIZES
    warmup = 1 if args.quick else 3
    precision = (
        "TF32 on for both (`--tf32`)."
        if args.tf32
        else "TF32 off for both (cuDNN's default for RNNs is on; `--tf32` turns it on for both)."
    )
    memory_note = (
        " Peak memory: `max_memory_allocated` during one forward + backward, above what was "
        "allocated before."
        if args.device == "cuda"
        else ""
    )
    graph_note = (
        " Graph columns: one forward + backward captured with `torch.cuda.graph` (warm-up on a "
        "side stream, gradients set to None before capture), median replay time; a note "
        "follows the time when the replayed gradients differ from an eager step's."
        if graphs
        else ""
    )
    report.add(
        f"## Speed on {card}: float32 forward + backward, generated vs {reference}",
        "",
        f"`output.backward(cotangent)` with the input requiring grad; median of {args.runs} runs "
        f"after {warmup} warm-up, synchronized around each run; ratio = generated / {reference} "
        f"(target ≤ {TARGET}×). {precision}{memory_note}{graph_note}",
        "",
        *heading(*speed_columns(args.device, graphs)),
    )
    for size in sizes:
        for cell in CELLS:
            sizes_cells = (size.steps, size.batch, size.input_size, size.hidden_size)
            if time.perf_counter() > deadline:
                report.add(row(card, cell, *sizes_cells, "skipped: time budget spent"))
                continue
            with tf32(args.tf32):
                cells = speed_row(cell, size, args.device, graphs, args.runs, warmup)
            report.add(row(card, cell, *sizes_cells, *cells))
    report.add("")


# ------------------------------------------------------------------------------- main


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-gpu.md"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few runs")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 20, quick 3)")
    parser.add_argument("--no-graphs", action="store_true", help="skip the CUDA graph columns")
    parser.add_argument("--tf32", action="store_true", help="TF32 on for both in the speed runs")
    parser.add_argument(
        "--budget", type=float, default=150.0, help="seconds after which speed rows are skipped"
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 20
    return args


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr, flush=True)
        return 2
    command = shlex.join(["python", "benchmarks/gpu.py", *argv])
    graphs = args.device == "cuda" and not args.no_graphs
    report = Markdown(Path(args.out))
    ok = False
    devices = [torch.cuda.current_device()] if args.device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            header(report, args.device, command, args.tf32)
        except Exception as error:  # reported in the file
            report.add(f"# symbptt on a GPU\n\nHeader failed: {cell_text(error)}\n")
        try:
            ok = correctness(report, args.device, args.quick)
        except Exception as error:  # reported in the file
            report.add(f"Correctness section failed: {cell_text(error)}", "")
        try:
            speed(report, args, graphs, start + args.budget)
        except Exception as error:  # reported in the file
            report.add(f"Speed section failed: {cell_text(error)}", "")
    verdict = "passed" if ok else "FAILED"
    report.add(f"Total: correctness {verdict}; {time.perf_counter() - start:.1f} s wall.")
    print(f"wrote {args.out}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
