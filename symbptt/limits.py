"""Bounded work: what a request costs, estimated from its sizes before it starts, the limits
the estimates are held to, and a progress line for long loops.

Limits (environment variables, read at every check; ``inf`` turns one off):

===========================  =======  ====================================================
variable                     default  bounds
===========================  =======  ====================================================
``SYMBPTT_MAX_SECONDS``      600      the estimated time of one piece of work (and
                                      ``check --timeout``)
``SYMBPTT_MAX_MEMORY_GB``    4        its estimated memory (and ``check``'s child process)
===========================  =======  ====================================================

Work over a limit raises :class:`SpecError` naming the variable; work estimated above
:data:`ANNOUNCE_SECONDS` or :data:`ANNOUNCE_BYTES` is announced (a :class:`CostWarning`, one
line on stderr from the CLI) before it starts, and the loops over steps that the learner tools
run show a progress line on stderr while they run, when stderr is a terminal.

The estimates (:data:`DERIVATION_PER_EQUATION`, :func:`numeric_cost`, :func:`scalar_view_cost`) are
linear rules in the sizes, calibrated by ``/usr/bin/time`` of the CLI on a 2-core x86_64
(Python 3.11, SymPy 1.14, torch 2.13), rounded up:

- derivation, per step: rnn 1.1–1.6 ms and 6–8 KB (T = 2000, 8000, 30 000: 6.1 s, 11.4 s,
  50 s, 281–518 MB peak against 2.9 s and 265 MB for T = 3); gru 5.2 ms and 31 KB
  (T = 2000); lstm 4.5–7.7 ms and 26–39 KB (T = 2000, 8000: 12 s, 65 s). Twice that with
  ``num_layers`` > 1 (layers above the first are derived once more).
- numbers (verify, explain, flow): about 6 float copies of every parameter (H = 3000 rnn:
  424 MB above the 280 MB of a bare run; lstm H = 2000: 755 MB) and 6 floats per element of
  the sequences (T = 100, B = 100 000, H = 2: 1.49 GB, 20 s); time 0.5 µs per parameter
  and 0.7 µs per sequence element. Explain and flow keep every step's term of every
  parameter's gradient: 3 µs and 3 floats each (explain at T = 200, H = 200: 14 s and
  170 MB above a bare run; T = 200 and 800 at H = 50: 1.6 s and 6.3 s).
- scalar view, per unit ``T × gates × H × (H + I)``: 1.5 ms and 3 KB with SymPy (rnn T = 3,
  H = 16, 32: 2.3 s, 4.3 s; T = 20, H = 16: 9.1 s; lstm H = 16: 4.4 s), 11× less time with
  SymEngine.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import SpecError

if TYPE_CHECKING:
    from .core.spec import Spec

T = TypeVar("T")

ANNOUNCE_SECONDS = 10.0
"""Work estimated to take longer than this is announced before it starts."""
ANNOUNCE_BYTES = 1e9
"""Work estimated to take more memory than this is announced before it starts."""


def _gates(spec: Spec) -> int:
    """Row blocks of a layer's weights (:attr:`~symbptt.core.cell_definition.Cell.blocks`)."""
    return spec.definition.blocks


class CostWarning(UserWarning):
    """Announces work that takes long or much memory, before it starts."""


@dataclass(frozen=True)
class Cost:
    """The estimate of one piece of work: what it is, seconds and bytes."""

    what: str
    seconds: float = 0.0
    bytes: float = 0.0


@dataclass(frozen=True)
class Limit:
    """One limit: the environment variable that sets it, its default, and what it bounds."""

    variable: str
    default: float
    measure: str
    """The :class:`Cost` field it bounds."""
    unit: float
    """Bytes or seconds per unit of the variable's value."""
    says: str
    """How an amount of it is written in a message (``{}``: the amount)."""

    def maximum(self) -> float:
        """The limit now (the variable's value, else the default), in seconds or bytes."""
        text = os.environ.get(self.variable)
        if text is None:
            return self.default * self.unit
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value > 0:
            raise SpecError(f"{self.variable} must be a positive number (or inf), got {text!r}")
        return value * self.unit


