"""The layer options of the command line, shared by every command that derives: declared once
(:func:`add_spec_options`) and turned into a derivation (:func:`derivation_from_args`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .core.cell_definition import Cell
from .core.spec import CELLS
from .errors import SpecError

if TYPE_CHECKING:
    from .api import Derivation


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    """The layer options every command that derives takes (``--cell``, ``--steps``, ...)."""
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


def cell_from_args(value: str) -> str | Cell:
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
    return Cell.from_file(value)


def derivation_from_args(args: argparse.Namespace) -> Derivation:
    """The derivation the parsed layer options ask for."""
    from .api import derive  # SymPy and the printers load only when a command derives

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
