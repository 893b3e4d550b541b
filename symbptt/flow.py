"""Gradient flow through time: the Jacobian chain ∂h_T/∂h_t, symbolically and in numbers.

Derives one step's state Jacobian ∂h_t/∂h_{t-1} from the step program (forward mode; for an
LSTM the block matrix ∂(h_t, c_t)/∂(h_{t-1}, c_{t-1})) and prints the chain
∂h_T/∂h_t = J_T J_{T-1} ⋯ J_{t+1} (for an RNN Π_{k=t+1}^{T} D_k W_hh). Then, for the layer's
weights (torch's init under --seed, or --weights) and one input sequence (--input, or random),
float64, it prints per t the chain's spectral and Frobenius norms and singular values and the
norm of step t's term of ∂L/∂W_hh (L = Σ h_n), flags vanishing and exploding gradients, checks
the numbers against torch autograd, and with --plot draws them against t on a log scale.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import math
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy import (
    HadamardProduct,
    Identity,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    ZeroMatrix,
)
from sympy.matrices.expressions.diagonal import DiagMatrix

from .adjoint import hadamard
from .errors import DerivationError, SymbpttError
from .matexpr import Elementwise, derivative_of_output
from .printing.latex import LatexPrinter
from .printing.names import latex_name, text_name
from .printing.text import TextPrinter
from .program import Assignment, State, StepProgram, at_step, split_name, t, var

if TYPE_CHECKING:
    import torch

    from .derivation import Derivation
    from .spec import Spec

HELP = "the Jacobian chain ∂h_T/∂h_t: vanishing and exploding gradients, symbolic and numeric"
SPEC_OPTIONS = True

VANISHING = 1e-3
"""A chain norm (or a step's term) below this fraction of its t = T value is vanishing."""
EXPLODING = 1e3
"""A chain norm (or a step's term) above this multiple of its t = T value is exploding."""
TOLERANCE = 1e-10
"""float64 agreement required with torch autograd (as in :mod:`symbptt.verify`)."""
MAX_LISTED_STEPS = 8
"""Up to this many steps every chain ∂h_T/∂h_t is written out; above, the first and last."""
PLOT_SUFFIXES = (".png", ".svg")
MISSING_MATPLOTLIB = "--plot needs matplotlib: pip install 'symbptt[plot]'"

k = sp.Symbol("k")
"""The running step of the product Π_{k=t+1}^{T}."""


class FlowError(SymbpttError):
    """Gradient flow could not be computed or drawn (bad weights, input, plot file)."""


# --- the one-step state Jacobian, by forward mode over the step program ---------------------


def jacobian_symbol(target: MatrixSymbol, state: State) -> MatrixSymbol:
    """The symbol of ``∂target/∂state.previous`` (``∂c_t/∂h_{t-1}``), indexed like ``target``."""
    base, index = split_name(target)
    wrt, _ = split_name(state.previous)
    return var(f"J__{base}__{wrt}", index, target.shape[0], state.previous.shape[0])


def _jacobian_parts(symbol: MatrixSymbol) -> tuple[MatrixSymbol, MatrixSymbol] | None:
    """``J__c__h[t]`` -> ``(c[t], h[t - 1])``; None for any other symbol."""
    base, index = split_name(symbol)
    if index is None or not base.startswith("J__"):
        return None
    target, wrt = base[3:].split("__")
    return var(target, index, symbol.shape[0]), var(wrt, index - 1, symbol.shape[1])


def _mul(*items: sp.Basic) -> sp.Basic:
    """A product with numbers collected, identities dropped and ``diag(a) diag(b)`` merged."""
    coefficient, factors = sp.Integer(1), []
    for item in items:
        parts = item.args if isinstance(item, MatMul) else (item,)
        for part in parts:
            if not getattr(part, "is_Matrix", False):
                coefficient *= part
            elif isinstance(part, Identity):
                continue
            elif factors and isinstance(part, DiagMatrix) and isinstance(factors[-1], DiagMatrix):
                factors[-1] = DiagMatrix(hadamard(factors[-1].args[0], part.args[0]))
            else:
                factors.append(part)
    if not factors:
        n = next(i for i in items if getattr(i, "is_Matrix", False)).shape[0]
        factors = [Identity(n)]
    if coefficient == 1:
        return factors[0] if len(factors) == 1 else MatMul(*factors)
    return MatMul(coefficient, *factors)


def _add(terms: list[sp.Basic | None]) -> sp.Basic | None:
    flat = []
    for term in terms:
        if term is not None:
            flat.extend(term.args if isinstance(term, MatAdd) else [term])
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else MatAdd(*flat)


def tangent(
    expr: sp.Basic,
    wrt: MatrixSymbol,
    known: dict[MatrixSymbol, sp.Basic],
    output: MatrixSymbol | None = None,
) -> sp.Basic | None:
    """``∂expr/∂wrt`` by the forward-mode rules; None where it is zero.

    ``known`` holds the Jacobians of the variables assigned so far (a symbol or an expression);
    parameters, inputs and the other states are constants. The rules, for a column ``v``::

        A + B       ->  ∂A + ∂B
        c W v       ->  c W ∂v                 (only the last factor may vary)
        a ⊙ b       ->  diag(b) ∂a + diag(a) ∂b
        y = f(a)    ->  diag(f'(y)) ∂a         (f element-wise, f' written in the output y)
    """
    if isinstance(expr, MatrixSymbol):
        return Identity(wrt.shape[0]) if expr == wrt else known.get(expr)
    if isinstance(expr, (OneMatrix, ZeroMatrix)):
        return None
    if isinstance(expr, MatAdd):
        return _add([tangent(arg, wrt, known) for arg in expr.args])
    if isinstance(expr, MatMul):
        numbers = [f for f in expr.args if not getattr(f, "is_Matrix", False)]
        factors = [f for f in expr.args if getattr(f, "is_Matrix", False)]
        tangents = [tangent(f, wrt, known) for f in factors]
        if all(d is None for d in tangents):
            return None
        if any(d is not None for d in tangents[:-1]):
            raise DerivationError(f"no forward-mode rule for {expr}: a varying matrix factor")
        return _mul(*numbers, *factors[:-1], tangents[-1])
    if isinstance(expr, HadamardProduct):
        terms = []
        for i, arg in enumerate(expr.args):
            d = tangent(arg, wrt, known)
            if d is not None:
                others = expr.args[:i] + expr.args[i + 1 :]
                scale = others[0] if len(others) == 1 else hadamard(*others)
                terms.append(_mul(DiagMatrix(scale), d))
        return _add(terms)
    if isinstance(expr, Elementwise):
        d = tangent(expr.arg, wrt, known)
        if d is None:
            return None
        y = output if output is not None else expr
        return _mul(DiagMatrix(derivative_of_output(expr.name, y)), d)
    raise DerivationError(f"no forward-mode rule for {type(expr).__name__}: {expr}")


@dataclass(frozen=True)
class StepJacobian:
    """One step's state Jacobian, for the symbolic step ``t``.

    Attributes:
        states: the carried states (``h``, then ``c`` for an LSTM).
        assignments: the named Jacobians in evaluation order: every state's and every
            activation's (``∂i_t/∂h_{t-1} = diag(i_t ⊙ (1 − i_t)) W_hi``); a pre-activation's is
            written inline where it is used.
        blocks: ``blocks[i][j]`` = ∂(state i)_t/∂(state j)_{t-1}: a symbol of ``assignments``,
            or None where it is zero.
    """

    states: tuple[State, ...]
    assignments: tuple[Assignment, ...]
    blocks: tuple[tuple[MatrixSymbol | None, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(state.new.shape[0] for state in self.states)


def step_jacobian(program: StepProgram) -> StepJacobian:
    """Differentiate one step of ``program`` w.r.t. each previous state (forward mode)."""
    named = {a.target for a in program.assignments if isinstance(a.value, Elementwise)}
    named |= {state.new for state in program.states}
    assignments = []
    columns = []
    for wrt in program.states:
        known: dict[MatrixSymbol, sp.Basic] = {}
        for assignment in program.assignments:
            d = tangent(assignment.value, wrt.previous, known, output=assignment.target)
            if d is None:
                continue
            if assignment.target in named:
                symbol = jacobian_symbol(assignment.target, wrt)
                assignments.append(Assignment(symbol, d, "J"))
                d = symbol
            known[assignment.target] = d
        columns.append([known.get(state.new) for state in program.states])
    blocks = tuple(tuple(column[i] for column in columns) for i in range(len(program.states)))
    return StepJacobian(program.states, tuple(assignments), blocks)


# --- printing ---------------------------------------------------------------------------------


def _strip_group(text: str, left: str, right: str) -> str:
    """``(a ⊙ b)`` -> ``a ⊙ b`` when the outer parentheses enclose everything."""
    if not (text.startswith(left) and text.endswith(right)):
        return text
    depth = 0
    i = 0
    while i < len(text):
        if text.startswith(left, i):
            depth += 1
            i += len(left)
            continue
        if text.startswith(right, i):
            depth -= 1
            i += len(right)
            if depth == 0 and i < len(text):
                return text
            continue
        i += 1
    return text[len(left) : -len(right)]


def _step_k(symbol: MatrixSymbol) -> MatrixSymbol | None:
    """``D[k]`` -> ``D[t]`` (to borrow its name); None for symbols not indexed by ``k``."""
    base, index = split_name(symbol)
    return var(base, t, *symbol.shape) if index == k else None


class _Text(TextPrinter):
    """The terminal printer, plus ``diag(v)``, ``I`` and the Jacobian symbols ``∂cₜ/∂hₜ₋₁``."""

    def name(self, symbol: MatrixSymbol) -> str:
        parts = _jacobian_parts(symbol)
        if parts is not None:
            return f"∂{text_name(parts[0])}/∂{text_name(parts[1])}"
        at_t = _step_k(symbol)
        if at_t is not None:
            return text_name(at_t).replace("ₜ", "ₖ")
        return text_name(symbol)

    def _print_DiagMatrix(self, expr: DiagMatrix) -> str:
        return f"diag({_strip_group(self._print(expr.args[0]), '(', ')')})"

    def _print_Identity(self, expr: Identity) -> str:
        return "I"


class _Latex(LatexPrinter):
    """The LaTeX printer, plus ``\\operatorname{diag}``, ``I`` and ``\\frac{∂c_t}{∂h_{t-1}}``."""

    def name(self, symbol: MatrixSymbol) -> str:
        parts = _jacobian_parts(symbol)
        if parts is not None:
            return rf"\frac{{\partial {latex_name(parts[0])}}}{{\partial {latex_name(parts[1])}}}"
        return latex_name(symbol)

    def _print_DiagMatrix(self, expr: DiagMatrix) -> str:
        inner = _strip_group(self._print(expr.args[0]), r"\left(", r"\right)")
        return rf"\operatorname{{diag}}\left({inner}\right)"

    def _print_Identity(self, expr: Identity) -> str:
        return "I"


_PRINTERS = {"text": _Text(), "latex": _Latex()}


def _show(expr: sp.Basic, style: str) -> str:
    return _PRINTERS[style].doprint(expr)


@dataclass(frozen=True)
class Chain:
    """The chain ∂s_T/∂s_t in symbols: the one-step factor and what its pieces stand for.

    For an RNN the factor is ``D_t W_hh`` with ``D_t = diag(f'(h_t))``; otherwise it is the
    symbol ``J_t``, defined by the block matrix of :class:`StepJacobian`.
    """

    jacobian: StepJacobian
    factor: sp.Basic
    diagonal: tuple[MatrixSymbol, sp.Basic] | None


def symbolic_chain(derivation: Derivation) -> Chain:
    """The one-step factor of the chain, built from the step program's Jacobian."""
    jacobian = step_jacobian(derivation.step)
    if len(jacobian.states) == 1:
        (assignment,) = [a for a in jacobian.assignments if a.target == jacobian.blocks[0][0]]
        value = assignment.value
        if (
            derivation.spec.family == "rnn"
            and isinstance(value, MatMul)
            and isinstance(value.args[0], DiagMatrix)
        ):
            n = value.shape[0]
            diagonal = var("D", t, n, n)
            return Chain(jacobian, _mul(diagonal, *value.args[1:]), (diagonal, value.args[0]))
    n = sum(jacobian.sizes)
    return Chain(jacobian, var("J", t, n, n), None)


def _at_k(expr: sp.Basic) -> sp.Basic:
    """``D[t] W_hh`` -> ``D[k] W_hh`` (the factor has no ``t - 1``)."""
    mapping = {}
    for symbol in expr.atoms(MatrixSymbol):
        _, index = split_name(symbol)
        if index is not None:
            if index != t:
                raise DerivationError(f"the chain's factor {expr} reaches back a step")
            mapping[symbol] = var(split_name(symbol)[0], k, *symbol.shape)
    return expr.xreplace(mapping)


def _state_text(spec: Spec, style: str, index: str) -> str:
    """``hₜ`` or ``(hₜ, cₜ)`` (text), ``h_{t}`` or ``(h_{t}, c_{t})`` (LaTeX)."""
    names = ["h", "c"] if spec.family == "lstm" else ["h"]
    if style == "text":
        sub = {"T": "_T", "t": "ₜ", "t-1": "ₜ₋₁"}.get(index)
        if sub is None:
            sub = index.translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
        items = [f"{n}{sub}" for n in names]
    else:
        items = [f"{n}_{{{index}}}" for n in names]
    return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"


def _derivative(spec: Spec, style: str, top: str, bottom: str) -> str:
    num, den = _state_text(spec, style, top), _state_text(spec, style, bottom)
    if style == "text":
        return f"∂{num}/∂{den}"
    return rf"\frac{{\partial {num}}}{{\partial {den}}}"


def symbolic_lines(derivation: Derivation, style: str = "text") -> list[str]:
    """The one-step Jacobian and the chain, one equation a line (``style``: text or latex)."""
    spec = derivation.spec
    chain = symbolic_chain(derivation)
    jac = chain.jacobian
    show = _show
    lines = [f"{show(a.target, style)} = {show(a.value, style)}" for a in jac.assignments]
    if len(jac.states) > 1:
        if style == "text":
            rows = "; ".join(
                ", ".join(show(b, style) if b is not None else "0" for b in row)
                for row in jac.blocks
            )
            lines.append(f"{show(chain.factor, style)} = {_derivative(spec, style, 't', 't-1')}")
            lines[-1] += f" = [{rows}]"
        else:
            rows = r" \\ ".join(
                " & ".join(show(b, style) if b is not None else "0" for b in row)
                for row in jac.blocks
            )
            lines.append(
                f"{show(chain.factor, style)} = {_derivative(spec, style, 't', 't-1')} = "
                rf"\begin{{pmatrix}} {rows} \end{{pmatrix}}"
            )
    elif chain.diagonal is not None:
        diagonal, value = chain.diagonal
        lines[-1] += f" = {show(chain.factor, style)}"
        lines.append(f"{show(diagonal, style)} = {show(value, style)}")
    else:
        lines[-1] = f"{show(chain.factor, style)} = " + lines[-1]
    factor_k = show(_at_k(chain.factor), style)
    last = spec.steps
    if style == "text":
        lines.append(
            f"{_derivative(spec, style, 'T', 't')} = Π_{{k=t+1}}^{{T}} {factor_k} (the k = T "
            f"factor leftmost), {_derivative(spec, style, 'T', 'T')} = I"
        )
    else:
        lines.append(
            rf"{_derivative(spec, style, 'T', 't')} = \prod_{{k=t+1}}^{{T}} {factor_k}, \quad "
            rf"{_derivative(spec, style, 'T', 'T')} = I"
        )
    steps = list(range(last - 1, -1, -1))
    if len(steps) > MAX_LISTED_STEPS:
        steps = steps[:2] + [None] + steps[-1:]
    for step in steps:
        if step is None:
            lines.append("⋮" if style == "text" else r"\vdots")
            continue
        product = _mul(*(at_step(chain.factor, j) for j in range(last, step, -1)))
        lines.append(f"{_derivative(spec, style, str(last), str(step))} = {show(product, style)}")
    return lines


# --- numbers ----------------------------------------------------------------------------------


_FUNCTIONS = {
    "tanh": lambda v: v.tanh(),
    "relu": lambda v: v.relu(),
    "sigmoid": lambda v: v.sigmoid(),
    "dtanh": lambda v: 1 - v * v,
    "dsigmoid": lambda v: v * (1 - v),
    "drelu": lambda v: (v > 0).to(v.dtype),
}

Values = dict
"""Numbers by key: a parameter block by its name (``W_hh``), a variable by ``(base, step)``."""
Evaluator = Callable[[Values, int], "torch.Tensor"]


def value_key(symbol: MatrixSymbol, step: int) -> str | tuple[str, int]:
    """Where the value of ``symbol`` (``h[t - 1]``, ``W_hh``) at step ``t = step`` is kept."""
    base, index = split_name(symbol)
    if index is None:
        return base
    return base, int(index.subs(t, step))


def compile_expression(expr: sp.Basic) -> Evaluator:
    """A function of (values, step) giving ``expr`` (written for the symbolic step t) at a step.

    Written once per expression, so evaluating T steps costs no SymPy work per step.
    """
    import torch

    if isinstance(expr, MatrixSymbol):
        base, index = split_name(expr)
        if index is None:
            return lambda values, step: values[base]
        offset = int(index - t)
        return lambda values, step: values[base, step + offset]
    if isinstance(expr, (MatAdd, HadamardProduct)):
        parts = [compile_expression(arg) for arg in expr.args]
        add = isinstance(expr, MatAdd)

        def combine(values, step):
            result = parts[0](values, step)
            for part in parts[1:]:
                result = result + part(values, step) if add else result * part(values, step)
            return result

        return combine
    if isinstance(expr, MatMul):
        coefficient = float(sp.Mul(*[a for a in expr.args if not a.is_Matrix]))
        factors = [compile_expression(a) for a in expr.args if a.is_Matrix]

        def product(values, step):
            result = factors[0](values, step)
            for factor in factors[1:]:
                result = result @ factor(values, step)
            return coefficient * result if coefficient != 1 else result

        return product
    if isinstance(expr, Elementwise):
        function, arg = _FUNCTIONS[expr.name], compile_expression(expr.arg)
        return lambda values, step: function(arg(values, step))
    if isinstance(expr, DiagMatrix):
        vector = compile_expression(expr.args[0])
        return lambda values, step: torch.diag(vector(values, step).reshape(-1))
    rows, cols = (int(n) for n in expr.shape)
    if isinstance(expr, Identity):
        return lambda values, step: torch.eye(rows, dtype=torch.float64)
    if isinstance(expr, OneMatrix):
        return lambda values, step: torch.ones(rows, cols, dtype=torch.float64)
    if isinstance(expr, ZeroMatrix):
        return lambda values, step: torch.zeros(rows, cols, dtype=torch.float64)
    raise DerivationError(f"cannot evaluate {type(expr).__name__}: {expr}")


def run_program(assignments: tuple[Assignment, ...], values: Values) -> Callable[[int], None]:
    """A function that evaluates ``assignments`` (for the symbolic step t) at one step."""
    compiled = [(a.target, compile_expression(a.value)) for a in assignments]

    def run_step(step: int) -> None:
        for target, evaluator in compiled:
            values[value_key(target, step)] = evaluator(values, step)

    return run_step


@dataclass(frozen=True)
class Row:
    """The chain ∂s_T/∂s_t at one t, and step t's term of ∂L/∂W_hh (None at t = 0)."""

    t: int
    spectral: float
    frobenius: float
    singular_values: tuple[float, ...]
    contribution: float | None


@dataclass(frozen=True)
class Flow:
    """Gradient flow for one input sequence (float64, unbatched).

    Attributes:
        parameter: torch's name of W_hh (``weight_hh_l0``, ``weight_hh`` for a cell).
        term: step t's term of ∂L/∂W_hh in symbols (``δₜ hₜ₋₁ᵀ``; gate blocks stacked).
        rows: t = T, T−1, ..., 0.
        jacobians: J_1 ... J_T, the state Jacobians ∂s_k/∂s_{k-1} at the forward values
            (with ``keep_matrices``, else empty).
        chains: ∂s_T/∂s_t for t = T, ..., 0, same order as ``rows`` (with ``keep_matrices``).
        per_step: the generated backward's terms of ∂L/∂W_hh, steps 1..T (T, *shape).
        weight_hh_grad: torch autograd's ∂L/∂W_hh.
        errors: max relative error against torch autograd: the final state, uᵀ ∂s_T/∂s_0 for a
            random u, ∂L/∂W_hh.
    """

    spec: Spec
    loss: str
    parameter: str
    term: str
    rows: tuple[Row, ...]
    jacobians: tuple[torch.Tensor, ...]
    chains: tuple[torch.Tensor, ...]
    per_step: torch.Tensor
    weight_hh_grad: torch.Tensor
    errors: dict[str, float]

    @property
    def ok(self) -> bool:
        return all(error <= TOLERANCE for error in self.errors.values())


LOSSES = {"h_n": "L = Σ h_n (h_n.sum())", "output": "L = Σₜ Σ outputₜ (output.sum())"}


def check_supported(spec: Spec) -> None:
    if spec.is_network:
        raise FlowError(
            "flow covers one layer in one direction without --packed or --dropout; "
            f"not {spec.describe()}"
        )
    if getattr(spec, "truncate", 0):
        raise FlowError(
            "flow shows the full chain ∂h_T/∂h_t; --truncate cuts it (leave --truncate out)"
        )


def reference_module(spec: Spec, seed: int, state_dict: dict | None = None):
    """torch's own module, float64, with torch's init under ``seed`` or ``state_dict``."""
    import torch

    from .verify import torch_reference

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = torch_reference(spec, "cpu", torch.float64)
    if state_dict is not None:
        expected = {name: tuple(p.shape) for name, p in module.state_dict().items()}
        missing = [n for n in expected if n not in state_dict]
        unexpected = [n for n in state_dict if n not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected " + ", ".join(map(str, unexpected)))
            needs = ", ".join(f"{n} {shape}" for n, shape in expected.items())
            raise FlowError(f"weights: {'; '.join(parts)} ({spec.torch_constructor()} has {needs})")
        for name, shape in expected.items():
            value = state_dict[name]
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise FlowError(f"weights: {name} must be a floating-point tensor")
            if tuple(value.shape) != shape:
                raise FlowError(
                    f"weights: {name} has shape {tuple(value.shape)}, "
                    f"{spec.torch_constructor()} needs {shape}"
                )
            if not torch.isfinite(value).all():
                raise FlowError(f"weights: {name} has NaN or infinite entries")
        module.load_state_dict({n: state_dict[n].to(torch.float64) for n in expected})
    module.eval()
    return module


def _run_torch(module, spec: Spec, x: torch.Tensor, states: tuple[torch.Tensor, ...]):
    """torch's module on unbatched ``x`` (T, I) from ``states``; return (output, final states)."""
    if spec.is_cell:
        result = module(x[0], states if spec.family == "lstm" else states[0])
        final = result if spec.family == "lstm" else (result,)
        return final[0].unsqueeze(0), tuple(final)
    hx = tuple(s.unsqueeze(0) for s in states)
    output, final = module(x, hx if spec.family == "lstm" else hx[0])
    final = final if spec.family == "lstm" else (final,)
    return output, tuple(s.squeeze(0) for s in final)


def _relative_error(actual, expected) -> float:
    scale = expected.abs().max().item()
    diff = (actual - expected).abs().max().item()
    return diff / scale if scale else diff


def gradient_flow(
    derivation: Derivation,
    module,
    x: torch.Tensor,
    loss: str = "h_n",
    module_generated=None,
    keep_matrices: bool = False,
) -> Flow:
    """Compute the chain ∂s_T/∂s_t and each step's term of ∂L/∂W_hh for one sequence.

    Args:
        module: torch's own module (``torch.nn.RNN`` ...), float64; its weights are used.
        x: the input, (T, I).
        loss: ``"h_n"`` for L = Σ h_n, ``"output"`` for L = Σ_t Σ output_t.
        module_generated: the generated module (default ``derivation.load()``).
        keep_matrices: keep every J_k and every chain ∂s_T/∂s_t in the result (T + 1 square
            matrices of the state's size each); else only their norms and singular values.
    """
    import torch

    spec = derivation.spec
    check_supported(spec)
    if loss not in LOSSES:
        raise FlowError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    weights = {n: p.detach().to(torch.float64) for n, p in module.state_dict().items()}
    x = x.detach().to(torch.float64)
    steps = spec.steps
    chain = symbolic_chain(derivation)
    jac = chain.jacobian

    # forward values from the step program, step by step
    values: Values = {}
    for parameter in derivation.parameters:
        tensor = weights[parameter.torch_name]
        for block, value in zip(parameter.blocks, tensor.chunk(len(parameter.blocks)), strict=True):
            values[block.name] = value.reshape(-1, 1) if value.dim() == 1 else value
    for j in range(1, steps + 1):
        for symbol in derivation.step.inputs:
            values[value_key(symbol, j)] = x[j - 1].reshape(-1, 1)
    for state in jac.states:
        values[value_key(state.previous, 1)] = torch.zeros(state.new.shape[0], 1, dtype=x.dtype)
    forward_step = run_program(derivation.step.assignments, values)
    jacobian_step = run_program(jac.assignments, values)
    for j in range(1, steps + 1):
        forward_step(j)

    def state_jacobian(j: int) -> torch.Tensor:
        """J_j = ∂s_j/∂s_{j-1}, assembled from its blocks; the blocks' values are dropped."""
        jacobian_step(j)
        rows = []
        for i, row in enumerate(jac.blocks):
            blocks = []
            for jj, block in enumerate(row):
                if block is None:
                    blocks.append(torch.zeros(jac.sizes[i], jac.sizes[jj], dtype=x.dtype))
                else:
                    blocks.append(values[value_key(block, j)])
            rows.append(torch.cat(blocks, dim=1))
        for assignment in jac.assignments:
            del values[value_key(assignment.target, j)]
        return torch.cat(rows, dim=0)

    # the chain ∂s_T/∂s_t, t = T..0: P_T = I, P_{t-1} = P_t J_t (one n × n matrix at a time)
    n = sum(jac.sizes)
    jacobians, chains, singular, frobenius = [], [], [], []
    product = torch.eye(n, dtype=x.dtype)
    for j in range(steps, -1, -1):
        singular.append(torch.linalg.svdvals(product))
        frobenius.append(float(torch.linalg.matrix_norm(product)))
        if keep_matrices:
            chains.append(product)
        if j:
            jacobian = state_jacobian(j)
            product = product @ jacobian
            if keep_matrices:
                jacobians.insert(0, jacobian)

    # the generated backward's per-step terms of ∂L/∂W_hh
    generated = module_generated if module_generated is not None else derivation.load()
    zeros = [torch.zeros(1, size, dtype=x.dtype) for size in jac.sizes]
    arguments: dict[str, Any] = {"x": x.unsqueeze(1), "h0": zeros[0]}
    if len(zeros) > 1:
        arguments["c0"] = zeros[1]
    arguments |= {p.argument: weights[p.torch_name] for p in derivation.parameters}
    output, saved = generated.forward(**_accepted(generated.forward, arguments))
    cotangent = 1.0 if loss == "output" else 0.0
    arguments |= {
        "saved": saved,
        "grad_output": torch.full_like(output, cotangent),
        "grad_h_n": torch.full_like(zeros[0], 1.0 - cotangent),
        "per_step": True,
    }
    if len(zeros) > 1:
        arguments["grad_c_n"] = zeros[1]
    grads = generated.backward(**_accepted(generated.backward, arguments))
    (parameter,) = [p.torch_name for p in derivation.parameters if p.argument == "weight_hh"]
    per_step = grads["per_step"][parameter]

    # torch autograd: the final state, ∂s_T/∂s_0 and ∂L/∂W_hh
    initial = tuple(z[0] for z in zeros)
    ours_final = torch.cat([values[value_key(s.new, steps)].reshape(-1) for s in jac.states])
    with torch.enable_grad():
        out, final = _run_torch(module, spec, x, initial)
        total = out.sum() if loss == "output" else final[0].sum()
        (weight_hh_grad,) = torch.autograd.grad(total, dict(module.named_parameters())[parameter])

        # uᵀ ∂s_T/∂s_0 for a random u: one backward pass checks the whole chain
        leaves = tuple(s.clone().requires_grad_() for s in initial)
        reached = torch.cat(_run_torch(module, spec, x, leaves)[1])
        u = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        theirs_chain = torch.cat(torch.autograd.grad(reached @ u, leaves))
    notation = _notation(spec)
    errors = {
        notation["final"]: _relative_error(ours_final, torch.cat(final).detach()),
        f"uᵀ {notation['chain'].replace('ₜ', '₀')}": _relative_error(u @ product, theirs_chain),
        f"∂L/∂{parameter}": _relative_error(per_step.sum(0), weight_hh_grad),
    }

    rows = []
    for index, values_t in enumerate(singular):
        j = steps - index
        rows.append(
            Row(
                t=j,
                spectral=float(values_t[0]),
                frobenius=frobenius[index],
                singular_values=tuple(float(s) for s in values_t),
                contribution=float(torch.linalg.matrix_norm(per_step[j - 1])) if j else None,
            )
        )
    terms = [
        _show(g.generic, "text")
        for g in derivation.gradients
        if g.summed and g.torch_name == parameter
    ]
    return Flow(
        spec,
        loss,
        parameter,
        terms[0] if len(terms) == 1 else "[" + "; ".join(terms) + "]",
        tuple(rows),
        tuple(jacobians),
        tuple(chains),
        per_step,
        weight_hh_grad,
        errors,
    )


def _accepted(function, arguments: dict[str, Any]) -> dict[str, Any]:
    names = inspect.signature(function).parameters
    return {name: value for name, value in arguments.items() if name in names}


# --- verdicts ---------------------------------------------------------------------------------


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
            f"checked against torch.nn.{flow.spec.torch_class} autograd (float64): {what} "
            f"match (max relative error {worst:.1e})"
        )
    failed = [name for name, e in flow.errors.items() if e > TOLERANCE]
    return (
        f"MISMATCH against torch autograd in {', '.join(failed)} (max relative error {worst:.1e})"
    )


# --- output -----------------------------------------------------------------------------------


def _notation(spec: Spec) -> dict[str, str]:
    if spec.family == "lstm":
        return {"chain": "∂(h_T,c_T)/∂(hₜ,cₜ)", "state": "state (hₜ, cₜ)", "final": "(h_T, c_T)"}
    return {"chain": "∂h_T/∂hₜ", "state": "state hₜ", "final": "h_T"}


def _singular_text(values: tuple[float, ...]) -> str:
    shown = [f"{v:.2e}" for v in values]
    if len(shown) > 4:
        shown = shown[:2] + ["…", shown[-1]]
    return " ".join(shown)


def _table(flow: Flow, notation: dict[str, str], markdown: bool) -> list[str]:
    v = verdict(flow)
    chain = notation["chain"]
    header = ["t", f"‖{chain}‖₂", "‖·‖_F", "singular values", "‖term t‖_F", "note"]
    rows = []
    for r in flow.rows:
        term = "—" if r.contribution is None else f"{r.contribution:.3e}"
        values = " ".join(f"{s:.3e}" for s in r.singular_values) if markdown else None
        rows.append(
            [
                str(r.t),
                f"{r.spectral:.3e}",
                f"{r.frobenius:.3e}",
                values or _singular_text(r.singular_values),
                term,
                v.note(r.t),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    align = [">", ">", ">", "<", ">", "<"]

    def line(cells: list[str]) -> str:
        text = "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True))
        return "  " + text.rstrip()

    return [line(header)] + [line(row) for row in rows]


def _width() -> int:
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _wrap(line: str, width: int, indent: int = 0) -> str:
    return textwrap.fill(
        line,
        width=width,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _intro(flow: Flow, notation: dict[str, str]) -> list[str]:
    return [
        f"Gradient flow for {flow.spec.describe()}",
        f"The state Jacobian of one step ({notation['state']}), derived from the step program by "
        "forward mode; column convention, one sample: ∂aₜ/∂bₜ₋₁ has a row per entry of aₜ.",
    ]


def _numbers_intro(flow: Flow, notation: dict[str, str], source: str) -> str:
    return (
        f"Numbers: {source}, float64, initial state 0, {LOSSES[flow.loss]}. Per t: the chain "
        f"{notation['chain']} (spectral norm, Frobenius norm, singular values) and the Frobenius "
        f"norm of step t's term {flow.term} of ∂L/∂W_hh ({flow.parameter}), as the generated "
        "backward computes it (term t below)."
    )


def render_text(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    width = _width()
    notation = _notation(flow.spec)
    lines = [_wrap(line, width) for line in _intro(flow, notation)]
    for equation in equations:
        if latex:
            lines.append(rf"\[ {equation} \]")
        else:
            lines.append(_wrap("  " + equation, width, 6))
    lines.append("")
    lines.append(_wrap(_numbers_intro(flow, notation, source), width))
    lines += _table(flow, notation, markdown=False)
    lines.append(_wrap(summary(flow, notation), width))
    lines.append(_wrap(check_line(flow), width))
    return "\n".join(lines)


def render_markdown(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    notation = _notation(flow.spec)
    lines = [f"# Gradient flow: {flow.spec.describe()}", ""]
    lines += _intro(flow, notation)[1:]
    lines.append("")
    if latex:
        for equation in equations:
            lines += ["$$", equation, "$$", ""]
    else:
        lines += ["```text", *equations, "```", ""]
    lines += [_numbers_intro(flow, notation, source), ""]
    lines += _table(flow, notation, markdown=True)
    lines += ["", f"**{summary(flow, notation)}**", "", check_line(flow)]
    return "\n".join(lines)


def render_json(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    v = verdict(flow)
    data = {
        "spec": flow.spec.describe(),
        "options": flow.spec.cli_options(),
        "source": source,
        "loss": LOSSES[flow.loss],
        "state": ["h", "c"] if flow.spec.family == "lstm" else ["h"],
        "parameter": flow.parameter,
        "symbolic": {"format": "latex" if latex else "text", "equations": equations},
        "rows": [
            {
                "t": r.t,
                "spectral_norm": r.spectral,
                "frobenius_norm": r.frobenius,
                "singular_values": list(r.singular_values),
                "step_term_norm": r.contribution,
                "note": v.note(r.t),
            }
            for r in flow.rows
        ],
        "verdict": v.label,
        "summary": summary(flow, _notation(flow.spec)),
        "check": {"ok": flow.ok, "max_relative_error": flow.errors},
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


# --- plot -------------------------------------------------------------------------------------


def check_plot_path(path: Path, force: bool) -> None:
    """Fail before any work: a .png or .svg name, matplotlib installed, the file writable."""
    from .fileio import check_writable

    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise FlowError(f"--plot {path}: the plot must end in .png or .svg")
    _matplotlib()
    check_writable(path, force=force)


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise FlowError(MISSING_MATPLOTLIB) from None
    return matplotlib


def plot(flow: Flow, path: Path, force: bool = False) -> Path:
    """Draw the chain's norms and singular values and the step terms against t (log scale)."""
    from .fileio import GENERATED_MARKER, write_generated

    _matplotlib()
    # the Agg canvas, without pyplot: no global backend switch, no window
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    notation = _notation(flow.spec)
    rows = sorted(flow.rows, key=lambda r: r.t)
    steps = [r.t for r in rows]

    def positive(values):
        return [v if v is not None and v > 0 and math.isfinite(v) else math.nan for v in values]

    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    count = len(rows[0].singular_values)
    for i in range(count):
        top.plot(
            steps,
            positive([r.singular_values[i] for r in rows]),
            color="0.6",
            linewidth=0.8,
            marker=".",
            label="singular values" if i == 0 else None,
        )
    top.plot(steps, positive([r.spectral for r in rows]), "o-", label="spectral norm ‖·‖₂")
    top.plot(steps, positive([r.frobenius for r in rows]), "s--", label="Frobenius norm ‖·‖_F")
    top.set_ylabel(notation["chain"])
    top.set_title(f"Gradient flow: {flow.spec.describe()}", fontsize=10)
    terms = positive([r.contribution for r in rows])
    bottom.plot(steps, terms, "o-", color="C3", label=f"‖step t term of ∂L/∂{flow.parameter}‖_F")
    bottom.set_ylabel("step t's term of ∂L/∂W_hh")
    bottom.set_xlabel("t")
    for axes, series in ((top, [r.spectral for r in rows]), (bottom, terms)):
        finite = [s for s in series if s is not None and math.isfinite(s) and s > 0]
        if finite:
            axes.set_yscale("log")
        else:
            axes.text(0.5, 0.5, "all zero", transform=axes.transAxes, ha="center")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fmt = path.suffix.lower().lstrip(".")
    meta_key = "Software" if fmt == "png" else "Description"
    metadata = {meta_key: f"{GENERATED_MARKER} flow: {flow.spec.describe()}"}
    if fmt == "svg":
        metadata["Date"] = None
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, metadata=metadata)
    return write_generated(path, buffer.getvalue(), force=force)


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("flow")
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="torch's init under torch.manual_seed(N), and the random input (default 0)",
    )
    group.add_argument(
        "--weights", metavar="FILE", help="a state_dict saved with torch.save (instead of --seed)"
    )
    group.add_argument(
        "--input", metavar="FILE", help="a (T, I) tensor saved with torch.save (default random)"
    )
    group.add_argument(
        "--loss",
        choices=tuple(LOSSES),
        default="h_n",
        help="L = h_n.sum() (default) or output.sum()",
    )
    group.add_argument("--plot", metavar="FILE", help="draw the numbers against t (.png or .svg)")
    group.add_argument(
        "--force", action="store_true", help="overwrite a plot file that symbptt did not write"
    )
    group.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format"
    )
    group.add_argument(
        "--latex", action="store_true", help="print the symbolic chain in LaTeX instead of text"
    )


def _load(path: str, what: str):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FlowError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise FlowError(f"{what} {path}: is a folder, not a file") from None
    except Exception as exc:  # torch.load raises many kinds on a file it did not write
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FlowError(f"{what} {path}: not a file torch.save wrote ({first})") from None


def load_input(path: str):
    import torch

    x = _load(path, "--input")
    if not isinstance(x, torch.Tensor):
        raise FlowError(f"--input {path}: expected a (T, I) tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise FlowError(f"--input {path}: expected a (T, I) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise FlowError(f"--input {path}: expected finite floating-point values")
    return x.to(torch.float64)


def load_weights(path: str) -> dict:
    import torch

    data = _load(path, "--weights")
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise FlowError(
            f"--weights {path}: expected a state_dict (torch.save(module.state_dict(), FILE)), "
            f"got {type(data).__name__}"
        )
    return data


def run(args: argparse.Namespace) -> int:
    import torch

    from .cli import _derivation

    plot_path = Path(args.plot) if args.plot else None
    if plot_path is not None:
        check_plot_path(plot_path, args.force)
    x = load_input(args.input) if args.input else None
    if x is not None and args.steps is None:
        args.steps = x.shape[0]
    derivation = _derivation(args)
    spec = derivation.spec
    check_supported(spec)
    if x is not None and tuple(x.shape) != (spec.steps, spec.input_size):
        raise FlowError(
            f"--input {args.input}: shape {tuple(x.shape)}, expected (T, I) = "
            f"({spec.steps}, {spec.input_size})"
        )
    state_dict = load_weights(args.weights) if args.weights else None
    module = reference_module(spec, args.seed, state_dict)
    if x is None:
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.randn(spec.steps, spec.input_size, generator=generator, dtype=torch.float64)
    weights = f"weights from {args.weights}" if args.weights else f"torch's init, seed {args.seed}"
    data = f"input from {args.input}" if args.input else f"random input (seed {args.seed})"
    source = f"{weights}, {data}"
    flow = gradient_flow(derivation, module, x, loss=args.loss)
    style = "latex" if args.latex else "text"
    equations = symbolic_lines(derivation, style)
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}
    print(render[args.format](flow, equations, args.latex, source))
    if plot_path is not None:
        written = plot(flow, plot_path, force=args.force)
        if args.format != "json":
            print(f"wrote {written}")
    return 0 if flow.ok else 1
