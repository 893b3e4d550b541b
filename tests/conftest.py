"""Shared fixtures: derivations and generated modules are cached per spec."""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import pytest

import symbptt


@functools.cache
def derivation(**kwargs) -> symbptt.Derivation:
    return symbptt.derive(**kwargs)


@functools.cache
def generated(**kwargs):
    """The generated module for ``symbptt.derive(**kwargs)``, loaded from its source."""
    return derivation(**kwargs).load()


@pytest.fixture
def founding():
    return derivation(steps=3, input_size=1, hidden_size=2)


def ruff() -> str:
    """The ruff executable of this environment (a test dependency)."""
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is a test dependency: pip install -e '.[test]'")
    return found


def block_tensors(derivation: symbptt.Derivation, tensor_of) -> dict:
    """Each parameter block: its rows of torch's stacked tensor (gates i, f, g, o / r, z, n).

    ``tensor_of`` maps a torch parameter name to the stacked tensor (its value or its grad).
    """
    tensors = {}
    for parameter in derivation.parameters:
        stacked = tensor_of(parameter.torch_name)
        assert tuple(stacked.shape) == parameter.shape
        rows = 0
        for block in parameter.blocks:
            tensors[block] = stacked[rows : rows + block.shape[0]]
            rows += block.shape[0]
        assert rows == stacked.shape[0]
    return tensors


def autograd_case(derivation: symbptt.Derivation, seed: int) -> tuple[dict, dict]:
    """torch autograd on torch's own module, the independent reference for a derivation.

    The module (float64, torch's init under ``seed``) runs one unbatched sequence: random x,
    initial states, output cotangents gₜ and final-state cotangents, and
    L = Σₜ gₜ·outputₜ + Σ gₙ·state_T is backpropagated. Returns ``(leaves, expected)``: every
    leaf of the derivation (the keys of ``scalar.scalar_symbols``) as the tensor it had, and
    each gradient label's torch gradient as a row-major list.
    """
    import torch

    from symbptt.core.program import at_step
    from symbptt.verification.agreement import torch_reference

    spec = derivation.spec
    steps, lstm = spec.steps, spec.family == "lstm"
    torch.manual_seed(seed)
    module = torch_reference(spec, "cpu", torch.float64)
    x = torch.randn(steps, spec.input_size, dtype=torch.float64, requires_grad=True)
    initial = {"h": torch.randn(spec.output_size, dtype=torch.float64, requires_grad=True)}
    final_g = {"h": torch.randn(spec.output_size, dtype=torch.float64)}
    if lstm:
        initial["c"] = torch.randn(spec.hidden_size, dtype=torch.float64, requires_grad=True)
        final_g["c"] = torch.randn(spec.hidden_size, dtype=torch.float64)
    g = torch.randn(steps, spec.output_size, dtype=torch.float64)
    hx = (initial["h"], initial["c"]) if lstm else initial["h"]
    if spec.is_cell:
        result = module(x[0], hx)
        outputs = (result[0] if lstm else result)[None]
    else:
        batched = tuple(s[None] for s in hx) if lstm else hx[None]
        outputs, result = module(x, batched)
        result = tuple(s[0] for s in result) if lstm else result[0]
    final = dict(zip("hc", result, strict=True)) if lstm else {"h": result}
    states = derivation.step.states
    loss = (outputs * g).sum() + sum((final[s.name] * final_g[s.name]).sum() for s in states)
    loss.backward()

    leaves = block_tensors(derivation, lambda name: getattr(module, name).detach())
    leaves |= {at_step(derivation.step.inputs[0], k): x[k - 1] for k in range(1, steps + 1)}
    leaves |= {at_step(s.previous, 1): initial[s.name] for s in states}
    leaves |= {s.final: final_g[s.name] for s in states}
    leaves |= {at_step(derivation.adjoint.cotangent, k): g[k - 1] for k in range(1, steps + 1)}
    grads = block_tensors(derivation, lambda name: getattr(module, name).grad)
    expected = {}
    for gradient in derivation.gradients:
        if gradient.torch_name == "input":
            tensor = x.grad
        elif gradient.once:
            tensor = initial[gradient.torch_name.removesuffix("_0")].grad
        else:
            tensor = grads[gradient.of]
        expected[gradient.label] = tensor.reshape(-1).tolist()
    return {leaf: tensor.detach() for leaf, tensor in leaves.items()}, expected
