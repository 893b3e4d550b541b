"""The safe reader of cell files: untrusted TOML in, a checked :mod:`symbptt.cell_expr` tree out.

Nothing in a cell file is ever evaluated. The file is read with :mod:`tomllib`; each step
equation is parsed with ``ast.parse(text, mode="eval")`` and its syntax tree walked against an
allow-list (numbers, names, ``h[t-1]``, ``x[t]``, ``@ * + - /``, unary minus and the
functions of :data:`~symbptt.cell_expr.FUNCTIONS`), building the tree's nodes directly. Every
bound (file size, counts, lengths, nesting) is checked before the work it guards.

A cell file::

    name = "MGU"
    description = "Minimal gated unit"      # optional; so is reference = "..."
    [inputs]
    x = "I"                                 # a size letter: I (input features) or H (hidden)
    [states]
    h = "H"                                 # in order; the first is the layer's output
    [parameters]
    W_f = "H, I"                            # a matrix "R, C" or a vector "R"
    ...
    [step]
    f = "sigmoid(W_f @ x + U_f @ h[t-1] + b_f)"
    ...

Every problem is a :class:`~symbptt.errors.SpecError` of one line,
``SOURCE:LINE:COL: message`` (1-based, in the file).
"""

from __future__ import annotations

import ast
import keyword
import math
import re
import stat
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from .cell_expr import (
    FUNCTIONS,
    SIZES,
    Binary,
    Call,
    Equation,
    Node,
    Number,
    Ref,
    Shape,
    Unary,
    number_value,
)
from .errors import SpecError

MAX_FILE_BYTES = 65536
MAX_EQUATION_CHARS = 4000
MAX_DEPTH = 50
"""The deepest bracket nesting of an equation's text, and the deepest of its syntax tree."""
MAX_NUMBER = 1e6
MAX_NAME_CHARS = 32
MAX_CELL_NAME_CHARS = 64
MAX_TEXT_CHARS = 500
"""The longest description or reference."""

TABLE_LIMITS = {"inputs": 16, "states": 16, "parameters": 64, "step": 64}
"""The most entries each table may have."""

TOP_LEVEL: dict[str, tuple[type, bool]] = {
    "name": (str, True),
    "description": (str, False),
    "reference": (str, False),
    "inputs": (dict, True),
    "states": (dict, True),
    "parameters": (dict, True),
    "step": (dict, True),
}
"""Each top-level key: the type of its value, and whether it is required."""

SUPPORTED: dict[str, tuple[tuple[tuple[str, ...], ...], str]] = {
    "inputs": ((("x",),), "symbptt supports today exactly one input, named x"),
    "states": (
        (("h",), ("h", "c")),
        "symbptt supports today one state named h, or two named h and c "
        "(the first is the layer's output)",
    ),
}
"""What the code generator handles today: the allowed name sequences of each table."""

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
RESERVED_PREFIXES = ("a_", "delta", "carry_", "grad_")
RESERVED_SUFFIXES = ("bar", "_new", "_prev")
RESERVED_NAMES = frozenset(
    "t g gc m mc I H torch steps batch saved input output grads grad_output per_step hx self "
    "mask values tensors cotangents parameters states final math".split()
)
"""Names the generated code uses for itself."""

NAME_RULES: tuple[tuple[Callable[[str], Any], str], ...] = (
    (lambda n: len(n) <= MAX_NAME_CHARS, f"is longer than {MAX_NAME_CHARS} characters"),
    (NAME_PATTERN.fullmatch, "must be a letter followed by letters, digits and '_'"),
    (
        lambda n: not n[-1].isdigit(),
        "must not end with a digit (the generated code writes step k of f as f<k>)",
    ),
    (
        lambda n: not n.startswith(RESERVED_PREFIXES),
        "must not start with " + ", ".join(RESERVED_PREFIXES) + " (the generated code's names)",
    ),
    (
        lambda n: not n.endswith(RESERVED_SUFFIXES),
        "must not end with " + ", ".join(RESERVED_SUFFIXES) + " (the generated code's names)",
    ),
    (lambda n: not keyword.iskeyword(n), "is a Python keyword"),
    (lambda n: n not in FUNCTIONS, "is the name of a function"),
    (lambda n: n not in RESERVED_NAMES, "is a name the generated code uses"),
)
"""What every declared name (input, state, parameter, step variable) must satisfy, in order."""

