"""Reading the flow's numbers: which steps vanish or explode, and the summary and check lines.

A chain norm, or a step's term of ∂L/∂W_hh, is vanishing below :data:`VANISHING` times its
value at t = T and exploding above :data:`EXPLODING` times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..verification.agreement import TOLERANCE, reference_name
from .numbers import Flow

VANISHING = 1e-3
"""A chain norm (or a step's term) below this fraction of its t = T value is vanishing."""
EXPLODING = 1e3
"""A chain norm (or a step's term) above this multiple of its t = T value is exploding."""


def _steps_text(steps: list[int]) -> str:
    steps = sorted(steps)
    if steps == list(range(steps[0], steps[-1] + 1)) and len(steps) > 2:
        return f"t = {steps[0]}..{steps[-1]}"
    return "t = " + ", ".join(map(str, steps))


@dataclass(frozen=True)
class Verdict:
    """Which t have a vanishing or exploding chain, or step term, relative to t = T."""

    chain_vanishing: tuple[int, ...]
    chain_exploding: tuple[int, ...]
    term_vanishing: tuple[int, ...]
    term_exploding: tuple[int, ...]

    def note(self, t_: int) -> str:
        notes = ["term 0 as h₀ = 0"] if t_ == 1 else []
        if t_ in self.chain_vanishing:
            notes.append("vanishing")
        if t_ in self.chain_exploding:
            notes.append("exploding")
        if t_ in self.term_vanishing:
            notes.append("term vanishing")
        if t_ in self.term_exploding:
            notes.append("term exploding")
        return ", ".join(notes)

    @property
    def label(self) -> str:
        vanishing = bool(self.chain_vanishing or self.term_vanishing)
        exploding = bool(self.chain_exploding or self.term_exploding)
        if vanishing and exploding:
            return "vanishing and exploding"
        return "vanishing" if vanishing else "exploding" if exploding else "neither"


def verdict(flow: Flow) -> Verdict:
    """Flags relative to t = T; term 1 is left out: it is δ₁ h₀ᵀ = 0, as h₀ = 0."""
    first = flow.rows[0]
    last_term = flow.rows[0].contribution or 0.0

    def ratio(value: float, reference: float) -> float:
        return value / reference if reference else math.nan

    chain = [(r.t, ratio(r.spectral, first.spectral)) for r in flow.rows]
    terms = [
        (r.t, ratio(r.contribution, last_term))
        for r in flow.rows
        if r.contribution is not None and r.t != 1
    ]
    return Verdict(
        tuple(j for j, v in chain if v < VANISHING),
        tuple(j for j, v in chain if v > EXPLODING),
        tuple(j for j, v in terms if v < VANISHING),
        tuple(j for j, v in terms if v > EXPLODING),
    )


def summary(flow: Flow, notation: dict[str, str]) -> str:
    v = verdict(flow)
    chain = notation["chain"]
    smallest = min(flow.rows, key=lambda r: r.spectral)
    largest = max(flow.rows, key=lambda r: r.spectral)
    parts = []
    if v.chain_vanishing:
        parts.append(
            f"‖{chain}‖₂ < {VANISHING:g} at {_steps_text(list(v.chain_vanishing))} "
            f"(smallest {smallest.spectral:.2e} at t = {smallest.t})"
        )
    if v.chain_exploding:
        parts.append(
            f"‖{chain}‖₂ > {EXPLODING:g} at {_steps_text(list(v.chain_exploding))} "
            f"(largest {largest.spectral:.2e} at t = {largest.t})"
        )
    if v.term_vanishing:
        parts.append(
            f"step terms of ∂L/∂W_hh < {VANISHING:g} × step T's at "
            f"{_steps_text(list(v.term_vanishing))}"
        )
    if v.term_exploding:
        parts.append(
            f"step terms of ∂L/∂W_hh > {EXPLODING:g} × step T's at "
            f"{_steps_text(list(v.term_exploding))}"
        )
    if not parts:
        parts.append(
            f"‖{chain}‖₂ stays within [{VANISHING:g}, {EXPLODING:g}] (from "
            f"{smallest.spectral:.3g} to {largest.spectral:.3g})"
        )
        steps = flow.spec.steps
        over = f"over {steps} step{'s' if steps > 1 else ''}"
        return f"summary: neither vanishing nor exploding {over}: " + parts[0]
    return f"summary: {v.label}: " + "; ".join(parts)


def check_line(flow: Flow) -> str:
    worst = max(flow.errors.values())
    what = ", ".join(flow.errors)
    if flow.ok:
        return (
            f"checked against {reference_name(flow.spec)}"
            f"{' autograd' if flow.spec.custom is None else ' under autograd'} (float64): {what} "
            f"match (max relative error {worst:.1e})"
        )
    failed = [name for name, e in flow.errors.items() if e > TOLERANCE["float64"]]
    return (
        f"MISMATCH against torch autograd in {', '.join(failed)} (max relative error {worst:.1e})"
    )
