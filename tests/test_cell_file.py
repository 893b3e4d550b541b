"""The cell file reader: the MGU example's tree, one test per kind of error with its exact
position, a hostile corpus refused fast without running anything, and a fuzz test."""

from __future__ import annotations

import ast
import builtins
import json
import os
import random
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symbptt.core.cell_definition import Cell
from symbptt.core.cell_expr import Binary, Call, Number, Ref, Unary
from symbptt.core.cell_file import parse_cell, read_cell_file
from symbptt.errors import SpecError

MGU = """\
# Minimal gated unit (Zhou et al., 2016)
name = "MGU"                    # the generated class's name
description = "Minimal gated unit"

[inputs]                        # per-step inputs: name = size
x = "I"

[states]                        # carried states, in order; the first is the layer's output
h = "H"

[parameters]                    # name = shape: "H, I" a matrix, "H" a vector
W_f = "H, I"
U_f = "H, H"
b_f = "H"
W_n = "H, I"
U_n = "H, H"
b_n = "H"

[step]                          # the step's equations, in order
f = "sigmoid(W_f @ x + U_f @ h[t-1] + b_f)"
n = "tanh(W_n @ x + U_n @ (f * h[t-1]) + b_n)"
h = "(1 - f) * h[t-1] + f * n"
"""
# Lines: 2 name, 3 description, 6 x, 9 h, 12-17 W_f U_f b_f W_n U_n b_n, 19 [step],
# 20 f, 21 n, 22 h. Each value's text starts at column 6 (its quote is at column 5).

F_EQUATION = 'f = "sigmoid(W_f @ x + U_f @ h[t-1] + b_f)"'
H_EQUATION = 'h = "(1 - f) * h[t-1] + f * n"'
INPUTS_TABLE = '[inputs]                        # per-step inputs: name = size\nx = "I"'


def mgu(old: str, new: str) -> str:
    """The MGU file with its first ``old`` replaced by ``new``."""
    assert old in MGU
    return MGU.replace(old, new, 1)


def with_h(expression: str) -> str:
    """The MGU file whose h equation is ``expression`` (a TOML basic string)."""
    return mgu(H_EQUATION, "h = " + json.dumps(expression))


def error(text: str, source: str = "mgu.toml") -> str:
    """The one-line message parse_cell refuses ``text`` with."""
    with pytest.raises(SpecError) as info:
        parse_cell(text, source)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the tree --------------------------------------------------------------------------------


def test_mgu_parses_into_its_tree():
    cell = parse_cell(MGU, "mgu.toml")
    assert set(cell) == {
        "name",
        "description",
        "inputs",
        "states",
        "parameters",
        "equations",
        "source",
        "text",
    }
    assert (cell["name"], cell["description"]) == ("MGU", "Minimal gated unit")
    assert (cell["source"], cell["text"]) == ("mgu.toml", MGU)
    assert cell["inputs"] == (("x", "I"),)
    assert cell["states"] == (("h", "H"),)
    assert cell["parameters"] == (
        ("W_f", ("H", "I")),
        ("U_f", ("H", "H")),
        ("b_f", ("H",)),
        ("W_n", ("H", "I")),
        ("U_n", ("H", "H")),
        ("b_n", ("H",)),
    )
    f, n, h = cell["equations"]
    assert [e.target for e in (f, n, h)] == ["f", "n", "h"]
    assert [(e.line, e.col) for e in (f, n, h)] == [(20, 1), (21, 1), (22, 1)]
    assert isinstance(f.value, Call) and f.value.function == "sigmoid"
    assert isinstance(n.value, Call) and n.value.function == "tanh"
    assert f.value.shape == n.value.shape == h.value.shape == ("H",)


def test_mgu_h_equation_structure():
    h = parse_cell(MGU, "mgu.toml")["equations"][2].value
    vector = ("H",)
    assert h == Binary(
        "+",
        Binary(
            "*",
            Binary("-", Number(Fraction(1), 22, 7), Ref("f", False, 22, 11, vector), 22, 7, vector),
            Ref("h", True, 22, 16, vector),
            22,
            6,
            vector,
        ),
        Binary(
            "*", Ref("f", False, 22, 25, vector), Ref("n", False, 22, 29, vector), 22, 25, vector
        ),
        22,
        6,
        vector,
    )
    assert type(h.left.left.left.value) is Fraction


