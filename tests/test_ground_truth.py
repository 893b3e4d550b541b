"""The derivation against an independent ground truth: SymPy's scalar ``diff`` of the unrolled loss.

The derivation's backward program comes from matrix-level reverse-mode rules. The reference here
shares nothing with them: the forward program is written out entry by entry, the scalar loss
``L = Σ_t g_t·h_t + Σ_states final·state_T`` (``g_n·h_T``, and ``gc_n·c_T`` for an LSTM) is
formed, and ``sympy.diff`` differentiates it one scalar at a time
(:func:`symbptt.scalar.explicit.brute_force_gradients`), for every cell: RNN, LSTM (with and
without a
projection), GRU and the single-step cells. The forward equations the brute force trusts are
checked against torch's own autograd; the unrolled chains and the founding case (torch's own
numbers, and the founding user's wrong formula) are checked against it too.
"""

from __future__ import annotations

import copy
import dataclasses
from functools import cache

import pytest
import sympy as sp
import torch
from conftest import autograd_case, block_tensors
from sympy import HadamardProduct, MatAdd, MatrixSymbol

import symbptt
from symbptt.core.matexpr import FUNCTIONS, Elementwise
from symbptt.core.program import Assignment, at_step, split_name, var
from symbptt.core.unrolled import unroll
from symbptt.scalar import explicit as scalar

SIZES = [(1, 1, 1), (2, 1, 2), (3, 1, 2), (2, 3, 2), (3, 2, 3)]
"""(T, I, H)."""
SEEDS = (0, 1, 2)
TOLERANCE = sp.Float("1e-40")

GATED = {
    # LSTM: T ∈ {1, 2}, I, H ∈ {1, 2}, bias on and off, and a projection (P = 1 < H = 2)
    "lstm-T1_I2_H2": dict(cell="lstm", steps=1, input_size=2, hidden_size=2),
    "lstm-T1_I1_H1-nobias": dict(cell="lstm", steps=1, input_size=1, hidden_size=1, bias=False),
    "lstm-T2_I1_H2": dict(cell="lstm", steps=2, input_size=1, hidden_size=2),
    "lstm-T2_I2_H1-nobias": dict(cell="lstm", steps=2, input_size=2, hidden_size=1, bias=False),
    "lstm-T2_I1_H2_P1": dict(cell="lstm", steps=2, input_size=1, hidden_size=2, proj_size=1),
    # GRU: T ∈ {1, 2}, bias on and off
    "gru-T1_I2_H2": dict(cell="gru", steps=1, input_size=2, hidden_size=2),
    "gru-T1_I1_H2-nobias": dict(cell="gru", steps=1, input_size=1, hidden_size=2, bias=False),
    "gru-T2_I1_H2": dict(cell="gru", steps=2, input_size=1, hidden_size=2),
    "gru-T2_I2_H1-nobias": dict(cell="gru", steps=2, input_size=2, hidden_size=1, bias=False),
    # the single-step cells
    "rnn_cell-I2_H2": dict(cell="rnn_cell", input_size=2, hidden_size=2),
    "rnn_cell-I1_H2-relu-nobias": dict(
        cell="rnn_cell", input_size=1, hidden_size=2, nonlinearity="relu", bias=False
    ),
    "lstm_cell-I2_H2": dict(cell="lstm_cell", input_size=2, hidden_size=2),
    "gru_cell-I2_H2": dict(cell="gru_cell", input_size=2, hidden_size=2),
}
"""Specs (``symbptt.derive`` keyword arguments) beyond ``torch.nn.RNN``, by test id."""


@cache
def _derivation(*args):
    """``symbptt.derive(steps, inputs, hidden, nonlinearity, bias, cell, proj_size, packed)``,
    trailing arguments optional."""
    names = ("steps", "input_size", "hidden_size", "nonlinearity", "bias", "cell", "proj_size")
    return symbptt.derive(**dict(zip((*names, "packed"), args, strict=False)))


@cache
def _brute(*args):
    return scalar.brute_force_gradients(_derivation(*args))


def _args(spec: dict) -> tuple:
    """``symbptt.derive`` keywords as the positional key of :func:`_derivation`."""
    return (
        spec.get("steps", 1),
        spec["input_size"],
        spec["hidden_size"],
        spec.get("nonlinearity", "tanh"),
        spec.get("bias", True),
        spec["cell"],
        spec.get("proj_size", 0),
        spec.get("packed", False),
    )


