"""A recurrent cell as data: its inputs, states, parameters and step equations.

torch's own cells are built as such objects too (:mod:`symbptt.core.torch_cells`), with the gates,
stacked parameters and prose they add; a user's cell comes from a TOML file
(``Cell.from_file("mgu.toml")``) or a string (``Cell.from_string(text)``), read by
:mod:`symbptt.core.cell_file` without evaluating anything::

    name = "MGU"
    [inputs]
    x = "I"
    [states]
    h = "H"
    [parameters]
    W_f = "H, I"
    U_f = "H, H"
    b_f = "H"
    ...
    [step]
    f = "sigmoid(W_f @ x + U_f @ h[t-1] + b_f)"
    n = "tanh(W_n @ x + U_n @ (f * h[t-1]) + b_n)"
    h = "(1 - f) * h[t-1] + f * n"

Column convention, one sample, as every derivation here: ``W @ x`` is ``W x`` with ``x`` a
column; ``*`` is element-wise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cell_expr import Equation, Shape


@dataclass(frozen=True)
class Gate:
    """A gate: torch's letter for it (``g``), the step variable holding its output (``ct``)
    and what it stands for, as text with ``$math$`` (``candidate $\\tilde{c}_t$ (gate $g$)``)."""

    letter: str
    output: str
    meaning: str


@dataclass(frozen=True)
class Stack:
    """Parameters torch keeps in one tensor, blocks stacked by rows in order: ``weight_ih``
    (``4H × I``) is ``[W_ii; W_if; W_ig; W_io]``; each block is one declared parameter."""

    argument: str
    description: str
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class Prose:
    """What the printers say of a cell beyond its equations.

    Attributes:
        terminal: a line under the derivation's heading (``c̃ₜ is torch's g gate; ...``).
        explain: a line above explain's table of forward values.
        document: the paragraph on the gates in the Markdown and LaTeX documents ($math$).
        backward: the symbols the backward's equations use, a sentence part with ``$math$``
            at step ``t`` (a single-step cell's document writes ``_1`` for each ``_t``).
        meanings: ``(variable, remark)``: a remark added to what a step variable stands for.
    """

    terminal: str = ""
    explain: str = ""
    document: str = ""
    backward: str = (
        r"$\bar{v}_t = \partial L / \partial v_t$ for a variable $v_t$ and"
        "\n"
        r"$\delta^{x}_t = \partial L / \partial a^{x}_t$ for the pre-activation of gate $x$ (the"
        " cotangent\nof a gate's output is used once and written inline)"
    )
    meanings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: read from a cell file, or one of torch's built in Python.

    Attributes:
        name: the generated class's name (``MGU``).
        description: one line saying what the cell is.
        inputs: ``(name, size letter)`` of each per-step input (``("x", "I")``).
        states: ``(name, size letter)`` of each carried state, in order; the first is the
            layer's output.
        parameters: ``(name, shape)`` of each learnable tensor, in file order: ``("H", "I")``
            an H × I matrix, ``("H",)`` a vector.
        equations: the step's equations in order, checked (every name defined before it is
            read, every state assigned once, shapes agreeing).
        source: the file it was read from (``<string>`` for :meth:`from_string`).
        text: the file's text.
        gates: the gates, for the printers (none for a user's cell).
        stacks: parameters kept stacked in one tensor, as torch keeps its cells'; the others
            are a tensor each, named ``<name>_l0``.
        prose: what the printers say of the cell beyond its equations.
    """

    name: str
    description: str
    inputs: tuple[tuple[str, str], ...]
    states: tuple[tuple[str, str], ...]
    parameters: tuple[tuple[str, Shape], ...]
    equations: tuple[Equation, ...]
    source: str = "<string>"
    text: str = field(default="", repr=False, compare=False)
    gates: tuple[Gate, ...] = ()
    stacks: tuple[Stack, ...] = ()
    prose: Prose = Prose()

    @classmethod
    def from_file(cls, path: str | Path) -> Cell:
        """Read and check the cell file at ``path``.

        Raises:
            SpecError: ``FILE:LINE:COL: message`` for the first problem found.
        """
        from .cell_file import read_cell_file

        return cls(**read_cell_file(Path(path)))

    @classmethod
    def from_string(cls, text: str, source: str = "<string>") -> Cell:
        """Read and check a cell file's text; ``source`` names it in error messages.

        Raises:
            SpecError: ``SOURCE:LINE:COL: message`` for the first problem found.
        """
        from .cell_file import parse_cell

        return cls(**parse_cell(text, source))

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parameters)

    @property
    def blocks(self) -> int:
        """Row blocks of a layer's weights: the gates a stack holds, else one per equation."""
        return len(self.stacks[0].blocks) if self.stacks else len(self.equations)
