"""The loop body's rewrites (symbptt/printing/loop_step.py): what each statement becomes, and
that the rewritten step computes what the plain one does."""

from __future__ import annotations

import torch
from sympy import HadamardProduct, MatAdd, OneMatrix

from symbptt.codegen.loop_step import alias_name, alias_slots, hoist, store
from symbptt.codegen.torch_code import BatchedTorchPrinter
from symbptt.core.matexpr import Elementwise
from symbptt.core.program import t, var
from symbptt.printing.names import loop_code_name

H = 3
u, v, w = var("u", t, H), var("v", t, H), var("w", t, H)
SEQUENCES = {"u", "v", "w", "h"}
PRINTER = BatchedTorchPrinter(lambda s: loop_code_name(s, {}, SEQUENCES), lambda s: False)


def test_values_are_written_in_place_where_torch_has_out():
    assert (
        store(PRINTER, "w[t - 1]", Elementwise("tanh", u)) == "torch.tanh(u[t - 1], out=w[t - 1])"
    )
    assert store(PRINTER, "w[t - 1]", HadamardProduct(u, v)) == (
        "torch.mul(u[t - 1], v[t - 1], out=w[t - 1])"
    )
    assert store(PRINTER, "w[t - 1]", MatAdd(u, v)) == "torch.add(u[t - 1], v[t - 1], out=w[t - 1])"
    assert (
        store(PRINTER, "w[t - 1]", MatAdd(u, -v)) == "torch.sub(u[t - 1], v[t - 1], out=w[t - 1])"
    )
    # relu has no out= form, and three terms are no one call: a plain assignment
    assert store(PRINTER, "w[t - 1]", Elementwise("relu", u)) == "w[t - 1] = torch.relu(u[t - 1])"
    assert store(PRINTER, "w[t - 1]", MatAdd(u, v, w)).startswith("w[t - 1] = ")


def test_aliases_are_named_by_the_step_they_hold():
    assert alias_name("h", "t - 1") == "h_prev"  # states are stored from step 0 ...
    assert alias_name("c", "t") == "c_t"
    assert alias_name("i", "t - 1") == "i_t"  # ... everything else from step 1
    assert alias_name("h", "t - 1", states=()) == "h_t"  # the forward's states, from step 1


def test_a_slot_used_twice_is_indexed_once_and_written_through_its_alias():
    lines = [
        "torch.mul(u[t - 1], u[t - 1], out=w[t - 1])",
        "w[t - 1] = v[t - 1] + 1",
        "z = w[t - 1]",
    ]
    aliases, rewritten = alias_slots(lines, taken=set())
    assert aliases == ["u_t = u[t - 1]", "w_t = w[t - 1]"]
    assert rewritten == [
        "torch.mul(u_t, u_t, out=w_t)",
        "w_t.copy_(v[t - 1] + 1)",  # rebinding w_t would not write the slot
        "z = w_t",
    ]


def test_an_alias_that_would_shadow_a_name_in_use_is_not_made():
    aliases, rewritten = alias_slots(["a = u[t - 1] * u[t - 1] + u_t"], taken={"u_t", "a"})
    assert aliases == [] and rewritten == ["a = u[t - 1] * u[t - 1] + u_t"]


def test_the_rewritten_step_computes_what_the_plain_one_does():
    torch.manual_seed(0)
    env = {name: torch.randn(4, 2, H) for name in ("u", "v")}
    plain = {"w": torch.empty(4, 2, H), **env}
    rewritten = {"w": torch.empty(4, 2, H), **{k: v.clone() for k, v in env.items()}}
    value = HadamardProduct(MatAdd(u, v), Elementwise("tanh", u))
    step = [store(PRINTER, "w[t - 1]", value), "w[t - 1] = w[t - 1] * v[t - 1]"]
    aliases, lines = alias_slots(step, taken={"torch", "t"})
    for t_value in (1, 2, 3, 4):
        exec(f"w[t - 1] = {PRINTER.doprint(value)}", {"torch": torch, "t": t_value}, plain)
        exec("w[t - 1] = w[t - 1] * v[t - 1]", {"torch": torch, "t": t_value}, plain)
        exec("\n".join(aliases + lines), {"torch": torch, "t": t_value}, rewritten)
    torch.testing.assert_close(rewritten["w"], plain["w"], rtol=0, atol=0)


