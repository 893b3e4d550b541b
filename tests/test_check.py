"""``symbptt check``: the examples diagnosed, files that cannot be run, and the reference."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from symbptt.check.diagnose import size_hint, user_names
from symbptt.check.points import (
    Layer,
    input_points,
    main_points,
    reference,
    saturation_points,
)
from symbptt.check.variants import MISTAKES, Knobs, Names, evaluate, knobs_of, terms
from symbptt.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_check(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["check", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(capsys, *args: str) -> tuple[int, dict]:
    status, out, _ = run_check(capsys, *args, "--format", "json")
    return status, json.loads(out)


# --- the reference and the variants ---------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [Layer(3, 1, 2), Layer(4, 3, 2), Layer(3, 2, 3, "relu"), Layer(2, 2, 2, bias=False)],
    ids=str,
)
def test_reference_is_autograd_and_the_correct_formulas(layer):
    """The generated per-step terms sum to torch's gradients; the row formulas equal them."""
    points = main_points(layer, 0) + input_points(layer, 0, 1) + saturation_points(layer, 0, 1)
    for point in points:
        ref = reference(layer, point)
        v = point.values
        rnn = torch.nn.RNN(
            layer.input_size,
            layer.hidden_size,
            nonlinearity=layer.nonlinearity,
            bias=layer.bias,
            dtype=torch.float64,
        )
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(v["weight_ih"])
            rnn.weight_hh_l0.copy_(v["weight_hh"])
            if layer.bias:
                rnn.bias_ih_l0.copy_(v["bias_ih"])
                rnn.bias_hh_l0.copy_(v["bias_hh"])
        h0 = v["h0"].clone().unsqueeze(0).requires_grad_()
        _, h_n = rnn(v["x"], h0)
        h_n.backward(v["grad_h_n"].unsqueeze(0))
        torch.testing.assert_close(ref["weight_ih"].sum(0), rnn.weight_ih_l0.grad)
        torch.testing.assert_close(ref["weight_hh"].sum(0), rnn.weight_hh_l0.grad)
        torch.testing.assert_close(ref["h0"][0], h0.grad[0])
        if layer.bias:
            torch.testing.assert_close(ref["bias_hh"].sum(0), rnn.bias_hh_l0.grad)
        mine = evaluate(Knobs(), v, layer.nonlinearity, tuple(ref))
        for key, value in ref.items():
            torch.testing.assert_close(mine[key], value, rtol=1e-12, atol=1e-14)


def test_isolating_points_isolate():
    layer = Layer(4, 1, 2)
    for point in input_points(layer, 0):
        terms_ih = reference(layer, point)["weight_ih"]
        others = [t for t in range(1, 5) if t != point.step]
        assert all(terms_ih[t - 1].abs().max() == 0 for t in others)
        assert terms_ih[point.step - 1].abs().max() > 0
    for point in saturation_points(layer, 0):
        ref = reference(layer, point)
        for key in ("weight_hh", "bias_ih", "weight_ih"):
            assert ref[key][: point.step].abs().max() == 0, (key, point.step)
            assert ref[key][point.step :].abs().max() > 0


def test_formulas_in_the_users_notation():
    names = Names(weight_hh="W_hh")
    assert terms(Knobs(), "weight_ih", 3, 1, names, ones=True) == (
        "(((a3 @ W_hh) * a2) @ W_hh) * a1 * x[0]",
        "(a3 @ W_hh) * a2 * x[1]",
        "a3 * x[2]",
    )
    elementwise = knobs_of((MISTAKES[0],))
    assert terms(elementwise, "weight_ih", 3, 1, names, ones=True)[0] == (
        "(a3 @ W_hh) * (a2 @ W_hh) * a1 * x[0]"
    )
    assert terms(Knobs(), "weight_hh", 2, 3, names) == (
        "torch.outer(((grad_h_n * a2) @ W_hh) * a1, h0)",
        "torch.outer(grad_h_n * a2, h1)",
    )
    source = textwrap.dedent(
        """
        # nn.RNN(input_size=1, hidden_size=2)
        def manual_gradients(inp, state, weight_ih, weight_hh, bias_ih, bias_hh, g):
            W_ih, W_hh = weight_ih, weight_hh
            d = g
            d = d * 2
        """
    )
    found = user_names(source)
    assert (found.x, found.h0, found.weight_hh, found.grad_h_n) == ("inp", "state", "W_hh", "g")
    assert size_hint(source) == (1, 2)


# --- the examples ---------------------------------------------------------------------------


def test_seed_question(capsys):
    status, out, err = run_check(capsys, str(EXAMPLES / "seed_question.py"))
    assert status == 1, err
    assert "WRONG  weight_ih at T = 3" in out
    assert "matches catalogued mistake 1:" in out
    assert "t=1  WRONG" in out and "t=2  right" in out and "t=3  right" in out
    assert "t=1  yours:   (a3 @ W_hh) * (a2 @ W_hh) * a1 * x[0]" in out
    assert "correct: (((a3 @ W_hh) * a2) @ W_hh) * a1 * x[0]" in out
    assert "where a_t = 1 - h_t**2" in out
    assert "yours       [2.0968, 0.0939]" in out
    assert "derivation  [2.0941, 0.1053]" in out
    assert "MISMATCH: 1 of 1 returned gradients wrong: weight_ih (mistake 1)" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "seed_question" not in sys.modules  # it ran in the child process only


