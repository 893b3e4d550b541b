"""The loop form runs any sequence length; the unrolled form keeps the one it was derived for.

A module generated for 4 steps with ``loop=True`` is run through its plain ``forward`` and
``backward`` (and ``network_forward``/``network_backward``) at T = 1, 4, 5, 23, batched (B = 3)
and as one sequence (B = 1, against torch's unbatched call), float64, with random cotangents on
every output. The expected values are torch autograd of torch's own module with the same
weights (for truncation, over chunks of k steps with the state detached in between; for
dropout, torch's one-layer modules with the same masks multiplied in between).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import generated

TOL = 1e-10
DERIVED_STEPS = 4
LENGTHS = [1, 4, 5, 23]  # 23: far above the 4 steps the module was derived for
LAYERS = [
    dict(cell="rnn"),
    dict(cell="rnn", nonlinearity="relu", bias=False),
    dict(cell="lstm"),
    dict(cell="lstm", proj_size=2),
    dict(cell="gru"),
]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale else 1.0)


def _kwargs(spec: dict) -> dict:
    return dict(spec, steps=DERIVED_STEPS, input_size=3, hidden_size=5, loop=True)


def _torch_layer(spec: dict, input_size: int = 3, **options) -> torch.nn.Module:
    """torch's own module for ``spec`` (float64), weights from torch's init, scaled by 2 so
    that relu units switch on and off and the gates leave their linear range."""
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec["cell"]]
    if spec["cell"] == "rnn":
        options["nonlinearity"] = spec.get("nonlinearity", "tanh")
    if spec.get("proj_size"):
        options["proj_size"] = spec["proj_size"]
    module = cls(input_size, 5, bias=spec.get("bias", True), dtype=torch.float64, **options)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(2.0)
    return module


def _states(spec: dict, count: int, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random initial states by their torch names, (count, batch, size)."""
    size = spec.get("proj_size") or 5
    states = {"h_0": torch.randn(count, batch, size, generator=gen, dtype=torch.float64)}
    if spec["cell"] == "lstm":
        states["c_0"] = torch.randn(count, batch, 5, generator=gen, dtype=torch.float64)
    return states


def _call(function, values: dict):
    """Call a generated function with the arguments its signature names, from ``values``."""
    names = [n for n in inspect.signature(function).parameters if n != "per_step"]
    return function(*[values[n] for n in names])