def test_cell_constructors_use_the_reader(tmp_path):
    path = tmp_path / "mgu.toml"
    path.write_text(MGU)
    cell = Cell.from_file(path)
    assert cell == Cell.from_string(MGU, str(path))
    assert (cell.source, cell.state_names) == (str(path), ("h",))
    assert Cell.from_string(MGU).source == "<string>"


def test_numbers_are_exact_and_signs_kept():
    h = parse_cell(with_h("0.5 * h[t-1] + -n / 4 + +f * 1e-3"))["equations"][2].value
    half, quarter, thousandth = h.left.left.left, h.left.right.right, h.right.right
    assert half.value == Fraction(1, 2)
    assert quarter.value == Fraction(4) and isinstance(h.left.right.left, Unary)
    assert thousandth.value == Fraction(1, 1000)
    assert h.right.left == Ref("f", False, 22, 31, ("H",))  # '+f' is f itself


def test_x_at_t_and_states_assigned_earlier():
    text = mgu('f = "sigmoid(W_f @ x + U_f', 'f = "sigmoid(W_f @ x[t] + U_f')
    f = parse_cell(text)["equations"][0].value
    assert f.argument.left.left.right == Ref("x", False, 20, 20, ("I",))
    text = MGU.replace('"MGU"', '"MGU"\nreference = "Zhou et al."').replace(
        '"H"\n\n[parameters]', '"H"\nc = "H"\n\n[parameters]'
    )
    text += 'c = "h + c[t-1] - h[t]"\n'
    c = parse_cell(text)["equations"][3]
    assert c.value.left.left == Ref("h", False, 25, 6, ("H",))
    assert c.value.right == Ref("h", False, 25, 19, ("H",))
    assert [name for name, _ in parse_cell(text)["states"]] == ["h", "c"]


def test_matrix_hint_only_when_a_matrix_is_misused():
    assert error(mgu("sigmoid(W_f @ x", "sigmoid((2 * W_f) @ x")).endswith(
        "'*' multiplies two vectors of one size, or by a number; "
        "a matrix may only appear as W in W @ v"
    )
    assert error(mgu("(1 - f)", "(x - f)")).endswith("of one size, or a number")


def test_division_by_zero_and_functions_of_numbers_are_refused_where_written():
    """Number subexpressions are evaluated exactly when the file is read: a division by one
    that is 0, and a function of a number (no matrix form), point at the file."""
    assert error(with_h("(1 - f) * h[t-1] + f * n / 0")) == (
        "mgu.toml:22:33: division by zero: 0 is 0"
    )
    assert error(with_h("(1 - f) * h[t-1] + f * n / (2 - 2)")) == (
        "mgu.toml:22:34: division by zero: 2 - 2 is 0"
    )
    assert error(with_h("(1 - f) * h[t-1] + f * n * exp(1)")) == (
        "mgu.toml:22:33: exp applies to a vector; 1 is a number (write its value)"
    )
    assert parse_cell(with_h("(1 - f) * h[t-1] + f * n / (3 - 1)"))["equations"][2]


def test_parameter_shapes_tolerate_whitespace():
    cell = parse_cell(mgu('W_f = "H, I"', 'W_f = "  H ,I "').replace('b_f = "H"', "b_f = 'H '"))
    assert cell["parameters"][:3] == (("W_f", ("H", "I")), ("U_f", ("H", "H")), ("b_f", ("H",)))


# -- errors, each at its position ------------------------------------------------------------

