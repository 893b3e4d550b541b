"""The reference a user-defined cell is verified against: its equations evaluated step by step
on torch tensors, straight from the parsed tree, under autograd.

Nothing here shares code with the derivation or the generated module: the tree of
:mod:`symbptt.cell_expr` is walked for every step, in row convention on a batch
(``W @ v`` is ``v @ W.T``), and torch's autograd gives the gradients. Layers, directions and
dropout between layers compose as in ``torch.nn.RNN``::

    layer k reads layer k-1's output (both directions concatenated, dropout applied);
    the reverse direction runs over the reversed sequence; h_n holds (layer, direction) rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from .cell_definition import Cell
from .cell_expr import Binary, Call, Node, Number, Ref, Unary

FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "exp": torch.exp,
    "log": torch.log,
    "softplus": torch.nn.functional.softplus,
}

OPERATORS: dict[str, Callable] = {
    "@": lambda w, v: v @ w.T,
    "*": lambda a, b: a * b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "/": lambda a, b: a / b,
}
"""Each operator in row convention: ``W @ v`` on a batch of rows is ``v @ W.T``."""


def _evaluate(node: Node, values: Mapping, previous: Mapping):
    """The value of ``node`` (a tensor, or a float for a number)."""
    return EVALUATE[type(node)](
        node, lambda child: _evaluate(child, values, previous), values, previous
    )


EVALUATE: dict[type, Callable] = {
    Number: lambda node, ev, values, previous: float(node.value),
    Ref: lambda node, ev, values, previous: (previous if node.previous else values)[node.name],
    Unary: lambda node, ev, values, previous: -ev(node.operand),
    Binary: lambda node, ev, values, previous: OPERATORS[node.op](ev(node.left), ev(node.right)),
    Call: lambda node, ev, values, previous: FUNCTIONS[node.function](
        torch.as_tensor(ev(node.argument))
    ),
}
"""How each node type of :mod:`symbptt.cell_expr` evaluates, given ``ev`` for its operands."""


def step(
    cell: Cell, x: torch.Tensor, states: Sequence[torch.Tensor], parameters: Mapping
) -> tuple[torch.Tensor, ...]:
    """One step: x (B, I), states (B, H) each in the file's order, parameters by the file's
    names -> the new states."""
    previous = dict(zip(cell.state_names, states, strict=True))
    values = {**parameters, cell.inputs[0][0]: x}
    for equation in cell.equations:
        values[equation.target] = _evaluate(equation.value, values, previous)
    return tuple(values[name] for name in cell.state_names)


def layer(
    cell: Cell, x: torch.Tensor, states: Sequence[torch.Tensor], parameters: Mapping
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x (T, B, I) -> (output (T, B, H), final states), one direction."""
    outputs = []
    for x_t in x.unbind(0):
        states = step(cell, x_t, states, parameters)
        outputs.append(states[0])
    return torch.stack(outputs), tuple(states)


def network(
    cell: Cell,
    x: torch.Tensor,
    hx: Sequence[torch.Tensor],
    parameters: Mapping[str, torch.Tensor],
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout_masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The layer stack as torch.nn.RNN composes it: x (T, B, I); hx one (L·D, B, H) tensor
    per state; parameters by the module's names (``W_f_l0``, ``W_f_l1_reverse``);
    dropout_masks (L - 1, T, B, D·H) multiply each layer's output but the last.
    Returns output (T, B, D·H) and each state's final values (L·D, B, H)."""
    directions = 2 if bidirectional else 1
    finals: list[list[torch.Tensor]] = [[] for _ in cell.states]
    for k in range(num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{k}" + ("_reverse" if direction else "")
            own = {name: parameters[name + suffix] for name in cell.parameter_names}
            row = k * directions + direction
            states = [state[row] for state in hx]
            sequence = x.flip(0) if direction else x
            output, final = layer(cell, sequence, states, own)
            outputs.append(output.flip(0) if direction else output)
            for kept, value in zip(finals, final, strict=True):
                kept.append(value)
        x = torch.cat(outputs, -1)
        if dropout_masks is not None and k < num_layers - 1:
            x = x * dropout_masks[k]
    return x, tuple(torch.stack(values) for values in finals)