def _relative_error(actual: sp.Matrix, expected: sp.Matrix) -> sp.Float:
    """max |actual − expected| / max |expected|; absolute when ``expected`` is exactly zero."""
    assert actual.shape == expected.shape
    difference = max((abs(a - e) for a, e in zip(actual, expected, strict=True)), default=0)
    scale = max((abs(e) for e in expected), default=0)
    return sp.Float(difference / scale if scale else difference)


def _assert_match(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for label in expected:
        error = _relative_error(actual[label], expected[label])
        assert error < TOLERANCE, f"{label}: relative error {error}"


def _is_nonzero(matrices: dict) -> bool:
    return any(entry != 0 for matrix in matrices.values() for entry in matrix)


def _nonzero_labels(matrices: dict) -> set[str]:
    return {label for label, matrix in matrices.items() if any(entry != 0 for entry in matrix)}


# --- the program against the brute force, at random points --------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "T{}_I{}_H{}".format(*s))
def test_program_equals_brute_force_at_random_points(sizes, nonlinearity, bias):
    """50 digits, relative error < 1e-40. relu' at exactly 0 never occurs at these points."""
    derivation = _derivation(*sizes, nonlinearity, bias)
    expected = _brute(*sizes, nonlinearity, bias)
    program = scalar.program_gradients(derivation)
    some_nonzero = False
    for seed in SEEDS:
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(expected, point, digits=50)
        _assert_match(scalar.evaluate(program, point, digits=50), truth)
        some_nonzero |= _is_nonzero(truth)
    assert some_nonzero, "every gradient vanished at every point: the check proved nothing"


@pytest.mark.parametrize("spec", list(GATED.values()), ids=list(GATED))
def test_gated_and_cell_program_equals_brute_force_at_random_points(spec):
    """LSTM, GRU and the cells: 50 digits, relative error < 1e-40, every gradient nonzero.

    One gradient per parameter block (``W_ii`` … of the stacked ``weight_ih_l0``), the input,
    and each initial state (``h_0``, and ``c_0`` for an LSTM).
    """
    derivation = _derivation(*_args(spec))
    expected = _brute(*_args(spec))
    program = scalar.program_gradients(derivation)
    blocks = [block for p in derivation.parameters for block in p.blocks]
    assert len(expected) == len(blocks) + 1 + len(derivation.step.states)
    nonzero = set()
    for seed in SEEDS[:2]:
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(expected, point, digits=50)
        _assert_match(scalar.evaluate(program, point, digits=50), truth)
        nonzero |= _nonzero_labels(truth)
    if spec.get("nonlinearity") != "relu":
        assert nonzero == set(expected), f"vanished everywhere: {set(expected) - nonzero}"
    else:
        assert nonzero


PACKED = {
    "rnn-T3_I1_H2-packed": dict(cell="rnn", steps=3, input_size=1, hidden_size=2, packed=True),
    "lstm-T2_I1_H1-packed": dict(cell="lstm", steps=2, input_size=1, hidden_size=1, packed=True),
}


@pytest.mark.parametrize("spec", list(PACKED.values()), ids=list(PACKED))
def test_packed_program_equals_brute_force(spec):
    """Variable lengths: each state is ``m_t ⊙ ŝ_t + (1 − m_t) ⊙ s_{t-1}`` with constant masks
    (``m``, and ``mc`` for an LSTM's c), leaves of the scalar view without a gradient. At random
    points (any mask values) and with the masks of a sequence that ends one step early."""
    derivation = _derivation(*_args(spec))
    expected = _brute(*_args(spec))
    program = scalar.program_gradients(derivation)
    symbols = scalar.scalar_symbols(derivation)
    last = derivation.spec.steps
    steps = range(1, last + 1)
    masks = {at_step(m, k): int(k < last) for m in derivation.step.constants for k in steps}
    assert {g.of for g in derivation.gradients}.isdisjoint(masks)
    for seed in SEEDS[:2]:
        point = scalar.random_point(derivation, seed)
        ended = point | {s: value for mask, value in masks.items() for s in symbols[mask]}
        for values in (point, ended):
            truth = scalar.evaluate(expected, values, digits=50)
            _assert_match(scalar.evaluate(program, values, digits=50), truth)
            assert _is_nonzero(truth)
    # a state that stays put: with m_T = 0, h_T = h_{T-1}, so ∂L/∂x_T is 0
    input_label = next(g.label for g in derivation.gradients if g.torch_name == "input")
    assert all(v == 0 for v in scalar.evaluate(expected, ended)[input_label].row(last - 1))


def test_gradient_shapes_follow_the_parameters():
    """Shapes from the spec, not from the code under test: torch's layout, columns for vectors."""
    steps, inputs, hidden = 3, 2, 3
    expected = {
        "G1": (hidden, inputs),  # W_ih
        "G2": (hidden, hidden),  # W_hh
        "G3": (hidden, 1),  # b_ih
        "G4": (hidden, 1),  # b_hh
        "G5": (steps, inputs),  # x_t, one row per step as torch's input.grad
        "G6": (hidden, 1),  # h_0
    }
    program = scalar.program_gradients(_derivation(steps, inputs, hidden, "tanh", True))
    brute = _brute(steps, inputs, hidden, "tanh", True)
    assert {k: m.shape for k, m in program.items()} == expected
    assert {k: m.shape for k, m in brute.items()} == expected


def test_lstm_gradient_shapes_follow_the_blocks():
    """LSTM with a projection (T = 2, I = 1, H = 2, P = 1): one gradient per gate block, in
    torch's stacking order i, f, g, o, then W_hr, the input, h_0 (size P) and c_0 (size H)."""
    spec = GATED["lstm-T2_I1_H2_P1"]
    steps, inputs, hidden, proj = 2, 1, 2, 1
    derivation = _derivation(*_args(spec))
    names = [str(g.of) for g in derivation.gradients]
    gates = "ifgo"
    assert names == [
        *(f"W_i{k}" for k in gates),
        *(f"W_h{k}" for k in gates),
        *(f"b_i{k}" for k in gates),
        *(f"b_h{k}" for k in gates),
        "W_hr",
        "x[t]",
        "h[0]",
        "c[0]",
    ]
    shapes = [(hidden, inputs)] * 4 + [(hidden, proj)] * 4 + [(hidden, 1)] * 8
    shapes += [(proj, hidden), (steps, inputs), (proj, 1), (hidden, 1)]
    expected = {f"G{k}": shape for k, shape in enumerate(shapes, start=1)}
    assert {k: m.shape for k, m in scalar.program_gradients(derivation).items()} == expected
    assert {k: m.shape for k, m in _brute(*_args(spec)).items()} == expected


def test_scalar_symbols_are_named_by_entry():
    symbols = scalar.scalar_symbols(_derivation(2, 3, 2, "tanh", True))
    names = {str(s) for matrix in symbols.values() for s in matrix}
    assert {"W_ih_0_1", "W_ih_1_2", "W_hh_1_0", "b_ih_1", "b_hh_0", "x_2_0", "x_1_2"} <= names
    assert {"h_0_1", "g_1_0", "g_2_1", "g_n_0", "g_n_1"} <= names
    # 6 + 4 + 2 + 2 (parameters) + 2·3 (x) + 2 (h_0) + 2·2 (g_t) + 2 (g_n)
    assert len(names) == 28


def test_lstm_scalar_symbols_cover_every_block_and_state():
    """LSTM, T = 2, I = 1, H = 2, P = 1: gate blocks, W_hr, both initial and final states."""
    symbols = scalar.scalar_symbols(_derivation(*_args(GATED["lstm-T2_I1_H2_P1"])))
    names = {str(s) for matrix in symbols.values() for s in matrix}
    assert {"W_ii_1_0", "W_io_0_0", "W_hg_1_0", "b_if_1", "b_ho_0", "W_hr_0_1"} <= names
    assert {"x_1_0", "x_2_0", "h_0_0", "c_0_1", "g_1_0", "g_2_0", "g_n_0", "gc_n_1"} <= names
    # 4·2 + 4·2 + 8·2 + 2 (parameters) + 2 (x) + 1 + 2 (h_0, c_0) + 2 (g_t) + 1 + 2 (g_n, gc_n)
    assert len(names) == 44 == sum(len(matrix) for matrix in symbols.values())


def test_scalar_sigmoid_is_the_logistic_function():
    """The scalar view writes σ(y) as (1 + tanh(y/2))/2: the same function as 1/(1 + e^{−y})."""
    y = sp.Symbol("y", real=True)
    ours, logistic = scalar.SCALAR_FUNCTIONS["sigmoid"](y), FUNCTIONS["sigmoid"].scalar(y)
    assert sp.simplify((ours - logistic).rewrite(sp.exp)) == 0
    for value in ("-3.7", "0", "0.25", "11"):
        assert abs((ours - logistic).subs(y, sp.Float(value, 60)).evalf(60)) < 1e-55


def test_loss_is_the_unrolled_forward_pass():
    """T = 1, I = H = 1 by hand: L = (g_1 + g_n) tanh(w x + b + u h_0 + c)."""
    derivation = _derivation(1, 1, 1, "tanh", True)
    symbols = scalar.scalar_symbols(derivation)
    w, u, b, c, x, h0, g1, gn = sp.symbols(
        "W_ih_0_0 W_hh_0_0 b_ih_0 b_hh_0 x_1_0 h_0_0 g_1_0 g_n_0", real=True
    )
    loss = scalar.unrolled_loss(derivation, symbols)
    assert sp.expand(loss - (g1 + gn) * sp.tanh(w * x + b + u * h0 + c)) == 0


def _logistic(y):
    return 1 / (1 + sp.exp(-y))


def _assert_equal_at_random_points(derivation, got, want):
    for seed in SEEDS:
        point = {s: sp.Float(v, 60) for s, v in scalar.random_point(derivation, seed).items()}
        difference = (got - want).xreplace(point).evalf(60)
        assert abs(difference) < 1e-50 * (1 + abs(want.xreplace(point).evalf(60)))


def test_lstm_loss_is_the_unrolled_forward_pass():
    """T = 1, I = H = 1, no bias, by hand (torch's equations, σ = 1/(1 + e^{−y})):
    ``L = (g_1 + g_n) σ(a_o) tanh(c_1) + gc_n c_1``, ``c_1 = σ(a_f) c_0 + σ(a_i) tanh(a_g)``."""
    derivation = _derivation(1, 1, 1, "tanh", False, "lstm")
    symbols = scalar.scalar_symbols(derivation)
    x, h0, c0, g1, gn, gcn = sp.symbols("x_1_0 h_0_0 c_0_0 g_1_0 g_n_0 gc_n_0", real=True)

    def pre(gate):
        w, u = sp.symbols(f"W_i{gate}_0_0 W_h{gate}_0_0", real=True)
        return w * x + u * h0

    c1 = _logistic(pre("f")) * c0 + _logistic(pre("i")) * sp.tanh(pre("g"))
    expected = (g1 + gn) * _logistic(pre("o")) * sp.tanh(c1) + gcn * c1
    _assert_equal_at_random_points(derivation, scalar.unrolled_loss(derivation, symbols), expected)


def test_gru_loss_is_the_unrolled_forward_pass():
    """T = 1, I = H = 1 by hand, torch's GRU with ``b_hn`` inside the reset gate:
    ``n = tanh(W_in x + b_in + r (W_hn h_0 + b_hn))``, ``L = (g_1 + g_n)((1 − z) n + z h_0)``."""
    derivation = _derivation(1, 1, 1, "tanh", True, "gru")
    symbols = scalar.scalar_symbols(derivation)
    x, h0, g1, gn = sp.symbols("x_1_0 h_0_0 g_1_0 g_n_0", real=True)
    p = {
        name: sp.Symbol(f"{name}_0_0" if name.startswith("W") else f"{name}_0", real=True)
        for name in ("W_ir W_iz W_in W_hr W_hz W_hn b_ir b_iz b_in b_hr b_hz b_hn".split())
    }
    r = _logistic(p["W_ir"] * x + p["b_ir"] + p["W_hr"] * h0 + p["b_hr"])
    z = _logistic(p["W_iz"] * x + p["b_iz"] + p["W_hz"] * h0 + p["b_hz"])
    n = sp.tanh(p["W_in"] * x + p["b_in"] + r * (p["W_hn"] * h0 + p["b_hn"]))
    expected = (g1 + gn) * ((1 - z) * n + z * h0)
    _assert_equal_at_random_points(derivation, scalar.unrolled_loss(derivation, symbols), expected)


# --- the forward equations against torch --------------------------------------------------


def _point_from_tensors(derivation, tensors):
    """The scalar symbols at the values of ``tensors`` (a stacked parameter split by blocks)."""
    symbols = scalar.scalar_symbols(derivation)
    point = {}
    for symbol, tensor in tensors.items():
        values = tensor.detach().double().reshape(-1).tolist()
        point |= dict(zip(list(symbols[symbol]), values, strict=True))
    return point


@pytest.mark.parametrize(
    "name", ["lstm-T2_I1_H2_P1", "gru-T2_I1_H2", "gru-T2_I2_H1-nobias", "lstm_cell-I2_H2"]
)
def test_ground_truth_equals_torch_autograd(name):
    """The one thing the brute force shares with the derivation is the forward program; this
    checks it against torch's own modules: the brute-force gradients at torch's weights and a
    random upstream cotangent equal torch's autograd (float64), block by block."""
    derivation = _derivation(*_args(GATED[name]))
    leaves, expected = autograd_case(derivation, seed=0)
    truth = scalar.evaluate(_brute(*_args(GATED[name])), _point_from_tensors(derivation, leaves))
    for gradient in derivation.gradients:
        got = [float(v) for v in truth[gradient.label]]
        want = expected[gradient.label]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), gradient.label


