"""Run BPTT once with numbers and explain it: the forward values of every step, δ of every
step, and every parameter gradient as the sum of one term per step, with each step's share,
checked against torch autograd's .grad for the same weights and input (float64, one sample).

Weights are torch's own initialisation under torch.manual_seed(SEED) (default 0), or a
state_dict saved with torch.save (--weights). The input is a tensor saved with torch.save, of
shape (T, input_size) for a layer or (input_size,) for a cell, or a comma-separated list of
numbers: one per step for a layer with --input-size 1 (--input 1,2,3; write --input=-1,2,3
when the first is negative), or the input_size entries of a cell's x. Without --input, x is
drawn from N(0, 1) with the seed. With --input and no --steps, T is the input's length.
The loss is L = h_n.sum() (--loss hn: gₜ = 0, gₙ = 1, c_n's cotangent 0) or L = output.sum()
(--loss output: gₜ = 1, gₙ = 0).
"""

from __future__ import annotations

import argparse
import html
import inspect
import json
import math
import pickle
import shutil
import textwrap
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError, VerificationError

HELP = "run BPTT once with numbers: values and δ per step, each step's share of every gradient"
SPEC_OPTIONS = True

LOSSES = {
    "hn": ("L = h_n.sum()", "gₜ = 0, gₙ = 1"),
    "output": ("L = output.sum()", "gₜ = 1, gₙ = 0"),
}
TOLERANCE = 1e-10
"""Largest relative difference ``max|Σₜ termₜ − torch| / max|torch|`` accepted (float64)."""
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("weights, input and loss")
    weights = source.add_mutually_exclusive_group()
    weights.add_argument(
        "--seed",
        type=int,
        help="torch's own init under torch.manual_seed(SEED), and the random input (default 0)",
    )
    weights.add_argument(
        "--weights", metavar="FILE", help="a state_dict saved with torch.save (names as torch's)"
    )
    source.add_argument(
        "--input",
        metavar="FILE|LIST",
        help="x saved with torch.save, (T, input_size) or a cell's (input_size,); or numbers "
        "like 1,2,3 (one per step for --input-size 1; a cell's entries)",
    )
    source.add_argument(
        "--loss",
        choices=tuple(LOSSES),
        default="hn",
        help="hn: L = h_n.sum() (default); output: L = output.sum()",
    )
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="aligned terminal tables (default), Markdown tables or one JSON object",
    )


def run(args: argparse.Namespace) -> int:
    from .cli import _derivation

    _check_single_layer(args)  # before the Spec, which warns about --dropout on one layer
    seed = 0 if args.seed is None else args.seed
    if not 0 <= seed < 2**63:
        raise SpecError(f"--seed must be an integer from 0 to 2**63 - 1, got {seed}")
    raw_input = _read_input(args.input) if args.input is not None else None
    args = argparse.Namespace(**vars(args))
    if raw_input is not None and args.steps is None and not args.cell.endswith("_cell"):
        args.steps = len(raw_input)  # T from the input when --steps is left out
    derivation = _derivation(args)
    _check_single_layer(derivation.spec)
    x = _input_tensor(raw_input, derivation.spec, args.input) if raw_input is not None else None
    weights = _read_weights(args.weights, derivation.spec) if args.weights else None
    explanation = explain(
        derivation,
        weights=weights,
        x=x,
        seed=seed,
        loss=args.loss,
        weights_source=f"from {args.weights}" if args.weights else None,
        input_source=f"from --input {args.input}" if args.input is not None else None,
    )
    if args.format == "json":
        print(explanation.to_json())
    elif args.format == "markdown":
        print(explanation.to_markdown())
    else:
        print(explanation.to_text(width=_width()))
    return 0 if explanation.ok else 1


def _width() -> int:
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _check_single_layer(spec) -> None:
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


# --- reading files and numbers -------------------------------------------------------------


