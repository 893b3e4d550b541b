"""Shared fixtures: derivations and generated modules are cached per spec."""

from __future__ import annotations

import functools
import shutil
import sys
from pathlib import Path

import pytest

import symbptt


@functools.cache
def derivation(**kwargs) -> symbptt.Derivation:
    return symbptt.derive(**kwargs)


@functools.cache
def generated(**kwargs):
    """The generated module for ``symbptt.derive(**kwargs)``, loaded from its source."""
    return derivation(**kwargs).load()


@pytest.fixture
def founding():
    return derivation(steps=3, input_size=1, hidden_size=2)


def ruff() -> str:
    """The ruff executable of this environment (a test dependency)."""
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is a test dependency: pip install -e '.[test]'")
    return found