# --- the comparison catches wrong derivations ---------------------------------------------


def _mutated(derivation, mutate):
    """A copy of ``derivation`` whose backward program is passed through ``mutate``.

    ``mutate(target, value)`` returns the (possibly wrong) value assigned to ``target``.
    """
    wrong = copy.copy(derivation)
    wrong.__dict__["backward"] = tuple(
        tuple(Assignment(a.target, mutate(a.target, a.value), a.label) for a in step)
        for step in derivation.backward
    )
    return wrong


def _mutated_gradient(derivation, of, mutate):
    """A copy of ``derivation`` whose gradient with respect to ``of`` has its terms mutated."""
    wrong = copy.copy(derivation)
    wrong.__dict__["gradients"] = tuple(
        dataclasses.replace(g, terms=tuple(mutate(term) for term in g.terms)) if g.of == of else g
        for g in derivation.gradients
    )
    return wrong


def _without_carry(target, value):
    """LSTM: ``c̄_t`` without its ``f_{t+1} ⊙ c̄_{t+1}`` term (the cell-state carry)."""
    base, step = split_name(target)
    n = target.shape[0]
    carry = {var("cbar", step + 1, n), var("f", step + 1, n)}
    if base != "cbar" or not value.has(*carry):
        return value  # not c̄_t, or c̄_T (g^c_n in place of the carry)
    kept = [a for a in value.args if not (isinstance(a, HadamardProduct) and set(a.args) == carry)]
    assert len(kept) == len(value.args) - 1, f"no carry term in {value}"
    return kept[0] if len(kept) == 1 else MatAdd(*kept)


