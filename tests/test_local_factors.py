"""The loop form's split of each backward product (symbptt/local_factors.py): which factors
are computed before the loop, and that the split products are the derivation's own."""

from __future__ import annotations

import pytest
from sympy import HadamardProduct, MatAdd

import symbptt
from symbptt.codegen.local_factors import local_factors
from symbptt.codegen.module_context import _Builder
from symbptt.core.program import split_name


def _factors(expr) -> list:
    return sorted(map(str, expr.args if isinstance(expr, HadamardProduct) else (expr,)))


def _split(cell: str):
    d = symbptt.derive(cell=cell, steps=20, input_size=3, hidden_size=4)
    b = _Builder(d)
    return d, b.local, set(b.adjoint_sequences)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_every_split_product_is_the_derivations_own(cell):
    d, local, _ = _split(cell)
    assert local.factors
    for before, after in zip(d.adjoint.assignments, local.assignments, strict=True):
        assert after.target == before.target
        products = [after.value] if not isinstance(after.value, MatAdd) else after.value.args
        originals = [before.value] if not isinstance(before.value, MatAdd) else before.value.args
        for product, original in zip(
            sorted(products, key=str), sorted(originals, key=str), strict=True
        ):
            restored = []
            for factor in _factors(product):
                # a δ stands for its local factor in its own product only (in place)
                own = factor.startswith("k_") or factor == str(after.target)
                symbol = next((k for k in local.factors if str(k) == factor and own), None)
                restored += _factors(local.factors[symbol]) if symbol is not None else [factor]
            assert sorted(restored) == _factors(original)


def test_lstm_forward_only_parts_leave_the_loop():
    d, local, buffers = _split("lstm")
    named = {split_name(k)[0]: str(v) for k, v in local.factors.items()}
    # the δ's the gradients sum hold their local factor in their own buffer ...
    assert {"delta_i", "delta_f", "delta_g", "delta_o"} <= set(named) and buffers >= {"delta_o"}
    assert (
        named["delta_o"] == "HadamardProduct(Elementwise(tanh, c[t]), Elementwise(dsigmoid, o[t]))"
    )
    # ... c̄ₜ, made anew every step, gets a buffer of its own
    assert named["k_cbar"].startswith("HadamardProduct(o[t]")
    loop = {str(a.target): str(a.value) for a in local.assignments}
    assert loop["delta_o[t]"] == "HadamardProduct(hbar[t], delta_o[t])"
    assert "tanh" not in loop["cbar[t]"] and "k_cbar[t]" in loop["cbar[t]"]


def test_a_single_saved_factor_stays_in_the_loop():
    d, local, _ = _split("gru")
    loop = {str(a.target): a.value for a in local.assignments}
    assert loop["delta_hn[t]"] == next(
        a.value for a in d.adjoint.assignments if str(a.target) == "delta_hn[t]"
    )


def test_nothing_is_split_where_no_value_comes_from_the_forward():
    d = symbptt.derive(cell="lstm", steps=20, input_size=3, hidden_size=4)
    local = local_factors(d.adjoint.assignments, forward=set(), buffers=set())
    assert local.factors == {}
    assert local.assignments == tuple(d.adjoint.assignments)
