"""Bytes saved for backward by one forward: the generated module against torch's autograd.

``torch.autograd.graph.saved_tensors_hooks`` sees every tensor an autograd node keeps for its
backward, torch's own operations and ``ctx.save_for_backward`` of a ``torch.autograd.Function``
(which is how the generated module keeps its per-step values) alike. The bytes are those of the
unique storages behind the saved tensors (a view counts its whole storage once), without the
parameters and the input, which both sides keep anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

NOTE = (
    "Bytes of the unique storages (by `untyped_storage().data_ptr()`) of every tensor saved for "
    "backward during one forward, recorded with `torch.autograd.graph.saved_tensors_hooks`: "
    "torch's module with autograd against the generated module, whose `autograd.Function` "
    "keeps its values with `ctx.save_for_backward`. The parameters and the input x, which "
    "both keep anyway, are excluded; the zero initial state each module makes (hx omitted, as "
    "in the timing) is counted on both sides. A view counts its whole storage once. 'Held' adds "
    "the outputs' storages: what stays in memory after the forward, saved values and outputs "
    "together (torch's module returns outputs apart from what it saves; the generated module "
    "saves its output buffer itself)."
)


def saved_bytes(forward: Callable[[], Any], exclude: Iterable = ()) -> dict[str, int]:
    """Run ``forward()`` and measure what it saves for backward.

    Returns ``{"bytes": ..., "tensors": ..., "storages": ..., "held": ...}``: the bytes of the
    unique storages of the saved tensors, the number of tensors saved and of unique storages,
    leaving out tensors whose storage is one of ``exclude``'s (parameters, input); ``held``
    counts the storages of the saved tensors and of the tensors ``forward()`` returns.
    """
    import torch

    excluded = {tensor.untyped_storage().data_ptr() for tensor in exclude}
    storages: dict[int, int] = {}
    tensors = 0

    def pack(tensor):
        nonlocal tensors
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            tensors += 1
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = forward()
    measured = {"bytes": sum(storages.values()), "tensors": tensors, "storages": len(storages)}
    held = dict(storages)
    for tensor in _tensors(result):
        if tensor.untyped_storage().data_ptr() not in excluded:
            held[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    measured["held"] = sum(held.values())
    del result  # the graph, and what it saved, lived until the bytes were counted
    return measured


def _tensors(value: Any) -> list:
    """The tensors in a module's result: a tensor or (nested) tuples of them."""
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors(item)]
    return [value] if hasattr(value, "untyped_storage") else []


def saved_memory(
    cell: str, steps: int, batch: int, input_size: int, hidden_size: int, dtype: str
) -> dict[str, int]:
    """Saved bytes of one forward of the generated module and of torch's, same weights.

    Returns ``generated``, ``torch`` (bytes) and ``generated_tensors``, ``torch_tensors`` (how
    many tensors each saved, outside the parameters and the input).
    """
    import torch

    import symbptt
    from symbptt.verification.agreement import torch_reference

    derivation = symbptt.derive(
        cell=cell, steps=steps, input_size=input_size, hidden_size=hidden_size
    )
    torch_dtype = getattr(torch, dtype)
    reference = torch_reference(derivation.spec, "cpu", torch_dtype)
    generated = getattr(derivation.load(), derivation.spec.torch_class)(dtype=torch_dtype)
    generated.load_state_dict(reference.state_dict())
    x = torch.randn(steps, batch, input_size, dtype=torch_dtype, requires_grad=True)
    result = {}
    for name, layer in (("generated", generated), ("torch", reference)):
        measured = saved_bytes(lambda layer=layer: layer(x), exclude=[x, *layer.parameters()])
        result[name] = measured["bytes"]
        result[f"{name}_tensors"] = measured["tensors"]
        result[f"{name}_held"] = measured["held"]
    return result