EXPRESSION_ERRORS = [
    # the unknown name in the second equation: '(q * h[t-1])', q at column 28
    (("(f * h", "(q * h"), "mgu.toml:21:28: unknown name 'q'"),
    (
        ("U_f @ h[t-1]", "W_f @ h[t-1]"),
        "mgu.toml:20:24: shape mismatch: W_f @ h[t-1]: W_f is (H, I), h[t-1] is (H);",
    ),
    (("(1 - f)", "(1 ** f)"), "mgu.toml:22:7: '**' is not supported; write x * x"),
    (("h[t-1] + b_f", "h + b_f"), "mgu.toml:20:30: state h is read before it is assigned"),
    (("U_f @ h[t-1]", "U_f @ n"), "mgu.toml:20:30: 'n' is used before it is assigned"),
    (("W_f @ x +", "W_f @ x[t-1] +"), "mgu.toml:20:20: x has no value at t-1"),
    (("+ b_f)", "+ b_f[t-1])"), "mgu.toml:20:39: parameter b_f does not change with t"),
    (("h[t-1] + b_f", "h[t-2] + b_f"), "mgu.toml:20:30: only a state's previous value"),
    (("(1 - f)", "(1e7 - f)"), "mgu.toml:22:7: the number 1e7 is out of range"),
    (("(1 - f)", "(True - f)"), "mgu.toml:22:7: True or False is not allowed in a step equation"),
    (("f * n", "f.T * n"), "mgu.toml:22:25: an attribute (.name) is not allowed"),
    (("sigmoid(", "open("), "mgu.toml:20:6: unknown function 'open'"),
    (("f * n", "f * sigmoid"), "mgu.toml:22:29: sigmoid is a function"),
    (("f * n", "f * t"), "mgu.toml:22:29: t may only appear in a state's previous value"),
    (("(f * h[t-1])", "(f, h[t-1])"), "mgu.toml:21:27: a tuple is not allowed"),
    (("b_f)", "b_f, x)"), "mgu.toml:20:6: sigmoid takes exactly one argument, not 2"),
    (("b_f)", "b_f, x=1)"), "mgu.toml:20:44: keyword arguments are not allowed"),
    (("sigmoid(W_f @ x", "sigmoid(W_f) @ (x"), "mgu.toml:20:6: sigmoid applies to a vector"),
    (("f * n", "f + )"), "mgu.toml:22:29: syntax error in the step equation: unmatched ')'"),
    (("f * n", "f * \u00f1"), "mgu.toml:22:29: character '\u00f1' is not allowed"),
    (("f * n", "f * n / W_n"), "mgu.toml:22:25: shape mismatch: f * n / W_n: f * n is (H), W_n"),
    (("(1 - f)", "(W_f - f)"), "mgu.toml:22:7: shape mismatch: W_f - f: W_f is (H, I), f is (H)"),
    (("(1 - f) * h", "(W_f * x) * h"), "mgu.toml:22:7: shape mismatch: W_f * x: W_f is (H, I)"),
    # a matrix only as W in W @ v: the code generator applies nothing else to a batch
    (("sigmoid(W_f @ x", "sigmoid((W_f + W_n) @ x"), "mgu.toml:20:15: shape mismatch: W_f + W_n"),
    (("sigmoid(W_f @ x", "sigmoid((2 * W_f) @ x"), "mgu.toml:20:15: shape mismatch: 2 * W_f"),
    (("sigmoid(W_f @ x", "sigmoid((W_f / 2) @ x"), "mgu.toml:20:15: shape mismatch: W_f / 2"),
    (("(1 - f)", "(x - f)"), "mgu.toml:22:7: shape mismatch: x - f: x is (I), f is (H); '-'"),
]


@pytest.mark.parametrize(("edit", "expected"), EXPRESSION_ERRORS)
def test_expression_errors_at_their_column(edit, expected):
    assert error(mgu(*edit)).startswith(expected)


def test_bracket_and_tree_depth_are_bounded():
    # the 51st '(' is character 50 of the text, at column 6 + 50
    nested = with_h("(" * 51 + "f" + ")" * 51)
    assert error(nested).startswith("mgu.toml:22:56: brackets are nested deeper than 50")
    assert parse_cell(with_h("(" * 50 + "f" + ")" * 50))["equations"][2].value.name == "f"
    # sixty minus signs: the Expression is at depth 1, the k-th '-' (from 0) at depth k + 2,
    # so the first too deep is '-' 49, at column 6 + 49
    assert error(with_h("-" * 60 + "f")).startswith("mgu.toml:22:55: the expression is nested")


