"""``symbptt explain``: one BPTT run in numbers, each step's share of every gradient, checked
against torch autograd. :func:`explain` runs it (``ledger``), :class:`Explanation` shows it
(``blocks`` lays it out, ``render`` writes text, Markdown, HTML, JSON); ``command`` is the
subcommand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .ledger import Ledger, collect
from .render import render_html, render_json, render_markdown, render_text

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation(Ledger):
    """One explained run and its renderings (Jupyter shows :meth:`to_html`)."""

    def to_text(self, width: int = 100) -> str:
        return render_text(self, width)

    def to_markdown(self) -> str:
        return render_markdown(self)

    def to_json(self) -> str:
        return render_json(self)

    def to_html(self) -> str:
        """HTML headings, paragraphs and tables (what Jupyter shows)."""
        return render_html(self)

    def _repr_html_(self) -> str:
        return self.to_html()


def explain(derivation, **options) -> Explanation:
    """:func:`~.ledger.collect`'s run (same arguments), as an :class:`Explanation`."""
    ledger = collect(derivation, **options)
    return Explanation(**{f.name: getattr(ledger, f.name) for f in fields(ledger)})
