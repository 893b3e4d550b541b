"""The expression tree of a cell file's step equations, checked and with sizes still letters.

A cell file (:mod:`symbptt.core.cell_file`) is parsed into these nodes; nothing in it is ever
evaluated as Python. Sizes are the letters ``I`` (input features) and ``H`` (hidden features):
a node's ``shape`` is ``()`` for a number, ``("H",)`` for a column vector of H entries and
``("H", "I")`` for an H × I matrix. :mod:`symbptt.core.cell_program` turns the tree into SymPy for
concrete sizes, and :mod:`symbptt.verification.cell_reference` evaluates it on torch tensors.

Every node carries ``line`` and ``col`` (1-based, in the cell file) for error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

FUNCTIONS = ("sigmoid", "tanh", "relu", "exp", "log", "softplus")
"""The element-wise functions a step equation may call, each with one argument."""

SIZES = ("I", "H")
"""Size letters: I, the layer's input features (D·H above the first layer); H, hidden."""

Shape = tuple[str, ...]


@dataclass(frozen=True)
class Number:
    """A numeric literal, exact (``0.5`` is ``Fraction(1, 2)``)."""

    value: Fraction
    line: int
    col: int
    shape: Shape = ()


@dataclass(frozen=True)
class Ref:
    """A name: an input, a parameter, a step variable (its value at step t) or, with
    ``previous``, a state's value at step t - 1 (``h[t-1]``)."""

    name: str
    previous: bool
    line: int
    col: int
    shape: Shape


@dataclass(frozen=True)
class Unary:
    """``-operand``."""

    operand: Node
    line: int
    col: int
    shape: Shape


@dataclass(frozen=True)
class Binary:
    """``left op right`` with op one of ``@`` (matrix times vector), ``*`` (element-wise, or a
    number times anything), ``+``, ``-`` (a number is broadcast over a vector) and ``/`` (by a
    number, or element-wise by a vector of the same size)."""

    op: str
    left: Node
    right: Node
    line: int
    col: int
    shape: Shape


@dataclass(frozen=True)
class Call:
    """``function(argument)``, one of :data:`FUNCTIONS`, applied entry by entry."""

    function: str
    argument: Node
    line: int
    col: int
    shape: Shape


Node = Number | Ref | Unary | Binary | Call


@dataclass(frozen=True)
class Equation:
    """``target = value``: a step variable or a state's new value, in file order."""

    target: str
    value: Node
    line: int
    col: int


def children(node: Node) -> tuple[Node, ...]:
    """The operands of ``node``."""
    return CHILDREN[type(node)](node)


CHILDREN = {
    Number: lambda node: (),
    Ref: lambda node: (),
    Unary: lambda node: (node.operand,),
    Binary: lambda node: (node.left, node.right),
    Call: lambda node: (node.argument,),
}
"""Each node type's operands."""


def refs(node: Node) -> list[Ref]:
    """Every name ``node`` reads, in reading order."""
    found = [node] if isinstance(node, Ref) else []
    for child in children(node):
        found += refs(child)
    return found


NUMBER_OPS: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}
"""Each operator on two numbers (``@`` never has a number operand)."""

NUMBER_VALUE: dict[type, Callable[[Node], Fraction]] = {
    Number: lambda node: node.value,
    Unary: lambda node: -number_value(node.operand),
    Binary: lambda node: NUMBER_OPS[node.op](number_value(node.left), number_value(node.right)),
}
"""How each node of shape ``()`` evaluates (a function is never applied to a number, and a
number is never divided by zero: the cell file's reader refuses both)."""


def number_value(node: Node) -> Fraction:
    """The exact value of a node of shape ``()``: numbers and arithmetic on them."""
    return NUMBER_VALUE[type(node)](node)