EXPECTED = {
    # file: {key: (mistake number, wrong steps at the reported T, that T)}, None: matches
    "correct.py": {k: None for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0")},
    "mistake_2_transpose.py": {
        "weight_ih": (2, [1], 2),
        "weight_hh": (2, [1], 2),
        "bias_ih": (2, [1], 2),
        "bias_hh": (2, [1], 2),
        "h0": (2, [None], 1),
    },
    "mistake_3_tanh_derivative.py": {
        "weight_ih": (3, [1, 2, 3], 3),
        "weight_hh": (3, [1, 2, 3], 3),
        "bias_ih": (3, [1, 2, 3], 3),
        "bias_hh": (3, [1, 2, 3], 3),
    },
    "mistake_4_bias.py": {
        "weight_ih": (4, [1, 2, 3], 3),
        "weight_hh": (4, [1, 2, 3], 3),
        "bias_ih": (4, [1, 2, 3], 3),
        "bias_hh": (4, [1, 2, 3], 3),
        "h0": (4, [None], 3),
    },
    "mistake_6_direct_term.py": {
        "weight_ih": (6, [1, 2], 3),
        "weight_hh": (6, [1, 2], 3),
        "bias_ih": (6, [1, 2], 3),
        "bias_hh": (6, [1, 2], 3),
    },
    "mistake_7_off_by_one.py": {"weight_ih": None, "weight_hh": (7, [1, 2, 3], 3)},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_examples_diagnosed(capsys, name):
    status, report = run_json(capsys, str(EXAMPLES / name))
    expected = EXPECTED[name]
    assert status == (0 if all(v is None for v in expected.values()) else 1)
    assert report["status"] == ("match" if status == 0 else "mismatch")
    assert {g["key"]: g for g in report["gradients"]}.keys() == expected.keys()
    for gradient in report["gradients"]:
        want = expected[gradient["key"]]
        assert gradient["ok"] == (want is None), gradient["key"]
        if want is None:
            assert gradient["max_rel_error"] < 1e-12
            continue
        number, wrong, steps = want
        assert [m["numbers"] for m in gradient["mistakes"]] == [[number]], gradient["key"]
        assert gradient["steps"] == steps
        assert [t["step"] for t in gradient["terms"] if t["status"] == "wrong"] == wrong
        assert all(t["status"] == "right" for t in gradient["terms"] if t["step"] not in wrong)
        assert all(t["correct"] for t in gradient["terms"] if t["status"] == "wrong")


def test_first_wrong_length_of_a_file_that_accepts_any_length(capsys):
    _, report = run_json(capsys, str(EXAMPLES / "mistake_2_transpose.py"))
    assert report["lengths"] == list(range(1, 9))
    weight_ih = report["gradients"][0]
    assert weight_ih["lengths_ok"] == [1] and weight_ih["steps"] == 2
    assert weight_ih["terms"][0]["yours"] == "(a2 @ W_hh.T) * a1 * x[0]"
    assert weight_ih["terms"][0]["correct"] == "(a2 @ W_hh) * a1 * x[0]"


# --- files that cannot be run ---------------------------------------------------------------


def write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_a_file_that_raises_shows_its_own_traceback(capsys, tmp_path):
    path = write(
        tmp_path,
        "raises.py",
        """\
        def helper(x):
            return x[0] / undefined_name


        def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
            return {"weight_ih": helper(x)}
        """,
    )
    status, out, err = run_check(capsys, path)
    assert status == 2 and out == ""
    assert f'File "{path}", line 6, in manual_gradients' in err
    assert f'File "{path}", line 2, in helper' in err
    assert "NameError: name 'undefined_name' is not defined" in err
    assert "check_runner" not in err and "symbptt" not in err.replace("symbptt check:", "")


def test_a_file_that_loops_forever_is_stopped(capsys, tmp_path):
    path = write(
        tmp_path,
        "loops.py",
        """\
        def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
            while True: pass  # one line: the stack may be taken at any instruction of the loop
        """,
    )
    status, out, err = run_check(capsys, path, "--timeout", "1")
    assert status == 2 and out == ""
    assert "did not return within 1 s" in err
    assert f'File "{path}", line 2, in manual_gradients' in err


def test_a_file_without_the_function(capsys, tmp_path):
    path = write(tmp_path, "nothing.py", "def gradients(x):\n    return {}\n")
    status, report = run_json(capsys, path)
    assert status == 2
    assert report["status"] == "error"
    assert "defines no function manual_gradients" in report["error"]


def test_a_file_that_fails_to_import(capsys, tmp_path):
    path = write(tmp_path, "broken.py", "def manual_gradients(x)\n    return {}\n")
    status, _, err = run_check(capsys, path)
    assert status == 2
    assert "cannot be imported" in err and "SyntaxError" in err


def test_bad_options(capsys):
    status, _, err = run_check(capsys, str(EXAMPLES / "correct.py"), "--cell", "lstm")
    assert status == 2 and "torch.nn.RNN" in err
    status, _, err = run_check(capsys, "no/such/file.py")
    assert status == 2 and "no such file" in err
