"""Turns a Derivation into a PyTorch module through the Jinja templates in ``templates/``.

Every decision is made in :mod:`symbptt.codegen.module_context` and handed to the template as data
(lines of code with their equation labels); the template only lays the text out, and
``ruff format`` gives the result one canonical layout.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import subprocess
import sys
import uuid
import weakref
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import jinja2

from ..core.spec import check_module_name
from ..errors import CodegenError
from ..fileio import GENERATED_MARKER, stamp, template_environment, write_generated
from .module_context import template_context

if TYPE_CHECKING:
    from ..core.derivation import Derivation


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The code templates' strict Jinja environment: undefined names are errors, whitespace is
    exact."""
    return template_environment()


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
    result = subprocess.run(
        command, input=source, capture_output=True, text=True, encoding="utf-8", check=False
    )
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["no message"])[0]
        raise CodegenError(f"generated code for {name} does not parse: {first}")
    return result.stdout


def render_module(derivation: Derivation, name: str) -> str:
    """The generated module's source for ``derivation``, with its checksum line.

    Raises:
        SpecError: ``name`` is not a valid module name
        (:func:`~symbptt.core.spec.check_module_name`).
        CodegenError: the template fails or its output does not parse.
    """
    check_module_name(name)
    template = environment().get_template("module.py.jinja")
    try:
        source = template.render(**template_context(derivation, name, GENERATED_MARKER))
    except jinja2.TemplateError as exc:
        raise CodegenError(f"template module.py.jinja failed: {exc}") from exc
    return stamp(format_source(source, name), ".py")


def write_module(derivation: Derivation, out_dir: Path, name: str, force: bool = False) -> Path:
    """Write ``out_dir/<name>.py``; refuse to overwrite a file symbptt did not generate.

    Raises:
        SpecError: ``name`` is not a valid module name; nothing is written.
        CodegenError: see :func:`~symbptt.fileio.write_generated`.
    """
    source = render_module(derivation, name)
    return write_generated(out_dir / f"{name}.py", source, force=force)


GENERATED_PACKAGE = "symbptt_generated"
"""The package of the modules :func:`load_module` and :func:`load_module_file` execute: they
are ``symbptt_generated.<name>`` in ``sys.modules``, so that pickle finds their classes and
functions by name in the process that loaded them."""

_LOADED: weakref.WeakValueDictionary[str, ModuleType] = weakref.WeakValueDictionary()
"""The generated modules alive in this process by the token of the load that made them (the
one their instances pickle with), so that unpickling gives instances of the same class."""


class _GeneratedFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: provides the empty package ``symbptt_generated`` and turns
    the import of a generated module this process has not loaded into a clear error (a
    directory ``symbptt_generated/`` on ``sys.path`` is found before, by the usual finders)."""

    def find_spec(self, fullname, path, target=None):
        if fullname == GENERATED_PACKAGE:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname.startswith(f"{GENERATED_PACKAGE}."):
            short = fullname.removeprefix(f"{GENERATED_PACKAGE}.")
            raise ModuleNotFoundError(
                f"{fullname} is a module symbptt generated in another process "
                f"(Derivation.load or load_module_file) and this one has not loaded: its "
                f"classes and functions pickle by name, so load it here first "
                f"(symbptt.derive(...).load({short!r}), or symbptt.codegen.load_module_file "
                f"of its written file). Instances of its classes pickle with its code and "
                f"need no such step",
                name=fullname,
            )
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = []


if not any(isinstance(finder, _GeneratedFinder) for finder in sys.meta_path):
    sys.meta_path.append(_GeneratedFinder())


def _register(module: ModuleType, source: str, token: str, publish: bool = True) -> ModuleType:
    """Make instances of the public classes of ``module`` (executed from ``source``) picklable
    in any process: they pickle with the source and ``token`` and unpickle through
    :func:`rebuild_instance`. With ``publish``, also put the module in ``sys.modules`` as
    ``symbptt_generated.<name>``, where pickle finds its classes and functions by name."""
    if publish:
        sys.modules[module.__name__] = module
        package = importlib.import_module(GENERATED_PACKAGE)
        setattr(package, module.__name__.removeprefix(f"{GENERATED_PACKAGE}."), module)
    _LOADED[token] = module
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and value.__module__ == module.__name__
            and not value.__name__.startswith("_")
        ):
            value.__reduce_ex__ = _reduce_ex(value, module, source, token)
    return module


def _reduce_ex(cls: type, module: ModuleType, source: str, token: str):
    """``cls.__reduce_ex__``: an instance of exactly ``cls`` pickles as the generated source,
    the load's token, the class's name and the instance's state; a subclass's instances (the
    subclass is the caller's, importable by name) pickle as usual. (The method keeps
    ``module`` alive, and so its entry in ``_LOADED``, as long as the class lives.)"""
    name = module.__name__.removeprefix(f"{GENERATED_PACKAGE}.")

    def __reduce_ex__(self, protocol):
        if type(self) is not cls:
            return object.__reduce_ex__(self, protocol)
        return rebuild_instance, (source, name, token, cls.__qualname__), self.__getstate__()

    __reduce_ex__.module = module
    return __reduce_ex__


def _execute(source: str, name: str, filename: str) -> ModuleType:
    """A new module ``symbptt_generated.<name>`` with ``source`` executed in it."""
    module = ModuleType(f"{GENERATED_PACKAGE}.{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def rebuild_instance(source: str, name: str, token: str, qualname: str):
    """Unpickling an instance of a generated class: an instance, whose state pickle then
    sets, of the class ``qualname`` of the module the load ``token`` made, if it is alive in
    this process; else of a module executed anew from ``source`` for that token (published in
    ``sys.modules`` as ``name`` unless another module has that name there)."""
    module = _LOADED.get(token)
    if module is None:
        module = _execute(source, name, f"<symbptt generated {name}>")
        publish = f"{GENERATED_PACKAGE}.{name}" not in sys.modules
        _register(module, source, token, publish=publish)
    cls = getattr(module, qualname)
    return cls.__new__(cls)


def load_module_file(path: Path) -> ModuleType:
    """Import a generated module from its file as ``symbptt_generated.<stem>`` (a new module
    each call; its instances pickle with the file's source, as :func:`load_module`'s)."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CodegenError(f"cannot import {path}: {exc}") from exc
    return _register(_execute(source, path.stem, str(path)), source, uuid.uuid4().hex)


def load_module(source: str, name: str) -> ModuleType:
    """Execute generated source as a new module ``symbptt_generated.<name>``.

    Its classes and functions pickle by name in this process; instances of its classes
    (``RNN``, ...) pickle with the source itself, so ``pickle.loads`` and
    ``torch.load(..., weights_only=False)`` give them back in any process where symbptt is
    installed, running the same code.
    """
    module = _execute(source, name, f"<symbptt generated {name}>")
    return _register(module, source, uuid.uuid4().hex)
