"""The element-level scalar view with CSE: the backward program written entry by entry.

:func:`scalar_view` writes a derivation's forward and backward program (RNN, LSTM, GRU, the
single-step cells; any number of steps) at element level as a straight-line program: a list of
temporaries ``t0 = …``, ``t1 = …`` and one output per gradient entry (``∂L/∂W_ih[i,j]``, each
bias entry, each input entry ``∂L/∂x_t[j]``, each initial-state entry ``∂L/∂h_0[j]``), every one
a scalar expression in the leaf symbols of :func:`symbptt.scalar.explicit.scalar_symbols`
(``W_ih_0_1``,
``x_3_0``, ``h_0_1``, ``g_2_0``, ``g_n_0`` …) and earlier temporaries.

How it is built, and why it stays linear in T:

1. Every forward assignment (``z_t``, ``h_t``, gates …) and then every backward assignment
   (``hbar_t``, ``delta_t`` …) is evaluated entry by entry over the matrices already built, as
   :func:`symbptt.scalar.explicit.at_element_level` does, except that each non-trivial entry is
   bound
   to a temporary at once, and so is each activation (``tanh``, ``σ``, ``relu``) of an entry.
   An entry is therefore a short expression over the previous step's temporaries
   (``tanh(t17)``, ``b_ih_0 + W_hh_0_0*t17 + …``), never a nested tree of the whole history:
   the program's size is linear in T. Identical entries share one temporary over the whole
   program (the LSTM's ``tanh(c_t)``, read by ``h_t``, ``c̄_t`` and ``δᵒ_t``, is computed once).
2. Common-subexpression elimination, per step: the temporaries of one forward step, of one
   backward step, and then all the outputs each go through one call of the backend's ``cse``,
   which finds what they share below entry level (the LSTM's ``h̄_t ⊙ o_t`` in ``c̄_t`` and
   ``δᵒ_t``, the GRU's ``h̄_t ⊙ (1 − z_t)`` in ``δⁿ_t`` and ``δᶻ_t``, the one sum that is both
   ``∂L/∂b_ih`` and ``∂L/∂b_hh``). ``cse`` of nested trees of the whole history is no option:
   building them alone (:func:`symbptt.scalar.explicit.program_gradients`) takes 4.8 s at (T=5, I=4,
   H=8) with SymPy 1.14 and does not finish in 5 minutes at T = 10.
3. The program is put in dependency order, aliases (a temporary equal to a symbol or a number)
   and repeated lines are removed, and the temporaries are numbered ``t0, t1, …`` in order, so
   the printed view (:meth:`ScalarView.text`) is deterministic (the same for every
   ``PYTHONHASHSEED``) and can be diffed against golden files.

The logistic function is written ``σ(y) = (1 + tanh(y/2))/2`` as in :mod:`symbptt.scalar.explicit`;
the
derivatives of the activations are written in their outputs (``1 − y²``, ``y (1 − y)``,
``[y > 0]``), as the derivation has them.

Backends (one switch, ``backend=``): ``"sympy"``, the default and the reference, and
``"symengine"``, the same construction with SymEngine's scalars and ``cse`` (imported only when
asked; ``pip install symbptt[symengine]``). Term order and what ``cse`` extracts differ, so the
printed views differ and the golden files are kept per backend; the numbers agree.

Measured: :func:`scalar_view` plus :meth:`ScalarView.text`, one process, SymPy's cache cleared
before each run, median of 3 (5 for the small sizes); SymPy 1.14.0, SymEngine 0.15.0, Python
3.11.7, x86_64, 2 cores shared with other work::

    cell  (T, I, H)    lines   sympy     symengine   sympy/symengine
    rnn   (50, 4, 8)    1928   2.44 s    0.195 s     12.5×   (13.0× and 13.2× on reruns)
    rnn   (10, 4, 8)     488   0.445 s   0.034 s     13.1×
    rnn   (3, 1, 2)       41   0.013 s   0.002 s      5.4×
    lstm  (50, 4, 8)    8296   13.1 s    1.07 s      12.2×
    gru   (50, 4, 8)    6160   9.71 s    0.774 s     12.6×
    rnn   (50, 4, 8), cse=False: 1.42 s and 0.114 s (12.5×), 1920 lines
    rnn   (50, 4, 8), first call in a fresh process: 2.28 s and 0.203 s (11.2×)

The target, the RNN at (T=50, I=4, H=8) under 10 s with SymPy and ≥ 10× faster with SymEngine,
is met; with SymPy an LSTM of that size takes longer than 10 s.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy import (
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices import MatrixBase

from ..core.derivation import Derivation, Gradient
from ..core.matexpr import Elementwise
from ..core.program import split_name
from ..errors import SymbpttError
from ..limits import progress, require, scalar_view_cost
from .explicit import SCALAR_FUNCTIONS, scalar_symbols

BACKENDS = ("sympy", "symengine")
"""The backends :func:`scalar_view` accepts; ``sympy`` is the default and the reference."""

Expr = Any
"""A scalar expression of the backend (``sympy.Expr`` or a SymEngine ``Basic``)."""
Matrix = tuple[tuple[Expr, ...], ...]
"""An explicit matrix of backend scalars, as rows."""


class ScalarViewError(SymbpttError, ValueError):
    """The scalar view cannot be built for these arguments (unknown backend, several layers)."""


class BackendUnavailableError(SymbpttError, ImportError):
    """The requested backend's package is not installed."""


