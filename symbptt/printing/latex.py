"""Expressions of a derivation in LaTeX: ``\\odot``, ``^{\\top}``, juxtaposed products.

Mirrors :mod:`symbptt.printing.text`: the same operands are parenthesized, the same order of
terms is kept, only the notation differs.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.printing.latex import LatexPrinter as _SympyLatexPrinter

from ..matexpr import Elementwise
from ..unrolled import Chain
from .names import latex_name


class LatexPrinter(_SympyLatexPrinter):
    """SymPy's ``LatexPrinter`` with the derivation's names and matrix notation."""

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return latex_name(expr)

    def _operand(self, expr: sp.Basic) -> str:
        body = self._print(expr)
        if isinstance(expr, (MatAdd, HadamardProduct)):
            return rf"\left({body}\right)"
        return body

    def _print_MatAdd(self, expr: MatAdd) -> str:
        out = ""
        for arg in expr.args:
            term = self._print(arg)
            if out and term.startswith("-"):
                out += f" - {term[1:]}"
            else:
                out += f" + {term}" if out else term
        return out

    def _print_MatMul(self, expr: MatMul) -> str:
        coefficient = sp.Mul(*[a for a in expr.args if not a.is_Matrix])
        factors = " ".join(self._operand(a) for a in expr.args if a.is_Matrix)
        if coefficient == 1:
            return factors
        if coefficient == -1:
            return f"-{factors}"
        return f"{self._print(coefficient)} {factors}"

    def _print_OneMatrix(self, expr: OneMatrix) -> str:
        return "1"

    def _print_HadamardProduct(self, expr: HadamardProduct) -> str:
        return r" \odot ".join(self._operand(arg) for arg in expr.args)

    def _print_Transpose(self, expr: Transpose) -> str:
        return rf"{self._operand(expr.arg)}^{{\top}}"

    def _print_Elementwise(self, expr: Elementwise) -> str:
        return expr.function.latex.format(self._operand(expr.arg))

    def chain(self, chain: Chain) -> str:
        """A chain of matrix products, factors juxtaposed in order."""
        return " ".join(self._operand(factor) for factor in chain)


_printer = LatexPrinter()


def latex(expr: sp.Basic) -> str:
    """One expression in the documents' notation (math mode, no delimiters)."""
    return _printer.doprint(expr)


def chain(factors: Chain) -> str:
    """A chain of matrix products in LaTeX."""
    return _printer.chain(factors)
