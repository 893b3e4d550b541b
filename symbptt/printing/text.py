"""The derivation as plain Unicode text for a terminal (``symbptt derive``)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose
from sympy.printing.str import StrPrinter

from ..matexpr import Elementwise
from ..unrolled import MAX_STEPS, Chain, unroll
from .names import text_name

if TYPE_CHECKING:
    from ..derivation import Derivation


class TextPrinter(StrPrinter):
    """``StrPrinter`` with ``⊙``, ``ᵀ``, juxtaposed products and subscripted names."""

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return text_name(expr)

    def _operand(self, expr: sp.Basic) -> str:
        text = self._print(expr)
        return f"({text})" if isinstance(expr, (MatAdd, HadamardProduct)) else text

    def _print_MatAdd(self, expr: MatAdd) -> str:
        return " + ".join(self._print(arg) for arg in expr.args)

    def _print_MatMul(self, expr: MatMul) -> str:
        return " ".join(self._operand(arg) for arg in expr.args)

    def _print_HadamardProduct(self, expr: HadamardProduct) -> str:
        return " ⊙ ".join(self._operand(arg) for arg in expr.args)

    def _print_Transpose(self, expr: Transpose) -> str:
        return f"{self._operand(expr.arg)}ᵀ"

    def _print_Elementwise(self, expr: Elementwise) -> str:
        return expr.function.text.format(self._operand(expr.arg))

    def chain(self, chain: Chain) -> str:
        return " ".join(self._operand(factor) for factor in chain)


_printer = TextPrinter()


def text(expr: sp.Basic) -> str:
    """One expression in the terminal's notation."""
    return _printer.doprint(expr)


def _wrap(line: str, width: int, indent: int) -> str:
    return textwrap.fill(line, width=width, subsequent_indent=" " * indent,
                         break_long_words=False, break_on_hyphens=False)


def _gradient_name(of: MatrixSymbol) -> str:
    return f"∂L/∂{text(of)}"


def derivation_text(derivation: Derivation, width: int = 100) -> str:
    """Forward equations, backward recurrence, gradients and unrolled sums, wrapped to width."""
    spec = derivation.spec
    lines: list[str] = []

    def section(title: str) -> None:
        lines.extend(["", title, "─" * min(len(title), width)])

    def equation(label: str, body: str) -> None:
        tag = f"({label})"
        lines.append(_wrap(f"{tag:<6} {body}", width, 7))

    lines.append(f"BPTT for {spec.describe()}")
    lines.append(
        "Column convention, one sample: W x where torch writes x Wᵀ. "
        "gₜ = ∂L/∂outputₜ, gₙ = ∂L/∂h_n (h_n.sum().backward(): gₜ = 0, gₙ = 1)."
    )

    section("Forward, step t")
    equation("Ft", "   ".join(f"{text(a.target)} = {text(a.value)}" for a in derivation.step.assignments))
    section(f"Forward, unrolled for T = {spec.steps}")
    for step in derivation.forward:
        equation(step[0].label, ",   ".join(f"{text(a.target)} = {text(a.value)}" for a in step))

    section("Backward recurrence, step t (δₜ = ∂L/∂zₜ, h̄ₜ = ∂L/∂hₜ)")
    adjoint = derivation.adjoint
    equation("Bt", "   ".join(f"{text(a.target)} = {text(a.value)}" for a in adjoint.assignments))
    lines.append(f"       with {text(derivation.backward[0][0].value)} at t = T = {spec.steps}")
    section(f"Backward, unrolled for T = {spec.steps}")
    for step in derivation.backward:
        equation(step[0].label, ",   ".join(f"{text(a.target)} = {text(a.value)}" for a in step))

    section("Gradients")
    for gradient in derivation.gradients:
        if gradient.summed:
            body = f"{_gradient_name(gradient.of)} = Σₜ {text(gradient.generic)}"
        elif len(gradient.terms) == 1:
            body = f"{_gradient_name(gradient.of)} = {text(gradient.terms[0])}"
        else:
            body = f"{_gradient_name(gradient.of)} = {text(gradient.generic)}"
        equation(gradient.label, body)

    section(f"Unrolled for T = {spec.steps}: each step's term is a chain of products")
    if spec.steps > MAX_STEPS:
        lines.append(f"(written out for T ≤ {MAX_STEPS}; derive with fewer steps to see them)")
    else:
        _unrolled_text(derivation, equation, lines)
    return "\n".join(lines[:1] + lines[1:]).lstrip("\n")


def _unrolled_text(derivation, equation, lines: list[str]) -> None:
    final = unroll(derivation, only_final=True)
    lines.append(
        "Dₜ = diag(" + text(final.diagonals[0][1]).replace("₁", "ₜ") + "), "
        "the derivative of the nonlinearity at step t. For L = Σ h_n (gₜ = 0, gₙ = 1):"
    )
    for gradient in final.gradients:
        if gradient.summed:
            body = " + ".join(_printer.chain(c) for step in reversed(gradient.steps) for c in step)
            equation(f"U{gradient.label[1:]}", f"{_gradient_name(gradient.of)} = {body}")
        elif len(gradient.steps) == 1:
            body = " + ".join(_printer.chain(c) for c in gradient.steps[0])
            equation(f"U{gradient.label[1:]}", f"{_gradient_name(gradient.of)} = {body}")
    general = unroll(derivation, only_final=False)
    lines.append("With every cotangent gₜ:")
    for delta, chains in reversed(general.deltas):
        lines.append("       " + _wrap(f"{text(delta)} = " + " + ".join(map(_printer.chain, chains)),
                                       100, 7))