def _dtanh_of_c(target, value):
    """LSTM: ``1 − c_t ⊙ c_t`` where the output needs ``1 − tanh(c_t) ⊙ tanh(c_t)``."""
    return value.replace(
        lambda e: (
            isinstance(e, Elementwise) and e.name == "dtanh" and isinstance(e.arg, Elementwise)
        ),
        lambda e: Elementwise("dtanh", e.arg.arg),
    )


def _z_for_one_minus_z(target, value):
    """GRU: ``z_t`` where ``1 − z_t`` belongs in ``δ^n_t``."""
    base, step = split_name(target)
    if base != "delta_n":
        return value
    z = var("z", step, target.shape[0])
    args = [z if isinstance(a, MatAdd) and a.has(sp.OneMatrix) else a for a in value.args]
    assert args != list(value.args), f"no 1 − z in {value}"
    return HadamardProduct(*args)


def _wrong_derivation(mistake):
    """The spec (a key of :data:`GATED`) a mistake is injected into, and the mutated copy."""
    name = "lstm-T2_I1_H2" if mistake.startswith("lstm") else "gru-T2_I1_H2"
    derivation = _derivation(*_args(GATED[name]))
    if mistake.startswith("lstm"):
        return name, _mutated(derivation, _without_carry if "carry" in mistake else _dtanh_of_c)
    if "b_hn" in mistake:
        # b_hn added after the reset gate: ∂L/∂b_hn = δ^n_t instead of δ^{hn}_t = δ^n_t ⊙ r_t
        to_delta_n = {var("delta_hn", k, 2): var("delta_n", k, 2) for k in (1, 2)}
        b_hn = MatrixSymbol("b_hn", 2, 1)
        return name, _mutated_gradient(derivation, b_hn, lambda v: v.xreplace(to_delta_n))
    return name, _mutated(derivation, _z_for_one_minus_z)


