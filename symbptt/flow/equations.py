"""The one-step Jacobian and the chain ∂h_T/∂h_t as equations, in text or LaTeX.

The printers add ``diag(v)``, ``I`` and the Jacobian symbols (``∂cₜ/∂hₜ₋₁``) to symbptt's
text and LaTeX printers; :func:`symbolic_lines` writes the step's Jacobian, the chain as a
product Π_{k=t+1}^{T} and the chain for each t; :func:`chain_notation` names the chain and the
state in the tables, the checks and the plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp
from sympy import Identity, MatrixSymbol
from sympy.matrices.expressions.diagonal import DiagMatrix

from ..core.program import at_step, split_name, t, var
from ..errors import DerivationError
from ..printing.latex import LatexPrinter
from ..printing.names import latex_name, text_name
from ..printing.text import TextPrinter
from .jacobian import jacobian_parts, multiply, symbolic_chain

if TYPE_CHECKING:
    from ..core.derivation import Derivation
    from ..core.spec import Spec

MAX_LISTED_STEPS = 8
"""Up to this many steps every chain ∂h_T/∂h_t is written out; above, the first and last."""

k = sp.Symbol("k")
"""The running step of the product Π_{k=t+1}^{T}."""


def _strip_group(text: str, left: str, right: str) -> str:
    """``(a ⊙ b)`` -> ``a ⊙ b`` when the outer parentheses enclose everything."""
    if not (text.startswith(left) and text.endswith(right)):
        return text
    depth = 0
    i = 0
    while i < len(text):
        if text.startswith(left, i):
            depth += 1
            i += len(left)
            continue
        if text.startswith(right, i):
            depth -= 1
            i += len(right)
            if depth == 0 and i < len(text):
                return text
            continue
        i += 1
    return text[len(left) : -len(right)]


def _step_k(symbol: MatrixSymbol) -> MatrixSymbol | None:
    """``D[k]`` -> ``D[t]`` (to borrow its name); None for symbols not indexed by ``k``."""
    base, index = split_name(symbol)
    return var(base, t, *symbol.shape) if index == k else None


class _Text(TextPrinter):
    """The terminal printer, plus ``diag(v)``, ``I`` and the Jacobian symbols ``∂cₜ/∂hₜ₋₁``."""

    def name(self, symbol: MatrixSymbol) -> str:
        parts = jacobian_parts(symbol)
        if parts is not None:
            return f"∂{text_name(parts[0])}/∂{text_name(parts[1])}"
        at_t = _step_k(symbol)
        if at_t is not None:
            return text_name(at_t).replace("ₜ", "ₖ")
        return text_name(symbol)

    def _print_DiagMatrix(self, expr: DiagMatrix) -> str:
        return f"diag({_strip_group(self._print(expr.args[0]), '(', ')')})"

    def _print_Identity(self, expr: Identity) -> str:
        return "I"


class _Latex(LatexPrinter):
    """The LaTeX printer, plus ``\\operatorname{diag}``, ``I`` and ``\\frac{∂c_t}{∂h_{t-1}}``."""

    def name(self, symbol: MatrixSymbol) -> str:
        parts = jacobian_parts(symbol)
        if parts is not None:
            return rf"\frac{{\partial {latex_name(parts[0])}}}{{\partial {latex_name(parts[1])}}}"
        return latex_name(symbol)

    def _print_DiagMatrix(self, expr: DiagMatrix) -> str:
        inner = _strip_group(self._print(expr.args[0]), r"\left(", r"\right)")
        return rf"\operatorname{{diag}}\left({inner}\right)"

    def _print_Identity(self, expr: Identity) -> str:
        return "I"


_PRINTERS = {"text": _Text(), "latex": _Latex()}


def show(expr: sp.Basic, style: str) -> str:
    """``expr`` as ``style`` (``"text"`` or ``"latex"``), with the Jacobians' names."""
    return _PRINTERS[style].doprint(expr)


def _at_k(expr: sp.Basic) -> sp.Basic:
    """``D[t] W_hh`` -> ``D[k] W_hh`` (the factor has no ``t - 1``)."""
    mapping = {}
    for symbol in expr.atoms(MatrixSymbol):
        _, index = split_name(symbol)
        if index is not None:
            if index != t:
                raise DerivationError(f"the chain's factor {expr} reaches back a step")
            mapping[symbol] = var(split_name(symbol)[0], k, *symbol.shape)
    return expr.xreplace(mapping)