def test_sequences_are_split_into_steps_and_weights_transposed_once_before_the_loop():
    lines = [
        "u_t = u[t - 1]",
        "a = torch.addmm(x_w[t - 1], h_prev, weight_hh.T)",
        "b = x_w[t - 1, :, 0:3] + a[:, 0:3]",
        "torch.mul(u_t, c[t], out=w[t - 1])",
        "h_prev = h[t - 1]",
    ]
    before, rewritten = hoist(lines)
    assert before == [
        "u_steps = u.unbind(0)",
        "x_w_steps = x_w.unbind(0)",
        "c_steps = c.unbind(0)",
        "w_steps = w.unbind(0)",
        "h_steps = h.unbind(0)",
        "weight_hh_T = weight_hh.T",
    ]
    assert rewritten == [
        "u_t = u_steps[t - 1]",
        "a = torch.addmm(x_w_steps[t - 1], h_prev, weight_hh_T)",
        "b = x_w_steps[t - 1][:, 0:3] + a[:, 0:3]",  # a is made in the loop: left as it is
        "torch.mul(u_t, c_steps[t], out=w_steps[t - 1])",
        "h_prev = h_steps[t - 1]",
    ]


def test_names_the_loop_assigns_or_that_are_taken_are_not_hoisted():
    lines = ["a = a[t - 1] * u[t - 1]", "m = m.T", "u_steps_used = weight.T"]
    before, rewritten = hoist(lines + ["weight_T = 1", "v[t] += 1"])
    assert before == ["u_steps = u.unbind(0)"]
    assert rewritten[:3] == ["a = a[t - 1] * u_steps[t - 1]", "m = m.T", "u_steps_used = weight.T"]
    assert hoist(["z = 2 * y"]) == ([], ["z = 2 * y"])


def test_the_hoisted_loop_computes_what_the_plain_one_does():
    torch.manual_seed(0)
    env = {"u": torch.randn(4, 2, H), "c": torch.randn(5, 2, H), "weight": torch.randn(H, H)}
    step = ["torch.mul(u[t - 1] @ weight.T, c[t], out=w[t - 1])", "w[t - 1] = w[t - 1] + c[t - 1]"]
    before, lines = hoist(step)
    assert lines[1] == "w_steps[t - 1].copy_(w_steps[t - 1] + c_steps[t - 1])"
    plain = {"w": torch.empty(4, 2, H), **env}
    hoisted = {"w": torch.empty(4, 2, H), **{k: v.clone() for k, v in env.items()}}
    exec("\n".join(before), {"torch": torch}, hoisted)
    for t_value in (1, 2, 3, 4):
        exec("\n".join(step), {"torch": torch, "t": t_value}, plain)
        exec("\n".join(lines), {"torch": torch, "t": t_value}, hoisted)
    torch.testing.assert_close(hoisted["w"], plain["w"], rtol=0, atol=0)


FUSING = BatchedTorchPrinter(
    lambda s: loop_code_name(s, {}, SEQUENCES), lambda s: False, fused_multiply_add=True
)


def test_a_blend_is_one_lerp_and_computes_the_same():
    ones = OneMatrix(H, 1)
    blend = MatAdd(HadamardProduct(MatAdd(ones, -u), v), HadamardProduct(u, w))
    code = store(FUSING, "h[t - 1]", blend)
    assert code == "torch.lerp(v[t - 1], w[t - 1], u[t - 1], out=h[t - 1])"
    assert FUSING.doprint(blend) == "torch.lerp(v[t - 1], w[t - 1], u[t - 1])"
    # not a blend: the weights differ, so no lerp
    other = MatAdd(HadamardProduct(MatAdd(ones, -u), v), HadamardProduct(v, w))
    assert "lerp" not in FUSING.doprint(other)
    torch.manual_seed(0)
    env = {name: torch.rand(4, 2, H, dtype=torch.float64) for name in ("u", "v", "w")}
    env["h"] = torch.empty(4, 2, H, dtype=torch.float64)
    for t_value in (1, 2, 3, 4):
        exec(code, {"torch": torch, "t": t_value}, env)
    u_, v_, w_ = env["u"], env["v"], env["w"]
    torch.testing.assert_close(env["h"], (1 - u_) * v_ + u_ * w_, rtol=1e-15, atol=1e-15)