MISTAKES = [
    "lstm: no f ⊙ c̄ carry",
    "lstm: tanh' of c_t",
    "gru: b_hn outside r",
    "gru: z for 1 − z",
]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_comparison_catches_a_wrong_gated_backward_program(mistake):
    """One wrong rule injected into an LSTM's or GRU's backward program or gradient terms
    (T = 2, I = 1, H = 2) is caught at random points; the unmutated program passes at the same
    points."""
    name, wrong = _wrong_derivation(mistake)
    derivation, brute = _derivation(*_args(GATED[name])), _brute(*_args(GATED[name]))
    assert (wrong.backward, wrong.gradients) != (derivation.backward, derivation.gradients)
    program, mutated = scalar.program_gradients(derivation), scalar.program_gradients(wrong)
    errors = []
    for seed in SEEDS[:2]:
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(brute, point)
        got = scalar.evaluate(mutated, point)
        errors.append(max(_relative_error(got[k], truth[k]) for k in truth))
        _assert_match(scalar.evaluate(program, point), truth)
    assert max(errors) > 1e-6


@pytest.mark.parametrize("mistake", ["W_hh not transposed", "tanh' of z_t"])
def test_comparison_catches_a_wrong_backward_program(mistake):
    """Mistakes 2 and 3 of TORCH_SEMANTICS.md injected into the backward program are caught."""
    sizes = (3, 1, 2)
    derivation = _derivation(*sizes, "tanh", True)
    w_hh = sp.MatrixSymbol("W_hh", 2, 2)
    if mistake == "W_hh not transposed":
        wrong = _mutated(derivation, lambda _, value: value.xreplace({w_hh.T: w_hh}))
    else:
        steps = range(1, sizes[0] + 1)
        to_z = {var("h", k, 2): var("z", k, 2) for k in steps}
        wrong = _mutated(derivation, lambda _, value: value.xreplace(to_z))
    errors = []
    for seed in SEEDS:
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(_brute(*sizes, "tanh", True), point)
        got = scalar.evaluate(scalar.program_gradients(wrong), point)
        errors.append(max(_relative_error(got[k], truth[k]) for k in truth))
        # the unmutated program still passes at the same point
        _assert_match(scalar.evaluate(scalar.program_gradients(derivation), point), truth)
    # far above the 1e-40 tolerance (small |z_t| keeps 1 − z² close to 1 − tanh²z)
    assert max(errors) > 1e-6


