"""The one-step state Jacobian ∂s_t/∂s_{t-1}, by forward mode over the step program.

:func:`tangent` holds the forward-mode rules for the matrix expressions of a step program;
:func:`step_jacobian` applies them to every assignment (an LSTM's state is (h, c), so its
Jacobian is a block matrix), and :func:`symbolic_chain` names the one factor of the chain
∂s_T/∂s_t (``D_t W_hh`` for an RNN, ``J_t`` otherwise). Printing is in :mod:`.flow_equations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp
from sympy import (
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    ZeroMatrix,
)
from sympy.matrices.expressions.diagonal import DiagMatrix

from ..core.adjoint import hadamard
from ..core.matexpr import Elementwise, derivative_of_output, rule_for
from ..core.program import Assignment, State, StepProgram, split_name, t, var
from ..errors import DerivationError

if TYPE_CHECKING:
    from ..core.derivation import Derivation


def jacobian_symbol(target: MatrixSymbol, state: State) -> MatrixSymbol:
    """The symbol of ``∂target/∂state.previous`` (``∂c_t/∂h_{t-1}``), indexed like ``target``."""
    base, index = split_name(target)
    wrt, _ = split_name(state.previous)
    return var(f"J__{base}__{wrt}", index, target.shape[0], state.previous.shape[0])


def jacobian_parts(symbol: MatrixSymbol) -> tuple[MatrixSymbol, MatrixSymbol] | None:
    """``J__c__h[t]`` -> ``(c[t], h[t - 1])``; None for any other symbol."""
    base, index = split_name(symbol)
    if index is None or not base.startswith("J__"):
        return None
    target, wrt = base[3:].split("__")
    return var(target, index, symbol.shape[0]), var(wrt, index - 1, symbol.shape[1])


def multiply(*items: sp.Basic) -> sp.Basic:
    """A product with numbers collected, identities dropped and ``diag(a) diag(b)`` merged."""
    coefficient, factors = sp.Integer(1), []
    for item in items:
        parts = item.args if isinstance(item, MatMul) else (item,)
        for part in parts:
            if not getattr(part, "is_Matrix", False):
                coefficient *= part
            elif isinstance(part, Identity):
                continue
            elif factors and isinstance(part, DiagMatrix) and isinstance(factors[-1], DiagMatrix):
                factors[-1] = DiagMatrix(hadamard(factors[-1].args[0], part.args[0]))
            else:
                factors.append(part)
    if not factors:
        n = next(i for i in items if getattr(i, "is_Matrix", False)).shape[0]
        factors = [Identity(n)]
    if coefficient == 1:
        return factors[0] if len(factors) == 1 else MatMul(*factors)
    return MatMul(coefficient, *factors)


def _add(terms: list[sp.Basic | None]) -> sp.Basic | None:
    flat = []
    for term in terms:
        if term is not None:
            flat.extend(term.args if isinstance(term, MatAdd) else [term])
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else MatAdd(*flat)


def tangent(
    expr: sp.Basic,
    wrt: MatrixSymbol,
    known: dict[MatrixSymbol, sp.Basic],
    output: MatrixSymbol | None = None,
) -> sp.Basic | None:
    """``∂expr/∂wrt`` by the forward-mode rule of :data:`TANGENT` for its node type; None where
    it is zero.

    ``known`` holds the Jacobians of the variables assigned so far (a symbol or an expression);
    parameters, inputs and the other states are constants. The rules, for a column ``v``::

        A + B       ->  ∂A + ∂B
        c W v       ->  c W ∂v                 (only the last factor may vary)
        a ⊙ b       ->  diag(b) ∂a + diag(a) ∂b
        y = f(a)    ->  diag(f'(y)) ∂a         (f element-wise, f' written in the output y)
    """
    return rule_for(TANGENT, expr, "forward-mode")(expr, wrt, known, output)


def _tangent_product(expr: MatMul, wrt, known, output) -> sp.Basic | None:
    numbers = [f for f in expr.args if not getattr(f, "is_Matrix", False)]
    factors = [f for f in expr.args if getattr(f, "is_Matrix", False)]
    tangents = [tangent(f, wrt, known) for f in factors]
    if all(d is None for d in tangents):
        return None
    if any(d is not None for d in tangents[:-1]):
        raise DerivationError(f"no forward-mode rule for {expr}: a varying matrix factor")
    return multiply(*numbers, *factors[:-1], tangents[-1])


def _tangent_hadamard(expr: HadamardProduct, wrt, known, output) -> sp.Basic | None:
    terms = []
    for i, arg in enumerate(expr.args):
        d = tangent(arg, wrt, known)
        if d is not None:
            others = expr.args[:i] + expr.args[i + 1 :]
            scale = others[0] if len(others) == 1 else hadamard(*others)
            terms.append(multiply(DiagMatrix(scale), d))
    return _add(terms)


def _tangent_elementwise(expr: Elementwise, wrt, known, output) -> sp.Basic | None:
    d = tangent(expr.arg, wrt, known)
    if d is None:
        return None
    y = output if output is not None else expr
    return multiply(DiagMatrix(derivative_of_output(expr.name, y)), d)


TANGENT: dict[type, Callable[..., sp.Basic | None]] = {
    MatrixSymbol: lambda expr, wrt, known, output: (
        Identity(wrt.shape[0]) if expr == wrt else known.get(expr)
    ),
    OneMatrix: lambda expr, wrt, known, output: None,
    ZeroMatrix: lambda expr, wrt, known, output: None,
    MatAdd: lambda expr, wrt, known, output: _add([tangent(a, wrt, known) for a in expr.args]),
    MatMul: _tangent_product,
    HadamardProduct: _tangent_hadamard,
    Elementwise: _tangent_elementwise,
}
"""Each node type's forward-mode rule (the table in :func:`tangent`'s docstring)."""


@dataclass(frozen=True)
class StepJacobian:
    """One step's state Jacobian, for the symbolic step ``t``.

    Attributes:
        states: the carried states (``h``, then ``c`` for an LSTM).
        assignments: the named Jacobians in evaluation order: every state's and every
            activation's (``∂i_t/∂h_{t-1} = diag(i_t ⊙ (1 − i_t)) W_hi``); a pre-activation's is
            written inline where it is used.
        blocks: ``blocks[i][j]`` = ∂(state i)_t/∂(state j)_{t-1}: a symbol of ``assignments``,
            or None where it is zero.
    """

    states: tuple[State, ...]
    assignments: tuple[Assignment, ...]
    blocks: tuple[tuple[MatrixSymbol | None, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(state.new.shape[0] for state in self.states)


def step_jacobian(program: StepProgram) -> StepJacobian:
    """Differentiate one step of ``program`` w.r.t. each previous state (forward mode)."""
    named = {a.target for a in program.assignments if isinstance(a.value, Elementwise)}
    named |= {state.new for state in program.states}
    assignments = []
    columns = []
    for wrt in program.states:
        known: dict[MatrixSymbol, sp.Basic] = {}
        for assignment in program.assignments:
            d = tangent(assignment.value, wrt.previous, known, output=assignment.target)
            if d is None:
                continue
            if assignment.target in named:
                symbol = jacobian_symbol(assignment.target, wrt)
                assignments.append(Assignment(symbol, d, "J"))
                d = symbol
            known[assignment.target] = d
        columns.append([known.get(state.new) for state in program.states])
    blocks = tuple(tuple(column[i] for column in columns) for i in range(len(program.states)))
    return StepJacobian(program.states, tuple(assignments), blocks)


@dataclass(frozen=True)
class Chain:
    """The chain ∂s_T/∂s_t in symbols: the one-step factor and what its pieces stand for.

    For an RNN the factor is ``D_t W_hh`` with ``D_t = diag(f'(h_t))``; otherwise it is the
    symbol ``J_t``, defined by the block matrix of :class:`StepJacobian`.
    """

    jacobian: StepJacobian
    factor: sp.Basic
    diagonal: tuple[MatrixSymbol, sp.Basic] | None


def symbolic_chain(derivation: Derivation) -> Chain:
    """The one-step factor of the chain, built from the step program's Jacobian."""
    jacobian = step_jacobian(derivation.step)
    if len(jacobian.states) == 1:
        (assignment,) = [a for a in jacobian.assignments if a.target == jacobian.blocks[0][0]]
        value = assignment.value
        if (
            derivation.spec.family == "rnn"
            and isinstance(value, MatMul)
            and isinstance(value.args[0], DiagMatrix)
        ):
            n = value.shape[0]
            diagonal = var("D", t, n, n)
            return Chain(jacobian, multiply(diagonal, *value.args[1:]), (diagonal, value.args[0]))
    n = sum(jacobian.sizes)
    return Chain(jacobian, var("J", t, n, n), None)
