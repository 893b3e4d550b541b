"""The derivation as a standalone LaTeX document, as Markdown, and as a Jupyter summary.

Every equation string is built here from the :class:`~symbptt.core.derivation.Derivation` and handed
to ``templates/document.tex.jinja`` / ``templates/document.md.jinja`` as data; the templates only
lay the text out. The content mirrors :func:`symbptt.printing.text.derivation_text`: forward
equations (``F``), backward recurrence (``B``), gradients (``G``) and, for small T, the gradients
unrolled into chains of matrix products (``U``, ``torch.nn.RNN``) or written out as per-step sums
(``U``, LSTM and GRU). A cell (``RNNCell``, ...) is one step: its document shows the equations
once, at ``t = 1``. Every ``\\tag`` is unique in a document.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from ..core.matexpr import Elementwise, rule_for
from ..core.program import Assignment, at_step, split_name, t, var
from ..core.unrolled import MAX_STEPS, Chain, unroll
from ..errors import CodegenError
from ..fileio import (
    GENERATED_MARKER,
    PDF_CREATOR,
    check_writable,
    stamp,
    template_environment,
    write_generated,
)
from .latex import chain as latex_chain
from .latex import latex

if TYPE_CHECKING:
    from ..core.derivation import Derivation, Gradient

LINE_BUDGET_PT = 340.0
"""Width (pt) of the right-hand side of one line of a broken sum, on a 455pt text width."""

MAX_TERMS_PER_LINE = 4
"""At most this many terms of a long sum share one line."""

INLINE_ASSIGNMENTS = 2
"""Up to this many assignments share one line (``z_t = ..., h_t = ...``); more get a line each."""

LONG_TABLE_ROWS = 14
"""A table of symbols with more rows than this may break across pages (``longtable``)."""

_PLUS_PT = 12.2
_PARAMETER_PT = 19.0
_INDEXED_PT = 12.8
_ODOT_PT = 15.0
_PARENTHESES_PT = 8.0

STEP_TAG = "$_t$"
"""Suffix of the tags of generic equations: ``F$_t$`` prints as F with a subscript t."""


@dataclass(frozen=True)
class Equation:
    """One displayed equation: its math (no delimiters) and its tag, or ``None`` for none."""

    body: str
    tag: str | None = None


@dataclass(frozen=True)
class ShapeRow:
    """A line of the table of symbols: math for symbol and shapes, meaning as text + $math$."""

    symbol: str
    shape: str
    size: str
    meaning: str


@dataclass(frozen=True)
class EquationGroup:
    """Equations under a heading (text with $math$ and code spans), or under none."""

    heading: str | None
    equations: list[Equation] = field(default_factory=list)


# --- building blocks ---------------------------------------------------------------------


def _partial(of: MatrixSymbol) -> str:
    return rf"\frac{{\partial L}}{{\partial {latex(of)}}}"


def _width(expr: sp.Basic) -> float:
    """A rough width (pt) of ``latex(expr)`` in display math, to decide where to break lines:
    the rule of :data:`WIDTH` for its node type; anything else is one indexed symbol wide."""
    return rule_for(WIDTH, expr, "width", lambda e: _INDEXED_PT)(expr)


def _joined_width(expr: sp.Basic, joint: float) -> float:
    return sum(map(_operand_width, expr.args)) + joint * (len(expr.args) - 1)


def _product_width(expr: MatMul) -> float:
    factors = [a for a in expr.args if a.is_Matrix]
    sign = 0.0 if len(factors) == len(expr.args) else 8.0
    return sign + sum(map(_operand_width, factors)) + 2.0 * (len(factors) - 1)


WIDTH: dict[type, Callable[[sp.Basic], float]] = {
    MatrixSymbol: lambda e: _PARAMETER_PT if split_name(e)[1] is None else _INDEXED_PT,
    Transpose: lambda e: _width(e.arg) + 4.0,
    MatAdd: lambda e: _joined_width(e, _PLUS_PT),
    HadamardProduct: lambda e: _joined_width(e, _ODOT_PT),
    MatMul: _product_width,
    Elementwise: lambda e: 2 * _width(e.arg) + 25.0,
}
"""Each node type's printed width in display math (pt), from its operands'."""


def _operand_width(expr: sp.Basic) -> float:
    parentheses = isinstance(expr, (MatAdd, HadamardProduct))
    return _width(expr) + (_PARENTHESES_PT if parentheses else 0.0)


def _assignment_rows(assignment: Assignment) -> list[str]:
    """``target &= value`` of an aligned block, a long sum broken over several rows."""
    lhs = latex(assignment.target)
    value = assignment.value
    if isinstance(value, MatAdd) and _width(value) > LINE_BUDGET_PT:
        lines = _sum_lines([(latex(term), _width(term)) for term in value.args])
        first = _signed_sum(lines[0])
        rows = [f"{lhs} &= " + (first[2:] if first.startswith("+") else f"-{first[2:]}")]
        return rows + [rf"&\quad {_signed_sum(line)}" for line in lines[1:]]
    return [f"{lhs} &= {latex(value)}"]


def _signed_sum(terms: Sequence[str]) -> str:
    """``+ a - b + c``: each term with its sign in front (``-b`` is subtracted)."""
    return " ".join(f"- {term[1:]}" if term.startswith("-") else f"+ {term}" for term in terms)


def _assignments(assignments: Sequence[Assignment]) -> str:
    """A few assignments on one line; more, one per line in an ``aligned`` block."""
    if len(assignments) <= INLINE_ASSIGNMENTS:
        return r", \qquad ".join(f"{latex(a.target)} = {latex(a.value)}" for a in assignments)
    rows = [row for a in assignments for row in _assignment_rows(a)]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def _factor_width(factor: sp.Basic) -> float:
    symbol = factor.arg if isinstance(factor, Transpose) else factor
    if isinstance(symbol, MatrixSymbol) and split_name(symbol)[1] is None:
        return _PARAMETER_PT
    return _INDEXED_PT


def _chain_width(factors: Chain) -> float:
    return sum(_factor_width(f) for f in factors)


def _sum_lines(terms: Sequence[tuple[str, float]]) -> list[list[str]]:
    """Group terms into lines of at most :data:`LINE_BUDGET_PT` and :data:`MAX_TERMS_PER_LINE`."""
    lines: list[list[str]] = [[]]
    width = 0.0
    for term, term_width in terms:
        line = lines[-1]
        needed = term_width + (_PLUS_PT if line else 0.0)
        if line and (width + needed > LINE_BUDGET_PT or len(line) >= MAX_TERMS_PER_LINE):
            lines.append([term])
            width = term_width
        else:
            line.append(term)
            width += needed
    return lines


def _broken_sum(lhs: str, terms: Sequence[tuple[str, float]]) -> str:
    """``lhs = t1 + t2 + ...``, broken into an ``aligned`` block when it is long."""
    if not terms:
        return f"{lhs} = 0"
    lines = _sum_lines(terms)
    if len(lines) == 1:
        return f"{lhs} = " + " + ".join(lines[0])
    rows = [f"{lhs} &= " + " + ".join(lines[0])]
    rows += [r"&\quad + " + " + ".join(line) for line in lines[1:]]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def _chains_sum(lhs: str, chains: Sequence[Chain]) -> str:
    return _broken_sum(lhs, [(latex_chain(c), _chain_width(c)) for c in chains])


def _gradient_equation(gradient: Gradient, one_step: bool = False) -> Equation:
    """``∂L/∂W = Σ_t term``, or for a one-step cell the term at ``t = 1`` itself."""
    lhs = _partial(gradient.of)
    if one_step and not gradient.once:
        of = gradient.of if gradient.summed else at_step(gradient.of, 1)
        return Equation(f"{_partial(of)} = {latex(gradient.terms[0])}", gradient.label)
    if gradient.summed:
        body = rf"{lhs} = \sum_{{t=1}}^{{T}} {latex(gradient.generic)}"
    elif gradient.once:
        body = f"{lhs} = {latex(gradient.terms[0])}"
    else:
        body = rf"{lhs} = {latex(gradient.generic)}, \qquad t = 1, \dots, T"
    return Equation(body, gradient.label)


def _derivative_factor(derivation: Derivation) -> Elementwise:
    """``f'(h_t)`` of the generic backward step of an RNN (``1 - h_t ⊙ h_t`` for tanh)."""
    for assignment in derivation.backward_step:
        factors = assignment.value.atoms(Elementwise)
        if factors:
            return factors.pop()
    raise CodegenError("the backward step has no derivative of the nonlinearity")