# --- symbolic proofs for a few sizes ------------------------------------------------------


def _assert_symbolic_identity(program, brute):
    assert program.keys() == brute.keys()
    for label, expected in brute.items():
        assert program[label].shape == expected.shape
        for got, want in zip(program[label], expected, strict=True):
            assert want.has(sp.tanh), f"{label}: trivial entry {want}"
            assert sp.expand(got - want) == 0, label


def test_program_equals_brute_force_symbolically():
    """T = 2, I = 1, H = 2, tanh: ``expand(program − brute force)`` is exactly 0 everywhere.

    ``expand`` treats each ``tanh(...)`` as an atom (after expanding its argument), so a zero
    difference is a polynomial identity in the symbols and those atoms: it holds for every
    value of every weight, input, state and cotangent. SymPy's ``diff`` writes
    ``tanh' = 1 − tanh²``, the program ``1 − h ⊙ h`` with ``h = tanh(z)``: the same atoms.
    """
    sizes = (2, 1, 2)
    _assert_symbolic_identity(
        scalar.program_gradients(_derivation(*sizes, "tanh", True)), _brute(*sizes, "tanh", True)
    )


@pytest.mark.parametrize(
    "spec",
    [
        dict(cell="gru", steps=2, input_size=1, hidden_size=1),
        dict(cell="lstm", steps=1, input_size=1, hidden_size=1),
    ],
    ids=["gru-T2_I1_H1", "lstm-T1_I1_H1"],
)
def test_gated_program_equals_brute_force_symbolically(spec):
    """A GRU over two steps (the recurrence through h, z and r) and an LSTM step (both states,
    c_0 and gc_n) with bias: ``expand(program − brute force)`` is exactly 0.

    The scalar view writes ``σ(y) = (1 + tanh(y/2))/2``, so ``diff`` gives ``σ' =
    (1 − tanh²(y/2))/4`` and the program's ``σ ⊙ (1 − σ)`` the same polynomial in the same
    ``tanh`` atom. (A two-step LSTM takes about 11 s here, a two-step GRU about 6 s.)
    """
    derivation = _derivation(*_args(spec))
    _assert_symbolic_identity(scalar.program_gradients(derivation), _brute(*_args(spec)))