# --- backends -------------------------------------------------------------------------------


class _Backend:
    """The scalar algebra one backend provides to the builder."""

    name: str

    def symbol(self, name: str) -> Expr:
        raise NotImplementedError

    def number(self, value: sp.Expr) -> Expr:
        raise NotImplementedError

    def add(self, terms: Sequence[Expr]) -> Expr:
        raise NotImplementedError

    def mul(self, factors: Sequence[Expr]) -> Expr:
        raise NotImplementedError

    def dot(self, left: Sequence[Expr], right: Sequence[Expr]) -> Expr:
        """``Σ_k left[k] right[k]``."""
        return self.add([self.mul([a, b]) for a, b in zip(left, right, strict=True)])

    def function(self, name: str) -> Callable[[Expr], Expr]:
        raise NotImplementedError

    def cse(self, exprs: list[Expr]) -> tuple[list[tuple[Expr, Expr]], list[Expr]]:
        raise NotImplementedError

    def is_atom(self, expr: Expr) -> bool:
        return expr.is_Atom

    def free_symbols(self, expr: Expr) -> Iterable[Expr]:
        return expr.free_symbols

    def renamed(self, exprs: list[Expr], mapping: Mapping[Expr, Expr]) -> list[Expr]:
        """Each of ``exprs`` with the symbols in ``mapping`` replaced."""
        return [expr.xreplace(mapping) for expr in exprs] if mapping else exprs

    def text(self, expr: Expr) -> str:
        return str(expr)

    def evaluate(self, expr: Expr, values: Mapping[Expr, float]) -> float:
        """``expr`` in floating point, each of its symbols at its value in ``values``."""
        numbers = {symbol: self.real(values[symbol]) for symbol in self.free_symbols(expr)}
        return float(expr.xreplace(numbers))

    def real(self, value: float) -> Expr:
        raise NotImplementedError


class _SymPy(_Backend):
    name = "sympy"

    def symbol(self, name: str) -> Expr:
        return sp.Symbol(name, real=True)

    def number(self, value: sp.Expr) -> Expr:
        return sp.sympify(value)

    def add(self, terms: Sequence[Expr]) -> Expr:
        return sp.Add(*terms)

    def mul(self, factors: Sequence[Expr]) -> Expr:
        return sp.Mul(*factors)

    def function(self, name: str) -> Callable[[Expr], Expr]:
        return SCALAR_FUNCTIONS[name]

    def cse(self, exprs: list[Expr]) -> tuple[list[tuple[Expr, Expr]], list[Expr]]:
        return sp.cse(exprs, symbols=sp.numbered_symbols("_cse"), order="none")

    def real(self, value: float) -> Expr:
        return sp.Float(value)

    def text(self, expr: Expr) -> str:
        # the arguments' own (canonical, deterministic) order: 3× faster than sorting them
        return sp.sstr(expr, order="none")


