"""What an explanation shows, laid out once for every format: headings, paragraphs, tables.

:func:`explanation_blocks` turns an :class:`~.ledger.Ledger` into a list of
:class:`Block` (the weights, the forward values and δ per step, each gradient's terms per step
with their shares, the result), with numbers written as text; :mod:`.render` writes
the blocks as terminal text, Markdown or HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..printing.names import SUPERSCRIPT
from ..verification.agreement import TOLERANCE, reference_name
from .ledger import LOSSES, GradientTerms, Ledger

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _number(v: float) -> str:
    if v == 0:
        return "0.0000"
    if 1e-4 <= abs(v) < 1e6:
        return f"{v:.4f}"
    return f"{v:.3e}"


def _entries(tensor) -> list[str]:
    return [_number(v) for v in tensor.reshape(-1).tolist()]


def _bracket(tensor, width: int) -> str:
    """``[a, b]`` for a vector, ``[a, b; c, d]`` (rows) for a matrix; entries right-aligned."""
    cells = [e.rjust(width) for e in _entries(tensor)]
    if tensor.dim() == 2:
        cols = tensor.shape[1]
        rows = [", ".join(cells[i : i + cols]) for i in range(0, len(cells), cols)]
        return "[" + "; ".join(rows) + "]"
    return "[" + ", ".join(cells) + "]"


def _entry_width(tensors) -> int:
    return max((len(e) for t in tensors for e in _entries(t)), default=1)


def _step_name(name: str, step: int) -> str:
    from ..printing.names import text_base

    return text_base(name) + str(step).translate(_SUBSCRIPT)


@dataclass
class Table:
    """A table of text cells, one alignment a column."""

    headers: tuple[str, ...]
    aligns: str  # "l" or "r" per column
    rows: list[tuple[str, ...]]
    rules: set[int] = field(default_factory=set)
    """Row indices that a rule line precedes (text only)."""


@dataclass
class Block:
    """One piece of an explanation: a heading, a paragraph, a list of lines or equations, or a
    :class:`Table`; ``level`` is a heading's depth (1 for the title)."""

    kind: str  # "heading", "para", "lines" (a list), "equations", "table"
    content: object
    level: int = 2


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"


def _value_table(values: dict, label: str, width: int, steps: int) -> Table:
    """One row per step and quantity; the entries when they fit, else the norm."""
    avail = width - 2 - max(2, len(str(steps))) - 2 - 8 - 2
    fits = {name: _entry_width([value]) for name, value in values.items()}
    common = max(fits.values())
    shown = {}
    for name, value in values.items():
        w = common if len(_bracket(value[0], common)) <= avail else fits[name]
        shown[name] = (w if len(_bracket(value[0], w)) <= avail else None, value.shape[-1])
    rows = []
    for k in range(steps):
        for j, (name, value) in enumerate(values.items()):
            w, size = shown[name]
            cell = _bracket(value[k], w) if w else f"‖·‖ = {_number(float(value[k].norm()))}"
            if not w:
                cell += f" ({size} entries)"
            rows.append((str(k + 1) if j == 0 else "", _step_name(name, k + 1), cell))
    rules = {k * len(values) for k in range(1, steps)} if len(values) > 1 else set()
    return Table(("t", label, "value"), "rll", rows, rules)


def _gradient_table(grad: GradientTerms, width: int) -> Table:
    steps = grad.terms.shape[0]
    norms, shares = grad.norms, grad.shares
    labels = [str(k) for k in range(1, steps + 1)] + ["sum", "torch"]
    label_w = max(len(s) for s in labels)
    fixed = 2 + label_w + 2 + 11 + 2 + 8
    tensors = [*grad.terms, grad.total, grad.torch_grad]
    w = _entry_width(tensors)
    entries = [_bracket(t, w) for t in tensors]
    show = grad.signed or max(len(e) for e in entries) + 2 <= width - fixed
    all_norms = norms + [float(grad.total.norm()), float(grad.torch_grad.norm())]
    share_cells = [_percent(s) for s in shares] + ["", ""]
    rows = []
    for i, label in enumerate(labels):
        row = (label, entries[i]) if show else (label,)
        if grad.signed:
            rows.append((*row, share_cells[i]))
        else:
            rows.append((*row, _number(all_norms[i]), share_cells[i]))
    share_head = "share (signed)" if grad.signed else "share"
    if grad.signed:
        headers, aligns = ("t", "term", share_head), "rlr"
    elif show:
        headers, aligns = ("t", "term", "‖term‖", share_head), "rlrr"
    else:
        headers, aligns = ("t", "‖term‖", share_head), "rrr"
    return Table(headers, aligns, rows, {steps})


