"""Fuzz the command line with bad arguments: every subcommand, one bad option (or file) at a
time on top of arguments that work, run in this process in a fresh folder. Each must end with
exit status 2, exactly one line on stderr, no traceback, and no file written.

Deterministic (``derandomize=True``) and bounded (``max_examples``), about 30 s.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbptt.cli import main
from symbptt.core.spec import CELLS

CORRECT = str(Path(__file__).resolve().parent.parent / "examples" / "correct.py")

BASE = {
    "derive": ["derive", "--out", "out", "--no-verify"],
    "latex": ["latex", "-o", "doc.tex"],
    "verify": ["verify"],
    "explain": ["explain"],
    "flow": ["flow"],
    "scalar-view": ["scalar-view"],
    "check": ["check", CORRECT],
}
"""Arguments that work for each subcommand, to which one bad option is added."""

NOT_INTEGERS = ["", " ", "abc", "1.5", "nan", "inf", "1e3", "10**23", "0x10", "٣x"]
NOT_FLOATS = ["", "abc", "nan", "inf", "-inf", "1e400", "-0.5", "1", "1.5", "0,5"]
SIZES = ("--steps", "--input-size", "--hidden-size", "--num-layers")
HUGE = {"--steps": 10**6, "--input-size": 10**10, "--hidden-size": 10**5}
"""Sizes at and above which a spec is refused before anything is derived or written."""
FILES = {
    "missing.pt": None,
    "folder": "dir",
    "empty.pt": b"",
    "garbage.pt": b"\x00\xffnot a torch file\n" * 10,
    "text.pt": b"hello\n",
}
"""Bad files made in the folder of each example (None: not made)."""


def _text(exclude: tuple[str, ...]) -> st.SearchStrategy[str]:
    alphabet = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    return st.text(alphabet, max_size=12).filter(lambda value: value not in exclude)


def _option(name: str, values: st.SearchStrategy) -> st.SearchStrategy[list[str]]:
    return values.map(lambda value: [f"{name}={value}"])


def _bad_size(name: str, command: str) -> st.SearchStrategy[str]:
    values = [st.sampled_from(NOT_INTEGERS), st.integers(max_value=0).map(str)]
    if name in HUGE and command != "check":  # check refuses sizes its child cannot run only
        values.append(st.integers(min_value=HUGE[name], max_value=10**30).map(str))
    return st.one_of(values)


SPEC = [
    lambda command: st.sampled_from(SIZES).flatmap(
        lambda name: _option(name, _bad_size(name, command))
    ),
    lambda command: _option("--cell", _text(CELLS)),
    lambda command: _option("--nonlinearity", _text(("tanh", "relu"))),
    lambda command: _option("--dropout", st.sampled_from(NOT_FLOATS)),
    lambda command: _option(
        "--proj-size", st.sampled_from(["-1", "abc", "", "2", "5"] + NOT_INTEGERS)
    ),
    lambda command: _option("--truncate", st.sampled_from(["-1", "-5", *NOT_INTEGERS])),
]
"""Bad layer options, shared by every subcommand but check's file."""

SEEDS = st.sampled_from(["-1", "99999999999999999999", str(2**63), *NOT_INTEGERS])
FILE_NAMES = st.sampled_from(sorted(FILES))

OWN = {
    "derive": [_option("--name", st.sampled_from(["1x", "a-b", "a b", "import"]))],
    "latex": [st.sampled_from([["-o", "doc.txt"], ["-o", ""], ["--pdf", "-o", "doc.md"]])],
    "verify": [
        _option("--seed", SEEDS),
        _option("--batch", st.sampled_from(["0", "-1", "1000000000", *NOT_INTEGERS])),
        _option("--dtype", _text(("float64", "float32"))),
        _option("--device", _text(("cpu", "cuda"))),
    ],
    "explain": [
        _option("--seed", SEEDS),
        _option("--loss", _text(("h_n", "hn", "output"))),
        _option("--format", _text(("text", "markdown", "json"))),
        _option("--input", st.sampled_from(["1,,3", "a,b", ",", "1,2", "", *FILES])),
        _option("--weights", FILE_NAMES),
    ],
    "flow": [
        _option("--seed", SEEDS),
        _option("--loss", _text(("h_n", "hn", "output"))),
        _option("--input", FILE_NAMES),
        _option("--weights", FILE_NAMES),
        _option("--format", _text(("text", "markdown", "json"))),
    ],
    "scalar-view": [_option("--backend", _text(("sympy", "symengine")))],
    "check": [
        _option("--timeout", st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e9", "abc"])),
        _option("--seed", SEEDS),
        _option("--format", _text(("text", "json"))),
    ],
}
"""Bad options of each subcommand."""


@st.composite
def bad_command(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(BASE)))
    base = BASE[command]
    if command == "check" and draw(st.booleans()):  # a bad FILE instead of a bad option
        return ["check", draw(st.sampled_from(["missing.py", "folder", ""]))]
    choices = [make(command) for make in SPEC] + OWN[command]
    return base + draw(st.one_of(choices))


def _make_files(folder: Path) -> None:
    for name, content in FILES.items():
        if content == "dir":
            (folder / name).mkdir()
        elif content is not None:
            (folder / name).write_bytes(content)


@settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(bad_command())
def test_bad_arguments_fail_in_one_line_and_write_nothing(argv):
    with tempfile.TemporaryDirectory() as name, contextlib.chdir(name):
        folder = Path(name)
        _make_files(folder)
        before = sorted(folder.rglob("*"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse's errors
                status = exc.code
        message = err.getvalue()
        assert status == 2, (argv, status, message, out.getvalue()[-500:])
        assert message.count("\n") == 1 and message.endswith("\n"), (argv, message)
        assert "Traceback" not in message, (argv, message)
        assert sorted(folder.rglob("*")) == before, argv