class _SymEngine(_Backend):
    name = "symengine"

    def __init__(self) -> None:
        try:
            import symengine as se
        except ImportError as error:
            raise BackendUnavailableError(
                "the symengine backend needs the symengine package: pip install symbptt[symengine]"
            ) from error
        self.se = se
        self.batch = se.Function("_batch")
        zero, one, half = se.Integer(0), se.Integer(1), se.Rational(1, 2)
        # the same functions as symbptt.scalar.explicit.SCALAR_FUNCTIONS; SymEngine has no
        # Heaviside,
        # so [y > 0] is a Piecewise (0 at y = 0, as Heaviside(y, 0))
        self.functions: dict[str, Callable[[Expr], Expr]] = {
            "tanh": se.tanh,
            "relu": lambda y: se.Max(zero, y),
            "sigmoid": lambda y: (1 + se.tanh(y * half)) * half,
            "dtanh": lambda y: 1 - y**2,
            "dsigmoid": lambda y: y * (1 - y),
            "drelu": lambda y: se.Piecewise((one, y > 0), (zero, True)),
        }

    def symbol(self, name: str) -> Expr:
        return self.se.Symbol(name)

    def number(self, value: sp.Expr) -> Expr:
        return self.se.sympify(value)

    def add(self, terms: Sequence[Expr]) -> Expr:
        return self.se.Add(*terms)

    def dot(self, left: Sequence[Expr], right: Sequence[Expr]) -> Expr:
        return self.se.Add(*[a * b for a, b in zip(left, right, strict=True)])

    def mul(self, factors: Sequence[Expr]) -> Expr:
        return self.se.Mul(*factors)

    def function(self, name: str) -> Callable[[Expr], Expr]:
        return self.functions[name]

    def cse(self, exprs: list[Expr]) -> tuple[list[tuple[Expr, Expr]], list[Expr]]:
        replacements, reduced = self.se.cse(exprs)
        return list(replacements), list(reduced)

    def renamed(self, exprs: list[Expr], mapping: Mapping[Expr, Expr]) -> list[Expr]:
        # SymEngine converts the whole mapping on every call: one call for all of them, the
        # expressions held as the arguments of one undefined function
        if not mapping or not exprs:
            return exprs
        return list(self.batch(*exprs).xreplace(mapping).args)

    def real(self, value: float) -> Expr:
        return self.se.RealDouble(value)


def _backend(name: str) -> _Backend:
    """The backend called ``name``; SymEngine is imported only here, when asked for."""
    if name == "sympy":
        return _SymPy()
    if name == "symengine":
        return _SymEngine()
    raise ScalarViewError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")


# --- the view --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Temporary:
    """``name = expr``: one line of the straight-line program.

    ``note`` says which variable entry it holds (``h_3[1]``, ``delta_2[0]``); it is empty for a
    subexpression ``cse`` introduced and for an activation no variable holds (``tanh(c_t)``).
    """

    name: str
    symbol: Expr
    expr: Expr
    note: str


@dataclass(frozen=True)
class Output:
    """One gradient entry: ``name`` (``dL/dW_ih[0,1]``) is ``expr``.

    ``label`` is the derivation's gradient label (``G1`` …) and ``(row, col)`` the entry's place
    in :func:`symbptt.scalar.explicit.program_gradients`'s layout of that gradient: the block's
    shape
    for a parameter block (a bias block is a column), ``(T, I)`` with one row per step for the
    input, a column for an initial state.
    """

    name: str
    label: str
    row: int
    col: int
    expr: Expr


