"""Generated modules against torch's own (RNN, LSTM, GRU and the cells) + autograd, float64,
rel <= 1e-10.

Expected values come from torch autograd of torch's own module with the same weights
(``symbptt.verification.verify.compare`` runs both); the cotangents on every output are random. The
tests in tests/test_verify.py show that this comparison fails for a wrong backward.
"""

from __future__ import annotations

import pytest
import torch
from conftest import derivation, generated

from symbptt.verification.agreement import torch_reference
from symbptt.verification.verify import compare

TOL = 1e-10

LAYER_SPECS = [
    dict(steps=1, input_size=1, hidden_size=1),
    dict(steps=1, input_size=3, hidden_size=2),
    dict(steps=2, input_size=2, hidden_size=3),
    dict(steps=3, input_size=1, hidden_size=2),
    dict(steps=5, input_size=4, hidden_size=3),
    dict(steps=20, input_size=3, hidden_size=5),  # loop form (above 16 steps)
    dict(steps=4, input_size=2, hidden_size=3, loop=True),
    dict(steps=18, input_size=2, hidden_size=2, loop=False),
    dict(steps=1, input_size=2, hidden_size=3, loop=True),
]
LAYERS = [
    *[dict(cell="rnn", nonlinearity=n, **s) for s in LAYER_SPECS for n in ("tanh", "relu")],
    *[dict(cell="lstm", **s) for s in LAYER_SPECS],
    *[dict(cell="gru", **s) for s in LAYER_SPECS],
    dict(cell="lstm", steps=3, input_size=2, hidden_size=4, proj_size=2),
    dict(cell="lstm", steps=1, input_size=3, hidden_size=2, proj_size=1),
    dict(cell="lstm", steps=17, input_size=2, hidden_size=3, proj_size=2),
]
CELLS = [
    dict(cell="rnn_cell", input_size=3, hidden_size=2),
    dict(cell="rnn_cell", input_size=1, hidden_size=1, nonlinearity="relu"),
    dict(cell="lstm_cell", input_size=3, hidden_size=2),
    dict(cell="lstm_cell", input_size=1, hidden_size=4),
    dict(cell="gru_cell", input_size=3, hidden_size=2),
    dict(cell="gru_cell", input_size=2, hidden_size=5),
]
MODES = [  # (batch, batch_first, given initial state)
    (None, False, False),
    (None, False, True),
    (3, False, False),
    (3, False, True),
    (3, True, False),
    (3, True, True),
]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale else 1.0)


def _spec_id(spec: dict) -> str:
    return "-".join(
        str(v) if k in ("cell", "nonlinearity") else f"{k[0]}{v}" for k, v in spec.items()
    )


def _check(spec: dict, bias: bool, batch, batch_first: bool, given: bool) -> None:
    d = derivation(**spec, bias=bias)
    report = compare(
        d,
        generated(**spec, bias=bias),
        batch=batch,
        batch_first=batch_first,
        given_state=given,
        seed=len(_spec_id(spec)) + 7 * (batch or 0) + given,
        scale=2.0,  # larger weights than torch's init, so relu units switch on and off
    )
    assert report.ok, report.table()
    assert len(report.checks) >= 4


@pytest.mark.parametrize("spec", LAYERS, ids=_spec_id)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "b{}-bf{}-h{}".format(*m))
def test_layer_gradients_match_torch(spec, bias, mode):
    _check(spec, bias, *mode)


@pytest.mark.parametrize("spec", CELLS, ids=_spec_id)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", [m for m in MODES if not m[1]], ids=lambda m: f"b{m[0]}-h{m[2]}")
def test_cell_gradients_match_torch(spec, bias, mode):
    _check(spec, bias, *mode)


