"""Expressions of a derivation in LaTeX: ``\\odot``, ``^{\\top}``, juxtaposed products.

Mirrors :mod:`symbptt.printing.text`: the same operands are parenthesized, the same order of
terms is kept, only the notation differs.
"""

from __future__ import annotations

import sympy as sp
from sympy import MatrixSymbol
from sympy.printing.latex import LatexPrinter as _SympyLatexPrinter

from ..core.unrolled import Chain
from .names import latex_name
from .notation import MatrixNotation


class LatexPrinter(MatrixNotation, _SympyLatexPrinter):
    """SymPy's ``LatexPrinter`` with the derivation's names and matrix notation."""

    hadamard = r" \odot "
    transpose = "{}^{{\\top}}"
    style = "latex"

    def name(self, symbol: MatrixSymbol) -> str:
        return latex_name(symbol)

    def group(self, text: str) -> str:
        return rf"\left({text}\right)"


_printer = LatexPrinter()


def latex(expr: sp.Basic) -> str:
    """One expression in the documents' notation (math mode, no delimiters)."""
    return _printer.doprint(expr)


def chain(factors: Chain) -> str:
    """A chain of matrix products in LaTeX."""
    return _printer.chain(factors)