BUILT_IN_NAME_RULES = NAME_RULES[:3] + NAME_RULES[5:]
"""The rules for torch's cells (:mod:`symbptt.torch_cells`): all but the reserved prefixes and
suffixes, since those cells name their pre-activations ``a_i`` themselves (the names the
generated code would give them)."""

BUILT_IN_SIZES = (*SIZES, "P")
"""Size letters of torch's cells: P is an LSTM's projection size."""

SHAPE_PATTERN = re.compile(r"\s*([A-Z])\s*(?:,\s*([A-Z])\s*)?")
SHAPES_ALLOWED = '"H, I", "H, H", "I, H", "I, I" (a matrix) or "H", "I" (a vector)'

KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
}
"""How a TOML value's type is named in messages (anything else is a date or time)."""


class _Pos(NamedTuple):
    """Where a key is: 1-based line and column; for a value that is a single-line string
    without escapes, its raw text and the column of its opening quote."""

    line: int
    col: int
    raw: str | None = None
    quote: int = 0


def _fail(source: str, where: tuple[int, int], message: str) -> NoReturn:
    """Raise ``SOURCE:LINE:COL: message``, one line."""
    line = f"{source}:{where[0]}:{where[1]}: {message}"
    raise SpecError(line.replace("\n", "\\n"))


def _quoted(text: str, limit: int = 40) -> str:
    """``text`` as a Python literal, shortened to about ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _kind(value: object) -> str:
    return KINDS.get(type(value), "a date or time")


# -- positions: tomllib gives none for values, so the keys are found in the raw text ---------

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEY = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_HEADER_LINE = re.compile(rf"[ \t]*\[\[?[ \t]*(?P<key>{_KEY})[ \t]*\]")
_KEY_LINE = re.compile(rf"[ \t]*(?P<key>{_KEY})[ \t]*=[ \t]*")
_RAW_STRING = re.compile(r"""(?:"(?P<basic>[^"\\\n]*)"|'(?P<literal>[^'\n]*)')""")


def _key_path(text: str) -> tuple[str, ...]:
    """The parts of a (possibly dotted, possibly quoted) TOML key."""
    return tuple(_key_part(part) for part in re.findall(_KEY_PART, text))


def _key_part(part: str) -> str:
    if part[0] not in "\"'":
        return part
    if part[0] == "'" or "\\" not in part:
        return part[1:-1]
    try:
        return next(iter(tomllib.loads(part + " = 0")))
    except tomllib.TOMLDecodeError:
        return part


@dataclass
class _KeyIndex:
    """Each key's position by its path (``("step", "f")``), a table's by its own path, and
    the first key found twice (TOML refuses it without a useful position)."""

    positions: dict[tuple[str, ...], _Pos] = field(default_factory=dict)
    duplicate: tuple[tuple[str, ...], _Pos, _Pos] | None = None

    def add(self, path: tuple[str, ...], pos: _Pos) -> None:
        if path in self.positions and self.duplicate is None:
            self.duplicate = (path, self.positions[path], pos)
        for end in range(1, len(path)):
            self.positions.setdefault(path[:end], pos)
        self.positions.setdefault(path, pos)


def _index_keys(text: str) -> _KeyIndex:
    """The positions of the keys and table headers of a TOML text, line by line; the lines
    inside a multi-line string value are skipped."""
    index, table, closing = _KeyIndex(), (), None
    for number, line in enumerate(text.split("\n"), 1):
        if closing is not None:
            closing = None if closing in line else closing
            continue
        if header := _HEADER_LINE.match(line):
            table = _key_path(header["key"])
            index.add(table, _Pos(number, header.start("key") + 1))
        elif key := _KEY_LINE.match(line):
            value = line[key.end() :]
            pos = _Pos(number, key.start("key") + 1)
            if value[:3] in ('"""', "'''"):
                closing = None if value[:3] in value[3:] else value[:3]
            elif raw := _RAW_STRING.match(value):
                pos = pos._replace(raw=raw["basic"] or raw["literal"] or "", quote=key.end() + 1)
            index.add(table + _key_path(key["key"]), pos)
    return index


# -- the file as TOML ------------------------------------------------------------------------

_TOML_AT = re.compile(r"(?s)(?P<message>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)")
_TOML_AT_END = re.compile(r"(?s)(?P<message>.*) \(at end of document\)")