def _per_step_reference(spec: dict, seed: int):
    """Autograd through torch's own cell with a separate copy of every parameter at every step:
    the gradient of the copy used at step t is that step's term, independently of symbptt."""
    family = spec["cell"]
    steps, n_in, n_h = spec["steps"], spec["input_size"], spec["hidden_size"]
    cell_class = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
    torch.manual_seed(seed)
    cell = cell_class[family](n_in, n_h, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    batch = 2
    x = randn(steps, batch, n_in)
    states = [randn(batch, n_h) for _ in range(2 if family == "lstm" else 1)]
    g_out = randn(steps, batch, n_h)
    g_final = [randn(batch, n_h) for _ in states]
    names = [name for name, _ in cell.named_parameters()]
    copies = [
        {name: p.detach().clone().requires_grad_() for name, p in cell.named_parameters()}
        for _ in range(steps)
    ]
    state, outputs = tuple(states) if family == "lstm" else states[0], []
    for t in range(steps):
        state = torch.func.functional_call(cell, copies[t], (x[t], state))
        outputs.append(state[0] if family == "lstm" else state)
    finals = state if family == "lstm" else (state,)
    loss = (torch.stack(outputs) * g_out).sum()
    loss = loss + sum((f * g).sum() for f, g in zip(finals, g_final, strict=True))
    loss.backward()
    per_step = {name: torch.stack([copies[t][name].grad for t in range(steps)]) for name in names}
    params = [p.detach() for p in cell.parameters()]
    return params, x, states, g_out, g_final, per_step


@pytest.mark.parametrize(
    "spec",
    [
        dict(cell="rnn", steps=1, input_size=2, hidden_size=3),
        dict(cell="rnn", steps=4, input_size=3, hidden_size=2),
        dict(cell="rnn", steps=4, input_size=3, hidden_size=2, loop=True),
        dict(cell="lstm", steps=3, input_size=2, hidden_size=3),
        dict(cell="lstm", steps=3, input_size=2, hidden_size=3, loop=True),
        dict(cell="gru", steps=3, input_size=3, hidden_size=2),
        dict(cell="gru", steps=3, input_size=3, hidden_size=2, loop=True),
    ],
    ids=_spec_id,
)
def test_per_step_terms_match_autograd(spec):
    module = generated(**spec)
    params, x, states, g_out, g_final, expected = _per_step_reference(spec, 7)
    output, saved = module.forward(x, *states, *params)
    args = [x, *states, saved]
    args += [p for p, name in zip(params, expected, strict=True) if "weight" in name]
    grads = module.backward(*args, g_out, *g_final, per_step=True)
    for name, want in expected.items():
        got = grads["per_step"][f"{name}_l0"]
        assert got.shape == want.shape
        assert rel_error(got, want) <= TOL
        assert rel_error(got.sum(0), grads[f"{name}_l0"]) <= TOL


@pytest.mark.parametrize(
    "spec",
    [
        dict(cell="rnn", steps=1, input_size=2, hidden_size=2),
        dict(cell="rnn", steps=3, input_size=1, hidden_size=2),
        dict(cell="rnn", steps=4, input_size=3, hidden_size=2, nonlinearity="relu"),
        dict(cell="rnn", steps=19, input_size=2, hidden_size=2),
        dict(cell="lstm", steps=3, input_size=2, hidden_size=2),
        dict(cell="lstm", steps=2, input_size=2, hidden_size=3, proj_size=2),
        dict(cell="lstm", steps=17, input_size=1, hidden_size=2),
        dict(cell="gru", steps=3, input_size=2, hidden_size=2),
        dict(cell="gru", steps=17, input_size=1, hidden_size=2),
    ],
    ids=_spec_id,
)
def test_autograd_function_passes_gradcheck(spec):
    """Finite differences of the generated Function agree with its generated backward."""
    d = derivation(**spec)
    module = generated(**spec)
    gen = torch.Generator().manual_seed(3)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    states = [leaf(2, s.new.shape[0]) for s in d.step.states]
    params = [leaf(*p.shape) for p in d.parameters]
    inputs = (leaf(spec["steps"], 2, spec["input_size"]), *states, *params)
    assert torch.autograd.gradcheck(module._BPTT.apply, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_module_is_state_dict_compatible_and_defaults_like_torch():
    module = generated(steps=3, input_size=1, hidden_size=2)
    layer = module.RNN()
    reference = torch.nn.RNN(1, 2)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    layer.load_state_dict(reference.state_dict())
    bound = 1 / 2**0.5
    assert all(p.abs().max() <= bound for p in module.RNN().parameters())
    assert module.RNN().weight_ih_l0.dtype == torch.float32


def test_founding_case_numbers():
    """The seed question: nn.RNN(1, 2), seed 0, x = [1, 2, 3], h_n.sum().backward()."""
    module = generated(steps=3, input_size=1, hidden_size=2)
    torch.manual_seed(0)
    reference = torch.nn.RNN(input_size=1, hidden_size=2, batch_first=True)
    layer = module.RNN(batch_first=True)
    layer.load_state_dict(reference.state_dict())
    x = torch.tensor([[1.0], [2.0], [3.0]])
    for rnn in (layer, reference):
        _, h_n = rnn(x)
        h_n.sum().backward()
    assert torch.allclose(layer.weight_ih_l0.grad, reference.weight_ih_l0.grad, atol=1e-6)
    assert torch.allclose(
        reference.weight_ih_l0.grad.flatten(), torch.tensor([2.0941, 0.1053]), atol=1e-4
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda: torch.zeros(4, 1), "generated for 3 steps"),
        (lambda: torch.zeros(3, 2), "Expected 1, got 2"),
        (lambda: torch.zeros(3), "2-D or 3-D"),
        (lambda: torch.zeros(1, 3, 2, 1), "2-D or 3-D"),
    ],
)
def test_wrong_input_shape_is_a_clear_error(bad, message):
    layer = generated(steps=3, input_size=1, hidden_size=2).RNN()
    with pytest.raises((ValueError, RuntimeError), match=message):  # torch's own errors, as torch
        layer(bad())


