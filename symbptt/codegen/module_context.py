"""The data the module template lays out: every line of generated code, decided here.

Two forms share one derivation: *unrolled* writes every step out (``h3 = ...  # (F3)``);
*loop* writes the generic step once inside ``for t in ...`` (``# (Ft)``) and runs as many
steps as its input has (``steps = x.shape[0]``; ``ANY_LENGTH`` in the module). In both, the
forward returns ``(output, saved)``, where ``saved`` holds the per-step values the backward
reads (gates, states), and the backward returns every gradient by torch's names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, Transpose

from ..core.matexpr import Elementwise
from ..core.program import split_name, var
from ..printing.names import (
    FINAL_CODE,
    STATE_BASES,
    block_names,
    is_parameter,
    loop_code_name,
    stacked_code_name,
    unrolled_code_name,
)
from ..printing.text import gradient_text, text
from .local_factors import local_factors
from .loop_step import alias_slots, hoist, is_slot, store
from .torch_code import BatchedTorchPrinter
from .torch_signature import constructor_arguments

if TYPE_CHECKING:
    from ..core.derivation import Derivation, Gradient


@dataclass(frozen=True)
class Line:
    """One statement of generated code and the equation it implements."""

    code: str
    label: str


@dataclass(frozen=True)
class GradientCode:
    """How ``backward`` forms one torch gradient (a parameter, the input or a first state).

    ``terms`` (unrolled form) are the per-step terms, ``total`` their sum, ``per_step`` their
    stack; ``labels`` the equations of the blocks it is made of.
    """

    key: str
    labels: str
    equations: tuple[str, ...]
    terms: tuple[str, ...]
    total: str
    per_step: str
    is_parameter: bool


def _base(symbol: MatrixSymbol) -> str:
    return split_name(symbol)[0]


def _bases(exprs) -> list[str]:
    """Bases of the indexed variables in ``exprs``, in first-seen order."""
    seen: dict[str, None] = {}
    for expr in exprs:
        for symbol in sorted(expr.atoms(MatrixSymbol), key=lambda s: s.name):
            if split_name(symbol)[1] is not None and symbol.name not in FINAL_CODE:
                seen.setdefault(_base(symbol), None)
    return list(seen)


def _join(items: list[str]) -> str:
    return ", ".join(items) + ("," if len(items) == 1 else "")


class _Builder:
    def __init__(self, derivation: Derivation) -> None:
        d = self.d = derivation
        self.spec = d.spec
        self.blocks = block_names(d.parameters)
        self.steps = range(1, d.spec.steps + 1)
        program = d.step
        self.forward_bases = [_base(a.target) for a in program.assignments]
        self.sizes = {_base(a.target): a.target.shape[0] for a in program.assignments}
        self.sizes |= {_base(x): x.shape[0] for x in program.inputs}
        self.states = [_base(s.new) for s in program.states]
        backward_exprs = [a.value for a in d.adjoint.assignments]
        backward_exprs += list(d.adjoint.carry.values()) + [g.generic for g in d.gradients]
        used = set(_bases(backward_exprs))
        self.saved = [b for b in self.forward_bases if b in used or b in self.states]
        gradient_bases = set(_bases(g.generic for g in d.gradients if not g.once))
        self.adjoint_sequences = [
            _base(a.target) for a in d.adjoint.assignments if _base(a.target) in gradient_bases
        ]
        self.sizes |= {_base(a.target): a.target.shape[0] for a in d.adjoint.assignments}
        self.unrolled = BatchedTorchPrinter(
            lambda s: unrolled_code_name(s, self.blocks), is_parameter
        )
        masks = {"mask"} if program.constants else set()
        fused = self.fused = {
            block: (p.argument, k, len(p.blocks))
            for p in d.parameters
            for k, block in enumerate(p.blocks)
        }
        self.groups = _adjoint_groups(d, fused, self.adjoint_sequences) if d.spec.loop_form else {}
        grouped = {_base(group) for group in self.groups.values()}
        self.local = local_factors(
            d.adjoint.assignments, {*self.states, *self.saved}, set(self.adjoint_sequences)
        )
        forward_sequences = {"x", *masks, *self.states, *self.saved}
        backward_sequences = {"x", "g", *masks, *self.states, *self.saved, *self.adjoint_sequences}
        backward_sequences |= grouped | {_base(k) for k in self.local.factors}
        carried = frozenset(self.states)
        loop_name = lambda s: loop_code_name(s, self.blocks, forward_sequences, carried)  # noqa: E731
        self.projections = _projections(program.assignments, fused, self.blocks, loop_name)
        self.loop_forward_printer = BatchedTorchPrinter(
            loop_name,
            is_parameter,
            known_sums=self.projections.known_sums,
            fused_multiply_add=True,
        )
        self.loop_backward_printer = BatchedTorchPrinter(
            lambda s: loop_code_name(s, self.blocks, backward_sequences),
            is_parameter,
            stacked=fused,
            groups=self.groups,
            fused_multiply_add=True,
        )
        stacked = lambda s: stacked_code_name(s, self.blocks, d.spec.steps)  # noqa: E731
        self.local_activations = _activations(self.local.factors.values())
        self.local_printer = BatchedTorchPrinter(
            stacked,
            is_parameter,
            batch_dims=2,
            known=dict(self.local_activations),
            fused_multiply_add=True,
        )
        self.stacked = BatchedTorchPrinter(
            stacked, is_parameter, batch_dims=2, stacked=fused, groups=self.groups
        )
        self.stacked_per_step = BatchedTorchPrinter(
            stacked, is_parameter, batch_dims=2, per_step=True
        )

    # --- signatures ------------------------------------------------------------------

    def arguments(self, exprs) -> list[str]:
        """Parameter arguments (torch's order) whose blocks ``exprs`` use."""
        used: set[MatrixSymbol] = set()
        for expr in exprs:
            used |= expr.atoms(MatrixSymbol)
        return [p.argument for p in self.d.parameters if used & set(p.blocks)]

    def unpack_blocks(self, arguments: list[str]) -> list[str]:
        """``w_ii, w_if, w_ig, w_io = weight_ih.chunk(4)`` for each stacked argument."""
        lines = []
        for p in self.d.parameters:
            if p.argument in arguments and len(p.blocks) > 1:
                names = ", ".join(self.blocks[b] for b in p.blocks)
                lines.append(f"{names} = {p.argument}.chunk({len(p.blocks)})")
        return lines

    # --- unrolled form -----------------------------------------------------------------

    def _line(self, printer, assignment, label) -> Line:
        return Line(
            f"{printer.doprint(assignment.target)} = {printer.doprint(assignment.value)}", label
        )

    def unrolled_forward(self) -> list[Line]:
        """Every step written out, each with its projections (the loop form's, at step k)."""
        name = lambda s: unrolled_code_name(s, self.blocks)  # noqa: E731
        lines = []
        for k, step in enumerate(self.d.forward, start=1):
            projections = _projections(step, self.fused, self.blocks, name, str(k - 1), str(k))
            printer = BatchedTorchPrinter(name, is_parameter, known_sums=projections.known_sums)
            lines += [Line(code, f"F{k}") for code in projections.each_step]
            lines += [self._line(printer, a, a.label) for a in step]
        return lines

    def unrolled_backward(self) -> list[Line]:
        return [self._line(self.unrolled, a, a.label) for step in self.d.backward for a in step]

    def unpack(self, base: str, source: str) -> str:
        return f"{_join([f'{base}{k}' for k in self.steps])} = {source}.unbind(0)"

    def stack(self, base: str) -> str:
        return f"torch.stack(({_join([f'{base}{k}' for k in self.steps])}))"

    # --- gradients -----------------------------------------------------------------------

    def _reduce(self, printer: BatchedTorchPrinter, gradient: Gradient, expr) -> str:
        vector = gradient.summed and not isinstance(gradient.generic, MatMul)
        return printer.batch_sum(expr) if vector else printer.doprint(expr)

    def gradient_codes(self) -> list[GradientCode]:
        groups: dict[str, list[Gradient]] = {}
        for gradient in self.d.gradients:
            groups.setdefault(gradient.torch_name, []).append(gradient)
        return [self._gradient_code(key, grads) for key, grads in groups.items()]

    def _gradient_code(self, key: str, grads: list[Gradient]) -> GradientCode:
        first = grads[0]
        labels = first.label if len(grads) == 1 else f"{first.label}–{grads[-1].label}"
        equations = tuple(f"({g.label}) {gradient_text(g)}" for g in grads)

        def cat(parts: list[str], dim: int = 0) -> str:
            if len(parts) == 1:
                return parts[0]
            return f"torch.cat(({', '.join(parts)}){f', {dim}' if dim else ''})"

        terms: tuple[str, ...] = ()
        if not self.spec.loop_form:
            terms = tuple(
                cat([self._reduce(self.unrolled, g, g.terms[k]) for g in grads])
                for k in range(len(first.terms))
            )
        grouped = self._grouped(grads)
        if first.summed and grouped is not None:
            total = self._reduce(self.stacked, first, grouped)
            per_step = self._reduce(self.stacked_per_step, first, grouped)
        elif first.summed:
            total = cat([self._reduce(self.stacked, g, g.generic) for g in grads])
            per_step = cat([self._reduce(self.stacked_per_step, g, g.generic) for g in grads], 1)
        elif first.once:
            total = per_step = f"carry_{_base(first.of)}" if self.spec.loop_form else terms[0]
        else:
            total = per_step = self.stacked.doprint(first.generic)
        return GradientCode(key, labels, equations, terms, total, per_step, first.summed)

    def _grouped(self, grads: list[Gradient]) -> sp.Basic | None:
        """One gradient for all blocks of a parameter whose δ's are one buffer (``δ xᵀ``)."""
        if isinstance(grads[0].generic, MatMul):
            if any(len(g.generic.args) != 2 for g in grads):
                return None
            operands = tuple(g.generic.args[0] for g in grads)
            others = {g.generic.args[1] for g in grads}
            if operands in self.groups and len(others) == 1:
                return MatMul(self.groups[operands], others.pop())
            return None
        return self.groups.get(tuple(g.generic for g in grads))

    def adjoint_buffers(self) -> list[str]:
        """Loop form: a tensor over the input's ``steps`` for each δ the gradients sum; the
        δ's of a group are views of one buffer (``delta_i, ... = delta.split(128, -1)``)."""
        lines, grouped = [], set()
        for operands, group in self.groups.items():
            bases = [_base(u) for u in operands]
            sizes = [u.shape[0] for u in operands]
            split = sizes[0] if len(set(sizes)) == 1 else f"[{', '.join(map(str, sizes))}]"
            lines.append(f"{_base(group)} = x.new_empty((steps, batch, {group.shape[0]}))")
            lines.append(f"{', '.join(bases)} = {_base(group)}.split({split}, -1)")
            grouped.update(bases)
        return lines + [
            f"{base} = x.new_empty((steps, batch, {self.sizes[base]}))"
            for base in self.adjoint_sequences
            if base not in grouped
        ]

    # --- loop form -----------------------------------------------------------------------

    def _loop_line(self, printer, assignment, label: str) -> Line:
        target = printer.doprint(assignment.target)
        if is_slot(target):
            return Line(store(printer, target, assignment.value), label)
        return self._line(printer, assignment, label)

    def loop_forward(self) -> list[Line]:
        """The generic forward step: the projections of every gate, each assignment, then the
        new states become the previous ones (``h_prev = h[t - 1]``: states are stored from
        step 1, ``h_0`` stays the caller's)."""
        printer = self.loop_forward_printer
        lines = [Line(code, "all gates") for code in self.projections.each_step]
        lines += [self._loop_line(printer, a, "(Ft)") for a in self.d.step.assignments]
        lines += [Line(f"{state}_prev = {state}[t - 1]", "") for state in self.states]
        return _with_aliases(lines, states=())

    def local_lines(self) -> list[Line]:
        """Before the backward loop: the forward-only factors of its products for every step at
        once (:mod:`symbptt.codegen.local_factors`), after the activations they read (``tanh_c``):
        computed again rather than kept by the forward, so that the values saved for the
        backward take no more memory than autograd's."""
        printer = self.local_printer
        lines = [
            Line(f"{name} = {node.function.torch.format(printer.doprint(node.arg))}", "all steps")
            for node, name in self.local_activations.items()
        ]
        for symbol, factor in self.local.factors.items():
            name = _base(symbol)
            code = f"{name} = {printer.doprint(factor)}"
            if name in self.adjoint_sequences:  # into its buffer, a view: no rebinding
                code = store(printer, name, factor)
                if code.startswith(f"{name} = "):
                    code = f"{name}.copy_({_unwrapped(code.partition(' = ')[2])})"
            lines.append(Line(code, f"{text(factor)}, all steps"))
        return lines

    def loop_backward(self) -> list[Line]:
        """The generic backward step: what :meth:`local_lines` left of each assignment, then
        what each state sends back to step t - 1."""
        printer = self.loop_backward_printer
        lines = [self._loop_line(printer, a, "(Bt)") for a in self.local.assignments]
        for state, sent in self.d.adjoint.carry.items():
            lines.append(Line(f"carry_{_base(state.new)} = {printer.doprint(sent)}", "(Bt)"))
        return _with_aliases(lines)


def _with_aliases(lines: list[Line], states: tuple[str, ...] = STATE_BASES) -> list[Line]:
    """The step's lines after :func:`alias_slots`, its aliases first."""
    taken = set(re.findall(r"\w+", "\n".join(line.code for line in lines)))
    aliases, codes = alias_slots([line.code for line in lines], taken, states)
    return [Line(code, "") for code in aliases] + [
        Line(code, line.label) for code, line in zip(codes, lines, strict=True)
    ]


def _unwrapped(code: str) -> str:
    """``code`` without parentheses around all of it: ``(1 - h * h)`` -> ``1 - h * h``."""
    if not (code.startswith("(") and code.endswith(")")):
        return code
    depth = 0
    for position, char in enumerate(code):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and position < len(code) - 1:
            return code
    return code[1:-1]


def _hoisted(lines: list[Line]) -> tuple[list[str], list[Line]]:
    """:func:`hoist` on a step's lines: what goes before the loop, and the lines."""
    before, codes = hoist([line.code for line in lines])
    return before, [Line(code, line.label) for code, line in zip(codes, lines, strict=True)]


def _adjoint_groups(
    derivation: Derivation, fused: dict, adjoint_sequences: list[str]
) -> dict[tuple[sp.Basic, ...], MatrixSymbol]:
    """The δ's that every block of a stacked weight sends back through the carried state
    (``W_hiᵀ δⁱ + W_hfᵀ δᶠ + ...``), to be one buffer: each group's operands -> the variable
    standing for the buffer, named by their common prefix (``delta``)."""
    groups: dict[tuple[sp.Basic, ...], MatrixSymbol] = {}
    taken = set(adjoint_sequences)
    for sent in derivation.adjoint.carry.values():
        blocks: dict[str, dict[int, sp.Basic]] = {}
        counts: dict[str, int] = {}
        for node in sp.preorder_traversal(sent):
            if isinstance(node, MatMul) and len(node.args) == 2:
                factor, operand = node.args
                if isinstance(factor, Transpose) and factor.arg in fused:
                    argument, k, counts[argument] = fused[factor.arg]
                    blocks.setdefault(argument, {})[k] = operand
        for argument, operands in blocks.items():
            count = counts[argument]
            ordered = tuple(operands[k] for k in sorted(operands))
            bases = [_base(u) for u in ordered if isinstance(u, MatrixSymbol)]
            name = os.path.commonprefix(bases).rstrip("_")
            if (
                count < 2
                or len(ordered) != count
                or len(bases) != count
                or not set(bases) <= set(adjoint_sequences)
                or any(set(bases) & {_base(u) for u in group} for group in groups)
                or not name
                or name in taken
            ):
                continue
            taken.add(name)
            index = split_name(ordered[0])[1]
            groups[ordered] = var(name, index, sum(u.shape[0] for u in ordered))
    return groups


def _activations(exprs) -> dict[Elementwise, str]:
    """Activations of forward values that ``exprs`` read (``tanh(c_t)`` three times in an
    LSTM's backward step), each to be named once in the loop form: ``tanh_c``."""
    return {
        node: f"{node.name}_{_base(node.arg)}"
        for expr in exprs
        for node in sp.preorder_traversal(expr)
        if isinstance(node, Elementwise)
        and node.function.derivative is not None
        and isinstance(node.arg, MatrixSymbol)
    }


@dataclass(frozen=True)
class Projections:
    """Matrix products the loop form computes in one go instead of block by block.

    ``before`` runs once before the loop: every step's input projection with the biases that
    are added to it folded in, in place (``x_weight_ih = (x @ weight_ih.T).add_(bias_ih +
    bias_hh)``: one (T, B, G·H) tensor at a time);
    ``each_step`` opens every iteration: all gates' hidden projection at once, added to the
    input projection in one ``addmm`` where a gate's pre-activation is just their sum
    (``a = torch.addmm(x_weight_ih[t - 1], h[t - 1], weight_hh.T)``). ``known_sums`` maps the
    terms each of those stands for to its slice (``a[:, 0:128]``).
    """

    before: tuple[str, ...]
    each_step: tuple[str, ...]
    known_sums: dict[frozenset[sp.Basic], str]


def _columns(k: int, rows: int, count: int) -> str:
    return "" if count == 1 else f":, {k * rows}:{(k + 1) * rows}"


def _slice(name: str, index: str, columns: str) -> str:
    inside = ", ".join(part for part in (index, columns) if part)
    return f"{name}[{inside}]" if inside else name


def _gate(name: str, k: int, rows: int, count: int, step: str) -> str:
    """Gate k of a product of all gates: its columns in a step written out (``a3[:, 0:128]``);
    in the loop, where the product is split into gates as it is made, its k-th part (``a[0]``:
    one tensor operation for all gates instead of one for each)."""
    return f"{name}[{_columns(k, rows, count)}]" if step else f"{name}[{k}]"


def _folded_bias(biases: dict[int, list[MatrixSymbol]], fused: dict, blocks: dict) -> str | None:
    """Code of the bias each block's input projection absorbs, or None when none does."""
    if not any(biases.values()) or not all(biases.values()):
        return None
    arguments = [tuple(fused[b][0] for b in biases[k]) for k in sorted(biases)]
    whole = all(fused[b][1] == k for k in biases for b in biases[k])
    if whole and len(set(arguments)) == 1:
        return " + ".join(arguments[0])
    parts = [" + ".join(blocks[b] for b in biases[k]) for k in sorted(biases)]
    return f"torch.cat(({', '.join(parts)}))"


def _projections(
    assignments, fused: dict, blocks: dict, name, index: str = "t - 1", step: str = ""
) -> Projections:
    """Group the products ``Wₖ v`` of every block k of a stacked parameter with one operand;
    ``index`` is the row of the input projection the assignments read (the step's, less 1);
    ``step`` ends the names of the step's products (``a3``; none in the loop)."""
    groups: dict[tuple[str, MatrixSymbol], dict[int, tuple[MatMul, MatAdd | None]]] = {}
    for assignment in assignments:
        for node in sp.preorder_traversal(assignment.value):
            terms = node.args if isinstance(node, MatAdd) else (node,)
            for product in terms:
                if not isinstance(product, MatMul) or len(product.args) != 2:
                    continue
                block, operand = product.args
                if block not in fused or not isinstance(operand, MatrixSymbol):
                    continue
                if split_name(operand)[1] is None:
                    continue
                argument, k, _ = fused[block]
                parent = node if isinstance(node, MatAdd) else None
                groups.setdefault((argument, operand), {}).setdefault(k, (product, parent))
    before, each_step, known = [], [], {}
    inputs: dict[MatAdd, tuple[frozenset, str]] = {}
    for (argument, operand), products in groups.items():
        if _base(operand) != "x":
            continue
        count = fused[next(iter(products.values()))[0].args[0]][2]
        rows = next(iter(products.values()))[0].shape[0]
        biases = {
            k: [
                a
                for a in (parent.args if parent is not None else ())
                if a in fused and a.shape[1] == 1
            ]
            for k, (_, parent) in products.items()
        }
        bias = _folded_bias(biases, fused, blocks) if len(products) == count else None
        x_name = f"x_{argument}"
        projection = f"(x @ {argument}.T).add_({bias})" if bias else f"x @ {argument}.T"
        before.append(f"{x_name} = {projection}")
        for k, (product, parent) in products.items():
            terms = frozenset([product, *(biases[k] if bias else ())])
            known[terms] = _slice(x_name, index, _columns(k, rows, count))
            if parent is not None:
                inputs[parent] = (terms, x_name)
    for (argument, operand), products in groups.items():
        count = fused[next(iter(products.values()))[0].args[0]][2]
        if _base(operand) == "x" or len(products) != count:
            continue
        rows = next(iter(products.values()))[0].shape[0]
        parents = [parent for _, parent in products.values()]
        whole = all(
            parent is not None
            and parent in inputs
            and set(parent.args) == inputs[parent][0] | {product}
            for product, parent in products.values()
        )
        if whole:
            x_name = inputs[parents[0]][1]
            addmm = f"torch.addmm({x_name}[{index}], {name(operand)}, {argument}.T)"
            if count == 1:
                known[frozenset(parents[0].args)] = addmm
                continue
            each_step.append(f"a{step} = {addmm}{'' if step else f'.split({rows}, 1)'}")
            for k, (_, parent) in products.items():
                known[frozenset(parent.args)] = _gate(f"a{step}", k, rows, count, step)
        elif count > 1:
            h_name = f"{_base(operand)}_{argument}{step}"
            split = "" if step else f".split({rows}, 1)"
            each_step.append(f"{h_name} = ({name(operand)} @ {argument}.T){split}")
            for k, (product, _) in products.items():
                known[frozenset([product])] = _gate(h_name, k, rows, count, step)
    return Projections(tuple(before), tuple(each_step), known)


def _used(unpack_lines: list[str], code: list[str]) -> list[str]:
    """The ``w_ii, ... = weight_ih.chunk(4)`` lines whose names the code reads."""
    words = set(re.findall(r"\w+", "\n".join(code)))
    return [line for line in unpack_lines if words & set(re.findall(r"\w+", line.split("=")[0]))]


def cell_context(derivation: Derivation) -> dict:
    """The forward/backward pair of the step program. They do not depend on the input size,
    so every layer and direction of a network runs the same two functions."""
    spec = derivation.spec
    b = _Builder(derivation)
    program, adjoint = derivation.step, derivation.adjoint
    forward_params = b.arguments(a.value for a in program.assignments)
    backward_exprs = [a.value for a in adjoint.assignments] + list(adjoint.carry.values())
    backward_params = b.arguments(backward_exprs + [g.generic for g in derivation.gradients])
    states = [
        {
            "name": _base(s.new),
            "initial": f"{_base(s.new)}0",
            "final": FINAL_CODE[s.final.name],
            "key": f"{_base(s.new)}_0",
            "size": s.new.shape[0],
        }
        for s in program.states
    ]
    initials = [s["initial"] for s in states]
    finals = [s["final"] for s in states]
    masks = ["mask"] if program.constants else []
    unrolled = not spec.loop_form
    context = {
        "spec": spec,
        "any_length": spec.loop_form and not spec.is_cell,
        "states": states,
        "forward_args": ["x", *initials, *masks, *forward_params],
        "backward_args": [
            "x",
            *initials,
            *masks,
            "saved",
            *backward_params,
            "grad_output",
            *finals,
        ],
        "backward_params": backward_params,
        "finals": finals,
        "sequence_inputs": ["x", *masks],
        "saved": b.saved,
        "sizes": b.sizes,
        "state_bases": list(STATE_BASES),
        "adjoint_sequences": b.adjoint_sequences,
        "adjoint_buffers": b.adjoint_buffers(),
        "forward_unpack": [],
        "backward_unpack": [],
        "forward": b.unrolled_forward() if unrolled else [],
        "backward": b.unrolled_backward() if unrolled else [],
        "loop_forward_before": [],
        "loop_forward": [],
        "projections": b.projections,
        "local_factors": [],
        "loop_backward_before": [],
        "loop_backward": [],
        "gradients": b.gradient_codes(),
    }
    if spec.loop_form:
        context["local_factors"] = b.local_lines()
        for part, lines in (
            ("loop_forward", b.loop_forward()),
            ("loop_backward", b.loop_backward()),
        ):
            context[f"{part}_before"], context[part] = _hoisted(lines)
    forward_code = [line.code for line in context["forward"] + context["loop_forward"]]
    forward_code += list(b.projections.before) + context["loop_forward_before"]
    backward_code = [
        line.code
        for line in context["backward"] + context["local_factors"] + context["loop_backward"]
    ]
    backward_code += context["loop_backward_before"]
    for g in context["gradients"]:
        backward_code += [g.total, g.per_step, *g.terms]
    context["forward_unpack"] = _used(b.unpack_blocks(forward_params), forward_code)
    context["backward_unpack"] = _used(b.unpack_blocks(backward_params), backward_code)
    if unrolled:
        sources = {"x": "x", "g": "grad_output", **{m: m for m in masks}}
        sources |= {base: f'saved["{base}"]' for base in b.saved}
        context["unpack"] = {base: b.unpack(base, src) for base, src in sources.items()}
        forward_words = set(re.findall(r"\w+", "\n".join(line.code for line in context["forward"])))
        context["forward_sequences"] = [
            base for base in context["sequence_inputs"] if f"{base}1" in forward_words
        ]
        context["stack"] = {base: b.stack(base) for base in [*b.saved, *b.adjoint_sequences]}
        context["stacked"] = _stacked_sequences(context, b)
    return context


def _stacked_sequences(context: dict, b: _Builder) -> dict[str, str]:
    """The unrolled backward's per-step values as (T, B, n) tensors, for the gradients' sums
    over steps (the loop form builds them as it goes): name -> statement, for the names the
    sums read."""
    words = set()
    for g in context["gradients"]:
        words |= set(re.findall(r"\w+", f"{g.total} {g.per_step}"))
    lines = {}
    for state in context["states"]:
        name = state["name"]
        lines[name] = f'{name} = torch.cat(({state["initial"]}.unsqueeze(0), saved["{name}"]))'
    lines |= {base: f'{base} = saved["{base}"]' for base in b.saved if base not in lines}
    lines |= {base: f"{base} = {b.stack(base)}" for base in b.adjoint_sequences}
    lines["g"] = "g = grad_output"
    return {name: line for name, line in lines.items() if name in words}


def template_context(derivation: Derivation, name: str, marker: str) -> dict:
    """Everything ``templates/module.py.jinja`` lays out."""
    spec = derivation.spec
    program = derivation.step
    cell = cell_context(derivation)
    layers = []
    for k in range(spec.num_layers):
        for direction in range(spec.directions):
            suffix = "" if spec.is_cell else f"_l{k}" + ("_reverse" if direction else "")
            layer = derivation if k == 0 else derivation.upper
            layers.append(
                {
                    "index": len(layers),
                    "layer": k,
                    "reverse": bool(direction),
                    "parameters": [
                        {
                            "attribute": p.torch_name.removesuffix("_l0") + suffix,
                            "argument": p.argument,
                            "shape": p.shape,
                            "description": p.description,
                        }
                        for p in layer.parameters
                    ],
                }
            )
    return {
        "spec": spec,
        "name": name,
        "class_name": spec.torch_class,
        "base_class": "_CellLayer" if spec.custom is not None else f"torch.nn.{spec.torch_class}",
        "constructor": constructor_arguments(spec),
        "marker": marker,
        "regenerate": f"symbptt derive {spec.cli_options()} --name {name}",
        "loop_form": spec.loop_form,
        "network": spec.is_network,
        "equations": {
            "forward": [f"{text(a.target)} = {text(a.value)}" for a in program.assignments],
            "backward": [f"{text(a.target)} = {text(a.value)}" for a in derivation.backward_step],
            "boundary": [f"{text(a.target)} = {text(a.value)}" for a in derivation.boundary],
        },
        "cell": cell,
        "states": cell["states"],
        "layers": layers,
        "parameters": [p for layer in layers for p in layer["parameters"]],
        "cell_keys": [p.torch_name for p in derivation.parameters],
        "backward_positions": [
            i for i, p in enumerate(derivation.parameters) if p.argument in cell["backward_params"]
        ],
    }
