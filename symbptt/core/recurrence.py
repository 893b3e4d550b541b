"""Which carried states follow a linear recurrence, ``s_t = a_t ⊙ s_{t-1} + b_t`` with a_t and
b_t free of every state (minGRU, minLSTM: their gates read the input only).

Such a recurrence needs no step-by-step loop in principle: the pairs (a_t, b_t) compose
associatively, ``(a, b) ∘ (a', b') = (a a', a b' + b)``, so a parallel scan runs it, and its
adjoint (the same recurrence backwards with the a_t), in depth O(log T).
"""

from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatrixSymbol

from .program import StepProgram


def _reads(program: StepProgram) -> dict[MatrixSymbol, set[MatrixSymbol]]:
    """Each assignment's target and the previous states it depends on, transitively."""
    previous = {state.previous for state in program.states}
    reads: dict[MatrixSymbol, set[MatrixSymbol]] = {}
    for assignment in program.assignments:
        found = set()
        for symbol in assignment.value.atoms(MatrixSymbol):
            found |= {symbol} & previous
            found |= reads.get(symbol, set())
        reads[assignment.target] = found
    return reads


def linear_states(program: StepProgram) -> tuple[str, ...]:
    """The names of the states, when every state's update is ``a ⊙ s_{t-1} + b`` (terms of
    the form ``b`` or ``s_{t-1} ⊙ a``) with a and b free of every state; else ``()``."""
    reads = _reads(program)
    previous = {state.previous for state in program.states}
    news = {state.new for state in program.states}
    if any(reads[target] for target in reads if target not in news):
        return ()

    def free(expr: sp.Basic) -> bool:
        return not any(s in previous or reads.get(s) for s in expr.atoms(MatrixSymbol))

    updates = {a.target: a.value for a in program.assignments}
    for state in program.states:
        value = updates[state.new]
        for term in value.args if isinstance(value, MatAdd) else (value,):
            if free(term):
                continue
            if not isinstance(term, HadamardProduct) or term.args.count(state.previous) != 1:
                return ()
            if not all(free(arg) for arg in term.args if arg != state.previous):
                return ()
    return tuple(state.name for state in program.states)
