"""The public API: :func:`derive` and the :class:`Derivation` it returns, the core's value
(:class:`symbptt.core.derivation.Derivation`) with its renderings: the equations as text, LaTeX
and Markdown (:mod:`symbptt.printing`), and the generated module (:mod:`symbptt.codegen`).

The printers and the code generator load on first use, so ``import symbptt`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from .core import derivation as core
from .core.cell_definition import Cell
from .core.spec import Spec


class Derivation(core.Derivation):
    """BPTT derived for one :class:`~symbptt.core.spec.Spec`, with its renderings."""

    def to_text(self, width: int = 100) -> str:
        """The derivation for a terminal: equations, recurrences, gradients, unrolled sums."""
        from .printing.text import derivation_text

        return derivation_text(self, width=width)

    def to_latex(self) -> str:
        """A standalone LaTeX document; every equation carries a ``\\tag``."""
        from .printing.document import latex_document

        return latex_document(self)

    def to_markdown(self) -> str:
        """Markdown with ``$$`` display math, as GitHub renders it."""
        from .printing.document import markdown_document

        return markdown_document(self)

    def _repr_latex_(self) -> str:
        from .printing.document import latex_summary

        return latex_summary(self)

    def render(self, name: str | None = None) -> str:
        """Source of the generated PyTorch module; nothing is written.

        Raises:
            SpecError: ``name`` is not a valid module name (:meth:`module_name`).
        """
        from .codegen import render_module

        return render_module(self, self.module_name(name))

    def write(
        self, out_dir: str | Path = "generated", name: str | None = None, force: bool = False
    ) -> Path:
        """Write the generated module to ``out_dir/<name>.py`` atomically; return its path.

        Raises:
            SpecError: ``name`` is not a valid module name (:meth:`module_name`).
            CodegenError: the file exists and is not symbptt's or was edited since (unless
                ``force``), or it cannot be written.
        """
        from .codegen import write_module

        return write_module(self, Path(out_dir), self.module_name(name), force=force)

    def load(self, name: str | None = None) -> ModuleType:
        """Import the generated module from its source, without writing a file.

        Raises:
            SpecError: ``name`` is not a valid module name (:meth:`module_name`).
        """
        from .codegen import load_module

        name = self.module_name(name)
        return load_module(self.render(name), name)


def derive(
    steps: int | None = None,
    input_size: int = 1,
    hidden_size: int = 2,
    nonlinearity: str = "tanh",
    bias: bool = True,
    loop: bool | None = None,
    cell: str | Cell = "rnn",
    proj_size: int = 0,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    packed: bool = False,
    truncate: int = 0,
) -> Derivation:
    """Derive BPTT for a torch recurrent layer or cell.

    ``derive()`` is the founding case, ``torch.nn.RNN(input_size=1, hidden_size=2)`` over 3
    steps; ``cell`` is one of ``rnn``, ``lstm``, ``gru``, ``rnn_cell``, ``lstm_cell``,
    ``gru_cell`` (steps default to 3 for layers, 1 for cells), or a user-defined cell,
    ``Cell.from_file("mgu.toml")``, derived as a layer over its file's equations. ``num_layers``,
    ``bidirectional``, ``dropout`` and ``proj_size`` mean what they mean in torch; ``packed``
    makes the generated module accept ``PackedSequence`` input; ``truncate=k`` derives the
    k-step truncated gradient.

    Raises:
        SpecError: for steps or sizes that are not positive integers, an unknown cell or
            nonlinearity, or an option torch rejects for the cell.
    """
    return Derivation(
        Spec(
            steps,
            input_size,
            hidden_size,
            nonlinearity,
            bias,
            loop,
            cell,
            proj_size,
            num_layers,
            bidirectional,
            dropout,
            packed,
            truncate,
        )
    )