def _diagonal(derivation: Derivation) -> tuple[MatrixSymbol, str]:
    """``D_t`` and the math of its definition, ``\\operatorname{diag}(f'(h_t))``."""
    factor = _derivative_factor(derivation)
    n = factor.shape[0]
    inner = latex(factor)
    if not (inner.startswith(r"\left(") and inner.endswith(r"\right)")):
        inner = rf"\left({inner}\right)"
    return var("D", t, n, n), rf"\operatorname{{diag}}{inner}"


# --- content -----------------------------------------------------------------------------

_MEANINGS = {
    "x": "input at step $t$",
    "h": "hidden state after step $t$, the output at step $t$; $h_0$ is the initial state",
    "z": "pre-activation at step $t$",
    "c": "cell state after step $t$; $c_0$ is the initial cell state",
    "g": r"$\partial L / \partial \mathrm{output}_t$, the cotangent of output $t$",
    "g[n]": r"$\partial L / \partial h_n$, the cotangent of the final state $h_n = h_T$",
    "gc[n]": r"$\partial L / \partial c_n$, the cotangent of the final cell state $c_n = c_T$",
    "hbar": r"$\partial L / \partial h_t$, all the cotangent that reaches $h_t$",
    "cbar": r"$\partial L / \partial c_t$, all the cotangent that reaches $c_t$",
    "delta": r"$\partial L / \partial z_t$",
    "D": "the derivative of the nonlinearity at step $t$, as a diagonal matrix",
}


