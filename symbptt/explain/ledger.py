"""What ``symbptt explain`` computes: one BPTT run in numbers, checked against torch autograd.

:func:`collect` runs the generated forward and backward (float64, ``per_step=True``) and torch's
own module on the same weights and input; a :class:`Ledger` holds the values of every step,
δ of every step and, per parameter, a :class:`GradientTerms`: the gradient as the sum of one
term per step, beside torch's ``.grad``. Renderings are in :mod:`.render`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

from ..errors import SpecError, VerificationError
from ..limits import numeric_cost, require
from ..verification.agreement import TOLERANCE, relative_error
from ..verification.numeric_inputs import loss_name, reference_module

LOSSES = {
    "h_n": ("L = h_n.sum()", "gₜ = 0, gₙ = 1"),
    "output": ("L = output.sum()", "gₜ = 1, gₙ = 0"),
}


def check_single_layer(spec) -> None:
    """SpecError for a network (a Spec, or the parsed options before a Spec is built)."""
    extras = []
    if spec.num_layers > 1:
        extras.append(f"--num-layers {spec.num_layers}")
    if spec.bidirectional:
        extras.append("--bidirectional")
    if spec.packed:
        extras.append("--packed")
    if spec.dropout:
        extras.append(f"--dropout {spec.dropout:g}")
    if extras or getattr(spec, "is_network", False):
        raise SpecError(
            "explain covers one layer, one direction and unpacked input for now; leave out "
            f"{', '.join(extras) or 'the network options'} (symbptt verify checks networks)"
        )


@dataclass(frozen=True)
class GradientTerms:
    """One parameter's gradient as the sum of its per-step terms, and torch's."""

    name: str
    description: str
    equations: tuple[str, ...]
    terms: object  # (T, *shape) float64 tensor
    torch_grad: object  # (*shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.torch_grad.shape)

    @property
    def total(self):
        return self.terms.sum(0)

    @property
    def norms(self) -> list[float]:
        return [float(term.norm()) for term in self.terms]

    @property
    def signed(self) -> bool:
        """One entry: shares are ``termₜ / total`` (signed), else ``‖termₜ‖ / Σₛ ‖termₛ‖``."""
        return self.torch_grad.numel() == 1

    @property
    def shares(self) -> list[float | None]:
        if self.signed:
            total = float(self.total.reshape(()))
            values = [float(term.reshape(())) for term in self.terms]
            return [v / total + 0.0 if total else None for v in values]
        norms = self.norms
        whole = sum(norms)
        return [n / whole if whole else None for n in norms]

    @property
    def max_abs_diff(self) -> float:
        return float((self.total - self.torch_grad).abs().max())

    @property
    def rel_error(self) -> float:
        return relative_error(self.total, self.torch_grad)

    @property
    def ok(self) -> bool:
        return self.rel_error <= TOLERANCE["float64"]


@dataclass(frozen=True)
class Ledger:
    """One explained run: the values :func:`collect` computed."""

    spec: object
    weights: dict
    weights_source: str
    x: object  # (T, I), or (I,) for a cell
    input_source: str
    loss: str
    loss_value: float
    forward: dict  # name -> (T, size), "x" first
    adjoints: dict  # name -> (T, size)
    gradients: tuple[GradientTerms, ...]
    output_diff: float
    output_scale: float = 1.0
    states: tuple[str, ...] = field(default=("h",))

    @property
    def output_ok(self) -> bool:
        """The generated forward's output against torch's, by relative difference."""
        return self.output_diff <= TOLERANCE["float64"] * max(1.0, self.output_scale)

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gradients) and self.output_ok

    @property
    def max_abs_diff(self) -> float:
        return max(g.max_abs_diff for g in self.gradients)


def collect(
    derivation,
    weights: dict | None = None,
    x=None,
    seed: int = 0,
    loss: str = "h_n",
    weights_source: str | None = None,
    input_source: str | None = None,
) -> Ledger:
    """Run the generated module (float64, batch 1, ``per_step=True``) and torch's own module
    on the same weights and input, and collect everything an explanation shows.

    Args:
        weights: torch's state dict for the spec (default: torch's init under
            ``torch.manual_seed(seed)``, in torch's default float32, then cast to float64).
        x: (T, I) for a layer, (I,) for a cell (default: N(0, 1) drawn with ``seed``).
        loss: ``"h_n"`` (``L = h_n.sum()``; ``"hn"`` too) or ``"output"`` (``L = output.sum()``).
    """
    import torch

    from ..printing.text import gradient_text

    spec = derivation.spec
    check_single_layer(spec)
    loss = loss_name(loss)
    require(numeric_cost(spec, f"explaining {spec.describe()}", per_step_terms=True))
    if not 0 <= seed < 2**63:
        raise SpecError(f"--seed must be an integer from 0 to 2**63 - 1, got {seed}")
    if weights is None:
        initial = reference_module(spec, seed, dtype=torch.float32)
        weights = {k: v.detach().to(torch.float64) for k, v in initial.state_dict().items()}
        weights_source = f"torch's own init under torch.manual_seed({seed})"
    if x is None:
        shape = (spec.input_size,) if spec.is_cell else (spec.steps, spec.input_size)
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=generator, dtype=torch.float64)
        input_source = f"random from N(0, 1) with seed {seed}"
    weights = {name: value.detach().to(torch.float64) for name, value in weights.items()}
    x = x.detach().to(torch.float64)
    steps = spec.steps

    # torch's own module and autograd
    reference = reference_module(spec, weights=weights)
    named = dict(reference.named_parameters())
    truncate = getattr(spec, "truncate", 0)
    result = _truncated(reference, x, truncate) if truncate else reference(x)
    if spec.is_cell:
        h_last = result[0] if isinstance(result, tuple) else result
        output = h_last.reshape(1, -1)
    else:
        output, state = result
        h_last = state[0] if len(spec.states) > 1 else state
    torch_loss = h_last.sum() if loss == "h_n" else output.sum()
    torch_grads = dict(
        zip(named, torch.autograd.grad(torch_loss, list(named.values())), strict=True)
    )

    # the generated module
    module = derivation.load()
    out_size, hidden = spec.output_size, spec.hidden_size
    ones_out = torch.ones(steps, 1, out_size, dtype=torch.float64)
    values = {
        "x": x.reshape(steps, 1, spec.input_size),
        "h0": torch.zeros(1, out_size, dtype=torch.float64),
        "c0": torch.zeros(1, hidden, dtype=torch.float64),
        "grad_output": ones_out if loss == "output" else torch.zeros_like(ones_out),
        "grad_h_n": torch.full((1, out_size), 1.0 if loss == "h_n" else 0.0, dtype=torch.float64),
        "grad_c_n": torch.zeros(1, hidden, dtype=torch.float64),
        "per_step": True,
    }
    values |= {p.argument: weights[p.torch_name] for p in derivation.parameters}
    gen_output, saved = module.forward(**_arguments(module.forward, values))
    values["saved"] = saved
    grads = module.backward(**_arguments(module.backward, values))
    gen_loss = gen_output[-1].sum() if loss == "h_n" else gen_output.sum()

    forward = {"x": x.reshape(steps, spec.input_size)}
    forward |= {name: value[:, 0] for name, value in saved.items()}
    adjoints = {name: value[:, 0] for name, value in grads["adjoints"].items()}
    equations: dict[str, list[str]] = {}
    for gradient in derivation.gradients:
        if gradient.summed:
            equations.setdefault(gradient.torch_name, []).append(
                f"({gradient.label}) {gradient_text(gradient)}"
            )
    gradients = tuple(
        GradientTerms(
            p.torch_name,
            p.description,
            tuple(equations.get(p.torch_name, ())),
            grads["per_step"][p.torch_name].detach(),
            torch_grads[p.torch_name].detach(),
        )
        for p in derivation.parameters
    )
    everything = [*forward.values(), *adjoints.values()] + [g.terms for g in gradients]
    if not all(bool(torch.isfinite(v).all()) for v in everything) or not math.isfinite(
        float(gen_loss)
    ):
        raise VerificationError("the run overflowed float64 (NaN or infinite values)")
    states = tuple(name for name, _ in spec.states)
    return Ledger(
        spec=spec,
        weights=weights,
        weights_source=weights_source or "given",
        x=x,
        input_source=input_source or "given",
        loss=loss,
        loss_value=float(gen_loss),
        forward=forward,
        adjoints=adjoints,
        gradients=gradients,
        output_diff=float((gen_output[:, 0] - output.detach()).abs().max()),
        output_scale=float(output.detach().abs().max()),
        states=states,
    )


def _truncated(layer, x, every: int):
    """torch's layer over chunks of ``every`` steps, the state detached between chunks."""
    import torch

    outputs, state = [], None
    for start in range(0, x.shape[0], every):
        chunk = x[start : start + every]
        if state is None:
            output, state = layer(chunk)
        else:
            detached = tuple(s.detach() for s in state) if isinstance(state, tuple) else None
            output, state = layer(chunk, detached or state.detach())
        outputs.append(output)
    return torch.cat(outputs), state


def _arguments(function, values: dict) -> dict:
    """The keyword arguments of a generated function, picked from ``values`` by name."""
    names = [n for n, p in inspect.signature(function).parameters.items()]
    missing = [n for n in names if n not in values]
    if missing:
        raise VerificationError(
            f"the generated {function.__name__}() takes {', '.join(missing)}, unknown to explain"
        )
    return {n: values[n] for n in names}
