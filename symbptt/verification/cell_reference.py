"""The reference a user-defined cell is verified against: its equations evaluated step by step
on torch tensors, straight from the parsed tree, under autograd.

Nothing here shares code with the derivation or the generated module: the tree of
:mod:`symbptt.core.cell_expr` is walked for every step, in row convention on a batch
(``W @ v`` is ``v @ W.T``), and torch's autograd gives the gradients. Layers, directions and
dropout between layers compose as in ``torch.nn.RNN``::

    layer k reads layer k-1's output (both directions concatenated, dropout applied);
    the reverse direction runs over the reversed sequence; h_n holds (layer, direction) rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ..core.cell_definition import Cell
from ..core.cell_expr import Binary, Call, Node, Number, Ref, Unary

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


class _Step:
    """One step's evaluation: ``step(node)`` is the value of ``node`` (a tensor, or a float for
    a number), names read from ``values`` and ``s[t-1]`` from ``previous``."""

    def __init__(self, values: Mapping, previous: Mapping) -> None:
        self.values = values
        self.previous = previous

    def __call__(self, node: Node):
        return EVALUATE[type(node)](node, self)

    def ref(self, node: Ref):
        return (self.previous if node.previous else self.values)[node.name]


EVALUATE: dict[type, Callable] = {
    Number: lambda node, step: float(node.value),
    Ref: lambda node, step: step.ref(node),
    Unary: lambda node, step: -step(node.operand),
    Binary: lambda node, step: OPERATORS[node.op](step(node.left), step(node.right)),
    Call: lambda node, step: FUNCTIONS[node.function](torch.as_tensor(step(node.argument))),
}
"""How each node type of :mod:`symbptt.core.cell_expr` evaluates, given the step for its
operands."""


def step(
    cell: Cell, x: torch.Tensor, states: Sequence[torch.Tensor], parameters: Mapping
) -> tuple[torch.Tensor, ...]:
    """One step: x (B, I), states (B, H) each in the file's order, parameters by the file's
    names -> the new states."""
    values = {**parameters, cell.inputs[0][0]: x}
    evaluate = _Step(values, dict(zip(cell.state_names, states, strict=True)))
    for equation in cell.equations:
        values[equation.target] = evaluate(equation.value)
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


def parameter_shapes(spec) -> dict[str, tuple[int, ...]]:
    """The parameters of a user-defined cell's layer by torch's naming (``W_f_l0``,
    ``W_f_l1_reverse``) and their shapes, the file's letters resolved: I is the input size
    of layer 0 and D·H above it."""
    directions = 2 if spec.bidirectional else 1
    shapes = {}
    for k in range(spec.num_layers):
        sizes = {"I": spec.input_size if k == 0 else directions * spec.hidden_size}
        sizes["H"] = spec.hidden_size
        for direction in range(directions):
            suffix = f"_l{k}" + ("_reverse" if direction else "")
            for name, shape in spec.custom.parameters:
                shapes[name + suffix] = tuple(sizes[letter] for letter in shape)
    return shapes


class ReferenceLayer(torch.nn.Module):
    """A user-defined cell's layer as torch would run it had it the cell: :func:`network`
    under autograd, with the generated module's parameter names and call conventions, so
    that :func:`symbptt.verification.verify.compare` treats it as it treats ``torch.nn.LSTM``.

    forward(input, hx=None) -> (output, h_n) for one state, (output, (h_n, c_n, ...)) for
    several: input (L, N, I), (N, L, I) with batch_first, (L, I) unbatched, or a
    PackedSequence (each sequence then runs alone over its own length).
    """

    def __init__(self, spec, device=None, dtype=None):
        super().__init__()
        self.cell: Cell = spec.custom
        self.hidden_size = spec.hidden_size
        self.num_layers = spec.num_layers
        self.bidirectional = spec.bidirectional
        self.batch_first = False
        self.dropout = 0.0
        for name, shape in parameter_shapes(spec).items():
            tensor = torch.empty(shape, device=device, dtype=dtype)
            self.register_parameter(name, torch.nn.Parameter(tensor))
        bound = spec.hidden_size**-0.5
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)

    def _states(self, hx, batch: int, like: torch.Tensor) -> list[torch.Tensor]:
        rows = self.num_layers * (2 if self.bidirectional else 1)
        if hx is None:
            return [like.new_zeros((rows, batch, self.hidden_size)) for _ in self.cell.states]
        return list(hx) if isinstance(hx, tuple) else [hx]

    def _run(self, x: torch.Tensor, states: list[torch.Tensor]):
        params = dict(self.named_parameters())
        return network(self.cell, x, states, params, self.num_layers, self.bidirectional)

    def forward(self, input, hx=None):
        if isinstance(input, torch.nn.utils.rnn.PackedSequence):
            return self._packed(input, hx)
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        states = self._states(hx, x.shape[1], x)
        if not batched and hx is not None:
            states = [state.unsqueeze(1) for state in states]
        output, final = self._run(x, states)
        if not batched:
            output, final = output.squeeze(1), tuple(state.squeeze(1) for state in final)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, final if len(final) > 1 else final[0]

    def _packed(self, sequence, hx):
        padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(sequence)
        states = self._states(hx, padded.shape[1], padded)
        outputs, finals = [], [[] for _ in states]
        for b, length in enumerate(lengths.tolist()):
            own = [state[:, b : b + 1] for state in states]
            output, final = self._run(padded[:length, b : b + 1], own)
            outputs.append(output[:, 0])
            for kept, value in zip(finals, final, strict=True):
                kept.append(value)
        output = torch.nn.utils.rnn.pack_sequence(outputs, enforce_sorted=False)
        final = tuple(torch.cat(values, 1) for values in finals)
        return output, final if len(final) > 1 else final[0]
