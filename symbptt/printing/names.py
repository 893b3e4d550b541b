"""How each variable of a derivation is written: in text, in LaTeX and in generated code.

Variables are named ``base[index]`` (see :mod:`symbptt.core.program`). Bases of the form
``a_X`` (pre-activation of gate X) and ``delta_X`` (its adjoint) print with X as a
superscript: ``aⁱₜ``, ``δⁱₜ``; ``hbar``/``cbar`` print as ``h̄``/``c̄``; ``ct`` (the LSTM's
candidate, torch's g gate) as ``c̃``; ``gc[n]`` (∂L/∂c_n) as ``gᶜₙ``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sympy as sp
from sympy import MatrixSymbol

from ..core.program import Parameter, split_name, t

_SUBSCRIPT = str.maketrans("0123456789+-tn", "₀₁₂₃₄₅₆₇₈₉₊₋ₜₙ")
SUPERSCRIPT = str.maketrans("ifgorznhc", "ⁱᶠᵍᵒʳᶻⁿʰᶜ")

TEXT_BASE = {
    "delta": "δ",
    "hbar": "h\u0304",
    "cbar": "c\u0304",
    "ct": "c\u0303",
    "gc": "gᶜ",
    "mc": "m",
}
LATEX_BASE = {
    "delta": r"\delta",
    "hbar": r"\bar{h}",
    "cbar": r"\bar{c}",
    "ct": r"\tilde{c}",
    "gc": "g^{c}",
    "mc": "m",
}
CODE_BASE = {"m": "mask", "mc": "mask"}
"""Both state masks are one (T, B, 1) tensor in code; it broadcasts over each state's size."""
FINAL_CODE = {"g[n]": "grad_h_n", "gc[n]": "grad_c_n"}
"""Code names of the final states' cotangents."""


def index_text(index: sp.Expr) -> str:
    """``t - 1`` -> ``t-1``; ``3`` -> ``3``."""
    return str(index).replace(" ", "")


def _gate_base(base: str) -> tuple[str, str] | None:
    head, _, gate = base.partition("_")
    return (head, gate) if head in ("a", "delta") and gate else None


def text_base(base: str) -> str:
    if base.endswith("bar") and base not in TEXT_BASE:
        return text_base(base[:-3]) + "\u0304"
    if base.endswith("_new"):
        return base[:-4] + "\u0302"
    gated = _gate_base(base)
    if gated:
        head, gate = gated
        return TEXT_BASE.get(head, head) + gate.translate(SUPERSCRIPT)
    return TEXT_BASE.get(base, base)


def _latex_base(base: str) -> str:
    if base.endswith("bar") and base not in LATEX_BASE:
        return f"\\bar{{{_latex_base(base[:-3])}}}"
    if base.endswith("_new"):
        return f"\\hat{{{base[:-4]}}}"
    gated = _gate_base(base)
    if gated:
        head, gate = gated
        return f"{LATEX_BASE.get(head, head)}^{{{gate}}}"
    return LATEX_BASE.get(base, base)


def text_name(symbol: MatrixSymbol) -> str:
    """``h[t - 1]`` -> ``hₜ₋₁``, ``delta_i[3]`` -> ``δⁱ₃``, ``h_new[t]`` -> ``ĥₜ``, ``W_ih``
    -> ``W_ih``."""
    base, index = split_name(symbol)
    if index is None:
        return base
    return text_base(base) + index_text(index).translate(_SUBSCRIPT)


def latex_name(symbol: MatrixSymbol) -> str:
    """``h[t - 1]`` -> ``h_{t-1}``, ``delta_i[t]`` -> ``\\delta^{i}_{t}``, ``W_ih`` ->
    ``W_{\\mathrm{ih}}``; a step variable named with an underscore (a cell file's ``f_n``)
    carries its name's subscript and the step together: ``f_{\\mathrm{n},t}``."""
    base, index = split_name(symbol)
    head, _, sub = base.partition("_")
    if index is None:
        return f"{head}_{{\\mathrm{{{sub}}}}}" if sub else head
    latex = _latex_base(base)
    if latex == base and sub:
        return f"{head}_{{\\mathrm{{{sub}}},{index_text(index)}}}"
    return f"{latex}_{{{index_text(index)}}}"


def is_parameter(symbol: MatrixSymbol) -> bool:
    """Parameters carry no step index."""
    return split_name(symbol)[1] is None


def block_names(parameters: Iterable[Parameter]) -> dict[MatrixSymbol, str]:
    """Code names of parameter blocks: a one-block parameter is its argument (``weight_ih``);
    the gates of a stacked one are ``w_ii, w_if, ...`` (``weight_ih.chunk(4)``)."""
    names = {}
    for parameter in parameters:
        if len(parameter.blocks) == 1:
            names[parameter.blocks[0]] = parameter.argument
        else:
            names.update({block: block.name.lower() for block in parameter.blocks})
    return names


def unrolled_code_name(symbol: MatrixSymbol, blocks: dict[MatrixSymbol, str]) -> str:
    """Names in straight-line code: ``h[3]`` -> ``h3``, ``g[n]`` -> ``grad_h_n``."""
    if symbol.name in FINAL_CODE:
        return FINAL_CODE[symbol.name]
    base, index = split_name(symbol)
    if index is None:
        return blocks[symbol]
    return f"{CODE_BASE.get(base, base)}{index}"


STATE_BASES = ("h", "c")
"""Sequences of states hold ``h_0..h_T`` (slot = step); every other starts at step 1."""


def _slot(base: str, index: sp.Expr) -> sp.Expr:
    return index - (0 if base in STATE_BASES else 1)


def loop_code_name(
    symbol: MatrixSymbol,
    blocks: dict[MatrixSymbol, str],
    sequences: set[str],
    carried: frozenset[str] = frozenset(),
) -> str:
    """Names inside the loop over ``t``: a base in ``sequences`` is a tensor over steps
    (``x[t]`` -> ``x[t - 1]``, ``h[t - 1]`` -> ``h[t - 1]``); any other is a plain variable.
    A state in ``carried`` (the forward's) is stored from step 1 like the rest, and its
    previous value is a running variable: ``h[t]`` -> ``h[t - 1]``, ``h[t - 1]`` -> ``h_prev``."""
    if symbol.name in FINAL_CODE:
        return FINAL_CODE[symbol.name]
    base, index = split_name(symbol)
    if index is None:
        return blocks[symbol]
    code = CODE_BASE.get(base, base)
    if base in carried:
        return f"{code}_prev" if index == t - 1 else f"{code}[{index - 1}]"
    if code not in sequences:
        return code
    return f"{code}[{_slot(base, index)}]"


def stacked_code_name(symbol: MatrixSymbol, blocks: dict[MatrixSymbol, str], steps: int) -> str:
    """A generic variable at every step ``t = 1..T`` at once: ``h[t - 1]`` -> ``h[:-1]``."""
    base, index = split_name(symbol)
    if index is None:
        return blocks[symbol]
    start = int(_slot(base, index).subs(t, 1))
    past_end = start - (1 if base in STATE_BASES else 0)
    code = CODE_BASE.get(base, base)
    if start == 0 and past_end == 0:
        return code
    return f"{code}[{start or ''}:{past_end or ''}]"


NameFunction = Callable[[MatrixSymbol], str]
