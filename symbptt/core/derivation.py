"""The Derivation: forward program, adjoint program and gradients for a spec and T steps.

This object is the single source every printer and template reads; nothing downstream
re-derives anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp
from sympy import MatAdd, MatrixSymbol, ZeroMatrix

from .adjoint import StepAdjoint, adjoint_symbol, carry_symbol, step_adjoint
from .cell_program import step_program
from .program import Assignment, Parameter, StepProgram, at_step, shift, split_name, t
from .recurrence import linear_states
from .spec import Spec


@dataclass(frozen=True)
class Gradient:
    """One gradient: ``∂L/∂<of> = Σ_t term(t)`` (or one value per step for inputs).

    Attributes:
        label: equation tag, ``G1`` ... shared by the LaTeX and the generated code.
        of: the symbol the gradient is taken with respect to (``W_ih``, ``x[t]``, ``h[0]``).
        torch_name: the key in the generated ``backward``'s result (``weight_ih_l0``, ``input``,
            ``h_0``); the blocks of a stacked parameter share their parameter's name.
        generic: the per-step term for the symbolic step ``t``.
        terms: the term at each step ``t = 1..T`` (one entry for ``h[0]``).
        summed: whether the gradient is the sum of ``terms`` (parameters) or one per step.
    """

    label: str
    of: MatrixSymbol
    torch_name: str
    generic: sp.Basic
    terms: tuple[sp.Basic, ...]
    summed: bool

    @property
    def once(self) -> bool:
        """Whether this is one value (``∂L/∂h_0``), not one per step nor a sum over steps."""
        return not self.summed and not split_name(self.of)[1].has(t)


class Derivation:
    """BPTT for a torch recurrent layer over ``spec.steps`` steps, derived symbolically.

    Column convention, one sample; ``g_t = ∂L/∂output_t`` and ``g_n = ∂L/∂h_n`` (and
    ``g^c_n = ∂L/∂c_n`` for an LSTM) are the upstream cotangents torch's backward receives
    (``h_n.sum().backward()``: ``g_t = 0``, ``g_n = 1``). For ``torch.nn.RNN``::

        (F_t)  z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,     h_t = act(z_t)
        (B_t)  h̄_t = g_t + W_hhᵀ δ_{t+1}   (h̄_T = g_T + g_n),  δ_t = h̄_t ⊙ act'(h_t)
        (G)    ∂L/∂W_ih = Σ_t δ_t x_tᵀ,  ∂L/∂W_hh = Σ_t δ_t h_{t-1}ᵀ,
               ∂L/∂b_ih = ∂L/∂b_hh = Σ_t δ_t,
               ∂L/∂x_t = W_ihᵀ δ_t,  ∂L/∂h_0 = W_hhᵀ δ_1
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.step: StepProgram = step_program(spec)
        self.adjoint: StepAdjoint = step_adjoint(self.step)

    @cached_property
    def upper(self) -> Derivation | None:
        """The derivation of layers 1.. (they read D·H_out features), if there are any."""
        return type(self)(self.spec.layer(1)) if self.spec.num_layers > 1 else None

    @cached_property
    def linear_states(self) -> tuple[str, ...]:
        """The states, when each follows ``s_t = a_t ⊙ s_{t-1} + b_t`` with no gate reading a
        state (minGRU, minLSTM; :mod:`symbptt.core.recurrence`); else ``()``."""
        return linear_states(self.step)

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return self.step.parameters

    @cached_property
    def forward(self) -> tuple[tuple[Assignment, ...], ...]:
        """The step equations for ``t = 1..T``, labelled ``F1..FT``."""
        return tuple(
            tuple(a.at_step(k, f"F{k}") for a in self.step.assignments)
            for k in range(1, self.spec.steps + 1)
        )

    @cached_property
    def backward_step(self) -> tuple[Assignment, ...]:
        """The adjoint equations of the symbolic step ``t`` (``h̄_t = g_t + W_hhᵀ δ_{t+1}``)."""
        mapping = {carry_symbol(s): shift(c, 1) for s, c in self.adjoint.carry.items()}
        return tuple(
            Assignment(a.target, a.value.xreplace(mapping), a.label)
            for a in self.adjoint.assignments
        )

    @cached_property
    def backward(self) -> tuple[tuple[Assignment, ...], ...]:
        """The adjoint equations for ``t = T..1`` (in that order), labelled ``BT..B1``.

        What step ``t + 1`` sends back to each state (``W_hhᵀ δ_{t+1}`` for an RNN) replaces
        its placeholder; at ``t = T`` the final state's cotangent (``g_n``) does.
        """
        steps = []
        last = self.spec.steps
        carries = {carry_symbol(s): (shift(c, 1), s.final) for s, c in self.adjoint.carry.items()}
        for k in range(last, 0, -1):
            placeholders = [at_step(placeholder, k) for placeholder in carries]
            if self.spec.truncated_after(k):
                assignments = [
                    Assignment(a.target, _without(a.value, placeholders), a.label)
                    for a in (a.at_step(k, f"B{k}") for a in self.adjoint.assignments)
                ]
                steps.append(tuple(assignments))
                continue
            mapping = {
                at_step(placeholder, k): final if k == last else at_step(sent, k)
                for placeholder, (sent, final) in carries.items()
            }
            steps.append(
                tuple(
                    Assignment(a.target, a.value.xreplace(mapping), a.label)
                    for a in (a.at_step(k, f"B{k}") for a in self.adjoint.assignments)
                )
            )
        return tuple(steps)

    @property
    def boundary(self) -> list[Assignment]:
        """The adjoint of every state at ``t = T``, where nothing comes back from a later step."""
        last = self.spec.steps
        targets = {adjoint_symbol(at_step(state.new, last)) for state in self.step.states}
        return [a for a in self.backward[0] if a.target in targets]

    @cached_property
    def gradients(self) -> tuple[Gradient, ...]:
        """``∂L/∂`` every parameter (sums over steps), every input ``x_t`` and ``h_0``."""
        steps = range(1, self.spec.steps + 1)
        grads = []
        for parameter in self.parameters:
            for block in parameter.blocks:
                term = self.adjoint.parameter_terms[block]
                grads.append((block, parameter.torch_name, term, True))
        for symbol, term in self.adjoint.input_terms.items():
            grads.append((symbol, "input", term, False))
        result = []
        for i, (of, name, term, summed) in enumerate(grads, start=1):
            terms = tuple(at_step(term, k) for k in steps)
            result.append(Gradient(f"G{i}", of, name, term, terms, summed))
        for state, carry in self.adjoint.carry.items():
            label = f"G{len(result) + 1}"
            first = at_step(carry, 1)
            result.append(
                Gradient(
                    label, at_step(state.previous, 1), f"{state.name}_0", carry, (first,), False
                )
            )
        return tuple(result)

    def module_name(self, name: str | None = None) -> str:
        """``name`` (default: the spec's default name), checked by :func:`check_module_name`.

        Raises:
            SpecError: not a name a generated module may take (``../x``, ``class``, ``torch``).
        """
        from .spec import check_module_name

        return check_module_name(self.spec.default_name if name is None else name)


def _without(expr: sp.Basic, dropped: list[MatrixSymbol]) -> sp.Basic:
    """``expr`` with the terms ``dropped`` removed from its top-level sum (truncated BPTT)."""
    if expr in dropped:
        return ZeroMatrix(*expr.shape)
    if not isinstance(expr, MatAdd) or not any(arg in dropped for arg in expr.args):
        return expr
    kept = [arg for arg in expr.args if arg not in dropped]
    return kept[0] if len(kept) == 1 else MatAdd(*kept)