def _numbers(text: str) -> list[float] | None:
    """``"1, 2,3"`` -> ``[1.0, 2.0, 3.0]``; None if ``text`` is not such a list."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    message = (str(exc).strip().splitlines() or [""])[0]
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _torch_load(path_text: str, option: str, what: str):
    import torch

    path = Path(path_text)
    if not path.exists():
        raise SpecError(f"{option} {path_text}: no such file")
    if not path.is_file():
        raise SpecError(f"{option} {path_text}: not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickled object: garbage
            raise SpecError(
                f"{option} {path_text}: not a file torch.save wrote ({_first_line(exc)})"
            ) from None
        raise SpecError(
            f"{option} {path_text}: torch.load(weights_only=True) refuses it; save {what} "
            "with torch.save, not a pickled object"
        ) from None
    except Exception as exc:  # torch raises many kinds for files it cannot read
        raise SpecError(
            f"{option} {path_text}: not a file torch.save wrote ({_first_line(exc)})"
        ) from None


def _real_float64(value, where: str):
    import torch

    if value.is_complex() or value.dtype == torch.bool:
        raise SpecError(f"{where} has dtype {value.dtype}; real numbers are needed")
    value = value.detach().to("cpu", torch.float64)
    if not torch.isfinite(value).all():
        raise SpecError(f"{where} contains NaN or infinite values")
    return value


def _read_input(text: str):
    """The ``--input`` value: a list of floats, or the loaded tensor (shape checked later)."""
    import torch

    numbers = _numbers(text)
    if numbers is not None:
        return numbers
    value = _torch_load(text, "--input", "a tensor")
    if not isinstance(value, torch.Tensor):
        raise SpecError(
            f"--input {text}: expected a tensor saved with torch.save, got {type(value).__name__}"
        )
    if value.dim() == 0:
        raise SpecError(f"--input {text}: expected a tensor of shape (T, I), got a scalar")
    return value


def _input_tensor(raw, spec, text: str):
    """``x`` as float64 of shape (T, I) for a layer, (I,) for a cell; else SpecError."""
    import torch

    expected = (spec.input_size,) if spec.is_cell else (spec.steps, spec.input_size)
    shape_text = "(input_size,)" if spec.is_cell else "(T, input_size)"
    if isinstance(raw, list):
        if spec.is_cell:
            if len(raw) != spec.input_size:
                raise SpecError(
                    f"--input {text}: {len(raw)} numbers, but a cell's x has input_size = "
                    f"{spec.input_size} entries"
                )
        elif spec.input_size != 1:
            raise SpecError(
                f"--input {text}: a list of numbers is for --input-size 1; save x of shape "
                f"(T, I) = {expected} with torch.save instead"
            )
        elif len(raw) != spec.steps:
            raise SpecError(
                f"--input {text}: {len(raw)} numbers for {spec.steps} steps (one number per step)"
            )
        raw = torch.tensor(raw, dtype=torch.float64).reshape(expected)
    if tuple(raw.shape) != expected:
        raise SpecError(
            f"--input {text}: expected an unbatched x of shape {shape_text} = {expected}, "
            f"got {tuple(raw.shape)}"
        )
    return _real_float64(raw, f"--input {text}")


def _reference_module(spec):
    """torch's module for ``spec`` in float64, without touching torch's global random state."""
    import torch

    from .verify import torch_reference

    with torch.random.fork_rng(devices=[]):
        return torch_reference(spec, "cpu", torch.float64)


def _read_weights(text: str, spec) -> dict:
    """The state dict in ``text``, checked against torch's names and shapes, as float64."""
    import torch

    value = _torch_load(text, "--weights", "module.state_dict()")
    if not isinstance(value, Mapping):
        raise SpecError(
            f"--weights {text}: not a state dict (a dict of tensors by name, as "
            f"module.state_dict() returns) but a {type(value).__name__}"
        )
    expected = {name: tuple(p.shape) for name, p in _reference_module(spec).state_dict().items()}
    for name, shape in expected.items():
        if name not in value:
            raise SpecError(
                f"--weights {text}: missing {name} (expected shape {shape} for "
                f"{spec.torch_constructor()})"
            )
    unexpected = [str(name) for name in value if name not in expected]
    if unexpected:
        raise SpecError(
            f"--weights {text}: unexpected key {unexpected[0]!r} for "
            f"{spec.torch_constructor()} (expected {', '.join(expected)})"
        )
    weights = {}
    for name, shape in expected.items():
        tensor = value[name]
        if not isinstance(tensor, torch.Tensor):
            raise SpecError(f"--weights {text}: {name} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != shape:
            raise SpecError(
                f"--weights {text}: {name} has shape {tuple(tensor.shape)}, expected {shape}"
            )
        weights[name] = _real_float64(tensor, f"--weights {text}: {name}")
    return weights


# --- the computation -----------------------------------------------------------------------


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
        scale = float(self.torch_grad.abs().max())
        return self.max_abs_diff / scale if scale else self.max_abs_diff

    @property
    def ok(self) -> bool:
        return self.rel_error <= TOLERANCE


@dataclass(frozen=True)
class Explanation:
    """One explained run: the values :func:`explain` computed, and their renderings."""

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
        return self.output_diff <= TOLERANCE * max(1.0, self.output_scale)

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gradients) and self.output_ok

    @property
    def max_abs_diff(self) -> float:
        return max(g.max_abs_diff for g in self.gradients)

    def to_text(self, width: int = 100) -> str:
        return _render_text(_blocks(self, width), width)

    def to_markdown(self) -> str:
        return _render_markdown(_blocks(self))

    def to_json(self) -> str:
        return _to_json(self)

    def to_html(self) -> str:
        """HTML headings, paragraphs and tables (what Jupyter shows)."""
        return _render_html(_blocks(self))

    def _repr_html_(self) -> str:
        return self.to_html()