def _layer_arguments(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The generated functions' parameter arguments (``weight_ih``) from torch's tensors."""
    return {name.removesuffix("_l0"): p.detach() for name, p in module.named_parameters()}


def _autograd(outputs, cotangents, inputs) -> list[torch.Tensor]:
    return list(torch.autograd.grad(outputs, inputs, cotangents))


@pytest.mark.parametrize("spec", LAYERS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("steps", LENGTHS)
@pytest.mark.parametrize("batch", [3, 1], ids=["batched", "one-sequence"])
def test_layer_at_any_length_matches_torch(spec, steps, batch):
    gen = torch.Generator().manual_seed(steps * 10 + batch)
    torch.manual_seed(steps)
    module = generated(**_kwargs(spec))
    assert module.ANY_LENGTH is True and module.STEPS == DERIVED_STEPS
    reference = _torch_layer(spec)
    lstm = spec["cell"] == "lstm"
    x = torch.randn(steps, batch, 3, generator=gen, dtype=torch.float64)
    states = _states(spec, 1, batch, gen)
    out_size = spec.get("proj_size") or 5
    g = torch.randn(steps, batch, out_size, generator=gen, dtype=torch.float64)
    g_states = {k: torch.randn_like(v) for k, v in states.items()}

    # torch: unbatched input when there is one sequence, so both of its paths are covered
    unbatched = batch == 1
    xr = (x[:, 0] if unbatched else x).clone().requires_grad_()
    sr = {k: (v[:, 0] if unbatched else v).clone().requires_grad_() for k, v in states.items()}
    out_r, finals_r = reference(xr, (sr["h_0"], sr["c_0"]) if lstm else sr["h_0"])
    finals_r = finals_r if lstm else (finals_r,)
    cot = [g[:, 0] if unbatched else g]
    cot += [(v[:, 0] if unbatched else v) for v in g_states.values()]
    params = list(reference.parameters())
    expected = _autograd([out_r, *finals_r], cot, [xr, *sr.values(), *params])

    values = {"x": x, "h0": states["h_0"][0], "grad_output": g, "grad_h_n": g_states["h_0"][0]}
    if lstm:
        values |= {"c0": states["c_0"][0], "grad_c_n": g_states["c_0"][0]}
    values |= _layer_arguments(reference)
    with torch.no_grad():
        output, saved = _call(module.forward, values)
        grads = _call(module.backward, values | {"saved": saved})

    if unbatched:
        expected = [e.unsqueeze(1) if i < 1 + len(states) else e for i, e in enumerate(expected)]
    assert rel_error(output, out_r.detach().reshape(output.shape)) <= TOL
    finals = [saved["h"][-1]] + ([saved["c"][-1]] if lstm else [])
    for final, final_r in zip(finals, finals_r, strict=True):
        assert rel_error(final, final_r.detach().reshape(final.shape)) <= TOL
    keys = ["input", *states, *(name for name, _ in reference.named_parameters())]
    for key, want in zip(keys, expected, strict=True):
        got = grads[key]
        assert rel_error(got.reshape(want.shape), want) <= TOL, key


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("steps", [1, 3, 5, 23])
def test_truncation_at_any_length_matches_detached_chunks(cell, steps):
    """k = 3: torch's module over chunks of 3 steps, the state detached between chunks."""
    spec = dict(cell=cell)
    module = generated(**_kwargs(spec), truncate=3)
    full = generated(**_kwargs(spec))
    gen = torch.Generator().manual_seed(steps)
    torch.manual_seed(steps + 1)
    reference = _torch_layer(spec)
    lstm = cell == "lstm"
    x = torch.randn(steps, 2, 3, generator=gen, dtype=torch.float64)
    states = _states(spec, 1, 2, gen)
    g = torch.randn(steps, 2, 5, generator=gen, dtype=torch.float64)
    g_states = {k: torch.randn_like(v) for k, v in states.items()}

    xr = x.clone().requires_grad_()
    sr = {k: v.clone().requires_grad_() for k, v in states.items()}
    state = (sr["h_0"], sr["c_0"]) if lstm else sr["h_0"]
    outputs = []
    for start in range(0, steps, 3):
        if start:
            state = tuple(s.detach() for s in state) if lstm else state.detach()
        out, state = reference(xr[start : start + 3], state)
        outputs.append(out)
    finals_r = state if lstm else (state,)
    params = list(reference.parameters())
    expected = _autograd(
        [torch.cat(outputs), *finals_r], [g, *g_states.values()], [xr, *sr.values(), *params]
    )

    values = {"x": x, "h0": states["h_0"][0], "grad_output": g, "grad_h_n": g_states["h_0"][0]}
    if lstm:
        values |= {"c0": states["c_0"][0], "grad_c_n": g_states["c_0"][0]}
    values |= _layer_arguments(reference)
    keys = ["input", *states, *(name for name, _ in reference.named_parameters())]
    results = {}
    for name, generated_module in (("truncated", module), ("full", full)):
        with torch.no_grad():
            output, saved = _call(generated_module.forward, values)
            grads = _call(generated_module.backward, values | {"saved": saved})
        assert rel_error(output, torch.cat(outputs).detach()) <= TOL
        results[name] = max(
            rel_error(grads[key].reshape(want.shape), want)
            for key, want in zip(keys, expected, strict=True)
        )
    assert results["truncated"] <= TOL
    if steps > 3:  # something crosses a cut: full BPTT must differ, so the check can fail
        assert results["full"] > 1e-3
    else:
        assert results["full"] <= TOL


NETWORKS = [dict(cell="lstm"), dict(cell="gru"), dict(cell="lstm", proj_size=2)]


def _network_reference(spec, module, x, lengths, states, dropout_masks):
    """torch's one-layer bidirectional modules with the generated network's weights, on packed
    sequences, with ``dropout_masks`` multiplied into each layer's padded output but the
    last. Returns the padded output, the final states and the parameters by torch name."""
    params, finals = {}, {k: [] for k in states}
    layer_input = x
    for layer in range(2):
        one = _torch_layer(spec, layer_input.shape[-1], bidirectional=True)
        for name, p in one.named_parameters():
            source = name.replace("_l0", f"_l{layer}")
            p.data = module[source].clone().requires_grad_()
            params[source] = p
        hx = tuple(s[2 * layer : 2 * layer + 2] for s in states.values())
        packed = torch.nn.utils.rnn.pack_padded_sequence(layer_input, lengths, enforce_sorted=False)
        out, final = one(packed, hx if spec["cell"] == "lstm" else hx[0])
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
        final = final if spec["cell"] == "lstm" else (final,)
        for key, value in zip(states, final, strict=True):
            finals[key].append(value)
        layer_input = out * dropout_masks[layer] if layer == 0 else out
    return layer_input, [torch.cat(v) for v in finals.values()], params


@pytest.mark.parametrize("spec", NETWORKS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("steps", LENGTHS)
def test_packed_bidirectional_network_with_dropout_at_any_length(spec, steps):
    kwargs = dict(_kwargs(spec), num_layers=2, bidirectional=True, packed=True, dropout=0.4)
    module = generated(**kwargs)
    assert module.ANY_LENGTH is True
    gen = torch.Generator().manual_seed(steps + 100)
    torch.manual_seed(steps + 7)
    lengths = sorted({steps, max(1, steps // 2), 1, steps}, reverse=True) + [steps]
    lengths = torch.tensor(lengths)[torch.randperm(len(lengths), generator=gen)]
    batch = len(lengths)
    mask = (torch.arange(steps).unsqueeze(1) < lengths).to(torch.float64).unsqueeze(-1)
    x = torch.randn(steps, batch, 3, generator=gen, dtype=torch.float64) * mask
    states = _states(spec, 4, batch, gen)
    out_size = spec.get("proj_size") or 5
    keep = torch.full((1, steps, batch, 2 * out_size), 0.6, dtype=torch.float64)
    dropout_masks = torch.bernoulli(keep, generator=gen) / 0.6
    g = torch.randn(steps, batch, 2 * out_size, generator=gen, dtype=torch.float64) * mask
    g_states = {k: torch.randn_like(v) for k, v in states.items()}

    weights = {}
    for layer in range(2):
        one = _torch_layer(spec, 3 if layer == 0 else 2 * out_size, bidirectional=True)
        for name, p in one.named_parameters():
            weights[name.replace("_l0", f"_l{layer}")] = p.detach()
    xr = x.clone().requires_grad_()
    sr = {k: v.clone().requires_grad_() for k, v in states.items()}
    out_r, finals_r, params = _network_reference(spec, weights, xr, lengths, sr, dropout_masks)
    expected = _autograd(
        [out_r, *finals_r], [g, *g_states.values()], [xr, *sr.values(), *params.values()]
    )

    lstm = spec["cell"] == "lstm"
    network_params = [[weights[name] for name in names] for names in module.PARAMETERS]
    values = {"x": x, "h0": states["h_0"], "mask": mask, "dropout_masks": dropout_masks}
    values |= {"params": network_params, "grad_output": g, "grad_h_n": g_states["h_0"]}
    if lstm:
        values |= {"c0": states["c_0"], "grad_c_n": g_states["c_0"]}
    with torch.no_grad():
        output, *finals, saved = _call(module.network_forward, values)
        grads = _call(module.network_backward, values | {"saved": saved})
    assert rel_error(output * mask, out_r.detach()) <= TOL
    for final, final_r in zip(finals, finals_r, strict=True):
        assert rel_error(final, final_r.detach()) <= TOL
    for key, want in zip(["input", *states, *params], expected, strict=True):
        assert rel_error(grads[key], want) <= TOL, key


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed-without-mask"])
@pytest.mark.parametrize("steps", LENGTHS)
def test_network_without_masks_at_any_length_matches_torch(packed, steps):
    """Two bidirectional layers, no dropout and every sequence of full length (mask None),
    against torch.nn.LSTM(num_layers=2, bidirectional=True) itself."""
    spec = dict(cell="lstm")
    module = generated(**_kwargs(spec), num_layers=2, bidirectional=True, packed=packed)
    gen = torch.Generator().manual_seed(steps + 200)
    torch.manual_seed(steps + 3)
    reference = _torch_layer(spec, num_layers=2, bidirectional=True)
    x = torch.randn(steps, 2, 3, generator=gen, dtype=torch.float64)
    states = _states(spec, 4, 2, gen)
    g = torch.randn(steps, 2, 10, generator=gen, dtype=torch.float64)
    g_states = {k: torch.randn_like(v) for k, v in states.items()}
    xr = x.clone().requires_grad_()
    sr = {k: v.clone().requires_grad_() for k, v in states.items()}
    out_r, finals_r = reference(xr, tuple(sr.values()))
    params = dict(reference.named_parameters())
    inputs = [xr, *sr.values(), *params.values()]
    expected = _autograd([out_r, *finals_r], [g, *g_states.values()], inputs)

    weights = {name: p.detach() for name, p in params.items()}
    values = {"x": x, "h0": states["h_0"], "c0": states["c_0"], "mask": None}
    values |= {"dropout_masks": None, "grad_output": g, "grad_h_n": g_states["h_0"]}
    values |= {"params": [[weights[n] for n in names] for names in module.PARAMETERS]}
    values["grad_c_n"] = g_states["c_0"]
    with torch.no_grad():
        output, *finals, saved = _call(module.network_forward, values)
        grads = _call(module.network_backward, values | {"saved": saved})
    assert rel_error(output, out_r.detach()) <= TOL
    for final, final_r in zip(finals, finals_r, strict=True):
        assert rel_error(final, final_r.detach()) <= TOL
    for key, want in zip(["input", *states, *params], expected, strict=True):
        assert rel_error(grads[key], want) <= TOL, key


def test_unrolled_form_and_cells_keep_their_length():
    unrolled = generated(cell="lstm", steps=DERIVED_STEPS, input_size=3, hidden_size=5)
    assert unrolled.ANY_LENGTH is False
    assert generated(cell="gru_cell", input_size=3, hidden_size=5).ANY_LENGTH is False
    x = torch.zeros(DERIVED_STEPS + 1, 2, 3)
    weights = _layer_arguments(_torch_layer(dict(cell="lstm")).float())
    values = {"x": x, "h0": torch.zeros(2, 5), "c0": torch.zeros(2, 5), **weights}
    with pytest.raises(ValueError, match="forward: written out for exactly 4 steps, but x has 5"):
        _call(unrolled.forward, values)
    values |= {"saved": {}, "grad_output": torch.zeros(5, 2, 5), "grad_h_n": torch.zeros(2, 5)}
    with pytest.raises(ValueError, match="backward: written out for exactly 4 steps, but x has 5"):
        _call(unrolled.backward, values | {"grad_c_n": torch.zeros(2, 5)})


def test_an_empty_sequence_is_a_clear_error():
    module = generated(**_kwargs(dict(cell="gru")))
    weights = _layer_arguments(_torch_layer(dict(cell="gru")))
    values = {"x": torch.zeros(0, 2, 3, dtype=torch.float64), "h0": torch.zeros(2, 5), **weights}
    with pytest.raises(ValueError, match=r"at least one step, got shape \(0, 2, 3\)"):
        _call(module.forward, values)
