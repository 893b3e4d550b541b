"""Find where a hand derivation of BPTT for torch.nn.RNN goes wrong.

FILE defines manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n) for an
unbatched nn.RNN: x of shape (T, input_size), h0 and grad_h_n of shape (hidden_size,), grad_h_n
the cotangent on the final hidden state (ones for L = h_T.sum()), weights in torch's layout. It
returns a dict with any of the keys weight_ih, weight_hh, bias_ih, bias_hh, h0. The file runs in
a child process with a time limit. T and the sizes are inferred by calling it (layer options
override them); every returned gradient is compared with the derivation in float64 at several
random points. For each wrong one: which per-step terms are wrong, the first T where it goes
wrong (when the file accepts other lengths), which catalogued mistake reproduces the numbers,
and the correct terms in the file's own notation. Exit status 0: all match; 1: a mismatch; 2:
the file cannot be run (its traceback, trimmed to the file) or bad options.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..errors import SpecError
from ..verification.verify import check_seed
from .runner import FUNCTION, SIGNATURE

HELP = "find where a hand-derived RNN gradient goes wrong (exit 1 on a mismatch)"
SPEC_OPTIONS = True

FILE_RULES = (
    (lambda text: not text.strip(), "FILE.py is empty: name a Python file"),
    (lambda text: not Path(text).exists(), "{file}: no such file"),
    (lambda text: Path(text).is_dir(), "{file} is a folder; name the file defining " + FUNCTION),
    (lambda text: not Path(text).is_file(), "{file} is not a regular file"),
)
"""What FILE must be before a child process runs it: the test that fails it and the message."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.py", help=f"a Python file that defines {SIGNATURE}")
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="time limit for each batch of calls to the file's function (default 20)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the test points, 0 to 2**63 - 1 (default 0)"
    )
    # None: infer from the file unless given (the layer options' own defaults are the founding
    # case's, which would hide what the file says)
    parser.set_defaults(input_size=None, hidden_size=None, nonlinearity=None)


def run(args: argparse.Namespace) -> int:
    unsupported = [
        name
        for name, value, default in (
            ("--cell", args.cell, "rnn"),
            ("--proj-size", args.proj_size, 0),
            ("--num-layers", args.num_layers, 1),
            ("--bidirectional", args.bidirectional, False),
            ("--dropout", args.dropout, 0.0),
            ("--packed", args.packed, False),
            ("--truncate", getattr(args, "truncate", 0), 0),
        )
        if value != default
    ]
    if unsupported:
        raise SpecError(
            f"check handles one unbatched torch.nn.RNN layer; {', '.join(unsupported)} "
            "is not supported"
        )
    for fails, message in FILE_RULES:
        if fails(args.file):
            raise SpecError(message.format(file=args.file))
    check_seed(args.seed)
    from .diagnose import check_file
    from .process import UserCodeError

    try:
        report = check_file(
            args.file,
            steps=args.steps,
            input_size=args.input_size,
            hidden_size=args.hidden_size,
            nonlinearity=args.nonlinearity,
            bias=args.bias,
            timeout=args.timeout,
            seed=args.seed,
        )
    except UserCodeError as exc:
        if args.format == "json":
            error = {"file": args.file, "status": "error", "error": str(exc)}
            print(json.dumps({**error, "traceback": exc.details}, indent=2))
        else:
            print(f"symbptt check: error: {exc}", file=sys.stderr)
            if exc.details:
                print(exc.details, file=sys.stderr)
        return 2
    if args.format == "json":
        print(report.to_json())
    else:
        width = max(60, min(100, shutil.get_terminal_size((100, 24)).columns))
        print(report.to_text(width))
    return 0 if report.ok else 1
