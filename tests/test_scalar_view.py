"""The element-level scalar view with CSE (:mod:`symbptt.scalar.view`), both backends.

The view's outputs are evaluated numerically (float64) and compared with independent
references: torch's own modules with autograd (same weights, inputs and random cotangents,
float64) for RNN, LSTM and GRU at T = 1 and T = 3 with I ≠ H, and SymPy's brute-force ``diff`` of
the unrolled loss (:func:`symbptt.scalar.explicit.brute_force_gradients`) for tiny sizes. The
printed
view of one small case is diffed against golden files, one per backend:

    tests/golden/scalar_view/<backend>/rnn_tanh_t2_i1_h2.txt

After an intended change, regenerate them with

    SYMBPTT_UPDATE_GOLDEN=1 pytest tests/test_scalar_view.py -k golden

SymEngine tests are skipped, with the reason, only where symengine is not importable
(``pip install symbptt[symengine]``).
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import sympy as sp
from conftest import autograd_case

import symbptt
from symbptt.errors import SymbpttError
from symbptt.scalar import explicit as scalar
from symbptt.scalar.view import (
    BackendUnavailableError,
    ScalarView,
    ScalarViewError,
    scalar_view,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "scalar_view"
UPDATE = os.environ.get("SYMBPTT_UPDATE_GOLDEN") == "1"

try:
    import symengine  # noqa: F401

    HAVE_SYMENGINE = True
except ImportError:
    HAVE_SYMENGINE = False
BACKENDS = [
    "sympy",
    pytest.param(
        "symengine",
        marks=pytest.mark.skipif(
            not HAVE_SYMENGINE,
            reason="symengine is not installed (pip install symbptt[symengine])",
        ),
    ),
]

TORCH_CASES = {
    "rnn-T1_I3_H2": dict(cell="rnn", steps=1, input_size=3, hidden_size=2),
    "rnn-T3_I3_H2": dict(cell="rnn", steps=3, input_size=3, hidden_size=2),
    "rnn-T3_I2_H3-relu-nobias": dict(
        cell="rnn", steps=3, input_size=2, hidden_size=3, nonlinearity="relu", bias=False
    ),
    "lstm-T1_I3_H2": dict(cell="lstm", steps=1, input_size=3, hidden_size=2),
    "lstm-T3_I3_H2": dict(cell="lstm", steps=3, input_size=3, hidden_size=2),
    "lstm-T3_I2_H3_P2": dict(cell="lstm", steps=3, input_size=2, hidden_size=3, proj_size=2),
    "gru-T1_I3_H2": dict(cell="gru", steps=1, input_size=3, hidden_size=2),
    "gru-T3_I3_H2": dict(cell="gru", steps=3, input_size=3, hidden_size=2),
    "gru-T3_I2_H3-nobias": dict(cell="gru", steps=3, input_size=2, hidden_size=3, bias=False),
    "lstm_cell-I3_H2": dict(cell="lstm_cell", input_size=3, hidden_size=2),
}
"""``symbptt.derive`` keyword arguments, by test id, checked against torch autograd."""

BRUTE_CASES = {
    "rnn-T2_I1_H2": dict(cell="rnn", steps=2, input_size=1, hidden_size=2),
    "lstm-T2_I1_H1": dict(cell="lstm", steps=2, input_size=1, hidden_size=1),
    "gru-T2_I2_H1": dict(cell="gru", steps=2, input_size=2, hidden_size=1),
}
"""Tiny sizes for the brute-force ground truth."""


@cache
def _derivation(**kwargs) -> symbptt.Derivation:
    return symbptt.derive(**kwargs)


@cache
def _view(backend: str, **kwargs) -> ScalarView:
    return scalar_view(_derivation(**kwargs), backend)


def _flat(rows: list[list[float]]) -> list[float]:
    return [value for row in rows for value in row]


# --- against torch autograd ------------------------------------------------------------------


def _torch_case(derivation: symbptt.Derivation, seed: int):
    """The leaf point (scalar name -> number) and each gradient label's expected values
    (row-major, as :meth:`ScalarView.evaluate` lays them out), from torch autograd."""
    leaves, expected = autograd_case(derivation, seed)
    symbols = scalar.scalar_symbols(derivation)
    assert leaves.keys() == symbols.keys()
    point = {}
    for symbol, tensor in leaves.items():
        values = tensor.reshape(-1).tolist()
        point |= dict(zip((s.name for s in symbols[symbol]), values, strict=True))
    return point, expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(TORCH_CASES), ids=list(TORCH_CASES))
def test_view_equals_torch_autograd(case, backend):
    """Every gradient entry of the view, run in float64, equals torch's autograd."""
    derivation = _derivation(**TORCH_CASES[case])
    view = _view(backend, **TORCH_CASES[case])
    for seed in (0, 1):
        point, expected = _torch_case(derivation, seed)
        actual = view.evaluate(point)
        assert actual.keys() == expected.keys()
        for label, want in expected.items():
            got = _flat(actual[label])
            assert got == pytest.approx(want, rel=1e-10, abs=1e-12), f"{case} {label}"


