"""The inputs ``symbptt check`` calls the user's function at, and the derivation's values there.

Four kinds of point, all float64 and unbatched (x of shape (T, I)):

* ``founding``: ``nn.RNN(I, H)`` initialised after ``torch.manual_seed(seed)``, x = 1, 2, ...,
  h0 = 0, grad_h_n = ones (``L = h_T.sum()``): the founding question's numbers for (1, 2, 3).
* ``random``: weights, biases, x, h0 and grad_h_n all drawn at random.
* ``input`` (step k): x zero at every step but k. The state still evolves (through h0, the
  biases and W_hh), but every W_ih term ``delta_t x_t^T`` with t != k is exactly zero, so the
  gradient of W_ih is step k's term alone.
* ``saturate`` (step s): x_s so large that ``tanh(z_s)`` is exactly +-1 (relu: z_s < 0), so
  ``a_s = 0`` cuts every chain through step s: every term t <= s vanishes and the gradients of
  W_hh and the biases are the sums of their terms t > s.

The derivation's values are those of the generated module (``backward(..., per_step=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

from .runner import ARGS
from .variants import EVAL_NAMES, Knobs, namespace

SATURATION = 30.0
"""|z_s| at a saturated step: tanh(30) is 1.0 exactly in float64, so 1 - h_s**2 is 0."""


@dataclass(frozen=True)
class Layer:
    """The unbatched ``torch.nn.RNN`` being checked."""

    steps: int
    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    bias: bool = True

    def with_steps(self, steps: int) -> Layer:
        return Layer(steps, self.input_size, self.hidden_size, self.nonlinearity, self.bias)


@dataclass(frozen=True, eq=False)
class Point:
    """One set of arguments; ``step`` is the isolated or saturated step (0 for the others)."""

    kind: str
    step: int
    values: dict

    def args(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.values[name] for name in ARGS)


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float):
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def random_values(gen: torch.Generator, layer: Layer) -> dict:
    """Weights in (-1, 1), biases in (-0.5, 0.5), h0 in (-0.8, 0.8), x and grad_h_n normal."""
    steps, i, h = layer.steps, layer.input_size, layer.hidden_size
    values = {
        "x": torch.randn((steps, i), generator=gen, dtype=torch.float64),
        "h0": _uniform(gen, (h,), -0.8, 0.8),
        "weight_ih": _uniform(gen, (h, i), -1.0, 1.0),
        "weight_hh": _uniform(gen, (h, h), -1.0, 1.0),
        "bias_ih": _uniform(gen, (h,), -0.5, 0.5),
        "bias_hh": _uniform(gen, (h,), -0.5, 0.5),
        "grad_h_n": torch.randn((h,), generator=gen, dtype=torch.float64),
    }
    if not layer.bias:
        values["bias_ih"] = torch.zeros(h, dtype=torch.float64)
        values["bias_hh"] = torch.zeros(h, dtype=torch.float64)
    return values


def generator(seed: int, *salt: int) -> torch.Generator:
    value = seed
    for part in salt:
        value = value * 1009 + part
    return torch.Generator().manual_seed(value)


def founding(layer: Layer, seed: int) -> Point:
    """``nn.RNN(I, H)`` as torch initialises it after ``torch.manual_seed(seed)``, x = 1, 2, ..."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = torch.nn.RNN(
            layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity, bias=layer.bias
        )
    h = layer.hidden_size
    values = {
        "x": torch.arange(1, layer.steps * layer.input_size + 1, dtype=torch.float64).reshape(
            layer.steps, layer.input_size
        ),
        "h0": torch.zeros(h, dtype=torch.float64),
        "weight_ih": rnn.weight_ih_l0.detach().double(),
        "weight_hh": rnn.weight_hh_l0.detach().double(),
        "bias_ih": rnn.bias_ih_l0.detach().double() if layer.bias else torch.zeros(h).double(),
        "bias_hh": rnn.bias_hh_l0.detach().double() if layer.bias else torch.zeros(h).double(),
        "grad_h_n": torch.ones(h, dtype=torch.float64),
    }
    return Point("founding", 0, values)