@dataclass(frozen=True)
class ScalarView:
    """The backward program of a derivation at element level, after CSE.

    Attributes:
        derivation: the derivation it was built from.
        backend: ``"sympy"`` or ``"symengine"``.
        leaves: every leaf matrix (as :func:`symbptt.scalar.explicit.scalar_symbols`) as rows of the
            backend's symbols.
        temporaries: the program's lines in order; each reads leaves and earlier temporaries.
        outputs: every gradient entry, by gradient label and entry.
    """

    derivation: Derivation
    backend: str
    leaves: dict[MatrixSymbol, Matrix]
    temporaries: tuple[Temporary, ...]
    outputs: tuple[Output, ...]
    _algebra: _Backend = field(repr=False, compare=False)

    @property
    def size(self) -> int:
        """The program's length in lines: temporaries plus outputs."""
        return len(self.temporaries) + len(self.outputs)

    def text(self, notes: bool = True) -> str:
        """The program as text: ``t12 = tanh(t11)  # h_3[1]`` … then ``dL/dW_ih[0,1] = …``.

        Temporaries come in program order, outputs in the derivation's gradient order (each
        gradient entry by entry, row-major); ``notes=False`` leaves out the comments.
        """
        lines = []
        for temporary in self.temporaries:
            line = f"{temporary.name} = {self._algebra.text(temporary.expr)}"
            if notes and temporary.note:
                line += f"  # {temporary.note}"
            lines.append(line)
        lines += [f"{output.name} = {self._algebra.text(output.expr)}" for output in self.outputs]
        return "\n".join(lines) + "\n"

    def evaluate(self, point: Mapping[Any, float]) -> dict[str, list[list[float]]]:
        """Run the program at ``point`` in floating point; each gradient label's matrix as rows.

        ``point`` maps every leaf scalar (a SymPy symbol from
        :func:`symbptt.scalar.explicit.scalar_symbols`, or its name) to a number. The layout of each
        gradient is that of :func:`symbptt.scalar.explicit.program_gradients`. Raises
        ``ValueError`` if a
        leaf is missing.
        """
        by_name = {str(key): float(value) for key, value in point.items()}
        values: dict[Expr, float] = {}
        for matrix in self.leaves.values():
            for row in matrix:
                for symbol in row:
                    try:
                        values[symbol] = by_name[str(symbol)]
                    except KeyError:
                        raise ValueError(f"no value for {symbol}") from None
        algebra = self._algebra
        for temporary in self.temporaries:
            values[temporary.symbol] = algebra.evaluate(temporary.expr, values)
        shapes: dict[str, tuple[int, int]] = {}
        for output in self.outputs:
            rows, cols = shapes.get(output.label, (0, 0))
            shapes[output.label] = (max(rows, output.row + 1), max(cols, output.col + 1))
        result = {
            label: [[0.0] * cols for _ in range(rows)] for label, (rows, cols) in shapes.items()
        }
        for output in self.outputs:
            result[output.label][output.row][output.col] = self._algebra.evaluate(
                output.expr, values
            )
        return result


# --- building --------------------------------------------------------------------------------


