"""Layers, directions, projections, packed sequences and dropout, against torch.

In the spirit of PyTorch's own ``_test_RNN_cpu_vs_cudnn``: every combination of cell × bias ×
bidirectional × batch_first × num_layers × packed variable lengths × nonlinearity, plus LSTM
projections, in float64 with random cotangents on output, h_n and c_n; every parameter, input
and state gradient is compared (``symbptt.verification.verify.compare``: torch's module with the
same
weights, differentiated by autograd, is the reference). Dropout is compared with explicit
masks against autograd of the same masked forward built from torch's one-layer modules.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import derivation, generated

from symbptt.verification.verify import compare

LENGTHS = [7, 5, 5, 2, 1, 1]
GRID = [
    dict(cell=cell, nonlinearity=nonlinearity, num_layers=layers, bidirectional=bi)
    for cell, nonlinearity in (("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh"))
    for layers, bi in itertools.product((1, 2), (False, True))
] + [
    dict(cell="lstm", nonlinearity="tanh", num_layers=layers, bidirectional=bi, proj_size=2)
    for layers, bi in itertools.product((1, 2), (False, True))
]


def _id(spec: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in spec.items() if k != "nonlinearity" or v != "tanh")


def _kwargs(spec: dict, bias: bool) -> dict:
    kwargs = dict(spec, steps=7, input_size=3, hidden_size=4, bias=bias, packed=True)
    if kwargs["cell"] != "rnn":
        kwargs.pop("nonlinearity")
    return kwargs


@pytest.mark.parametrize("spec", GRID, ids=_id)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(
    "mode",
    [
        dict(batch=3, batch_first=False),
        dict(batch=3, batch_first=True),
        dict(batch=None),
        dict(lengths=LENGTHS),
    ],
    ids=["batched", "batch_first", "unbatched", "packed"],
)
def test_network_matches_torch(spec, bias, mode):
    kwargs = _kwargs(spec, bias)
    report = compare(derivation(**kwargs), generated(**kwargs), scale=2.0, seed=5, **mode)
    assert report.ok, report.table()
    assert any("reverse" in c.name for c in report.checks) == spec["bidirectional"]


@pytest.mark.parametrize(
    "extra", [dict(cell="gru"), dict(cell="lstm", proj_size=2), dict(cell="rnn")], ids=str
)
def test_loop_form_network_with_packed_input(extra):
    kwargs = dict(
        steps=20,
        input_size=2,
        hidden_size=3,
        num_layers=2,
        bidirectional=True,
        packed=True,
        **extra,
    )
    assert derivation(**kwargs).spec.loop_form
    for lengths in ([20, 13, 13, 4, 1], [5, 2]):
        report = compare(derivation(**kwargs), generated(**kwargs), lengths=lengths)
        assert report.ok, report.table()


def test_default_state_and_shorter_packed_batch():
    kwargs = dict(cell="lstm", steps=7, input_size=3, hidden_size=4, num_layers=2, packed=True)
    report = compare(derivation(**kwargs), generated(**kwargs), lengths=[3, 2], given_state=False)
    assert report.ok, report.table()


def _layered_reference(spec, module, x, states, masks):
    """torch's one-layer modules with ``module``'s weights, run layer by layer with the
    dropout masks applied between layers: the independent reference for dropout."""
    cls = getattr(torch.nn, spec.torch_class)
    D, L = spec.directions, spec.num_layers
    params, outputs_h, outputs_c = [], [], []
    layer_input = x
    for k in range(L):
        options = dict(bidirectional=spec.bidirectional, bias=spec.bias, dtype=torch.float64)
        if spec.proj_size:
            options["proj_size"] = spec.proj_size
        one = cls(layer_input.shape[-1], spec.hidden_size, **options)
        for name, p in one.named_parameters():
            source = name.replace("_l0", f"_l{k}")
            p.data = getattr(module, source).detach().clone().requires_grad_()
            params.append((source, p))
        hx = tuple(s[k * D : (k + 1) * D] for s in states)
        out, final = one(layer_input, hx if spec.family == "lstm" else hx[0])
        final = final if spec.family == "lstm" else (final,)
        outputs_h.append(final[0])
        if spec.family == "lstm":
            outputs_c.append(final[1])
        layer_input = out * masks[k] if k < L - 1 else out
    finals = [torch.cat(outputs_h)] + ([torch.cat(outputs_c)] if outputs_c else [])
    return layer_input, finals, params


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_masks_in_training_mode(cell, bidirectional):
    """The module draws its masks with torch.bernoulli; its backward must reuse them."""
    kwargs = dict(
        cell=cell,
        steps=4,
        input_size=3,
        hidden_size=2,
        num_layers=3,
        bidirectional=bidirectional,
        dropout=0.4,
    )
    spec = derivation(**kwargs).spec
    module = generated(**kwargs).__dict__[spec.torch_class](dtype=torch.float64)
    module.train()
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    count = spec.num_layers * spec.directions
    states = [torch.randn(count, 5, 2, generator=gen, dtype=torch.float64)]
    if cell == "lstm":
        states.append(torch.randn(count, 5, 2, generator=gen, dtype=torch.float64))
    g_out = torch.randn(4, 5, spec.directions * 2, generator=gen, dtype=torch.float64)
    g_finals = [torch.randn_like(s) for s in states]

    torch.manual_seed(123)
    xi = x.clone().requires_grad_()
    si = [s.clone().requires_grad_() for s in states]
    output, finals = module(xi, tuple(si) if cell == "lstm" else si[0])
    finals = finals if cell == "lstm" else (finals,)
    ours = torch.autograd.grad(
        [output, *finals], [xi, *si, *module.parameters()], [g_out, *g_finals]
    )

    torch.manual_seed(123)  # the same draw the module makes
    keep = x.new_full((spec.num_layers - 1, 4, 5, spec.directions * 2), 1 - spec.dropout)
    masks = torch.bernoulli(keep) / (1 - spec.dropout)
    assert (masks == 0).any() and (masks != 0).any()
    xr = x.clone().requires_grad_()
    sr = [s.clone().requires_grad_() for s in states]
    out_r, finals_r, params = _layered_reference(spec, module, xr, sr, masks)
    names = [name for name, _ in module.named_parameters()]
    by_name = dict(params)
    theirs = torch.autograd.grad(
        [out_r, *finals_r], [xr, *sr, *(by_name[n] for n in names)], [g_out, *g_finals]
    )
    assert torch.allclose(output, out_r, rtol=1e-12, atol=1e-13)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_is_off_in_eval_mode():
    kwargs = dict(cell="gru", steps=3, input_size=2, hidden_size=2, num_layers=2, dropout=0.5)
    report = compare(derivation(**kwargs), generated(**kwargs))
    assert report.ok, report.table()


def test_packed_errors():
    module = generated(cell="gru", steps=3, input_size=1, hidden_size=2, num_layers=2)
    seq = torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(3, 2, 1), [3, 1])
    with pytest.raises(ValueError, match="generated for 3 steps but the input has 1"):
        module.GRU()(seq)  # unrolled: each length group must have the generated length
    packed = generated(cell="gru", steps=3, input_size=1, hidden_size=2, packed=True)
    too_long = torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(4, 2, 1), [4, 1])
    with pytest.raises(ValueError, match="at most 3 steps but the longest sequence has 4"):
        packed.GRU()(too_long)
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 5, 2\)"):
        module.GRU()(torch.zeros(3, 5, 1), torch.zeros(1, 5, 2))
