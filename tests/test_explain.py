"""``symbptt explain``: one run with numbers, each step's term of every gradient, against
torch autograd computed here, independently of symbptt."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import symbptt.verification.agreement
from symbptt.cli import main

FOUNDING_W_IH = [2.0941, 0.1053]
"""∂L/∂W_ih of nn.RNN(1, 2), seed 0, x = [1, 2, 3], L = h_n.sum() (docs/FOUNDING_CASE.md)."""


def explain(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["explain", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def explain_json(capsys, *args: str) -> dict:
    status, out, err = explain(capsys, *args, "--format", "json")
    assert status == 0, err
    assert err == ""
    return json.loads(out)


TORCH_CLASS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "gru_cell": "GRUCell"}


def torch_grads(cell: str, state_dict: dict, x: torch.Tensor, loss: str = "hn") -> dict:
    """torch's own module in float64 with these weights; autograd of the loss."""
    module = getattr(torch.nn, TORCH_CLASS[cell])(
        x.shape[-1], state_dict["weight_hh" + ("" if cell.endswith("_cell") else "_l0")].shape[1]
    ).double()
    module.load_state_dict(state_dict)
    result = module(x.double())
    if cell.endswith("_cell"):
        value = result.sum()
    else:
        output, state = result
        h_n = state[0] if cell == "lstm" else state
        value = h_n.sum() if loss == "hn" else output.sum()
    value.backward()
    return {name: p.grad for name, p in module.named_parameters()}


def check_gradients(data: dict, expected: dict) -> None:
    assert set(data["gradients"]) == set(expected)
    for name, grad in expected.items():
        entry = data["gradients"][name]
        per_step = torch.tensor(entry["per_step"], dtype=torch.float64)
        assert per_step.shape[1:] == grad.shape
        assert torch.allclose(per_step.sum(0), grad, rtol=0, atol=1e-12), name
        assert torch.allclose(torch.tensor(entry["sum"], dtype=torch.float64), grad, atol=1e-12)
        assert entry["max_abs_diff"] < 1e-12
        shares = [s for s in entry["shares"] if s is not None]
        if entry["share_kind"] == "norm" and shares:
            assert sum(shares) == pytest.approx(1.0)
    assert data["ok"] is True
    assert data["max_abs_diff"] < 1e-12


def test_founding_case_json_matches_torch_computed_here(capsys):
    data = explain_json(capsys, "--input", "1,2,3")
    torch.manual_seed(0)
    rnn = torch.nn.RNN(input_size=1, hidden_size=2)
    x = torch.tensor([[1.0], [2.0], [3.0]])
    _, h_n = rnn(x)
    h_n.sum().backward()
    ours = torch.tensor(data["gradients"]["weight_ih_l0"]["sum"])
    assert torch.allclose(ours.float(), rnn.weight_ih_l0.grad, atol=1e-5)
    assert [round(v, 4) for v in ours.reshape(-1).tolist()] == FOUNDING_W_IH
    state = {k: v.detach().double() for k, v in rnn.state_dict().items()}
    check_gradients(data, torch_grads("rnn", state, x))
    assert torch.equal(torch.tensor(data["weights"]["weight_hh_l0"]).float(), rnn.weight_hh_l0)
    assert data["input"] == [[1.0], [2.0], [3.0]]
    assert data["loss"]["name"] == "h_n"
    h = torch.tensor(data["forward"]["h"])
    assert h.shape == (3, 2)
    assert data["loss"]["value"] == pytest.approx(h[-1].sum().item())
    assert torch.tensor(data["adjoints"]["delta"]).shape == (3, 2)
    # δ₃ = gₙ ⊙ (1 − h₃²) for L = h_n.sum()
    assert data["adjoints"]["delta"][2] == pytest.approx((1 - h[2] ** 2).tolist())


def test_founding_case_text(capsys):
    status, out, err = explain(capsys, "--input", "1,2,3")
    assert status == 0, err
    assert err == ""
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "torch.nn.RNN(input_size=1, hidden_size=2), 3 steps" in out
    assert "torch.manual_seed(0)" in out
    for name in ("h₁", "h₃", "δ₁", "δ₃", "weight_ih_l0", "weight_hh_l0", "bias_hh_l0"):
        assert name in out
    assert "(G1) ∂L/∂W_ih = Σₜ δₜ xₜᵀ" in out
    # the W_ih table: steps, then the sum and torch's .grad (a 2×1 matrix: rows split by ;)
    start = next(i for i, line in enumerate(lines) if "(G1)" in line)
    table = lines[start + 1 : start + 9]
    assert table[0].split() == ["t", "term", "‖term‖", "share"]
    rows = [line for line in table[2:] if not line.strip().startswith("·")]
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "sum", "torch"]
    founding = r"\[\s*2\.0941;\s+0\.1053\]"
    assert re.search(founding, rows[3]) and re.search(founding, rows[4])
    assert sum(float(row.split()[-2]) for row in rows[:3]) == pytest.approx(100.0, abs=0.2)
    assert len({row.index("]") for row in rows}) == 1  # aligned columns
    assert len({row.rindex("%") for row in rows[:3]}) == 1
    assert out.count("(matches)") == 4 and "MISMATCH" not in out