def _projected(derivation: Derivation) -> set[MatrixSymbol]:
    """What the LSTM's projection ``W_hr`` multiplies (``q_t``), if it has one."""
    w_hr = {b for p in derivation.parameters if p.argument == "weight_hr" for b in p.blocks}
    return {
        arg
        for a in derivation.step.assignments
        if isinstance(a.value, MatMul) and w_hr & set(a.value.args)
        for arg in a.value.args
        if arg not in w_hr
    }


def _meaning(symbol: MatrixSymbol, derivation: Derivation) -> str:
    """What a variable of the step stands for, as text with $math$: the cell's gates and
    remarks (:class:`~symbptt.core.cell_definition.Cell`), else its definition."""
    cell = derivation.spec.definition
    if symbol.name in _MEANINGS:
        return _MEANINGS[symbol.name]
    if symbol in derivation.step.constants:
        return "mask: 1 at step $t$ while the sample's sequence lasts, else 0"
    base, _ = split_name(symbol)
    gates = {gate.letter: gate.meaning for gate in cell.gates}
    outputs = {gate.output: gate.meaning for gate in cell.gates}
    if base in outputs:
        return f"{outputs[base]}, at step $t$"
    head, _, gate = base.partition("_")
    if head == "a" and gate in gates:
        return f"pre-activation of the {gates[gate]}"
    if head == "delta" and gate:
        return rf"$\partial L / \partial {latex(var(f'a_{gate}', t, *symbol.shape))}$"
    if base in _MEANINGS:
        return _MEANINGS[base]
    if base.endswith("bar"):
        primal = var(base.removesuffix("bar"), t, *symbol.shape)
        return rf"$\partial L / \partial {latex(primal)}$"
    if base.endswith("_new"):
        return f"the cell's update of ${base.removesuffix('_new')}_t$, kept where the mask is 1"
    definition = next((a.value for a in derivation.step.assignments if a.target == symbol), None)
    if definition is None:
        return ""
    meaning = f"${latex(definition)}$"
    if symbol in _projected(derivation):
        meaning += ", the hidden state before the projection"
    return meaning + dict(cell.prose.meanings).get(base, "")


def _letters(symbol: MatrixSymbol, derivation: Derivation) -> tuple[str, str]:
    """The shape of a variable in size letters: ``x_t`` is ``I × 1``, ``h_t`` ``P × 1``."""
    base, _ = split_name(symbol)
    if base == "D":
        return "H", "H"
    if base in {split_name(x)[0] for x in derivation.step.inputs}:
        return "I", "1"
    projected = derivation.spec.proj_size and symbol.shape[0] == derivation.spec.proj_size
    return ("P" if projected else "H"), "1"


def _size(symbol: MatrixSymbol) -> str:
    return rf"{symbol.shape[0]} \times {symbol.shape[1]}"


