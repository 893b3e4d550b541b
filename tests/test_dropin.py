"""The generated modules as drop-ins for torch's: class, constructor, checks, torch.func,
PackedSequence input, any length in the loop form, and no silent double backward.

Expected values come from torch's own modules (autograd) with the same weights.
"""

from __future__ import annotations

import pytest
import torch
from conftest import derivation, generated
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

D = torch.float64
TOL = 1e-10

LAYERS = [
    dict(cell="rnn", steps=3, input_size=1, hidden_size=2),
    dict(cell="rnn", steps=4, input_size=3, hidden_size=2, nonlinearity="relu", bias=False),
    dict(cell="lstm", steps=3, input_size=2, hidden_size=3),
    dict(cell="lstm", steps=3, input_size=2, hidden_size=4, proj_size=2),
    dict(cell="gru", steps=2, input_size=3, hidden_size=2),
    dict(cell="gru", steps=20, input_size=2, hidden_size=3),
    dict(cell="lstm", steps=4, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
    dict(cell="rnn", steps=18, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
]
CELLS = [
    dict(cell="rnn_cell", input_size=2, hidden_size=3),
    dict(cell="lstm_cell", input_size=3, hidden_size=2),
    dict(cell="gru_cell", input_size=2, hidden_size=3),
]


def _pair(kwargs, **options):
    """The generated module and torch's, with the same float64 weights."""
    spec = derivation(**kwargs).spec
    gen = getattr(generated(**kwargs), spec.torch_class)(dtype=D, **options)
    torch_kwargs = {"input_size": spec.input_size, "hidden_size": spec.hidden_size}
    torch_kwargs["bias"] = spec.bias
    if spec.torch_class in ("RNN", "RNNCell"):
        torch_kwargs["nonlinearity"] = spec.nonlinearity
    if not spec.is_cell:
        torch_kwargs.update(num_layers=spec.num_layers, bidirectional=spec.bidirectional)
    if spec.proj_size:
        torch_kwargs["proj_size"] = spec.proj_size
    ref = getattr(torch.nn, spec.torch_class)(**torch_kwargs, dtype=D, **options)
    ref.load_state_dict(gen.state_dict())
    return spec, gen, ref


def _flat(out):
    items = out if isinstance(out, tuple) else (out,)
    return [t for item in items for t in (item if isinstance(item, tuple) else (item,))]


def _grads(module, args, seed=1, call=None):
    """Outputs of ``call`` (default: the module) on args, and their gradients with respect to
    the tensors of args that require grad and every parameter, under random cotangents."""
    outputs = _flat((call or module)(*args))
    generator = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(o.shape, dtype=D, generator=generator) for o in outputs]
    leaves = [a for a in _flat(tuple(args)) if a is not None and a.requires_grad]
    return outputs, torch.autograd.grad(outputs, [*leaves, *module.parameters()], cotangents)


def _assert_close(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert (g - e).abs().max() <= TOL * max(1.0, e.abs().max().item())


@pytest.mark.parametrize("kwargs", LAYERS + CELLS, ids=str)
def test_a_subclass_of_torchs_class_with_its_repr_and_attributes(kwargs):
    spec, gen, ref = _pair(kwargs)
    assert isinstance(gen, type(ref))
    base = torch.nn.RNNCellBase if spec.is_cell else torch.nn.RNNBase
    assert isinstance(gen, base)
    assert repr(gen) == repr(ref)
    assert [n for n, _ in gen.named_parameters()] == [n for n, _ in ref.named_parameters()]
    names = ["input_size", "hidden_size", "bias"]
    if not spec.is_cell:
        names += ["mode", "num_layers", "batch_first", "dropout", "bidirectional", "proj_size"]
        pairs = zip(sum(gen.all_weights, []), sum(ref.all_weights, []), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
        before = [p.clone() for p in gen.parameters()]
        gen.flatten_parameters()
        assert all(torch.equal(a, b) for a, b in zip(before, gen.parameters(), strict=True))
    for name in names:
        assert getattr(gen, name) == getattr(ref, name), name


def test_constructed_with_torchs_arguments():
    module = generated(cell="lstm", steps=3, input_size=2, hidden_size=4, proj_size=2)
    layer = module.LSTM(2, 4, 1, True, True, proj_size=2)  # torch's positional order
    assert layer.batch_first is True
    with pytest.raises(ValueError, match="generated for input_size=2, got 5"):
        module.LSTM(5, 4, proj_size=2)
    with pytest.raises(ValueError, match="generated for num_layers=1"):
        module.LSTM(num_layers=2)
    cell = generated(cell="rnn_cell", input_size=2, hidden_size=3).RNNCell
    with pytest.raises(ValueError, match="generated for nonlinearity='tanh'"):
        cell(nonlinearity="relu")


@pytest.mark.parametrize(
    "arguments",
    [{"batch_first": "False"}, {"input_size": 3.0}, {"hidden_size": "10"}, {"bias": 1}],
    ids=str,
)
def test_torchs_type_checks(arguments):
    module = generated(cell="gru", steps=2, input_size=3, hidden_size=2)
    with pytest.raises(TypeError) as expected:
        torch.nn.GRU(**{"input_size": 3, "hidden_size": 2, **arguments})
    with pytest.raises(TypeError) as got:
        module.GRU(**arguments)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("kwargs", [LAYERS[0], LAYERS[6], CELLS[1]], ids=str)
def test_an_input_of_another_dtype_gets_torchs_message(kwargs):
    spec, gen, ref = _pair(kwargs)
    shape = (2, spec.input_size) if spec.is_cell else (3, 2, spec.input_size)
    x = torch.zeros(shape, dtype=torch.float32)
    message = r"input dtype \(torch.float32\) does not match weight dtype \(torch.float64\)"
    if not spec.is_cell:  # torch's cells fail in a matmul instead
        with pytest.raises(ValueError, match=message):
            ref(x)
    with pytest.raises(ValueError, match=message):
        gen(x)


def _input(spec, steps=None, batch=(2,), seed=0):
    shape = (
        (*batch, spec.input_size)
        if spec.is_cell
        else (steps or spec.steps, *batch, spec.input_size)
    )
    return torch.randn(shape, dtype=D, generator=torch.Generator().manual_seed(seed))


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("kwargs", LAYERS + CELLS, ids=str)
def test_torch_func_grad_jacrev_and_functional_call(kwargs):
    spec, gen, ref = _pair(kwargs)
    x = _input(spec)
    weights = torch.randn(_first(ref(x)).shape, dtype=D)

    def loss(params, x, module):
        return (torch.func.functional_call(module, params, (x,))[0] * weights).sin().sum()

    params = {k: v.detach() for k, v in gen.named_parameters()}
    got, expected = (torch.func.grad(loss, argnums=(0, 1))(params, x, m) for m in (gen, ref))
    _assert_close([*got[0].values(), got[1]], [*expected[0].values(), expected[1]])
    got, expected = (torch.func.jacrev(lambda x, m=m: _first(m(x)))(x) for m in (gen, ref))
    _assert_close([got], [expected])


@pytest.mark.parametrize("kwargs", LAYERS[:1] + LAYERS[2:3] + LAYERS[6:7] + CELLS[1:2], ids=str)
def test_torch_func_vmap_and_per_sample_gradients(kwargs):
    spec, gen, ref = _pair(kwargs)
    xs = _input(spec, batch=(4, 2))  # vmapped over dim -3 (layers) or 0 (cells)
    dim = 0 if spec.is_cell else 1
    params = {k: v.detach() for k, v in gen.named_parameters()}
    got = torch.func.vmap(lambda x: _first(torch.func.functional_call(gen, params, (x,))), dim)(xs)
    expected = torch.stack([_first(ref(x)) for x in xs.unbind(dim)])
    _assert_close([got], [expected])

    samples = _input(spec, batch=(3,), seed=4)  # per-sample gradients over the batch
    dim = 0 if spec.is_cell else 1

    def loss(params, x):  # one sample, as a batch of one
        return _first(torch.func.functional_call(gen, params, (x.unsqueeze(dim),))).pow(2).sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, dim))(params, samples)
    for i, x in enumerate(samples.unbind(dim)):
        ref.zero_grad()
        _first(ref(x.unsqueeze(dim))).pow(2).sum().backward()
        _assert_close([per_sample[k][i] for k in params], [p.grad for p in ref.parameters()])


@pytest.mark.parametrize("kwargs", [LAYERS[0], LAYERS[3], LAYERS[5], LAYERS[6], CELLS[1]], ids=str)
def test_double_backward_raises_instead_of_a_wrong_number(kwargs):
    spec, gen, _ = _pair(kwargs)
    x = _input(spec).requires_grad_()
    (grad_x,) = torch.autograd.grad(_first(gen(x)).pow(3).sum(), x, create_graph=True)
    assert grad_x.requires_grad
    penalty = grad_x.pow(2).sum()  # a gradient penalty, as WGAN-GP's
    with pytest.raises(RuntimeError, match="double backward"):
        penalty.backward()
    params = {k: v.detach() for k, v in gen.named_parameters()}

    def inner(x):
        return torch.func.grad(
            lambda x: _first(torch.func.functional_call(gen, params, (x,))).pow(3).sum()
        )(x)

    with pytest.raises(RuntimeError, match="double backward"):
        torch.func.grad(lambda x: inner(x).sum())(x.detach())


def test_first_order_create_graph_values_are_still_right():
    """create_graph=True alone (the gradient not differentiated again) gives torch's values."""
    spec, gen, ref = _pair(LAYERS[2])
    x = _input(spec).requires_grad_()
    got, expected = (
        torch.autograd.grad(_first(m(x)).pow(3).sum(), [x, *m.parameters()], create_graph=True)
        for m in (gen, ref)
    )
    _assert_close([g.detach() for g in got], [e.detach() for e in expected])


PACKED = [
    dict(cell="rnn", steps=20, input_size=2, hidden_size=3),
    dict(cell="lstm", steps=20, input_size=3, hidden_size=4, proj_size=2),
    dict(cell="gru", steps=17, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
    dict(cell="lstm", steps=18, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
]


@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("kwargs", PACKED, ids=str)
def test_packed_sequences_into_modules_generated_without_packed(kwargs, with_hx, enforce_sorted):
    spec, gen, ref = _pair(kwargs)
    lengths = [6, 6, 4, 1] if enforce_sorted else [4, 6, 1, 6]
    padded = _input(spec, steps=6, batch=(4,)).requires_grad_()
    count = spec.num_layers * spec.directions
    hx = None
    if with_hx:
        generator = torch.Generator().manual_seed(3)
        h0 = torch.randn(count, 4, spec.output_size, dtype=D, generator=generator)
        c0 = torch.randn(count, 4, spec.hidden_size, dtype=D, generator=generator)
        hx = (h0.requires_grad_(), c0.requires_grad_()) if spec.family == "lstm" else h0
        hx = hx if spec.family == "lstm" else hx.requires_grad_()

    def run(module):
        def call(padded, hx):
            output, final = module(
                pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted), hx
            )
            assert isinstance(output, torch.nn.utils.rnn.PackedSequence)
            return pad_packed_sequence(output)[0], final

        return call

    got = _grads(gen, [padded, hx], call=run(gen))
    expected = _grads(ref, [padded, hx], call=run(ref))
    _assert_close(got[0], expected[0])
    _assert_close(got[1], expected[1])


def test_packed_sequences_into_an_unrolled_module_need_its_length():
    spec, gen, ref = _pair(LAYERS[2])
    padded = _input(spec, batch=(3,))
    full = pack_padded_sequence(padded, [3, 3, 3])
    _assert_close(_flat(gen(full)[1]), _flat(ref(full)[1]))
    with pytest.raises(ValueError, match="generated for 3 steps but the input has 2"):
        gen(pack_padded_sequence(padded, [3, 2, 2]))


@pytest.mark.parametrize("steps", [1, 5, 23, 40])
@pytest.mark.parametrize("kwargs", [LAYERS[5], LAYERS[7], PACKED[1]], ids=str)
def test_a_loop_form_module_runs_any_length(kwargs, steps):
    spec, gen, ref = _pair(kwargs, batch_first=True)
    x = _input(spec, steps=steps, batch=(2,)).transpose(0, 1).contiguous().requires_grad_()
    got, expected = _grads(gen, [x]), _grads(ref, [x])
    _assert_close(got[0], expected[0])
    _assert_close(got[1], expected[1])
    unbatched = x[0].detach().requires_grad_()
    _assert_close(_grads(gen, [unbatched])[1], _grads(ref, [unbatched])[1])


def test_an_unrolled_module_keeps_its_length():
    spec, gen, _ = _pair(LAYERS[0])
    with pytest.raises(ValueError, match="generated for 3 steps but the input has 4"):
        gen(_input(spec, steps=4))


def test_packed_sequences_with_an_hx_of_another_shape_are_refused():
    spec, gen, ref = _pair(PACKED[0])
    sequence = pack_padded_sequence(_input(spec, steps=4, batch=(2,)), [4, 2])
    wrong = torch.zeros(2, 2, spec.hidden_size, dtype=D)  # two layers' worth for one layer
    with pytest.raises(RuntimeError):
        ref(sequence, wrong)
    with pytest.raises(ValueError, match=r"expected h of shape \(1, 2, 3\)"):
        gen(sequence, wrong)