@pytest.mark.parametrize(
    "cell, options",
    [
        ("rnn", ["--input-size", "2", "--hidden-size", "3", "--steps", "4"]),
        ("lstm", ["--input-size", "2", "--hidden-size", "3"]),
        ("gru", ["--input-size", "2", "--hidden-size", "3"]),
        ("gru_cell", ["--input-size", "3", "--hidden-size", "2"]),
    ],
)
def test_weights_and_input_files(capsys, tmp_path, cell, options):
    """Per-step terms sum to torch's grads for weights and input written here."""
    sizes = dict(zip(options[::2], options[1::2], strict=True))
    in_size, hidden = int(sizes["--input-size"]), int(sizes["--hidden-size"])
    torch.manual_seed(123)
    module = getattr(torch.nn, TORCH_CLASS[cell])(in_size, hidden)
    state = {k: v.detach().double() * 2 for k, v in module.state_dict().items()}
    torch.save(state, tmp_path / "weights.pt")
    shape = (in_size,) if cell.endswith("_cell") else (int(sizes.get("--steps", 3)), in_size)
    x = torch.randn(*shape, dtype=torch.float64)
    torch.save(x, tmp_path / "x.pt")
    args = ["--cell", cell, *options]
    args += ["--weights", str(tmp_path / "weights.pt"), "--input", str(tmp_path / "x.pt")]
    data = explain_json(capsys, *args)
    check_gradients(data, torch_grads(cell, state, x))
    assert torch.equal(torch.tensor(data["input"], dtype=torch.float64), x)
    for name, value in state.items():
        assert torch.equal(torch.tensor(data["weights"][name], dtype=torch.float64), value)
    if cell == "lstm":
        assert {"i", "f", "ct", "o", "c", "h"} <= set(data["forward"])
        assert {"delta_i", "delta_f", "delta_g", "delta_o"} <= set(data["adjoints"])
    if cell.startswith("gru"):
        assert {"r", "z", "n", "h"} <= set(data["forward"])
    status, out, err = explain(capsys, *args)  # the same as text
    assert status == 0 and err == ""
    assert max(len(line) for line in out.splitlines()) <= 100


def test_loss_output_and_seed(capsys):
    data = explain_json(capsys, "--cell", "lstm", "--seed", "5", "--loss", "output")
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(1, 2)
    state = {k: v.detach().double() for k, v in lstm.state_dict().items()}
    x = torch.tensor(data["input"], dtype=torch.float64)
    check_gradients(data, torch_grads("lstm", state, x, loss="output"))
    assert data["loss"]["expression"] == "L = output.sum()"


def test_scalar_parameter_share_is_signed(capsys):
    data = explain_json(capsys, "--hidden-size", "1", "--input", "1,-2,3,0.5")
    assert data["spec"]["steps"] == 4  # T from the input when --steps is left out
    grad = data["gradients"]["weight_hh_l0"]
    assert grad["share_kind"] == "signed"
    terms = [t[0][0] for t in grad["per_step"]]
    total = sum(terms)
    assert grad["shares"] == pytest.approx([t / total for t in terms])


def test_truncated_bptt_against_torch_in_chunks(capsys):
    data = explain_json(capsys, "--truncate", "2", "--input", "1,2,3,4,5")
    torch.manual_seed(0)
    rnn = torch.nn.RNN(1, 2).double()
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.float64)
    h = None
    for start in range(0, 5, 2):  # the state detached every 2 steps
        _, h = rnn(x[start : start + 2], None if h is None else h.detach())
    h.sum().backward()
    check_gradients(data, {name: p.grad for name, p in rnn.named_parameters()})


def test_markdown_tables(capsys):
    status, out, err = explain(capsys, "--input", "1,2,3", "--format", "markdown")
    assert status == 0 and err == ""
    assert out.startswith("# symbptt explain: torch.nn.RNN(input_size=1, hidden_size=2)")
    tables, current = [], []
    for line in out.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    # weights, forward, δ, and one per parameter
    assert len(tables) == 3 + 4
    for table in tables:
        columns = table[0].count("|")
        assert all(row.count("|") == columns for row in table)
        assert set(table[1].replace("|", "").replace(":", "")) == {"-"}
    assert tables[3][0] == "| t | term | ‖term‖ | share |"
    assert re.match(r"\| sum \| \[\s*2\.0941;\s+0\.1053\] \|", tables[3][-2])
    assert re.match(r"\| torch \| \[\s*2\.0941;\s+0\.1053\] \|", tables[3][-1])
    assert "### weight_ih_l0, shape (2, 1): input-hidden weights" in out


