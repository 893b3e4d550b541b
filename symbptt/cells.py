"""The step equations of torch's recurrent cells, as step programs for the symbolic step t.

Column convention, one sample (torch writes rows, ``x Wᵀ``; the numbers are the same)::

    RNN    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,      h_t = act(z_t)

    LSTM   a^i_t = W_ii x_t + b_ii + W_hi h_{t-1} + b_hi,    i_t = σ(a^i_t)     (and f, o alike)
           a^g_t = W_ig x_t + b_ig + W_hg h_{t-1} + b_hg,    c̃_t = tanh(a^g_t)  (torch's g gate)
           c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t,                  h_t = o_t ⊙ tanh(c_t)
           with proj_size P:  q_t = o_t ⊙ tanh(c_t),          h_t = W_hr q_t

    GRU    a^r_t = W_ir x_t + b_ir + W_hr h_{t-1} + b_hr,    r_t = σ(a^r_t)     (and z alike)
           a^{hn}_t = W_hn h_{t-1} + b_hn
           a^n_t = W_in x_t + b_in + r_t ⊙ a^{hn}_t,          n_t = tanh(a^n_t)
           h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

torch stacks the gates' blocks by rows in the order i, f, g, o (LSTM) and r, z, n (GRU).

With variable lengths (PackedSequence) every state s is masked (:func:`masked`)::

    ŝ_t = (the cell's update),    s_t = m_t ⊙ ŝ_t + (1 − m_t) ⊙ s_{t-1}

where m_t is 1 while the sample's sequence lasts and 0 after: its state then stays put.
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix

from .custom_cell import custom_step
from .matexpr import Elementwise
from .program import Assignment, Parameter, State, StepProgram, t, var
from .spec import Spec

LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")


class _Blocks:
    """The per-gate blocks of the four stacked parameters, and torch's names for them."""

    def __init__(self, spec: Spec, gates: tuple[str, ...], n_in: int, n_h: int, n_out: int):
        self.spec = spec
        suffix = "" if spec.is_cell else "_l0"
        one = len(gates) == 1

        def blocks(prefix: str, side: str, cols: int) -> tuple[MatrixSymbol, ...]:
            if one:
                return (MatrixSymbol(f"{prefix}_{side}h", n_h, cols),)
            return tuple(MatrixSymbol(f"{prefix}_{side}{gate}", n_h, cols) for gate in gates)

        n = len(gates) * n_h
        self.w_i, self.w_h = blocks("W", "i", n_in), blocks("W", "h", n_out)
        self.parameters = [
            Parameter(
                f"weight_ih{suffix}", "weight_ih", (n, n_in), "input-hidden weights", self.w_i
            ),
            Parameter(
                f"weight_hh{suffix}", "weight_hh", (n, n_out), "hidden-hidden weights", self.w_h
            ),
        ]
        self.b_i = self.b_h = (None,) * len(gates)
        if spec.bias:
            self.b_i, self.b_h = blocks("b", "i", 1), blocks("b", "h", 1)
            self.parameters += [
                Parameter(f"bias_ih{suffix}", "bias_ih", (n,), "input-hidden bias", self.b_i),
                Parameter(f"bias_hh{suffix}", "bias_hh", (n,), "hidden-hidden bias", self.b_h),
            ]

    def affine(self, k: int, x: MatrixSymbol | None, h: MatrixSymbol | None) -> list:
        """Terms of ``W_ik x + b_ik + W_hk h + b_hk`` (x or h left out when None)."""
        terms = []
        if x is not None:
            terms += [MatMul(self.w_i[k], x)] + ([self.b_i[k]] if self.b_i[k] is not None else [])
        if h is not None:
            terms += [MatMul(self.w_h[k], h)] + ([self.b_h[k]] if self.b_h[k] is not None else [])
        return terms


def _sum(terms: list) -> sp.Basic:
    return terms[0] if len(terms) == 1 else MatAdd(*terms)


def rnn_step(spec: Spec) -> StepProgram:
    """``torch.nn.RNN``: ``z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``, ``h_t = act(z_t)``."""
    n_in, n_h = spec.input_size, spec.hidden_size
    params = _Blocks(spec, ("",), n_in, n_h, n_h)
    x, h_prev, h, z = var("x", t, n_in), var("h", t - 1, n_h), var("h", t, n_h), var("z", t, n_h)
    return StepProgram(
        assignments=(
            Assignment(z, _sum(params.affine(0, x, h_prev)), "F"),
            Assignment(h, Elementwise(spec.nonlinearity, z), "F"),
        ),
        inputs=(x,),
        states=(State(h, h_prev, MatrixSymbol("g[n]", n_h, 1), "h"),),
        output=h,
        parameters=tuple(params.parameters),
    )


