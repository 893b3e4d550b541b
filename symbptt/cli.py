"""The ``symbptt`` command: ``derive``, ``latex`` and ``verify``.

Every error symbptt raises on purpose, and every bad option, becomes one line on stderr and
exit status 2; a mismatch found by verification is exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import CodegenError, SymbpttError
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
        metavar="{" + ",".join(CELLS) + "}",
        help="torch module to derive (default rnn)",
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


def derivation_from_args(args: argparse.Namespace):
    from .derivation import derive

    return derive(
        steps=args.steps,
        input_size=args.input_size,
        hidden_size=args.hidden_size,
        nonlinearity=args.nonlinearity,
        bias=args.bias,
        loop=args.loop,
        cell=args.cell,
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
    from .spec import check_module_name

    derivation = derivation_from_args(args)
    name = check_module_name(args.name or derivation.spec.default_name)
    module_path = Path(args.out) / f"{name}.py"
    source = derivation.render(name)
    outputs = [(module_path, source)]
    if args.latex:
        outputs.append((Path(args.latex), _document(derivation, Path(args.latex))))
    for path, _ in outputs:  # refuse before anything is written
        check_writable(path, force=args.force)
    print(derivation.to_text(width=terminal_width()))
    print()
    for path, content in outputs:
        write_generated(path, content, force=args.force)
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
    write_generated(path, content, force=args.force)
    print(f"wrote {path}")
    if args.pdf:
        from .printing.document import compile_pdf

        print(f"wrote {compile_pdf(path)}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    warnings.showwarning = _show_warning
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SymbpttError as exc:
        print(f"symbptt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symbptt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) has gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
