"""Checks a generated module against torch's own module (``torch.nn.RNN``, ...) with the
same weights.

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

from ..errors import SpecError, VerificationError
from ..limits import Cost, numeric_cost, require
from .agreement import TOLERANCE, reference_name, relative_error, torch_reference

if TYPE_CHECKING:
    from ..core.derivation import Derivation
    from ..core.spec import Spec

ITEMSIZE = {"float64": 8, "float32": 4}
MAX_SEED = 2**63 - 1
"""The largest seed (``torch.Generator.manual_seed`` takes 64 bits)."""
MODULE_CONSTANTS = (
    ("INPUT_SIZE", "input_size", None),
    ("HIDDEN_SIZE", "hidden_size", None),
    ("PROJ_SIZE", "proj_size", 0),
    ("LAYERS", "num_layers", 1),
    ("DIRECTIONS", "directions", 1),
    ("STEPS", "steps", None),
)
"""A generated module's constants, the spec attribute each must equal, and its value when the
module lacks it (None: not checked)."""


def check_seed(seed: object, option: str = "--seed") -> int:
    """``seed`` if it is an integer from 0 to :data:`MAX_SEED`, else :class:`SpecError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"{option} must be an integer from 0 to 2**63 - 1, got {seed!r}")
    return seed


def check_batch(batch: object) -> int:
    """``batch`` if it is a positive integer, else :class:`SpecError`."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SpecError(f"--batch must be a positive integer, got {batch!r}")
    return batch


def check_module(spec: Spec, module: ModuleType) -> None:
    """Refuse a generated module made for another layer than ``spec`` (its constants and its
    class, :data:`MODULE_CONSTANTS`) with :class:`VerificationError`."""
    name = getattr(module, "__name__", "the module")
    if not hasattr(module, spec.torch_class):
        raise VerificationError(
            f"{name} has no class {spec.torch_class}: it was not generated for {spec.describe()}"
        )
    any_length = getattr(module, "ANY_LENGTH", False)
    for constant, attribute, default in MODULE_CONSTANTS:
        value = getattr(module, constant, default)
        if value is None or (constant == "STEPS" and any_length):
            continue
        if value != getattr(spec, attribute):
            raise VerificationError(
                f"{name} was generated for {attribute} {value}, not {getattr(spec, attribute)} "
                f"({spec.describe()}); regenerate it with symbptt derive {spec.cli_options()}"
            )


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


def _flatten(value) -> list:
    """Outputs as a flat list; a PackedSequence (itself a tuple) stays whole."""
    if isinstance(value, tuple) and not hasattr(value, "batch_sizes"):
        return [item for part in value for item in _flatten(part)]
    return [value]


def _truncated(layer, x, hx, spec, batch_first: bool) -> list:
    """torch's module over chunks of ``spec.truncate`` steps, the state detached in between."""
    import torch

    time = 1 if batch_first and x.dim() == 3 else 0
    outputs, state = [], hx
    for start in range(0, spec.steps, spec.truncate):
        if state is not None and start:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        chunk = x.narrow(time, start, min(spec.truncate, spec.steps - start))
        output, state = layer(chunk, state) if state is not None else layer(chunk)
        outputs.append(output)
    return [torch.cat(outputs, time), *_flatten(state)]


def compare(
    derivation: Derivation,
    module: ModuleType,
    *,
    device: str = "cpu",
    dtype: str = "float64",
    seed: int = 0,
    batch: int | None = 3,
    batch_first: bool = False,
    given_state: bool = True,
    scale: float = 1.0,
    lengths: list[int] | None = None,
) -> Report:
    """Run the generated module and torch's with the same weights and compare everything.

    Args:
        batch: batch size, or None for unbatched input.
        batch_first: layers only: input is (N, L, I).
        given_state: pass a random initial state (else both default to zeros).
        scale: multiplies torch's initial weights (larger weights make relu units switch).
        lengths: feed a PackedSequence of these lengths (batch = len(lengths)).

    Dropout is off on both sides: the generated module runs in eval mode, torch's in training
    mode (cuDNN's backward runs in training mode only) with its dropout probability set to 0.
    On CUDA, cuDNN's TF32 is off (it is on by default and rounds float32 matmuls to 10 bits).
    """
    import torch

    spec = derivation.spec
    check_module(spec, module)
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, torch_dtype)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = torch_reference(spec, device, torch_dtype)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.mul_(scale)
    options = {} if spec.is_cell else {"batch_first": batch_first}
    generated = getattr(module, spec.torch_class)(device=device, dtype=torch_dtype, **options)
    try:
        generated.load_state_dict(reference.state_dict())
    except RuntimeError as exc:  # parameters of other shapes than the spec's
        first = str(exc).strip().splitlines()[-1].strip()
        raise VerificationError(
            f"the module's parameters do not match {spec.torch_constructor()}: {first}"
        ) from None
    if not spec.is_cell:
        reference.batch_first = batch_first
    generated.eval()
    if not spec.is_cell:
        reference.dropout = 0.0
    if lengths is not None:
        batch, batch_first = len(lengths), False
    rows = () if batch is None else (batch,)
    if spec.is_cell:
        x = randn(*rows, spec.input_size)
        states = [randn(*rows, spec.output_size)]
    else:
        steps = (spec.steps, *rows) if not batch_first or batch is None else (*rows, spec.steps)
        x = randn(*steps, spec.input_size)
        states = [randn(spec.num_layers * spec.directions, *rows, spec.output_size)]
    for _, size in spec.states[1:]:
        states.append(randn(*states[0].shape[:-1], size))

    results, cotangents = [], None
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # true float32 on cuDNN
        for layer in (generated, reference):
            leaves = [x.clone().requires_grad_()] + [s.clone().requires_grad_() for s in states]
            hx = tuple(leaves[1:]) if len(states) > 1 else leaves[1]
            sequence = leaves[0]
            if lengths is not None:
                sequence = torch.nn.utils.rnn.pack_padded_sequence(
                    sequence, torch.tensor(lengths), enforce_sorted=False
                )
            if spec.truncate and layer is reference:
                outputs = _truncated(
                    layer, sequence, hx if given_state else None, spec, batch_first
                )
            else:
                outputs = _flatten(layer(sequence, hx) if given_state else layer(sequence))
            if lengths is not None:
                outputs[0] = outputs[0].data
            if cotangents is None:
                cotangents = [randn(*o.shape) for o in outputs]
            wrt = leaves if given_state else leaves[:1]
            wrt = wrt + list(layer.parameters())
            grads = torch.autograd.grad(outputs, wrt, cotangents)
            results.append([o.detach() for o in outputs] + list(grads))
    state_names = [name for name, _ in spec.states]
    names = [f"{name}'" for name in state_names]
    if not spec.is_cell:
        names = ["output"] + [f"{name}_n" for name in state_names]
    names += ["grad input"]
    if given_state:
        names += [f"grad {name}_0" for name in state_names]
    names += [f"grad {name}" for name, _ in reference.named_parameters()]
    tolerance = TOLERANCE[dtype]
    checks = []
    for name, ours, theirs in zip(names, *results, strict=True):
        if ours.shape != theirs.shape:
            raise VerificationError(
                f"{name}: shape {tuple(ours.shape)}, torch {tuple(theirs.shape)}"
            )
        checks.append(Check(name, relative_error(ours, theirs), tolerance))
    where = "cuDNN" if device == "cuda" else "CPU"
    mode = ", dropout off" if spec.dropout else ""
    packed = f", packed lengths {lengths}" if lengths is not None else ""
    against = f"{reference_name(spec)}{'' if spec.custom is None else ' under autograd'} ({where})"
    description = (
        f"generated module vs {against}, same weights, {dtype}, "
        f"batch {batch}{packed}, random cotangents, seed {seed}{mode}"
    )
    return Report(description, tuple(checks))


def verify(
    derivation: Derivation,
    module: ModuleType | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    seed: int = 0,
    batch: int = 3,
) -> Report:
    """Compare the generated module's outputs and gradients with torch's own module.

    Args:
        module: the generated module (default: ``derivation.load()``).
        device: ``"cpu"`` or ``"cuda"`` (on CUDA torch runs cuDNN).
        dtype: ``"float64"`` or ``"float32"``; sets the tolerance (see the module docstring).
        seed: seeds the weights, input, initial state and cotangents (0 to 2**63 - 1).
        batch: batch size of the random input (a positive integer).

    Raises:
        SpecError: a bad seed or batch, or a run whose estimated time or memory is over the
            limits of :mod:`symbptt.limits`.
        VerificationError: unknown dtype or device, CUDA asked for but unavailable, or a
            module generated for another layer.
    """
    import torch

    if dtype not in TOLERANCE:
        raise VerificationError(f"dtype must be one of {', '.join(TOLERANCE)}, got {dtype!r}")
    check_seed(seed)
    check_batch(batch)
    require(verify_cost(derivation.spec, batch, dtype))
    if device not in ("cpu", "cuda"):
        raise VerificationError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise VerificationError("--device cuda: CUDA is not available on this machine")
    module = module if module is not None else derivation.load()
    return compare(derivation, module, device=device, dtype=dtype, seed=seed, batch=batch)


def verify_cost(spec: Spec, batch: int = 3, dtype: str = "float64") -> Cost:
    """The estimated :class:`~symbptt.limits.Cost` of :func:`verify` (both modules, forward and
    backward, on ``batch`` random sequences)."""
    what = f"verifying {spec.describe()} with batch {batch}"
    return numeric_cost(spec, what, batch, ITEMSIZE[dtype])
