"""Run BPTT once with numbers and explain it: the forward values of every step, δ of every
step, and every parameter gradient as the sum of one term per step, with each step's share,
checked against torch autograd's .grad for the same weights and input (float64, one sample).

Weights are torch's own initialisation under torch.manual_seed(SEED) (default 0), or a
state_dict saved with torch.save (--weights). The input is a tensor saved with torch.save, of
shape (T, input_size) for a layer or (input_size,) for a cell, or a comma-separated list of
numbers: one per step for a layer with --input-size 1 (--input 1,2,3; write --input=-1,2,3
when the first is negative), or the input_size entries of a cell's x. Without --input, x is
drawn from N(0, 1) with the seed. With --input and no --steps, T is the input's length.
The loss is L = h_n.sum() (--loss h_n: gₜ = 0, gₙ = 1, c_n's cotangent 0) or L = output.sum()
(--loss output: gₜ = 1, gₙ = 0).
"""

from __future__ import annotations

import argparse

from ..errors import SpecError
from ..terminal import terminal_width
from ..verification.numeric_inputs import LOSSES as ACCEPTED_LOSSES
from ..verification.numeric_inputs import read_input, read_weights, unbatched_input
from . import Explanation, explain
from .ledger import check_single_layer

__all__ = ["HELP", "SPEC_OPTIONS", "Explanation", "add_arguments", "explain", "run"]

HELP = "run BPTT once with numbers: values and δ per step, each step's share of every gradient"
SPEC_OPTIONS = True


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("weights, input and loss")
    weights = source.add_mutually_exclusive_group()
    weights.add_argument(
        "--seed",
        type=int,
        help="torch's own init under torch.manual_seed(SEED), and the random input (default 0)",
    )
    weights.add_argument(
        "--weights", metavar="FILE", help="a state_dict saved with torch.save (names as torch's)"
    )
    source.add_argument(
        "--input",
        metavar="FILE|LIST",
        help="x saved with torch.save, (T, input_size) or a cell's (input_size,); or numbers "
        "like 1,2,3 (one per step for --input-size 1; a cell's entries)",
    )
    source.add_argument(
        "--loss",
        choices=tuple(ACCEPTED_LOSSES),
        default="h_n",
        metavar="{h_n,output}",
        help="h_n: L = h_n.sum() (default; hn also accepted); output: L = output.sum()",
    )
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="aligned terminal tables (default), Markdown tables or one JSON object",
    )


def run(args: argparse.Namespace) -> int:
    from ..arguments import derivation_from_args

    check_single_layer(args)  # before the Spec, which warns about --dropout on one layer
    seed = 0 if args.seed is None else args.seed
    if not 0 <= seed < 2**63:
        raise SpecError(f"--seed must be an integer from 0 to 2**63 - 1, got {seed}")
    raw_input = read_input(args.input, numbers=True) if args.input is not None else None
    args = argparse.Namespace(**vars(args))
    if raw_input is not None and args.steps is None and not args.cell.endswith("_cell"):
        args.steps = len(raw_input)  # T from the input when --steps is left out
    derivation = derivation_from_args(args)
    spec = derivation.spec
    check_single_layer(spec)
    x = unbatched_input(raw_input, spec, args.input) if raw_input is not None else None
    weights = read_weights(args.weights, spec) if args.weights else None
    explanation = explain(
        derivation,
        weights=weights,
        x=x,
        seed=seed,
        loss=args.loss,
        weights_source=f"from {args.weights}" if args.weights else None,
        input_source=f"from --input {args.input}" if args.input is not None else None,
    )
    if args.format == "json":
        print(explanation.to_json())
    elif args.format == "markdown":
        print(explanation.to_markdown())
    else:
        print(explanation.to_text(width=terminal_width()))
    return 0 if explanation.ok else 1
