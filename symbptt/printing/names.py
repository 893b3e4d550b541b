"""How each variable of a derivation is written: in text, in LaTeX and in generated code."""

from __future__ import annotations

import sympy as sp
from sympy import MatrixSymbol

from ..program import split_name, t

_SUBSCRIPT = str.maketrans("0123456789+-tn", "₀₁₂₃₄₅₆₇₈₉₊₋ₜₙ")

TEXT_BASE = {"delta": "δ", "hbar": "h\u0304"}
LATEX_BASE = {"delta": r"\delta", "hbar": r"\bar{h}"}
CODE_BASE = {"g[n]": "grad_h_n"}
PARAMETER_CODE = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def index_text(index: sp.Expr) -> str:
    """``t - 1`` -> ``t-1``; ``3`` -> ``3``."""
    return str(index).replace(" ", "")


def text_name(symbol: MatrixSymbol) -> str:
    """``h[t - 1]`` -> ``hₜ₋₁``, ``delta[3]`` -> ``δ₃``, ``W_ih`` -> ``W_ih``."""
    base, index = split_name(symbol)
    base = TEXT_BASE.get(base, base)
    return base if index is None else base + index_text(index).translate(_SUBSCRIPT)


def latex_name(symbol: MatrixSymbol) -> str:
    """``h[t - 1]`` -> ``h_{t-1}``, ``W_ih`` -> ``W_{\\mathrm{ih}}``."""
    base, index = split_name(symbol)
    if index is None:
        head, _, sub = base.partition("_")
        return f"{head}_{{\\mathrm{{{sub}}}}}" if sub else head
    return f"{LATEX_BASE.get(base, base)}_{{{index_text(index)}}}"


def is_parameter(symbol: MatrixSymbol) -> bool:
    """Parameters carry no step index."""
    return split_name(symbol)[1] is None and symbol.name != "g[n]"


def unrolled_code_name(symbol: MatrixSymbol) -> str:
    """Names in straight-line code: ``h[3]`` -> ``h3``, ``g[n]`` -> ``grad_h_n``."""
    if symbol.name in CODE_BASE:
        return CODE_BASE[symbol.name]
    base, index = split_name(symbol)
    if index is None:
        return PARAMETER_CODE[base]
    return f"{base}{index}"


LOOP_FIRST_STEP = {"h": 0}
"""``h`` holds ``h_0..h_T`` (slot = step); every other sequence starts at step 1 (slot = step-1)."""

LOOP_TEMPORARIES = ("z", "hbar")
"""Per-step values the loop keeps in a plain variable instead of a sequence tensor."""


def _slot(base: str, index: sp.Expr) -> sp.Expr:
    return index - LOOP_FIRST_STEP.get(base, 1)


def loop_code_name(symbol: MatrixSymbol) -> str:
    """Names inside the loop over ``t``: ``h[t - 1]`` -> ``h[t - 1]``, ``x[t]`` -> ``x[t - 1]``."""
    if symbol.name in CODE_BASE:
        return CODE_BASE[symbol.name]
    base, index = split_name(symbol)
    if index is None:
        return PARAMETER_CODE[base]
    if base in LOOP_TEMPORARIES:
        return base
    return f"{base}[{_slot(base, index)}]"


LOOP_EXTRA_SLOTS = {"h": 1, "delta": 1}
"""Sequences longer than T: ``h`` also holds ``h_0``; ``delta`` also holds ``δ_{T+1} = 0``."""


def stacked_code_name(symbol: MatrixSymbol, steps: int) -> str:
    """A generic variable at every step ``t = 1..T`` at once: ``h[t - 1]`` -> ``h[:-1]``."""
    base, index = split_name(symbol)
    if index is None:
        return unrolled_code_name(symbol)
    start = int(_slot(base, index).subs(t, 1))
    past_end = start + steps - (steps + LOOP_EXTRA_SLOTS.get(base, 0))
    if start == 0 and past_end == 0:
        return base
    return f"{base}[{start or ''}:{past_end or ''}]"
