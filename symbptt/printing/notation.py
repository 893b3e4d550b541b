"""The column-convention notation shared by the terminal and LaTeX printers.

``A + B``, juxtaposed products ``W x``, ``u ⊙ v``, ``Wᵀ``, ``1 − z``, ``f(x)``: the printers
differ only in their symbols (class attributes below), so the same operands are
parenthesized and the same order of terms is kept in both.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from ..core.matexpr import Elementwise
from ..core.unrolled import Chain


class MatrixNotation:
    """Mixin for a SymPy printer: set ``minus``, ``hadamard``, ``transpose``, ``style``."""

    minus = "-"
    hadamard = " ⊙ "
    transpose = "{}ᵀ"
    style = "text"
    """Which format of :class:`symbptt.core.matexpr.ElementwiseFunction` to use."""

    def name(self, symbol: MatrixSymbol) -> str:
        raise NotImplementedError

    def group(self, text: str) -> str:
        return f"({text})"

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return self.name(expr)

    def _operand(self, expr: sp.Basic) -> str:
        text = self._print(expr)
        return self.group(text) if isinstance(expr, (MatAdd, HadamardProduct)) else text

    def _print_MatAdd(self, expr: MatAdd) -> str:
        out = ""
        for arg in expr.args:
            term = self._print(arg)
            if out and term.startswith(self.minus):
                out += f" {self.minus} {term[len(self.minus) :]}"
            else:
                out += f" + {term}" if out else term
        return out

    def _print_MatMul(self, expr: MatMul) -> str:
        coefficient = sp.Mul(*[a for a in expr.args if not a.is_Matrix])
        factors = " ".join(self._operand(a) for a in expr.args if a.is_Matrix)
        if coefficient == 1:
            return factors
        if coefficient == -1:
            return f"{self.minus}{factors}"
        return f"{self._print(coefficient)} {factors}"

    def _print_OneMatrix(self, expr: OneMatrix) -> str:
        return "1"

    def _print_HadamardProduct(self, expr: HadamardProduct) -> str:
        """``u ⊙ v``; a product operand is grouped, ``(Wᵀ δ) ⊙ f``, which would otherwise read
        as ``Wᵀ (δ ⊙ f)``."""
        return self.hadamard.join(
            self.group(self._print(arg)) if isinstance(arg, MatMul) else self._operand(arg)
            for arg in expr.args
        )

    def _print_Transpose(self, expr: Transpose) -> str:
        return self.transpose.format(self._operand(expr.arg))

    def _print_Elementwise(self, expr: Elementwise) -> str:
        return getattr(expr.function, self.style).format(self._operand(expr.arg))

    def chain(self, chain: Chain) -> str:
        """A chain of matrix products, factors juxtaposed in order."""
        return " ".join(self._operand(factor) for factor in chain)