def test_symbolic_comparison_is_not_vacuous():
    """The same proof fails for a backward program with W_hh where W_hhᵀ belongs."""
    derivation = _derivation(2, 1, 2, "tanh", True)
    w_hh = sp.MatrixSymbol("W_hh", 2, 2)
    wrong = scalar.program_gradients(
        _mutated(derivation, lambda _, value: value.xreplace({w_hh.T: w_hh}))
    )
    brute = _brute(2, 1, 2, "tanh", True)
    assert any(sp.expand(wrong["G1"][i] - brute["G1"][i]) != 0 for i in range(2))


def test_gated_symbolic_comparison_is_not_vacuous():
    """The same proof (one GRU step) fails with ``b_hn`` outside the reset gate."""
    spec = dict(cell="gru", steps=1, input_size=1, hidden_size=1)
    derivation = _derivation(*_args(spec))
    b_hn = MatrixSymbol("b_hn", 1, 1)
    to_delta_n = {var("delta_hn", 1, 1): var("delta_n", 1, 1)}
    wrong = scalar.program_gradients(
        _mutated_gradient(derivation, b_hn, lambda value: value.xreplace(to_delta_n))
    )
    label = next(g.label for g in derivation.gradients if g.of == b_hn)
    assert sp.expand(wrong[label][0] - _brute(*_args(spec))[label][0]) != 0


# --- the unrolled chains ------------------------------------------------------------------


def _chain_value(chain, env, diagonals):
    """A chain of factors as an explicit matrix product; ``D_k`` is a diagonal matrix."""
    product = None
    for factor in chain:
        if factor in diagonals:
            matrix = diagonals[factor]
        elif isinstance(factor, sp.Transpose):
            matrix = env[factor.arg].T
        else:
            matrix = env[factor]
        product = matrix if product is None else product * matrix
    return product


def _unrolled_gradients(derivation, unrolled, expected_shapes):
    env = scalar.forward_values(derivation, scalar.scalar_symbols(derivation))
    diagonals = {}
    for symbol, elementwise in unrolled.diagonals:
        explicit = Elementwise(elementwise.name, env[elementwise.arg]).as_explicit()
        diagonals[symbol] = sp.diag(*explicit)
    torch_names = {g.label: g.torch_name for g in derivation.gradients}
    result = {}
    for gradient in unrolled.gradients:
        shape = expected_shapes[gradient.label]
        per_step = []
        for chains in gradient.steps:
            total = sp.zeros(*(shape if torch_names[gradient.label] != "input" else (shape[1], 1)))
            for chain in chains:
                total += _chain_value(chain, env, diagonals)
            per_step.append(total)
        if torch_names[gradient.label] == "input":
            result[gradient.label] = sp.Matrix.vstack(*(column.T for column in per_step))
        elif gradient.summed:
            result[gradient.label] = sum(per_step[1:], per_step[0])
        else:
            (result[gradient.label],) = per_step
    return result


@pytest.mark.parametrize("only_final", [False, True], ids=["all_g", "only_g_n"])
@pytest.mark.parametrize(
    ("sizes", "nonlinearity", "bias"),
    [
        ((3, 1, 2), "tanh", True),
        ((3, 2, 3), "tanh", False),
        ((3, 1, 2), "relu", True),
        ((2, 3, 2), "relu", False),
        ((1, 1, 1), "tanh", True),
    ],
    ids=[
        "T3_I1_H2-tanh",
        "T3_I2_H3-tanh-nobias",
        "T3_I1_H2-relu",
        "T2_I3_H2-relu-nobias",
        "T1_I1_H1-tanh",
    ],
)
def test_unrolled_chains_equal_brute_force(sizes, nonlinearity, bias, only_final):
    """Each D_t as ``diag`` of its explicit derivative entries, W_hhᵀ as explicit transpose."""
    derivation = _derivation(*sizes, nonlinearity, bias)
    brute = _brute(*sizes, nonlinearity, bias)
    unrolled = unroll(derivation, only_final=only_final)
    chains = _unrolled_gradients(derivation, unrolled, {k: m.shape for k, m in brute.items()})
    symbols = scalar.scalar_symbols(derivation)
    cotangents = [var("g", k, sizes[2]) for k in range(1, sizes[0] + 1)]
    some_nonzero = False
    for seed in SEEDS:
        point = scalar.random_point(derivation, seed)
        if only_final:
            point.update({s: 0 for g in cotangents for s in symbols[g]})
        truth = scalar.evaluate(brute, point)
        _assert_match(scalar.evaluate(chains, point), truth)
        some_nonzero |= _is_nonzero(truth)
    assert some_nonzero


