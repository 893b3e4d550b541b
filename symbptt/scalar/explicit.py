"""The scalar view: a derivation written out entry by entry, and the brute-force ground truth.

The derivation builds the backward program with matrix-level reverse-mode rules
(:mod:`symbptt.core.adjoint`). Checking it against itself proves nothing, so this module gives an
independent reference for concrete, small sizes, for every cell (RNN, LSTM with or without a
projection, GRU, and the single-step cells):

* every leaf matrix becomes an explicit SymPy matrix of real scalar symbols: each parameter
  BLOCK (``W_ih_0_1``; an LSTM's ``W_ii_0_1``, ``W_if_0_1``, …; a bias block ``b_ii_1``), each
  input ``x_t`` (``x_2_0``) and mask ``m_t`` of a packed spec (``m_2_0``, a constant), each
  initial state (``h_0_1``, and ``c_0_1`` for an LSTM), each output cotangent ``g_t``
  (``g_1_0``) and each final-state cotangent (``g_n_0`` = ∂L/∂h_n, ``gc_n_0`` = ∂L/∂c_n);
* the forward program is evaluated at element level, which gives every state as an explicit
  matrix of nested scalar expressions, and from them the scalar loss
  ``L = Σ_t g_t·h_t + Σ_states final·state_T`` (``g_n·h_T``, plus ``gc_n·c_T`` for an LSTM);
* :func:`brute_force_gradients` differentiates ``L`` with SymPy's scalar ``diff``, one symbol at
  a time: no matrix calculus, no adjoint rules, nothing shared with the derivation but the
  forward equations. That is the ground truth.

:func:`program_gradients` evaluates the derivation's OWN backward program at the same element
level, so both sides are explicit matrices of scalar expressions over the same symbols and can be
compared exactly (``expand`` of the difference) or at high-precision points (:func:`evaluate`,
:func:`random_point`).

The logistic function is written ``σ(y) = (1 + tanh(y/2))/2`` here, an exact identity: every
entry is then a polynomial in ``tanh`` atoms, on both sides, so ``expand`` can prove an identity
(``1/(1 + e^{−y})`` would make the brute force and the program two different rational functions
of ``exp`` atoms, which ``expand`` does not bring to one form).

Substitution is linear in T: each step substitutes the already-expanded matrices of the previous
steps (shared SymPy subtrees), nothing re-expands the history. The brute force is not linear:
``diff`` differentiates the nested expression of ``L``, whose size grows geometrically with T,
so its cost grows several-fold per step (measured with SymPy 1.14 for an RNN: about 2× per step
at H = 2, 3–4× at H = 3, 15 s for T = 6, H = 3; an LSTM or GRU step is several RNN steps).
Small sizes only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import sympy as sp
from sympy import (
    HadamardProduct,
    Identity,
    ImmutableMatrix,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices import MatrixBase

from ..core.derivation import Derivation, Gradient
from ..core.matexpr import FUNCTIONS, Elementwise, rule_for
from ..core.program import State, at_step, split_name, t

Values = dict[MatrixSymbol, ImmutableMatrix]
"""Each matrix variable and the explicit matrix that stands for it."""
Leaves = Mapping[MatrixSymbol, ImmutableMatrix]
"""Explicit matrices (of symbols or numbers) for the leaves: parameter blocks, inputs, initial
states, cotangents."""


def _sigmoid(y: sp.Expr) -> sp.Expr:
    return (1 + sp.tanh(y / 2)) / 2


SCALAR_FUNCTIONS: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    name: function.scalar for name, function in FUNCTIONS.items()
} | {"sigmoid": _sigmoid}
"""Each element-wise function on one scalar; ``σ(y) = (1 + tanh(y/2))/2`` (see above)."""


# --- symbols ------------------------------------------------------------------------------


def _scalar_name(symbol: MatrixSymbol, entry: tuple[int, int], matrix: bool) -> str:
    base, index = split_name(symbol)
    parts = [base] if index is None else [base, str(index)]
    parts += [str(entry[0]), str(entry[1])] if matrix else [str(entry[0])]
    return "_".join(parts)


def _explicit(symbol: MatrixSymbol, matrix: bool) -> ImmutableMatrix:
    rows, cols = symbol.shape
    return ImmutableMatrix(
        rows,
        cols,
        lambda i, j: sp.Symbol(_scalar_name(symbol, (i, j), matrix), real=True),
    )


def _steps(derivation: Derivation) -> range:
    return range(1, derivation.spec.steps + 1)


def _cotangents(derivation: Derivation) -> list[MatrixSymbol]:
    """``g[1] … g[T]``: the cotangents of the per-step output."""
    return [at_step(derivation.adjoint.cotangent, k) for k in _steps(derivation)]


def _inputs(derivation: Derivation) -> list[MatrixSymbol]:
    """Every per-step input ``x[t]`` and constant (the masks ``m[t]`` of a packed spec)."""
    step = derivation.step
    return [at_step(x, k) for x in (*step.inputs, *step.constants) for k in _steps(derivation)]


def _states(derivation: Derivation) -> tuple[State, ...]:
    return derivation.step.states


def scalar_symbols(derivation: Derivation) -> Values:
    """Explicit matrices of real scalar symbols for every leaf of the derivation.

    Leaves: every parameter block (``W_ih`` -> ``W_ih_0_0, W_ih_0_1, …``; a bias block ``b_ih``
    -> ``b_ih_0, …``; an LSTM's ``W_ii``, ``W_if``, …), every input ``x[t]`` (``x_2_0`` is row 0
    of ``x_2``), every per-step constant (a packed spec's masks ``m[t]``: ``m_2_0``), every
    initial state ``h[0]`` (``h_0_1``) and ``c[0]`` (``c_0_1``), every output cotangent ``g[t]``
    and every final-state cotangent ``g[n]`` (``g_n_0``), ``gc[n]`` (``gc_n_0``). Constants get
    no gradient, so the brute force does not differentiate with respect to them.
    """
    values: Values = {}
    for parameter in derivation.parameters:
        for block in parameter.blocks:
            values[block] = _explicit(block, len(parameter.shape) == 2)
    states = _states(derivation)
    initial = [at_step(state.previous, 1) for state in states]
    finals = [state.final for state in states]
    for symbol in [*_inputs(derivation), *initial, *_cotangents(derivation), *finals]:
        values[symbol] = _explicit(symbol, symbol.shape[1] != 1)
    return values


def at_element_level(expr: sp.Basic, values: Leaves) -> ImmutableMatrix:
    """``expr`` at element level: each matrix variable replaced by its explicit matrix.

    Sums, products (with their numeric coefficients), transposes and Hadamard products of the
    explicit matrices are formed directly; an :class:`~symbptt.core.matexpr.Elementwise` node
    applies
    its scalar function (:data:`SCALAR_FUNCTIONS`) to each entry of its explicit argument;
    ``OneMatrix``, ``ZeroMatrix`` and ``Identity`` become explicit constants. SymPy's own
    ``MatMul.as_explicit()`` is avoided: with explicit factors it goes through
    ``Sum(...).doit()``, which expands and factors the nested entries and is orders of magnitude
    slower. Raises :class:`~symbptt.errors.DerivationError` for any other node.
    """
    return ImmutableMatrix(rule_for(ELEMENT_LEVEL, expr, "element-level")(expr, values))


def _leaf(expr: MatrixSymbol, values: Leaves) -> sp.MatrixBase:
    try:
        return values[expr]
    except KeyError:
        raise KeyError(f"no explicit value for {expr}") from None


def _operands(expr: sp.Basic, values: Leaves) -> list[sp.MatrixBase]:
    """The explicit matrices of ``expr``'s matrix operands (its numbers left out)."""
    return [at_element_level(arg, values) for arg in expr.args if getattr(arg, "is_Matrix", False)]


def _sum(expr: MatAdd, values: Leaves) -> sp.MatrixBase:
    first, *rest = _operands(expr, values)
    result = first.as_mutable()
    for arg in rest:
        result += arg
    return result


def _product(expr: MatMul, values: Leaves) -> sp.MatrixBase:
    first, *rest = _operands(expr, values)
    result = sp.Mul(*[arg for arg in expr.args if not getattr(arg, "is_Matrix", False)]) * first
    for arg in rest:
        result = result * arg
    return result


def _hadamard(expr: HadamardProduct, values: Leaves) -> sp.MatrixBase:
    first, *rest = _operands(expr, values)
    for arg in rest:
        first = first.multiply_elementwise(arg)
    return first


ELEMENT_LEVEL: dict[type, Callable[[sp.Basic, Leaves], sp.MatrixBase]] = {
    MatrixSymbol: _leaf,
    MatrixBase: lambda expr, values: expr,
    OneMatrix: lambda expr, values: expr.as_explicit(),
    ZeroMatrix: lambda expr, values: expr.as_explicit(),
    Identity: lambda expr, values: expr.as_explicit(),
    MatAdd: _sum,
    MatMul: _product,
    Transpose: lambda expr, values: _operands(expr, values)[0].T,
    HadamardProduct: _hadamard,
    Elementwise: lambda expr, values: _operands(expr, values)[0].applyfunc(
        SCALAR_FUNCTIONS[expr.name]
    ),
}
"""Each node type at element level, from its operands' explicit matrices."""


# --- forward and loss ---------------------------------------------------------------------


def forward_values(derivation: Derivation, values: Leaves) -> Values:
    """``values`` extended with every forward variable (``z[t]``, ``h[t]``, ``c[t]``, gates …)
    at element level.

    Each assignment substitutes the explicit matrices already computed, in program order.
    """
    result: Values = dict(values)
    for step in derivation.forward:
        for assignment in step:
            result[assignment.target] = at_element_level(assignment.value, result)
    return result


def _dot(a: ImmutableMatrix, b: ImmutableMatrix) -> sp.Expr:
    return (a.T * b)[0, 0]


def _loss(derivation: Derivation, env: Mapping[MatrixSymbol, ImmutableMatrix]) -> sp.Expr:
    output = derivation.step.output
    last = derivation.spec.steps
    loss = sp.S.Zero
    for k, g in enumerate(_cotangents(derivation), start=1):
        loss += _dot(env[g], env[at_step(output, k)])
    for state in _states(derivation):
        loss += _dot(env[state.final], env[at_step(state.new, last)])
    return loss


def unrolled_loss(derivation: Derivation, values: Leaves) -> sp.Expr:
    """The scalar loss ``L = Σ_t g_t·h_t + Σ_states final·state_T`` with the forward program
    unrolled (``g_n·h_T`` for an RNN or GRU, ``g_n·h_T + gc_n·c_T`` for an LSTM).

    ``values`` gives the leaves (normally :func:`scalar_symbols`); the states come from
    evaluating the forward assignments at element level.
    """
    return _loss(derivation, forward_values(derivation, values))


# --- gradients ----------------------------------------------------------------------------


def _stack_rows(columns: list[ImmutableMatrix]) -> ImmutableMatrix:
    """Per-step column vectors as the rows of one matrix, torch's ``(L, H_in)`` layout."""
    return ImmutableMatrix.vstack(*(c.T for c in columns))


def _is_per_step(gradient: Gradient) -> bool:
    """Whether ``gradient`` is one value per step (``∂L/∂x_t``), not a sum or ``∂L/∂h_0``."""
    _, index = split_name(gradient.of)
    return not gradient.summed and index is not None and index.has(t)


def _per_step(gradient: Gradient, derivation: Derivation) -> list[MatrixSymbol]:
    """The symbols an input gradient is taken with respect to, one per step."""
    return [at_step(gradient.of, k) for k in _steps(derivation)]


def brute_force_gradients(derivation: Derivation) -> dict[str, ImmutableMatrix]:
    """The ground truth: ``sympy.diff`` of the unrolled scalar loss, one scalar at a time.

    Returns each gradient's label (``G1`` …) with an explicit matrix: a parameter block's
    gradient has the block's shape (bias blocks ``(H, 1)``); the input gradient stacks
    ``(∂L/∂x_t)ᵀ`` as row ``t - 1`` (shape ``(T, I)``, as torch's ``input.grad``); the gradient
    of an initial state (``h_0``, ``c_0``) is a column.

    Warning: the cost grows several-fold per step, more with H (up to 4–5× per step for an
    RNN; ``diff`` works through the nested tanh/relu expression of ``L``); it is for small sizes
    only (an RNN with T ≤ 4, H ≤ 3 takes about a second; an LSTM or GRU with T = 2, H = 2 a
    few).
    """
    symbols = scalar_symbols(derivation)
    loss = unrolled_loss(derivation, symbols)

    def grad(symbol: MatrixSymbol) -> ImmutableMatrix:
        return symbols[symbol].applyfunc(lambda s: sp.diff(loss, s))

    result = {}
    for gradient in derivation.gradients:
        if _is_per_step(gradient):
            result[gradient.label] = _stack_rows([grad(s) for s in _per_step(gradient, derivation)])
        else:
            result[gradient.label] = grad(gradient.of)
    return result


def backward_values(derivation: Derivation, values: Leaves) -> Values:
    """``values`` extended with the forward variables and every backward variable
    (``hbar[t]``, ``delta[t]``, ``cbar[t]`` …), all at element level, in program order."""
    env = forward_values(derivation, values)
    for step in derivation.backward:
        for assignment in step:
            env[assignment.target] = at_element_level(assignment.value, env)
    return env


def program_gradients(
    derivation: Derivation, values: Leaves | None = None
) -> dict[str, ImmutableMatrix]:
    """The derivation's own backward program and gradient terms evaluated at element level.

    Same labels, shapes and layout as :func:`brute_force_gradients`. ``values`` gives the
    leaves (default: :func:`scalar_symbols`; pass numbers to evaluate the program directly).
    """
    env = backward_values(derivation, scalar_symbols(derivation) if values is None else values)
    result = {}
    for gradient in derivation.gradients:
        terms = [at_element_level(term, env) for term in gradient.terms]
        if gradient.summed:
            result[gradient.label] = ImmutableMatrix(sum(terms[1:], terms[0].as_mutable()))
        elif _is_per_step(gradient):
            result[gradient.label] = _stack_rows(terms)
        else:
            (result[gradient.label],) = terms
    return result


# --- numbers ------------------------------------------------------------------------------


def random_point(derivation: Derivation, seed: int) -> dict[sp.Symbol, sp.Rational]:
    """Seeded random exact rationals in ``[-1, 1]`` (six decimals) for every scalar symbol."""
    rng = random.Random(seed)
    point = {}
    for matrix in scalar_symbols(derivation).values():
        for symbol in matrix:
            point[symbol] = sp.Rational(rng.randint(-(10**6), 10**6), 10**6)
    return point


def _numeric(expr: sp.Basic, point: Mapping[sp.Basic, sp.Basic], memo: dict) -> sp.Basic:
    """``expr`` rebuilt bottom-up with the point's Floats; shared subtrees are evaluated once."""
    try:
        return memo[expr]
    except KeyError:
        pass
    if not expr.args:
        result = point.get(expr, expr)
    else:
        result = expr.func(*(_numeric(arg, point, memo) for arg in expr.args))
    memo[expr] = result
    return result


def evaluate(matrices, point: Mapping[sp.Basic, sp.Basic], digits: int = 50):
    """Evaluate explicit matrices (one, or a dict of them) at ``point`` with ``digits`` digits.

    ``point`` maps scalar symbols to numbers; they become SymPy Floats of ``digits + 10`` digits
    (a guard against rounding in the nested tanh), every node is rebuilt with them (each shared
    subexpression once: a plain ``subs``/``evalf`` walks the expression as a tree), and the
    results are rounded to ``digits`` digits. Raises ``ValueError`` if a symbol is left without
    a value.
    """
    floats = {symbol: sp.Float(value, digits + 10) for symbol, value in point.items()}
    memo: dict = {}

    def entry(expr: sp.Basic) -> sp.Basic:
        value = _numeric(sp.sympify(expr), floats, memo)
        if value.free_symbols:
            raise ValueError(f"no value for {sorted(map(str, value.free_symbols))}")
        return value.evalf(digits)

    if isinstance(matrices, Mapping):
        return {key: ImmutableMatrix(m).applyfunc(entry) for key, m in matrices.items()}
    return ImmutableMatrix(matrices).applyfunc(entry)
