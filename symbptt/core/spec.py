"""What to derive: the recurrent layer, its sizes and the number of steps, validated once."""

from __future__ import annotations

import keyword
import re
import sys
import warnings
from dataclasses import dataclass, replace
from functools import cached_property

from ..errors import SpecError
from ..limits import CostWarning, derivation_cost, require, weights_cost
from .cell_definition import Cell
from .torch_cells import TORCH_CELLS, Options, torch_cell

NONLINEARITIES = ("tanh", "relu")
CELLS = (*TORCH_CELLS, *(f"{family}_cell" for family in TORCH_CELLS))
"""Layers (a sequence of steps) and single-step cells, named like torch's classes."""
TORCH_CLASS = {
    **{family: kind.torch_class for family, kind in TORCH_CELLS.items()},
    **{f"{family}_cell": f"{kind.torch_class}Cell" for family, kind in TORCH_CELLS.items()},
}
KEYWORDS = {
    **{family: kind.keywords for family, kind in TORCH_CELLS.items()},
    **{f"{family}_cell": kind.cell_keywords for family, kind in TORCH_CELLS.items()},
}
"""Each torch class's constructor arguments, beyond the sizes and ``bias``, that options set."""

KEYWORD_RULES = {
    "nonlinearity": ("tanh", "--nonlinearity is for {who} only, not {cell}"),
    "proj_size": (0, "proj_size is for {who} only (torch rejects it for {cell})"),
}
"""Each such option: its value when left out, and the message when a class does not take it."""
LOOP_FORM_THRESHOLD = 16
"""Above this many steps the generated code uses a loop instead of writing every step out."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

RESERVED_MODULE_NAMES = frozenset(sys.stdlib_module_names) | {"torch", "symbptt"}
"""Names a generated module may not take: as a file next to a script it would shadow the
module of that name for every import there, ``import torch`` and ``import math`` in the
generated code itself included."""

MAX_MODULE_NAME = 200
"""Longest module name: ``<name>.py`` and its temporary file stay within a file name's 255 bytes."""