def explanation_blocks(e: Ledger, width: int = 100) -> list[Block]:
    spec = e.spec
    expression, cotangents = LOSSES[e.loss]
    others = [name for name, _ in spec.states[1:]]
    cotangents += "".join(f", g{name.translate(SUPERSCRIPT)}ₙ = 0" for name in others)
    if spec.is_cell:
        expression = "L = h'.sum()"
        cotangents = "∂L/∂h' = 1" + "".join(f", ∂L/∂{name}' = 0" for name in others)
    zero_states = ", ".join(f"{s}₀ = 0" for s in e.states)
    blocks = [
        Block("heading", f"symbptt explain: {spec.describe()}", 1),
        Block(
            "lines",
            [
                f"weights: {e.weights_source}, run in float64",
                f"input:   x {e.input_source} (unbatched, run as batch 1); {zero_states}",
                f"loss:    {expression} = {_number(e.loss_value)} (cotangents {cotangents})",
                "generated forward/backward(per_step=True) against "
                f"{reference_name(spec)} and autograd, same weights",
                *_truncation_note(spec),
            ],
        ),
        Block("heading", "Weights"),
    ]
    weight_rows = []
    avail = width - 2 - 14 - 2 - 10 - 2
    for name, value in e.weights.items():
        w = _entry_width([value])
        text = _bracket(value, w)
        if len(text) > avail:
            text = f"‖·‖ = {_number(float(value.norm()))} ({value.numel()} entries)"
        weight_rows.append((name, str(tuple(value.shape)), text))
    blocks.append(Block("table", Table(("name", "shape", "value"), "lrl", weight_rows)))
    blocks.append(Block("heading", "Forward values per step (generated forward)"))
    if spec.definition.prose.explain:
        blocks.append(Block("para", spec.definition.prose.explain))
    blocks.append(Block("table", _value_table(e.forward, "quantity", width, spec.steps)))
    blocks.append(
        Block(
            "para",
            f"output vs torch's: max |difference| = {e.output_diff:.1e}"
            + ("" if e.output_ok else " (MISMATCH)"),
        )
    )
    blocks.append(Block("heading", "δ per step (generated backward; computed from t = T down)"))
    blocks.append(Block("table", _value_table(e.adjoints, "adjoint", width, spec.steps)))
    blocks.append(Block("heading", "Each step's term of every gradient"))
    blocks.append(
        Block(
            "para",
            "share = ‖termₜ‖ / Σₛ ‖termₛ‖ (Frobenius norms; they add up to 100 %), or for a "
            "one-entry parameter the signed termₜ / total. The entries are shown when they fit "
            "([a, b; c, d] lists a matrix's rows), else the norm only. torch = its .grad from "
            "autograd of the same loss.",
        )
    )
    for grad in e.gradients:
        blocks.append(Block("heading", f"{grad.name}, shape {grad.shape}: {grad.description}", 3))
        if grad.equations:
            blocks.append(Block("equations", list(grad.equations)))
        blocks.append(Block("table", _gradient_table(grad, width)))
        verdict = "matches" if grad.ok else "MISMATCH"
        blocks.append(
            Block("para", f"max |sum − torch .grad| = {grad.max_abs_diff:.1e} ({verdict})")
        )
    failed = [g.name for g in e.gradients if not g.ok] + ([] if e.output_ok else ["output"])
    verdict = (
        "every sum of per-step terms equals torch's .grad"
        if not failed
        else "MISMATCH: " + ", ".join(failed)
    )
    blocks.append(Block("heading", "Result"))
    blocks.append(
        Block(
            "para",
            f"{verdict}: max |difference| {e.max_abs_diff:.1e} over all parameters (float64, "
            f"tolerance {TOLERANCE['float64']:.0e} relative).",
        )
    )
    return blocks


def _truncation_note(spec) -> list[str]:
    every = getattr(spec, "truncate", 0)
    if not every:
        return []
    return [
        f"truncated BPTT (--truncate {every}): nothing flows back into a step t that is a "
        f"multiple of {every}; torch runs over chunks of {every} steps, the state detached "
        "in between"
    ]