class _Builder:
    """Builds the straight-line program; see the module docstring."""

    def __init__(self, derivation: Derivation, algebra: _Backend) -> None:
        self.derivation = derivation
        self.algebra = algebra
        self.counter = itertools.count()
        self.memo: dict[Expr, Expr] = {}
        self.groups: list[list[list]] = []  # per step: [symbol, expr, note] each
        self.leaves: dict[MatrixSymbol, Matrix] = {}
        for symbol, matrix in scalar_symbols(derivation).items():
            rows, cols = matrix.shape
            self.leaves[symbol] = tuple(
                tuple(algebra.symbol(matrix[i, j].name) for j in range(cols)) for i in range(rows)
            )
        self.env: dict[MatrixSymbol, Matrix] = dict(self.leaves)
        self.group: list = []
        self.definitions: dict[Expr, list] = {}
        self.matrix_parameters = {
            block
            for parameter in derivation.parameters
            if len(parameter.shape) == 2
            for block in parameter.blocks
        }

    def fresh(self) -> Expr:
        return self.algebra.symbol(f"_t{next(self.counter)}")

    def bind(self, expr: Expr, note: str, group: list) -> Expr:
        """``expr`` as a temporary (an atom stays as it is; an expression seen before reuses
        its temporary)."""
        if self.algebra.is_atom(expr):
            return expr
        known = self.memo.get(expr)
        if known is not None:
            return known
        symbol = self.fresh()
        self.memo[expr] = symbol
        self.definitions[symbol] = definition = [symbol, expr, note]
        group.append(definition)
        return symbol

    def bind_variable(self, entry: Expr, note: str, group: list) -> Expr:
        """``entry`` bound to a temporary noted as a variable's entry (``h_3[1]``)."""
        symbol = self.bind(entry, note, group)
        definition = self.definitions.get(symbol)
        if definition is not None and not definition[2]:
            definition[2] = note  # an activation's temporary that is also a variable
        return symbol

    def element(self, expr: sp.Basic, cache: dict) -> Matrix:
        """``expr`` (a matrix expression) at element level over the matrices in ``env``."""
        found = cache.get(expr)
        if found is not None:
            return found
        algebra = self.algebra
        if isinstance(expr, MatrixSymbol):
            try:
                return self.env[expr]
            except KeyError:
                raise KeyError(f"no explicit value for {expr}") from None
        if isinstance(expr, (MatrixBase, OneMatrix, ZeroMatrix, Identity)):
            explicit = expr.as_explicit()
            rows, cols = explicit.shape
            result = tuple(
                tuple(algebra.number(explicit[i, j]) for j in range(cols)) for i in range(rows)
            )
        elif isinstance(expr, MatAdd):
            args = [self.element(arg, cache) for arg in expr.args]
            result = tuple(
                tuple(algebra.add([arg[i][j] for arg in args]) for j in range(len(args[0][0])))
                for i in range(len(args[0]))
            )
        elif isinstance(expr, MatMul):
            scalars = [arg for arg in expr.args if not getattr(arg, "is_Matrix", False)]
            matrices = [self.element(arg, cache) for arg in expr.args if arg.is_Matrix]
            result = matrices[0]
            for right in matrices[1:]:
                result = tuple(
                    tuple(
                        algebra.dot(row, [right_row[j] for right_row in right])
                        for j in range(len(right[0]))
                    )
                    for row in result
                )
            if scalars:
                coefficient = algebra.number(sp.Mul(*scalars))
                result = tuple(tuple(algebra.mul([coefficient, e]) for e in row) for row in result)
        elif isinstance(expr, Transpose):
            result = tuple(zip(*self.element(expr.arg, cache), strict=True))
        elif isinstance(expr, HadamardProduct):
            args = [self.element(arg, cache) for arg in expr.args]
            result = tuple(
                tuple(algebra.mul([arg[i][j] for arg in args]) for j in range(len(args[0][0])))
                for i in range(len(args[0]))
            )
        elif isinstance(expr, Elementwise):
            function = algebra.function(expr.name)
            result = tuple(tuple(function(e) for e in row) for row in self.element(expr.arg, cache))
            if expr.function.derivative is not None:
                # an activation (tanh, σ, relu) is a temporary of its own, so the backward
                # program reads the forward's (the LSTM's tanh(c_t) in h_t, c̄_t and δᵒ_t)
                result = tuple(tuple(self.bind(e, "", self.group) for e in row) for row in result)
        else:
            raise ScalarViewError(f"no element-level rule for {type(expr).__name__}: {expr}")
        cache[expr] = result
        return result

    def program(self, steps: Sequence[Sequence], label: str) -> None:
        """Each step's assignments bound entry by entry into temporaries, one group per step."""
        for step in progress(steps, len(steps), label):
            group: list = []
            self.group = group
            cache: dict = {}
            for assignment in step:
                matrix = self.element(assignment.value, cache)
                name = _variable_name(assignment.target)
                vector = len(matrix[0]) == 1
                self.env[assignment.target] = tuple(
                    tuple(
                        self.bind_variable(
                            e, f"{name}[{i}]" if vector else f"{name}[{i},{j}]", group
                        )
                        for j, e in enumerate(row)
                    )
                    for i, row in enumerate(matrix)
                )
            self.groups.append(group)

    def outputs(self) -> list[tuple[str, str, int, int, Expr]]:
        """Every gradient entry as ``(name, label, row, col, expr)``."""
        result = []
        self.group = []
        for gradient in self.derivation.gradients:
            cache: dict = {}
            terms = [self.element(term, cache) for term in gradient.terms]
            if gradient.summed:
                rows, cols = len(terms[0]), len(terms[0][0])
                vector = gradient.of not in self.matrix_parameters
                for i in range(rows):
                    for j in range(cols):
                        value = self.algebra.add([term[i][j] for term in terms])
                        name = _gradient_name(gradient, None, i, j, vector)
                        result.append((name, gradient.label, i, j, value))
            elif gradient.once:
                (term,) = terms
                for i, row in enumerate(term):
                    name = _gradient_name(gradient, None, i, 0, True)
                    result.append((name, gradient.label, i, 0, row[0]))
            else:  # one value per step: row t - 1 of a (T, I) matrix, as torch's input.grad
                for k, term in enumerate(terms, start=1):
                    for j, row in enumerate(term):
                        name = _gradient_name(gradient, k, j, 0, True)
                        result.append((name, gradient.label, k - 1, j, row[0]))
        if self.group:  # activations the gradient terms apply that the program lacks
            self.groups.append(self.group)
        return result