def _parameter_rows(derivation: Derivation, code: Callable[[str], str]) -> list[ShapeRow]:
    rows = []
    for parameter in derivation.parameters:
        letters = r"{} \times {}".format(*parameter.letters)
        if len(parameter.blocks) == 1:
            meaning = f"{parameter.description}, {code(parameter.torch_name)}"
            rows.append(
                ShapeRow(latex(parameter.blocks[0]), letters, _size(parameter.blocks[0]), meaning)
            )
            continue
        start = 0
        gates = {gate.letter: gate.meaning for gate in derivation.spec.definition.gates}
        for block in parameter.blocks:
            gate = gates[block.name.split("_", 1)[1][1:]]
            stop = start + block.shape[0]
            meaning = f"{gate}: rows {code(f'{start}:{stop}')} of {code(parameter.torch_name)}"
            rows.append(ShapeRow(latex(block), letters, _size(block), meaning))
            start = stop
    return rows


def _shapes(derivation: Derivation, code: Callable[[str], str], show_d: bool) -> list[ShapeRow]:
    rows = _parameter_rows(derivation, code)
    step = derivation.step
    symbols = [
        *step.inputs,
        *step.constants,
        *(a.target for a in step.assignments),
        derivation.adjoint.cotangent,
        *(state.final for state in step.states),
        *(a.target for a in derivation.backward_step),
    ]
    for symbol in symbols:
        letters = r"{} \times {}".format(*_letters(symbol, derivation))
        rows.append(ShapeRow(latex(symbol), letters, _size(symbol), _meaning(symbol, derivation)))
    if show_d:
        d, definition = _diagonal(derivation)
        rows.append(
            ShapeRow(latex(d), r"H \times H", _size(d), f"${definition}$, {_MEANINGS['D']}")
        )
    return rows


def _w_hh(derivation: Derivation) -> MatrixSymbol:
    """The one block of ``weight_hh`` of an RNN."""
    return next(p.blocks[0] for p in derivation.parameters if p.argument == "weight_hh")


def _mistake(derivation: Derivation) -> dict | None:
    """The ``t = T-2`` term of ``∂L/∂W_ih`` (two ``W_hh`` hops) in the seed case, for T ≥ 3."""
    steps = derivation.spec.steps
    if steps < 3 or derivation.spec.family != "rnn" or derivation.spec.packed:
        return None
    n = derivation.spec.hidden_size
    w_hh = _w_hh(derivation)
    k = steps - 2
    diagonal = [var("D", s, n, n) for s in (k, k + 1, k + 2)]
    chain: Chain = (
        diagonal[0],
        Transpose(w_hh),
        diagonal[1],
        Transpose(w_hh),
        diagonal[2],
        derivation.step.states[0].final,
        Transpose(at_step(derivation.step.inputs[0], k)),
    )
    factor = _derivative_factor(derivation)
    wrong = r" \odot ".join(latex(at_step(factor, s)) for s in (k, k + 1, k + 2))
    return {
        "step": k,
        "steps": steps,
        "chain": latex_chain(chain),
        "wrong": wrong,
        "w_hh_t": latex(Transpose(w_hh)),
        "gradient": rf"\partial L / \partial {latex(derivation.gradients[0].of)}",
    }


def _unrolled(derivation: Derivation) -> dict | None:
    """The RNN's gradients as sums of chains of matrix products, for T ≤ MAX_STEPS."""
    spec = derivation.spec
    if spec.steps > MAX_STEPS or spec.family != "rnn" or spec.packed:
        return None
    final = unroll(derivation, only_final=True)
    d, definition = _diagonal(derivation)
    gradients = []
    for gradient in final.gradients:
        tag = f"U{gradient.label[1:]}"
        if gradient.summed:
            chains = [c for step in reversed(gradient.steps) for c in step]
        elif gradient.once:
            chains = list(gradient.steps[0])
        else:
            continue
        of = gradient.of
        gradients.append(Equation(_chains_sum(_partial(of), chains), tag))
    general = unroll(derivation, only_final=False)
    deltas = [
        Equation(_chains_sum(latex(delta), chains)) for delta, chains in reversed(general.deltas)
    ]
    factor = _derivative_factor(derivation)
    return {
        "diagonal": f"{latex(d)} = {definition}",
        "diagonal_symbol": latex(d),
        "derivative": latex(factor),
        "recurrence": (
            rf"{latex(d)} (g_{{t}} + {latex(Transpose(_w_hh(derivation)))} \delta_{{t+1}})"
        ),
        "gradients": gradients,
        "deltas": deltas,
    }


