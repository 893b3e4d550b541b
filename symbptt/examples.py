"""The committed examples in ``generated/`` and the command that refreshes them.

    python -m symbptt.examples [--out generated]

rewrites every example; ``tests/test_golden.py`` regenerates them in memory and fails with a
diff when a committed file has drifted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .core.spec import Spec

EXAMPLES: tuple[Spec, ...] = (
    Spec(steps=3, input_size=1, hidden_size=2),  # the founding case
    Spec(steps=1, input_size=3, hidden_size=2),
    Spec(steps=5, input_size=4, hidden_size=3, nonlinearity="relu", bias=False),
    Spec(steps=32, input_size=8, hidden_size=16),  # loop form
    Spec(cell="lstm", steps=3, input_size=2, hidden_size=3),
    Spec(cell="lstm", steps=24, input_size=4, hidden_size=8, proj_size=4),  # loop form
    Spec(cell="gru", steps=3, input_size=2, hidden_size=3),
    Spec(cell="lstm_cell", input_size=3, hidden_size=4),
    Spec(cell="gru_cell", input_size=3, hidden_size=4),
    Spec(steps=6, input_size=1, hidden_size=2, truncate=2),  # truncated BPTT
    Spec(
        cell="lstm",
        steps=7,
        input_size=3,
        hidden_size=4,
        num_layers=2,
        bidirectional=True,
        dropout=0.25,
        packed=True,
    ),
)
"""Specs of the committed examples, the founding case first."""


def example_files() -> dict[str, str]:
    """File name -> content of every example (module source, and the founding case's docs)."""
    from .api import Derivation

    files = {}
    for spec in EXAMPLES:
        derivation = Derivation(spec)
        files[f"{spec.default_name}.py"] = derivation.render()
    founding = Derivation(EXAMPLES[0])
    files[f"{EXAMPLES[0].default_name}.tex"] = founding.to_latex()
    files[f"{EXAMPLES[0].default_name}.md"] = founding.to_markdown()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symbptt.examples", description=__doc__)
    parser.add_argument("--out", default="generated", help="folder (default: generated)")
    args = parser.parse_args(argv)
    from .fileio import write_generated

    for name, content in example_files().items():
        print(f"wrote {write_generated(Path(args.out) / name, content)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
