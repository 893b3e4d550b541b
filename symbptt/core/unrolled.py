"""The gradients written out for the given T as sums of chains of matrix products.

With ``D_t = diag(f'(h_t))`` (``diag(1 − h_t ⊙ h_t)`` for tanh), ``u ⊙ f'(h_t) = D_t u``, so
the backward recurrence ``δ_t = D_t (g_t + W_hhᵀ δ_{t+1})`` expands into::

    δ_t = Σ_{s=t}^{T} D_t W_hhᵀ D_{t+1} ⋯ W_hhᵀ D_s ĝ_s        (ĝ_T = g_T + g_n)

and every gradient into per-step terms, each a CHAIN of products. For ``L = Σ h_T``
(``g_t = 0``, ``g_n = 1``) and T = 3::

    ∂L/∂W_ih = D_3 g_n x_3ᵀ + D_2 W_hhᵀ D_3 g_n x_2ᵀ + D_1 W_hhᵀ D_2 W_hhᵀ D_3 g_n x_1ᵀ

The chains have O(T²) terms in all, so they are built for small T only (:data:`MAX_STEPS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from ..errors import DerivationError
from .derivation import Derivation
from .matexpr import Elementwise
from .program import split_name, var

MAX_STEPS = 8
"""Largest T for which the unrolled chains are built and printed."""

Chain = tuple[sp.Basic, ...]


@dataclass(frozen=True)
class UnrolledGradient:
    """``∂L/∂<of>``: for each step ``t = 1..T`` (one entry for ``h_0``), its chains."""

    label: str
    of: MatrixSymbol
    summed: bool
    once: bool
    steps: tuple[tuple[Chain, ...], ...]


@dataclass(frozen=True)
class Unrolled:
    """Every gradient as chains, and what each ``D_t`` stands for."""

    diagonals: tuple[tuple[MatrixSymbol, Elementwise], ...]
    deltas: tuple[tuple[MatrixSymbol, tuple[Chain, ...]], ...]
    gradients: tuple[UnrolledGradient, ...]
    zero_cotangents: bool


def unroll(derivation: Derivation, only_final: bool) -> Unrolled:
    """Expand the backward program into chains.

    Args:
        only_final: keep only ``g_n`` (``g_t = 0``: the loss reads ``h_n`` alone, as
            ``h_n.sum()`` does); else keep every ``g_t``.
    """
    if derivation.spec.steps > MAX_STEPS:
        raise DerivationError(f"unrolled chains are built for at most {MAX_STEPS} steps")
    if derivation.spec.family != "rnn" or derivation.spec.packed:
        raise DerivationError("unrolled chains are built for torch.nn.RNN without masks")
    definitions: dict[MatrixSymbol, sp.Basic] = {}
    diagonals = []
    for step in derivation.backward:
        for assignment in step:
            value = assignment.value
            if isinstance(value, HadamardProduct):
                value, diagonal = _as_diagonal(value)
                diagonals.append(diagonal)
            definitions[assignment.target] = value
    zero = set(_cotangents(derivation)) if only_final else set()
    expander = _Expander(definitions, zero)
    deltas = tuple(
        (step[-1].target, expander.chains(step[-1].target)) for step in derivation.backward
    )
    gradients = tuple(
        UnrolledGradient(
            g.label, g.of, g.summed, g.once, tuple(expander.chains(term) for term in g.terms)
        )
        for g in derivation.gradients
    )
    return Unrolled(tuple(reversed(diagonals)), tuple(reversed(deltas)), gradients, only_final)


def _cotangents(derivation: Derivation) -> list[MatrixSymbol]:
    return [
        var("g", k, *derivation.adjoint.cotangent.shape)
        for k in range(1, derivation.spec.steps + 1)
    ]


def _as_diagonal(value: HadamardProduct) -> tuple[sp.Basic, tuple[MatrixSymbol, Elementwise]]:
    """``u ⊙ f'(h_k)`` -> ``(D_k u, (D_k, f'(h_k)))``."""
    factors = [a for a in value.args if isinstance(a, Elementwise)]
    if len(factors) != 1 or not isinstance(factors[0].arg, MatrixSymbol):
        raise DerivationError(f"cannot write {value} as a diagonal matrix product")
    factor = factors[0]
    rest = [a for a in value.args if a is not factor]
    _, index = split_name(factor.arg)
    n = factor.arg.shape[0]
    diagonal = var("D", index, n, n)
    operand = rest[0] if len(rest) == 1 else HadamardProduct(*rest)
    return MatMul(diagonal, operand), (diagonal, factor)


class _Expander:
    def __init__(self, definitions: dict[MatrixSymbol, sp.Basic], zero: set[MatrixSymbol]):
        self._definitions = definitions
        self._zero = zero
        self._memo: dict[sp.Basic, tuple[Chain, ...]] = {}

    def chains(self, expr: sp.Basic) -> tuple[Chain, ...]:
        if expr not in self._memo:
            self._memo[expr] = self._expand(expr)
        return self._memo[expr]

    def _expand(self, expr: sp.Basic) -> tuple[Chain, ...]:
        if isinstance(expr, MatrixSymbol):
            if expr in self._zero:
                return ()
            if expr in self._definitions:
                return self.chains(self._definitions[expr])
            return ((expr,),)
        if isinstance(expr, Transpose) and isinstance(expr.arg, MatrixSymbol):
            return ((expr,),)
        if isinstance(expr, MatAdd):
            return tuple(chain for arg in expr.args for chain in self.chains(arg))
        if isinstance(expr, MatMul):
            result: tuple[Chain, ...] = ((),)
            for factor in expr.args:
                result = tuple(a + b for a in result for b in self.chains(factor))
            return result
        raise DerivationError(f"cannot unroll {expr}")
