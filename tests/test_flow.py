"""symbptt flow: the chain ∂h_T/∂h_t and each step's term of ∂L/∂W_hh, against torch autograd."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import derivation, generated

from symbptt.cli import main
from symbptt.flow import command as flow

CASES = {
    "rnn_tanh": dict(cell="rnn", steps=4, input_size=2, hidden_size=3),
    "rnn_relu": dict(cell="rnn", steps=4, input_size=2, hidden_size=3, nonlinearity="relu"),
    "lstm": dict(cell="lstm", steps=4, input_size=2, hidden_size=3),
    "lstm_proj": dict(cell="lstm", steps=3, input_size=2, hidden_size=3, proj_size=2),
    "gru": dict(cell="gru", steps=4, input_size=2, hidden_size=3),
    "gru_cell": dict(cell="gru_cell", input_size=2, hidden_size=3),
}
SEED = 3
"""A seed whose relu RNN keeps units alive at every step (so its chain is not all zeros)."""


def _states(spec, module, x, t: int) -> tuple[torch.Tensor, ...]:
    """torch's own state after t steps from zeros (unbatched), as leaves."""
    sizes = [spec.output_size] + ([spec.hidden_size] if spec.family == "lstm" else [])
    states = tuple(torch.zeros(n, dtype=torch.float64) for n in sizes)
    if t:
        with torch.no_grad():
            states = _torch_steps(spec, module, x[:t], states)
    return states


def _torch_steps(spec, module, x, states):
    """Run torch's module over x (L, I) from the unbatched states; return the final states."""
    if spec.is_cell:
        (step,) = x
        out = module(step, states if spec.family == "lstm" else states[0])
        return tuple(out) if spec.family == "lstm" else (out,)
    hx = tuple(s.unsqueeze(0) for s in states)
    _, final = module(x, hx if spec.family == "lstm" else hx[0])
    final = final if spec.family == "lstm" else (final,)
    return tuple(s.squeeze(0) for s in final)


def torch_chain(spec, module, x, t: int) -> torch.Tensor:
    """∂s_T/∂s_t by torch.autograd.functional.jacobian of torch's module run from step t."""
    states = _states(spec, module, x, t)
    if t == spec.steps:
        return torch.eye(sum(s.numel() for s in states), dtype=torch.float64)

    def final(*start):
        return torch.cat(_torch_steps(spec, module, x[t:], start))

    blocks = torch.autograd.functional.jacobian(final, states)
    return torch.cat(blocks, dim=1)


def _setup(case: str):
    kwargs = CASES[case]
    d = derivation(**kwargs)
    module = flow.reference_module(d.spec, SEED)
    x = torch.randn(
        d.spec.steps, d.spec.input_size, generator=torch.Generator().manual_seed(SEED)
    ).double()
    return kwargs, d, module, x