def _sums(derivation: Derivation) -> list[Equation] | None:
    """Each parameter's gradient of an LSTM or GRU written out as its sum over the steps."""
    if derivation.spec.steps > MAX_STEPS:
        return None
    return [
        Equation(
            _broken_sum(_partial(g.of), [(latex(term), _width(term)) for term in g.terms]),
            f"U{g.label[1:]}",
        )
        for g in derivation.gradients
        if g.summed
    ]


def _gradient_groups(derivation: Derivation, code: Callable[[str], str]) -> list[EquationGroup]:
    """The gradients, under a heading per torch parameter when some parameter is stacked."""
    one_step = derivation.spec.is_cell
    equations = {g.label: _gradient_equation(g, one_step) for g in derivation.gradients}
    if all(len(p.blocks) == 1 for p in derivation.parameters):
        return [EquationGroup(None, list(equations.values()))]
    groups = []
    rest = list(derivation.gradients)
    for parameter in derivation.parameters:
        blocks = "; ".join(latex(b) for b in parameter.blocks)
        stacked = f"[{blocks}]" if len(parameter.blocks) > 1 else blocks
        mine = [g for g in rest if g.of in parameter.blocks]
        rest = [g for g in rest if g not in mine]
        heading = f"{code(parameter.torch_name)} $= {stacked}$"
        groups.append(EquationGroup(heading, [equations[g.label] for g in mine]))
    states = "states" if len(derivation.step.states) > 1 else "state"
    which = "incoming" if derivation.spec.is_cell else "initial"
    heading = f"The input and the {which} {states}"
    groups.append(EquationGroup(heading, [equations[g.label] for g in rest]))
    return groups


def _tex_text(text: str) -> str:
    """Plain text for LaTeX's text mode (``_`` and friends escaped, quotes kept straight)."""
    special = {
        "\\": r"\textbackslash{}",
        "_": r"\_",
        "%": r"\%",
        "&": r"\&",
        "#": r"\#",
        "$": r"\$",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "'": r"\textquotesingle{}",
    }
    return "".join(special.get(char, char) for char in text)


def _tex_code(text: str) -> str:
    return rf"\texttt{{{_tex_text(text)}}}"


def _md_code(text: str) -> str:
    return f"`{text}`"


def _class_title(spec, code: Callable[[str], str]) -> str:
    """``torch.nn.LSTM``, or a user-defined cell's name and description."""
    if spec.custom is None:
        return code(f"torch.nn.{spec.torch_class}")
    plain = _tex_text if code is _tex_code else str
    described = f" ({plain(spec.custom.description)})" if spec.custom.description else ""
    return code(spec.torch_class) + described


def _context(derivation: Derivation, code: Callable[[str], str]) -> dict:
    """Everything a document template lays out; ``code`` formats an inline code span."""
    spec = derivation.spec
    cell = spec.is_cell
    unrolled = None if cell else _unrolled(derivation)
    states = derivation.step.states
    boundary = derivation.boundary
    sizes = {"I": spec.input_size, "H": spec.hidden_size, "T": spec.steps, "P": spec.proj_size}
    shapes = _shapes(derivation, code, show_d=unrolled is not None)
    return {
        "marker": GENERATED_MARKER,
        "describe": spec.describe(),
        "regenerate": f"symbptt latex {spec.cli_options()} -o FILE",
        "layer": code(spec.torch_constructor()),
        "torch_class": _class_title(spec, code),
        "family": spec.family,
        "is_cell": cell,
        "gate_paragraph": spec.definition.prose.document,
        "backward_intro": _backward_intro(spec),
        "packed": spec.packed,
        "bias": spec.bias,
        "cell_state": len(states) > 1,
        "initial": " and ".join(f"${s.name}_0$" for s in states),
        "sizes": sizes,
        "code": {
            name: code(name) for name in ("x @ W.T", "h_n.sum().backward()", "h.sum().backward()")
        },
        "shapes": shapes,
        "long_table": len(shapes) > LONG_TABLE_ROWS,
        "forward_step": Equation(_assignments(derivation.step.assignments), f"F{STEP_TAG}"),
        "forward": [Equation(_assignments(step), step[0].label) for step in derivation.forward],
        "backward_step": Equation(_assignments(derivation.backward_step), f"B{STEP_TAG}"),
        "boundary": f"{latex(boundary[0].target)} = {latex(boundary[0].value)}",
        "boundaries": Equation(_assignments(boundary) if len(boundary) > 1 else ""),
        "backward": [Equation(_assignments(step), step[0].label) for step in derivation.backward],
        "gradient_groups": _gradient_groups(derivation, code),
        "stacked": any(len(p.blocks) > 1 for p in derivation.parameters),
        "unrolled": unrolled,
        "sums": None if cell or (spec.family == "rnn" and not spec.packed) else _sums(derivation),
        "max_steps": MAX_STEPS,
        "mistake": None if cell else _mistake(derivation),
        "network": _network(spec, code) if spec.is_network else None,
        "truncation": _truncation(spec, code),
    }


