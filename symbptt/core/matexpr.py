"""Matrix-level expression nodes SymPy lacks: element-wise functions and their derivatives.

SymPy holds every other node (``MatrixSymbol``, ``MatMul``, ``MatAdd``, ``HadamardProduct``,
``Transpose``); :class:`Elementwise` adds ``f(X)`` applied entry by entry, with ``_entry`` so that
``as_explicit()`` expands it to scalars (the scalar view). Derivatives of the activations are
element-wise functions of the activation's OUTPUT ``y``, as torch computes them::

    tanh'     = 1 - y ⊙ y           exp'        = y
    sigmoid'  = y ⊙ (1 - y)         log'        = exp(−y)       (= 1/x)
    relu'     = [y > 0]             softplus'   = 1 − exp(−y)   (= σ(x))
                                    reciprocal' = −y ⊙ y        (= −1/x²)

(generated code writes sigmoid' as ``y - y * y``, and the loop form as one
``torch.addcmul(y, y, y, value=-1)``: the same values, fewer tensor operations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..errors import DerivationError


@dataclass(frozen=True)
class ElementwiseFunction:
    """How one element-wise function evaluates and prints; ``{0}`` stands for the argument."""

    scalar: sp.Lambda
    latex: str
    text: str
    torch: str
    derivative: str | None = None
    """Name of the function of the output that gives this function's derivative."""
    torch_out: str | None = None
    """The torch call writing into an existing tensor ``{1}`` (``out=``), where torch has one."""
    torch_fused: str | None = None
    """One torch call for what ``torch`` writes as two operations, where there is one."""


_y = sp.Symbol("y")

FUNCTIONS: dict[str, ElementwiseFunction] = {
    "tanh": ElementwiseFunction(
        sp.Lambda(_y, sp.tanh(_y)),
        r"\tanh\left({0}\right)",
        "tanh({0})",
        "torch.tanh({0})",
        derivative="dtanh",
        torch_out="torch.tanh({0}, out={1})",
    ),
    "relu": ElementwiseFunction(
        sp.Lambda(_y, sp.Max(0, _y)),
        r"\operatorname{{relu}}\left({0}\right)",
        "relu({0})",
        "torch.relu({0})",
        derivative="drelu",
    ),
    "sigmoid": ElementwiseFunction(
        sp.Lambda(_y, 1 / (1 + sp.exp(-_y))),
        r"\sigma\left({0}\right)",
        "σ({0})",
        "torch.sigmoid({0})",
        derivative="dsigmoid",
        torch_out="torch.sigmoid({0}, out={1})",
    ),
    "exp": ElementwiseFunction(
        sp.Lambda(_y, sp.exp(_y)),
        r"\exp\left({0}\right)",
        "exp({0})",
        "torch.exp({0})",
        derivative="dexp",
        torch_out="torch.exp({0}, out={1})",
    ),
    "log": ElementwiseFunction(
        sp.Lambda(_y, sp.log(_y)),
        r"\log\left({0}\right)",
        "log({0})",
        "torch.log({0})",
        derivative="dlog",
        torch_out="torch.log({0}, out={1})",
    ),
    "softplus": ElementwiseFunction(
        sp.Lambda(_y, sp.log(1 + sp.exp(_y))),
        r"\operatorname{{softplus}}\left({0}\right)",
        "softplus({0})",
        "torch.nn.functional.softplus({0})",
        derivative="dsoftplus",
    ),
    "reciprocal": ElementwiseFunction(
        sp.Lambda(_y, 1 / _y),
        r"\left({0}\right)^{{\circ -1}}",
        "({0})⁻¹",
        "torch.reciprocal({0})",
        derivative="dreciprocal",
        torch_out="torch.reciprocal({0}, out={1})",
    ),
    "dexp": ElementwiseFunction(sp.Lambda(_y, _y), "{0}", "{0}", "{0}"),
    "dlog": ElementwiseFunction(
        sp.Lambda(_y, sp.exp(-_y)), r"e^{{-{0}}}", "exp(−{0})", "torch.exp(-{0})"
    ),
    "dsoftplus": ElementwiseFunction(
        sp.Lambda(_y, 1 - sp.exp(-_y)),
        r"\left(1 - e^{{-{0}}}\right)",
        "(1 − exp(−{0}))",
        "(-torch.expm1(-{0}))",
    ),
    "dreciprocal": ElementwiseFunction(
        sp.Lambda(_y, -(_y**2)),
        r"\left(-{0} \odot {0}\right)",
        "(−{0} ⊙ {0})",
        "(-{0} * {0})",
    ),
    "dtanh": ElementwiseFunction(
        sp.Lambda(_y, 1 - _y**2),
        r"\left(1 - {0} \odot {0}\right)",
        "(1 − {0} ⊙ {0})",
        "(1 - {0} * {0})",
    ),
    "dsigmoid": ElementwiseFunction(
        sp.Lambda(_y, _y * (1 - _y)),
        r"{0} \odot \left(1 - {0}\right)",
        "{0} ⊙ (1 − {0})",
        "({0} - {0} * {0})",
        torch_fused="torch.addcmul({0}, {0}, {0}, value=-1)",
    ),
    "drelu": ElementwiseFunction(
        sp.Lambda(_y, sp.Heaviside(_y, 0)),
        r"\mathbf{{1}}\left[{0} > 0\right]",
        "[{0} > 0]",
        "({0} > 0)",
    ),
}


class Elementwise(MatrixExpr):
    """``f(X)``: the function named ``name`` (a key of :data:`FUNCTIONS`) applied entry-wise."""

    is_commutative = False

    def __new__(cls, name: str | sp.Symbol, arg: MatrixExpr) -> Elementwise:
        name = str(name)
        if name not in FUNCTIONS:
            raise KeyError(name)
        return super().__new__(cls, sp.Symbol(name), arg)

    @property
    def name(self) -> str:
        return self.args[0].name

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def function(self) -> ElementwiseFunction:
        return FUNCTIONS[self.name]

    @property
    def shape(self) -> tuple:
        return self.arg.shape

    def _entry(self, i, j, **kwargs):
        return self.function.scalar(self.arg._entry(i, j, **kwargs))

    def _eval_transpose(self) -> Elementwise:
        return Elementwise(self.name, self.arg.T)

    def doit(self, **hints) -> Elementwise:
        arg = self.arg.doit(**hints) if hints.get("deep", True) else self.arg
        return Elementwise(self.name, arg)


def derivative_of_output(name: str, output: MatrixExpr) -> Elementwise:
    """``f'`` as a function of ``y = f(x)``: the factor the backward pass multiplies by."""
    derivative = FUNCTIONS[name].derivative
    if derivative is None:
        raise KeyError(f"no derivative rule for {name!r}")
    return Elementwise(derivative, output)


R = TypeVar("R")


_REQUIRED = object()


def rule_for(rules: Mapping[type, R], expr: sp.Basic, what: str, default=_REQUIRED) -> R:
    """The entry of ``rules`` for ``expr``'s class, or for its nearest base class (as SymPy's
    printers find ``_print_<Class>`` along the class's MRO).

    Each expression rule of symbptt is such a table keyed by node type (``adjoint.VJP``,
    ``flow_jacobian.TANGENT``, ``scalar.ELEMENT_LEVEL``); adding a node type is adding a row.

    Raises:
        DerivationError: ``no <what> rule for <Class>: <expr>``, unless a ``default`` is given.
    """
    for cls in type(expr).__mro__:
        if cls in rules:
            return rules[cls]
    if default is not _REQUIRED:
        return default
    raise DerivationError(f"no {what} rule for {type(expr).__name__}: {expr}")
