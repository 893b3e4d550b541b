"""Reverse-mode rules at the matrix level, applied to a step program.

For ``y = f(args)`` and a cotangent ``ȳ`` (same shape as ``y``), the vector-Jacobian products::

    A + B         ->  Ā = ȳ,                 B̄ = ȳ
    A B           ->  Ā = ȳ Bᵀ,              B̄ = Aᵀ ȳ      (any number of factors)
    A ⊙ B         ->  Ā = ȳ ⊙ B,             B̄ = ȳ ⊙ A
    Aᵀ            ->  Ā = ȳᵀ
    c A           ->  Ā = c ȳ                 (c a number)
    1             ->  nothing                 (constants)
    y = f(A)      ->  Ā = ȳ ⊙ f'(y)          (f element-wise; f' written in the output y)

Adjoint variables are named after what they are the adjoint of: ``hbar[t]`` = ∂L/∂h_t,
``delta[t]`` = ∂L/∂z_t, ``delta_i[t]`` = ∂L/∂a^i_t (a pre-activation). The adjoint of a gate
output (``i = σ(a^i)``) is used once, in its pre-activation's, so it is written inline there.

``MatrixSymbol.diff`` is not used: it crashes on a two-step tanh RNN (SymPy 1.14) and prints
element-wise functions badly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose, ZeroMatrix

from ..errors import DerivationError
from .matexpr import Elementwise, derivative_of_output, rule_for
from .program import Assignment, State, StepProgram, split_name, t, var


def _product(factors: list[sp.Basic]) -> sp.Basic | None:
    if not factors:
        return None
    return factors[0] if len(factors) == 1 else MatMul(*factors)


def _transpose(expr: sp.Basic) -> sp.Basic:
    """``exprᵀ``, evaluated (``(W v)ᵀ = vᵀ Wᵀ``) except for an element-wise product or function,
    which stays one transposed vector (``(f ⊙ h)ᵀ``, printed in code as one operand)."""
    if isinstance(expr, (HadamardProduct, Elementwise)):
        return Transpose(expr)
    return Transpose(expr).doit()


def hadamard(*args: sp.Basic) -> HadamardProduct:
    """``a ⊙ b ⊙ ...`` with nested products flattened."""
    flat = []
    for arg in args:
        flat.extend(arg.args if isinstance(arg, HadamardProduct) else [arg])
    return HadamardProduct(*flat)


def vjp(expr: sp.Basic, cotangent: sp.Basic, output: MatrixSymbol | None = None):
    """Yield ``(symbol, contribution)`` pairs: the cotangent ``expr`` sends to each symbol in it,
    by the rule of :data:`VJP` for its node type.

    ``output`` names the variable ``expr`` is assigned to, so that the derivative of an
    element-wise function is written in its output (``1 - h ⊙ h`` rather than ``1 - tanh(z)²``).
    """
    yield from rule_for(VJP, expr, "reverse-mode")(expr, cotangent, output)


def _vjp_product(expr: MatMul, cotangent: sp.Basic, output) -> Iterator:
    numbers = [f for f in expr.args if not getattr(f, "is_Matrix", False)]
    factors = [f for f in expr.args if getattr(f, "is_Matrix", False)]
    coefficient = sp.Mul(*numbers)
    for k, factor in enumerate(factors):
        left, right = _product(factors[:k]), _product(factors[k + 1 :])
        parts = [] if coefficient == 1 else [coefficient]
        parts += [_transpose(left)] if left is not None else []
        parts += [cotangent] + ([_transpose(right)] if right is not None else [])
        yield from vjp(factor, _product(parts))


def _vjp_hadamard(expr: HadamardProduct, cotangent: sp.Basic, output) -> Iterator:
    for k, arg in enumerate(expr.args):
        others = expr.args[:k] + expr.args[k + 1 :]
        yield from vjp(arg, hadamard(cotangent, *others))


def _vjp_elementwise(expr: Elementwise, cotangent: sp.Basic, output) -> Iterator:
    y = output if output is not None else expr
    yield from vjp(expr.arg, hadamard(cotangent, derivative_of_output(expr.name, y)))


VJP: dict[type, Callable[..., Iterator]] = {
    MatrixSymbol: lambda expr, cotangent, output: iter([(expr, cotangent)]),
    OneMatrix: lambda expr, cotangent, output: iter(()),
    ZeroMatrix: lambda expr, cotangent, output: iter(()),
    MatAdd: lambda expr, cotangent, output: (
        pair for arg in expr.args for pair in vjp(arg, cotangent)
    ),
    MatMul: _vjp_product,
    HadamardProduct: _vjp_hadamard,
    Transpose: lambda expr, cotangent, output: vjp(expr.arg, _transpose(cotangent)),
    Elementwise: _vjp_elementwise,
}
"""Each node type's vector-Jacobian product (the table in this module's docstring)."""


def _signed_hadamard(term: sp.Basic) -> tuple[int, HadamardProduct] | None:
    """``u ⊙ v`` -> ``(1, u ⊙ v)``, ``−(u ⊙ v)`` -> ``(−1, u ⊙ v)``, anything else -> None."""
    if isinstance(term, HadamardProduct):
        return 1, term
    if isinstance(term, MatMul) and len(term.args) == 2 and term.args[0] == -1:
        inner = term.args[1]
        if isinstance(inner, HadamardProduct):
            return -1, inner
    return None


def _sum(terms: list[sp.Basic]) -> sp.Basic:
    """The sum of contributions; ``c ⊙ a − c ⊙ b`` is written ``c ⊙ (a − b)``.

    Factoring the common cotangent out keeps what a reader would write (the GRU's
    ``z̄_t = h̄_t ⊙ (h_{t-1} − n_t)``) and saves the code a product.
    """
    if len(terms) == 1:
        return terms[0]
    signed = [_signed_hadamard(term) for term in terms]
    if all(signed) and len({product.args[0] for _, product in signed}) == 1:
        common = signed[0][1].args[0]
        rest = [
            (sign, product.args[1] if len(product.args) == 2 else hadamard(*product.args[1:]))
            for sign, product in signed
        ]
        rest.sort(key=lambda item: -item[0])  # positive terms first: a − b, not −b + a
        inner = [term if sign == 1 else MatMul(-1, term) for sign, term in rest]
        return hadamard(common, MatAdd(*inner))
    return MatAdd(*terms)


def adjoint_symbol(symbol: MatrixSymbol) -> MatrixSymbol:
    """``h[t]`` -> ``hbar[t]``, ``z[t]`` -> ``delta[t]``, ``a_i[t]`` -> ``delta_i[t]``."""
    base, index = split_name(symbol)
    if base == "z":
        name = "delta"
    elif base.startswith("a_"):
        name = "delta_" + base[2:]
    else:
        name = base + "bar"
    return var(name, index, *symbol.shape)


def carry_symbol(state: State) -> MatrixSymbol:
    """Placeholder for what step ``t + 1`` sends back to ``state.new`` (``carry_h[t]``)."""
    base, _ = split_name(state.new)
    return var(f"carry_{base}", t, *state.new.shape)


@dataclass(frozen=True)
class StepAdjoint:
    """The backward pass of one generic step ``t`` and what it sends elsewhere.

    Attributes:
        assignments: the adjoints of the step's variables in reverse order, starting with
            ``hbar[t] = g[t] + carry_h[t]``, where ``carry_h[t]`` stands for what step ``t + 1``
            sends back to ``h[t]`` (``final`` of the state at ``t = T``).
        carry: for each state, the cotangent step ``t`` sends to its previous value.
        parameter_terms: each parameter block's contribution at step ``t``.
        input_terms: each input's cotangent at step ``t`` (``W_ihᵀ delta[t]``).
        cotangent: ``g[t]`` = ∂L/∂output_t.
    """

    assignments: tuple[Assignment, ...]
    carry: dict[State, sp.Basic]
    parameter_terms: dict[MatrixSymbol, sp.Basic]
    input_terms: dict[MatrixSymbol, sp.Basic]
    cotangent: MatrixSymbol


def step_adjoint(program: StepProgram) -> StepAdjoint:
    """Apply the reverse-mode rules to ``program`` for the symbolic step ``t``."""
    cotangent = var("g", t, *program.output.shape)
    contributions: dict[MatrixSymbol, list[sp.Basic]] = defaultdict(list)
    contributions[program.output].append(cotangent)
    states = {state.new for state in program.states}
    for state in program.states:
        contributions[state.new].append(carry_symbol(state))
    assignments = []
    for assignment in reversed(program.assignments):
        if assignment.target not in contributions:
            raise DerivationError(f"{assignment.target} does not reach the loss")
        total = _sum(contributions.pop(assignment.target))
        if assignment.target in states or not isinstance(assignment.value, Elementwise):
            bar = adjoint_symbol(assignment.target)
            assignments.append(Assignment(bar, total, "B"))
            total = bar
        for symbol, contribution in vjp(assignment.value, total, output=assignment.target):
            contributions[symbol].append(contribution)
    parameters = {b: _sum(contributions.pop(b)) for b in program.blocks}
    # contributions arrived in reverse program order; sum them in program order (gates i, f, g, o)
    inputs = {x: _sum(contributions.pop(x)[::-1]) for x in program.inputs}
    carry = {s: _sum(contributions.pop(s.previous)[::-1]) for s in program.states}
    for constant in program.constants:
        contributions.pop(constant, None)
    if contributions:
        raise DerivationError(f"cotangents left unassigned: {sorted(map(str, contributions))}")
    return StepAdjoint(
        assignments=tuple(assignments),
        carry=carry,
        parameter_terms=parameters,
        input_terms=inputs,
        cotangent=cotangent,
    )