_MODULE_NAME_RULES = (
    (
        lambda name: not isinstance(name, str) or _NAME.fullmatch(name) is None,
        "--name must be a Python identifier (letters, digits, _), got {name!r}",
    ),
    (keyword.iskeyword, "--name {name!r} is a Python keyword; choose another module name"),
    (
        lambda name: name.startswith("__") and name.endswith("__"),
        "--name {name!r} is a special module name (__...__); choose another",
    ),
    (
        RESERVED_MODULE_NAMES.__contains__,
        "--name {name!r} would shadow the module of that name (the standard library, torch or "
        "symbptt); choose another",
    ),
    (
        lambda name: len(name) > MAX_MODULE_NAME,
        f"--name is longer than {MAX_MODULE_NAME} characters",
    ),
)
"""Each rule a module name must pass, in order: the test that fails it and the message."""


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
    """A torch recurrent layer (one layer, one direction) unrolled over ``steps`` steps, or a
    single-step cell.

    Args:
        steps: T, the number of time steps (>= 1); default 3 for layers, and 1 (the only
            value allowed) for cells.
        input_size: I, features of x_t.
        hidden_size: H, features of h_t (of c_t for an LSTM with a projection).
        nonlinearity: ``"tanh"`` or ``"relu"``, for ``rnn`` and ``rnn_cell`` only.
        bias: whether the layer has ``bias_ih`` and ``bias_hh``.
        loop: write the generated code as a loop over steps; ``None`` picks it above
            :data:`LOOP_FORM_THRESHOLD` steps.
        cell: one of :data:`CELLS`, or a user-defined :class:`~symbptt.core.cell_definition.Cell`
            (a layer over its equations, with parameters named as in its file).
        proj_size: P, LSTM only: ``h_t = W_hr (o_t ⊙ tanh(c_t))`` of size P < H; 0 for none.
        num_layers: stacked layers; layer k+1 reads layer k's output.
        bidirectional: a second direction per layer reads the sequence reversed.
        dropout: probability of zeroing layer k's output before layer k+1 reads it (training
            mode only; not after the last layer).
        packed: the generated module also accepts ``PackedSequence`` input (variable lengths);
            the step equations then carry a mask ``m_t`` (1 while a sequence lasts, else 0).
        truncate: k > 0 gives the k-step truncated gradient: nothing flows back from step
            t + 1 into step t when t is a multiple of k (torch's result when the carried state
            is detached every k steps); 0 for full BPTT.
    """

    steps: int | None = None
    input_size: int = 1
    hidden_size: int = 2
    nonlinearity: str = "tanh"
    bias: bool = True
    loop: bool | None = None
    cell: str | Cell = "rnn"
    proj_size: int = 0
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    packed: bool = False
    truncate: int = 0

    def __post_init__(self) -> None:
        if self.custom is not None:
            self._check_custom()
        elif self.cell not in CELLS:
            raise SpecError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.steps is None:
            object.__setattr__(self, "steps", 1 if self.is_cell else 3)
        object.__setattr__(self, "steps", _positive_int(self.steps, "steps"))
        object.__setattr__(self, "input_size", _positive_int(self.input_size, "input_size"))
        object.__setattr__(self, "hidden_size", _positive_int(self.hidden_size, "hidden_size"))
        if self.is_cell and self.steps != 1:
            raise SpecError(f"{self.cell} is a single step; --steps must be 1 (or left out)")
        self._check_keyword("nonlinearity")
        if isinstance(self.proj_size, bool) or not isinstance(self.proj_size, int):
            raise SpecError(f"proj_size must be a non-negative integer, got {self.proj_size!r}")
        if self.proj_size < 0:
            raise SpecError(f"proj_size must be a non-negative integer, got {self.proj_size}")
        self._check_keyword("proj_size")
        if self.proj_size and self.proj_size >= self.hidden_size:
            raise SpecError(
                f"proj_size ({self.proj_size}) must be smaller than hidden_size "
                f"({self.hidden_size})"
            )
        if self.nonlinearity not in NONLINEARITIES:
            raise SpecError(
                f"unknown nonlinearity {self.nonlinearity!r}; torch.nn.RNN accepts "
                + " or ".join(repr(n) for n in NONLINEARITIES)
            )
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be True or False, got {self.bias!r}")
        if self.loop is not None and not isinstance(self.loop, bool):
            raise SpecError(f"loop must be True, False or None, got {self.loop!r}")
        self._check_network()
        self._check_cost()

    def _check_keyword(self, keyword: str) -> None:
        """An option torch's class takes only for some cells (:data:`KEYWORD_RULES`)."""
        default, message = KEYWORD_RULES[keyword]
        if getattr(self, keyword) != default and keyword not in self.torch_keywords:
            who = " and ".join(cell for cell, taken in KEYWORDS.items() if keyword in taken)
            raise SpecError(message.format(who=who, cell=self.cell))

    def _check_custom(self) -> None:
        """A user-defined cell: a layer whose parameters and sizes its file declares."""
        fixed = [
            option
            for option, on in (
                ("--nonlinearity", self.nonlinearity != "tanh"),
                ("--no-bias", not self.bias),
                ("--proj-size", self.proj_size),
            )
            if on
        ]
        if fixed:
            raise SpecError(
                f"{', '.join(fixed)} do not apply to the cell {self.cell.name} from "
                f"{self.cell.source}: its parameters and functions are the ones its file declares"
            )

    def _check_network(self) -> None:
        object.__setattr__(self, "num_layers", _positive_int(self.num_layers, "num_layers"))
        for flag in ("bidirectional", "packed"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise SpecError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0 <= self.dropout < 1:
            raise SpecError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.is_cell:
            extras = [
                name
                for name, on in (
                    ("num_layers", self.num_layers != 1),
                    ("bidirectional", self.bidirectional),
                    ("dropout", self.dropout != 0),
                    ("packed", self.packed),
                )
                if on
            ]
            if extras:
                raise SpecError(f"{self.cell} takes no {', '.join(extras)} (a cell is one step)")
        if isinstance(self.truncate, bool) or not isinstance(self.truncate, int):
            raise SpecError(f"truncate must be a non-negative integer, got {self.truncate!r}")
        if self.truncate < 0:
            raise SpecError(f"truncate must be a non-negative integer, got {self.truncate}")
        if self.truncate and (self.is_network or self.is_cell):
            raise SpecError(
                "--truncate is for one layer, one direction, without --packed "
                f"(not {self.cell} with these options)"
            )
        if self.dropout and self.num_layers == 1:
            warnings.warn(
                "dropout acts between layers, so with num_layers=1 it does nothing (as in torch)",
                UserWarning,
                stacklevel=3,
            )

    @property
    def directions(self) -> int:
        """D: 2 if bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def is_network(self) -> bool:
        """Whether the module composes several layers, directions, dropout or packing."""
        return self.num_layers > 1 or self.bidirectional or self.packed or self.dropout > 0

    def truncated_after(self, step: int) -> bool:
        """Whether nothing flows back into ``step`` from ``step + 1`` (truncated BPTT)."""
        return bool(self.truncate) and step % self.truncate == 0 and step < self.steps

    def layer(self, index: int) -> Spec:
        """The one-layer, one-direction spec of layer ``index`` (its input size differs above 0)."""
        size = self.input_size if index == 0 else self.directions * self.output_size
        with warnings.catch_warnings():  # its cost is part of this spec's, announced already
            warnings.simplefilter("ignore", CostWarning)
            return replace(self, input_size=size, num_layers=1, bidirectional=False, dropout=0.0)

    def _check_cost(self) -> None:
        """Refuse a derivation over the limits of :mod:`symbptt.limits` (announce a long one),
        and a layer whose weights alone exceed the memory limit."""
        require(derivation_cost(self))
        require(weights_cost(self), announce=False)

    @property
    def custom(self) -> Cell | None:
        """The user-defined cell, or None for torch's."""
        return self.cell if isinstance(self.cell, Cell) else None

    @property
    def cell_name(self) -> str:
        """``rnn``, ``lstm_cell``, ... or a user-defined cell's name."""
        return self.custom.name if self.custom is not None else self.cell

    @property
    def is_cell(self) -> bool:
        """Whether this is a single-step cell module (``RNNCell``, ...)."""
        return self.custom is None and self.cell.endswith("_cell")

    @property
    def family(self) -> str:
        """``rnn``, ``lstm`` or ``gru``, whether a layer or a cell; ``custom`` for a
        user-defined cell."""
        return "custom" if self.custom is not None else self.cell.removesuffix("_cell")

    @property
    def torch_keywords(self) -> tuple[str, ...]:
        """The options passed on to torch's class by name (``nonlinearity`` for an RNN)."""
        return () if self.custom is not None else KEYWORDS[self.cell]

    @cached_property
    def definition(self) -> Cell:
        """The cell: the user's, or torch's built for these options
        (:mod:`symbptt.core.torch_cells`)."""
        if self.custom is not None:
            return self.custom
        return torch_cell(self.family, Options(self.nonlinearity, self.bias, self.proj_size))

    @property
    def torch_class(self) -> str:
        """torch's class (``LSTM``), or the user-defined cell's name (``MGU``)."""
        return self.custom.name if self.custom is not None else TORCH_CLASS[self.cell]

    @property
    def states(self) -> list[tuple[str, int]]:
        """The carried states, the output's first, and their sizes as the cell declares them:
        ``h`` (H_out), then ``c`` (H) for an LSTM."""
        return [(name, self.sizes[letter]) for name, letter in self.definition.states]

    @property
    def sizes(self) -> dict[str, int]:
        """What each size letter of the cell's shapes stands for: I, H, and P (H_out)."""
        return {"I": self.input_size, "H": self.hidden_size, "P": self.output_size}

    @property
    def output_size(self) -> int:
        """H_out: ``proj_size`` when projecting, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def loop_form(self) -> bool:
        """Whether generated code loops over steps (else every step is written out)."""
        return self.steps > LOOP_FORM_THRESHOLD if self.loop is None else self.loop

    @property
    def default_name(self) -> str:
        """File stem of the generated module, e.g. ``rnn_tanh_t3_i1_h2``."""
        if self.custom is not None:
            kind = self.custom.name.lower()
        else:
            kind = TORCH_CELLS[self.family].stem(Options(self.nonlinearity, self.bias))
        if self.is_cell:
            kind += "_cell"
        name = f"{kind}_t{self.steps}_i{self.input_size}_h{self.hidden_size}"
        if self.proj_size:
            name += f"_p{self.proj_size}"
        if not self.bias:
            name += "_nobias"
        if self.num_layers > 1:
            name += f"_l{self.num_layers}"
        if self.bidirectional:
            name += "_bi"
        if self.dropout:
            name += "_dropout"
        if self.packed:
            name += "_packed"
        if self.truncate:
            name += f"_tbptt{self.truncate}"
        if self.loop is not None and self.loop != (self.steps > LOOP_FORM_THRESHOLD):
            name += "_loop" if self.loop else "_unrolled"
        return name

    def torch_constructor(self) -> str:
        """The ``torch.nn.RNN(...)`` (or LSTM, GRU, ...Cell) call this spec mirrors."""
        args = [f"input_size={self.input_size}", f"hidden_size={self.hidden_size}"]
        if self.nonlinearity != "tanh":
            args.append(f"nonlinearity={self.nonlinearity!r}")
        if not self.bias:
            args.append("bias=False")
        if self.num_layers > 1:
            args.append(f"num_layers={self.num_layers}")
        if self.dropout:
            args.append(f"dropout={self.dropout}")
        if self.bidirectional:
            args.append("bidirectional=True")
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        if self.custom is not None:
            return f"{self.torch_class}({', '.join(args)})"
        return f"torch.nn.{self.torch_class}({', '.join(args)})"

    def describe(self) -> str:
        """One line: the layer and the number of steps."""
        if self.is_cell:
            return f"{self.torch_constructor()}, one step"
        steps = f"{self.steps} step{'s' if self.steps > 1 else ''}"
        if self.truncate:
            steps += f", truncated every {self.truncate}"
        return f"{self.torch_constructor()}, {steps}"

    def cli_options(self) -> str:
        """The ``symbptt derive`` options that reproduce this spec."""
        opts = (
            []
            if self.cell == "rnn"
            else [f"--cell {self.custom.source if self.custom else self.cell}"]
        )
        opts += [] if self.is_cell else [f"--steps {self.steps}"]
        opts += [f"--input-size {self.input_size}", f"--hidden-size {self.hidden_size}"]
        if self.proj_size:
            opts.append(f"--proj-size {self.proj_size}")
        if self.nonlinearity != "tanh":
            opts.append(f"--nonlinearity {self.nonlinearity}")
        if not self.bias:
            opts.append("--no-bias")
        if self.num_layers > 1:
            opts.append(f"--num-layers {self.num_layers}")
        if self.bidirectional:
            opts.append("--bidirectional")
        if self.dropout:
            opts.append(f"--dropout {self.dropout}")
        if self.packed:
            opts.append("--packed")
        if self.truncate:
            opts.append(f"--truncate {self.truncate}")
        if self.loop is not None:
            opts.append("--loop" if self.loop else "--unrolled")
        return " ".join(opts)


def check_module_name(name: str) -> str:
    """Return ``name`` if a generated module may be called so, else raise :class:`SpecError`.

    The one check of module names, for ``--name`` and the API's ``render``, ``write`` and
    ``load`` alike (:data:`_MODULE_NAME_RULES`): an ASCII identifier, not a keyword, not a
    ``__dunder__``, not in :data:`RESERVED_MODULE_NAMES`, at most :data:`MAX_MODULE_NAME` long.
    """
    for fails, message in _MODULE_NAME_RULES:
        if fails(name):
            raise SpecError(message.format(name=name))
    return name