# --- the founding case --------------------------------------------------------------------


@pytest.fixture(scope="module")
def founding():
    """``torch.manual_seed(0)``, ``nn.RNN(1, 2)``, x = [1, 2, 3] unbatched, ``h_n.sum()``."""
    torch.manual_seed(0)
    rnn = torch.nn.RNN(input_size=1, hidden_size=2)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    output, h_n = rnn(x)
    h_n.sum().backward()
    return rnn, x


def _founding_point(derivation, rnn, x):
    """The scalar symbols at torch's float32 weights, h_0 = 0, g_t = 0, g_n = 1."""
    tensors = block_tensors(derivation, lambda name: getattr(rnn, name).detach())
    tensors |= {var("x", k, 1): x[k - 1] for k in (1, 2, 3)}
    (state,) = derivation.step.states
    tensors |= {var("h", 0, 2): torch.zeros(2), state.final: torch.ones(2)}
    tensors |= {var("g", k, 2): torch.zeros(2) for k in (1, 2, 3)}
    return _point_from_tensors(derivation, tensors)


def test_founding_case_program_equals_torch(founding):
    rnn, x = founding
    derivation = symbptt.derive(steps=3, input_size=1, hidden_size=2)
    program = scalar.program_gradients(derivation)
    point = _founding_point(derivation, rnn, x)
    got = [float(v) for v in scalar.evaluate(program["G1"], point)]
    torch_grad = rnn.weight_ih_l0.grad.reshape(-1).tolist()
    assert got == pytest.approx(torch_grad, abs=1e-6)
    assert [round(v, 4) for v in got] == [2.0941, 0.1053]
    # and the brute force agrees at the same point
    truth = scalar.evaluate(_brute(3, 1, 2, "tanh", True), point)
    _assert_match(scalar.evaluate(program, point), truth)


def test_founding_users_formula_is_mistake_1(founding):
    """TORCH_SEMANTICS.md mistake 1: the t = 1 term as an element-wise product of hops.

    With a_t = 1 − h_t² (rows) the user wrote ``((a3 @ W) * (a2 @ W)) * (a1 * x1)`` where the
    chain is ``(((a3 @ W) * a2) @ W) * a1 * x1``. The t = 2 and t = 3 terms (≤ 1 hop) were right.
    """
    rnn, x = founding
    rnn64 = copy.deepcopy(rnn).double()
    with torch.no_grad():
        output, _ = rnn64(x.double())
    a = 1 - output**2
    w = rnn64.weight_hh_l0.detach()
    x1, x2, x3 = x.double()[:, 0]
    t3 = a[2] * x3
    t2 = (a[2] @ w) * (a[1] * x2)
    wrong_t1 = ((a[2] @ w) * (a[1] @ w)) * (a[0] * x1)
    chain_t1 = (((a[2] @ w) * a[1]) @ w) * a[0] * x1
    wrong = (t3 + t2 + wrong_t1).tolist()
    chain = (t3 + t2 + chain_t1).tolist()
    assert [round(v, 4) for v in wrong] == [2.0968, 0.0939]

    derivation = symbptt.derive(steps=3, input_size=1, hidden_size=2)
    point = _founding_point(derivation, rnn, x)
    program = [float(v) for v in scalar.evaluate(scalar.program_gradients(derivation)["G1"], point)]
    assert program == pytest.approx(chain, abs=1e-12)
    assert all(abs(p - w) > 1e-3 for p, w in zip(program, wrong, strict=True))

    # per step: the program's terms for t = 3 and t = 2 equal the user's, the t = 1 term does not
    leaves = scalar.scalar_symbols(derivation)
    numbers = {symbol: m.applyfunc(lambda e: point[e]) for symbol, m in leaves.items()}
    env = scalar.backward_values(derivation, numbers)
    term = [
        [float(v) for v in scalar.evaluate(scalar.at_element_level(t, env), {})]
        for t in derivation.gradients[0].terms
    ]
    assert term[2] == pytest.approx(t3.tolist(), abs=1e-12)
    assert term[1] == pytest.approx(t2.tolist(), abs=1e-12)
    assert term[0] == pytest.approx(chain_t1.tolist(), abs=1e-12)
    assert all(abs(p - w) > 1e-3 for p, w in zip(term[0], wrong_t1.tolist(), strict=True))