def _state_text(spec: Spec, style: str, index: str) -> str:
    """``hₜ`` or ``(hₜ, cₜ)`` (text), ``h_{t}`` or ``(h_{t}, c_{t})`` (LaTeX)."""
    names = [name for name, _ in spec.states]
    if style == "text":
        sub = {"T": "_T", "t": "ₜ", "t-1": "ₜ₋₁"}.get(index)
        if sub is None:
            sub = index.translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
        items = [f"{n}{sub}" for n in names]
    else:
        items = [f"{n}_{{{index}}}" for n in names]
    return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"


def _derivative(spec: Spec, style: str, top: str, bottom: str) -> str:
    num, den = _state_text(spec, style, top), _state_text(spec, style, bottom)
    if style == "text":
        return f"∂{num}/∂{den}"
    return rf"\frac{{\partial {num}}}{{\partial {den}}}"


def symbolic_lines(derivation: Derivation, style: str = "text") -> list[str]:
    """The one-step Jacobian and the chain, one equation a line (``style``: text or latex)."""
    spec = derivation.spec
    chain = symbolic_chain(derivation)
    jac = chain.jacobian
    lines = [f"{show(a.target, style)} = {show(a.value, style)}" for a in jac.assignments]
    if len(jac.states) > 1:
        if style == "text":
            rows = "; ".join(
                ", ".join(show(b, style) if b is not None else "0" for b in row)
                for row in jac.blocks
            )
            lines.append(f"{show(chain.factor, style)} = {_derivative(spec, style, 't', 't-1')}")
            lines[-1] += f" = [{rows}]"
        else:
            rows = r" \\ ".join(
                " & ".join(show(b, style) if b is not None else "0" for b in row)
                for row in jac.blocks
            )
            lines.append(
                f"{show(chain.factor, style)} = {_derivative(spec, style, 't', 't-1')} = "
                rf"\begin{{pmatrix}} {rows} \end{{pmatrix}}"
            )
    elif chain.diagonal is not None:
        diagonal, value = chain.diagonal
        lines[-1] += f" = {show(chain.factor, style)}"
        lines.append(f"{show(diagonal, style)} = {show(value, style)}")
    else:
        lines[-1] = f"{show(chain.factor, style)} = " + lines[-1]
    factor_k = show(_at_k(chain.factor), style)
    last = spec.steps
    if style == "text":
        lines.append(
            f"{_derivative(spec, style, 'T', 't')} = Π_{{k=t+1}}^{{T}} {factor_k} (the k = T "
            f"factor leftmost), {_derivative(spec, style, 'T', 'T')} = I"
        )
    else:
        lines.append(
            rf"{_derivative(spec, style, 'T', 't')} = \prod_{{k=t+1}}^{{T}} {factor_k}, \quad "
            rf"{_derivative(spec, style, 'T', 'T')} = I"
        )
    steps = list(range(last - 1, -1, -1))
    if len(steps) > MAX_LISTED_STEPS:
        steps = steps[:2] + [None] + steps[-1:]
    for step in steps:
        if step is None:
            lines.append("⋮" if style == "text" else r"\vdots")
            continue
        product = multiply(*(at_step(chain.factor, j) for j in range(last, step, -1)))
        lines.append(f"{_derivative(spec, style, str(last), str(step))} = {show(product, style)}")
    return lines


def chain_notation(spec: Spec) -> dict[str, str]:
    """The chain, the state and the final state in text: ``∂h_T/∂hₜ``, ``state hₜ``, ``h_T``."""
    names = [name for name, _ in spec.states]
    if len(names) > 1:
        final, now = ",".join(f"{n}_T" for n in names), ",".join(f"{n}ₜ" for n in names)
        return {
            "chain": f"∂({final})/∂({now})",
            "state": f"state ({now.replace(',', ', ')})",
            "final": f"({final.replace(',', ', ')})",
        }
    return {
        "chain": f"∂{names[0]}_T/∂{names[0]}ₜ",
        "state": f"state {names[0]}ₜ",
        "final": f"{names[0]}_T",
    }