def _backward_intro(spec) -> str:
    """The sentence naming the backward's symbols: at ``t``, from ``T`` down (a single-step
    cell's at ``1``, where nothing comes back from a later step)."""
    symbols = spec.definition.prose.backward
    if spec.is_cell:
        return f"With {symbols.replace('_t', '_1')}; nothing\ncomes back from a later step:"
    return f"With {symbols}, going\nfrom $t = T$ down to $t = 1$:"


def _truncation(spec, code: Callable[[str], str]) -> str | None:
    """The sentence that says which backward terms truncated BPTT drops."""
    cut = [k for k in range(1, spec.steps) if spec.truncated_after(k)]
    if not cut:
        return None
    steps = ", ".join(f"${k}$" for k in cut)
    return (
        f"Truncated every {spec.truncate} steps (the carried state detached as by "
        f"{code('detach()')}): at $t$ = {steps} nothing comes back from step $t+1$, so those "
        "steps' equations below lack that term."
    )


def _network(spec, code: Callable[[str], str]) -> list[str]:
    """How layers, directions, dropout and packing compose the one-layer equations."""
    d, out = spec.directions, spec.output_size
    paragraphs = [
        f"The module has {spec.num_layers} layer(s) and {d} direction(s). Every (layer, "
        "direction) runs the equations above with its own parameters, named as torch names "
        f"them with the suffixes {code('_l<k>')} and {code('_reverse')}."
    ]
    if spec.bidirectional:
        within = " (each sample within its own length)" if spec.packed else ""
        paragraphs.append(
            f"The reverse direction runs them over the sequence reversed{within}; its outputs "
            "are reversed back, and the layer's output at step $t$ is "
            r"$\big[\overrightarrow{h}_t ; \overleftarrow{h}_t\big]$. Its entry of $h_n$ is "
            "the state after reading $x_1$."
        )
    if spec.num_layers > 1:
        mask = r" \odot d^{(k)}_t" if spec.dropout else ""
        paragraphs.append(
            rf"Layer $k+1$ reads $x^{{(k+1)}}_t = y^{{(k)}}_t{mask}$, layer $k$'s output"
            + (
                f", where $d^{{(k)}}_t$ is a dropout mask (each entry 0 with probability "
                f"{spec.dropout}, else $1/(1 - {spec.dropout})$; training mode only)"
                if spec.dropout
                else ""
            )
            + rf"; its input size is $D \cdot H_{{\mathrm{{out}}}} = {d * out}$. Backward, "
            rf"layer $k$'s output cotangent is $\bar{{x}}^{{(k+1)}}_t{mask}$, split between the "
            "directions, and each (layer, direction) receives its own entry of the cotangent "
            "of $h_n$ as its $g_n$."
        )
    if spec.packed:
        paragraphs.append(
            r"With a PackedSequence, $m_t = 1$ while a sample's sequence lasts and $0$ after, "
            "so its state stays at its own last step; padded steps receive no cotangent."
        )
    return paragraphs


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The document templates' strict Jinja environment (the code templates have their own,
    :func:`symbptt.codegen.environment`): undefined names are errors, whitespace is exact."""
    return template_environment()


def _render(template: str, context: dict) -> str:
    try:
        return _environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise CodegenError(f"template {template} failed: {exc}") from exc


def latex_document(derivation: Derivation) -> str:
    """A standalone LaTeX document (pdflatex, amsmath) of the whole derivation."""
    return stamp(_render("document.tex.jinja", _context(derivation, _tex_code)), ".tex")


def markdown_document(derivation: Derivation) -> str:
    """The same content as Markdown with ``$$`` display math, as GitHub renders it."""
    return stamp(_render("document.md.jinja", _context(derivation, _md_code)), ".md")


def latex_summary(derivation: Derivation) -> str:
    """A compact ``$$\\begin{aligned}...\\end{aligned}$$`` block for Jupyter's ``_repr_latex_``."""
    rows = []

    def add(assignments, label: str) -> None:
        for i, a in enumerate(assignments):
            note = rf" && (\mathrm{{{label}}}_t)" if i == 0 else ""
            rows.append(f"{latex(a.target)} &= {latex(a.value)}{note}")

    add(derivation.step.assignments, "F")
    add(derivation.backward_step, "B")
    for i, last in enumerate(derivation.boundary):
        note = rf" && \text{{at }} t = T = {derivation.spec.steps}" if i == 0 else ""
        rows.append(rf"{latex(last.target)} &= {latex(last.value)}{note}")
    for gradient in derivation.gradients:
        equation = _gradient_equation(gradient).body.replace(" = ", " &= ", 1)
        rows.append(rf"{equation} && (\mathrm{{{gradient.label}}})")
    return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