def test_strings_with_escapes_report_the_key_and_literal_strings_the_column():
    escaped = mgu(H_EQUATION, r'h = "(1 - f) * h[t-1]\t+ f * q"')
    assert error(escaped).startswith("mgu.toml:22:1: unknown name 'q'")
    literal = mgu(H_EQUATION, "h = '(1 - f) * h[t-1] + f * q'")
    assert error(literal).startswith("mgu.toml:22:29: unknown name 'q'")
    quoted_key = mgu(H_EQUATION, '"h" = "(1 - f) * h[t-1] + f * q"')
    assert error(quoted_key).startswith("mgu.toml:22:31: unknown name 'q'")
    # the quote at column 9, q 25 characters after the text's start at column 10
    indented = mgu(H_EQUATION, '  h =   "  (1 - f) * h[t-1] + f * q"')
    assert error(indented) == "mgu.toml:22:35: unknown name 'q'"
    h = parse_cell(indented.replace("* q", "* n"))["equations"][2]
    assert (h.line, h.col, h.value.line, h.value.col) == (22, 3, 22, 12)


DECLARATION_ERRORS = [
    (('x = "I"', "x = I"), "mgu.toml:6:5: TOML syntax: Invalid value"),
    (('n = "tanh', 'f = "tanh'), "mgu.toml:21:1: key 'step.f' is given twice (first at line 20)"),
    (
        ('"Minimal gated unit"\n', '"Minimal gated unit"\ncolor = "red"\n'),
        "mgu.toml:4:1: unknown key",
    ),
    (("[step]", "[steps]"), "mgu.toml:19:2: unknown key 'steps'"),
    (('name = "MGU"', 'name = "class"'), "mgu.toml:2:1: the cell's name 'class' must be"),
    (('name = "MGU"', 'name = "_MGU"'), "mgu.toml:2:1: the cell's name '_MGU' must be"),
    (('name = "MGU"', 'name = "M' + "x" * 64 + '"'), "mgu.toml:2:1: the cell's name is longer"),
    (('name = "MGU"', "name = 1"), "mgu.toml:2:1: name must be a string, not an integer"),
    (("description = ", "description = 3 #"), "mgu.toml:3:1: description must be a string"),
    (
        ("description = ", 'reference = "a\\nb"\ndescription = '),
        "mgu.toml:3:1: reference must be one",
    ),
    (
        (INPUTS_TABLE, 'inputs = "x"'),
        "mgu.toml:5:1: inputs must be a table ([inputs]), not a string",
    ),
    (('x = "I"', 'x = "K"'), 'mgu.toml:6:1: input x: size must be "I" or "H", not \'K\''),
    (('h = "H"', "h = 5"), "mgu.toml:9:1: state h: expected a string, not an integer"),
    (('W_f = "H, I"', 'W_f = "H I"'), "mgu.toml:12:1: parameter W_f: shape must be"),
    (('W_f = "H, I"', 'W_f = "H, J"'), "mgu.toml:12:1: parameter W_f: shape must be"),
    (('x = "I"', 'u = "I"'), "mgu.toml:6:1: symbptt supports today exactly one input, named x"),
    (('x = "I"\n', 'x = "I"\ny = "I"\n'), "mgu.toml:7:1: symbptt supports today exactly one input"),
    (
        ('h = "H"\n', 'h = "H"\nz = "H"\n'),
        "mgu.toml:10:1: symbptt supports today one state named h",
    ),
    (('h = "H"\n', 'c = "H"\nh = "H"\n'), "mgu.toml:9:1: symbptt supports today one state named h"),
    (('b_n = "H"', 'x = "H"'), "mgu.toml:17:1: parameter x has the name of the input x"),
    (('n = "tanh', 'b_n = "tanh'), "mgu.toml:21:1: step variable b_n has the name of the"),
    (('n = "tanh', 'x = "tanh'), "mgu.toml:21:1: step variable x has the name of the input x"),
    ((F_EQUATION, "f = 1"), "mgu.toml:20:1: equation f: expected a string, not an integer"),
    ((F_EQUATION, 'f = "1"'), "mgu.toml:20:1: step variable f must be a vector; its value is a"),
    ((F_EQUATION, 'f = "W_f"'), "mgu.toml:20:1: step variable f must be a vector; its value is (H"),
    ((H_EQUATION, 'h = "x"'), "mgu.toml:22:1: state h has size H, but its new value is (I)"),
    ((H_EQUATION, 'z = "f"'), "mgu.toml:9:1: state h is never assigned in [step]; it is the layer"),
    (("+ b_n)", ")"), "mgu.toml:17:1: parameter b_n is never used by an equation"),
    ((H_EQUATION, 'h = ""'), "mgu.toml:22:1: the equation is empty"),
]


