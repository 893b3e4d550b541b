"""The derivation as plain Unicode text for a terminal (``symbptt derive``)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import sympy as sp
from sympy import MatrixSymbol
from sympy.printing.str import StrPrinter

from ..core.program import at_step
from ..core.unrolled import MAX_STEPS, unroll
from .names import text_name
from .notation import MatrixNotation

if TYPE_CHECKING:
    from ..core.derivation import Derivation, Gradient


class TextPrinter(MatrixNotation, StrPrinter):
    """``StrPrinter`` with ``⊙``, ``ᵀ``, ``−``, juxtaposed products and subscripted names."""

    minus = "−"

    def name(self, symbol: MatrixSymbol) -> str:
        return text_name(symbol)


_printer = TextPrinter()


def text(expr: sp.Basic) -> str:
    """One expression in the terminal's notation."""
    return _printer.doprint(expr)


def wrap(line: str, width: int, indent: int = 0) -> str:
    """``line`` filled to ``width``, continuation lines indented; words are never broken."""
    return textwrap.fill(
        line,
        width=width,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


MAX_LISTED_STEPS = 12
"""Above this many steps the terminal lists the first and last steps only."""


def _abbreviated(steps: tuple, lines: list[str]):
    """Yield every step, or for long sequences the first three and the last two with a note."""
    if len(steps) <= MAX_LISTED_STEPS:
        yield from steps
        return
    yield from steps[:3]
    lines.append(f"  ⋮    ({len(steps) - 5} more steps of the same form)")
    yield from steps[-2:]


def _gradient_name(of: MatrixSymbol) -> str:
    return f"∂L/∂{text(of)}"


def gradient_text(gradient: Gradient) -> str:
    """``∂L/∂W_ih = Σₜ δₜ xₜᵀ``, ``∂L/∂xₜ = W_ihᵀ δₜ`` or ``∂L/∂h₀ = W_hhᵀ δ₁``."""
    if gradient.summed:
        return f"{_gradient_name(gradient.of)} = Σₜ {text(gradient.generic)}"
    if gradient.once:
        return f"{_gradient_name(gradient.of)} = {text(gradient.terms[0])}"
    return f"{_gradient_name(gradient.of)} = {text(gradient.generic)}"


def network_lines(spec) -> list[str]:
    """How layers, directions, dropout and packing compose the one-layer equations above."""
    d, out = spec.directions, spec.output_size
    lines = [
        f"{spec.num_layers} layer(s) × {d} direction(s); every (layer, direction) runs the "
        "equations above with its own parameters (torch's names with _l<k> and _reverse)."
    ]
    if spec.bidirectional:
        lines.append(
            "The reverse direction runs them over the sequence reversed"
            + (" (each sample within its own length)" if spec.packed else "")
            + "; its outputs are reversed back and outputₜ = [h→ₜ ; h←ₜ] (concatenated). Its "
            "h_n entry is the state after reading x₁."
        )
    if spec.num_layers > 1:
        drop = " ⊙ Dropout mask (training mode only)" if spec.dropout else ""
        lines.append(
            f"Layer k+1 reads xₜ⁽ᵏ⁺¹⁾ = outputₜ⁽ᵏ⁾{drop}: its input size is D·H_out = {d * out}. "
            "Backward: layer k+1's input cotangent"
            + (" times the same mask" if spec.dropout else "")
            + " is layer k's output cotangent gₜ⁽ᵏ⁾, split between the directions; h_n's "
            "cotangent reaches each (layer, direction) as its gₙ."
        )
    if spec.packed:
        lines.append(
            "PackedSequence input: mₜ = 1 while a sample's sequence lasts, 0 after, so its state "
            "stays at its own last step; padded steps get no cotangent."
        )
    return lines


def _assignments(assignments) -> list[str]:
    return [f"{text(a.target)} = {text(a.value)}" for a in assignments]


def derivation_text(derivation: Derivation, width: int = 100) -> str:
    """Forward equations, backward recurrence, gradients and unrolled sums, wrapped to width."""
    spec = derivation.spec
    program = derivation.step
    lines: list[str] = []

    def section(title: str) -> None:
        lines.extend(["", title, "─" * min(len(title), width)])

    def equation(label: str, body: str) -> None:
        tag = f"({label})"
        lines.append(wrap(f"{tag:<6} {body}", width, 7))

    def equations(label: str, parts: list[str]) -> None:
        """On one line when they fit, else one per line under the label."""
        joined = ",   ".join(parts)
        if len(joined) + 7 <= width:
            equation(label, joined)
            return
        equation(label, parts[0])
        lines.extend(wrap(" " * 7 + part, width, 7) for part in parts[1:])

    finals = ", ".join(f"{text(s.final)} = ∂L/∂{s.name}_n" for s in program.states)
    lines.append(f"BPTT for {spec.describe()}")
    lines.append(
        wrap(
            "Column convention, one sample: W x where torch writes x Wᵀ. Cotangents: "
            f"gₜ = ∂L/∂outputₜ, {finals} (h_n.sum().backward() means gₜ = 0, gₙ = 1).",
            width,
            0,
        )
    )
    if spec.definition.prose.terminal:
        lines.append(spec.definition.prose.terminal)

    if derivation.linear_states:
        states = ", ".join(f"{s}ₜ = aₜ ⊙ {s}ₜ₋₁ + bₜ" for s in derivation.linear_states)
        lines.append(
            wrap(
                f"Linear recurrence: {states}, with no gate reading a state, so a parallel "
                "scan could run it and its adjoint in depth O(log T); the generated code "
                "still runs the steps one by one.",
                width,
                0,
            )
        )
    section("Forward, step t")
    equations("Ft", _assignments(program.assignments))
    section(f"Forward, unrolled for T = {spec.steps}")
    for step in _abbreviated(derivation.forward, lines):
        equations(step[0].label, _assignments(step))

    section("Backward recurrence, step t (x̄ = ∂L/∂x; δ = ∂L/∂ of a pre-activation)")
    equations("Bt", _assignments(derivation.backward_step))
    boundary = _assignments(derivation.boundary)
    lines.append(
        wrap(
            f"       at t = T = {spec.steps}: {', '.join(boundary)} (nothing comes back from "
            "step T+1)",
            width,
            7,
        )
    )
    section(f"Backward, unrolled for T = {spec.steps}")
    cut = [str(k) for k in range(1, spec.steps) if spec.truncated_after(k)]
    if cut:
        lines.append(
            wrap(
                f"Truncated every {spec.truncate} steps (state detached): at t = "
                f"{', '.join(cut)} nothing comes back from step t+1; those terms are dropped.",
                width,
                0,
            )
        )
    for step in _abbreviated(derivation.backward, lines):
        equations(step[0].label, _assignments(step))

    section("Gradients")
    for parameter in derivation.parameters:
        if len(parameter.blocks) > 1:
            stacked = "; ".join(text(b) for b in parameter.blocks)
            lines.append(f"       {parameter.torch_name} = [{stacked}] (stacked by rows)")
    for gradient in derivation.gradients:
        equation(gradient.label, gradient_text(gradient))

    if spec.is_network:
        section("Network")
        lines.extend(wrap(line, width, 2) for line in network_lines(spec))

    if spec.family != "rnn" or spec.packed:
        section(f"Per-step sums for T = {spec.steps}")
        if spec.steps > MAX_STEPS:
            lines.append(f"(written out for T ≤ {MAX_STEPS}; derive with fewer steps to see them)")
        else:
            for gradient in derivation.gradients:
                if gradient.summed:
                    body = " + ".join(text(term) for term in gradient.terms)
                    equation(f"U{gradient.label[1:]}", f"{_gradient_name(gradient.of)} = {body}")
        return "\n".join(lines)
    section(f"Unrolled for T = {spec.steps}: each step's term is a chain of products")
    if spec.steps > MAX_STEPS:
        lines.append(f"(written out for T ≤ {MAX_STEPS}; derive with fewer steps to see them)")
    else:
        _unrolled_text(derivation, equation, lines, width)
    return "\n".join(lines)


def _unrolled_text(derivation: Derivation, equation, lines: list[str], width: int) -> None:
    final = unroll(derivation, only_final=True)
    derivative = text(derivation.adjoint.assignments[-1].value.args[-1])
    if derivative.startswith("(") and derivative.endswith(")"):
        derivative = derivative[1:-1]
    lines.append(
        wrap(
            f"Dₜ = diag({derivative}), the nonlinearity's derivative at step t, so that "
            f"u ⊙ f'(hₜ) = Dₜ u. For L = Σ h_n (gₜ = 0, gₙ = 1):",
            width,
            0,
        )
    )
    for gradient in final.gradients:
        tag = f"U{gradient.label[1:]}"
        if gradient.summed:
            body = " + ".join(_printer.chain(c) for step in reversed(gradient.steps) for c in step)
            equation(tag, f"{_gradient_name(gradient.of)} = {body}")
            continue
        parts = []
        for k, chains in reversed(list(enumerate(gradient.steps, start=1))):
            symbol = gradient.of if gradient.once else at_step(gradient.of, k)
            parts.append(f"{_gradient_name(symbol)} = " + " + ".join(map(_printer.chain, chains)))
        equation(tag, parts[0])
        lines.extend(wrap(" " * 7 + part, width, 7) for part in parts[1:])
    if derivation.spec.steps >= 3:
        example = (
            (
                " In torch's row form with aₜ = 1 − hₜ², for T = 3 and L = Σ h₃, the t = 1 term of "
                "∂L/∂W_ih is (((a₃ @ W_hh) * a₂) @ W_hh) * a₁ * x₁, not "
                "((a₃ @ W_hh) * (a₂ @ W_hh)) * a₁ * x₁."
            )
            if derivation.spec.nonlinearity == "tanh"
            else ""
        )
        lines.append(
            wrap(
                "Each term is a CHAIN of matrix products, read right to left from gₙ; multiplying "
                "per-step factors element-wise instead is the classic hand-derivation mistake."
                + example,
                width,
                0,
            )
        )
    general = unroll(derivation, only_final=False)
    lines.append("With every cotangent gₜ:")
    for delta, chains in reversed(general.deltas):
        lines.append(
            "       "
            + wrap(f"{text(delta)} = " + " + ".join(map(_printer.chain, chains)), width - 7, 7)
        )
