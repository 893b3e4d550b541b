"""Reverse-mode rules at the matrix level, applied to a step program.

For ``y = f(args)`` and a cotangent ``ȳ`` (same shape as ``y``), the vector-Jacobian products::

    A + B         ->  Ā = ȳ,                 B̄ = ȳ
    A B           ->  Ā = ȳ Bᵀ,              B̄ = Aᵀ ȳ      (any number of factors)
    A ⊙ B         ->  Ā = ȳ ⊙ B,             B̄ = ȳ ⊙ A
    Aᵀ            ->  Ā = ȳᵀ
    y = f(A)      ->  Ā = ȳ ⊙ f'(y)          (f element-wise; f' written in the output y)

``MatrixSymbol.diff`` is not used: it crashes on a two-step tanh RNN (SymPy 1.14) and prints
element-wise functions badly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from .errors import DerivationError
from .matexpr import Elementwise, derivative_of_output
from .program import Assignment, StepProgram, shift, split_name, t, var


def _product(factors: list[sp.Basic]) -> sp.Basic | None:
    if not factors:
        return None
    return factors[0] if len(factors) == 1 else MatMul(*factors)


def vjp(expr: sp.Basic, cotangent: sp.Basic, output: MatrixSymbol | None = None):
    """Yield ``(symbol, contribution)`` pairs: the cotangent ``expr`` sends to each symbol in it.

    ``output`` names the variable ``expr`` is assigned to, so that the derivative of an
    element-wise function is written in its output (``1 - h ⊙ h`` rather than ``1 - tanh(z)²``).
    """
    if isinstance(expr, MatrixSymbol):
        yield expr, cotangent
    elif isinstance(expr, MatAdd):
        for arg in expr.args:
            yield from vjp(arg, cotangent)
    elif isinstance(expr, MatMul):
        factors = list(expr.args)
        if any(not getattr(f, "is_Matrix", False) for f in factors):
            raise DerivationError(f"scalar coefficients are not supported in {expr}")
        for k, factor in enumerate(factors):
            left, right = _product(factors[:k]), _product(factors[k + 1 :])
            parts = ([Transpose(left).doit()] if left is not None else []) + [cotangent]
            parts += [Transpose(right).doit()] if right is not None else []
            yield from vjp(factor, _product(parts))
    elif isinstance(expr, HadamardProduct):
        for k, arg in enumerate(expr.args):
            others = expr.args[:k] + expr.args[k + 1 :]
            yield from vjp(arg, HadamardProduct(cotangent, *others))
    elif isinstance(expr, Transpose):
        yield from vjp(expr.arg, Transpose(cotangent).doit())
    elif isinstance(expr, Elementwise):
        y = output if output is not None else expr
        yield from vjp(expr.arg, HadamardProduct(cotangent, derivative_of_output(expr.name, y)))
    else:
        raise DerivationError(f"no reverse-mode rule for {type(expr).__name__}: {expr}")


def _sum(terms: list[sp.Basic]) -> sp.Basic:
    return terms[0] if len(terms) == 1 else MatAdd(*terms)


ADJOINT_BASE = {"h": "hbar", "z": "delta"}
"""Names of adjoint variables: ``hbar[t]`` is ∂L/∂h_t, ``delta[t]`` is ∂L/∂z_t."""


@dataclass(frozen=True)
class StepAdjoint:
    """The backward pass of one generic step ``t`` and what it sends elsewhere.

    Attributes:
        assignments: ``hbar[t] = g[t] + (what step t+1 sends to h[t])``, then the adjoints of
            the step's intermediate variables (``delta[t] = hbar[t] ⊙ f'(h[t])``).
        carry: for each state ``h[t]``, the cotangent step ``t`` sends to ``h[t - 1]``.
        parameter_terms: each parameter's contribution at step ``t`` (``delta[t] x[t]ᵀ``).
        input_terms: each input's cotangent at step ``t`` (``W_ihᵀ delta[t]``).
        final: the symbol ``g[n]`` of ∂L/∂h_n, which replaces the carry into step T.
    """

    assignments: tuple[Assignment, ...]
    carry: dict[MatrixSymbol, sp.Basic]
    parameter_terms: dict[MatrixSymbol, sp.Basic]
    input_terms: dict[MatrixSymbol, sp.Basic]
    cotangent: MatrixSymbol
    final: MatrixSymbol


def _adjoint_symbol(symbol: MatrixSymbol) -> MatrixSymbol:
    base, index = split_name(symbol)
    if base not in ADJOINT_BASE:
        raise DerivationError(f"no adjoint name for variable {symbol.name}")
    return var(ADJOINT_BASE[base], index, *symbol.shape)


def step_adjoint(program: StepProgram) -> StepAdjoint:
    """Apply the reverse-mode rules to ``program`` for the symbolic step ``t``."""
    if len(program.states) != 1 or program.states[0][0] != program.output:
        raise DerivationError("only cells whose single state is their output are supported")
    ((state, previous),) = program.states
    cotangent = var("g", t, *program.output.shape)
    final = MatrixSymbol("g[n]", *program.output.shape)

    contributions: dict[MatrixSymbol, list[sp.Basic]] = defaultdict(list)
    state_bar = _adjoint_symbol(state)
    incoming = var("carry", t, *previous.shape)
    assignments = [Assignment(state_bar, MatAdd(cotangent, incoming), "B")]
    adjoint_of = {state: state_bar}
    for assignment in reversed(program.assignments):
        bar = adjoint_of[assignment.target]
        for symbol, contribution in vjp(assignment.value, bar, output=assignment.target):
            contributions[symbol].append(contribution)
        for symbol in list(contributions):
            if symbol in adjoint_of or not _is_intermediate(symbol, program):
                continue
            adjoint = _adjoint_symbol(symbol)
            assignments.append(Assignment(adjoint, _sum(contributions.pop(symbol)), "B"))
            adjoint_of[symbol] = adjoint
    parameters = {p.symbol: _sum(contributions.pop(p.symbol)) for p in program.parameters}
    inputs = {x: _sum(contributions.pop(x)) for x in program.inputs}
    carry = _sum(contributions.pop(previous))
    if contributions:
        raise DerivationError(f"cotangents left unassigned: {sorted(map(str, contributions))}")
    # the placeholder in hbar[t] stands for what step t + 1 sends back to h[t]
    first = assignments[0]
    assignments[0] = Assignment(
        first.target, first.value.xreplace({incoming: shift(carry, 1)}), first.label
    )
    return StepAdjoint(
        assignments=tuple(assignments),
        carry={previous: carry},
        parameter_terms=parameters,
        input_terms=inputs,
        cotangent=cotangent,
        final=final,
    )


def _is_intermediate(symbol: MatrixSymbol, program: StepProgram) -> bool:
    return any(a.target == symbol for a in program.assignments)