@pytest.mark.parametrize(("edit", "expected"), DECLARATION_ERRORS)
def test_declaration_errors_at_their_key(edit, expected):
    assert error(mgu(*edit)).startswith(expected)


NAME_ERRORS = [
    ("n1", "must not end with a digit"),
    ("a_n", "must not start with a_"),
    ("deltan", "must not start with a_, delta"),
    ("carry_n", "must not start with"),
    ("grad_n", "must not start with"),
    ("nbar", "must not end with bar"),
    ("n_new", "must not end with bar, _new"),
    ("n_prev", "must not end with"),
    ("lambda", "is a Python keyword"),
    ("tanh", "is the name of a function"),
    ("mask", "is a name the generated code uses"),
    ("H", "is a name the generated code uses"),
    ("n-m", "must be a letter followed by letters, digits and '_'"),
    ("_n", "must be a letter followed by"),
    ("n" * 33, "is longer than 32 characters"),
]


@pytest.mark.parametrize(("name", "problem"), NAME_ERRORS)
def test_name_rules(name, problem):
    message = error(mgu('n = "tanh', f'{name} = "tanh'))
    assert message.startswith(f"mgu.toml:21:1: step variable name {name!r} {problem}")


def test_missing_tables_and_keys():
    assert error(mgu('name = "MGU"', "")) == "mgu.toml:1:1: the key 'name' is missing"
    step = MGU[: MGU.index("[step]")]
    assert error(step) == "mgu.toml:1:1: the table [step] is missing"


def test_toml_errors_at_the_end_of_the_document():
    assert error('name = "MGU') == "mgu.toml:1:12: TOML syntax: Unterminated string"


def test_table_sizes_are_bounded():
    many_parameters = "".join(f'p{i}x = "H"\n' for i in range(65))
    text = mgu("[step]", many_parameters + "[step]")
    # entry 65 is the 59th new one, on line 19 + 58
    assert error(text).startswith("mgu.toml:77:1: [parameters] has 71 entries; at most 64")
    many_states = "".join(f's{i}x = "H"\n' for i in range(16))
    text = mgu('h = "H"\n', 'h = "H"\n' + many_states)
    assert error(text).startswith("mgu.toml:25:1: [states] has 17 entries; at most 16")
    text = MGU + "".join(f'e{i}x = "f"\n' for i in range(62))
    assert error(text).startswith("mgu.toml:84:1: [step] has 65 entries; at most 64")
    long = with_h("f + " * 1000 + "f")
    assert error(long).startswith("mgu.toml:22:1: the equation is longer than 4000 characters")


def test_text_over_the_size_bound():
    assert error(MGU + "#" * 65536) == "mgu.toml:1:1: a cell file may have at most 65536 bytes"


def test_read_cell_file_refusals(tmp_path):
    missing, folder = tmp_path / "missing.toml", tmp_path / "folder"
    folder.mkdir()
    big, binary, broken = tmp_path / "big.toml", tmp_path / "binary.toml", tmp_path / "b.toml"
    big.write_text(MGU + "#" * 1_000_000)
    binary.write_bytes(bytes(range(256)))
    broken.write_bytes(MGU.encode() + b"\xff")
    expected = {
        missing: f"{missing}: no such file",
        folder: f"{folder}: is a directory",
        big: f"{big}: a cell file may have at most 65536 bytes",
        # bytes 0-127 are ASCII: line 2 starts after byte 10, 0x80 is character 118 of it
        binary: f"{binary}:2:118: not UTF-8 text (byte 0x80)",
        broken: f"{broken}:23:1: not UTF-8 text (byte 0xff)",
    }
    for path, message in expected.items():
        with pytest.raises(SpecError) as info:
            read_cell_file(path)
        assert str(info.value) == message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_read_cell_file_refuses_a_pipe(tmp_path):
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    with pytest.raises(SpecError, match="is not a regular file"):
        read_cell_file(pipe)