def lstm_step(spec: Spec) -> StepProgram:
    """``torch.nn.LSTM``, with the projection ``h_t = W_hr (o_t ⊙ tanh(c_t))`` if proj_size."""
    n_in, n_h, n_out = spec.input_size, spec.hidden_size, spec.output_size
    params = _Blocks(spec, LSTM_GATES, n_in, n_h, n_out)
    x, h_prev, c_prev = var("x", t, n_in), var("h", t - 1, n_out), var("c", t - 1, n_h)
    h, c = var("h", t, n_out), var("c", t, n_h)
    gate_out = {"i": "i", "f": "f", "g": "ct", "o": "o"}
    function = {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid"}
    assignments = []
    gates = {}
    for k, gate in enumerate(LSTM_GATES):
        pre, out = var(f"a_{gate}", t, n_h), var(gate_out[gate], t, n_h)
        assignments += [
            Assignment(pre, _sum(params.affine(k, x, h_prev)), "F"),
            Assignment(out, Elementwise(function[gate], pre), "F"),
        ]
        gates[gate] = out
    assignments.append(
        Assignment(
            c,
            MatAdd(HadamardProduct(gates["f"], c_prev), HadamardProduct(gates["i"], gates["g"])),
            "F",
        )
    )
    output = HadamardProduct(gates["o"], Elementwise("tanh", c))
    if spec.proj_size:
        w_hr = MatrixSymbol("W_hr", n_out, n_h)
        params.parameters.append(
            Parameter("weight_hr_l0", "weight_hr", (n_out, n_h), "projection weights", (w_hr,))
        )
        q = var("q", t, n_h)
        assignments += [Assignment(q, output, "F"), Assignment(h, MatMul(w_hr, q), "F")]
    else:
        assignments.append(Assignment(h, output, "F"))
    return StepProgram(
        assignments=tuple(assignments),
        inputs=(x,),
        states=(
            State(h, h_prev, MatrixSymbol("g[n]", n_out, 1), "h"),
            State(c, c_prev, MatrixSymbol("gc[n]", n_h, 1), "c"),
        ),
        output=h,
        parameters=tuple(params.parameters),
    )


def gru_step(spec: Spec) -> StepProgram:
    """``torch.nn.GRU``, with ``b_hn`` inside ``r_t ⊙ (W_hn h_{t-1} + b_hn)`` as torch has it."""
    n_in, n_h = spec.input_size, spec.hidden_size
    params = _Blocks(spec, GRU_GATES, n_in, n_h, n_h)
    x, h_prev, h = var("x", t, n_in), var("h", t - 1, n_h), var("h", t, n_h)
    pre = {gate: var(f"a_{gate}", t, n_h) for gate in GRU_GATES}
    r, z, n = (var(gate, t, n_h) for gate in GRU_GATES)
    hidden_n = var("a_hn", t, n_h)
    assignments = [
        Assignment(pre["r"], _sum(params.affine(0, x, h_prev)), "F"),
        Assignment(r, Elementwise("sigmoid", pre["r"]), "F"),
        Assignment(pre["z"], _sum(params.affine(1, x, h_prev)), "F"),
        Assignment(z, Elementwise("sigmoid", pre["z"]), "F"),
        Assignment(hidden_n, _sum(params.affine(2, None, h_prev)), "F"),
        Assignment(pre["n"], _sum(params.affine(2, x, None) + [HadamardProduct(r, hidden_n)]), "F"),
        Assignment(n, Elementwise("tanh", pre["n"]), "F"),
        Assignment(
            h,
            MatAdd(
                HadamardProduct(MatAdd(OneMatrix(n_h, 1), MatMul(-1, z)), n),
                HadamardProduct(z, h_prev),
            ),
            "F",
        ),
    ]
    return StepProgram(
        assignments=tuple(assignments),
        inputs=(x,),
        states=(State(h, h_prev, MatrixSymbol("g[n]", n_h, 1), "h"),),
        output=h,
        parameters=tuple(params.parameters),
    )


STEP_PROGRAMS = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step}


def masked(program: StepProgram) -> StepProgram:
    """``program`` for variable lengths: each state update is kept only where the mask is 1.

    The cell's own update of state ``s`` becomes ``s_new[t]`` (``ŝ_t``), and
    ``s[t] = m[t] ⊙ s_new[t] + (1 − m[t]) ⊙ s[t - 1]`` follows; the masks are constants.
    """
    renamed, updates, masks = {}, [], []
    for state in program.states:
        base = state.name
        n = state.new.shape[0]
        candidate = var(f"{base}_new", t, n)
        mask = var("m" if base == "h" else f"m{base}", t, n)
        renamed[state.new] = candidate
        masks.append(mask)
        keep = MatAdd(OneMatrix(n, 1), MatMul(-1, mask))
        value = MatAdd(HadamardProduct(mask, candidate), HadamardProduct(keep, state.previous))
        updates.append(Assignment(state.new, value, "F"))
    assignments = tuple(
        Assignment(renamed.get(a.target, a.target), a.value.xreplace(renamed), a.label)
        for a in program.assignments
    )
    return StepProgram(
        assignments=assignments + tuple(updates),
        inputs=program.inputs,
        states=program.states,
        output=program.output,
        parameters=program.parameters,
        constants=tuple(masks),
    )


def step_program(spec: Spec) -> StepProgram:
    """The step program of ``spec``'s cell family, or of its user-defined cell (masked when
    ``spec.packed``)."""
    if spec.custom is not None:
        program = custom_step(spec.custom, spec.input_size, spec.hidden_size)
    else:
        program = STEP_PROGRAMS[spec.family](spec)
    return masked(program) if spec.packed else program
