"""The ``symbptt`` command: ``derive``, ``latex`` and ``verify``.

Every error symbptt raises on purpose, and every bad option, becomes one line on stderr and
exit status 2; a mismatch found by verification is exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from .arguments import add_spec_options, derivation_from_args
from .check import command as check_command
from .errors import CodegenError, SymbpttError
from .explain import command as explain_command
from .flow import command as flow_command
from .scalar import command as scalar_command
from .terminal import terminal_width

LEARNER_COMMANDS = {
    "explain": explain_command,
    "check": check_command,
    "flow": flow_command,
    "scalar-view": scalar_command,
}
"""Subcommands and the modules that define them (HELP, SPEC_OPTIONS, add_arguments, run)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _document(derivation, path: Path) -> str:
    if path.suffix == ".tex":
        return derivation.to_latex()
    if path.suffix == ".md":
        return derivation.to_markdown()
    raise CodegenError(f"{path}: the document must end in .tex (LaTeX) or .md (Markdown)")


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
        from .verification.verify import verify_cost

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
    from .verification.verify import verify

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
    from .verification.verify import verify

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
    add_spec_options(derive)
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
    add_spec_options(latex)
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
    add_spec_options(check)
    check.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    check.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    check.add_argument(
        "--seed", type=int, default=0, help="seeds weights, input and cotangents (0 to 2**63 - 1)"
    )
    check.add_argument("--batch", type=int, default=3, help="batch size, positive (default 3)")
    check.set_defaults(run=_run_verify)
    for name, module in LEARNER_COMMANDS.items():
        command = commands.add_parser(name, help=module.HELP, description=module.__doc__)
        if module.SPEC_OPTIONS:
            add_spec_options(command)
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
