"""The derivation against an independent ground truth: SymPy's scalar ``diff`` of the unrolled loss.

The derivation's backward program comes from matrix-level reverse-mode rules. The reference here
shares nothing with them: the forward program is written out entry by entry, the scalar loss
``L = Σ_t g_t·h_t + g_n·h_T`` is formed, and ``sympy.diff`` differentiates it one scalar at a
time (:func:`symbptt.scalar.brute_force_gradients`). The unrolled chains and the founding case
(torch's own numbers, and the founding user's wrong formula) are checked against it too.
"""

from __future__ import annotations

import copy
from functools import cache

import pytest
import sympy as sp
import torch

import symbptt
from symbptt import scalar
from symbptt.matexpr import Elementwise
from symbptt.program import Assignment, var
from symbptt.unrolled import unroll

SIZES = [(1, 1, 1), (2, 1, 2), (3, 1, 2), (2, 3, 2), (3, 2, 3)]
"""(T, I, H)."""
SEEDS = (0, 1, 2)
TOLERANCE = sp.Float("1e-40")


@cache
def _derivation(steps, inputs, hidden, nonlinearity, bias):
    return symbptt.derive(steps, inputs, hidden, nonlinearity, bias)


@cache
def _brute(steps, inputs, hidden, nonlinearity, bias):
    return scalar.brute_force_gradients(_derivation(steps, inputs, hidden, nonlinearity, bias))


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


def test_scalar_symbols_are_named_by_entry():
    symbols = scalar.scalar_symbols(_derivation(2, 3, 2, "tanh", True))
    names = {str(s) for matrix in symbols.values() for s in matrix}
    assert {"W_ih_0_1", "W_ih_1_2", "W_hh_1_0", "b_ih_1", "b_hh_0", "x_2_0", "x_1_2"} <= names
    assert {"h_0_1", "g_1_0", "g_2_1", "g_n_0", "g_n_1"} <= names
    # 6 + 4 + 2 + 2 (parameters) + 2·3 (x) + 2 (h_0) + 2·2 (g_t) + 2 (g_n)
    assert len(names) == 28


def test_loss_is_the_unrolled_forward_pass():
    """T = 1, I = H = 1 by hand: L = (g_1 + g_n) tanh(w x + b + u h_0 + c)."""
    derivation = _derivation(1, 1, 1, "tanh", True)
    symbols = scalar.scalar_symbols(derivation)
    w, u, b, c, x, h0, g1, gn = sp.symbols(
        "W_ih_0_0 W_hh_0_0 b_ih_0 b_hh_0 x_1_0 h_0_0 g_1_0 g_n_0", real=True
    )
    loss = scalar.unrolled_loss(derivation, symbols)
    assert sp.expand(loss - (g1 + gn) * sp.tanh(w * x + b + u * h0 + c)) == 0


# --- the comparison catches wrong derivations ----------------------------------------------


def _mutated(derivation, mutate):
    """A copy of ``derivation`` whose backward program is passed through ``mutate``."""
    wrong = copy.copy(derivation)
    wrong.__dict__["backward"] = tuple(
        tuple(Assignment(a.target, mutate(a.value), a.label) for a in step)
        for step in derivation.backward
    )
    return wrong


@pytest.mark.parametrize("mistake", ["W_hh not transposed", "tanh' of z_t"])
def test_comparison_catches_a_wrong_backward_program(mistake):
    """Mistakes 2 and 3 of TORCH_SEMANTICS.md injected into the backward program are caught."""
    sizes = (3, 1, 2)
    derivation = _derivation(*sizes, "tanh", True)
    w_hh = sp.MatrixSymbol("W_hh", 2, 2)
    if mistake == "W_hh not transposed":
        wrong = _mutated(derivation, lambda value: value.xreplace({w_hh.T: w_hh}))
    else:
        steps = range(1, sizes[0] + 1)
        to_z = {var("h", k, 2): var("z", k, 2) for k in steps}
        wrong = _mutated(derivation, lambda value: value.xreplace(to_z))
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


# --- a symbolic proof for one size ---------------------------------------------------------


def test_program_equals_brute_force_symbolically():
    """T = 2, I = 1, H = 2, tanh: ``expand(program − brute force)`` is exactly 0 everywhere.

    ``expand`` treats each ``tanh(...)`` as an atom (after expanding its argument), so a zero
    difference is a polynomial identity in the symbols and those atoms: it holds for every
    value of every weight, input, state and cotangent. SymPy's ``diff`` writes
    ``tanh' = 1 − tanh²``, the program ``1 − h ⊙ h`` with ``h = tanh(z)``: the same atoms.
    """
    sizes = (2, 1, 2)
    derivation = _derivation(*sizes, "tanh", True)
    brute = _brute(*sizes, "tanh", True)
    program = scalar.program_gradients(derivation)
    assert program.keys() == brute.keys()
    for label, expected in brute.items():
        assert program[label].shape == expected.shape
        for got, want in zip(program[label], expected, strict=True):
            assert want.has(sp.tanh), f"{label}: trivial entry {want}"
            assert sp.expand(got - want) == 0, label


def test_symbolic_comparison_is_not_vacuous():
    """The same proof fails for a backward program with W_hh where W_hhᵀ belongs."""
    derivation = _derivation(2, 1, 2, "tanh", True)
    w_hh = sp.MatrixSymbol("W_hh", 2, 2)
    wrong = scalar.program_gradients(
        _mutated(derivation, lambda value: value.xreplace({w_hh.T: w_hh}))
    )
    brute = _brute(2, 1, 2, "tanh", True)
    assert any(sp.expand(wrong["G1"][i] - brute["G1"][i]) != 0 for i in range(2))


# --- the unrolled chains -------------------------------------------------------------------


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


# --- the founding case ---------------------------------------------------------------------


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
    symbols = scalar.scalar_symbols(derivation)
    tensors = {p.symbol: getattr(rnn, p.torch_name).detach() for p in derivation.parameters}
    tensors |= {var("x", k, 1): x[k - 1] for k in (1, 2, 3)}
    tensors |= {var("h", 0, 2): torch.zeros(2), derivation.adjoint.final: torch.ones(2)}
    tensors |= {var("g", k, 2): torch.zeros(2) for k in (1, 2, 3)}
    point = {}
    for symbol, tensor in tensors.items():
        values = tensor.double().reshape(-1).tolist()
        point |= dict(zip(list(symbols[symbol]), values, strict=True))
    return point


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