# --- PDF ---------------------------------------------------------------------------------

_LATEX_ERROR = re.compile(r"^! (.*)$", re.MULTILINE)
_LATEX_LINE = re.compile(r"^l\.(\d+) ?(.*)$", re.MULTILINE)


def _first_error(log: str) -> str:
    match = _LATEX_ERROR.search(log)
    if match is None:
        return "see the log for details"
    message = match.group(1).strip()
    where = _LATEX_LINE.search(log, match.end())
    if where is not None:
        context = where.group(2).strip()
        message += f" (line {where.group(1)}" + (f": {context})" if context else ")")
    return message


def find_pdflatex() -> str:
    """The path of pdflatex.

    Raises:
        CodegenError: there is none on ``PATH``.
    """
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise CodegenError(
            "pdflatex not found; install a TeX distribution (e.g. TeX Live) to build the PDF"
        )
    return pdflatex


def compile_pdf(tex_path: Path, timeout: float = 120, force: bool = False) -> Path:
    """Compile ``tex_path`` with pdflatex in a temporary folder; write the PDF next to it.

    Only the PDF comes back next to the document (pdflatex's ``.aux`` and ``.log`` stay in the
    temporary folder). Its Info dictionary's ``/Creator`` is :data:`~symbptt.fileio.PDF_CREATOR`,
    set on pdflatex's command line, which is how a later run recognises it as symbptt's.

    Returns:
        The path of the PDF, ``tex_path`` with the suffix ``.pdf``.

    Raises:
        CodegenError: the PDF exists and is not symbptt's (unless ``force``); pdflatex is
            missing, times out, or stops on an error (the first ``!`` line of its log is in
            the message); the tex file cannot be read.
    """
    tex_path = Path(tex_path)
    pdf_path = tex_path.with_suffix(".pdf")
    check_writable(pdf_path, force=force)
    pdflatex = find_pdflatex()
    if not tex_path.is_file():
        raise CodegenError(f"{tex_path} does not exist")
    with tempfile.TemporaryDirectory(prefix="symbptt-latex-") as folder:
        work = Path(folder)
        source = work / "document.tex"
        try:
            shutil.copyfile(tex_path, source)
        except OSError as exc:
            raise CodegenError(f"cannot read {tex_path}: {exc.strerror or exc}") from None
        command = [
            pdflatex,
            "-interaction=nonstopmode",
            "-halt-on-error",
            "-no-shell-escape",
            f"-jobname={source.stem}",
            rf"\pdfinfo{{/Creator ({PDF_CREATOR})}}\input{{{source.name}}}",
        ]
        # \input{...} of files next to the document still resolves from the temporary folder
        search = f"{tex_path.parent.resolve()}{os.pathsep}{os.environ.get('TEXINPUTS', '')}"
        env = {**os.environ, "TEXINPUTS": search}
        try:
            result = subprocess.run(
                command,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise CodegenError(f"pdflatex timed out after {timeout:g} s on {tex_path}") from None
        except OSError as exc:
            raise CodegenError(f"cannot run pdflatex: {exc.strerror or exc}") from None
        log_path = work / "document.log"
        log = log_path.read_text(encoding="latin-1") if log_path.exists() else ""
        log = log or result.stdout.decode("latin-1", errors="replace")
        pdf = work / "document.pdf"
        if result.returncode != 0 or not pdf.is_file():
            raise CodegenError(f"pdflatex failed on {tex_path}: {_first_error(log)}")
        return write_generated(pdf_path, pdf.read_bytes(), force=force)
