"""The safe reader of cell files: untrusted TOML in, a checked :mod:`symbptt.core.cell_expr` tree
out.

Nothing in a cell file is ever evaluated. The file is read with :mod:`tomllib`, its tables
checked here (keys, names, sizes, shapes; every equation's positions found in the raw text);
each step equation is read by :mod:`symbptt.core.cell_equation`, an allow-listed walk of its syntax
tree. Every bound (file size, counts, lengths, nesting) is checked before the work it guards.

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

import keyword
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import SpecError
from .cell_equation import EquationReader, Pos, Scope, fail_at, quoted, shape_text
from .cell_expr import (
    FUNCTIONS,
    SIZES,
    Equation,
    Shape,
)

MAX_FILE_BYTES = 65536
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
"""The rules for torch's cells (:mod:`symbptt.core.torch_cells`): all but the reserved prefixes and
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

    positions: dict[tuple[str, ...], Pos] = field(default_factory=dict)
    duplicate: tuple[tuple[str, ...], Pos, Pos] | None = None

    def add(self, path: tuple[str, ...], pos: Pos) -> None:
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
            index.add(table, Pos(number, header.start("key") + 1))
        elif key := _KEY_LINE.match(line):
            value = line[key.end() :]
            pos = Pos(number, key.start("key") + 1)
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
        fail_at(source, (1, 1), f"a cell file may have at most {MAX_FILE_BYTES} bytes")


def _load_toml(text: str, source: str) -> dict:
    """The TOML document, or a one-line error at the position TOML found wrong."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        _toml_error(text, source, str(error))
    except (RecursionError, MemoryError):
        fail_at(source, (1, 1), "TOML syntax: nested too deeply")


def _toml_error(text: str, source: str, message: str) -> NoReturn:
    duplicate = _index_keys(text).duplicate if message.startswith("Cannot overwrite") else None
    if duplicate is not None:
        path, first, again = duplicate
        fail_at(
            source,
            again[:2],
            f"key {quoted('.'.join(path))} is given twice (first at line {first.line})",
        )
    if at := _TOML_AT.fullmatch(message):
        fail_at(source, (int(at["line"]), int(at["col"])), f"TOML syntax: {at['message']}")
    lines = text.split("\n")
    at_end = _TOML_AT_END.fullmatch(message)
    message = at_end["message"] if at_end else message
    fail_at(source, (len(lines), len(lines[-1]) + 1), f"TOML syntax: {message}")


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
        fail_at(self.source, self.where(*path), message)

    def top_level(self, data: dict) -> None:
        """Only the keys of :data:`TOP_LEVEL`, the required ones present, each of its type."""
        for key in data:
            if key not in TOP_LEVEL:
                known = ", ".join(TOP_LEVEL)
                self.fail((key,), f"unknown key {quoted(key)}; the keys are {known}")
        for key, (kind, required) in TOP_LEVEL.items():
            if key not in data and required:
                what = f"table [{key}]" if kind is dict else f"key {key!r}"
                fail_at(self.source, (1, 1), f"the {what} is missing")
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
                f"the cell's name {quoted(name)} must be a Python identifier: a letter, then "
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
                self.fail(path, f"{kind} name {quoted(name)} {problem}")
        if name in self.declared:
            self.fail(path, f"{kind} {name} has the name of the {self.declared[name]} {name}")
        self.declared[name] = kind

    def sizes(self, table: str, values: dict, kind: str) -> tuple[tuple[str, str], ...]:
        """``name = "I"`` or ``name = "H"``, names as :data:`SUPPORTED` allows."""
        self.declarations(table, values, kind)
        for name, size in values.items():
            if size.strip() not in self.size_letters:
                self.fail(
                    (table, name), f'{kind} {name}: size must be "I" or "H", not {quoted(size)}'
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
                f"parameter {name}: shape must be {SHAPES_ALLOWED}, not {quoted(text)}",
            )
        return letters


def _equations(reader: _Reader, step: dict, scope: Scope) -> tuple[Equation, ...]:
    """The [step] table's equations in order, each checked against those before it."""
    reader.bound("step", step)
    for target, text in step.items():
        if target not in scope.states:
            reader.check_name(("step", target), "step variable")
        reader.check_string(("step", target), "equation", text)
    equations = []
    for target, text in step.items():
        pos = reader.index.positions.get(("step", target)) or Pos(*reader.where("step", target))
        value = EquationReader(reader.source, pos, text, scope).read()
        if target in scope.states and value.shape != scope.states[target]:
            reader.fail(
                ("step", target),
                f"state {target} has size {scope.states[target][0]}, but its new value is "
                f"{shape_text(value.shape)}",
            )
        if len(value.shape) != 1:
            reader.fail(
                ("step", target),
                f"step variable {target} must be a vector; its value is {shape_text(value.shape)}",
            )
        scope.assigned[target] = value.shape
        equations.append(Equation(target, value, pos.line, pos.col))
    return tuple(equations)


def _check_complete(reader: _Reader, scope: Scope) -> None:
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

    ``built_in``: the text is one of torch's cells (:mod:`symbptt.core.torch_cells`), checked with
    :data:`BUILT_IN_NAME_RULES` and :data:`BUILT_IN_SIZES`.

    Returns:
        Cell's fields: name, description, inputs ``((name, letter), ...)``, states,
        parameters ``((name, shape), ...)``, equations (:class:`~symbptt.core.cell_expr.Equation`
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
    scope = Scope(
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
        fail_at(source, where, f"not UTF-8 text (byte 0x{data[error.start]:02x})")
