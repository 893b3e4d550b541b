"""The derivation as a standalone LaTeX document, as Markdown, and as a Jupyter summary.

Every equation string is built here from the :class:`~symbptt.derivation.Derivation` and handed
to ``templates/document.tex.jinja`` / ``templates/document.md.jinja`` as data; the templates only
lay the text out. The content mirrors :func:`symbptt.printing.text.derivation_text`: forward
equations (``F``), backward recurrence (``B``), gradients (``G``) and, for small T, the gradients
unrolled into chains of matrix products (``U``). Every ``\\tag`` is unique in a document.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import sympy as sp
from sympy import MatrixSymbol, Transpose

from ..codegen import environment
from ..errors import CodegenError
from ..fileio import GENERATED_MARKER, write_generated
from ..matexpr import Elementwise
from ..program import at_step, split_name, t, var
from ..unrolled import MAX_STEPS, Chain, unroll
from .latex import chain as latex_chain
from .latex import latex

if TYPE_CHECKING:
    from ..derivation import Derivation, Gradient

LINE_BUDGET_PT = 340.0
"""Width (pt) of the right-hand side of one line of a broken sum, on a 455pt text width."""

MAX_TERMS_PER_LINE = 4
"""At most this many terms of a long sum share one line."""

_PLUS_PT = 12.2
_PARAMETER_PT = 19.0
_INDEXED_PT = 12.8

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


# --- building blocks ---------------------------------------------------------------------


def _partial(of: MatrixSymbol) -> str:
    return rf"\frac{{\partial L}}{{\partial {latex(of)}}}"


def _assignments(assignments) -> str:
    return r", \qquad ".join(f"{latex(a.target)} = {latex(a.value)}" for a in assignments)


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


def _gradient_equation(gradient: Gradient) -> Equation:
    lhs = _partial(gradient.of)
    if gradient.summed:
        body = rf"{lhs} = \sum_{{t=1}}^{{T}} {latex(gradient.generic)}"
    elif gradient.once:
        body = f"{lhs} = {latex(gradient.terms[0])}"
    else:
        body = rf"{lhs} = {latex(gradient.generic)}, \qquad t = 1, \dots, T"
    return Equation(body, gradient.label)


def _derivative_factor(derivation: Derivation) -> Elementwise:
    """``f'(h_t)`` of the generic backward step (``1 - h_t ⊙ h_t`` for tanh)."""
    for assignment in derivation.adjoint.assignments:
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
    "g": r"$\partial L / \partial \mathrm{output}_t$, the cotangent of output $t$",
    "g[n]": r"$\partial L / \partial h_n$, the cotangent of the final state $h_n = h_T$",
    "hbar": r"$\partial L / \partial h_t$, all the cotangent that reaches $h_t$",
    "delta": r"$\partial L / \partial z_t$",
    "D": "the derivative of the nonlinearity at step $t$, as a diagonal matrix",
}


def _shape_letters(symbol: MatrixSymbol) -> tuple[str, str]:
    base, _ = split_name(symbol)
    return {"x": ("I", "1"), "W_ih": ("H", "I"), "W_hh": ("H", "H"), "D": ("H", "H")}.get(
        base, ("H", "1")
    )


def _shape_row(symbol: MatrixSymbol, meaning: str) -> ShapeRow:
    rows, cols = _shape_letters(symbol)
    size = rf"{symbol.shape[0]} \times {symbol.shape[1]}"
    return ShapeRow(latex(symbol), rf"{rows} \times {cols}", size, meaning)


def _shapes(derivation: Derivation, code: Callable[[str], str], show_d: bool) -> list[ShapeRow]:
    rows = [
        _shape_row(p.symbol, f"{p.description}, {code(p.torch_name)}")
        for p in derivation.parameters
    ]
    step, adjoint = derivation.step, derivation.adjoint
    symbols = [
        *step.inputs,
        *(a.target for a in step.assignments),
        adjoint.cotangent,
        adjoint.final,
        *(a.target for a in adjoint.assignments),
    ]
    for symbol in symbols:
        key = symbol.name if symbol.name in _MEANINGS else split_name(symbol)[0]
        rows.append(_shape_row(symbol, _MEANINGS.get(key, "")))
    if show_d:
        d, definition = _diagonal(derivation)
        rows.append(_shape_row(d, f"${definition}$, " + _MEANINGS["D"]))
    return rows