@pytest.mark.parametrize("case", list(CASES))
def test_chain_norms_equal_torch_autograd(case):
    kwargs, d, module, x = _setup(case)
    result = flow.gradient_flow(
        d, module, x, module_generated=generated(**kwargs), keep_matrices=True
    )
    assert result.ok, result.errors
    assert [r.t for r in result.rows] == list(range(d.spec.steps, -1, -1))
    assert result.rows[-1].spectral > 1e-6  # a chain that is not all zeros
    for row, chain in zip(result.rows, result.chains, strict=True):
        theirs = torch_chain(d.spec, module, x, row.t)
        torch.testing.assert_close(chain, theirs, rtol=1e-10, atol=1e-12)
        assert row.spectral == pytest.approx(torch.linalg.matrix_norm(theirs, 2).item(), rel=1e-10)
        assert row.frobenius == pytest.approx(torch.linalg.matrix_norm(theirs).item(), rel=1e-10)
        expected = torch.linalg.svdvals(theirs).tolist()
        assert list(row.singular_values) == pytest.approx(expected, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("case", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("loss", ["h_n", "output"])
def test_step_terms_equal_generated_terms_and_torch_total(case, loss):
    kwargs, d, module, x = _setup(case)
    mod = generated(**kwargs)
    result = flow.gradient_flow(d, module, x, loss=loss, module_generated=mod)
    weights = dict(module.named_parameters())
    lstm = d.spec.family == "lstm"
    h0 = torch.zeros(1, d.spec.output_size, dtype=torch.float64)
    c0 = torch.zeros(1, d.spec.hidden_size, dtype=torch.float64)
    args = (weights["weight_ih_l0"], weights["weight_hh_l0"])
    biases = (weights["bias_ih_l0"], weights["bias_hh_l0"])
    xb = x.unsqueeze(1)
    with torch.no_grad():
        states = (h0, c0) if lstm else (h0,)
        output, saved = mod.forward(xb, *states, *args, *biases)
        g_out = torch.ones_like(output) if loss == "output" else torch.zeros_like(output)
        g_h = torch.zeros_like(h0) if loss == "output" else torch.ones_like(h0)
        finals = (g_h, torch.zeros_like(c0)) if lstm else (g_h,)
        grads = mod.backward(xb, *states, saved, *args, g_out, *finals, per_step=True)
    terms = grads["per_step"]["weight_hh_l0"]
    norms = [r.contribution for r in result.rows if r.contribution is not None]
    expected = [torch.linalg.matrix_norm(terms[t - 1]).item() for t in range(d.spec.steps, 0, -1)]
    assert norms == pytest.approx(expected, rel=1e-12)
    # the terms sum to torch autograd's ∂L/∂W_hh
    out, hx = module(x, (h0, c0) if lstm else h0)
    total = out.sum() if loss == "output" else (hx[0] if lstm else hx).sum()
    (theirs,) = torch.autograd.grad(total, weights["weight_hh_l0"])
    torch.testing.assert_close(terms.sum(0), theirs, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(result.per_step.sum(0), theirs, rtol=1e-10, atol=1e-14)


def test_symbolic_rnn_chain_text_and_latex():
    lines = flow.symbolic_lines(derivation(steps=3, input_size=1, hidden_size=2))
    assert lines[0] == "∂hₜ/∂hₜ₋₁ = diag(1 − hₜ ⊙ hₜ) W_hh = Dₜ W_hh"
    assert "Dₜ = diag(1 − hₜ ⊙ hₜ)" in lines
    assert any(line.startswith("∂h_T/∂hₜ = Π_{k=t+1}^{T} Dₖ W_hh") for line in lines)
    assert "∂h₃/∂h₀ = D₃ W_hh D₂ W_hh D₁ W_hh" in lines
    relu = flow.symbolic_lines(
        derivation(steps=2, input_size=1, hidden_size=2, nonlinearity="relu")
    )
    assert "Dₜ = diag([hₜ > 0])" in relu
    tex = flow.symbolic_lines(derivation(steps=3, input_size=1, hidden_size=2), "latex")
    assert r"\prod_{k=t+1}^{T} D_{k} W_{\mathrm{hh}}" in "\n".join(tex)
    assert r"\operatorname{diag}\left(1 - h_{t} \odot h_{t}\right)" in "\n".join(tex)


def test_symbolic_lstm_and_gru_in_their_own_form():
    lstm = flow.symbolic_lines(derivation(cell="lstm", steps=3, input_size=2, hidden_size=3))
    assert "∂cₜ/∂cₜ₋₁ = diag(fₜ)" in lstm
    assert "∂cₜ/∂hₜ₋₁ = diag(cₜ₋₁) ∂fₜ/∂hₜ₋₁ + diag(c̃ₜ) ∂iₜ/∂hₜ₋₁ + diag(iₜ) ∂c̃ₜ/∂hₜ₋₁" in lstm
    assert any(line.startswith("Jₜ = ∂(hₜ, cₜ)/∂(hₜ₋₁, cₜ₋₁) = [") for line in lstm)
    gru = flow.symbolic_lines(derivation(cell="gru", steps=3, input_size=2, hidden_size=3))
    (step,) = [line for line in gru if line.startswith("Jₜ = ∂hₜ/∂hₜ₋₁")]
    assert "diag(1 − zₜ) ∂nₜ/∂hₜ₋₁" in step and step.endswith("+ diag(zₜ)")


def test_cli_text_output(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["flow", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "∂hₜ/∂hₜ₋₁ = diag(1 − hₜ ⊙ hₜ) W_hh" in out
    assert "‖∂h_T/∂hₜ‖₂" in out and "singular values" in out
    assert "\nsummary: neither vanishing nor exploding over 3 steps" in out
    assert "checked against torch.nn.RNN autograd" in out and "MISMATCH" not in out
    assert max(len(line) for line in out.splitlines()) <= 100
    table = out[out.index("  t  ") :].splitlines()
    assert [line.split()[0] for line in table[1:5]] == ["3", "2", "1", "0"]


def test_cli_latex_markdown_json(capsys):
    assert main(["flow", "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\prod_{k=t+1}^{T}" in out and r"\operatorname{diag}" in out
    assert main(["flow", "--format", "markdown", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Gradient flow: torch.nn.GRU") and "|---|" in out
    assert main(["flow", "--format", "json", "--cell", "lstm", "--latex"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == ["h", "c"] and data["check"]["ok"]
    assert data["symbolic"]["format"] == "latex"
    assert [row["t"] for row in data["rows"]] == [3, 2, 1, 0]
    assert len(data["rows"][0]["singular_values"]) == 4  # h and c, 2 each
    assert data["rows"][-1]["step_term_norm"] is None


def test_vanishing_is_flagged(capsys):
    assert main(["flow", "--steps", "24", "--hidden-size", "4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "vanishing"
    assert data["rows"][-1]["note"] == "vanishing"


def test_plot_png_and_svg(tmp_path, capsys):
    import matplotlib  # noqa: F401  (the [plot] extra, also in [test]: a missing one fails here)

    png, svg = tmp_path / "flow.png", tmp_path / "flow.svg"
    assert main(["flow", "--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert main(["flow", "--cell", "lstm", "--plot", str(svg)]) == 0
    text = svg.read_text()
    assert "<svg" in text and "</svg>" in text and len(text) > 5000
    # our own plot is overwritten; a file we did not write is not, unless --force
    assert main(["flow", "--plot", str(png)]) == 0
    other = tmp_path / "mine.png"
    other.write_bytes(b"not ours")
    capsys.readouterr()
    assert main(["flow", "--plot", str(other)]) == 2
    assert "--force" in capsys.readouterr().err
    assert other.read_bytes() == b"not ours"
    assert main(["flow", "--plot", str(other), "--force"]) == 0
    assert other.read_bytes().startswith(b"\x89PNG")


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("symbptt: error: ") and err.count("\n") == 1, err
    assert captured.out == ""
    return err


def test_bad_plot_suffix(tmp_path, capsys):
    err = _one_line_error(capsys, ["flow", "--plot", str(tmp_path / "flow.pdf")])
    assert ".png or .svg" in err
    assert not (tmp_path / "flow.pdf").exists()


def test_missing_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    err = _one_line_error(capsys, ["flow", "--plot", str(tmp_path / "flow.png")])
    assert "pip install 'symbptt[plot]'" in err


def test_bad_weights(tmp_path, capsys):
    spec = derivation(steps=3, input_size=1, hidden_size=2).spec
    good = flow.reference_module(spec, 7).state_dict()
    wrong_key = dict(good)
    wrong_key["weight_hh"] = wrong_key.pop("weight_hh_l0")
    wrong_shape = dict(good, weight_hh_l0=torch.zeros(3, 3))
    files = {
        "key.pt": (wrong_key, "missing weight_hh_l0"),
        "shape.pt": (wrong_shape, "weight_hh_l0 has shape (3, 3)"),
        "list.pt": ([1, 2], "expected a state_dict"),
    }
    for name, (content, message) in files.items():
        torch.save(content, tmp_path / name)
        err = _one_line_error(capsys, ["flow", "--weights", str(tmp_path / name)])
        assert message in err
    (tmp_path / "junk.pt").write_text("junk")
    assert "not a file torch.save wrote" in _one_line_error(
        capsys, ["flow", "--weights", str(tmp_path / "junk.pt")]
    )
    assert "no such file" in _one_line_error(
        capsys, ["flow", "--weights", str(tmp_path / "none.pt")]
    )


def test_weights_and_input_files(tmp_path, capsys):
    spec = derivation(steps=3, input_size=1, hidden_size=2).spec
    torch.save(flow.reference_module(spec, 7).state_dict(), tmp_path / "w.pt")
    assert main(["flow", "--seed", "7", "--format", "json"]) == 0
    by_seed = json.loads(capsys.readouterr().out)["rows"]
    assert (
        main(["flow", "--weights", str(tmp_path / "w.pt"), "--seed", "7", "--format", "json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == by_seed
    x = torch.randn(5, 1, dtype=torch.float64)
    torch.save(x, tmp_path / "x.pt")
    assert main(["flow", "--input", str(tmp_path / "x.pt"), "--format", "json"]) == 0
    assert [row["t"] for row in json.loads(capsys.readouterr().out)["rows"]] == [5, 4, 3, 2, 1, 0]
    err = _one_line_error(capsys, ["flow", "--input", str(tmp_path / "x.pt"), "--steps", "3"])
    assert "shape (5, 1)" in err


def test_unsupported_specs(capsys):
    err = _one_line_error(capsys, ["flow", "--num-layers", "2"])
    assert "one layer in one direction" in err


def test_python_m_symbptt_flow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "symbptt", "flow", "--cell", "gru", "--plot", "bad.jpg"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and ".png or .svg" in result.stderr
