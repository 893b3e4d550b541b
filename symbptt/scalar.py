"""The scalar view: a derivation written out entry by entry, and the brute-force ground truth.

The derivation builds the backward program with matrix-level reverse-mode rules
(:mod:`symbptt.adjoint`). Checking it against itself proves nothing, so this module gives an
independent reference for concrete, small sizes:

* every matrix variable becomes an explicit SymPy matrix of scalar symbols (``W_ih_0_1``,
  ``x_2_0``, ``g_n_1``);
* the forward program is evaluated at element level, which gives each ``h_t`` as an explicit
  matrix of nested scalar expressions, and from them the scalar loss
  ``L = Σ_t g_tᵀ h_t + g_nᵀ h_T`` (``g_t`` the cotangent of output ``t``, ``g_n`` that of ``h_n``);
* :func:`brute_force_gradients` differentiates ``L`` with SymPy's scalar ``diff``, one symbol at
  a time: no matrix calculus, no adjoint rules, nothing shared with the derivation but the
  forward equations. That is the ground truth.

:func:`program_gradients` evaluates the derivation's OWN backward program at the same element
level, so both sides are explicit matrices of scalar expressions over the same symbols and can be
compared exactly (``expand`` of the difference) or at high-precision points (:func:`evaluate`,
:func:`random_point`).

Substitution is linear in T: each step substitutes the already-expanded matrices of the previous
steps (shared SymPy subtrees), nothing re-expands the history. The brute force is not linear:
``diff`` differentiates the nested expression of ``L``, whose size grows geometrically with T,
so its cost grows several-fold per step (measured with SymPy 1.14: about 2× per step at H = 2,
3–4× at H = 3, 15 s for T = 6, H = 3). Small sizes only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import sympy as sp
from sympy import HadamardProduct, ImmutableMatrix, MatAdd, MatMul, MatrixSymbol, Transpose
from sympy.matrices import MatrixBase

from .derivation import Derivation, Gradient
from .matexpr import Elementwise
from .program import at_step, split_name, t, var

Values = dict[MatrixSymbol, ImmutableMatrix]
"""Each matrix variable and the explicit matrix that stands for it."""
Leaves = Mapping[MatrixSymbol, ImmutableMatrix]
"""Explicit matrices (of symbols or numbers) for the leaves: parameters, inputs, h_0, g."""


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


def _cotangents(derivation: Derivation) -> list[MatrixSymbol]:
    shape = derivation.adjoint.cotangent.shape
    return [var("g", k, *shape) for k in range(1, derivation.spec.steps + 1)]


def _inputs(derivation: Derivation) -> list[MatrixSymbol]:
    steps = range(1, derivation.spec.steps + 1)
    return [var(split_name(x)[0], k, *x.shape) for x in derivation.step.inputs for k in steps]


def _initial_state(derivation: Derivation) -> MatrixSymbol:
    ((_, previous),) = derivation.step.states
    return at_step(previous, 1)


def scalar_symbols(derivation: Derivation) -> Values:
    """Explicit matrices of real scalar symbols for every leaf of the derivation.

    Leaves: the parameters (``W_ih`` -> ``W_ih_0_0, W_ih_0_1, …``; a bias ``b_ih`` ->
    ``b_ih_0, …``), every input ``x[t]`` (``x_2_0`` is row 0 of ``x_2``), the initial state
    ``h[0]`` (``h_0_1``), every output cotangent ``g[t]`` and ``g[n]`` (``g_n_0``).
    """
    values: Values = {}
    for parameter in derivation.parameters:
        values[parameter.symbol] = _explicit(parameter.symbol, len(parameter.shape) == 2)
    for symbol in [*_inputs(derivation), _initial_state(derivation), *_cotangents(derivation)]:
        values[symbol] = _explicit(symbol, symbol.shape[1] != 1)
    values[derivation.adjoint.final] = _explicit(derivation.adjoint.final, False)
    return values


def at_element_level(expr: sp.Basic, values: Leaves) -> ImmutableMatrix:
    """``expr`` at element level: each matrix variable replaced by its explicit matrix.

    Sums, products, transposes and Hadamard products of the explicit matrices are formed
    directly; an :class:`~symbptt.matexpr.Elementwise` node is rebuilt on its explicit argument
    and expanded with ``as_explicit()`` (its ``_entry``). SymPy's own ``MatMul.as_explicit()`` is
    avoided: with explicit factors it goes through ``Sum(...).doit()``, which expands and
    factors the nested entries and is orders of magnitude slower.
    """
    if isinstance(expr, MatrixSymbol):
        try:
            return values[expr]
        except KeyError:
            raise KeyError(f"no explicit value for {expr}") from None
    if isinstance(expr, MatrixBase):
        return ImmutableMatrix(expr)
    args = [at_element_level(arg, values) for arg in expr.args if getattr(arg, "is_Matrix", False)]
    if isinstance(expr, MatAdd):
        result = args[0].as_mutable()
        for arg in args[1:]:
            result += arg
    elif isinstance(expr, MatMul):
        scalars = [arg for arg in expr.args if not getattr(arg, "is_Matrix", False)]
        result = sp.Mul(*scalars) * args[0]
        for arg in args[1:]:
            result = result * arg
    elif isinstance(expr, Transpose):
        (result,) = (arg.T for arg in args)
    elif isinstance(expr, HadamardProduct):
        result = args[0]
        for arg in args[1:]:
            result = result.multiply_elementwise(arg)
    elif isinstance(expr, Elementwise):
        result = Elementwise(expr.name, args[0]).as_explicit()
    else:
        result = expr.xreplace(dict(values)).as_explicit()
    return ImmutableMatrix(result)


# --- forward and loss ---------------------------------------------------------------------


def forward_values(derivation: Derivation, values: Leaves) -> Values:
    """``values`` extended with every forward variable (``z[t]``, ``h[t]``) at element level.

    Each assignment substitutes the explicit matrices already computed, in program order.
    """
    result: Values = dict(values)
    for step in derivation.forward:
        for assignment in step:
            result[assignment.target] = at_element_level(assignment.value, result)
    return result


def _loss(derivation: Derivation, env: Mapping[MatrixSymbol, ImmutableMatrix]) -> sp.Expr:
    output = derivation.step.output
    base, _ = split_name(output)
    steps = derivation.spec.steps
    loss = sp.S.Zero
    for k, g in enumerate(_cotangents(derivation), start=1):
        loss += (env[g].T * env[var(base, k, *output.shape)])[0, 0]
    loss += (env[derivation.adjoint.final].T * env[var(base, steps, *output.shape)])[0, 0]
    return loss


def unrolled_loss(derivation: Derivation, values: Leaves) -> sp.Expr:
    """The scalar loss ``L = Σ_t g_tᵀ h_t + g_nᵀ h_T`` with the forward program unrolled.

    ``values`` gives the leaves (normally :func:`scalar_symbols`); ``h_t`` comes from evaluating
    the forward assignments at element level.
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
    base, _ = split_name(gradient.of)
    return [var(base, k, *gradient.of.shape) for k in range(1, derivation.spec.steps + 1)]


def brute_force_gradients(derivation: Derivation) -> dict[str, ImmutableMatrix]:
    """The ground truth: ``sympy.diff`` of the unrolled scalar loss, one scalar at a time.

    Returns each gradient's label (``G1`` …) with an explicit matrix: a parameter's gradient has
    the parameter's shape (biases ``(H, 1)``); the input gradient stacks ``(∂L/∂x_t)ᵀ`` as row
    ``t - 1`` (shape ``(T, I)``, as torch's ``input.grad``); ``∂L/∂h_0`` is a column ``(H, 1)``.

    Warning: the cost grows several-fold per step, more with H (up to 4–5× per step; ``diff``
    works through the nested tanh/relu expression of ``L``); it is for small sizes only
    (T ≤ 4, H ≤ 3 take about a second).
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
    (``hbar[t]``, ``delta[t]``), all at element level, in program order."""
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
