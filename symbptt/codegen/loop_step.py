"""The body of the loop over ``t``: fewer tensor operations per step.

Every operation a step runs costs a few microseconds of Python and dispatch whatever the sizes,
so at small and medium sizes the count of operations, not the arithmetic, sets the time. Two
rewrites of the printed statements cut that count without changing what is computed:

* a value stored into a per-step slot is written there directly (``out=``) instead of being
  made and then copied: ``torch.sigmoid(a_i, out=i_t)``, ``torch.mul(u, v, out=delta_t)``,
  ``torch.add(u, v, out=c_t)``, ``torch.addcmul(f_t * c_prev, i_t, ct_t, out=c_t)`` (with a
  printer that fuses ``x + u ⊙ v``);
* a slot read or written more than once in a step is indexed once, at the top of the step
  (``i_t = i[t - 1]``, a view), and named after the step it holds: ``h[t - 1]`` -> ``h_prev``,
  ``c[t]`` -> ``c_t``, ``i[t - 1]`` -> ``i_t`` (states are stored from step 0, everything else
  from step 1).

Then :func:`hoist` moves what every step would redo before the loop: each sequence is split
into its steps once (``i_steps = i.unbind(0)``: a tuple of views, which the loop indexes for
nanoseconds where ``i[t - 1]`` costs a tensor operation), and each transposed weight is taken
once (``weight_hh_T = weight_hh.T``).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import HadamardProduct, MatAdd

from ..core.matexpr import Elementwise
from ..printing.names import STATE_BASES
from .torch_code import BatchedTorchPrinter

_SLOT = re.compile(r"(?<![\w.\]])([A-Za-z_]\w*)\[(t|t - 1)\]")
"""``name[t]`` or ``name[t - 1]``: one step's slot of a sequence tensor."""


def is_slot(code: str) -> bool:
    return _SLOT.fullmatch(code) is not None


def store(printer: BatchedTorchPrinter, slot: str, value: sp.Basic) -> str:
    """The statement that writes ``value`` into ``slot``, through ``out=`` where torch has it."""
    if isinstance(value, Elementwise) and value.function.torch_out:
        return value.function.torch_out.format(printer.doprint(value.arg), slot)
    if isinstance(value, HadamardProduct):
        *first, last = value.args
        left = printer.doprint(first[0] if len(first) == 1 else HadamardProduct(*first))
        return f"torch.mul({left}, {printer.doprint(last)}, out={slot})"
    fused = printer.multiply_add(value, out=slot) if isinstance(value, MatAdd) else None
    if fused is not None:
        return fused
    terms = printer.terms(value) if isinstance(value, MatAdd) else []
    if len(terms) == 2 and not all(term.startswith("-") for term in terms):
        left, right = sorted(terms, key=lambda term: term.startswith("-"))
        if right.startswith("-"):
            return f"torch.sub({left}, {right[1:]}, out={slot})"
        return f"torch.add({left}, {right}, out={slot})"
    return f"{slot} = {printer.doprint(value)}"


def alias_name(base: str, index: str, states: tuple[str, ...] = STATE_BASES) -> str:
    """``h[t - 1]`` -> ``h_prev``, ``c[t]`` -> ``c_t``, ``i[t - 1]`` -> ``i_t``, for sequences
    of ``states`` stored from step 0 and the rest from step 1."""
    step = (0 if index == "t" else -1) + (0 if base in states else 1)
    return f"{base}_{ {-1: 'prev', 0: 't', 1: 'next'}[step] }"


