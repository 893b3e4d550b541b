"""A user-defined recurrent cell: its inputs, states, parameters and step equations, as data.

A cell comes from a TOML file (``Cell.from_file("mgu.toml")``) or a string
(``Cell.from_string(text)``), read by :mod:`symbptt.cell_file` without evaluating anything::

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
class Cell:
    """A recurrent cell read from a cell file.

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
    """

    name: str
    description: str
    inputs: tuple[tuple[str, str], ...]
    states: tuple[tuple[str, str], ...]
    parameters: tuple[tuple[str, Shape], ...]
    equations: tuple[Equation, ...]
    source: str = "<string>"
    text: str = field(default="", repr=False, compare=False)

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
