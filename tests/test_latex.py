"""The LaTeX and Markdown documents: they compile, every tag is unique, the PDF fits the page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import derivation
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from symbptt.core.matexpr import Elementwise
from symbptt.core.program import Assignment
from symbptt.core.unrolled import MAX_STEPS
from symbptt.errors import CodegenError
from symbptt.fileio import GENERATED_MARKER
from symbptt.printing import document
from symbptt.printing.latex import latex

SPECS = {
    "t1": dict(steps=1),
    "default": dict(steps=3, input_size=1, hidden_size=2),
    "relu-nobias": dict(steps=3, input_size=3, hidden_size=4, nonlinearity="relu", bias=False),
    "t8": dict(steps=8, input_size=2, hidden_size=3),
    "t20-loop": dict(steps=20, loop=True),
    "lstm": dict(cell="lstm", steps=3, input_size=2, hidden_size=3),
    "lstm-proj": dict(cell="lstm", steps=3, input_size=2, hidden_size=3, proj_size=2),
    "lstm-proj-t8": dict(cell="lstm", steps=8, input_size=4, hidden_size=4, proj_size=3),
    "lstm-t20-loop": dict(cell="lstm", steps=20, input_size=2, hidden_size=3, loop=True),
    "gru": dict(cell="gru", steps=3, input_size=2, hidden_size=3),
    "gru-nobias": dict(cell="gru", steps=3, input_size=3, hidden_size=4, bias=False),
    "gru-t8": dict(cell="gru", steps=8, input_size=4, hidden_size=4),
    "rnn_cell": dict(cell="rnn_cell", input_size=2, hidden_size=3),
    "lstm_cell": dict(cell="lstm_cell", input_size=2, hidden_size=3),
    "gru_cell": dict(cell="gru_cell", input_size=3, hidden_size=4, bias=False),
    "lstm-network": dict(
        cell="lstm",
        steps=3,
        input_size=2,
        hidden_size=3,
        num_layers=2,
        bidirectional=True,
        dropout=0.25,
        packed=True,
    ),
    "rnn-packed": dict(steps=4, input_size=2, hidden_size=2, packed=True, bidirectional=True),
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


def _expected_unrolled_tags(spec: dict) -> list[str]:
    """U tags: RNN chains for sums and h_0, per-step sums of LSTM/GRU; none for cells, long T."""
    d = derivation(**spec)
    if d.spec.is_cell or d.spec.steps > MAX_STEPS:
        return []
    chains = d.spec.family == "rnn" and not d.spec.packed
    return [f"U{g.label[1:]}" for g in d.gradients if g.summed or (chains and g.once)]


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
    if derivation(**spec).spec.steps <= MAX_STEPS:
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
    d = derivation(**spec)
    tex = d.to_latex()
    tags = _TAG.findall(tex)
    assert len(tags) == len(set(tags)), sorted(t for t in tags if tags.count(t) > 1)
    expected = _expected_tags(spec)
    assert set(expected) <= set(tags)
    assert [t for t in tags if t in expected] == expected  # F1..FT, BT..B1, G1.. in this order
    # a cell is one step: its equations are shown once, at t = 1, without the generic step
    generic = set() if d.spec.is_cell else {"F$_t$", "B$_t$"}
    unrolled = [t for t in tags if t.startswith("U")]
    assert unrolled == _expected_unrolled_tags(spec)
    assert set(tags) == set(expected) | set(unrolled) | generic
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
    assert "\\texttt" not in md
    table = [line for line in md.splitlines() if line.startswith("| $")]
    assert table and all(line.count("|") == 5 for line in table), "a | inside a table cell"
    for parameter in derivation(**spec).parameters:
        if len(parameter.blocks) > 1:
            assert f"### `{parameter.torch_name}` $= [" in md


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


@pytest.mark.parametrize("name", ["t8", "lstm-proj-t8", "gru-t8"])
def test_long_sums_are_broken(name):
    tex = derivation(**SPECS[name]).to_latex()
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


def test_printer_signs_and_ones():
    z, n = MatrixSymbol("z[t]", 2, 1), MatrixSymbol("n[t]", 2, 1)
    one_minus_z = MatAdd(OneMatrix(2, 1), MatMul(-1, z))
    assert latex(OneMatrix(2, 1)) == "1"
    assert latex(MatMul(-1, z)) == "-z_{t}"
    assert latex(one_minus_z) == "1 - z_{t}"
    assert latex(HadamardProduct(one_minus_z, n)) == r"\left(1 - z_{t}\right) \odot n_{t}"
    negative = MatMul(-1, HadamardProduct(z, n))
    assert latex(negative) == r"-\left(z_{t} \odot n_{t}\right)"
    assert latex(MatAdd(n, negative)) == r"n_{t} - \left(z_{t} \odot n_{t}\right)"
    tex = derivation(**SPECS["gru"]).to_latex()
    assert r"h_{t} &= \left(1 - z_{t}\right) \odot n_{t} + z_{t} \odot h_{t-1}" in tex
    assert "+ -" not in tex and "OneMatrix" not in tex and "-1 " not in tex


@pytest.mark.parametrize("name", ["lstm", "lstm-proj", "gru-nobias", "lstm_cell", "gru_cell"])
def test_table_lists_every_symbol(name):
    d = derivation(**SPECS[name])
    tex = d.to_latex()
    table = tex[tex.index("meaning \\\\") : tex.index("\\section{Forward equations}")]
    rows = {line.split(" & ")[0]: line for line in table.splitlines() if line.startswith("$")}
    symbols = [
        *d.step.blocks,
        *d.step.inputs,
        *(a.target for a in d.step.assignments),
        d.adjoint.cotangent,
        *(s.final for s in d.step.states),
        *(a.target for a in d.backward_step),
    ]
    for symbol in symbols:
        row = rows.get(f"${latex(symbol)}$")
        assert row is not None, f"{symbol} is not in the table"
        meaning = row.split(" & ")[3]
        assert meaning.replace("\\\\", "").strip(), f"{symbol} has no meaning"
    assert len(rows) == len(symbols)


def test_stacked_blocks_name_their_rows():
    tex = derivation(**SPECS["lstm-proj"]).to_latex()
    h = 3
    for k, gate in enumerate("ifgo"):
        rows = f"{k * h}:{(k + 1) * h}"
        assert (
            f"$W_{{\\mathrm{{i{gate}}}}}$ & $H \\times I$ & $3 \\times 2$ & " in tex
            and f"rows \\texttt{{{rows}}} of \\texttt{{weight\\_ih\\_l0}}" in tex
        )
    assert "$W_{\\mathrm{hi}}$ & $H \\times P$ & $3 \\times 2$" in tex
    assert "$W_{\\mathrm{hr}}$ & $P \\times H$ & $2 \\times 3$" in tex
    assert "$h_{t}$ & $P \\times 1$ & $2 \\times 1$" in tex
    heading = (
        "\\subsection*{\\texttt{weight\\_hh\\_l0} $= [W_{\\mathrm{hi}}; W_{\\mathrm{hf}}; "
        "W_{\\mathrm{hg}}; W_{\\mathrm{ho}}]$}"
    )
    assert heading in tex
    assert "\\subsection*{\\texttt{weight\\_hr\\_l0} $= W_{\\mathrm{hr}}$}" in tex
    gru = derivation(**SPECS["gru"]).to_latex()
    assert "rows \\texttt{6:9} of \\texttt{bias\\_hh\\_l0}" in gru
    assert "\\subsection*" not in derivation(**SPECS["default"]).to_latex()


def test_boundary_of_every_state():
    tex = derivation(**SPECS["lstm-proj"]).to_latex()
    boundary = tex[tex.index("nothing comes back from a later step") :]
    boundary = boundary[: boundary.index("Unrolled, in the order")]
    first, second = boundary.split(r", \qquad ")
    assert first.endswith(r"\bar{h}_{3} = g_{3} + g_{n}")
    assert second.startswith(r"\bar{c}_{3} = g^{c}_{n} + \bar{q}_{3} \odot o_{3}")


def test_many_assignments_one_per_line():
    d = derivation(**SPECS["lstm"])
    tex = d.to_latex()
    step = tex[tex.index("\\begin{aligned}") : tex.index("\\tag{F$_t$}")]
    assert step.count("&=") == len(d.step.assignments) == 10
    assert "\\tag{F3}" in tex and "\\tag{B$_t$}" in tex
    assert "carry" not in tex
    assert r"\bar{h}_{t} &= g_{t} + W_{\mathrm{hi}}^{\top} \delta^{i}_{t+1}" in tex


@pytest.mark.parametrize("name", ["rnn_cell", "lstm_cell", "gru_cell"])
def test_cells_are_one_step(name):
    d = derivation(**SPECS[name])
    for document_text in (d.to_latex(), d.to_markdown()):
        assert "a single step" in document_text
        assert "F$_t$" not in document_text and "B$_t$" not in document_text
        assert "\\sum_{t=1}^{T}" not in document_text
        assert "Unrolled" not in document_text and "Per-step sums" not in document_text
        assert "A common mistake" not in document_text
    tex = d.to_latex()
    assert f"one step of \\texttt{{torch.nn.{d.spec.torch_class}}}" in tex
    assert r"\frac{\partial L}{\partial x_{1}} = " in tex


def test_per_step_sums_for_lstm_and_gru():
    tex = derivation(**SPECS["lstm"]).to_latex()
    assert "Per-step sums for $T = 3$" in tex
    expected = (
        r"\frac{\partial L}{\partial W_{\mathrm{hi}}} = \delta^{i}_{1} h_{0}^{\top} + "
        r"\delta^{i}_{2} h_{1}^{\top} + \delta^{i}_{3} h_{2}^{\top}"
    )
    assert expected in tex
    assert "\\tag{U5}" in tex and "D_{t}" not in tex
    long = derivation(**SPECS["lstm-t20-loop"]).to_latex()
    assert "\\tag{U" not in long and f"T \\le {MAX_STEPS}" in long


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


def test_long_assignment_is_broken_with_its_signs():
    terms = [MatrixSymbol(f"x[{k}]", 2, 1) for k in range(1, 31)]
    value = MatAdd(*[MatMul(-1, x) if k % 3 == 0 else x for k, x in enumerate(terms)])
    target = MatrixSymbol("y[t]", 2, 1)
    body = document._assignments([Assignment(target, value, "F")] * 3)
    rows = body.split(" \\\\\n")
    assert rows[0] == "\\begin{aligned}\ny_{t} &= -x_{1} + x_{2} + x_{3} - x_{4}"
    assert rows[1] == r"&\quad + x_{5} + x_{6} - x_{7} + x_{8}"
    assert "+ -" not in body


def test_network_section():
    tex = derivation(**SPECS["lstm-network"]).to_latex()
    assert r"\section{Layers and directions}" in tex
    assert "dropout mask" in tex and "PackedSequence" in tex
    md = derivation(**SPECS["lstm-network"]).to_markdown()
    assert "### Layers and directions" in md
    assert "Layers and directions" not in derivation(**SPECS["default"]).to_latex()
