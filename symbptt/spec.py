"""What to derive: the recurrent layer, its sizes and the number of steps, validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError

NONLINEARITIES = ("tanh", "relu")
LOOP_FORM_THRESHOLD = 16
"""Above this many steps the generated code uses a loop instead of writing every step out."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SpecError(f"{what} must be a positive integer, got {value!r}") from None
        if not as_float.is_integer():
            raise SpecError(f"{what} must be a positive integer, got {value!r}")
        value = int(as_float)
    if value < 1:
        raise SpecError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Spec:
    """A ``torch.nn.RNN`` (one layer, one direction) unrolled over ``steps`` steps.

    Equations, per sample, column convention (``W x`` where torch writes ``x W^T``)::

        z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        h_t = act(z_t),   act in {tanh, relu}

    Args:
        steps: T, the number of time steps (>= 1).
        input_size: I, features of x_t.
        hidden_size: H, features of h_t.
        nonlinearity: ``"tanh"`` or ``"relu"``, as in ``torch.nn.RNN``.
        bias: whether the layer has ``bias_ih_l0`` and ``bias_hh_l0``.
        loop: write the generated code as a loop over steps; ``None`` picks it above
            :data:`LOOP_FORM_THRESHOLD` steps.
    """

    steps: int = 3
    input_size: int = 1
    hidden_size: int = 2
    nonlinearity: str = "tanh"
    bias: bool = True
    loop: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _positive_int(self.steps, "steps"))
        object.__setattr__(self, "input_size", _positive_int(self.input_size, "input_size"))
        object.__setattr__(self, "hidden_size", _positive_int(self.hidden_size, "hidden_size"))
        if self.nonlinearity not in NONLINEARITIES:
            raise SpecError(
                f"unknown nonlinearity {self.nonlinearity!r}; torch.nn.RNN accepts "
                + " or ".join(repr(n) for n in NONLINEARITIES)
            )
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be True or False, got {self.bias!r}")
        if self.loop is not None and not isinstance(self.loop, bool):
            raise SpecError(f"loop must be True, False or None, got {self.loop!r}")

    @property
    def loop_form(self) -> bool:
        """Whether generated code loops over steps (else every step is written out)."""
        return self.steps > LOOP_FORM_THRESHOLD if self.loop is None else self.loop

    @property
    def default_name(self) -> str:
        """File stem of the generated module, e.g. ``rnn_tanh_t3_i1_h2``."""
        name = f"rnn_{self.nonlinearity}_t{self.steps}_i{self.input_size}_h{self.hidden_size}"
        if not self.bias:
            name += "_nobias"
        if self.loop is not None and self.loop != (self.steps > LOOP_FORM_THRESHOLD):
            name += "_loop" if self.loop else "_unrolled"
        return name

    def torch_constructor(self) -> str:
        """The ``torch.nn.RNN(...)`` call this spec mirrors."""
        args = [f"input_size={self.input_size}", f"hidden_size={self.hidden_size}"]
        if self.nonlinearity != "tanh":
            args.append(f"nonlinearity={self.nonlinearity!r}")
        if not self.bias:
            args.append("bias=False")
        return f"torch.nn.RNN({', '.join(args)})"

    def describe(self) -> str:
        """One line: the layer and the number of steps."""
        return f"{self.torch_constructor()}, {self.steps} step{'s' if self.steps > 1 else ''}"

    def cli_options(self) -> str:
        """The ``symbptt derive`` options that reproduce this spec."""
        opts = [
            f"--steps {self.steps}",
            f"--input-size {self.input_size}",
            f"--hidden-size {self.hidden_size}",
        ]
        if self.nonlinearity != "tanh":
            opts.append(f"--nonlinearity {self.nonlinearity}")
        if not self.bias:
            opts.append("--no-bias")
        if self.loop is not None:
            opts.append("--loop" if self.loop else "--unrolled")
        return " ".join(opts)


def check_module_name(name: str) -> str:
    """Return ``name`` if it is a valid Python module name, else raise :class:`SpecError`."""
    if not _NAME.match(name):
        raise SpecError(f"--name must be a Python identifier (letters, digits, _), got {name!r}")
    return name
