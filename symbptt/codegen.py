"""Turns a Derivation into a PyTorch module through the Jinja templates in ``templates/``.

Every decision is made here and handed to the template as data (lines of code with their
equation labels); the template only lays the text out.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import jinja2
from sympy import MatMul, MatrixSymbol

from .errors import CodegenError
from .fileio import GENERATED_MARKER, write_generated
from .printing.names import (
    PARAMETER_CODE,
    is_parameter,
    loop_code_name,
    stacked_code_name,
    unrolled_code_name,
)
from .printing.text import gradient_text, text
from .printing.torch_code import BatchedTorchPrinter

if TYPE_CHECKING:
    from .derivation import Derivation, Gradient


def templates_dir() -> Path:
    """``symbptt/templates`` in an installed wheel, else the repository's ``templates/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise CodegenError(f"templates not found next to {here}")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one strict Jinja environment: undefined names are errors, whitespace is exact."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class Line:
    """One statement of generated code and the equation it implements."""

    code: str
    label: str


@dataclass(frozen=True)
class GradientCode:
    """How the generated ``backward`` computes one gradient: total and per-step terms."""

    key: str
    label: str
    equation: str
    total: str
    per_step: str
    terms: tuple[str, ...]


def _printers(derivation: Derivation):
    steps = derivation.spec.steps
    return (
        BatchedTorchPrinter(unrolled_code_name, is_parameter),
        BatchedTorchPrinter(loop_code_name, is_parameter),
        BatchedTorchPrinter(lambda s: stacked_code_name(s, steps), is_parameter, batch_dims=2),
        BatchedTorchPrinter(
            lambda s: stacked_code_name(s, steps), is_parameter, batch_dims=2, per_step=True
        ),
    )


def _gradient_code(derivation: Derivation, gradient: Gradient, printers) -> GradientCode:
    unrolled, loop, stacked, per_step = printers
    vector_sum = gradient.summed and not isinstance(gradient.generic, MatMul)

    def reduce(printer: BatchedTorchPrinter, expr) -> str:
        return printer.batch_sum(expr) if vector_sum else printer.doprint(expr)

    terms = () if derivation.spec.loop_form else tuple(reduce(unrolled, t) for t in gradient.terms)
    if gradient.summed:
        total, each = reduce(stacked, gradient.generic), reduce(per_step, gradient.generic)
    elif gradient.once:
        total = each = loop.doprint(gradient.terms[0])
    else:
        total = each = stacked.doprint(gradient.generic)
    return GradientCode(
        gradient.torch_name, gradient.label, gradient_text(gradient), total, each, terms
    )


def _signature(derivation: Derivation, exprs) -> list[str]:
    """Parameter arguments (torch order) that the given expressions use."""
    used: set[MatrixSymbol] = set()
    for expr in exprs:
        used |= expr.atoms(MatrixSymbol)
    return [PARAMETER_CODE[p.symbol.name] for p in derivation.parameters if p.symbol in used]


def template_context(derivation: Derivation, name: str) -> dict:
    """Everything the module template lays out."""
    spec = derivation.spec
    printers = _printers(derivation)
    unrolled, loop = printers[0], printers[1]
    steps = range(1, spec.steps + 1)
    forward = backward = []
    if not spec.loop_form:
        forward = [
            Line(f"{unrolled.doprint(a.target)} = {unrolled.doprint(a.value)}", a.label)
            for step in derivation.forward
            for a in step
        ]
        backward = [
            Line(f"{unrolled.doprint(a.target)} = {unrolled.doprint(a.value)}", a.label)
            for step in derivation.backward
            for a in step
        ]
    loop_forward = [
        Line(f"{loop.doprint(a.target)} = {loop.doprint(a.value)}", "Ft")
        for a in derivation.step.assignments
    ]
    loop_backward = [
        Line(f"{loop.doprint(a.target)} = {loop.doprint(a.value)}", "Bt")
        for a in derivation.adjoint.assignments
    ]
    gradients = [_gradient_code(derivation, g, printers) for g in derivation.gradients]
    backward_exprs = [a.value for a in derivation.adjoint.assignments]
    backward_exprs += [g.generic for g in derivation.gradients]
    forward_exprs = [a.value for a in derivation.step.assignments]
    parameters = [
        {
            "attribute": p.torch_name,
            "argument": PARAMETER_CODE[p.symbol.name],
            "shape": p.shape,
            "description": p.description,
        }
        for p in derivation.parameters
    ]
    last = derivation.backward[0][0]
    return {
        "spec": spec,
        "name": name,
        "class_name": "RNN",
        "marker": GENERATED_MARKER,
        "regenerate": f"symbptt derive {spec.cli_options()} --name {name}",
        "loop": spec.loop_form,
        "equations": {
            "forward": "   ".join(
                f"{text(a.target)} = {text(a.value)}" for a in derivation.step.assignments
            ),
            "backward": "   ".join(
                f"{text(a.target)} = {text(a.value)}" for a in derivation.adjoint.assignments
            ),
            "boundary": f"{text(last.target)} = {text(last.value)}",
        },
        "steps": list(steps),
        "forward": forward,
        "backward": backward,
        "loop_forward": loop_forward,
        "loop_backward": loop_backward,
        "gradients": gradients,
        "parameters": parameters,
        "forward_args": _signature(derivation, forward_exprs),
        "backward_args": _signature(derivation, backward_exprs),
        "stacked_outputs": ", ".join(f"h{k}" for k in steps) + ("," if spec.steps == 1 else ""),
        "unpack": {base: _unpack(base, spec.steps) for base in ("x", "h", "g")},
    }


def _unpack(base: str, steps: int) -> str:
    """Assignment targets for a sequence's steps: ``x1, x2, x3`` (``(x1,)`` for one step)."""
    if steps == 1:
        return f"({base}1,)"
    return ", ".join(f"{base}{k}" for k in range(1, steps + 1))


def render_module(derivation: Derivation, name: str) -> str:
    """The generated module's source for ``derivation``."""
    try:
        return (
            environment()
            .get_template("module.py.jinja")
            .render(**template_context(derivation, name))
        )
    except jinja2.TemplateError as exc:
        raise CodegenError(f"template module.py.jinja failed: {exc}") from exc


def write_module(derivation: Derivation, out_dir: Path, name: str, force: bool = False) -> Path:
    """Write ``out_dir/<name>.py``; refuse to overwrite a file symbptt did not generate."""
    return write_generated(out_dir / f"{name}.py", derivation.render(name), force=force)


def load_module_file(path: Path) -> ModuleType:
    """Import a generated module from its file (under a private name; nothing is cached)."""
    module_name = f"symbptt_generated.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CodegenError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_module(source: str, name: str) -> ModuleType:
    """Execute generated source as a fresh module named ``symbptt_generated.<name>``."""
    module_name = f"symbptt_generated.{name}"
    spec = importlib.util.spec_from_loader(module_name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"<symbptt generated {name}>", "exec"), module.__dict__)
    sys.modules[module_name] = module
    return module
