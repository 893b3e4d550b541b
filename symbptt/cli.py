"""The ``symbptt`` command: ``derive``, ``latex`` and ``verify``.

Every error symbptt raises on purpose, and every bad option, becomes one line on stderr and
exit status 2; a mismatch found by verification is exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import shutil
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import CodegenError, SpecError, SymbpttError
from .spec import CELLS

LEARNER_COMMANDS = {
    "explain": "explain",
    "check": "check",
    "flow": "flow",
    "scalar-view": "scalar_cli",
}
"""Subcommands and the modules that define them (HELP, SPEC_OPTIONS, add_arguments, run)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("layer (defaults: the founding case, nn.RNN(1, 2), 3 steps)")
    group.add_argument(
        "--cell",
        default="rnn",
        metavar="{" + ",".join(CELLS) + "} or FILE.toml",
        help="torch module to derive (default rnn), or a cell file (see examples/cells/)",
    )
    group.add_argument("--steps", type=int, help="time steps T (default 3; cells are 1 step)")
    group.add_argument("--input-size", type=int, default=1, help="input_size I (default 1)")
    group.add_argument("--hidden-size", type=int, default=2, help="hidden_size H (default 2)")
    group.add_argument("--proj-size", type=int, default=0, help="proj_size P (lstm only)")
    group.add_argument("--nonlinearity", default="tanh", help="tanh (default) or relu (rnn)")
    group.add_argument("--no-bias", dest="bias", action="store_false", help="bias=False")
    group.add_argument("--num-layers", type=int, default=1, help="stacked layers (default 1)")
    group.add_argument("--bidirectional", action="store_true", help="two directions per layer")
    group.add_argument(
        "--dropout", type=float, default=0.0, help="dropout between layers, in [0, 1) (default 0)"
    )
    group.add_argument(
        "--packed", action="store_true", help="accept PackedSequence input (variable lengths)"
    )
    group.add_argument(
        "--truncate",
        type=int,
        default=0,
        metavar="K",
        help="k-step truncated BPTT: the carried state is detached every K steps",
    )
    form = group.add_mutually_exclusive_group()
    form.add_argument(
        "--loop",
        dest="loop",
        action="store_true",
        default=None,
        help="generated code loops over steps (default above 16 steps)",
    )
    form.add_argument(
        "--unrolled", dest="loop", action="store_false", help="generated code writes every step out"
    )


def cell_from_args(value: str):
    """``--cell``: one of torch's (``lstm``) or a cell file's path, read as a Cell.

    Raises:
        SpecError: neither (the file's problems come as ``FILE:LINE:COL: message``).
    """
    if value in CELLS:
        return value
    if not value.endswith(".toml") and not Path(value).exists():
        raise SpecError(
            f"unknown cell {value!r}; choose one of {', '.join(CELLS)}, or give a cell file "
            "(FILE.toml, see examples/cells/)"
        )
    from .cell_definition import Cell

    return Cell.from_file(value)


def derivation_from_args(args: argparse.Namespace):
    from .derivation import derive

    return derive(
        steps=args.steps,
        input_size=args.input_size,
        hidden_size=args.hidden_size,
        nonlinearity=args.nonlinearity,
        bias=args.bias,
        loop=args.loop,
        cell=cell_from_args(args.cell),
        proj_size=args.proj_size,
        num_layers=args.num_layers,
        bidirectional=args.bidirectional,
        dropout=args.dropout,
        packed=args.packed,
        truncate=args.truncate,
    )


def _document(derivation, path: Path) -> str:
    if path.suffix == ".tex":
        return derivation.to_latex()
    if path.suffix == ".md":
        return derivation.to_markdown()
    raise CodegenError(f"{path}: the document must end in .tex (LaTeX) or .md (Markdown)")


def terminal_width() -> int:
    """Columns to wrap output at: the terminal's, kept between 60 and 100."""
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _print_report(report) -> int:
    print()
    print(textwrap.fill("Verification: " + report.description, width=terminal_width()))
    print(report.table())
    print(report.summary())
    return 0 if report.ok else 1


def _run_derive(args: argparse.Namespace) -> int:
    from .fileio import check_writable, write_generated

    derivation = derivation_from_args(args)
    name = derivation.module_name(args.name)
    module_path = Path(args.out) / f"{name}.py"
    outputs = [(module_path, derivation.render(name))]
    if args.latex:
        outputs.append((Path(args.latex), _document(derivation, Path(args.latex))))
    for path, _ in outputs:  # refuse before anything is written
        check_writable(path, force=args.force)
    if not args.no_verify:  # a verification too large to run is refused before writing too
        from .limits import require
        from .verify import verify_cost

        require(verify_cost(derivation.spec), announce=False)  # verify announces it
    for path, content in outputs:  # and write before printing: stdout cannot stop it
        write_generated(path, content, force=args.force)
    print(derivation.to_text(width=terminal_width()))
    print()
    for path, _ in outputs:
        print(f"wrote {path}")
    if args.no_verify:
        return 0
    from .codegen import load_module_file
    from .verify import verify

    return _print_report(verify(derivation, module=load_module_file(module_path)))