def explain(
    derivation,
    weights: dict | None = None,
    x=None,
    seed: int = 0,
    loss: str = "hn",
    weights_source: str | None = None,
    input_source: str | None = None,
) -> Explanation:
    """Run the generated module (float64, batch 1, ``per_step=True``) and torch's own module
    on the same weights and input, and collect everything :class:`Explanation` shows.

    Args:
        weights: torch's state dict for the spec (default: torch's init under
            ``torch.manual_seed(seed)``, in torch's default float32, then cast to float64).
        x: (T, I) for a layer, (I,) for a cell (default: N(0, 1) drawn with ``seed``).
        loss: ``"hn"`` (``L = h_n.sum()``) or ``"output"`` (``L = output.sum()``).
    """
    import torch

    from .printing.text import gradient_text
    from .verify import torch_reference

    spec = derivation.spec
    _check_single_layer(spec)
    if loss not in LOSSES:
        raise SpecError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not 0 <= seed < 2**63:
        raise SpecError(f"--seed must be an integer from 0 to 2**63 - 1, got {seed}")
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            initial = torch_reference(spec, "cpu", torch.float32)
        weights = {k: v.detach().to(torch.float64) for k, v in initial.state_dict().items()}
        weights_source = f"torch's own init under torch.manual_seed({seed})"
    if x is None:
        shape = (spec.input_size,) if spec.is_cell else (spec.steps, spec.input_size)
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=generator, dtype=torch.float64)
        input_source = f"random from N(0, 1) with seed {seed}"
    weights = {name: value.detach().to(torch.float64) for name, value in weights.items()}
    x = x.detach().to(torch.float64)
    steps, family = spec.steps, spec.family

    # torch's own module and autograd
    reference = _reference_module(spec)
    reference.load_state_dict(weights)
    named = dict(reference.named_parameters())
    truncate = getattr(spec, "truncate", 0)
    result = _truncated(reference, x, truncate) if truncate else reference(x)
    if spec.is_cell:
        h_last = result[0] if isinstance(result, tuple) else result
        output = h_last.reshape(1, -1)
    else:
        output, state = result
        h_last = state[0] if family == "lstm" else state
    torch_loss = h_last.sum() if loss == "hn" else output.sum()
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
        "grad_h_n": torch.full((1, out_size), 1.0 if loss == "hn" else 0.0, dtype=torch.float64),
        "grad_c_n": torch.zeros(1, hidden, dtype=torch.float64),
        "per_step": True,
    }
    values |= {p.argument: weights[p.torch_name] for p in derivation.parameters}
    gen_output, saved = module.forward(**_arguments(module.forward, values))
    values["saved"] = saved
    grads = module.backward(**_arguments(module.backward, values))
    gen_loss = gen_output[-1].sum() if loss == "hn" else gen_output.sum()

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
    states = ("h", "c") if family == "lstm" else ("h",)
    return Explanation(
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


# --- rendering -----------------------------------------------------------------------------


def _number(v: float) -> str:
    if v == 0:
        return "0.0000"
    if 1e-4 <= abs(v) < 1e6:
        return f"{v:.4f}"
    return f"{v:.3e}"


def _entries(tensor) -> list[str]:
    return [_number(v) for v in tensor.reshape(-1).tolist()]


def _bracket(tensor, width: int) -> str:
    """``[a, b]`` for a vector, ``[a, b; c, d]`` (rows) for a matrix; entries right-aligned."""
    cells = [e.rjust(width) for e in _entries(tensor)]
    if tensor.dim() == 2:
        cols = tensor.shape[1]
        rows = [", ".join(cells[i : i + cols]) for i in range(0, len(cells), cols)]
        return "[" + "; ".join(rows) + "]"
    return "[" + ", ".join(cells) + "]"


def _entry_width(tensors) -> int:
    return max((len(e) for t in tensors for e in _entries(t)), default=1)


def _dwidth(text: str) -> int:
    """Display width: combining marks (the bar of h̄, the tilde of c̃) take no column."""
    return sum(0 if unicodedata.combining(c) else 1 for c in text)


def _step_name(name: str, step: int) -> str:
    from .printing.names import text_base

    return text_base(name) + str(step).translate(_SUBSCRIPT)


@dataclass
class _Table:
    headers: tuple[str, ...]
    aligns: str  # "l" or "r" per column
    rows: list[tuple[str, ...]]
    rules: set[int] = field(default_factory=set)
    """Row indices that a rule line precedes (text only)."""


@dataclass
class _Block:
    kind: str  # "heading", "para", "lines" (a list), "equations", "table"
    content: object
    level: int = 2


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"


def _value_table(values: dict, label: str, width: int, steps: int) -> _Table:
    """One row per step and quantity; the entries when they fit, else the norm."""
    avail = width - 2 - max(2, len(str(steps))) - 2 - 8 - 2
    fits = {name: _entry_width([value]) for name, value in values.items()}
    common = max(fits.values())
    shown = {}
    for name, value in values.items():
        w = common if len(_bracket(value[0], common)) <= avail else fits[name]
        shown[name] = (w if len(_bracket(value[0], w)) <= avail else None, value.shape[-1])
    rows = []
    for k in range(steps):
        for j, (name, value) in enumerate(values.items()):
            w, size = shown[name]
            cell = _bracket(value[k], w) if w else f"‖·‖ = {_number(float(value[k].norm()))}"
            if not w:
                cell += f" ({size} entries)"
            rows.append((str(k + 1) if j == 0 else "", _step_name(name, k + 1), cell))
    rules = {k * len(values) for k in range(1, steps)} if len(values) > 1 else set()
    return _Table(("t", label, "value"), "rll", rows, rules)


def _gradient_table(grad: GradientTerms, width: int) -> _Table:
    steps = grad.terms.shape[0]
    norms, shares = grad.norms, grad.shares
    labels = [str(k) for k in range(1, steps + 1)] + ["sum", "torch"]
    label_w = max(len(s) for s in labels)
    fixed = 2 + label_w + 2 + 11 + 2 + 8
    tensors = [*grad.terms, grad.total, grad.torch_grad]
    w = _entry_width(tensors)
    entries = [_bracket(t, w) for t in tensors]
    show = grad.signed or max(len(e) for e in entries) + 2 <= width - fixed
    all_norms = norms + [float(grad.total.norm()), float(grad.torch_grad.norm())]
    share_cells = [_percent(s) for s in shares] + ["", ""]
    rows = []
    for i, label in enumerate(labels):
        row = (label, entries[i]) if show else (label,)
        if grad.signed:
            rows.append((*row, share_cells[i]))
        else:
            rows.append((*row, _number(all_norms[i]), share_cells[i]))
    share_head = "share (signed)" if grad.signed else "share"
    if grad.signed:
        headers, aligns = ("t", "term", share_head), "rlr"
    elif show:
        headers, aligns = ("t", "term", "‖term‖", share_head), "rlrr"
    else:
        headers, aligns = ("t", "‖term‖", share_head), "rrr"
    return _Table(headers, aligns, rows, {steps})


def _blocks(e: Explanation, width: int = 100) -> list[_Block]:
    spec = e.spec
    expression, cotangents = LOSSES[e.loss]
    if spec.family == "lstm":
        cotangents += ", gᶜₙ = 0"
    if spec.is_cell:
        expression = "L = h'.sum()"
        cotangents = "∂L/∂h' = 1" + (", ∂L/∂c' = 0" if spec.family == "lstm" else "")
    zero_states = ", ".join(f"{s}₀ = 0" for s in e.states)
    blocks = [
        _Block("heading", f"symbptt explain: {spec.describe()}", 1),
        _Block(
            "lines",
            [
                f"weights: {e.weights_source}, run in float64",
                f"input:   x {e.input_source} (unbatched, run as batch 1); {zero_states}",
                f"loss:    {expression} = {_number(e.loss_value)} (cotangents {cotangents})",
                "generated forward/backward(per_step=True) against torch.nn."
                f"{spec.torch_class} and autograd, same weights",
                *_truncation_note(spec),
            ],
        ),
        _Block("heading", "Weights"),
    ]
    weight_rows = []
    avail = width - 2 - 14 - 2 - 10 - 2
    for name, value in e.weights.items():
        w = _entry_width([value])
        text = _bracket(value, w)
        if len(text) > avail:
            text = f"‖·‖ = {_number(float(value.norm()))} ({value.numel()} entries)"
        weight_rows.append((name, str(tuple(value.shape)), text))
    blocks.append(_Block("table", _Table(("name", "shape", "value"), "lrl", weight_rows)))
    blocks.append(_Block("heading", "Forward values per step (generated forward)"))
    if spec.family == "lstm":
        blocks.append(_Block("para", "c̃ₜ is torch's g gate; i, f, o the other gates."))
    elif spec.family == "gru":
        blocks.append(
            _Block("para", "r, z are the gates, aʰⁿₜ = W_hn hₜ₋₁ + b_hn, n the candidate.")
        )
    blocks.append(_Block("table", _value_table(e.forward, "quantity", width, spec.steps)))
    blocks.append(
        _Block(
            "para",
            f"output vs torch's: max |difference| = {e.output_diff:.1e}"
            + ("" if e.output_ok else " (MISMATCH)"),
        )
    )
    blocks.append(_Block("heading", "δ per step (generated backward; computed from t = T down)"))
    blocks.append(_Block("table", _value_table(e.adjoints, "adjoint", width, spec.steps)))
    blocks.append(_Block("heading", "Each step's term of every gradient"))
    blocks.append(
        _Block(
            "para",
            "share = ‖termₜ‖ / Σₛ ‖termₛ‖ (Frobenius norms; they add up to 100 %), or for a "
            "one-entry parameter the signed termₜ / total. The entries are shown when they fit "
            "([a, b; c, d] lists a matrix's rows), else the norm only. torch = its .grad from "
            "autograd of the same loss.",
        )
    )
    for grad in e.gradients:
        blocks.append(_Block("heading", f"{grad.name}, shape {grad.shape}: {grad.description}", 3))
        if grad.equations:
            blocks.append(_Block("equations", list(grad.equations)))
        blocks.append(_Block("table", _gradient_table(grad, width)))
        verdict = "matches" if grad.ok else "MISMATCH"
        blocks.append(
            _Block("para", f"max |sum − torch .grad| = {grad.max_abs_diff:.1e} ({verdict})")
        )
    failed = [g.name for g in e.gradients if not g.ok] + ([] if e.output_ok else ["output"])
    verdict = (
        "every sum of per-step terms equals torch's .grad"
        if not failed
        else "MISMATCH: " + ", ".join(failed)
    )
    blocks.append(_Block("heading", "Result"))
    blocks.append(
        _Block(
            "para",
            f"{verdict}: max |difference| {e.max_abs_diff:.1e} over all parameters (float64, "
            f"tolerance {TOLERANCE:.0e} relative).",
        )
    )
    return blocks


def _truncation_note(spec) -> list[str]:
    every = getattr(spec, "truncate", 0)
    if not every:
        return []
    return [
        f"truncated BPTT (--truncate {every}): nothing flows back into a step t that is a "
        f"multiple of {every}; torch runs over chunks of {every} steps, the state detached "
        "in between"
    ]


def _text_table(table: _Table) -> list[str]:
    widths = [
        max(_dwidth(row[i]) for row in [table.headers, *table.rows])
        for i in range(len(table.headers))
    ]

    def line(cells) -> str:
        parts = []
        for cell, w, align in zip(cells, widths, table.aligns, strict=True):
            pad = " " * (w - _dwidth(cell))
            parts.append(pad + cell if align == "r" else cell + pad)
        return ("  " + "  ".join(parts)).rstrip()

    lines = [line(table.headers), "  " + "  ".join("─" * w for w in widths)]
    for i, row in enumerate(table.rows):
        if i in table.rules:
            lines.append("  " + "  ".join("·" * w if w else "" for w in widths))
        lines.append(line(row))
    return lines


def _wrap(text: str, width: int, indent: str = "", hanging: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _render_text(blocks: list[_Block], width: int) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            if lines:
                lines.append("")
            lines.extend(_wrap(block.content, width))
            lines.append("─" * min(width, max(_dwidth(s) for s in lines[-1:])))
        elif block.kind == "para":
            lines.extend(_wrap(block.content, width))
        elif block.kind in ("lines", "equations"):
            for text in block.content:
                lines.extend(_wrap(text, width, "  ", "    "))
        else:
            lines.extend(_text_table(block.content))
    return "\n".join(lines)


def _render_markdown(blocks: list[_Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            parts.append("#" * block.level + " " + block.content)
        elif block.kind == "para":
            parts.append(block.content)
        elif block.kind == "lines":
            parts.append("\n".join(f"- {' '.join(text.split())}" for text in block.content))
        elif block.kind == "equations":
            parts.append("\n".join(f"- `{text}`" for text in block.content))
        else:
            table = block.content
            rule = {"l": ":---", "r": "---:"}
            rows = [
                "| " + " | ".join(table.headers) + " |",
                "|" + "|".join(rule[a] for a in table.aligns) + "|",
            ]
            rows += ["| " + " | ".join(row) + " |" for row in table.rows]
            parts.append("\n".join(rows))
    return "\n\n".join(parts)


def _render_html(blocks: list[_Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            level = min(block.level + 2, 6)
            parts.append(f"<h{level}>{html.escape(block.content)}</h{level}>")
        elif block.kind == "para":
            parts.append(f"<p>{html.escape(block.content)}</p>")
        elif block.kind in ("lines", "equations"):
            items = "".join(f"<li><code>{html.escape(text)}</code></li>" for text in block.content)
            parts.append(f"<ul>{items}</ul>")
        else:
            table = block.content
            align = {"l": "left", "r": "right"}
            head = "".join(
                f'<th style="text-align:{align[a]}">{html.escape(h)}</th>'
                for h, a in zip(table.headers, table.aligns, strict=True)
            )
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td style="text-align:{align[a]}"><code>{html.escape(cell)}</code></td>'
                    for cell, a in zip(row, table.aligns, strict=True)
                )
                + "</tr>"
                for row in table.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(parts)


def _to_json(e: Explanation) -> str:
    spec = e.spec

    def floats(tensor):
        return tensor.tolist()

    data = {
        "module": spec.describe(),
        "spec": {
            "cell": spec.cell,
            "steps": spec.steps,
            "input_size": spec.input_size,
            "hidden_size": spec.hidden_size,
            "proj_size": spec.proj_size,
            "nonlinearity": spec.nonlinearity,
            "bias": spec.bias,
        },
        "dtype": "float64",
        "weights_source": e.weights_source,
        "weights": {name: floats(value) for name, value in e.weights.items()},
        "input_source": e.input_source,
        "input": floats(e.x),
        "loss": {"name": e.loss, "expression": LOSSES[e.loss][0], "value": e.loss_value},
        "forward": {name: floats(value) for name, value in e.forward.items()},
        "output_max_abs_diff": e.output_diff,
        "adjoints": {name: floats(value) for name, value in e.adjoints.items()},
        "gradients": {
            g.name: {
                "shape": list(g.shape),
                "equations": list(g.equations),
                "per_step": floats(g.terms),
                "norms": g.norms,
                "share_kind": "signed" if g.signed else "norm",
                "shares": g.shares,
                "sum": floats(g.total),
                "torch": floats(g.torch_grad),
                "max_abs_diff": g.max_abs_diff,
                "ok": g.ok,
            }
            for g in e.gradients
        },
        "max_abs_diff": e.max_abs_diff,
        "ok": e.ok,
    }
    try:
        return _dump(data)
    except ValueError as exc:
        raise VerificationError(f"cannot write JSON: {exc}") from None


def _dump(value, depth: int = 0) -> str:
    """JSON with objects indented and every list (of numbers) on one line; no NaN."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    inner = "  " * (depth + 1)
    items = [
        f"{inner}{json.dumps(key, ensure_ascii=False)}: {_dump(item, depth + 1)}"
        for key, item in value.items()
    ]
    return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
