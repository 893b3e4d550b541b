"""The loop form's backward step, split into what comes back and what was already known.

Each δ of a step is a Hadamard product of two kinds of factors: those that depend on what
comes back from step t + 1 (``h̄ₜ``, ``c̄ₜ``, another δ) and those made of forward values alone
(the saved gates and states: ``tanh(cₜ) ⊙ σ'(oₜ)``). The second kind needs nothing from the
recurrence, so the backward computes it for every step at once, before its loop, in a few
tensor operations over ``(T, B, n)``; each step then only multiplies::

    δᵒₜ = h̄ₜ ⊙ tanh(cₜ) ⊙ σ'(oₜ)   becomes   kᵟᵒ = tanh(c) ⊙ σ'(o)    (all steps, before)
                                              δᵒₜ = h̄ₜ ⊙ kᵟᵒₜ           (in the loop)

The arithmetic is the same; the loop runs a third as many tensor operations (an LSTM step: 8
instead of 21), which is what sets the time at small sizes, and on a GPU the count of kernels.
A δ that is stored for every step anyway (a ``(T, B, n)`` buffer the gradients sum) holds its
own local factor until the loop multiplies it in place (``δᵒ = tanh(c) ⊙ σ'(o)`` before,
``δᵒₜ = h̄ₜ ⊙ δᵒₜ`` in the loop), so that the split takes no memory there.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatrixSymbol

from ..core.program import Assignment, split_name, var


@dataclass(frozen=True)
class LocalFactors:
    """``assignments``: the adjoint's, with the forward-only part of each product replaced by
    a variable ``k_<target>[t]``, or by the target itself where it is stored (``buffers``);
    ``factors``: each such variable and the product it stands for (first-seen order)."""

    assignments: tuple[Assignment, ...]
    factors: dict[MatrixSymbol, sp.Basic]


def local_factors(assignments, forward: set[str], buffers: set[str]) -> LocalFactors:
    """Split the products of ``assignments`` (the generic backward step); ``forward`` holds the
    bases of the sequences the backward reads from the forward (saved values and states),
    ``buffers`` those of the targets stored for every step.

    A product is split when it has factors of both kinds and its forward part is more than one
    saved variable (which the loop would read as it is).
    """
    factors: dict[MatrixSymbol, sp.Basic] = {}

    def known(expr: sp.Basic) -> bool:
        indexed = [s for s in expr.atoms(MatrixSymbol) if split_name(s)[1] is not None]
        return bool(indexed) and all(split_name(s)[0] in forward for s in indexed)

    def split(product: sp.Basic, target: MatrixSymbol, whole: bool) -> sp.Basic:
        if not isinstance(product, HadamardProduct):
            return product
        local = [arg for arg in product.args if known(arg)]
        coming = [arg for arg in product.args if not known(arg)]
        if not coming or not local or (len(local) == 1 and isinstance(local[0], MatrixSymbol)):
            return product
        base, index = split_name(target)
        if whole and base in buffers:
            symbol = target
        else:
            name, number = f"k_{base}", 2
            while any(split_name(k)[0] == name for k in factors):
                name, number = f"k_{base}{number}", number + 1
            symbol = var(name, index, product.shape[0])
        factors[symbol] = local[0] if len(local) == 1 else HadamardProduct(*local)
        return HadamardProduct(*coming, symbol)

    rewritten = []
    for a in assignments:
        value = a.value
        if isinstance(value, MatAdd):
            value = MatAdd(*[split(arg, a.target, False) for arg in value.args])
        else:
            value = split(value, a.target, True)
        rewritten.append(Assignment(a.target, value, a.label))
    return LocalFactors(tuple(rewritten), factors)