def describe_founding(layer: Layer, seed: int) -> str:
    x = founding(layer, seed).values["x"]
    rows = ", ".join("[" + ", ".join(f"{v:g}" for v in row.tolist()) + "]" for row in x)
    return (
        f"nn.RNN({layer.input_size}, {layer.hidden_size}) after "
        f"torch.manual_seed({seed}), x = [{rows}], h0 = 0, grad_h_n = ones"
    )


def main_points(layer: Layer, seed: int, count: int = 3) -> list[Point]:
    """The founding point and ``count`` random ones."""
    gen = generator(seed, 1, layer.steps)
    return [founding(layer, seed)] + [
        Point("random", 0, random_values(gen, layer)) for _ in range(count)
    ]


def input_points(layer: Layer, seed: int, per_step: int = 2) -> list[Point]:
    """For each step k, points where x is zero at every step but k."""
    gen = generator(seed, 2, layer.steps)
    points = []
    for k in range(1, layer.steps + 1):
        for _ in range(per_step):
            values = random_values(gen, layer)
            keep = values["x"][k - 1].clone()
            values["x"].zero_()
            values["x"][k - 1] = keep
            points.append(Point("input", k, values))
    return points


def saturation_points(layer: Layer, seed: int, per_step: int = 2) -> list[Point]:
    """For each step s < T, points where a_s = 0 exactly (every chain through s is cut)."""
    gen = generator(seed, 3, layer.steps)
    points = []
    for s in range(1, layer.steps):
        for _ in range(per_step):
            values = random_values(gen, layer)
            column = values["weight_ih"][:, 0]
            magnitude = 0.3 + 0.7 * column.abs()
            sign = -1.0 if layer.nonlinearity == "relu" else torch.sign(column + 1e-300)
            values["weight_ih"][:, 0] = sign * magnitude
            values["x"][s - 1, 0] = 0.0
            states = namespace(Knobs(), values, layer.nonlinearity)
            rest = (
                values["x"][s - 1] @ values["weight_ih"].T
                + values["bias_ih"]
                + values["bias_hh"]
                + states[EVAL_NAMES.h(s - 1)] @ values["weight_hh"].T
            )
            scale = (SATURATION + rest.abs().max()) / magnitude.min()
            values["x"][s - 1, 0] = scale
            points.append(Point("saturate", s, values))
    return points


@cache
def _generated(layer: Layer):
    from ..api import derive

    return derive(
        steps=layer.steps,
        input_size=layer.input_size,
        hidden_size=layer.hidden_size,
        nonlinearity=layer.nonlinearity,
        bias=layer.bias,
    ).load()


def reference(layer: Layer, point: Point) -> dict[str, torch.Tensor]:
    """The derivation's per-step terms at ``point``: ``(T, *shape)``; ``(1, H)`` for h0.

    From the generated module's ``backward(..., per_step=True)``, batch of one, ``g_t = 0``.
    """
    module = _generated(layer)
    v = point.values
    x, h0 = v["x"].unsqueeze(1), v["h0"].unsqueeze(0)
    weights = (v["weight_ih"], v["weight_hh"])
    biases = (v["bias_ih"], v["bias_hh"]) if layer.bias else ()
    output, saved = module.forward(x, h0, *weights, *biases)
    grads = module.backward(
        x, h0, saved, *weights, torch.zeros_like(output), v["grad_h_n"].unsqueeze(0), True
    )
    per_step = grads["per_step"]
    result = {
        "weight_ih": per_step["weight_ih_l0"],
        "weight_hh": per_step["weight_hh_l0"],
        "h0": grads["h_0"],
    }
    if layer.bias:
        result["bias_ih"] = per_step["bias_ih_l0"]
        result["bias_hh"] = per_step["bias_hh_l0"]
    return result