def _check_size(text: str, source: str) -> None:
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        _fail(source, (1, 1), f"a cell file may have at most {MAX_FILE_BYTES} bytes")


def _load_toml(text: str, source: str) -> dict:
    """The TOML document, or a one-line error at the position TOML found wrong."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        _toml_error(text, source, str(error))
    except (RecursionError, MemoryError):
        _fail(source, (1, 1), "TOML syntax: nested too deeply")


def _toml_error(text: str, source: str, message: str) -> NoReturn:
    duplicate = _index_keys(text).duplicate if message.startswith("Cannot overwrite") else None
    if duplicate is not None:
        path, first, again = duplicate
        _fail(
            source,
            again[:2],
            f"key {_quoted('.'.join(path))} is given twice (first at line {first.line})",
        )
    if at := _TOML_AT.fullmatch(message):
        _fail(source, (int(at["line"]), int(at["col"])), f"TOML syntax: {at['message']}")
    lines = text.split("\n")
    at_end = _TOML_AT_END.fullmatch(message)
    message = at_end["message"] if at_end else message
    _fail(source, (len(lines), len(lines[-1]) + 1), f"TOML syntax: {message}")


# -- the declarations ------------------------------------------------------------------------


class _Reader:
    """Checks a cell file's tables, reporting each problem at its key's position."""

    def __init__(self, source: str, index: _KeyIndex, built_in: bool = False) -> None:
        self.source = source
        self.index = index
        self.declared: dict[str, str] = {}
        self.name_rules = BUILT_IN_NAME_RULES if built_in else NAME_RULES
        self.size_letters = BUILT_IN_SIZES if built_in else SIZES

    def where(self, *path: str) -> tuple[int, int]:
        """The position of the key at ``path``, else of the nearest enclosing key, else 1:1."""
        while path:
            if path in self.index.positions:
                return self.index.positions[path][:2]
            path = path[:-1]
        return (1, 1)

    def fail(self, path: tuple[str, ...], message: str) -> NoReturn:
        _fail(self.source, self.where(*path), message)

    def top_level(self, data: dict) -> None:
        """Only the keys of :data:`TOP_LEVEL`, the required ones present, each of its type."""
        for key in data:
            if key not in TOP_LEVEL:
                known = ", ".join(TOP_LEVEL)
                self.fail((key,), f"unknown key {_quoted(key)}; the keys are {known}")
        for key, (kind, required) in TOP_LEVEL.items():
            if key not in data and required:
                what = f"table [{key}]" if kind is dict else f"key {key!r}"
                _fail(self.source, (1, 1), f"the {what} is missing")
            if key in data and not isinstance(data[key], kind):
                wanted = f"a table ([{key}])" if kind is dict else KINDS[kind]
                self.fail((key,), f"{key} must be {wanted}, not {_kind(data[key])}")

    def cell_name(self, name: str) -> str:
        """A Python identifier of ASCII letters, digits and '_', not starting with '_'."""
        if len(name) > MAX_CELL_NAME_CHARS:
            self.fail(("name",), f"the cell's name is longer than {MAX_CELL_NAME_CHARS} characters")
        if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
            self.fail(
                ("name",),
                f"the cell's name {_quoted(name)} must be a Python identifier: a letter, then "
                "letters, digits and '_' (and not a keyword)",
            )
        return name

    def text_field(self, data: dict, key: str) -> str:
        """One line of printable text, at most :data:`MAX_TEXT_CHARS` long."""
        text = data.get(key, "")
        if len(text) > MAX_TEXT_CHARS or not text.isprintable():
            self.fail((key,), f"{key} must be one line of at most {MAX_TEXT_CHARS} characters")
        return text

    def bound(self, table: str, values: dict) -> None:
        """At most :data:`TABLE_LIMITS` entries."""
        limit = TABLE_LIMITS[table]
        if len(values) > limit:
            extra = list(values)[limit]
            self.fail((table, extra), f"[{table}] has {len(values)} entries; at most {limit}")

    def declarations(self, table: str, values: dict, kind: str) -> None:
        """At most :data:`TABLE_LIMITS` entries, each a string under a valid new name."""
        self.bound(table, values)
        for name, value in values.items():
            self.check_name((table, name), kind)
            self.check_string((table, name), kind, value)

    def check_string(self, path: tuple[str, str], kind: str, value: object) -> None:
        if not isinstance(value, str):
            self.fail(path, f"{kind} {path[1]}: expected a string, not {_kind(value)}")

    def check_name(self, path: tuple[str, str], kind: str) -> None:
        """The rules of :data:`NAME_RULES`, and no name declared twice."""
        name = path[1]
        for rule, problem in self.name_rules:
            if not rule(name):
                self.fail(path, f"{kind} name {_quoted(name)} {problem}")
        if name in self.declared:
            self.fail(path, f"{kind} {name} has the name of the {self.declared[name]} {name}")
        self.declared[name] = kind

    def sizes(self, table: str, values: dict, kind: str) -> tuple[tuple[str, str], ...]:
        """``name = "I"`` or ``name = "H"``, names as :data:`SUPPORTED` allows."""
        self.declarations(table, values, kind)
        for name, size in values.items():
            if size.strip() not in self.size_letters:
                self.fail(
                    (table, name), f'{kind} {name}: size must be "I" or "H", not {_quoted(size)}'
                )
        self.supported(table, tuple(values))
        return tuple((name, size.strip()) for name, size in values.items())

    def supported(self, table: str, names: tuple[str, ...]) -> None:
        """Refuse at the first name that departs from every sequence :data:`SUPPORTED` allows."""
        allowed, message = SUPPORTED[table]
        if names in allowed:
            return
        found = f"; found {', '.join(names) or 'none'}"
        for end in range(1, len(names) + 1):
            if not any(names[:end] == sequence[:end] for sequence in allowed):
                self.fail((table, names[end - 1]), message + found)
        self.fail((table,), message + found)

    def parameters(self, values: dict) -> tuple[tuple[str, Shape], ...]:
        """``name = "R, C"`` (a matrix) or ``name = "R"`` (a vector), R and C size letters."""
        self.declarations("parameters", values, "parameter")
        return tuple((name, self.shape(name, text)) for name, text in values.items())

    def shape(self, name: str, text: str) -> Shape:
        match = SHAPE_PATTERN.fullmatch(text)
        letters = tuple(letter for letter in match.groups() if letter) if match else ()
        if not letters or any(letter not in self.size_letters for letter in letters):
            self.fail(
                ("parameters", name),
                f"parameter {name}: shape must be {SHAPES_ALLOWED}, not {_quoted(text)}",
            )
        return letters


# -- the step equations ----------------------------------------------------------------------


@dataclass
class _Scope:
    """What an equation may read: inputs, parameters and previous states by their shapes,
    and the names earlier equations assigned; which parameters were read."""

    inputs: dict[str, Shape]
    states: dict[str, Shape]
    parameters: dict[str, Shape]
    targets: frozenset[str]
    assigned: dict[str, Shape] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


def _shape_text(shape: Shape) -> str:
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


class _EquationReader:
    """One equation's text: its bounds checked, parsed, and built into nodes against the
    allow-list of :data:`HANDLERS`."""

    def __init__(self, source: str, pos: _Pos, text: str, scope: _Scope) -> None:
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
        _fail(self.source, where, message)

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
        handler = HANDLERS.get(type(node), _EquationReader.refuse)
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
                f"{_shape_text(left.shape)}, {self.segment(node.right)} is "
                f"{_shape_text(right.shape)}; {explanation}{self.matrix_hint(op, left, right)}",
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
                f"unknown function {_quoted(name)}; the functions are {functions}",
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
                f"{_shape_text(argument.shape)}"
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
            problem = f"unknown name {_quoted(name)}"
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
            return f"{_quoted(name)} is used before it is assigned"
        if name == "t":
            return "t may only appear in a state's previous value, h[t-1]"
        if name in FUNCTIONS:
            return f"{name} is a function: call it, {name}(...)"
        return f"unknown name {_quoted(name)}"


HANDLERS: dict[type, Callable[[_EquationReader, Any], Node]] = {
    ast.Constant: _EquationReader.constant,
    ast.UnaryOp: _EquationReader.unary,
    ast.BinOp: _EquationReader.binary,
    ast.Call: _EquationReader.call,
    ast.Name: _EquationReader.name,
    ast.Subscript: _EquationReader.subscript,
}
"""The allow-list: every syntax node a step equation may hold, and what builds it."""


def _equations(reader: _Reader, step: dict, scope: _Scope) -> tuple[Equation, ...]:
    """The [step] table's equations in order, each checked against those before it."""
    reader.bound("step", step)
    for target, text in step.items():
        if target not in scope.states:
            reader.check_name(("step", target), "step variable")
        reader.check_string(("step", target), "equation", text)
    equations = []
    for target, text in step.items():
        pos = reader.index.positions.get(("step", target)) or _Pos(*reader.where("step", target))
        value = _EquationReader(reader.source, pos, text, scope).read()
        if target in scope.states and value.shape != scope.states[target]:
            reader.fail(
                ("step", target),
                f"state {target} has size {scope.states[target][0]}, but its new value is "
                f"{_shape_text(value.shape)}",
            )
        if len(value.shape) != 1:
            reader.fail(
                ("step", target),
                f"step variable {target} must be a vector; its value is {_shape_text(value.shape)}",
            )
        scope.assigned[target] = value.shape
        equations.append(Equation(target, value, pos.line, pos.col))
    return tuple(equations)