def alias_slots(
    lines: list[str], taken: set[str], states: tuple[str, ...] = STATE_BASES
) -> tuple[list[str], list[str]]:
    """Index each slot used more than once a single time: ``(aliases, rewritten lines)``.

    ``taken`` holds the names already in use where the lines run; a slot whose alias would
    collide with one stays indexed in place. A statement ``slot = value`` whose slot gets an
    alias becomes ``alias.copy_(value)``: rebinding the name would not write the slot.
    """
    counts: dict[str, int] = {}
    for line in lines:
        for match in _SLOT.finditer(line):
            counts[match.group(0)] = counts.get(match.group(0), 0) + 1
    aliases = {}
    for slot, count in counts.items():
        match = _SLOT.fullmatch(slot)
        name = alias_name(match.group(1), match.group(2), states)
        if count > 1 and name not in taken:
            aliases[slot] = name
    if not aliases:
        return [], lines
    rewritten = []
    for line in lines:
        target, equals, value = line.partition(" = ")
        if equals and target in aliases:
            line = f"{target}.copy_({value})"
        rewritten.append(_SLOT.sub(lambda m: aliases.get(m.group(0), m.group(0)), line))
    return [f"{name} = {slot}" for slot, name in aliases.items()], rewritten


_STEP_INDEX = re.compile(r"(?<![\w.\]])([A-Za-z_]\w*)\[(t|t - 1)(?:, ([^\[\]]+))?\]")
"""``name[t]``, ``name[t - 1]`` or ``name[t - 1, :, 0:128]``."""
_TRANSPOSED = re.compile(r"(?<![\w.\]])([A-Za-z_]\w*)\.T\b")
"""``weight_hh.T``."""


def hoist(lines: list[str]) -> tuple[list[str], list[str]]:
    """``(before, rewritten lines)``: the loop's sequences split into steps and its weights
    transposed once, before it (``i_steps = i.unbind(0)``, ``weight_hh_T = weight_hh.T``);
    in the lines ``i[t - 1]`` -> ``i_steps[t - 1]``, ``x_w[t - 1, :, 0:128]`` ->
    ``x_w_steps[t - 1][:, 0:128]``, ``weight_hh.T`` -> ``weight_hh_T``, and ``u[t - 1] =
    value`` -> ``u_steps[t - 1].copy_(value)``. Names the lines assign (or update in place,
    ``u[t - 1] += ...``) are left as they are."""
    text = "\n".join(lines)
    assigned = set(re.findall(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=(?!=)", text, re.M))
    assigned = {name.strip() for names in assigned for name in names.split(",")}
    assigned |= set(re.findall(r"^\s*([A-Za-z_]\w*)\[[^\]]*\]\s*[^\s=]=", text, re.M))
    sequences = [n for n in dict.fromkeys(m.group(1) for m in _STEP_INDEX.finditer(text))]
    sequences = [n for n in sequences if n not in assigned]
    weights = [n for n in dict.fromkeys(_TRANSPOSED.findall(text)) if n not in assigned]
    taken = set(re.findall(r"\w+", text))
    sequences = [n for n in sequences if f"{n}_steps" not in taken]
    weights = [n for n in weights if f"{n}_T" not in taken]
    if not sequences and not weights:
        return [], lines

    def step(match: re.Match) -> str:
        name, index, rest = match.groups()
        if name not in sequences:
            return match.group(0)
        return f"{name}_steps[{index}]" + (f"[{rest}]" if rest else "")

    def transposed(match: re.Match) -> str:
        name = match.group(1)
        return f"{name}_T" if name in weights else match.group(0)

    rewritten = []
    for line in lines:
        target, equals, value = line.partition(" = ")
        line = _TRANSPOSED.sub(transposed, _STEP_INDEX.sub(step, line))
        if equals and _STEP_INDEX.fullmatch(target) and target != _STEP_INDEX.sub(step, target):
            # a step of a tuple cannot be assigned to: write into the view
            line = f"{_STEP_INDEX.sub(step, target)}.copy_({line.partition(' = ')[2]})"
        rewritten.append(line)
    before = [f"{name}_steps = {name}.unbind(0)" for name in sequences]
    before += [f"{name}_T = {name}.T" for name in weights]
    return before, rewritten
