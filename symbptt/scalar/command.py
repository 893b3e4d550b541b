"""Print the scalar view of a derivation: its backward program entry by entry, every gradient
entry (∂L/∂W_ih[i,j], the biases, the input, the initial state) as scalar expressions of the
leaf scalars (weights, inputs, initial state, cotangents gₜ and gₙ), after common-subexpression
elimination, as a straight-line program whose length grows linearly with T.

--backend symengine builds the same program with SymEngine, about 11× faster
(pip install 'symbptt[symengine]'); SymPy is the default and the reference.
"""

from __future__ import annotations

import argparse

from .view import BACKENDS

__all__ = ["HELP", "SPEC_OPTIONS", "add_arguments", "run"]

HELP = "print the backward program entry by entry, after common-subexpression elimination"
SPEC_OPTIONS = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sympy",
        help="symbolic engine (default sympy; symengine needs symbptt[symengine])",
    )
    parser.add_argument(
        "--no-cse", dest="cse", action="store_false", help="skip common-subexpression elimination"
    )


def run(args: argparse.Namespace) -> int:
    from ..arguments import derivation_from_args
    from .view import scalar_view

    derivation = derivation_from_args(args)
    view = scalar_view(derivation, backend=args.backend, cse=args.cse)
    cse = "after CSE" if args.cse else "without CSE"
    print(f"# {derivation.spec.describe()}: scalar view, {args.backend}, {cse}, {view.size} lines")
    print(view.text().rstrip("\n"))
    return 0
