"""torch's constructor signatures, so that a generated module is constructed as torch's is.

A generated class subclasses torch's own (``torch.nn.LSTM``, ``torch.nn.GRUCell``, …) and takes
the same arguments in the same order; their defaults are the values the module was generated
for. torch's ``__init__`` checks their types; the generated one then refuses any value other
than the generated one (``batch_first`` alone is free: it changes only the layout).
"""

from __future__ import annotations

from ..core.spec import Spec

_LAYER = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
)
_CELL = ("input_size", "hidden_size", "bias")

SIGNATURES: dict[str, tuple[str, ...]] = {
    "RNN": (*_LAYER[:3], "nonlinearity", *_LAYER[3:]),
    "LSTM": (*_LAYER, "proj_size"),
    "GRU": _LAYER,
    "RNNCell": (*_CELL, "nonlinearity"),
    "LSTMCell": _CELL,
    "GRUCell": _CELL,
}
"""torch's constructor arguments before ``device`` and ``dtype``, in torch's order."""

CUSTOM_LAYER = tuple(name for name in _LAYER if name != "bias")
"""A user-defined cell's layer takes torch's layer arguments but ``bias`` (its file declares
its parameters)."""

FREE = ("batch_first",)
"""Arguments a generated module takes with any value, as torch's does."""

VALUES = {
    "input_size": lambda spec: spec.input_size,
    "hidden_size": lambda spec: spec.hidden_size,
    "num_layers": lambda spec: spec.num_layers,
    "nonlinearity": lambda spec: spec.nonlinearity,
    "bias": lambda spec: spec.bias,
    "batch_first": lambda spec: False,
    "dropout": lambda spec: float(spec.dropout),
    "bidirectional": lambda spec: spec.bidirectional,
    "proj_size": lambda spec: spec.proj_size,
}
"""Each argument's generated value (its default in the generated constructor)."""


def constructor_arguments(spec: Spec) -> list[dict]:
    """The generated class's constructor arguments: ``name``, ``default`` (Python source) and
    whether the module accepts other values (``free``)."""
    return [
        {"name": name, "default": repr(VALUES[name](spec)), "free": name in FREE}
        for name in (CUSTOM_LAYER if spec.custom is not None else SIGNATURES[spec.torch_class])
    ]