def _variable_name(symbol: MatrixSymbol) -> str:
    """``h[3]`` -> ``h_3``, ``g[n]`` -> ``g_n``, ``W_ih`` -> ``W_ih``."""
    base, index = split_name(symbol)
    return base if index is None else f"{base}_{index}"


def _gradient_name(gradient: Gradient, step: int | None, i: int, j: int, vector: bool) -> str:
    """``dL/dW_ih[0,1]``, ``dL/db_ih[0]``, ``dL/dx_3[0]`` (input of step 3), ``dL/dh_0[1]``."""
    base, index = split_name(gradient.of)
    if step is not None:
        base = f"{base}_{step}"
    elif index is not None:
        base = f"{base}_{index}"
    return f"dL/d{base}[{i}]" if vector else f"dL/d{base}[{i},{j}]"


def _toposorted(definitions: list[list], algebra: _Backend) -> list[list]:
    """``definitions`` (``[symbol, expr, note]``) in an order where each follows what it reads.

    The given order is kept wherever it is already valid: a definition is emitted after the
    definitions it reads (depth first, in the order they are given).
    """
    by_symbol = {symbol: index for index, (symbol, _, _) in enumerate(definitions)}
    emitted = [False] * len(definitions)
    order = []
    for start in range(len(definitions)):
        stack = [(start, False)]
        while stack:
            index, expanded = stack.pop()
            if emitted[index]:
                continue
            if expanded:
                emitted[index] = True
                order.append(definitions[index])
                continue
            stack.append((index, True))
            symbol, expr, _ = definitions[index]
            needs = sorted(
                by_symbol[s] for s in algebra.free_symbols(expr) if s in by_symbol and s != symbol
            )
            stack.extend((need, False) for need in reversed(needs) if not emitted[need])
    return order


