"""Where symbptt's numbers are held against a reference, in one place: the reference itself
(torch's module, or a user-defined cell's equations run step by step), the relative error,
and the tolerances.

    relative error = max |actual − expected| / max |expected|   (the absolute error where
                     expected is all zero; non-finite entries must agree exactly)
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..core.spec import Spec

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
"""The largest relative error accepted between the generated code and its reference, by
dtype: float64 agrees to rounding over the sizes tested (1e-10 leaves room for T and H in the
thousands); float32's 1e-4 is about 1000 ulps, the reordering of sums in torch's kernels."""

HAND_TOLERANCE = 1e-8
"""``check``: a hand-derived gradient in float64 against the derivation's. A reordered sum
differs by ~1e-15, a wrong term by far more."""
HAND_FLOAT32_TOLERANCE = 1e-4
"""``check``: when the user's function returns float32 (mistake 9: checks belong in float64)."""


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual − expected| / max|expected|``, the absolute error where ``expected`` is all
    zero; ``inf`` unless the non-finite entries (nan, ±inf) sit at the same places with the
    same values; 0 for empty tensors."""
    import torch

    finite_a, finite_e = torch.isfinite(actual), torch.isfinite(expected)
    if not torch.equal(finite_a, finite_e):
        return float("inf")
    if not finite_a.all():
        odd = ~finite_a
        same_nan = torch.equal(torch.isnan(actual[odd]), torch.isnan(expected[odd]))
        same_inf = torch.equal(actual[odd].nan_to_num(nan=0.0), expected[odd].nan_to_num(nan=0.0))
        if not (same_nan and same_inf):
            return float("inf")
        actual, expected = actual[finite_a], expected[finite_a]
    if actual.numel() == 0:
        return 0.0
    scale = expected.abs().max().item()
    diff = (actual - expected).abs().max().item()
    return diff / scale if scale > 0 else diff


def reference_name(spec: Spec) -> str:
    """What the generated module is checked against: ``torch.nn.LSTM``, or for a
    user-defined cell its equations run step by step
    (:mod:`symbptt.verification.cell_reference`)."""
    if spec.custom is None:
        return f"torch.nn.{spec.torch_class}"
    return f"the equations of {spec.torch_class} run step by step"


def torch_reference(spec: Spec, device: str, dtype: torch.dtype):
    """``torch.nn.<Class>`` with the spec's options (weights from torch's own init); for a
    user-defined cell, its equations evaluated step by step under autograd
    (:class:`~symbptt.verification.cell_reference.ReferenceLayer`)."""
    import torch

    if spec.custom is not None:
        from .cell_reference import ReferenceLayer

        return ReferenceLayer(spec, device=device, dtype=dtype)

    options = {"bias": spec.bias, "device": device, "dtype": dtype}
    options |= {keyword: getattr(spec, keyword) for keyword in spec.torch_keywords}
    if not spec.is_cell:
        options |= {
            "num_layers": spec.num_layers,
            "bidirectional": spec.bidirectional,
            "dropout": spec.dropout,
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that dropout needs num_layers > 1
        return getattr(torch.nn, spec.torch_class)(spec.input_size, spec.hidden_size, **options)
