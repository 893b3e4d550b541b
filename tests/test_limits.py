"""Bounded work and bad numbers: limits estimated from the sizes, refused up front (SpecError,
one line and exit status 2 from the CLI), announced and shown in progress when long; verify's
batch, seed and module checks; check's child process bounds; the messages of explain, check
and flow for inputs that are not what they look like."""

from __future__ import annotations

import io
import warnings

import pytest

import symbptt
from symbptt import limits
from symbptt.cli import main
from symbptt.errors import SpecError, SymbpttError, VerificationError
from symbptt.verify import verify


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``symbptt ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *words: str) -> None:
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "variable"),
    [
        ({"steps": 10**6}, "SYMBPTT_MAX_SECONDS"),
        ({"steps": 10**23}, "SYMBPTT_MAX_SECONDS"),
        ({"cell": "lstm", "steps": 100_000}, "SYMBPTT_MAX_SECONDS"),
        ({"hidden_size": 100_000}, "SYMBPTT_MAX_MEMORY_GB"),
        ({"input_size": 10**12}, "SYMBPTT_MAX_MEMORY_GB"),
    ],
)
def test_over_limit_spec_is_refused_naming_the_override(options, variable):
    with pytest.raises(SpecError, match=variable):
        symbptt.derive(**options)


def test_the_override_lets_it_through(monkeypatch):
    monkeypatch.setenv("SYMBPTT_MAX_MEMORY_GB", "100")
    assert symbptt.Spec(hidden_size=100_000).hidden_size == 100_000
    monkeypatch.setenv("SYMBPTT_MAX_MEMORY_GB", "inf")
    assert symbptt.Spec(hidden_size=10**9).hidden_size == 10**9


@pytest.mark.parametrize("value", ["", "abc", "0", "-1", "nan"])
def test_a_bad_override_is_a_spec_error(monkeypatch, value):
    monkeypatch.setenv("SYMBPTT_MAX_SECONDS", value)
    with pytest.raises(SpecError, match="SYMBPTT_MAX_SECONDS must be a positive number"):
        symbptt.Spec()


def test_long_work_is_announced_before_it_starts_once():
    with pytest.warns(limits.CostWarning, match="deriving 10000 steps of rnn takes about"):
        spec = symbptt.Spec(steps=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", limits.CostWarning)
        symbptt.Spec(steps=100)  # short: silent
        spec.layer(0)  # a layer of an announced spec: not announced again


def test_cli_over_limit_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "derive", "--steps", "1000000")
    assert_one_line_error(status, err, "SYMBPTT_MAX_SECONDS")
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_the_estimates_follow_the_calibration():
    """The rules of symbptt.limits against figures measured there (within a factor 2)."""
    with pytest.warns(limits.CostWarning):
        spec = symbptt.Spec(steps=8000)
    assert 8 <= limits.derivation_cost(spec).seconds <= 25  # measured 8.4 s above a bare run
    verify_spec = symbptt.Spec(steps=100)
    cost = limits.numeric_cost(verify_spec, "verify", batch=100_000)
    assert 10 <= cost.seconds <= 40  # measured 20 s
    assert 0.75e9 <= cost.bytes <= 3e9  # measured 1.49 GB
    lstm = limits.numeric_cost(symbptt.Spec(cell="lstm", hidden_size=2000), "verify", batch=3)
    assert 0.4e9 <= lstm.bytes <= 1.5e9  # measured 755 MB
    view = limits.scalar_view_cost(symbptt.Spec(hidden_size=32), "sympy")
    assert 1.5 <= view.seconds <= 6  # measured 3.0 s above a bare run


def test_progress_is_drawn_on_a_terminal_only(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(limits, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(limits, "_REDRAW", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(limits.progress(range(3), 3, "step")) == [0, 1, 2]
    shown = terminal.getvalue()
    assert "symbptt: step 2/3" in shown
    assert shown.endswith("\r\033[K")  # erased at the end
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    assert list(limits.progress(range(3), 3, "step")) == [0, 1, 2]
    assert pipe.getvalue() == ""


# --- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--batch", "0"], ["--batch must be a positive integer"]),
        (["--batch", "-1"], ["--batch must be a positive integer"]),
        (["--seed", "99999999999999999999"], ["--seed must be an integer"]),
        (["--seed", "-1"], ["--seed must be an integer"]),
        (["--hidden-size", "100000"], ["SYMBPTT_MAX_MEMORY_GB"]),
        (["--hidden-size", "20000"], ["verifying", "SYMBPTT_MAX_MEMORY_GB"]),
        (["--batch", str(10**9)], ["verifying", "SYMBPTT_MAX_"]),
    ],
)
def test_verify_bad_numbers_are_one_line(capsys, argv, words):
    status, out, err = run_cli(capsys, "verify", *argv)
    assert_one_line_error(status, err, *words)
    assert out == ""


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"batch": 0}, SpecError),
        ({"batch": -3}, SpecError),
        ({"batch": 2.5}, SpecError),
        ({"seed": 2**64}, SpecError),
        ({"seed": -1}, SpecError),
        ({"batch": 10**9}, SpecError),
    ],
)
def test_verify_api_bad_numbers(options, error):
    with pytest.raises(error):
        verify(symbptt.derive(), **options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hidden_size": 5}, "hidden_size 2, not 5"),
        ({"input_size": 3}, "input_size 1, not 3"),
        ({"steps": 4}, "steps 3, not 4"),
        ({"cell": "gru"}, "no class GRU"),
    ],
)
def test_verify_refuses_a_module_generated_for_another_layer(options, match):
    module = symbptt.derive().load()
    with pytest.raises(VerificationError, match=match):
        verify(symbptt.derive(**options), module=module)
    assert isinstance(VerificationError("x"), SymbpttError)
