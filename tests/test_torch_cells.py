"""torch's cells as definitions of the same kind as a user's (:mod:`symbptt.core.torch_cells`).

The expected values come from torch itself: a user's cell file that writes torch's GRU and LSTM
equations, derived and generated through the user's path, must give torch.nn.GRU's and
torch.nn.LSTM's outputs and autograd gradients (float64, rel 1e-10, random cotangents) once
their stacked weights are sliced into its parameters.
"""

from __future__ import annotations

import pytest
import torch

import symbptt
from symbptt.api import Derivation
from symbptt.core.cell_definition import Cell
from symbptt.core.spec import CELLS, Spec
from symbptt.core.torch_cells import TORCH_CELLS, Options, torch_cell
from symbptt.errors import SpecError

GRU_FILE = """
name = "MyGRU"
[inputs]
x = "I"
[states]
h = "H"
[parameters]
W_ir = "H, I"
W_iz = "H, I"
W_in = "H, I"
W_hr = "H, H"
W_hz = "H, H"
W_hn = "H, H"
b_ir = "H"
b_iz = "H"
b_in = "H"
b_hr = "H"
b_hz = "H"
b_hn = "H"
[step]
r = "sigmoid(W_ir @ x + b_ir + W_hr @ h[t-1] + b_hr)"
z = "sigmoid(W_iz @ x + b_iz + W_hz @ h[t-1] + b_hz)"
n = "tanh(W_in @ x + b_in + r * (W_hn @ h[t-1] + b_hn))"
h = "(1 - z) * n + z * h[t-1]"
"""

LSTM_FILE = """
name = "MyLSTM"
[inputs]
x = "I"
[states]
h = "H"
c = "H"
[parameters]
W_ii = "H, I"
W_if = "H, I"
W_ig = "H, I"
W_io = "H, I"
W_hi = "H, H"
W_hf = "H, H"
W_hg = "H, H"
W_ho = "H, H"
[step]
i = "sigmoid(W_ii @ x + W_hi @ h[t-1])"
f = "sigmoid(W_if @ x + W_hf @ h[t-1])"
cand = "tanh(W_ig @ x + W_hg @ h[t-1])"
o = "sigmoid(W_io @ x + W_ho @ h[t-1])"
c = "f * c[t-1] + i * cand"
h = "o * tanh(c)"
"""


def _cut(stacked: dict[str, torch.Tensor], hidden: int, gates: str) -> dict[str, torch.Tensor]:
    """The user's parameters cut from torch's stacked ones (``weight_ih_l0`` rows by gate)."""
    values = {}
    for name, tensor in stacked.items():
        kind, side = name.split("_")[0], name.split("_")[1][0]
        for k, gate in enumerate(gates):
            values[f"{kind[0].upper() if kind == 'weight' else 'b'}_{side}{gate}_l0"] = tensor[
                k * hidden : (k + 1) * hidden
            ]
    return values


@pytest.mark.parametrize(
    ("text", "torch_class", "gates", "bias"),
    [(GRU_FILE, torch.nn.GRU, "rzn", True), (LSTM_FILE, torch.nn.LSTM, "ifgo", False)],
    ids=["gru", "lstm-no-bias"],
)
@pytest.mark.parametrize(("steps", "input_size", "hidden_size"), [(1, 3, 2), (4, 2, 3)])
@pytest.mark.parametrize("batch", [None, 3], ids=["unbatched", "batched"])
def test_a_users_file_of_torchs_equations_is_torchs_cell(
    text, torch_class, gates, bias, steps, input_size, hidden_size, batch
):
    derivation = symbptt.derive(
        cell=Cell.from_string(text), steps=steps, input_size=input_size, hidden_size=hidden_size
    )
    torch.manual_seed(steps * 10 + input_size)
    reference = torch_class(input_size, hidden_size, bias=bias, dtype=torch.float64)
    generated = getattr(derivation.load(), derivation.spec.torch_class)().double()
    stacked = {name: p.detach() for name, p in reference.named_parameters()}
    generated.load_state_dict(_cut(stacked, hidden_size, gates))
    assert set(_cut(stacked, hidden_size, gates)) == {p.torch_name for p in derivation.parameters}
    shape = (steps, input_size) if batch is None else (steps, batch, input_size)
    x = torch.randn(shape, dtype=torch.float64)
    results = []
    for module in (reference, generated):
        inputs = x.clone().requires_grad_()
        output, final = module(inputs)
        finals = final if isinstance(final, tuple) else (final,)
        torch.manual_seed(7)
        loss = (output * torch.randn_like(output)).sum() + sum(
            (s * torch.randn_like(s)).sum() for s in finals
        )
        loss.backward()
        grads = {name: p.grad for name, p in module.named_parameters()}
        results.append((output.detach(), [s.detach() for s in finals], inputs.grad, grads))
    (out_t, finals_t, dx_t, grads_t), (out_g, finals_g, dx_g, grads_g) = results
    torch.testing.assert_close(out_g, out_t, rtol=1e-10, atol=1e-12)
    for mine, theirs in zip(finals_g, finals_t, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx_g, dx_t, rtol=1e-10, atol=1e-12)
    for name, expected in _cut(grads_t, hidden_size, gates).items():
        torch.testing.assert_close(grads_g[name], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", list(TORCH_CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_each_torch_cell_is_a_cell_with_torchs_stacks(family, bias):
    cell = torch_cell(family, Options(bias=bias))
    assert isinstance(cell, Cell)
    assert cell.source == f"<torch.nn.{TORCH_CELLS[family].torch_class}>"
    arguments = [stack.argument for stack in cell.stacks]
    expected = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    assert arguments == expected
    stacked = [name for stack in cell.stacks for name in stack.blocks]
    assert sorted(stacked) == sorted(cell.parameter_names)
    letters = [gate.letter for gate in cell.gates] or [""]
    assert cell.stacks[0].blocks == tuple(f"W_i{g or 'h'}" for g in letters)


def test_the_projection_is_one_more_stack_of_shape_p_by_h():
    cell = torch_cell("lstm", Options(proj_size=2))
    assert cell.stacks[-1].argument == "weight_hr"
    assert dict(cell.parameters)["W_hr"] == ("P", "H")
    assert dict(cell.states) == {"h": "P", "c": "H"}
    spec = Spec(cell="lstm", input_size=3, hidden_size=4, proj_size=2)
    assert spec.states == [("h", 2), ("c", 4)]
    shapes = {p.torch_name: p.shape for p in Derivation(spec).parameters}
    assert shapes["weight_hr_l0"] == (2, 4)
    assert shapes["weight_hh_l0"] == (16, 2)


def test_torchs_text_is_refused_as_a_users_file():
    """The pre-activation names torch's definitions write are the generated code's own; a user's
    file may not take them (only the built-in definitions are read with that allowance)."""
    text = (
        'name = "Mine"\n[inputs]\nx = "I"\n[states]\nh = "H"\n[parameters]\nW = "H, H"\n'
        '[step]\na_h = "W @ h[t-1]"\nh = "tanh(a_h)"\n'
    )
    with pytest.raises(SpecError, match=r"<string>:9:1: step variable name 'a_h' must not start"):
        Cell.from_string(text)


def test_options_torch_rejects_are_refused_from_the_table():
    with pytest.raises(SpecError, match="--nonlinearity is for rnn and rnn_cell only, not gru"):
        Spec(cell="gru", nonlinearity="relu")
    with pytest.raises(SpecError, match=r"proj_size is for lstm only \(torch rejects it for "):
        Spec(cell="lstm_cell", proj_size=1, hidden_size=3)
    assert CELLS == ("rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell")
