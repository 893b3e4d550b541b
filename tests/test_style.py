"""The project's own code is ruff clean (lint and format)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ruff

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    result = subprocess.run(
        [ruff(), *command, "symbptt", "tests", "examples", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
