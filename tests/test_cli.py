"""The command line: the main job, its outputs, and one-line errors with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from symbptt.cli import main


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "symbptt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_derive_default_is_the_founding_case(tmp_path):
    result = run_cli("derive", "--steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "torch.nn.RNN(input_size=1, hidden_size=2), 3 steps" in out
    for tag in ("(F1)", "(F3)", "(B3)", "(B1)", "(G1)", "(G6)", "(U1)"):
        assert tag in out
    assert "D₁ W_hhᵀ D₂ W_hhᵀ D₃ gₙ x₁ᵀ" in out
    assert "wrote generated/rnn_tanh_t3_i1_h2.py" in out
    assert "all match" in out and "MISMATCH" not in out
    assert (tmp_path / "generated" / "rnn_tanh_t3_i1_h2.py").is_file()
    assert max(len(line) for line in out.splitlines()) <= 100
    assert result.stderr == ""


def test_derive_writes_latex_and_name(tmp_path, capsys):
    status = main(
        [
            "derive",
            "--steps",
            "2",
            "--input-size",
            "3",
            "--hidden-size",
            "2",
            "--nonlinearity",
            "relu",
            "--no-bias",
            "--out",
            str(tmp_path / "out"),
            "--name",
            "mine",
            "--latex",
            str(tmp_path / "doc.tex"),
            "--no-verify",
        ]
    )
    assert status == 0
    assert (tmp_path / "out" / "mine.py").is_file()
    assert "\\tag{G1}" in (tmp_path / "doc.tex").read_text()
    assert "Verification" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "options",
    [
        ["--cell", "lstm"],
        ["--cell", "gru"],
        ["--cell", "lstm_cell"],
        ["--cell", "gru_cell"],
        ["--cell", "rnn_cell"],
        ["--packed"],
        ["--cell", "lstm", "--proj-size", "1", "--num-layers", "2", "--bidirectional"],
        ["--cell", "gru", "--num-layers", "3", "--dropout", "0.2", "--packed", "--steps", "20"],
    ],
    ids=" ".join,
)
def test_derive_other_cells(tmp_path, capsys, options):
    arguments = ["derive", *options, "--input-size", "2", "--hidden-size", "3"]
    status = main([*arguments, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "all match" in out and "(G1)" in out
    assert len(list(tmp_path.glob("*.py"))) == 1


def test_dropout_with_one_layer_warns_in_one_line(tmp_path):
    result = run_cli("derive", "--dropout", "0.5", "--no-verify", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr.startswith("symbptt: warning: dropout acts between layers")
    assert result.stderr.count("\n") == 1


def test_verify_command(capsys):
    assert main(["verify", "--steps", "4", "--input-size", "2", "--hidden-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "grad weight_hh_l0" in out and "all match" in out


def test_latex_markdown(tmp_path):
    assert main(["latex", "--steps", "3", "-o", str(tmp_path / "d.md")]) == 0
    assert "$$" in (tmp_path / "d.md").read_text()


BAD = [
    (["derive", "--steps", "0"], "steps must be a positive integer"),
    (["derive", "--steps", "-2"], "steps must be a positive integer"),
    (["derive", "--steps", "abc"], "invalid int value"),
    (["derive", "--steps", "2.5"], "invalid int value"),
    (["derive", "--input-size", "0"], "input_size must be a positive integer"),
    (["derive", "--hidden-size", "-1"], "hidden_size must be a positive integer"),
    (["derive", "--nonlinearity", "sigmoid"], "unknown nonlinearity 'sigmoid'"),
    (["derive", "--name", "bad-name"], "--name must be a Python identifier"),
    (["latex", "-o", "doc.txt"], "must end in .tex"),
    (["latex", "-o", "doc.md", "--pdf"], "--pdf needs a .tex"),
    (["verify", "--device", "tpu"], "invalid choice"),
    (["derive", "--cell", "transformer"], "unknown cell 'transformer'"),
    (["derive", "--cell", "gru", "--proj-size", "1"], "proj_size is for lstm only"),
    (["derive", "--cell", "rnn", "--proj-size", "1"], "proj_size is for lstm only"),
    (["derive", "--cell", "lstm", "--proj-size", "2"], "must be smaller than hidden_size"),
    (["derive", "--cell", "lstm", "--proj-size", "-1"], "non-negative integer"),
    (["derive", "--cell", "lstm_cell", "--steps", "3"], "is a single step"),
    (["derive", "--cell", "gru", "--nonlinearity", "relu"], "for rnn and rnn_cell only"),
    (["derive", "--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["derive", "--dropout", "-0.1"], "dropout must be in [0, 1)"),
    (["derive", "--num-layers", "0"], "num_layers must be a positive integer"),
    (["derive", "--cell", "lstm_cell", "--num-layers", "2"], "takes no num_layers"),
    (["derive", "--cell", "gru_cell", "--packed"], "takes no packed"),
    (["derive", "--truncate", "2", "--bidirectional"], "--truncate is for one layer"),
    (["derive", "--truncate", "-3"], "truncate must be a non-negative integer"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(
    "args, message", BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else None
)
def test_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_out_is_a_file(tmp_path):
    (tmp_path / "generated").write_text("not a folder")
    result = run_cli("derive", cwd=tmp_path)
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_refuses_to_overwrite_a_foreign_file_and_writes_nothing(tmp_path):
    target = tmp_path / "generated" / "rnn_tanh_t3_i1_h2.py"
    target.parent.mkdir()
    target.write_text("my own code\n")
    result = run_cli("derive", "--latex", "doc.tex", cwd=tmp_path)
    assert result.returncode == 2
    assert "was not generated by symbptt; use --force" in result.stderr
    assert target.read_text() == "my own code\n"
    assert not (tmp_path / "doc.tex").exists()
    assert run_cli("derive", "--no-verify", "--force", cwd=tmp_path).returncode == 0
    assert "Generated by symbptt" in target.read_text()


def test_bad_latex_path_leaves_no_module(tmp_path):
    (tmp_path / "blocker").write_text("")
    result = run_cli("derive", "--latex", "blocker/doc.tex", cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "generated").exists()


def test_unwritable_folder(tmp_path):
    # /proc refuses new folders even to root, so the failure is real on any Linux machine
    result = run_cli("derive", "--out", "/proc/symbptt-test", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot write to /proc/symbptt-test" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_regenerating_is_allowed_and_byte_identical(tmp_path):
    assert main(["derive", "--out", str(tmp_path), "--no-verify"]) == 0
    first = (tmp_path / "rnn_tanh_t3_i1_h2.py").read_bytes()
    assert main(["derive", "--out", str(tmp_path), "--no-verify"]) == 0
    assert (tmp_path / "rnn_tanh_t3_i1_h2.py").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["rnn_tanh_t3_i1_h2.py"]  # no temp files


def test_verify_cuda_without_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("verify", "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2
    assert "CUDA is not available" in result.stderr and result.stderr.count("\n") == 1