def _run_latex(args: argparse.Namespace) -> int:
    from .fileio import check_writable, write_generated

    derivation = derivation_from_args(args)
    path = Path(args.output)
    if args.pdf and path.suffix != ".tex":
        raise CodegenError("--pdf needs a .tex output file")
    content = _document(derivation, path)
    check_writable(path, force=args.force)
    if args.pdf:  # refuse the PDF, or a missing pdflatex, before the .tex is written
        from .printing.document import compile_pdf, find_pdflatex

        find_pdflatex()
        check_writable(path.with_suffix(".pdf"), force=args.force)
    write_generated(path, content, force=args.force)
    print(f"wrote {path}")
    if args.pdf:
        print(f"wrote {compile_pdf(path, force=args.force)}")
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    derivation = derivation_from_args(args)
    report = verify(
        derivation, device=args.device, dtype=args.dtype, seed=args.seed, batch=args.batch
    )
    print(f"BPTT for {derivation.spec.describe()}")
    return _print_report(report)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="symbptt",
        description="Derive backpropagation through time for torch's recurrent layers "
        "(RNN, LSTM, GRU and their cells) symbolically, show the equations, generate PyTorch "
        "code and verify it against torch autograd.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    derive = commands.add_parser(
        "derive",
        help="print the derivation, write the generated module, verify it",
        description="Print the derivation, write <out>/<name>.py and verify it against torch.",
    )
    _spec_options(derive)
    derive.add_argument("--out", default="generated", help="folder for the module (generated)")
    derive.add_argument("--name", help="module name (default like rnn_tanh_t3_i1_h2)")
    derive.add_argument("--latex", metavar="FILE", help="also write the document (.tex or .md)")
    derive.add_argument("--no-verify", action="store_true", help="skip the check against torch")
    derive.add_argument(
        "--force", action="store_true", help="overwrite files that symbptt did not generate"
    )
    derive.set_defaults(run=_run_derive)

    latex = commands.add_parser(
        "latex",
        help="write the derivation as LaTeX or Markdown",
        description="Write the derivation as a .tex or .md document.",
    )
    _spec_options(latex)
    latex.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.tex or FILE.md")
    latex.add_argument("--pdf", action="store_true", help="also compile FILE.tex with pdflatex")
    latex.add_argument(
        "--force", action="store_true", help="overwrite a file that symbptt did not generate"
    )
    latex.set_defaults(run=_run_latex)

    check = commands.add_parser(
        "verify",
        help="compare generated gradients with torch's (exit 1 on mismatch)",
        description="Generate the module in memory and compare it with torch's own module.",
    )
    _spec_options(check)
    check.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    check.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    check.add_argument(
        "--seed", type=int, default=0, help="seeds weights, input and cotangents (0 to 2**63 - 1)"
    )
    check.add_argument("--batch", type=int, default=3, help="batch size, positive (default 3)")
    check.set_defaults(run=_run_verify)
    for name, module_name in LEARNER_COMMANDS.items():
        module = importlib.import_module(f"symbptt.{module_name}")
        command = commands.add_parser(name, help=module.HELP, description=module.__doc__)
        if module.SPEC_OPTIONS:
            _spec_options(command)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"symbptt: warning: {message}", file=sys.stderr)


class _GuardedStdout:
    """``sys.stdout`` while a command runs: trouble with stdout stops the printing, not the work.

    The first ``OSError`` writing it (the reader of a pipe has gone, a full disk) is kept in
    ``error`` and the stream's file descriptor is pointed at /dev/null, so the command still
    writes its files and runs its verification, and nothing fails again at exit. Text the
    stream's encoding cannot represent (``PYTHONIOENCODING=ascii``, a Latin-1 terminal) is
    written with backslash escapes (``\\u2202`` for ∂).
    """

    def __init__(self, stream) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        """Write ``text`` unless stdout has failed; report it written either way."""
        if self.error is None:
            try:
                try:
                    self.stream.write(text)
                except UnicodeEncodeError:
                    encoding = self.stream.encoding
                    self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        """Flush unless stdout has failed."""
        if self.error is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):  # no descriptor (an in-memory stream): nothing to redirect
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


OUT_OF_MEMORY_MESSAGES = ("can't allocate memory", "out of memory")
"""Words of torch's RuntimeErrors for a failed allocation (CPU allocator, CUDA)."""


def _fail(message: str) -> int:
    print(f"symbptt: error: {message}", file=sys.stderr)
    return 2


def _run(argv: Sequence[str] | None) -> int:
    """Parse and run one command; every expected failure becomes one line on stderr."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad option already reported in one line
        return int(done.code or 0)
    try:
        return args.run(args)
    except SymbpttError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("symbptt: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail("out of memory; try fewer steps or smaller sizes")
    except RuntimeError as exc:  # torch's failed allocations; any other is a bug, shown whole
        if not any(words in str(exc) for words in OUT_OF_MEMORY_MESSAGES):
            raise
        detail = next(iter(str(exc).strip().splitlines()), "")[:200]
        return _fail(f"out of memory ({detail}); try fewer steps or smaller sizes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done; 1: verification found a mismatch; 2: bad input or any failure reported on stderr
    in one line (out of memory, stdout unwritable: a full disk; a reader that has gone, as in
    ``| head``, is not a failure and is not reported); 130: interrupted.
    """
    warnings.showwarning = _show_warning
    stdout = _GuardedStdout(sys.stdout)
    sys.stdout = stdout
    try:
        status = _run(argv)
        stdout.flush()
    finally:
        sys.stdout = stdout.stream
    error = stdout.error
    if error is not None and error.errno != errno.EPIPE and status in (0, 1):
        return _fail(f"cannot write to stdout: {error.strerror or error}")
    return status
