"""Turns a Derivation into a PyTorch module through the Jinja templates in ``templates/``.

Every decision is made in :mod:`symbptt.module_context` and handed to the template as data
(lines of code with their equation labels); the template only lays the text out, and
``ruff format`` gives the result one canonical layout.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import jinja2

from .errors import CodegenError
from .fileio import GENERATED_MARKER, write_generated
from .module_context import template_context

if TYPE_CHECKING:
    from .derivation import Derivation


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


def format_source(source: str, name: str) -> str:
    """``ruff format`` the generated source (line length 100, no user configuration)."""
    from ruff.__main__ import find_ruff_bin

    command = [
        find_ruff_bin(),
        "format",
        "--isolated",
        "--line-length",
        "100",
        "--stdin-filename",
        f"{name}.py",
        "-",
    ]
    result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["no message"])[0]
        raise CodegenError(f"generated code for {name} does not parse: {first}")
    return result.stdout


def render_module(derivation: Derivation, name: str) -> str:
    """The generated module's source for ``derivation``."""
    template = environment().get_template("module.py.jinja")
    try:
        source = template.render(**template_context(derivation, name, GENERATED_MARKER))
    except jinja2.TemplateError as exc:
        raise CodegenError(f"template module.py.jinja failed: {exc}") from exc
    return format_source(source, name)


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
