"""Checks a generated module against ``torch.nn.RNN`` with the same weights.

Both run forward on the same random input and initial state and backward with the same random
cotangents on ``output`` and ``h_n``; every gradient (input, hx, each parameter) and both
forward results are compared by relative error ``max|a − b| / max|b|``.

Tolerances: float64 ``1e-10`` (the two differ only in the order of floating-point sums, errors
are ~1e-16); float32 ``1e-4`` (eps is 1.2e-7 and torch's kernels accumulate over T steps and H
terms in another order; 1e-4 leaves room for that at T ≤ 100 without hiding a wrong formula,
which shows as errors of order 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from .errors import VerificationError

if TYPE_CHECKING:
    from .derivation import Derivation

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


@dataclass(frozen=True)
class Check:
    """One compared quantity."""

    name: str
    rel_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.rel_error <= self.tolerance


@dataclass(frozen=True)
class Report:
    """The result of :func:`verify`."""

    description: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def max_error(self) -> float:
        return max(check.rel_error for check in self.checks)

    def table(self) -> str:
        """An aligned table: quantity, max relative error, tolerance, verdict."""
        width = max(len(c.name) for c in self.checks)
        rows = [f"  {'quantity':<{width}}  max rel error  tolerance  result"]
        for c in self.checks:
            verdict = "ok" if c.ok else "MISMATCH"
            rows.append(f"  {c.name:<{width}}  {c.rel_error:13.2e}  {c.tolerance:9.0e}  {verdict}")
        return "\n".join(rows)

    def summary(self) -> str:
        verdict = "all match" if self.ok else "MISMATCH"
        failed = [c.name for c in self.checks if not c.ok]
        detail = f" in {', '.join(failed)}" if failed else ""
        return f"{verdict}: max relative error {self.max_error:.1e}{detail}"


def _relative_error(actual, expected) -> float:
    scale = expected.abs().max().item()
    diff = (actual - expected).abs().max().item()
    if scale == 0.0:
        return diff
    return diff / scale


def verify(
    derivation: Derivation,
    module: ModuleType | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    seed: int = 0,
    batch: int = 3,
) -> Report:
    """Compare the generated module's forward and gradients with ``torch.nn.RNN``'s.

    Args:
        module: the generated module (default: ``derivation.load()``).
        device: ``"cpu"`` or ``"cuda"`` (on CUDA torch runs cuDNN).
        dtype: ``"float64"`` or ``"float32"``; sets the tolerance (see the module docstring).
        seed: seeds the weights, input, initial state and cotangents.
        batch: batch size of the random input.

    Raises:
        VerificationError: unknown dtype or device, or CUDA asked for but unavailable.
    """
    import torch

    if dtype not in TOLERANCE:
        raise VerificationError(f"dtype must be one of {', '.join(TOLERANCE)}, got {dtype!r}")
    if device not in ("cpu", "cuda"):
        raise VerificationError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise VerificationError("--device cuda: CUDA is not available on this machine")
    module = module if module is not None else derivation.load()
    spec = derivation.spec
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, torch_dtype)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = torch.nn.RNN(
            spec.input_size,
            spec.hidden_size,
            nonlinearity=spec.nonlinearity,
            bias=spec.bias,
            dtype=torch_dtype,
            device=device,
        )
    generated = module.RNN(device=device, dtype=torch_dtype)
    generated.load_state_dict(reference.state_dict())
    x = randn(spec.steps, batch, spec.input_size)
    h0 = randn(1, batch, spec.hidden_size)
    grad_output = randn(spec.steps, batch, spec.hidden_size)
    grad_h_n = randn(1, batch, spec.hidden_size)

    results = []
    for layer in (generated, reference):
        inputs = [x.clone().requires_grad_(), h0.clone().requires_grad_()]
        output, h_n = layer(*inputs)
        wrt = [*inputs, *layer.parameters()]
        grads = torch.autograd.grad((output, h_n), wrt, (grad_output, grad_h_n))
        results.append((output.detach(), h_n.detach(), *grads))
    names = ["output", "h_n", "grad input", "grad hx"]
    names += [f"grad {name}" for name, _ in reference.named_parameters()]
    tolerance = TOLERANCE[dtype]
    checks = tuple(
        Check(name, _relative_error(a, b), tolerance)
        for name, a, b in zip(names, *results, strict=True)
    )
    where = "cuDNN" if device == "cuda" else "CPU"
    description = (
        f"generated module vs torch.nn.RNN ({where}), same weights, {dtype}, "
        f"batch {batch}, random cotangents, seed {seed}"
    )
    return Report(description, checks)