def _check_complete(reader: _Reader, scope: _Scope) -> None:
    """Every state assigned (the first is the layer's output), every parameter read."""
    for number, state in enumerate(scope.states):
        if state not in scope.assigned:
            output = "; it is the layer's output" if number == 0 else ""
            reader.fail(("states", state), f"state {state} is never assigned in [step]{output}")
    for name in scope.parameters:
        if name not in scope.used:
            reader.fail(
                ("parameters", name),
                f"parameter {name} is never used by an equation (it would get no gradient)",
            )


def parse_cell(text: str, source: str = "<string>", built_in: bool = False) -> dict:
    """Check a cell file's text and build its tree; ``source`` names it in messages.

    ``built_in``: the text is one of torch's cells (:mod:`symbptt.torch_cells`), checked with
    :data:`BUILT_IN_NAME_RULES` and :data:`BUILT_IN_SIZES`.

    Returns:
        Cell's fields: name, description, inputs ``((name, letter), ...)``, states,
        parameters ``((name, shape), ...)``, equations (:class:`~symbptt.cell_expr.Equation`
        in order), source and text.

    Raises:
        SpecError: ``SOURCE:LINE:COL: message`` for the first problem found.
    """
    _check_size(text, source)
    data = _load_toml(text, source)
    reader = _Reader(source, _index_keys(text), built_in)
    reader.top_level(data)
    name = reader.cell_name(data["name"])
    description = reader.text_field(data, "description")
    reader.text_field(data, "reference")
    inputs = reader.sizes("inputs", data["inputs"], "input")
    states = reader.sizes("states", data["states"], "state")
    parameters = reader.parameters(data["parameters"])
    scope = _Scope(
        inputs={n: (size,) for n, size in inputs},
        states={n: (size,) for n, size in states},
        parameters=dict(parameters),
        targets=frozenset(data["step"]),
    )
    equations = _equations(reader, data["step"], scope)
    _check_complete(reader, scope)
    return {
        "name": name,
        "description": description,
        "inputs": inputs,
        "states": states,
        "parameters": parameters,
        "equations": equations,
        "source": source,
        "text": text,
    }


def read_cell_file(path: str | Path) -> dict:
    """Read the cell file at ``path`` (a regular file of UTF-8 text, at most
    :data:`MAX_FILE_BYTES`) and check it as :func:`parse_cell` does.

    Raises:
        SpecError: ``PATH: message`` when the file cannot be read, else ``PATH:LINE:COL: ...``.
    """
    source = str(path)
    try:
        info = Path(path).stat()
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(f"{source}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{source}: is not a regular file")
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1) if info.st_size <= MAX_FILE_BYTES else b""
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except OSError as error:
        raise SpecError(f"{source}: cannot read: {error.strerror or error}") from None
    if info.st_size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
        raise SpecError(f"{source}: a cell file may have at most {MAX_FILE_BYTES} bytes")
    return parse_cell(_decode(data, source), source)


def _decode(data: bytes, source: str) -> str:
    """The file's UTF-8 text, a leading byte-order mark dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line_start = before.rfind(b"\n") + 1
        col = len(before[line_start:].decode("utf-8", "replace")) + 1
        where = (before.count(b"\n") + 1, col)
        _fail(source, where, f"not UTF-8 text (byte 0x{data[error.start]:02x})")