def scalar_view(derivation: Derivation, backend: str = "sympy", cse: bool = True) -> ScalarView:
    """The backward program of ``derivation`` entry by entry, as a straight-line program.

    Every forward and backward variable entry is a temporary over earlier temporaries and the
    leaf scalars (:func:`symbptt.scalar.explicit.scalar_symbols`); every gradient entry is an output
    (``dL/dW_ih[0,1] = t40*x_3_1 + …``). With ``cse`` (the default) each step's temporaries,
    and the outputs, go through the backend's common-subexpression elimination. The cost is
    linear in T (see the module docstring for measured times).

    Args:
        derivation: from :func:`symbptt.derive`: one layer, one direction (RNN, LSTM, GRU or
            a cell; packed masks and truncation as the derivation has them).
        backend: ``"sympy"`` (default, the reference) or ``"symengine"``.
        cse: run common-subexpression elimination per step.

    Raises:
        ScalarViewError: an unknown backend, or a spec with several layers or directions.
        SpecError: a view whose estimated time or memory is over the limits of
            :mod:`symbptt.limits`.
        BackendUnavailableError: ``backend="symengine"`` without the symengine package.
    """
    spec = derivation.spec
    if spec.num_layers > 1 or spec.bidirectional:
        raise ScalarViewError("the scalar view is for one layer and one direction")
    algebra = _backend(backend)
    require(scalar_view_cost(spec, backend))
    builder = _Builder(derivation, algebra)
    builder.program(derivation.forward, "scalar view, forward step")
    builder.program(derivation.backward, "scalar view, backward step")
    outputs = builder.outputs()
    definitions, output_exprs = _eliminated(builder, [expr for *_, expr in outputs], cse)
    temporaries, output_exprs = _numbered(definitions, output_exprs, algebra)
    return ScalarView(
        derivation,
        backend,
        builder.leaves,
        tuple(temporaries),
        tuple(
            Output(name, label, row, col, expr)
            for (name, label, row, col, _), expr in zip(outputs, output_exprs, strict=True)
        ),
        algebra,
    )


def _eliminated(builder: _Builder, outputs: list[Expr], cse: bool) -> tuple[list, list[Expr]]:
    """Every group's definitions, and the outputs, after the backend's ``cse`` (one call per
    group, one for the outputs), in dependency order; the temporaries ``cse`` adds are
    unnumbered."""
    algebra = builder.algebra
    definitions: list[list] = []

    def eliminate(exprs: list[Expr]) -> tuple[list[list], list[Expr]]:
        if not cse or not exprs:
            return [], exprs
        replacements, reduced = algebra.cse(exprs)
        fresh = {symbol: builder.fresh() for symbol, _ in replacements}
        values = algebra.renamed([expr for _, expr in replacements] + reduced, fresh)
        added = [
            [fresh[symbol], value, ""]
            for (symbol, _), value in zip(replacements, values, strict=False)
        ]
        return added, values[len(replacements) :]

    for group in builder.groups:
        added, reduced = eliminate([expr for _, expr, _ in group])
        pairs = zip(group, reduced, strict=True)
        kept = [[symbol, expr, note] for (symbol, _, note), expr in pairs]
        # cse's temporaries may read the group's, and the group's read them
        definitions += _toposorted(added + kept, algebra) if added else kept
    added, outputs = eliminate(outputs)  # these read earlier groups only
    return definitions + added, outputs


def _numbered(
    definitions: list, outputs: list[Expr], algebra: _Backend
) -> tuple[list[Temporary], list[Expr]]:
    """The definitions (in dependency order) numbered ``t0, t1, …``, and the outputs renamed.

    A definition that is a symbol or a number is no line (its readers read that instead), nor
    is one equal to an earlier line; a variable's note moves to the line that holds it.
    """
    renaming: dict[Expr, Expr] = {}
    by_expr: dict[Expr, int] = {}
    lines: list[list] = []  # [name, symbol, expr, note]
    for symbol, expr, note in definitions:
        if algebra.is_atom(expr):
            renaming[symbol] = target = renaming.get(expr, expr)
            known = by_expr.get(target)
        else:
            known = by_expr.get(expr)
            if known is None:
                name = f"t{len(lines)}"
                renaming[symbol] = final = algebra.symbol(name)
                by_expr[expr] = by_expr[final] = len(lines)
                lines.append([name, final, expr, note])
                continue
            renaming[symbol] = lines[known][1]
        if known is not None and note and not lines[known][3]:
            lines[known][3] = note  # a variable's entry that cse (or an activation) holds
    values = algebra.renamed([expr for _, _, expr, _ in lines] + outputs, renaming)
    temporaries = [
        Temporary(name, symbol, value, note)
        for (name, symbol, _, note), value in zip(lines, values, strict=False)
    ]
    return temporaries, values[len(lines) :]
