"""One step equation of a cell file, read without evaluating it: ``ast.parse(text,
mode="eval")`` and a walk of its syntax tree against an allow-list (:data:`HANDLERS`: numbers,
names, ``h[t-1]``, ``x[t]``, ``@ * + - /``, unary minus and the functions of
:data:`~symbptt.core.cell_expr.FUNCTIONS`) that builds the :mod:`symbptt.core.cell_expr` nodes
directly,
checking each operator's shapes (:data:`SHAPE_RULES`). The text's length and bracket depth are
bounded before it is parsed, the tree's depth before it is walked.

Every problem is a :class:`~symbptt.errors.SpecError` of one line, ``SOURCE:LINE:COL: message``.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple, NoReturn

from ..errors import SpecError
from .cell_expr import FUNCTIONS, Binary, Call, Node, Number, Ref, Shape, Unary, number_value

MAX_EQUATION_CHARS = 4000
MAX_DEPTH = 50
"""The deepest bracket nesting of an equation's text, and the deepest of its syntax tree."""
MAX_NUMBER = 1e6


class Pos(NamedTuple):
    """Where a key is: 1-based line and column; for a value that is a single-line string
    without escapes, its raw text and the column of its opening quote."""

    line: int
    col: int
    raw: str | None = None
    quote: int = 0


def fail_at(source: str, where: tuple[int, int], message: str) -> NoReturn:
    """Raise ``SOURCE:LINE:COL: message``, one line."""
    line = f"{source}:{where[0]}:{where[1]}: {message}"
    raise SpecError(line.replace("\n", "\\n"))


def quoted(text: str, limit: int = 40) -> str:
    """``text`` as a Python literal, shortened to about ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class Scope:
    """What an equation may read: inputs, parameters and previous states by their shapes,
    and the names earlier equations assigned; which parameters were read."""

    inputs: dict[str, Shape]
    states: dict[str, Shape]
    parameters: dict[str, Shape]
    targets: frozenset[str]
    assigned: dict[str, Shape] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


def shape_text(shape: Shape) -> str:
    return f"({', '.join(shape)})" if shape else "a number"


def _matmul_shape(left: Shape, right: Shape) -> Shape | None:
    return (left[0],) if len(left) == 2 and len(right) == 1 and left[1] == right[0] else None


def _elementwise_shape(left: Shape, right: Shape) -> Shape | None:
    """Two vectors of one size, or a number with a vector or a number."""
    if len(left) > 1 or len(right) > 1:
        return None
    return left or right if not left or not right or left == right else None


def _quotient_shape(left: Shape, right: Shape) -> Shape | None:
    if len(left) > 1 or len(right) > 1:
        return None
    return left if not right or left == right else None


MATRICES_ONLY_IN_MATMUL = "a matrix may only appear as W in W @ v"

SHAPE_RULES: dict[str, tuple[Callable[[Shape, Shape], Shape | None], str]] = {
    "@": (_matmul_shape, "'@' takes a matrix (R, C) on the left and a vector (C) on the right"),
    "*": (_elementwise_shape, "'*' multiplies two vectors of one size, or by a number"),
    "+": (_elementwise_shape, "'+' adds two vectors of one size, or a number"),
    "-": (_elementwise_shape, "'-' subtracts two vectors of one size, or a number"),
    "/": (_quotient_shape, "'/' divides by a number, or by a vector of the same size"),
}
"""Each operator's shape rule (``None``: the operands do not fit) and how to explain it."""

BINARY_OPERATORS = {ast.MatMult: "@", ast.Mult: "*", ast.Add: "+", ast.Sub: "-", ast.Div: "/"}

REFUSED_OPERATORS = {
    ast.Pow: "'**' is not supported; write x * x",
    **{
        op: f"'{symbol}' is not allowed in a step equation"
        for op, symbol in {
            ast.FloorDiv: "//",
            ast.Mod: "%",
            ast.LShift: "<<",
            ast.RShift: ">>",
            ast.BitOr: "|",
            ast.BitXor: "^",
            ast.BitAnd: "&",
            ast.Not: "not",
            ast.Invert: "~",
        }.items()
    },
}
"""The message for each operator a step equation may not use."""

REFUSED = {
    ast.Attribute: "an attribute (.name)",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.JoinedStr: "an f-string",
    ast.Compare: "a comparison",
    ast.BoolOp: "'and' / 'or'",
    ast.IfExp: "a conditional expression (... if ... else ...)",
    ast.NamedExpr: "':=' (an assignment expression)",
    ast.Starred: "'*' unpacking",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.Slice: "a slice",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
}
"""How each refused kind of expression is named in its message."""

REFUSED_CONSTANTS = {
    str: "a string",
    bytes: "a bytes literal",
    bool: "True or False",
    complex: "a complex number",
    type(None): "None",
    type(...): "'...'",
}