def test_read_cell_file_errors_name_the_path(tmp_path):
    path = tmp_path / "mgu.toml"
    path.write_text(mgu("(f * h", "(q * h"))
    with pytest.raises(SpecError) as info:
        read_cell_file(path)
    assert str(info.value) == f"{path}:21:28: unknown name 'q'"


# -- hostile input ---------------------------------------------------------------------------

HOSTILE_EQUATIONS = [
    "().__class__.__bases__[0].__subclasses__()",
    "2 ** 10 ** 10",
    "(" * 20000 + "x" + ")" * 20000,
    "-" * 3990 + "x",
    "+".join(["f"] * 1000),
    "lambda: 0",
    "[i for i in x]",
    '"a"',
    'f"{x}"',
    "x.T",
    "open('/etc/passwd')",
    "sigmoid(x, x)",
    "sigmoid(x=1)",
    "tanh(*x)",
    "(x := 1)",
    "x if x else x",
    "1e400",
    "True",
    "not f",
    "~f",
    "f < n",
    "f and n",
    "f[0]",
    "f[t-1]",
    "{}",
    "b'x'",
    "1j",
    "None",
    "...",
    "x" * 100_000,
    "f\x00",
]


def refused_fast(text: str) -> str:
    """The message ``text`` is refused with, checking that refusing it does not hang."""
    start = time.monotonic()
    message = error(text)
    assert time.monotonic() - start < 2, message
    return message


@pytest.mark.parametrize("expression", HOSTILE_EQUATIONS, ids=lambda e: repr(e[:30]))
def test_hostile_equations_are_refused(expression):
    refused_fast(with_h(expression))


def test_import_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    refused_fast(with_h(f"__import__('os').system('touch {target}')"))
    refused_fast(with_h(f"sigmoid(__import__('os').system('touch {target}'))"))
    assert not target.exists()


def test_hostile_files_are_refused(tmp_path):
    equations = "".join(f'e{i}x = "f"\n' for i in range(10_000))
    files = [
        MGU + equations,
        MGU[: MGU.index("[step]")] + "[step]\n" + "".join(f'e{i}x = "f"\n' for i in range(65)),
        MGU + "#" * 1_000_000,
        bytes(range(256)).decode("latin-1"),
        "a = " + "[" * 30000,
        "a = " + "{b = " * 10000,
        "\ud800",
    ]
    for text in files:
        refused_fast(text)
    path = tmp_path / "hostile.toml"
    path.write_bytes(random.Random(0).randbytes(4096))
    start = time.monotonic()
    with pytest.raises(SpecError):
        read_cell_file(path)
    assert time.monotonic() - start < 2


def test_nothing_is_compiled_to_code(monkeypatch):
    """ast.parse compiles to a syntax tree only; eval and exec are never reached."""
    real_compile = builtins.compile

    def tree_only(source, filename, mode, flags=0, *args, **kwargs):
        assert flags & ast.PyCF_ONLY_AST, "compiled to code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("evaluated")

    monkeypatch.setattr(builtins, "compile", tree_only)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    parse_cell(MGU)
    for expression in HOSTILE_EQUATIONS[:20]:
        with pytest.raises(SpecError):
            parse_cell(with_h(expression))


TOKENS = [
    "x", "h", "f", "n", "W_f", "U_f", "b_f", "t", "q", "sigmoid", "tanh", "__import__",
    "1", "0.5", "1e400", "2", "(", ")", "[", "]", "[t-1]", "[t]", ",", ".", "'", '"', "@",
    "*", "**", "+", "-", "/", "=", ":=", ":", "lambda", "if", "else", " ", "\\", "#", "\t",
]  # fmt: skip


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_fuzz_expressions(expression):
    try:
        cell = parse_cell(with_h(expression))
    except SpecError as refused:
        assert "\n" not in str(refused)
    else:
        assert cell["equations"][2].value.shape == ("H",)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(MGU.splitlines(keepends=True)), max_size=30).map("".join),
    )
)
def test_fuzz_files(text):
    try:
        assert isinstance(parse_cell(text), dict)
    except SpecError as refused:
        assert "\n" not in str(refused)
