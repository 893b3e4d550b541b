"""generated/ holds committed examples; regenerating them must give the same bytes.

Refresh after an intended change with:  python -m symbptt.examples
"""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest
from conftest import ruff

from symbptt.examples import EXAMPLES, example_files

GENERATED = Path(__file__).resolve().parent.parent / "generated"
REFRESH = "python -m symbptt.examples"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return example_files()


def test_founding_case_comes_first():
    assert EXAMPLES[0].default_name == "rnn_tanh_t3_i1_h2"


def test_committed_examples_are_up_to_date(files):
    problems = []
    for name, content in files.items():
        path = GENERATED / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        committed = path.read_text(encoding="utf-8")
        if committed != content:
            diff = difflib.unified_diff(
                committed.splitlines(),
                content.splitlines(),
                f"committed/{name}",
                f"regenerated/{name}",
                lineterm="",
            )
            problems.append("\n".join(list(diff)[:60]))
    assert not problems, f"generated/ has drifted; refresh with `{REFRESH}`:\n" + "\n".join(
        problems
    )


def test_no_stale_files(files):
    present = {p.name for p in GENERATED.iterdir() if p.is_file() and p.name != "README.md"}
    assert present == set(files), f"stale or missing files; refresh with `{REFRESH}`"


def test_generated_code_is_ruff_formatted():
    result = subprocess.run(
        [ruff(), "format", "--check", "--diff", str(GENERATED)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_imports_only_torch_and_stdlib():
    import ast
    import sys

    for path in GENERATED.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "torch" or top in sys.stdlib_module_names, (path.name, name)