SECONDS = Limit("SYMBPTT_MAX_SECONDS", 600.0, "seconds", 1.0, "take about {}")
MEMORY = Limit("SYMBPTT_MAX_MEMORY_GB", 4.0, "bytes", 1e9, "need about {} of memory")
LIMITS = (SECONDS, MEMORY)


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``210 h`` or ``3.2e+15 years``."""
    for unit, scale, below in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 1e6)):
        if seconds < below:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 3.15e7:.2g} years"


def size(bytes_: float) -> str:
    """``300 MB``, ``4.2 GB`` or ``8e+05 GB``."""
    return f"{bytes_ / 1e6:.0f} MB" if bytes_ < 1e9 else f"{bytes_ / 1e9:.3g} GB"


_SHOW = {"seconds": duration, "bytes": size}


def _raised(value: float) -> str:
    """A value for the variable that lets ``value`` (in its units) through, with room."""
    needed = value * 1.2
    return str(math.ceil(needed)) if needed < 1e12 else f"{needed:.2g}"


def require(cost: Cost, announce: bool = True) -> None:
    """Refuse ``cost`` if it is over a limit; announce it if it is long or large.

    Raises:
        SpecError: over :data:`SECONDS` or :data:`MEMORY`, naming the variable to raise.
    """
    for limit in LIMITS:
        value = getattr(cost, limit.measure)
        maximum = limit.maximum()
        if value > maximum:
            show = _SHOW[limit.measure]
            raise SpecError(
                f"{cost.what} would {limit.says.format(show(value))}, over the limit of "
                f"{show(maximum)}; set {limit.variable}={_raised(value / limit.unit)} to run it "
                "anyway"
            )
    if announce and (cost.seconds > ANNOUNCE_SECONDS or cost.bytes > ANNOUNCE_BYTES):
        warnings.warn(
            f"{cost.what} takes about {duration(cost.seconds)} and {size(cost.bytes)}",
            CostWarning,
            stacklevel=3,
        )


# --- estimates ---------------------------------------------------------------------------------

DERIVATION_PER_EQUATION = (0.8e-3, 4.4e3)
"""Seconds and bytes per step and equation of the cell's definition (one layer): the
measurements below over the equations of torch's cells (rnn 2, gru 8, lstm 11), rounded up;
a user-defined cell's measured 0.6 ms per step and equation (MGU, IndRNN, the peephole LSTM,
T = 50 and 200)."""


def derivation_cost(spec: Spec) -> Cost:
    """The symbolic derivation of ``spec`` (step program, adjoint, T steps, gradients)."""
    equations = len(spec.definition.equations)
    seconds, bytes_ = (equations * rate for rate in DERIVATION_PER_EQUATION)
    derivations = 2 if spec.num_layers > 1 else 1
    steps = spec.steps * derivations
    return Cost(f"deriving {spec.steps} steps of {spec.cell_name}", steps * seconds, steps * bytes_)


def parameter_count(spec: Spec) -> int:
    """Numbers in the layer's parameters (all layers and directions)."""
    gates, hidden, out = _gates(spec), spec.hidden_size, spec.output_size
    total = 0
    for layer in range(spec.num_layers):
        inputs = spec.input_size if layer == 0 else spec.directions * out
        one = gates * hidden * (inputs + out + (2 if spec.bias else 0))
        total += spec.directions * (one + (hidden * out if spec.proj_size else 0))
    return total


def weights_cost(spec: Spec) -> Cost:
    """One float32 copy of the layer's weights: what any numeric use needs at least."""
    return Cost(f"the weights of {spec.torch_constructor()}", bytes=4.0 * parameter_count(spec))


PER_PARAMETER = (0.5e-6, 6)
"""Seconds, and float copies held, per parameter of a numeric run (verify, explain, flow)."""
PER_ELEMENT = (0.7e-6, 6)
"""Seconds, and floats held, per element of the input and state sequences."""
PER_STEP_TERM = (3e-6, 3)
"""Seconds, and floats held, per parameter and step when every step's term is kept (and, in
explain, shown)."""
PER_LAYER = (2e-3, 0)
"""Seconds per layer and direction: building and running both modules' layers (torch's
RNN with 2000 layers: 0.6 s to build, 0.5 s forward and backward)."""


def numeric_cost(
    spec: Spec, what: str, batch: int = 1, itemsize: int = 8, per_step_terms: bool = False
) -> Cost:
    """Running the generated module and torch's on a batch of ``batch`` sequences.

    ``per_step_terms``: the backward also returns each step's term of every parameter's
    gradient (explain, flow): T more copies of the parameters.
    """
    params = parameter_count(spec)
    states = spec.num_layers * spec.directions * _gates(spec) * spec.hidden_size
    elements = spec.steps * batch * (spec.input_size + states)
    terms = spec.steps * params if per_step_terms else 0
    layers = spec.num_layers * spec.directions
    rules = (
        (params, PER_PARAMETER),
        (elements, PER_ELEMENT),
        (terms, PER_STEP_TERM),
        (layers, PER_LAYER),
    )
    return Cost(
        what,
        sum(count * seconds for count, (seconds, _) in rules),
        itemsize * sum(count * floats for count, (_, floats) in rules),
    )


SCALAR_VIEW = {"sympy": (1.5e-3, 3e3), "symengine": (1.5e-3 / 11, 3e3)}
"""Seconds and bytes per unit ``T × gates × H × (H + I)`` of the scalar view, by backend."""


def scalar_view_cost(spec: Spec, backend: str) -> Cost:
    """The scalar view of ``spec``'s derivation with ``backend``."""
    seconds, bytes_ = SCALAR_VIEW[backend]
    hidden = spec.hidden_size
    units = spec.steps * _gates(spec) * hidden * (hidden + spec.input_size)
    return Cost(f"the scalar view of {spec.describe()}", units * seconds, units * bytes_)


# --- progress ----------------------------------------------------------------------------------

PROGRESS_AFTER = 1.0
"""Seconds a loop runs before its progress line appears."""
_REDRAW = 0.2


def progress(items: Iterable[T], total: int, label: str) -> Iterator[T]:
    """``items``, with ``symbptt: LABEL i/TOTAL`` redrawn on stderr while they are consumed.

    Only when stderr is a terminal, and from :data:`PROGRESS_AFTER` seconds on; the line is
    erased when the loop ends.
    """
    stream = sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        yield from items
        return
    start = last = time.monotonic()
    shown = False
    try:
        for done, item in enumerate(items):
            now = time.monotonic()
            if now - start >= PROGRESS_AFTER and now - last >= _REDRAW:
                percent = 100 * done // max(total, 1)
                stream.write(f"\rsymbptt: {label} {done}/{total} ({percent}%)")
                stream.flush()
                shown, last = True, now
            yield item
    finally:
        if shown:
            stream.write("\r\033[K")
            stream.flush()
