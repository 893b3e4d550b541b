"""Gradient flow in numbers: the chain ∂s_T/∂s_t, its norms and each step's term of ∂L/∂W_hh.

For one layer's weights and one input sequence (float64, unbatched), :func:`gradient_flow`
evaluates the step program and its state Jacobian step by step (:func:`compile_expression`),
multiplies the chain from t = T down, takes each step's term of ∂L/∂W_hh from the generated
backward, and checks all of it against torch autograd (:class:`Flow` holds the results).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy import HadamardProduct, Identity, MatAdd, MatMul, MatrixSymbol, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.diagonal import DiagMatrix

from ..core.matexpr import Elementwise
from ..core.program import Assignment, split_name, t
from ..errors import DerivationError, SymbpttError
from ..limits import Cost, numeric_cost, progress, require
from ..verification.agreement import TOLERANCE, relative_error
from ..verification.numeric_inputs import loss_name
from .equations import chain_notation, show
from .jacobian import symbolic_chain

if TYPE_CHECKING:
    import torch

    from ..core.derivation import Derivation
    from ..core.spec import Spec


class FlowError(SymbpttError):
    """Gradient flow could not be computed or drawn (bad weights, input, plot file)."""


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
        return all(error <= TOLERANCE["float64"] for error in self.errors.values())


LOSSES = {"h_n": "L = Σ h_n (h_n.sum())", "output": "L = Σₜ Σ outputₜ (output.sum())"}


PER_STEP = (1e-3, 2.5e-9)
"""Seconds per step of the chain, and per step and cubed state size (its singular values)."""


def flow_cost(spec: Spec) -> Cost:
    """The estimated cost of :func:`gradient_flow` for ``spec`` (one sequence)."""
    numbers = numeric_cost(spec, f"the gradient flow of {spec.describe()}", per_step_terms=True)
    states = sum(size for _, size in spec.states)
    chain = spec.steps * (PER_STEP[0] + PER_STEP[1] * states**3)
    return Cost(numbers.what, numbers.seconds + chain, numbers.bytes)


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


def _run_torch(module, spec: Spec, x: torch.Tensor, states: tuple[torch.Tensor, ...]):
    """torch's module on unbatched ``x`` (T, I) from ``states``; return (output, final states)."""
    several = len(spec.states) > 1
    if spec.is_cell:
        result = module(x[0], states if several else states[0])
        final = result if several else (result,)
        return final[0].unsqueeze(0), tuple(final)
    hx = tuple(s.unsqueeze(0) for s in states)
    output, final = module(x, hx if several else hx[0])
    final = final if several else (final,)
    return output, tuple(s.squeeze(0) for s in final)


def recurrent_parameter(derivation) -> str:
    """torch's name of the weight the state is multiplied by each step: ``weight_hh`` of
    torch's cells; a user-defined cell's first H × H matrix (``U_f``), else its first
    parameter."""
    parameters = derivation.parameters
    for p in parameters:
        if p.argument == "weight_hh" or p.letters == ("H", "H"):
            return p.torch_name
    return parameters[0].torch_name


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
    loss = loss_name(loss, FlowError)
    require(flow_cost(spec))
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
    for j in progress(range(1, steps + 1), steps, "flow forward, step"):
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
    for j in progress(range(steps, -1, -1), steps + 1, "flow chain, step"):
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
    parameter = recurrent_parameter(derivation)
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
    notation = chain_notation(spec)
    errors = {
        notation["final"]: relative_error(ours_final, torch.cat(final).detach()),
        f"uᵀ {notation['chain'].replace('ₜ', '₀')}": relative_error(u @ product, theirs_chain),
        f"∂L/∂{parameter}": relative_error(per_step.sum(0), weight_hh_grad),
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
        show(g.generic, "text")
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
