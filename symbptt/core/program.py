"""Programs as lists of named assignments (SSA) over matrix expressions, and the RNN step.

Variables are ``MatrixSymbol``\\ s named ``base[index]`` (``h[t - 1]``, ``h[3]``) or ``base`` for
parameters (``W_ih``). Column convention, one sample: vectors are ``(n, 1)``. A step program is
written once for a symbolic step ``t`` and instantiated for ``t = 1..T`` by :func:`at_step`,
which is what keeps the derivation linear in T.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp
from sympy import MatrixSymbol

t = sp.Symbol("t", integer=True, positive=True)
"""The symbolic step index of generic (per-step) equations."""

_INDEXED = re.compile(r"^(?P<base>\w+)\[(?P<index>.+)\]$")
_STEP_INDEX = re.compile(
    r"^(?:(?P<number>-?\d+)|t(?: (?P<sign>[+-]) (?P<offset>\d+))?|(?P<name>[a-z]))$"
)


def var(base: str, index: sp.Expr | int, rows: int, cols: int = 1) -> MatrixSymbol:
    """The variable ``base[index]``, e.g. ``var("h", t - 1, H)`` is ``h_{t-1}``."""
    return MatrixSymbol(f"{base}[{sp.sympify(index)}]", rows, cols)


def split_name(symbol: MatrixSymbol) -> tuple[str, sp.Expr | None]:
    """``h[t - 1]`` -> ``("h", t - 1)``, ``g[n]`` -> ``("g", n)``, ``W_ih`` -> ``("W_ih", None)``.

    Indices are an integer, ``t``, ``t ± k`` or one letter (``n``, the final state).
    """
    return _split(symbol.name)


@lru_cache(maxsize=65536)
def _split(name: str) -> tuple[str, sp.Expr | None]:
    match = _INDEXED.match(name)
    if match is None:
        return name, None
    index = _STEP_INDEX.match(match["index"])
    if index is None:
        raise ValueError(f"unsupported step index in {name!r}")
    if index["number"] is not None:
        return match["base"], sp.Integer(int(index["number"]))
    if index["name"] is not None:
        return match["base"], sp.Symbol(index["name"])
    offset = int(index["offset"] or 0) * (-1 if index["sign"] == "-" else 1)
    return match["base"], t + offset


def at_step(expr: sp.Basic, step: int) -> sp.Basic:
    """Replace the symbolic step ``t`` by ``step`` in every indexed variable of ``expr``."""
    mapping = {}
    for symbol in expr.atoms(MatrixSymbol):
        base, index = split_name(symbol)
        if index is not None and index.has(t):
            mapping[symbol] = var(base, index.subs(t, step), *symbol.shape)
    return expr.xreplace(mapping)


def shift(expr: sp.Basic, offset: int) -> sp.Basic:
    """Replace ``t`` by ``t + offset`` in every indexed variable of ``expr``."""
    mapping = {}
    for symbol in expr.atoms(MatrixSymbol):
        base, index = split_name(symbol)
        if index is not None and index.has(t):
            mapping[symbol] = var(base, index.subs(t, t + offset), *symbol.shape)
    return expr.xreplace(mapping)


@dataclass(frozen=True)
class Assignment:
    """``target = value``, tagged with the equation label the printers and code share."""

    target: MatrixSymbol
    value: sp.Basic
    label: str

    def at_step(self, step: int, label: str) -> Assignment:
        return Assignment(at_step(self.target, step), at_step(self.value, step), label)


@dataclass(frozen=True)
class Parameter:
    """A learnable tensor as torch stores it, and the blocks the equations use.

    torch stacks the gates' matrices by rows: ``weight_ih_l0`` of an LSTM is
    ``[W_ii; W_if; W_ig; W_io]`` (4H × I). ``blocks`` lists those symbols in that order; a
    parameter without gates has one block.
    """

    torch_name: str
    argument: str
    shape: tuple[int, ...]
    description: str
    blocks: tuple[MatrixSymbol, ...]
    letters: tuple[str, str] | None = None
    """Its shape in size letters (``("H", "I")``, a vector ``("H", "1")``), where the cell
    declares it; torch's cells' follow from their argument names."""


@dataclass(frozen=True)
class State:
    """A carried state: ``new`` (``h[t]``) replaces ``previous`` (``h[t - 1]``) each step.

    ``final`` is the symbol of the cotangent of the last state (``g[n]`` = ∂L/∂h_n) and
    ``name`` torch's letter for it (``h`` in ``h_0``/``h_n``, ``c`` in ``c_0``/``c_n``).
    """

    new: MatrixSymbol
    previous: MatrixSymbol
    final: MatrixSymbol
    name: str


@dataclass(frozen=True)
class StepProgram:
    """One step of a recurrent cell, for the symbolic step ``t``.

    Attributes:
        assignments: the step's equations in order.
        inputs: per-step inputs (``x[t]``).
        states: the carried states, the output's first (``h``, then ``c`` for an LSTM).
        output: the per-step output whose cotangent ``g[t]`` torch's backward receives.
        parameters: the learnable tensors, in torch's order.
        constants: per-step inputs that get no gradient (the masks of variable lengths).
    """

    assignments: tuple[Assignment, ...]
    inputs: tuple[MatrixSymbol, ...]
    states: tuple[State, ...]
    output: MatrixSymbol
    parameters: tuple[Parameter, ...]
    constants: tuple[MatrixSymbol, ...] = ()

    @property
    def blocks(self) -> tuple[MatrixSymbol, ...]:
        """Every parameter block, in torch's order."""
        return tuple(block for p in self.parameters for block in p.blocks)
