"""verify() can fail: a wrong backward is reported as a mismatch, and the CLI exits 1."""

from __future__ import annotations

import pytest
from conftest import derivation

from symbptt.codegen import load_module
from symbptt.errors import VerificationError
from symbptt.verification.verify import verify


@pytest.mark.parametrize(
    "wrong, right",
    [
        ("(1 - h2 * h2)", "(1 - h2)"),  # mistake 3: the derivative written as 1 - h
        ("delta3 @ weight_hh", "delta3 @ weight_hh.T"),  # mistake 2: an extra transpose
        ("(h[:-1].flatten(0, 1).T", "(h[1:].flatten(0, 1).T"),  # mistake 7: h_t for h_{t-1}
    ],
)
def test_a_wrong_backward_is_a_mismatch(wrong, right):
    d = derivation(steps=3, input_size=2, hidden_size=2)
    source = d.render()
    assert wrong in source
    report = verify(d, module=load_module(source.replace(wrong, right), "tampered"))
    assert not report.ok
    assert "MISMATCH" in report.table() and report.summary().startswith("MISMATCH")
    assert verify(d).ok


def test_cli_exits_1_on_mismatch(monkeypatch, capsys):
    from symbptt import cli, codegen

    original = codegen.load_module

    def tampered(source, name):
        return original(source.replace("(1 - h1 * h1)", "(1 - h1)"), name)

    monkeypatch.setattr(codegen, "load_module", tampered)
    assert cli.main(["verify", "--steps", "2"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_bad_dtype_is_a_typed_error():
    with pytest.raises(VerificationError, match="dtype must be one of"):
        verify(derivation(steps=1, input_size=1, hidden_size=1), dtype="float16")