# --- against the brute force -----------------------------------------------------------------


@cache
def _brute(case: str) -> dict:
    return scalar.brute_force_gradients(_derivation(**BRUTE_CASES[case]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(BRUTE_CASES), ids=list(BRUTE_CASES))
def test_view_equals_brute_force(case, backend):
    """SymPy's ``diff`` of the unrolled loss, at random points, to float64 precision."""
    derivation = _derivation(**BRUTE_CASES[case])
    view = _view(backend, **BRUTE_CASES[case])
    for seed in (0, 1, 2):
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(_brute(case), point, digits=30)
        actual = view.evaluate(point)
        assert actual.keys() == truth.keys()
        for label, matrix in truth.items():
            want = [float(v) for v in matrix]
            assert _flat(actual[label]) == pytest.approx(want, rel=1e-12, abs=1e-14), label


PACKED_CASES = {
    "rnn-T3_I1_H2-packed": dict(cell="rnn", steps=3, input_size=1, hidden_size=2, packed=True),
    "lstm-T2_I1_H1-packed": dict(cell="lstm", steps=2, input_size=1, hidden_size=1, packed=True),
}
"""Variable lengths: the masks are leaves without a gradient."""


@cache
def _brute_packed(case: str) -> dict:
    return scalar.brute_force_gradients(_derivation(**PACKED_CASES[case]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(PACKED_CASES), ids=list(PACKED_CASES))
def test_packed_view_equals_brute_force(case, backend):
    """Masked states ``m_t ⊙ ŝ_t + (1 − m_t) ⊙ s_{t-1}``, at random points (any mask values)."""
    derivation = _derivation(**PACKED_CASES[case])
    point = scalar.random_point(derivation, 0)
    truth = scalar.evaluate(_brute_packed(case), point, digits=30)
    actual = _view(backend, **PACKED_CASES[case]).evaluate(point)
    for label, matrix in truth.items():
        want = [float(v) for v in matrix]
        assert _flat(actual[label]) == pytest.approx(want, rel=1e-12, abs=1e-14), label


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_view_equals_the_program(backend):
    """Truncated BPTT (nothing flows back across every second step), against the derivation's
    own program run with 30-digit numbers (:func:`symbptt.scalar.explicit.program_gradients`); the
    full
    gradient differs."""
    kwargs = dict(cell="rnn", steps=4, input_size=2, hidden_size=2)
    derivation = _derivation(**kwargs, truncate=2)
    point = scalar.random_point(derivation, 0)
    numbers = {
        symbol: matrix.applyfunc(lambda s: sp.Float(point[s], 30))
        for symbol, matrix in scalar.scalar_symbols(derivation).items()
    }
    expected = scalar.program_gradients(derivation, numbers)
    actual = _view(backend, **kwargs, truncate=2).evaluate(point)
    for label, matrix in expected.items():
        want = [float(v) for v in matrix]
        assert _flat(actual[label]) == pytest.approx(want, rel=1e-12, abs=1e-14), label
    full = _view(backend, **kwargs).evaluate(point)
    assert _flat(full["G1"]) != pytest.approx(_flat(actual["G1"]), rel=1e-6)


# --- the printed view --------------------------------------------------------------------------


GOLDEN_CASE = dict(cell="rnn", steps=2, input_size=1, hidden_size=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_matches_golden_file(backend):
    """The printed view of ``nn.RNN(1, 2)`` over 2 steps, per backend (see the module docstring
    for the command that regenerates it)."""
    text = scalar_view(_derivation(**GOLDEN_CASE), backend).text()
    path = GOLDEN / backend / "rnn_tanh_t2_i1_h2.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(True), text.splitlines(True), str(path), "scalar_view().text()"
        )
    )
    assert text == expected, (
        f"{diff}\nregenerate: SYMBPTT_UPDATE_GOLDEN=1 pytest tests/test_scalar_view.py -k golden"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_names_every_gradient_entry(backend):
    """One output line per gradient entry, named by block, step and entry; the temporaries
    are numbered in order and each is defined before it is read."""
    kwargs = dict(cell="lstm", steps=2, input_size=3, hidden_size=2)
    view = _view(backend, **kwargs)
    text = view.text()
    lines = text.splitlines()
    assert len(lines) == view.size
    names = [line.split(" = ")[0] for line in lines]
    temporaries = [f"t{k}" for k in range(len(view.temporaries))]
    assert names[: len(temporaries)] == temporaries
    outputs = names[len(temporaries) :]
    assert outputs[0] == "dL/dW_ii[0,0]"
    assert "dL/dW_ii[1,2]" in outputs and "dL/db_ho[1]" in outputs
    assert outputs[-5:] == ["dL/dx_2[2]", "dL/dh_0[0]", "dL/dh_0[1]", "dL/dc_0[0]", "dL/dc_0[1]"]
    assert len(outputs) == len(set(outputs)) == 4 * (2 * 3 + 2 * 2 + 2 + 2) + 2 * 3 + 2 + 2
    defined = set()
    for temporary in view.temporaries:
        reads = {str(s) for s in temporary.expr.free_symbols if str(s) in temporaries}
        assert reads <= defined, temporary.name
        defined.add(temporary.name)
    assert "  # h_2[1]" in text and "  # delta_o_1[0]" in text
    assert "#" not in view.text(notes=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_is_deterministic(backend):
    kwargs = dict(cell="gru", steps=3, input_size=2, hidden_size=2)
    first = scalar_view(_derivation(**kwargs), backend).text()
    assert scalar_view(symbptt.derive(**kwargs), backend).text() == first


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_does_not_depend_on_the_hash_seed(backend):
    """Golden files must not drift with Python's string hashing (PYTHONHASHSEED)."""
    kwargs = dict(cell="lstm", steps=2, input_size=2, hidden_size=2)
    code = (
        "import symbptt, sys\n"
        "from symbptt.scalar.view import scalar_view\n"
        f"d = symbptt.derive(**{kwargs!r})\n"
        f"sys.stdout.write(scalar_view(d, {backend!r}).text())\n"
    )
    texts = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=os.environ | {"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert texts == {_view(backend, **kwargs).text()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_size_is_linear_in_steps(backend):
    """Each step adds the same number of temporaries; the outputs grow by one term per step."""
    sizes = {
        steps: len(
            scalar_view(_derivation(steps=steps, input_size=2, hidden_size=3), backend).temporaries
        )
        for steps in (4, 8, 16)
    }
    assert sizes[16] - sizes[8] == 2 * (sizes[8] - sizes[4])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cse_shares_what_the_steps_share(backend):
    """``∂L/∂b_ih = ∂L/∂b_hh`` is one temporary, and without CSE the view is still right."""
    derivation = _derivation(cell="rnn", steps=3, input_size=2, hidden_size=2)
    with_cse = scalar_view(derivation, backend)
    by_name = {output.name: output.expr for output in with_cse.outputs}
    assert by_name["dL/db_ih[1]"] == by_name["dL/db_hh[1]"]
    assert by_name["dL/db_ih[1]"].is_Atom
    plain = scalar_view(derivation, backend, cse=False)
    point = scalar.random_point(derivation, 3)
    expected = with_cse.evaluate(point)
    for label, rows in plain.evaluate(point).items():
        assert _flat(rows) == pytest.approx(_flat(expected[label]), rel=1e-12, abs=1e-14)


# --- errors ------------------------------------------------------------------------------------


def test_unknown_backend_is_a_typed_error():
    with pytest.raises(ScalarViewError, match="sympy, symengine"):
        scalar_view(_derivation(**GOLDEN_CASE), "mathematica")


def test_missing_symengine_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "symengine", None)  # makes ``import symengine`` fail
    with pytest.raises(BackendUnavailableError, match=r"pip install symbptt\[symengine\]"):
        scalar_view(_derivation(**GOLDEN_CASE), "symengine")
    assert issubclass(BackendUnavailableError, SymbpttError)


def test_several_layers_are_refused():
    derivation = symbptt.derive(steps=2, input_size=1, hidden_size=2, num_layers=2)
    with pytest.raises(ScalarViewError, match="one layer"):
        scalar_view(derivation)


def test_missing_leaf_is_reported():
    view = _view("sympy", **GOLDEN_CASE)
    with pytest.raises(ValueError, match="no value for"):
        view.evaluate({})


# --- command line ------------------------------------------------------------------------------


def test_cli_prints_the_view(capsys):
    from symbptt import cli

    assert cli.main(["scalar-view", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.startswith("# torch.nn.RNN(input_size=1, hidden_size=2), 2 steps: scalar view")
    assert (
        "\n".join(lines).strip()
        == _view("sympy", steps=2, input_size=1, hidden_size=2).text().strip()
    )


def test_cli_without_symengine_is_one_line_and_status_2(monkeypatch, capsys):
    import builtins

    from symbptt import cli

    real_import = builtins.__import__

    def no_symengine(name, *args, **kwargs):
        if name == "symengine":
            raise ImportError("no symengine here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_symengine)
    assert cli.main(["scalar-view", "--steps", "2", "--backend", "symengine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "symbptt[symengine]" in err