def _time_offset(node: ast.expr) -> int | None:
    """0 for ``t``, -1 for ``t-1``; None for any other subscript."""
    if isinstance(node, ast.Name) and node.id == "t":
        return 0
    is_t_minus_1 = (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Sub)
        and isinstance(node.left, ast.Name)
        and node.left.id == "t"
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
        and node.right.value == 1
    )
    return -1 if is_t_minus_1 else None


def _too_deep(tree: ast.AST) -> ast.AST | None:
    """The first node deeper than :data:`MAX_DEPTH` (the root at depth 1), found without
    recursion."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return node
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


class EquationReader:
    """One equation's text: its bounds checked, parsed, and built into nodes against the
    allow-list of :data:`HANDLERS`."""

    def __init__(self, source: str, pos: Pos, text: str, scope: Scope) -> None:
        self.source = source
        self.pos = pos
        self.text = text
        self.scope = scope
        self.lead = len(text) - len(text.lstrip(" \t\r\n"))
        self.code = text[self.lead :]

    def at(self, index: int) -> tuple[int, int]:
        """The file position of character ``index`` of the equation's text; the key's when
        the value is not a plain single-line string."""
        if self.pos.raw != self.text:
            return self.pos[:2]
        return (self.pos.line, self.pos.quote + 1 + index)

    def node_at(self, node: ast.AST) -> tuple[int, int]:
        if getattr(node, "lineno", 1) != 1:
            return self.pos[:2]
        return self.at(self.lead + getattr(node, "col_offset", 0))

    def fail(self, where: tuple[int, int], message: str) -> NoReturn:
        fail_at(self.source, where, message)

    def segment(self, node: ast.AST) -> str:
        """The source text of ``node``, shortened."""
        text = ast.get_source_segment(self.code, node) or ast.unparse(node)
        return text if len(text) <= 40 else text[:40] + "..."

    def read(self) -> Node:
        """The equation's value, every bound checked before it is parsed."""
        self.check_text()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(self.code, mode="eval")
        except SyntaxError as error:
            self.syntax_error(error)
        except (ValueError, RecursionError, MemoryError):
            self.fail(self.pos[:2], "the step equation is too complex to parse")
        if (deep := _too_deep(tree)) is not None:
            self.fail(self.node_at(deep), f"the expression is nested deeper than {MAX_DEPTH}")
        return self.build(tree.body)

    def check_text(self) -> None:
        """At most :data:`MAX_EQUATION_CHARS` printable ASCII characters, not empty, brackets
        nested at most :data:`MAX_DEPTH` deep."""
        if len(self.text) > MAX_EQUATION_CHARS:
            self.fail(self.pos[:2], f"the equation is longer than {MAX_EQUATION_CHARS} characters")
        if not self.code:
            self.fail(self.pos[:2], "the equation is empty")
        depth = 0
        for index, char in enumerate(self.text):
            if not (" " <= char <= "~" or char in "\t\r\n"):
                self.fail(self.at(index), f"character {char!r} is not allowed in a step equation")
            depth += (char in "([{") - (char in ")]}")
            if depth > MAX_DEPTH:
                self.fail(self.at(index), f"brackets are nested deeper than {MAX_DEPTH}")

    def syntax_error(self, error: SyntaxError) -> NoReturn:
        offset = error.offset if error.offset and error.offset > 0 else len(self.code) + 1
        where = self.at(self.lead + offset - 1) if error.lineno == 1 else self.pos[:2]
        self.fail(where, f"syntax error in the step equation: {error.msg}")

    def build(self, node: ast.AST) -> Node:
        handler = HANDLERS.get(type(node), EquationReader.refuse)
        return handler(self, node)

    def refuse(self, node: ast.AST) -> NoReturn:
        what = REFUSED.get(type(node), f"a {type(node).__name__} expression")
        self.fail(self.node_at(node), f"{what} is not allowed in a step equation")

    def constant(self, node: ast.Constant) -> Number:
        """An int or a float, finite and at most :data:`MAX_NUMBER` in size, made exact."""
        value = node.value
        if type(value) not in (int, float):
            what = REFUSED_CONSTANTS.get(type(value), "this constant")
            self.fail(self.node_at(node), f"{what} is not allowed in a step equation")
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            self.fail(
                self.node_at(node),
                f"the number {self.segment(node)} is out of range (at most {MAX_NUMBER:g} in size)",
            )
        exact = Fraction(value) if type(value) is int else Fraction(str(value))
        return Number(exact, *self.node_at(node))

    def unary(self, node: ast.UnaryOp) -> Node:
        """``-operand``; ``+operand`` is the operand itself."""
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand)
        if not isinstance(node.op, ast.USub):
            self.fail(self.node_at(node), REFUSED_OPERATORS[type(node.op)])
        operand = self.build(node.operand)
        return Unary(operand, *self.node_at(node), operand.shape)

    def binary(self, node: ast.BinOp) -> Binary:
        """``left op right``, op one of ``@ * + - /``, the shapes as :data:`SHAPE_RULES` says."""
        op = BINARY_OPERATORS.get(type(node.op))
        if op is None:
            self.fail(self.node_at(node), REFUSED_OPERATORS[type(node.op)])
        left, right = self.build(node.left), self.build(node.right)
        rule, explanation = SHAPE_RULES[op]
        shape = rule(left.shape, right.shape)
        if shape is None:
            self.fail(
                self.node_at(node),
                f"shape mismatch: {self.segment(node)}: {self.segment(node.left)} is "
                f"{shape_text(left.shape)}, {self.segment(node.right)} is "
                f"{shape_text(right.shape)}; {explanation}{self.matrix_hint(op, left, right)}",
            )
        if op == "/" and right.shape == () and number_value(right) == 0:
            self.fail(
                self.node_at(node.right), f"division by zero: {self.segment(node.right)} is 0"
            )
        return Binary(op, left, right, *self.node_at(node), shape)

    @staticmethod
    def matrix_hint(op: str, left: Node, right: Node) -> str:
        matrix = op != "@" and (len(left.shape) > 1 or len(right.shape) > 1)
        return f"; {MATRICES_ONLY_IN_MATMUL}" if matrix else ""

    def call(self, node: ast.Call) -> Call:
        """``function(argument)``: a function of :data:`FUNCTIONS`, one positional argument,
        a vector (of a number, write its value)."""
        functions = ", ".join(FUNCTIONS)
        if not isinstance(node.func, ast.Name):
            self.fail(
                self.node_at(node),
                f"calling {self.segment(node.func)} is not allowed; the functions are {functions}",
            )
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(
                self.node_at(node),
                f"unknown function {quoted(name)}; the functions are {functions}",
            )
        if node.keywords:
            self.fail(self.node_at(node.keywords[0]), "keyword arguments are not allowed")
        if len(node.args) != 1:
            self.fail(
                self.node_at(node), f"{name} takes exactly one argument, not {len(node.args)}"
            )
        argument = self.build(node.args[0])
        if len(argument.shape) != 1:
            self.fail(
                self.node_at(node),
                f"{name} applies to a vector; {self.segment(node.args[0])} is "
                f"{shape_text(argument.shape)}"
                + (" (write its value)" if argument.shape == () else ""),
            )
        return Call(name, argument, *self.node_at(node), argument.shape)

    def name(self, node: ast.Name) -> Ref:
        return self.current(node.id, node, subscripted=False)

    def subscript(self, node: ast.Subscript) -> Ref:
        """``s[t-1]``, a state's previous value, or ``v[t]``, the same as ``v``."""
        offset = _time_offset(node.slice)
        if not isinstance(node.value, ast.Name) or offset is None:
            self.fail(
                self.node_at(node),
                "only a state's previous value, h[t-1], and x[t] may be subscripted",
            )
        if offset == 0:
            return self.current(node.value.id, node, subscripted=True)
        return self.previous(node.value.id, node)

    def previous(self, name: str, node: ast.AST) -> Ref:
        """A state's value at step t - 1."""
        scope = self.scope
        if name in scope.states:
            return Ref(name, True, *self.node_at(node), scope.states[name])
        if name in scope.parameters:
            problem = f"parameter {name} does not change with t: write {name}, not {name}[t-1]"
        elif name in scope.inputs or name in scope.targets:
            problem = f"{name} has no value at t-1: only states are carried from step to step"
        else:
            problem = f"unknown name {quoted(name)}"
        self.fail(self.node_at(node), problem)

    def current(self, name: str, node: ast.AST, subscripted: bool) -> Ref:
        """An assigned name, an input or a parameter, read at step t."""
        scope = self.scope
        where = self.node_at(node)
        for known in (scope.assigned, scope.inputs):
            if name in known:
                return Ref(name, False, *where, known[name])
        if name in scope.parameters and not subscripted:
            scope.used.add(name)
            return Ref(name, False, *where, scope.parameters[name])
        self.fail(where, self.unreadable(name))

    def unreadable(self, name: str) -> str:
        """Why ``name`` cannot be read here."""
        scope = self.scope
        if name in scope.states:
            return (
                f"state {name} is read before it is assigned at step t; "
                f"write {name}[t-1] for its previous value"
            )
        if name in scope.parameters:
            return f"parameter {name} does not change with t: write {name}, not {name}[t]"
        if name in scope.targets:
            return f"{quoted(name)} is used before it is assigned"
        if name == "t":
            return "t may only appear in a state's previous value, h[t-1]"
        if name in FUNCTIONS:
            return f"{name} is a function: call it, {name}(...)"
        return f"unknown name {quoted(name)}"


HANDLERS: dict[type, Callable[[EquationReader, Any], Node]] = {
    ast.Constant: EquationReader.constant,
    ast.UnaryOp: EquationReader.unary,
    ast.BinOp: EquationReader.binary,
    ast.Call: EquationReader.call,
    ast.Name: EquationReader.name,
    ast.Subscript: EquationReader.subscript,
}
"""The allow-list: every syntax node a step equation may hold, and what builds it."""
