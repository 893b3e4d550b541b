"""A cell's equations as a step program: the checked tree of :mod:`symbptt.core.cell_expr` built
into SymPy matrix expressions for concrete sizes. Every cell goes this way, torch's
(:mod:`symbptt.core.torch_cells`) and the user's alike.

Each node type has one rule (:data:`RULES`)::

    W @ v        ->  MatMul(W, v)                 (W a matrix parameter, v a vector)
    u * v        ->  u ⊙ v  (vectors),  c v  (c a number)
    u + v, u - v ->  MatAdd (one sum of all the terms);  c + v  ->  c 1 + v  (1 the ones)
    u / c        ->  (1/c) u;   u / v  ->  u ⊙ reciprocal(v)
    -v           ->  (−1) v
    f(v)         ->  Elementwise(f, v)

An equation ``y = f(expr)`` whose argument is not a bare name gets the pre-activation
``a_y = expr`` of its own, as the torch cells' gates do (``a_f``, whose adjoint is ``δᶠ``): the
gradients of the weights inside are then ``δᶠ xᵀ``, not the whole expression again.

With variable lengths (PackedSequence) every state s is masked (:func:`masked`)::

    ŝ_t = (the cell's update),    s_t = m_t ⊙ ŝ_t + (1 − m_t) ⊙ s_{t-1}

where m_t is 1 while the sample's sequence lasts and 0 after: its state then stays put.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix

from .cell_definition import Cell
from .cell_expr import Binary, Call, Equation, Node, Number, Ref, Unary, number_value
from .matexpr import Elementwise
from .program import Assignment, Parameter, State, StepProgram, t, var

if TYPE_CHECKING:
    from .spec import Spec

FINAL_COTANGENT = {"h": "g[n]", "c": "gc[n]"}
"""The symbol of ∂L/∂s_n for each state name the code generator supports."""


class _Scope:
    """The SymPy symbol of every name an equation may read, for concrete sizes."""

    def __init__(self, cell: Cell, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.current: dict[str, MatrixSymbol] = {
            name: var(name, t, sizes[size]) for name, size in cell.inputs
        }
        self.previous = {name: var(name, t - 1, sizes[size]) for name, size in cell.states}
        self.parameters = {
            name: MatrixSymbol(name, sizes[shape[0]], sizes[shape[1]] if len(shape) > 1 else 1)
            for name, shape in cell.parameters
        }

    def ref(self, node: Ref) -> MatrixSymbol:
        if node.previous:
            return self.previous[node.name]
        if node.name in self.parameters:
            return self.parameters[node.name]
        return self.current[node.name]


def _number(node: Node) -> sp.Rational:
    """The exact value of a node of shape ``()`` (numbers and arithmetic on them)."""
    value = number_value(node)
    return sp.Rational(value.numerator, value.denominator)


def _scaled(c: sp.Rational, expr: sp.Basic) -> sp.Basic:
    return expr if c == 1 else MatMul(c, expr)


def _ones(c: sp.Rational, like: sp.Basic) -> sp.Basic:
    return _scaled(c, OneMatrix(*like.shape))


def _sum(*terms: sp.Basic) -> MatAdd:
    """One ``MatAdd`` of the terms, the terms of a sum among them taken in (``a + b + c``)."""
    return MatAdd(*(arg for term in terms for arg in (term.args if term.is_MatAdd else (term,))))


def _add(node: Binary, build) -> sp.Basic:
    sign = 1 if node.op == "+" else -1
    if node.left.shape == ():
        right = build(node.right)
        return _sum(_ones(_number(node.left), right), _scaled(sp.Integer(sign), right))
    left = build(node.left)
    if node.right.shape == ():
        return _sum(left, _ones(sign * _number(node.right), left))
    return _sum(left, _scaled(sp.Integer(sign), build(node.right)))


def _multiply(node: Binary, build) -> sp.Basic:
    if node.left.shape == ():
        return _scaled(_number(node.left), build(node.right))
    if node.right.shape == ():
        return _scaled(_number(node.right), build(node.left))
    return HadamardProduct(build(node.left), build(node.right))


def _divide(node: Binary, build) -> sp.Basic:
    if node.right.shape == ():
        return _scaled(1 / _number(node.right), build(node.left))
    return HadamardProduct(build(node.left), Elementwise("reciprocal", build(node.right)))


BINARY = {
    "@": lambda node, build: MatMul(build(node.left), build(node.right)),
    "*": _multiply,
    "+": _add,
    "-": _add,
    "/": _divide,
}
"""How each operator of a step equation becomes a matrix expression."""

RULES = {
    Ref: lambda node, build, scope: scope.ref(node),
    Number: lambda node, build, scope: _number(node),
    Unary: lambda node, build, scope: MatMul(-1, build(node.operand)),
    Binary: lambda node, build, scope: BINARY[node.op](node, build),
    Call: lambda node, build, scope: Elementwise(node.function, build(node.argument)),
}
"""Each node type of :mod:`symbptt.core.cell_expr` and the matrix expression it builds."""


def _builder(scope: _Scope):
    def build(node: Node) -> sp.Basic:
        return RULES[type(node)](node, build, scope)

    return build


def _assignments(equation: Equation, build, scope: _Scope) -> list[Assignment]:
    """``y = f(expr)`` as ``a_y = expr, y = f(a_y)``; any other equation as it is."""
    size = scope.sizes[equation.value.shape[0]]
    target = var(equation.target, t, size)
    value = equation.value
    scope.current[equation.target] = target
    if isinstance(value, Call) and not isinstance(value.argument, Ref):
        pre = var(f"a_{equation.target}", t, size)
        return [
            Assignment(pre, build(value.argument), "F"),
            Assignment(target, Elementwise(value.function, pre), "F"),
        ]
    return [Assignment(target, build(value), "F")]


def _parameters(cell: Cell, scope: _Scope, suffix: str) -> tuple[Parameter, ...]:
    """The stacks, each one tensor of its blocks by rows; then every other parameter as its own
    tensor named ``<name><suffix>``. Vectors are (H, 1) columns in the equations and (H,)
    tensors in the module."""
    shapes = dict(cell.parameters)

    def letters(name: str) -> tuple[str, str]:
        shape = shapes[name]
        return (shape[0], shape[1] if len(shape) > 1 else "1")

    def parameter(argument: str, description: str, names: tuple[str, ...]) -> Parameter:
        blocks = tuple(scope.parameters[name] for name in names)
        rows = sum(block.shape[0] for block in blocks)
        shape = (rows, blocks[0].shape[1]) if len(shapes[names[0]]) > 1 else (rows,)
        name = f"{argument}{suffix}"
        return Parameter(name, argument, shape, description, blocks, letters(names[0]))

    stacked = {name for stack in cell.stacks for name in stack.blocks}
    return tuple(parameter(s.argument, s.description, s.blocks) for s in cell.stacks) + tuple(
        parameter(name, f"parameter of {cell.name}", (name,))
        for name in cell.parameter_names
        if name not in stacked
    )


def cell_step(cell: Cell, sizes: dict[str, int], suffix: str = "_l0") -> StepProgram:
    """The step program of ``cell`` for the sizes of its letters (``{"I": 3, "H": 4}``);
    parameter tensors are named ``<name><suffix>`` (torch's cells: ``weight_ih_l0``)."""
    scope = _Scope(cell, sizes)
    build = _builder(scope)
    assignments = []
    for equation in cell.equations:
        assignments += _assignments(equation, build, scope)
    states = tuple(
        State(
            var(name, t, sizes[size]),
            scope.previous[name],
            MatrixSymbol(FINAL_COTANGENT[name], sizes[size], 1),
            name,
        )
        for name, size in cell.states
    )
    return StepProgram(
        assignments=tuple(assignments),
        inputs=tuple(scope.current[name] for name, _ in cell.inputs),
        states=states,
        output=states[0].new,
        parameters=_parameters(cell, scope, suffix),
    )


def masked(program: StepProgram) -> StepProgram:
    """``program`` for variable lengths: each state update is kept only where the mask is 1.

    The cell's own update of state ``s`` becomes ``s_new[t]`` (``ŝ_t``), and
    ``s[t] = m[t] ⊙ s_new[t] + (1 − m[t]) ⊙ s[t - 1]`` follows; the masks are constants.
    """
    renamed, updates, masks = {}, [], []
    for state in program.states:
        base = state.name
        n = state.new.shape[0]
        candidate = var(f"{base}_new", t, n)
        mask = var("m" if base == "h" else f"m{base}", t, n)
        renamed[state.new] = candidate
        masks.append(mask)
        keep = MatAdd(OneMatrix(n, 1), MatMul(-1, mask))
        value = MatAdd(HadamardProduct(mask, candidate), HadamardProduct(keep, state.previous))
        updates.append(Assignment(state.new, value, "F"))
    assignments = tuple(
        Assignment(renamed.get(a.target, a.target), a.value.xreplace(renamed), a.label)
        for a in program.assignments
    )
    return StepProgram(
        assignments=assignments + tuple(updates),
        inputs=program.inputs,
        states=program.states,
        output=program.output,
        parameters=program.parameters,
        constants=tuple(masks),
    )


def step_program(spec: Spec) -> StepProgram:
    """The step program of ``spec``'s cell (masked when ``spec.packed``)."""
    program = cell_step(spec.definition, spec.sizes, "" if spec.is_cell else "_l0")
    return masked(program) if spec.packed else program
