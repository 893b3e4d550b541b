"""The numbers a learner command runs on: its --weights and --input files, and torch's module.

Shared by ``symbptt explain`` and ``symbptt flow``: reading a file torch.save wrote, checking a
state_dict against torch's own names and shapes, reading x (a tensor, or for explain a list of
numbers), and building torch's own module in float64 with torch's init or the given weights,
without touching torch's global random state. Each command passes its own error class; the
parameters keep what the two take differently (explain: a list of numbers for --input, a cell's
x as (I,), integer tensors cast to float64; flow: floating-point tensors only).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SpecError, SymbpttError

if TYPE_CHECKING:
    import torch

    from ..core.spec import Spec

ErrorClass = type[SymbpttError]


LOSSES = {"h_n": "h_n", "hn": "h_n", "output": "output"}
"""``--loss``: each spelling accepted (``hn`` as well as torch's ``h_n``) and the loss it names."""


def loss_name(text: str, error: ErrorClass = SpecError) -> str:
    """The loss ``text`` names (``h_n`` or ``output``); ``error`` if it names none."""
    if text not in LOSSES:
        raise error(f"loss must be h_n (or hn) or output, got {text!r}")
    return LOSSES[text]


def _numbers(text: str) -> list[float] | None:
    """``"1, 2,3"`` -> ``[1.0, 2.0, 3.0]``; None if ``text`` is not such a list."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        return None


def _not_numbers(text: str) -> str:
    """What is wrong in ``text``, a comma-separated list with an entry that is no number."""
    parts = text.split(",")
    index, bad = next((i, p) for i, p in enumerate(parts, 1) if _numbers(p) is None)
    what = "is empty" if not bad.strip() else f"{bad.strip()!r} is not a number"
    return (
        f"--input {text}: entry {index} of {len(parts)} {what}; give numbers separated by "
        "commas (1,2,3) or a file saved with torch.save"
    )


def _first_line(exc: BaseException) -> str:
    message = (str(exc).strip().splitlines() or [""])[0]
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def load_saved(path_text: str, option: str, what: str, error: ErrorClass = SpecError):
    """``torch.load(weights_only=True)`` of the file named by ``option``; ``error`` if it fails.

    ``what`` names what to save instead of a pickled object (``"a tensor"``).
    """
    import torch

    path = Path(path_text)
    if not path_text.strip():
        raise error(f"{option} is empty; give a file saved with torch.save")
    if not path.exists():
        raise error(f"{option} {path_text}: no such file")
    if path.is_dir():
        raise error(f"{option} {path_text}: a folder, not a file saved with torch.save")
    if not path.is_file():
        raise error(f"{option} {path_text}: not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickled object: garbage
            raise error(
                f"{option} {path_text}: not a file torch.save wrote ({_first_line(exc)})"
            ) from None
        raise error(
            f"{option} {path_text}: torch.load(weights_only=True) refuses it; save {what} "
            "with torch.save, not a pickled object"
        ) from None
    except Exception as exc:  # torch raises many kinds for files it cannot read
        raise error(
            f"{option} {path_text}: not a file torch.save wrote ({_first_line(exc)})"
        ) from None


def finite_float64(value, where: str, error: ErrorClass = SpecError, integers: bool = True):
    """``value`` as a float64 CPU tensor; ``error`` for NaN, infinity or a dtype not taken.

    Complex and bool tensors are refused; integer ones are cast when ``integers``, else refused.
    """
    import torch

    if value.is_complex() or value.dtype == torch.bool:
        raise error(f"{where} has dtype {value.dtype}; real numbers are needed")
    if not integers and not value.is_floating_point():
        raise error(f"{where} has dtype {value.dtype}; floating-point numbers are needed")
    value = value.detach().to("cpu", torch.float64)
    if not torch.isfinite(value).all():
        raise error(f"{where} contains NaN or infinite values")
    return value


def read_input(text: str, error: ErrorClass = SpecError, numbers: bool = False):
    """The ``--input`` value: the loaded tensor, not a scalar (its shape is checked later).

    With ``numbers``, a comma-separated list of numbers (``1,2,3``) is returned as floats.
    """
    import torch

    if not text.strip():
        raise error(
            "--input is empty; give a file saved with torch.save"
            + (" or numbers like 1,2,3" if numbers else "")
        )
    if numbers:
        values = _numbers(text)
        if values is not None:
            return values
        if "," in text and not Path(text).exists():
            raise error(_not_numbers(text))
    value = load_saved(text, "--input", "a tensor", error)
    if not isinstance(value, torch.Tensor):
        raise error(
            f"--input {text}: expected a tensor saved with torch.save, got {type(value).__name__}"
        )
    if value.dim() == 0:
        raise error(f"--input {text}: expected a tensor of shape (T, I), got a scalar")
    return value


def unbatched_input(raw, spec: Spec, text: str, error: ErrorClass = SpecError):
    """``x`` from :func:`read_input` as float64 of shape (T, I) for a layer, (I,) for a cell.

    A list of numbers is one per step for ``input_size`` 1, or a cell's ``input_size`` entries.
    """
    import torch

    expected = (spec.input_size,) if spec.is_cell else (spec.steps, spec.input_size)
    shape_text = "(input_size,)" if spec.is_cell else "(T, input_size)"
    if isinstance(raw, list):
        if spec.is_cell:
            if len(raw) != spec.input_size:
                raise error(
                    f"--input {text}: {len(raw)} numbers, but a cell's x has input_size = "
                    f"{spec.input_size} entries"
                )
        elif spec.input_size != 1:
            raise error(
                f"--input {text}: a list of numbers is for --input-size 1; save x of shape "
                f"(T, I) = {expected} with torch.save instead"
            )
        elif len(raw) != spec.steps:
            raise error(
                f"--input {text}: {len(raw)} numbers for {spec.steps} steps (one number per step)"
            )
        raw = torch.tensor(raw, dtype=torch.float64).reshape(expected)
    if tuple(raw.shape) != expected:
        raise error(
            f"--input {text}: expected an unbatched x of shape {shape_text} = {expected}, "
            f"got {tuple(raw.shape)}"
        )
    return finite_float64(raw, f"--input {text}", error)


def read_weights(
    text: str, spec: Spec, error: ErrorClass = SpecError, integers: bool = True
) -> dict[str, torch.Tensor]:
    """The state_dict in the file ``text``, checked against torch's names and shapes, as float64.

    ``integers``: integer tensors are cast (else only floating-point tensors are taken).
    """
    import torch

    value = load_saved(text, "--weights", "module.state_dict()", error)
    if not isinstance(value, Mapping):
        raise error(
            f"--weights {text}: not a state dict but a {type(value).__name__}; expected a "
            "state_dict (a dict of tensors by name: torch.save(module.state_dict(), FILE))"
        )
    expected = {name: tuple(p.shape) for name, p in reference_module(spec).state_dict().items()}
    for name, shape in expected.items():
        if name not in value:
            raise error(
                f"--weights {text}: missing {name} (expected shape {shape} for "
                f"{spec.torch_constructor()})"
            )
    unexpected = [str(name) for name in value if name not in expected]
    if unexpected:
        raise error(
            f"--weights {text}: unexpected key {unexpected[0]!r} for "
            f"{spec.torch_constructor()} (expected {', '.join(expected)})"
        )
    weights = {}
    for name, shape in expected.items():
        tensor = value[name]
        if not isinstance(tensor, torch.Tensor):
            raise error(f"--weights {text}: {name} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != shape:
            raise error(
                f"--weights {text}: {name} has shape {tuple(tensor.shape)}, expected {shape}"
            )
        weights[name] = finite_float64(tensor, f"--weights {text}: {name}", error, integers)
    return weights


def reference_module(
    spec: Spec,
    seed: int | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
):
    """torch's own module for ``spec`` on the CPU, in eval mode, float64 (or ``dtype``).

    Its weights are torch's init under ``torch.manual_seed(seed)`` (any seed when None), then
    ``weights`` if given (a state_dict as :func:`read_weights` returns). torch's global random
    state is left as it was.
    """
    import torch

    from .agreement import torch_reference

    dtype = dtype or torch.float64
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        module = torch_reference(spec, "cpu", dtype)
    if weights is not None:
        module.load_state_dict({name: value.to(dtype) for name, value in weights.items()})
    module.eval()
    return module
