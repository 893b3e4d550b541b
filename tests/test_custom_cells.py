"""User-defined cells (examples/cells/*.toml) derived, generated and checked against sources
that share nothing with the generated code:

- autograd of the equations evaluated step by step from the parsed tree
  (:mod:`symbptt.verification.cell_reference`, through
  :func:`symbptt.verification.verify.compare`), float64 at 1e-10,
  random cotangents, batched and unbatched, T = 1 and input_size ≠ hidden_size, both code forms,
  layers, directions, packed sequences and truncation;
- finite differences (``torch.autograd.gradcheck``) of the generated module;
- SymPy's brute-force ``diff`` of the unrolled scalar loss at small sizes.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import symbptt
from symbptt.scalar import explicit as scalar
from symbptt.verification.verify import compare

CELLS_DIR = Path(__file__).resolve().parent.parent / "examples" / "cells"
CATALOGUE = (
    "peephole_lstm",
    "cifg_lstm",
    "mgu",
    "indrnn",
    "ugrnn",
    "mingru",
    "minlstm",
    "janet",
    "leaky_rnn",
)


def cell(name: str) -> symbptt.Cell:
    return symbptt.Cell.from_file(CELLS_DIR / f"{name}.toml")


def test_the_catalogue_is_there_and_each_cites_its_paper():
    files = sorted(path.stem for path in CELLS_DIR.glob("*.toml"))
    assert set(CATALOGUE) <= set(files)
    for name in CATALOGUE:
        text = (CELLS_DIR / f"{name}.toml").read_text()
        assert "reference" in text and any(str(year) in text for year in range(1990, 2026))


@pytest.mark.parametrize("name", CATALOGUE)
@pytest.mark.parametrize("loop", [False, True], ids=["unrolled", "loop"])
@pytest.mark.parametrize(("steps", "input_size", "hidden_size"), [(1, 3, 2), (4, 2, 3)])
def test_generated_module_equals_autograd_of_the_equations(
    name, loop, steps, input_size, hidden_size
):
    derivation = symbptt.derive(
        cell=cell(name), steps=steps, input_size=input_size, hidden_size=hidden_size, loop=loop
    )
    module = derivation.load()
    for options in (dict(batch=3, seed=1), dict(batch=None, seed=2), dict(batch_first=True)):
        report = compare(derivation, module, **options)
        assert report.ok, report.table()
        assert len(report.checks) == 2 * len(derivation.step.states) + 2 + len(
            derivation.parameters
        )
    float32 = compare(derivation, module, dtype="float32")
    assert float32.ok, float32.table()


@pytest.mark.parametrize("name", ["mgu", "peephole_lstm"])
@pytest.mark.parametrize(
    "options",
    [
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=2, bidirectional=True, loop=True),
        dict(packed=True),
        dict(truncate=2),
    ],
    ids=["layers-directions", "layers-directions-loop", "packed", "truncate"],
)
def test_networks_of_a_custom_cell(name, options):
    derivation = symbptt.derive(cell=cell(name), steps=5, input_size=2, hidden_size=3, **options)
    module = derivation.load()
    report = compare(derivation, module)
    assert report.ok, report.table()
    if options.get("packed"):
        report = compare(derivation, module, lengths=[5, 2, 4])
        assert report.ok, report.table()


@pytest.mark.parametrize("name", CATALOGUE)
def test_gradcheck_finite_differences(name):
    derivation = symbptt.derive(cell=cell(name), steps=3, input_size=2, hidden_size=2, loop=True)
    layer = getattr(derivation.load(), derivation.spec.torch_class)().double()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    states = [
        torch.randn(1, 2, 2, dtype=torch.float64, generator=generator, requires_grad=True)
        for _ in derivation.step.states
    ]
    params = list(layer.parameters())

    def run(x, *leaves):
        hx = tuple(leaves[: len(states)]) if len(states) > 1 else leaves[0]
        output, final = torch.func.functional_call(
            layer,
            dict(zip(dict(layer.named_parameters()), leaves[len(states) :], strict=True)),
            (x, hx),
        )
        return output, *(final if isinstance(final, tuple) else (final,))

    assert torch.autograd.gradcheck(run, (x, *states, *params))


BRUTE = {
    "mgu": dict(steps=2, input_size=1, hidden_size=2),
    "indrnn": dict(steps=3, input_size=2, hidden_size=2),
    "peephole_lstm": dict(steps=2, input_size=1, hidden_size=1),
    "minlstm": dict(steps=2, input_size=1, hidden_size=1),
}


@pytest.mark.parametrize("name", list(BRUTE))
def test_program_equals_brute_force_scalar_diff(name):
    """The derivation's backward program, entry by entry, against ``sympy.diff`` of the
    unrolled scalar loss, at two random rational points, 40 digits."""
    derivation = symbptt.derive(cell=cell(name), **BRUTE[name])
    expected = scalar.brute_force_gradients(derivation)
    program = scalar.program_gradients(derivation)
    assert set(program) == set(expected)
    nonzero = set()
    for seed in (3, 4):
        point = scalar.random_point(derivation, seed)
        truth = scalar.evaluate(expected, point, digits=40)
        ours = scalar.evaluate(program, point, digits=40)
        for label, value in truth.items():
            scale = max(abs(v) for v in value) or 1
            assert max(abs(a - b) for a, b in zip(ours[label], value, strict=True)) < 1e-30 * scale
            if any(v != 0 for v in value):
                nonzero.add(label)
    if name == "indrnn":  # relu units may be off at a random point: some gradient must not be
        assert nonzero
    else:
        assert nonzero == set(expected), f"vanished at both points: {set(expected) - nonzero}"


def test_module_as_declared():
    """Class named by the file, torch's parameter names and declared shapes, uniform(±1/√H)
    initialisation, hx and h_n as (L·D, B, H) per state, batch_first and unbatched input."""
    derivation = symbptt.derive(
        cell=cell("peephole_lstm"),
        steps=3,
        input_size=4,
        hidden_size=5,
        num_layers=2,
        bidirectional=True,
    )
    module = derivation.load()
    layer = module.PeepholeLSTM() if hasattr(module, "PeepholeLSTM") else None
    assert layer is not None, [n for n in dir(module) if not n.startswith("_")]
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes["W_i_l0"] == (5, 4) and shapes["W_i_l1"] == (5, 10)
    assert shapes["W_i_l1_reverse"] == (5, 10) and shapes["p_i_l0"] == (5,)
    bound = 1 / math.sqrt(5)
    assert all(p.abs().max() <= bound for p in layer.parameters())
    assert max(p.abs().max() for p in layer.parameters()) > 0.9 * bound
    x = torch.randn(3, 2, 4)
    output, (h_n, c_n) = layer(x)
    assert output.shape == (3, 2, 10) and h_n.shape == c_n.shape == (4, 2, 5)
    unbatched, (h_u, _) = layer(x[:, 0])
    torch.testing.assert_close(unbatched, output[:, 0])
    torch.testing.assert_close(h_u, h_n[:, 0])
    layer.batch_first = True
    first, _ = layer(x.transpose(0, 1))
    torch.testing.assert_close(first.transpose(0, 1), output)
    with pytest.raises(ValueError, match="generated for"):
        module.PeepholeLSTM(input_size=7)


def test_bad_options_for_a_custom_cell():
    with pytest.raises(symbptt.SpecError, match="--no-bias"):
        symbptt.derive(cell=cell("mgu"), bias=False)
    with pytest.raises(symbptt.SpecError, match="--nonlinearity"):
        symbptt.derive(cell=cell("mgu"), nonlinearity="relu")


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "symbptt", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_derive_mgu_writes_and_verifies(tmp_path):
    result = _cli("derive", "--cell", str(CELLS_DIR / "mgu.toml"), "--steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "all match" in result.stdout and "(F1)" in result.stdout
    assert (tmp_path / "generated" / "mgu_t3_i1_h2.py").exists()


def test_cli_bad_cell_file_one_line_nothing_written(tmp_path):
    bad = (CELLS_DIR / "mgu.toml").read_text().replace("U_f @ h[t-1]", "U_f @ hh[t-1]", 1)
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    result = _cli("derive", "--cell", str(path), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    row = next(i for i, text in enumerate(bad.splitlines(), 1) if "hh[t-1]" in text)
    column = bad.splitlines()[row - 1].index("hh[t-1]") + 1
    assert f"bad.toml:{row}:{column}: unknown name 'hh'" in line
    assert not (tmp_path / "generated").exists()


@pytest.mark.parametrize("name", CATALOGUE)
def test_latex_of_every_catalogue_cell_compiles(name, tmp_path):
    from symbptt.printing.document import compile_pdf

    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is required in CI to check the LaTeX documents")
        pytest.skip("pdflatex not installed; the LaTeX documents are not compiled")
    derivation = symbptt.derive(cell=cell(name), steps=2, input_size=2, hidden_size=2)
    tex = tmp_path / f"{name}.tex"
    tex.write_text(derivation.to_latex())
    assert compile_pdf(tex).stat().st_size > 0
    markdown = derivation.to_markdown()
    assert derivation.spec.torch_class in markdown


def test_equations_in_the_users_names():
    text = symbptt.derive(cell=cell("mgu")).to_text()
    assert "W_f xₜ" in text and "U_n (fₜ ⊙ hₜ₋₁)" in text and "δᶠₜ" in text


def test_linear_recurrences_are_recognised():
    """minGRU and minLSTM (gates free of h) are, and say so; a gate reading h, or a
    nonlinearity of h, makes a cell not one."""
    for name, linear in [("mingru", True), ("minlstm", True), ("mgu", False)]:
        derivation = symbptt.derive(cell=cell(name))
        assert derivation.linear_states == (("h",) if linear else ())
        assert ("Linear recurrence: hₜ = aₜ ⊙ hₜ₋₁ + bₜ" in derivation.to_text()) is linear
    for name in ("indrnn", "leaky_rnn", "janet", "peephole_lstm"):
        assert symbptt.derive(cell=cell(name)).linear_states == ()
    assert symbptt.derive(cell="gru").linear_states == ()


def test_latex_of_names_with_an_underscore_compiles(tmp_path):
    """A step variable ``f_n`` is written ``f_{\\mathrm{n},t}``, not the double subscript
    ``f_n_{t}`` pdflatex refuses."""
    from symbptt.printing.document import compile_pdf

    text = (CELLS_DIR / "minlstm.toml").read_text()
    step = 'h = "f / (f + i) * h[t-1]'
    assert step in text
    text = text.replace(step, 'f_n = "f / (f + i)"\nh = "f_n * h[t-1]')
    derivation = symbptt.derive(cell=symbptt.Cell.from_string(text, "minlstm_fn.toml"))
    assert "f_{\\mathrm{n},t}" in derivation.to_latex()
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is required in CI to check the LaTeX documents")
        pytest.skip("pdflatex not installed; the LaTeX documents are not compiled")
    tex = tmp_path / "minlstm_fn.tex"
    tex.write_text(derivation.to_latex())
    assert compile_pdf(tex).stat().st_size > 0
