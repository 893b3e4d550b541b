"""BPTT for an unbatched ``torch.nn.RNN`` written term by term as a person writes it, and the
catalogued hand-derivation mistakes (../shared/TORCH_SEMANTICS.md) as variants of it.

Every per-step term is built as an expression in torch's row notation, the way the founding
question writes it::

    (((a3 @ W_hh) * a2) @ W_hh) * a1 * x[0]        a_t = 1 - h_t**2 (tanh), h_0 = h0

and its numbers are that same expression evaluated, so the formula ``check`` prints for a
term is the formula whose numbers it compared. A variant is the correct computation with some
:class:`Knobs` turned; :data:`MISTAKES` names the knob settings of each catalogued mistake.
The correct knobs reproduce the derivation's per-step terms (the tests assert it against the
generated module and torch autograd).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

from .runner import KEYS, shapes


@dataclass(frozen=True)
class Knobs:
    """How a variant differs from the correct BPTT (the defaults)."""

    chain: str = "chain"
    """``"elementwise"``: ``(a3 @ W_hh) * (a2 @ W_hh) * a1`` instead of the chain."""
    backward_weight: str = ""
    """``".T"``: the chain multiplies by ``W_hh.T`` where it needs ``W_hh``."""
    forward_transpose: bool = False
    """The forward computes ``h_{t-1} @ W_hh`` instead of ``h_{t-1} @ W_hh.T``."""
    derivative: str = "h"
    """``a_t``: ``"h"`` 1 - h_t**2, ``"z"`` 1 - z_t**2, ``"square"`` (1 - h_t)**2,
    ``"inverse"`` 1 / (1 - h_t**2), ``"previous"`` a_{t-1} where a_t belongs."""
    forward_bias: str = "both"
    """``"no_ih"`` / ``"no_hh"``: that bias is left out of the forward."""
    recurrence: str = "full"
    """``"last"``: only step T's term; ``"local"``: every step's term without the recurrence."""
    state_shift: int = 1
    """The W_hh term of step t uses h_{t - state_shift} (torch: h_{t-1})."""
    input_shift: int = 0
    """The W_ih term of step t uses x of step t - input_shift."""
    transpose_ih: bool = False
    """The gradient of W_ih returned transposed."""
    transpose_hh: bool = False
    """The gradient of W_hh returned transposed."""
    bias_hh_grad: str = "sum"
    """``"zero"``: the gradient of b_hh taken as zero."""
    cotangent: str = "given"
    """``"ones"``: grad_h_n ignored, as if it were ones."""


@dataclass(frozen=True)
class Mistake:
    """One catalogued mistake as a knob setting."""

    number: int
    """Its number in the catalogue (TORCH_SEMANTICS.md, "Mistakes people make")."""
    description: str
    changes: tuple[tuple[str, object], ...]
    tanh_only: bool = False
    needs_bias: bool = False
    square_ih: bool = False
    """Only when input_size == hidden_size (else a transposed W_ih gradient has another shape
    or, for input_size 1, the same numbers)."""

    def applies(self, input_size: int, hidden_size: int, nonlinearity: str, bias: bool) -> bool:
        return (
            (not self.tanh_only or nonlinearity == "tanh")
            and (not self.needs_bias or bias)
            and (not self.square_ih or (input_size == hidden_size > 1))
        )


MISTAKES = (
    Mistake(
        1,
        "element-wise product of the per-step Jacobian pieces instead of their chain",
        (("chain", "elementwise"),),
    ),
    Mistake(
        2,
        "W_hh transposed in the backward chain (@ W_hh.T where the chain needs @ W_hh)",
        (("backward_weight", ".T"),),
    ),
    Mistake(
        2,
        "W_hh not transposed in the forward (h @ W_hh instead of h @ W_hh.T)",
        (("forward_transpose", True),),
    ),
    Mistake(
        2,
        "W_hh not transposed in the forward, and the backward chain written for that forward",
        (("forward_transpose", True), ("backward_weight", ".T")),
    ),
    Mistake(
        2,
        "the gradient of W_hh transposed (outer(h_{t-1}, delta_t) instead of "
        "outer(delta_t, h_{t-1}))",
        (("transpose_hh", True),),
    ),
    Mistake(
        2,
        "the gradient of W_ih transposed (outer(x_t, delta_t) instead of outer(delta_t, x_t))",
        (("transpose_ih", True),),
        square_ih=True,
    ),
    Mistake(
        3,
        "tanh' taken at the pre-activation, 1 - z_t**2, instead of 1 - h_t**2",
        (("derivative", "z"),),
        tanh_only=True,
    ),
    Mistake(
        3,
        "tanh' written as (1 - h_t)**2 instead of 1 - h_t**2",
        (("derivative", "square"),),
        tanh_only=True,
    ),
    Mistake(
        3,
        "tanh' written as 1 / (1 - h_t**2) instead of 1 - h_t**2",
        (("derivative", "inverse"),),
        tanh_only=True,
    ),
    Mistake(4, "b_hh left out of the forward", (("forward_bias", "no_hh"),), needs_bias=True),
    Mistake(4, "b_ih left out of the forward", (("forward_bias", "no_ih"),), needs_bias=True),
    Mistake(
        4,
        "the gradient of b_hh taken as zero (only one bias trained)",
        (("bias_hh_grad", "zero"),),
        needs_bias=True,
    ),
    Mistake(
        6,
        "only the direct term kept: the recurrence through h_{t-1} dropped, so only step T's "
        "term remains",
        (("recurrence", "last"),),
    ),
    Mistake(
        6,
        "each step's direct term grad_h_n * a_t, without the recurrence through h_{t-1}",
        (("recurrence", "local"),),
    ),
    Mistake(
        7,
        "off by one step: h_t used where h_{t-1} belongs in the W_hh term",
        (("state_shift", 0),),
    ),
    Mistake(
        7,
        "off by one step: a_{t-1} = 1 - h_{t-1}**2 used where a_t belongs",
        (("derivative", "previous"),),
    ),
    Mistake(
        7,
        "off by one step: x of step t-1 used in step t's W_ih term",
        (("input_shift", 1),),
    ),
    Mistake(
        8,
        "wrong cotangent: grad_h_n ignored (taken as ones, as for L = h_T.sum())",
        (("cotangent", "ones"),),
    ),
)


def knobs_of(mistakes: tuple[Mistake, ...]) -> Knobs | None:
    """The knobs of several mistakes together; None when two of them turn the same knob."""
    changes: dict[str, object] = {}
    for mistake in mistakes:
        for name, value in mistake.changes:
            if name in changes and changes[name] != value:
                return None
            changes[name] = value
    return Knobs(**changes)


@dataclass(frozen=True)
class Names:
    """How the user's file names the arguments (display), or the evaluation namespace's names."""

    x: str = "x"
    h0: str = "h0"
    weight_ih: str = "weight_ih"
    weight_hh: str = "weight_hh"
    bias_ih: str = "bias_ih"
    bias_hh: str = "bias_hh"
    grad_h_n: str = "grad_h_n"

    def h(self, t: int) -> str:
        return self.h0 if t == 0 else f"h{t}"


EVAL_NAMES = Names(weight_ih="W_ih", weight_hh="W_hh", grad_h_n="g")
"""The names :func:`evaluate` binds."""


def _group(expr: str) -> str:
    return expr if expr.isidentifier() else f"({expr})"


class _Terms:
    """The per-step terms of every gradient for given knobs, as row-notation expressions."""

    def __init__(self, knobs: Knobs, steps: int, input_size: int, names: Names, ones: bool):
        self.k = knobs
        self.steps = steps
        self.input_size = input_size
        self.n = names
        self.ones = ones or knobs.cotangent == "ones"
        self.w = names.weight_hh + knobs.backward_weight

    def a(self, t: int) -> str:
        return f"a{t - 1 if self.k.derivative == 'previous' else t}"

    def start(self, t: int) -> str:
        """What the chain starts from at step t: grad_h_n * a_t (a_t when it is ones)."""
        return self.a(t) if self.ones else f"{self.n.grad_h_n} * {self.a(t)}"

    def delta(self, t: int) -> str | None:
        """delta_t = dL/dz_t as an expression; None where the variant has nothing."""
        last = self.steps
        if self.k.recurrence == "local":
            return self.start(t)
        if self.k.recurrence == "last":
            return self.start(last) if t == last else None
        if self.k.chain == "elementwise" and t < last:
            hops = [f"({_group(self.start(last))} @ {self.w})"]
            hops += [f"({self.a(u)} @ {self.w})" for u in range(last - 1, t, -1)]
            return " * ".join([*hops, self.a(t)])
        expr = self.start(last)
        for u in range(last - 1, t - 1, -1):
            expr = f"({_group(expr)} @ {self.w}) * {self.a(u)}"
        return expr

    def h0(self) -> str | None:
        last = self.steps
        if self.k.recurrence == "local":
            return f"{_group(self.start(1))} @ {self.w}"
        if self.k.recurrence == "last" and last > 1:
            return None
        if self.k.chain == "elementwise" and last > 1:
            hops = [f"({_group(self.start(last))} @ {self.w})"]
            hops += [f"({self.a(u)} @ {self.w})" for u in range(last - 1, 0, -1)]
            return " * ".join(hops)
        return f"{_group(self.delta(1))} @ {self.w}"

    def term(self, key: str, t: int) -> str | None:
        if key == "h0":
            return self.h0()
        delta = self.delta(t)
        if delta is None:
            return None
        if key == "bias_ih":
            return delta
        if key == "bias_hh":
            return None if self.k.bias_hh_grad == "zero" else delta
        if key == "weight_hh":
            other, transposed = self.n.h(t - self.k.state_shift), self.k.transpose_hh
        else:
            index = t - 1 - self.k.input_shift
            if index < 0:
                return None
            other, transposed = f"{self.n.x}[{index}]", self.k.transpose_ih
            if self.input_size == 1:
                return f"{delta} * {other}"
        return f"torch.outer({other}, {delta})" if transposed else f"torch.outer({delta}, {other})"


def terms(
    knobs: Knobs,
    key: str,
    steps: int,
    input_size: int,
    names: Names = EVAL_NAMES,
    ones: bool = False,
) -> tuple[str | None, ...]:
    """The per-step terms of ``dL/d<key>`` for t = 1..T (one term for ``h0``).

    Each is a row-notation expression in ``names`` and ``a<t>``/``h<t>``, or None for a term
    the variant leaves out. ``ones`` writes them for ``grad_h_n = ones`` (``a3`` instead of
    ``grad_h_n * a3``), as for ``L = h_T.sum()``.
    """
    builder = _Terms(knobs, steps, input_size, names, ones)
    if key == "h0":
        return (builder.term(key, 1),)
    return tuple(builder.term(key, t) for t in range(1, steps + 1))


def legend(knobs: Knobs, names: Names, steps: int, nonlinearity: str) -> tuple[str, str]:
    """What ``a_t`` and ``h_t`` stand for under ``knobs``: (derivative line, forward line)."""
    x, w_ih, w_hh = names.x, names.weight_ih, names.weight_hh
    recurrent = f"h_(t-1) @ {w_hh}" + ("" if knobs.forward_transpose else ".T")
    parts = [f"{x}[t-1] @ {w_ih}.T"]
    if knobs.forward_bias != "no_ih":
        parts.append(names.bias_ih)
    parts.append(recurrent)
    if knobs.forward_bias != "no_hh":
        parts.append(names.bias_hh)
    span = "t = 1" if steps == 1 else f"t = 1..{steps}"
    forward = f"h_t = {nonlinearity}({' + '.join(parts)}) for {span}, h_0 = {names.h0}"
    if nonlinearity == "relu":
        derivative = "a_t = (h_t > 0), 1 where h_t > 0 and 0 elsewhere"
    else:
        derivative = {
            "h": "a_t = 1 - h_t**2",
            "previous": "a_t = 1 - h_t**2",
            "z": "a_t = 1 - z_t**2, z_t the pre-activation (h_t = tanh(z_t))",
            "square": "a_t = (1 - h_t)**2",
            "inverse": "a_t = 1 / (1 - h_t**2)",
        }[knobs.derivative]
    return derivative, forward


@cache
def _compiled(expr: str):
    return compile(expr, "<term>", "eval")


def namespace(knobs: Knobs, point: dict, nonlinearity: str) -> dict:
    """The values the expressions of :func:`terms` (in :data:`EVAL_NAMES`) refer to."""
    x, h0 = point["x"], point["h0"]
    weight_ih, weight_hh = point["weight_ih"], point["weight_hh"]
    bias = torch.zeros_like(h0)
    if knobs.forward_bias != "no_ih":
        bias = bias + point["bias_ih"]
    if knobs.forward_bias != "no_hh":
        bias = bias + point["bias_hh"]
    recurrent = weight_hh if knobs.forward_transpose else weight_hh.T
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    hs, zs = [h0], [None]
    for t in range(x.shape[0]):
        zs.append(x[t] @ weight_ih.T + bias + hs[-1] @ recurrent)
        hs.append(act(zs[-1]))
    values = {"torch": torch, "x": x, "W_hh": weight_hh, "g": point["grad_h_n"]}
    for t, h in enumerate(hs):
        values[EVAL_NAMES.h(t)] = h
        if nonlinearity == "relu":
            a = (h > 0).to(h.dtype)
        elif knobs.derivative == "z" and t > 0:
            a = 1 - zs[t] ** 2
        elif knobs.derivative == "square":
            a = (1 - h) ** 2
        elif knobs.derivative == "inverse":
            a = 1 / (1 - h**2)
        else:
            a = 1 - h**2
        values[f"a{t}"] = a
    return values


def evaluate(
    knobs: Knobs, point: dict, nonlinearity: str, keys: tuple[str, ...] = KEYS
) -> dict[str, torch.Tensor]:
    """Every gradient's per-step terms at ``point``: ``(T, *shape)``, ``(1, H)`` for h0."""
    steps, input_size = point["x"].shape
    hidden_size = point["h0"].shape[0]
    values = namespace(knobs, point, nonlinearity)
    result = {}
    for key in keys:
        shape = shapes(input_size, hidden_size)[key]
        stacked = []
        for expr in terms(knobs, key, steps, input_size):
            term = (
                torch.zeros(shape, dtype=point["x"].dtype)
                if expr is None
                else eval(_compiled(expr), values)
            )
            stacked.append(term.reshape(shape))
        result[key] = torch.stack(stacked)
    return result
