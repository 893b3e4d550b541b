"""Truncated BPTT (--truncate k) against torch with the carried state detached every k steps.

The reference runs torch's own module over chunks of k steps and detaches the state between
chunks (``symbptt.verification.verify.compare`` does this for a truncated spec); autograd then
gives the
truncated gradient. The untruncated derivation must NOT match it, so the comparison can fail.
"""

from __future__ import annotations

import pytest
from conftest import derivation, generated

from symbptt import SpecError, derive
from symbptt.verification.verify import compare

CASES = [
    dict(cell="rnn", steps=5, input_size=2, hidden_size=3, truncate=2),
    dict(cell="rnn", steps=6, input_size=1, hidden_size=2, truncate=3, nonlinearity="relu"),
    dict(cell="rnn", steps=5, input_size=2, hidden_size=3, truncate=2, loop=True),
    dict(cell="lstm", steps=7, input_size=2, hidden_size=3, truncate=3),
    dict(cell="lstm", steps=20, input_size=2, hidden_size=3, truncate=1, proj_size=2),
    dict(cell="gru", steps=20, input_size=2, hidden_size=3, truncate=4),
    dict(cell="gru", steps=4, input_size=2, hidden_size=2, truncate=9),  # k > T: full BPTT
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
@pytest.mark.parametrize("mode", [(3, False, True), (3, True, False), (None, False, True)])
def test_truncated_gradients_match_torch_with_detach(spec, mode):
    batch, batch_first, given = mode
    d = derivation(**spec)
    report = compare(
        d, generated(**spec), batch=batch, batch_first=batch_first, given_state=given, scale=2.0
    )
    assert report.ok, report.table()


@pytest.mark.parametrize("spec", [c for c in CASES[:6] if "nonlinearity" not in c], ids=str)
def test_full_bptt_differs_from_truncated(spec):
    # (relu is left out: with dead units nothing may cross the cut, and both agree)
    full = {k: v for k, v in spec.items() if k != "truncate"}
    report = compare(derivation(**spec), generated(**full), scale=2.0)
    assert not report.ok


def test_equations_show_the_dropped_terms():
    d = derive(steps=5, truncate=2)
    text = d.to_text()
    assert "(B4)   h̄₄ = g₄," in text and "(B2)   h̄₂ = g₂," in text
    assert "h̄₃ = g₃ + W_hhᵀ δ₄" in text
    assert "at t = 2, 4 nothing comes back" in text
    assert "detach()" in d.to_latex() and "detach()" in d.to_markdown()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(truncate=-1), "truncate must be a non-negative integer"),
        (dict(truncate=2, bidirectional=True), "--truncate is for one layer, one direction"),
        (dict(truncate=2, num_layers=2), "--truncate is for one layer, one direction"),
        (dict(truncate=2, packed=True), "--truncate is for one layer, one direction"),
        (dict(truncate=1, cell="gru_cell"), "--truncate is for one layer, one direction"),
    ],
)
def test_bad_truncation(options, message):
    with pytest.raises(SpecError, match=message):
        derive(**options)
