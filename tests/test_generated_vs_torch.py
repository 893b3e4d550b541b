"""The generated module's gradients against torch.nn.RNN + autograd, float64, rel <= 1e-10.

Expected values come from torch autograd of torch's own nn.RNN with the same weights; the
cotangents on output and h_n are random.
"""

from __future__ import annotations

import pytest
import torch
from conftest import generated

TOL = 1e-10

SPECS = [
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
MODES = [  # (batched, batch_first, given h0)
    (False, False, False),
    (False, False, True),
    (True, False, False),
    (True, False, True),
    (True, True, False),
    (True, True, True),
]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale else 1.0)


def _spec_id(spec: dict) -> str:
    return "-".join(f"{k[0]}{v}" for k, v in spec.items())


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "b{}-bf{}-h{}".format(*map(int, m)))
def test_gradients_match_torch(spec, nonlinearity, bias, mode):
    batched, batch_first, given_h0 = mode
    module = generated(**spec, nonlinearity=nonlinearity, bias=bias)
    steps, n_in, n_h = spec["steps"], spec["input_size"], spec["hidden_size"]
    gen = torch.Generator().manual_seed(hash((steps, n_in, n_h, bias, mode)) % 2**31)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    torch.manual_seed(steps * 100 + n_h)
    reference = torch.nn.RNN(
        n_in,
        n_h,
        nonlinearity=nonlinearity,
        bias=bias,
        batch_first=batch_first,
        dtype=torch.float64,
    )
    with torch.no_grad():  # larger weights than the default init, so relu units switch
        for p in reference.parameters():
            p.mul_(2.0)
    layer = module.RNN(batch_first=batch_first, dtype=torch.float64)
    layer.load_state_dict(reference.state_dict())

    batch = 3
    if not batched:
        x, h0, g_out, g_hn = randn(steps, n_in), randn(1, n_h), randn(steps, n_h), randn(1, n_h)
    else:
        x = randn(batch, steps, n_in) if batch_first else randn(steps, batch, n_in)
        g_out = randn(*x.shape[:2], n_h)
        h0, g_hn = randn(1, batch, n_h), randn(1, batch, n_h)

    results = []
    for rnn in (layer, reference):
        xi = x.clone().requires_grad_()
        hi = h0.clone().requires_grad_()
        output, h_n = rnn(xi, hi) if given_h0 else rnn(xi)
        wrt = [xi, *rnn.parameters()] + ([hi] if given_h0 else [])
        grads = torch.autograd.grad((output, h_n), wrt, (g_out, g_hn))
        results.append((output.detach(), h_n.detach(), *grads))
    ours, theirs = results
    assert ours[0].shape == theirs[0].shape and ours[1].shape == theirs[1].shape
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert rel_error(a, b) <= TOL


def _per_step_reference(steps, n_in, n_h, nonlinearity, seed):
    """Autograd with a separate copy of every parameter at every step: the grad of the copy
    used at step t is that step's term, independently of the derivation."""
    gen = torch.Generator().manual_seed(seed)
    batch = 2
    w_ih, w_hh = torch.randn(n_h, n_in, generator=gen), torch.randn(n_h, n_h, generator=gen)
    b_ih, b_hh = torch.randn(n_h, generator=gen), torch.randn(n_h, generator=gen)
    params = [p.double() for p in (w_ih, w_hh, b_ih, b_hh)]
    x = torch.randn(steps, batch, n_in, generator=gen, dtype=torch.float64)
    h0 = torch.randn(batch, n_h, generator=gen, dtype=torch.float64)
    g_out = torch.randn(steps, batch, n_h, generator=gen, dtype=torch.float64)
    g_hn = torch.randn(batch, n_h, generator=gen, dtype=torch.float64)
    copies = [[p.clone().requires_grad_() for p in params] for _ in range(steps)]
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    h, outputs = h0, []
    for t in range(steps):
        a, b, c, d = copies[t]
        h = act(x[t] @ a.T + c + h @ b.T + d)
        outputs.append(h)
    loss = (torch.stack(outputs) * g_out).sum() + (h * g_hn).sum()
    loss.backward()
    per_step = [torch.stack([copies[t][i].grad for t in range(steps)]) for i in range(4)]
    return params, x, h0, g_out, g_hn, per_step


@pytest.mark.parametrize(
    "spec",
    [
        dict(steps=1, input_size=2, hidden_size=3),
        dict(steps=4, input_size=3, hidden_size=2),
        dict(steps=4, input_size=3, hidden_size=2, loop=True),
    ],
    ids=_spec_id,
)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_per_step_terms_match_autograd(spec, nonlinearity):
    module = generated(**spec, nonlinearity=nonlinearity)
    steps, n_in, n_h = spec["steps"], spec["input_size"], spec["hidden_size"]
    params, x, h0, g_out, g_hn, expected = _per_step_reference(steps, n_in, n_h, nonlinearity, 7)
    output = module.forward(x, h0, *params)
    grads = module.backward(x, h0, output, params[0], params[1], g_out, g_hn, per_step=True)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    for name, want in zip(names, expected, strict=True):
        got = grads["per_step"][name]
        assert got.shape == want.shape
        assert rel_error(got, want) <= TOL
        assert rel_error(got.sum(0), grads[name]) <= TOL


@pytest.mark.parametrize(
    "spec",
    [
        dict(steps=1, input_size=2, hidden_size=2),
        dict(steps=3, input_size=1, hidden_size=2),
        dict(steps=4, input_size=3, hidden_size=2, nonlinearity="relu"),
        dict(steps=19, input_size=2, hidden_size=2),
    ],
    ids=_spec_id,
)
def test_autograd_function_passes_gradcheck(spec):
    module = generated(**spec)
    gen = torch.Generator().manual_seed(3)
    n_in, n_h = spec["input_size"], spec["hidden_size"]

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    inputs = (
        leaf(spec["steps"], 2, n_in),
        leaf(2, n_h),
        leaf(n_h, n_in),
        leaf(n_h, n_h),
        leaf(n_h),
        leaf(n_h),
    )
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
    with pytest.raises(ValueError, match=message):
        layer(bad())


def test_wrong_hidden_shape_is_a_clear_error():
    layer = generated(steps=3, input_size=1, hidden_size=2).RNN()
    with pytest.raises(ValueError, match=r"expected hidden size \(1, 4, 2\)"):
        layer(torch.zeros(3, 4, 1), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r"expected hidden size \(1, 2\)"):
        layer(torch.zeros(3, 1), torch.zeros(1, 1, 2))


def test_float32_within_documented_tolerance():
    from conftest import derivation

    from symbptt.verify import TOLERANCE, verify

    report = verify(derivation(steps=30, input_size=4, hidden_size=8), dtype="float32")
    assert report.ok, report.table()
    assert TOLERANCE["float32"] == 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cudnn():
    from conftest import derivation

    from symbptt.verify import verify

    for dtype in ("float64", "float32"):
        report = verify(
            derivation(steps=10, input_size=3, hidden_size=4), device="cuda", dtype=dtype
        )
        assert report.ok, report.table()