def test_wrong_hidden_shape_is_a_clear_error():
    layer = generated(steps=3, input_size=1, hidden_size=2).RNN()
    with pytest.raises(ValueError, match=r"expected h of shape \(1, 4, 2\)"):
        layer(torch.zeros(3, 4, 1), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r"expected h of shape \(1, 2\)"):
        layer(torch.zeros(3, 1), torch.zeros(1, 1, 2))


def test_lstm_state_errors():
    layer = generated(cell="lstm", steps=2, input_size=1, hidden_size=2).LSTM()
    with pytest.raises(ValueError, match=r"hx must be a tuple"):
        layer(torch.zeros(2, 3, 1), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match=r"expected c of shape \(1, 3, 2\)"):
        layer(torch.zeros(2, 3, 1), (torch.zeros(1, 3, 2), torch.zeros(1, 3, 3)))
    cell = generated(cell="gru_cell", input_size=1, hidden_size=2).GRUCell()
    with pytest.raises(ValueError, match="1-D or 2-D"):
        cell(torch.zeros(1, 2, 1))
    with pytest.raises(ValueError, match="expected input_size 1"):
        cell(torch.zeros(2, 3))


def test_float32_within_documented_tolerance():
    from conftest import derivation

    from symbptt.verification.agreement import TOLERANCE
    from symbptt.verification.verify import verify

    report = verify(derivation(steps=30, input_size=4, hidden_size=8), dtype="float32")
    assert report.ok, report.table()
    assert TOLERANCE["float32"] == 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cudnn():
    from conftest import derivation

    from symbptt.verification.verify import verify

    for dtype in ("float64", "float32"):
        report = verify(
            derivation(steps=10, input_size=3, hidden_size=4), device="cuda", dtype=dtype
        )
        assert report.ok, report.table()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loop", [False, True], ids=["unrolled", "loop"])
def test_a_second_backward_through_the_same_graph_gives_the_same_gradients(cell, loop):
    """The backward writes into buffers of its own, never into what the forward saved: with
    retain_graph=True a second backward gives the first one's gradients again, as torch's."""
    torch.manual_seed(3)
    d = derivation(cell=cell, steps=5, input_size=3, hidden_size=4, loop=loop)
    reference = torch_reference(d.spec, "cpu", torch.float64)
    module = getattr(d.load(), d.spec.torch_class)(dtype=torch.float64)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    output, _ = module(x)
    g = torch.randn_like(output)
    output.backward(g, retain_graph=True)
    first = x.grad.clone()
    output.backward(g)
    expected_x = torch.autograd.grad(reference(x)[0], x, g)[0]
    torch.testing.assert_close(first, expected_x, rtol=1e-10, atol=0)
    torch.testing.assert_close(x.grad, 2 * first, rtol=1e-12, atol=0)
