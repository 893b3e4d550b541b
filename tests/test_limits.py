"""Bounded work and bad numbers: limits estimated from the sizes, refused up front (SpecError,
one line and exit status 2 from the CLI), announced and shown in progress when long; verify's
batch, seed and module checks; check's child process bounds; the messages of explain, check
and flow for inputs that are not what they look like."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import symbptt
from symbptt import limits
from symbptt.check import process as check_process
from symbptt.check.diagnose import check_file
from symbptt.check.process import UserCodeError
from symbptt.cli import main
from symbptt.errors import SpecError, SymbpttError, VerificationError
from symbptt.verification.verify import verify

CORRECT = str(Path(__file__).resolve().parent.parent / "examples" / "correct.py")


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


# --- check -------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "100000"])
def test_check_refuses_bad_timeouts(capsys, value):
    status, out, err = run_cli(capsys, "check", CORRECT, f"--timeout={value}")
    assert_one_line_error(status, err, "--timeout")
    assert out == ""


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -2.0])
def test_check_api_refuses_bad_timeouts(value):
    with pytest.raises(SpecError, match="--timeout"):
        check_file(CORRECT, timeout=value)


@pytest.mark.parametrize(
    ("target", "words"),
    [(".", ["is a folder", "manual_gradients"]), ("", ["empty"]), ("nope.py", ["no such file"])],
)
def test_check_says_what_is_wrong_with_file(capsys, tmp_path, monkeypatch, target, words):
    monkeypatch.chdir(tmp_path)
    for option in ([], ["--format", "json"]):
        status, out, err = run_cli(capsys, "check", target, *option)
        assert_one_line_error(status, err, *words)
        assert "no such file" not in err or target == "nope.py"
        assert out == ""


def test_check_bounds_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(check_process, "MAX_OUTPUT", 10**6)
    path = tmp_path / "loud.py"
    path.write_text(
        "import sys\nfor _ in range(10**4):\n    print('x' * 1000, file=sys.stderr)\n"
        "def manual_gradients(*args):\n    return {}\n"
    )
    with pytest.raises(UserCodeError) as caught:
        check_file(path, timeout=30)
    assert "wrote more than 1 MB of output" in caught.value.details


def test_check_bounds_the_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBPTT_MAX_MEMORY_GB", "1.5")
    path = tmp_path / "greedy.py"
    path.write_text("block = bytearray(3 * 10**9)\ndef manual_gradients(*args):\n    return {}\n")
    with pytest.raises(UserCodeError) as caught:
        check_file(path, timeout=30)
    assert "MemoryError" in caught.value.details


def test_check_bounds_the_cpu_time(tmp_path, monkeypatch):
    monkeypatch.setattr(check_process, "START_GRACE", 8.0)
    monkeypatch.setattr(check_process, "CPU_PER_TIMEOUT", 0)
    path = tmp_path / "busy.py"
    path.write_text("while True:\n    pass\n")
    with pytest.raises(UserCodeError, match="used more than 8 s of CPU time"):
        check_file(path, timeout=60)


def test_check_kills_what_the_file_started_on_time_out(tmp_path):
    pid_file = tmp_path / "pid"
    path = tmp_path / "spawns.py"
    path.write_text(
        "import pathlib, subprocess\n"
        "sleeper = subprocess.Popen(['sleep', '300'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(sleeper.pid))\n"
        "def manual_gradients(*args):\n    while True:\n        pass\n"
    )
    try:
        with pytest.raises(UserCodeError, match="did not return within 1 s"):
            check_file(path, timeout=1)
        pid = int(pid_file.read_text())
        assert wait_until(lambda: not alive(pid), 10)
    finally:
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_check_terminated_kills_its_child_and_removes_its_folder(tmp_path, signum):
    pid_file, temporary = tmp_path / "pid", tmp_path / "tmp"
    temporary.mkdir()
    path = tmp_path / "sleeps.py"
    path.write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    check = subprocess.Popen(
        [sys.executable, "-m", "symbptt", "check", str(path), "--timeout", "200"],
        env={**os.environ, "TMPDIR": str(temporary)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 120)
        child = int(pid_file.read_text())
        check.send_signal(signum)
        status = check.wait(timeout=30)
        assert status == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
        assert b"Traceback" not in check.stderr.read()
        assert wait_until(lambda: not alive(child), 10)
        assert list(temporary.iterdir()) == []
    finally:
        if check.poll() is None:
            check.kill()
        if pid_file.exists() and pid_file.read_text() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# --- explain, flow, scalar-view ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1,,3", ["entry 2 of 3 is empty"]),
        ("1,a,3", ["entry 2 of 3 'a' is not a number"]),
        (",", ["entry 1 of 2 is empty"]),
        ("", ["--input is empty"]),
    ],
)
def test_explain_input_list_says_what_is_wrong(capsys, tmp_path, monkeypatch, value, words):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "explain", f"--input={value}")
    assert_one_line_error(status, err, *words)
    assert "no such file" not in err


@pytest.mark.parametrize("command", ["explain", "flow"])
@pytest.mark.parametrize(("option", "words"), [("--weights", ["a folder"]), ("--input", [])])
def test_a_folder_is_not_called_missing(capsys, tmp_path, monkeypatch, command, option, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    status, out, err = run_cli(capsys, command, option, "d")
    assert_one_line_error(status, err, "a folder", *words)
    assert "no such file" not in err


@pytest.mark.parametrize("command", ["explain", "flow"])
@pytest.mark.parametrize("loss", ["h_n", "hn"])
def test_both_spellings_of_the_loss(capsys, command, loss):
    status, out, err = run_cli(capsys, command, "--loss", loss, "--format", "json")
    assert status == 0, err


def test_one_spelling_in_the_help(capsys):
    for command in ("explain", "flow"):
        status, out, _ = run_cli(capsys, command, "--help")
        assert status == 0
        assert "{h_n,output}" in out
        assert "hn:" not in out


def test_loss_api_takes_both_spellings():
    from symbptt.explain.command import explain
    from symbptt.verification.numeric_inputs import loss_name

    assert loss_name("hn") == loss_name("h_n") == "h_n"
    with pytest.raises(SpecError, match="h_n"):
        loss_name("c_n")
    assert explain(symbptt.derive(), loss="h_n").loss == explain(symbptt.derive()).loss


def test_flow_bad_seed_is_one_line(capsys):
    status, out, err = run_cli(capsys, "flow", "--seed", "99999999999999999999")
    assert_one_line_error(status, err, "--seed")


def test_scalar_view_over_limit_is_refused(capsys):
    status, out, err = run_cli(capsys, "scalar-view", "--hidden-size", "1000")
    assert_one_line_error(status, err, "scalar view", "SYMBPTT_MAX_SECONDS")
    from symbptt.scalar.view import scalar_view

    with pytest.raises(SpecError, match="SYMBPTT_MAX_SECONDS"):
        scalar_view(symbptt.derive(hidden_size=1000))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["flow", "--steps", "3000", "--hidden-size", "2000"], ["gradient flow"]),
        (["explain", "--steps", "5000", "--hidden-size", "1000"], ["explaining"]),
    ],
)
def test_numeric_learner_tools_over_limit(capsys, argv, words):
    status, out, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, *words, "SYMBPTT_MAX_")


def test_scalar_view_shows_progress_on_a_terminal(monkeypatch):
    from symbptt.scalar.view import scalar_view

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(limits, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(limits, "_REDRAW", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    scalar_view(symbptt.derive(steps=4))
    assert "symbptt: scalar view, backward step 3/4" in terminal.getvalue()


def test_derive_refuses_a_verification_too_large_before_writing(tmp_path, capsys):
    from symbptt.cli import main

    out = tmp_path / "out"
    assert main(["derive", "--steps", "2", "--hidden-size", "20000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SYMBPTT_MAX_MEMORY_GB" in err
    assert not out.exists()