def bad_files(tmp_path) -> dict[str, str]:
    good = torch.nn.RNN(1, 2).state_dict()
    files = {
        "wrong_shape": {**good, "weight_hh_l0": torch.zeros(3, 3)},
        "missing_key": {k: v for k, v in good.items() if k != "bias_hh_l0"},
        "extra_key": {**good, "weight_ih_l1": torch.zeros(2, 2)},
        "not_a_dict": torch.zeros(2, 1),
        "not_a_tensor": {**good, "weight_ih_l0": [[1.0], [2.0]]},
        "x_wrong_shape": torch.zeros(3, 2),
        "x_batched": torch.zeros(3, 1, 1),
        "x_dict": {"x": torch.zeros(3, 1)},
    }
    paths = {}
    for name, value in files.items():
        torch.save(value, tmp_path / f"{name}.pt")
        paths[name] = str(tmp_path / f"{name}.pt")
    (tmp_path / "garbage.pt").write_text("not a torch file")
    paths["garbage"] = str(tmp_path / "garbage.pt")
    torch.save(torch.nn.RNN(1, 2), tmp_path / "module.pt")  # a pickled module
    paths["module"] = str(tmp_path / "module.pt")
    paths["missing"] = str(tmp_path / "nope.pt")
    paths["folder"] = str(tmp_path)
    return paths


BAD = [
    (["--weights", "{missing}"], "no such file"),
    (["--weights", "{folder}"], "not a file"),
    (["--weights", "{garbage}"], "not a file torch.save wrote"),
    (["--weights", "{module}"], "weights_only"),
    (["--weights", "{not_a_dict}"], "not a state dict"),
    (["--weights", "{wrong_shape}"], "weight_hh_l0 has shape (3, 3), expected (2, 2)"),
    (["--weights", "{missing_key}"], "missing bias_hh_l0 (expected shape (2,)"),
    (["--weights", "{extra_key}"], "unexpected key 'weight_ih_l1'"),
    (["--weights", "{not_a_tensor}"], "weight_ih_l0 is a list, not a tensor"),
    (["--input", "{x_wrong_shape}"], "expected an unbatched x of shape (T, input_size) = (3, 1)"),
    (["--input", "{x_batched}", "--steps", "3"], "got (3, 1, 1)"),
    (["--input", "{x_dict}"], "expected a tensor"),
    (["--input", "{missing}"], "no such file"),
    (["--input", "1,2", "--steps", "3"], "2 numbers for 3 steps"),
    (["--input", "1,2,3", "--input-size", "2"], "for --input-size 1"),
    (["--input", "1,nan,3"], "NaN"),
    (["--cell", "gru_cell", "--input", "1,2"], "2 numbers"),
    (["--num-layers", "2"], "one layer, one direction"),
    (["--bidirectional"], "one layer, one direction"),
    (["--packed"], "one layer, one direction"),
    (["--dropout", "0.5"], "one layer, one direction"),
    (["--cell", "lstm", "--steps", "0"], "steps must be a positive integer"),
    (["--seed=-1"], "--seed must be an integer from 0"),
    (["--seed", str(2**64)], "--seed must be an integer from 0"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_status_2(capsys, tmp_path, args, message):
    paths = bad_files(tmp_path)
    status, out, err = explain(capsys, *[a.format(**paths) for a in args])
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("symbptt: error: "), err
    assert message in err


@pytest.mark.parametrize(
    "args",
    [
        ["--seed", "1", "--weights", "w.pt"],
        ["--format", "yaml"],
        ["--loss", "c_n"],
    ],
)
def test_bad_options_exit_2(capsys, args):
    assert main(["explain", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_subprocess_status_and_no_traceback(tmp_path):
    env = dict(os.environ, COLUMNS="100")
    command = [sys.executable, "-m", "symbptt", "explain"]
    result = subprocess.run(
        [*command, "--seed", "0", "--weights", "w.pt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not allowed with argument --seed" in result.stderr
    torch.save(torch.zeros(5), tmp_path / "w.pt")
    result = subprocess.run(
        [*command, "--weights", "w.pt"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "not a state dict" in result.stderr


def test_mismatch_exits_1(capsys, monkeypatch):
    """A difference above the tolerance is reported, as verify does, with exit status 1."""
    monkeypatch.setitem(symbptt.verification.agreement.TOLERANCE, "float64", -1.0)
    status, out, err = explain(capsys, "--input", "1,2,3")
    assert status == 1 and err == ""
    assert "MISMATCH: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, output" in out


def test_explanation_displays_as_html_tables_in_jupyter():
    import torch

    from symbptt import derive
    from symbptt.explain.command import explain

    x = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    shown = explain(derive(), x=x)._repr_html_()
    assert shown.count("<table>") >= 5 and shown.count("</table>") == shown.count("<table>")
    assert "2.0941" in shown and "<th" in shown
    assert derive()._repr_latex_().startswith("$$")
