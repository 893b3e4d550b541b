"""Prints column-convention matrix expressions as batched, row-convention PyTorch code.

Math (one sample, columns) and code (a batch of rows) relate by transposition::

    W v        ->  v @ W.T           Wᵀ v     ->  v @ W
    u ⊙ v      ->  u * v             f(v)     ->  torch.f(v)
    u vᵀ       ->  u.T @ v           (the sum over the batch: a parameter's gradient;
                                  (v.T @ u).T over batch and steps, which BLAS runs faster)

Vectors are ``(B, n)`` tensors (``batch_dims=1``) or, for a whole sequence, ``(T, B, n)``
(``batch_dims=2``); parameters print as torch's tensors, biases ``(n,)`` broadcast.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose
from sympy.printing.pytorch import TorchPrinter

from ..core.matexpr import Elementwise
from ..errors import CodegenError


class BatchedTorchPrinter(TorchPrinter):
    """``TorchPrinter`` for the matrix-level nodes of a derivation, in row convention.

    Args:
        name: maps a variable to the code that holds it (``h[3]`` -> ``h3``).
        is_parameter: whether a symbol is a parameter (not batched).
        batch_dims: 1 for per-step tensors ``(B, n)``, 2 for stacked ``(T, B, n)``.
        per_step: with stacked tensors, reduce over the batch only, keeping one result per
            step (``(T, n, m)``), instead of over batch and steps.
        stacked: for each gate block of a stacked parameter, ``(argument, k, K)``: when a sum
            holds ``Wₖᵀ uₖ`` for every block k of one parameter, it prints as one matmul
            ``torch.cat((u₀, ..., u_K₋₁), -1) @ argument`` (the stacked weight).
        known: code for whole subexpressions computed beforehand (fused projections).
        groups: operands ``(u₀, ..., u_K₋₁)`` held in one buffer, and the variable that is the
            whole buffer: their fused matmul prints as ``buffer @ argument``, no ``torch.cat``.
        fused_multiply_add: print ``x + u ⊙ v`` as ``torch.addcmul(x, u, v)``, ``(1 − w) ⊙ a
            + w ⊙ b`` (the GRU's new state) as ``torch.lerp(a, b, w)``, and the activations'
            derivatives by their fused form where they have one (the loop form: one tensor
            operation, one kernel on a GPU, instead of two or three).
        known_sums: code for sets of terms of a sum computed beforehand: a sum holding every
            term of a set prints that code in their place (``W_ii x + b_ii + b_hi`` ->
            ``x_weight_ih[t - 1, :, 0:128]``, the input projection with its biases folded in).
    """

    def __init__(
        self,
        name: Callable[[MatrixSymbol], str],
        is_parameter: Callable[[MatrixSymbol], bool],
        batch_dims: int = 1,
        per_step: bool = False,
        stacked: dict[MatrixSymbol, tuple[str, int, int]] | None = None,
        known: dict[sp.Basic, str] | None = None,
        groups: dict[tuple[sp.Basic, ...], MatrixSymbol] | None = None,
        known_sums: dict[frozenset[sp.Basic], str] | None = None,
        fused_multiply_add: bool = False,
    ) -> None:
        super().__init__()
        self._name = name
        self._is_parameter = is_parameter
        self._batch_dims = batch_dims
        self._per_step = per_step
        self._stacked = stacked or {}
        self._known = known or {}
        self._groups = groups or {}
        self._fma = fused_multiply_add
        self._known_sums = sorted((known_sums or {}).items(), key=lambda item: -len(item[0]))

    def _print(self, expr, **kwargs) -> str:
        if expr in self._known:
            return self._known[expr]
        return super()._print(expr, **kwargs)

    def _print_MatrixSymbol(self, expr: MatrixSymbol) -> str:
        return self._name(expr)

    def _operand(self, expr: sp.Basic) -> str:
        text = self._print(expr)
        grouped = isinstance(expr, (MatAdd, HadamardProduct)) or _coefficient(expr) != 1
        return f"({text})" if grouped else text

    def _fused(self, args: list[sp.Basic]) -> tuple[list[str], list[sp.Basic]]:
        """Terms ``Wₖᵀ uₖ`` over all blocks of a stacked weight, printed as one matmul."""
        groups: dict[str, dict[int, sp.Basic]] = {}
        sizes: dict[str, int] = {}
        for arg in args:
            if isinstance(arg, MatMul) and len(arg.args) == 2:
                factor, operand = arg.args
                if isinstance(factor, Transpose) and factor.arg in self._stacked:
                    argument, k, count = self._stacked[factor.arg]
                    groups.setdefault(argument, {})[k] = arg
                    sizes[argument] = count
        fused, used = [], set()
        for argument, terms in groups.items():
            if len(terms) != sizes[argument] or sizes[argument] < 2:
                continue
            operands = tuple(terms[k].args[1] for k in range(sizes[argument]))
            if operands in self._groups:
                fused.append(f"{self._print(self._groups[operands])} @ {argument}")
            else:
                printed = ", ".join(self._print(operand) for operand in operands)
                fused.append(f"torch.cat(({printed}), -1) @ {argument}")
            used.update(terms.values())
        return fused, [arg for arg in args if arg not in used]

    def _computed(self, args: list[sp.Basic]) -> tuple[list[str], list[sp.Basic]]:
        """Sets of terms computed beforehand (``known_sums``), largest first."""
        codes, rest = [], set(args)
        for terms, code in self._known_sums:
            if terms <= rest:
                codes.append(code)
                rest -= terms
        return codes, [arg for arg in args if arg in rest]

    def _split(self, expr: MatAdd) -> tuple[list[str], list[sp.Basic]]:
        """A sum's known and fused groups, printed, and its other terms."""
        computed, args = self._computed(list(expr.args))
        fused, rest = self._fused(args)
        return computed + fused, rest

    def terms(self, expr: MatAdd) -> list[str]:
        """The printed terms of a sum, after the known and fused groups are put in."""
        printed, rest = self._split(expr)
        return printed + [self._print(arg) for arg in rest]

    def multiply_add(self, expr: MatAdd, out: str | None = None) -> str | None:
        """``x + u ⊙ v`` (or ``x − u ⊙ v``) as ``torch.addcmul(x, u, v)``, or a blend as
        ``torch.lerp`` (writing into ``out`` when given); None when not asked for, or when no
        term is such a product."""
        if not self._fma:
            return None
        return self._lerp(expr, out) or self._multiply_add(*self._split(expr), out)

    def _lerp(self, expr: MatAdd, out: str | None) -> str | None:
        """``(1 − w) ⊙ a + w ⊙ b`` as ``torch.lerp(a, b, w)`` (``a + w ⊙ (b − a)``)."""
        if len(expr.args) != 2 or not all(
            isinstance(arg, HadamardProduct) and len(arg.args) == 2 for arg in expr.args
        ):
            return None
        for blend, other in (expr.args, expr.args[::-1]):
            for k, factor in enumerate(blend.args):
                weight = _one_minus(factor)
                if weight is None or weight not in other.args:
                    continue
                start = blend.args[1 - k]
                end = other.args[1 - other.args.index(weight)]
                options = f", out={out}" if out else ""
                return (
                    f"torch.lerp({self._print(start)}, {self._print(end)}, "
                    f"{self._print(weight)}{options})"
                )
        return None

    def _multiply_add(
        self, printed: list[str], args: list[sp.Basic], out: str | None
    ) -> str | None:
        for term in reversed(args):
            subtracted = _coefficient(term) == -1
            product = _matrix_part(term) if subtracted else term
            if not isinstance(product, HadamardProduct):
                continue
            rest = printed + [self._print(a) for a in args if a is not term]
            if len(rest) == 1 and rest[0].lstrip("-").isdigit():
                return None  # addcmul adds to a tensor, not to a number
            *first, last = product.args
            left = first[0] if len(first) == 1 else HadamardProduct(*first)
            options = (", value=-1" if subtracted else "") + (f", out={out}" if out else "")
            return (
                f"torch.addcmul({_sum(rest)}, {self._operand(left)}, "
                f"{self._operand(last)}{options})"
            )
        return None

    def _print_MatAdd(self, expr: MatAdd) -> str:
        fused = self._lerp(expr, None) if self._fma else None
        if fused:
            return fused
        printed, rest = self._split(expr)
        fused = self._multiply_add(printed, rest, None) if self._fma else None
        return fused or _sum(printed + [self._print(arg) for arg in rest])

    def _print_OneMatrix(self, expr: OneMatrix) -> str:
        return "1"

    def _print_HadamardProduct(self, expr: HadamardProduct) -> str:
        return " * ".join(self._operand(arg) for arg in expr.args)

    def _print_Elementwise(self, expr: Elementwise) -> str:
        function = expr.function
        pattern = function.torch_fused if self._fma and function.torch_fused else function.torch
        return pattern.format(self._operand(expr.arg))

    def _weight(self, factor: sp.Basic) -> str:
        """The right-hand operand that applies ``factor`` to a row vector."""
        if isinstance(factor, Transpose) and self._parameter(factor.arg):
            return self._print(factor.arg)
        if self._parameter(factor):
            return f"{self._print(factor)}.T"
        raise CodegenError(f"cannot apply {factor} to a batched vector")

    def _parameter(self, expr: sp.Basic) -> bool:
        return isinstance(expr, MatrixSymbol) and self._is_parameter(expr)

    def _flat(self, expr: sp.Basic) -> str:
        text = self._operand(expr)
        return text if self._batch_dims == 1 else f"{text}.flatten(0, 1)"

    def _print_MatMul(self, expr: MatMul) -> str:
        coefficient = _coefficient(expr)
        if coefficient != 1:
            rest_code = self._operand(_matrix_part(expr))
            if coefficient == -1:
                return f"-{rest_code}"
            return f"{self._print(coefficient)} * {rest_code}"
        *left, last = expr.args
        if isinstance(last, Transpose) and len(left) == 1 and not self._parameter(last.arg):
            # u vᵀ summed over the batch (and the steps when stacked)
            if self._per_step:
                return f"{self._operand(left[0])}.transpose(1, 2) @ {self._operand(last.arg)}"
            if self._batch_dims == 2:
                # (vᵀ u)ᵀ: the same sum, and BLAS runs it faster than uᵀ v for long T·B
                return f"({self._flat(last.arg)}.T @ {self._flat(left[0])}).T"
            return f"{self._flat(left[0])}.T @ {self._flat(last.arg)}"
        code = self._operand(last)
        for factor in reversed(left):
            code = f"{code} @ {self._weight(factor)}"
        return code

    def batch_sum(self, expr: sp.Basic) -> str:
        """``expr`` (a batched vector) summed over the batch (and steps): a bias gradient."""
        if self._batch_dims == 1:
            dims = "0"
        else:
            dims = "1" if self._per_step else "(0, 1)"
        return f"{self._operand(expr)}.sum({dims})"


def _sum(terms: list[str]) -> str:
    """Printed terms joined into one sum, ``a - b`` where a term is negative."""
    code = ""
    for text in terms:
        if code and text.startswith("-"):
            code += f" - {text[1:]}"
        else:
            code += f" + {text}" if code else text
    return code


def _one_minus(expr: sp.Basic) -> sp.Basic | None:
    """``w`` where ``expr`` is ``1 − w`` (a sum of a matrix of ones and ``−w``), else None."""
    if not isinstance(expr, MatAdd) or len(expr.args) != 2:
        return None
    ones = [arg for arg in expr.args if isinstance(arg, OneMatrix)]
    negated = [arg for arg in expr.args if _coefficient(arg) == -1]
    if len(ones) != 1 or len(negated) != 1:
        return None
    return _matrix_part(negated[0])


def _matrix_part(product: MatMul) -> sp.Basic:
    """A product without its number: ``−z`` -> ``z``, ``−2 W v`` -> ``W v``."""
    matrices = [a for a in product.args if getattr(a, "is_Matrix", False)]
    return matrices[0] if len(matrices) == 1 else MatMul(*matrices)


def _coefficient(expr: sp.Basic) -> sp.Expr:
    """The number multiplying a matrix product (``-1`` in ``-z``), else 1."""
    if not isinstance(expr, MatMul):
        return sp.S.One
    return sp.Mul(*[a for a in expr.args if not getattr(a, "is_Matrix", False)])