def _mistake(derivation: Derivation) -> dict | None:
    """The ``t = T-2`` term of ``∂L/∂W_ih`` (two ``W_hh`` hops) in the seed case, for T ≥ 3."""
    steps = derivation.spec.steps
    if steps < 3:
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
        derivation.adjoint.final,
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
    if derivation.spec.steps > MAX_STEPS:
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


def _w_hh(derivation: Derivation) -> MatrixSymbol:
    return next(p.symbol for p in derivation.parameters if p.symbol.name == "W_hh")


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


def _context(derivation: Derivation, code: Callable[[str], str]) -> dict:
    """Everything a document template lays out; ``code`` formats an inline code span."""
    spec = derivation.spec
    last = derivation.backward[0][0]
    unrolled = _unrolled(derivation)
    return {
        "marker": GENERATED_MARKER,
        "describe": spec.describe(),
        "regenerate": f"symbptt latex {spec.cli_options()} -o FILE",
        "layer": code(spec.torch_constructor()),
        "sizes": {"I": spec.input_size, "H": spec.hidden_size, "T": spec.steps},
        "code": {name: code(name) for name in ("x @ W.T", "h_n.sum().backward()")},
        "shapes": _shapes(derivation, code, show_d=unrolled is not None),
        "forward_step": Equation(_assignments(derivation.step.assignments), f"F{STEP_TAG}"),
        "forward": [Equation(_assignments(step), step[0].label) for step in derivation.forward],
        "backward_step": Equation(_assignments(derivation.adjoint.assignments), f"B{STEP_TAG}"),
        "boundary": f"{latex(last.target)} = {latex(last.value)}",
        "backward": [Equation(_assignments(step), step[0].label) for step in derivation.backward],
        "gradients": [_gradient_equation(g) for g in derivation.gradients],
        "unrolled": unrolled,
        "max_steps": MAX_STEPS,
        "mistake": _mistake(derivation),
    }


def _render(template: str, context: dict) -> str:
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise CodegenError(f"template {template} failed: {exc}") from exc


def latex_document(derivation: Derivation) -> str:
    """A standalone LaTeX document (pdflatex, amsmath) of the whole derivation."""
    return _render("document.tex.jinja", _context(derivation, _tex_code))


def markdown_document(derivation: Derivation) -> str:
    """The same content as Markdown with ``$$`` display math, as GitHub renders it."""
    return _render("document.md.jinja", _context(derivation, _md_code))


def latex_summary(derivation: Derivation) -> str:
    """A compact ``$$\\begin{aligned}...\\end{aligned}$$`` block for Jupyter's ``_repr_latex_``."""
    rows = []

    def add(assignments, label: str) -> None:
        for i, a in enumerate(assignments):
            note = rf" && (\mathrm{{{label}}}_t)" if i == 0 else ""
            rows.append(f"{latex(a.target)} &= {latex(a.value)}{note}")

    add(derivation.step.assignments, "F")
    add(derivation.adjoint.assignments, "B")
    last = derivation.backward[0][0]
    rows.append(
        rf"{latex(last.target)} &= {latex(last.value)} && \text{{at }} t = T = "
        rf"{derivation.spec.steps}"
    )
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


def compile_pdf(tex_path: Path, timeout: float = 120) -> Path:
    """Compile ``tex_path`` with pdflatex in a temporary folder; write the PDF next to it.

    Returns:
        The path of the PDF, ``tex_path`` with the suffix ``.pdf``.

    Raises:
        CodegenError: pdflatex is missing, times out, or stops on an error (the first ``!``
            line of its log is in the message); the tex file cannot be read.
    """
    tex_path = Path(tex_path)
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise CodegenError(
            "pdflatex not found; install a TeX distribution (e.g. TeX Live) to build the PDF"
        )
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
            source.name,
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
        return write_generated(tex_path.with_suffix(".pdf"), pdf.read_bytes(), force=True)
