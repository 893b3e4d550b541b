"""The LaTeX and Markdown documents: they compile, every tag is unique, the PDF fits the page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import derivation
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, Transpose

from symbptt.errors import CodegenError
from symbptt.fileio import GENERATED_MARKER
from symbptt.matexpr import Elementwise
from symbptt.printing import document
from symbptt.printing.latex import latex
from symbptt.unrolled import MAX_STEPS

SPECS = {
    "t1": dict(steps=1),
    "default": dict(steps=3, input_size=1, hidden_size=2),
    "relu-nobias": dict(steps=3, input_size=3, hidden_size=4, nonlinearity="relu", bias=False),
    "t8": dict(steps=8, input_size=2, hidden_size=3),
    "t20-loop": dict(steps=20, loop=True),
}
OVERFULL_PT = 20.0

_TAG = re.compile(r"\\tag\{([^{}]*)\}")
_OVERFULL = re.compile(r"Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\)")


def _pdflatex() -> str:
    path = shutil.which("pdflatex")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is required in CI to check the LaTeX documents")
        pytest.skip("pdflatex not installed; the LaTeX documents are not compiled")
    return path


def _expected_tags(spec: dict) -> list[str]:
    d = derivation(**spec)
    steps = d.spec.steps
    return (
        [f"F{k}" for k in range(1, steps + 1)]
        + [f"B{k}" for k in range(steps, 0, -1)]
        + [g.label for g in d.gradients]
    )


@pytest.mark.parametrize("name", SPECS)
def test_latex_document_compiles(name, tmp_path):
    pdflatex = _pdflatex()
    spec = SPECS[name]
    tex = tmp_path / "doc.tex"
    tex.write_text(derivation(**spec).to_latex(), encoding="utf-8")
    result = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", tex.name],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    log = (tmp_path / "doc.log").read_text(encoding="latin-1")
    assert result.returncode == 0, log[-3000:]
    pdf = tmp_path / "doc.pdf"
    assert pdf.is_file() and pdf.stat().st_size > 0
    if spec["steps"] <= MAX_STEPS:
        overfull = [float(width) for width in _OVERFULL.findall(log)]
        assert all(width <= OVERFULL_PT for width in overfull), (
            f"overfull boxes {overfull} pt in\n" + "\n".join(_overfull_context(log))
        )


def _overfull_context(log: str) -> list[str]:
    lines = log.splitlines()
    return [
        "\n".join(lines[i : i + 3]) for i, line in enumerate(lines) if line.startswith("Overfull")
    ]


@pytest.mark.parametrize("name", SPECS)
def test_latex_tags_unique_and_complete(name):
    spec = SPECS[name]
    tex = derivation(**spec).to_latex()
    tags = _TAG.findall(tex)
    assert len(tags) == len(set(tags)), sorted(t for t in tags if tags.count(t) > 1)
    expected = _expected_tags(spec)
    assert set(expected) <= set(tags)
    assert [t for t in tags if t in expected] == expected  # F1..FT, BT..B1, G1.. in this order
    assert "F$_t$" in tags and "B$_t$" in tags
    unrolled = [t for t in tags if t.startswith("U")]
    assert bool(unrolled) == (spec["steps"] <= MAX_STEPS)
    assert GENERATED_MARKER in tex[:2000]
    assert tex.lstrip().startswith("%")


@pytest.mark.parametrize("name", SPECS)
def test_markdown_display_math_and_tags(name):
    spec = SPECS[name]
    md = derivation(**spec).to_markdown()
    assert md.splitlines()[0].startswith("<!--") and md.splitlines()[0].endswith("-->")
    assert GENERATED_MARKER in md.splitlines()[0]
    assert "\\begin{document}" not in md
    opened = False
    blocks = 0
    for line in md.splitlines():
        count = line.count("$$")
        if count == 0:
            assert not (opened and line.startswith("#")), "a heading inside display math"
            assert not (opened and not line.strip()), "a blank line inside display math"
            continue
        assert line.strip() == "$$", f"$$ not on a line of its own: {line!r}"
        opened = not opened
        blocks += not opened
    assert not opened, "a $$ block is never closed"
    assert blocks >= len(_expected_tags(spec))
    tex_tags = _TAG.findall(derivation(**spec).to_latex())
    md_tags = _TAG.findall(md)
    assert md_tags == tex_tags
    assert len(md_tags) == len(set(md_tags))


def test_common_mistake_only_from_three_steps():
    assert "A common mistake" not in derivation(steps=2).to_latex()
    tex = derivation(steps=3, input_size=1, hidden_size=2).to_latex()
    assert "A common mistake" in tex
    chain = r"D_{1} W_{\mathrm{hh}}^{\top} D_{2} W_{\mathrm{hh}}^{\top} D_{3} g_{n} x_{1}^{\top}"
    assert chain in tex
    assert "A common mistake" in derivation(steps=20, loop=True).to_markdown()


def test_long_documents_say_where_chains_stop():
    tex = derivation(steps=20, loop=True).to_latex()
    assert f"T \\le {MAX_STEPS}" in tex
    assert "\\tag{U" not in tex


def test_long_sums_are_broken():
    tex = derivation(steps=8, input_size=2, hidden_size=3).to_latex()
    assert "\\begin{aligned}" in tex
    for body in re.findall(r"\\begin\{aligned\}(.*?)\\end\{aligned\}", tex, re.S):
        for row in body.split("\\\\"):
            assert row.count(" + ") <= document.MAX_TERMS_PER_LINE


def test_repr_latex_is_display_math():
    summary = derivation(steps=3, input_size=1, hidden_size=2)._repr_latex_()
    assert summary.startswith("$$") and summary.endswith("$$")
    assert summary.count("$$") == 2
    assert "\\begin{aligned}" in summary and "\\sum_{t=1}^{T}" in summary


def test_printer_notation():
    a, b = MatrixSymbol("a[t]", 2, 1), MatrixSymbol("b[t]", 2, 1)
    w = MatrixSymbol("W_hh", 2, 2)
    assert latex(MatMul(w, MatAdd(a, b))) == r"W_{\mathrm{hh}} \left(a_{t} + b_{t}\right)"
    assert latex(Transpose(w)) == r"W_{\mathrm{hh}}^{\top}"
    assert latex(Transpose(MatAdd(a, b))) == r"\left(a_{t} + b_{t}\right)^{\top}"
    product = HadamardProduct(a, Elementwise("dtanh", b))
    assert latex(product) == r"a_{t} \odot \left(1 - b_{t} \odot b_{t}\right)"
    assert latex(MatMul(w, product)) == (
        r"W_{\mathrm{hh}} \left(a_{t} \odot \left(1 - b_{t} \odot b_{t}\right)\right)"
    )
    assert latex(Elementwise("tanh", a)) == r"\tanh\left(a_{t}\right)"
    assert latex(MatrixSymbol("g[n]", 2, 1)) == "g_{n}"


def test_compile_pdf_writes_the_pdf(tmp_path):
    _pdflatex()
    tex = tmp_path / "doc.tex"
    tex.write_text(derivation(steps=2).to_latex(), encoding="utf-8")
    pdf = document.compile_pdf(tex)
    assert pdf == tmp_path / "doc.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.pdf", "doc.tex"]


def test_compile_pdf_reports_the_latex_error(tmp_path):
    _pdflatex()
    tex = tmp_path / "bad.tex"
    tex.write_text(
        "\\documentclass{article}\n\\begin{document}\n\\undefinedcommand\n\\end{document}\n"
    )
    with pytest.raises(CodegenError, match="Undefined control sequence") as info:
        document.compile_pdf(tex)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.pdf").exists()


def test_compile_pdf_without_pdflatex(tmp_path, monkeypatch):
    monkeypatch.setattr(document.shutil, "which", lambda name: None)
    tex = tmp_path / "doc.tex"
    tex.write_text("\\documentclass{article}\n")
    with pytest.raises(CodegenError, match="pdflatex not found"):
        document.compile_pdf(Path(tex))
