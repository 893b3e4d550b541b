"""torch's recurrent cells as cell definitions: the same :class:`~symbptt.core.cell_definition.Cell`
a cell file gives, written in the cell file's form, read by the same checker
(:func:`~symbptt.core.cell_file.parse_cell`) and built into a step program by the same rules
(:mod:`symbptt.core.cell_program`). Column convention, one sample (torch writes rows, ``x Wᵀ``;
the numbers are the same)::

    RNN    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,      h_t = act(z_t)

    LSTM   a^i_t = W_ii x_t + b_ii + W_hi h_{t-1} + b_hi,    i_t = σ(a^i_t)     (and f, o alike)
           a^g_t = W_ig x_t + b_ig + W_hg h_{t-1} + b_hg,    c̃_t = tanh(a^g_t)  (torch's g gate)
           c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t,                  h_t = o_t ⊙ tanh(c_t)
           with proj_size P:  q_t = o_t ⊙ tanh(c_t),          h_t = W_hr q_t

    GRU    a^r_t = W_ir x_t + b_ir + W_hr h_{t-1} + b_hr,    r_t = σ(a^r_t)     (and z alike)
           a^{hn}_t = W_hn h_{t-1} + b_hn
           a^n_t = W_in x_t + b_in + r_t ⊙ a^{hn}_t,          n_t = tanh(a^n_t)
           h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

torch stacks the gates' blocks by rows in the order i, f, g, o (LSTM) and r, z, n (GRU): each
family's :class:`~symbptt.core.cell_definition.Stack` entries say so, and its
:class:`~symbptt.core.cell_definition.Gate` entries and
:class:`~symbptt.core.cell_definition.Prose` say
what the printers add. The layer's options (``nonlinearity``, ``bias``, ``proj_size``) choose
the equations' text; nothing outside this module tests which of torch's cells it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from .cell_definition import Cell, Gate, Prose, Stack
from .cell_file import parse_cell


@dataclass(frozen=True)
class Options:
    """The layer options that change a torch cell's equations."""

    nonlinearity: str = "tanh"
    bias: bool = True
    proj_size: int = 0


def _block(kind: str, side: str, gate: str) -> str:
    """``W_ih`` / ``b_hh`` for the RNN's one block (gate ``""``), ``W_ii`` / ``b_hf`` for gates."""
    return f"{kind}_{side}{gate or 'h'}"


def _affine(gate: str, bias: bool, x: bool = True, h: bool = True) -> str:
    """``W_ik @ x + b_ik + W_hk @ h[t-1] + b_hk`` (the x or the h half left out when False)."""
    terms = []
    for side, operand, on in (("i", "x", x), ("h", "h[t-1]", h)):
        if on:
            terms.append(f"{_block('W', side, gate)} @ {operand}")
            terms += [_block("b", side, gate)] if bias else []
    return " + ".join(terms)


def _stacks(gates: tuple[str, ...], bias: bool) -> tuple[Stack, ...]:
    """weight_ih, weight_hh (and bias_ih, bias_hh): each the gates' blocks by rows."""
    kinds = (("weight", "W", "weights"),) + ((("bias", "b", "bias"),) if bias else ())
    return tuple(
        Stack(
            f"{kind}_{side}h",
            f"{'input' if side == 'i' else 'hidden'}-hidden {what}",
            tuple(_block(letter, side, gate) for gate in gates),
        )
        for kind, letter, what in kinds
        for side in ("i", "h")
    )


def _text(name: str, sizes: dict, parameters: dict, step: dict) -> str:
    """A cell file's text for the given tables."""

    def table(title: str, entries: dict) -> str:
        return f"[{title}]\n" + "".join(f'{key} = "{value}"\n' for key, value in entries.items())

    return (
        f'name = "{name}"\n'
        + table("inputs", {"x": "I"})
        + table("states", sizes)
        + table("parameters", parameters)
        + table("step", step)
    )


def _parameters(gates: tuple[str, ...], bias: bool, out: str) -> dict[str, str]:
    """Each block's shape: ``H, I`` for the input side, ``H, <out>`` for the hidden side."""
    shapes = {"W": {"i": "H, I", "h": f"H, {out}"}, "b": {"i": "H", "h": "H"}}
    return {
        _block(kind, side, gate): shapes[kind][side]
        for kind in ("W", "b")[: 2 if bias else 1]
        for side in ("i", "h")
        for gate in gates
    }


def _rnn(options: Options) -> tuple[str, tuple[Stack, ...]]:
    step = {"z": _affine("", options.bias), "h": f"{options.nonlinearity}(z)"}
    text = _text("RNN", {"h": "H"}, _parameters(("",), options.bias, "H"), step)
    return text, _stacks(("",), options.bias)


LSTM_GATES = ("i", "f", "g", "o")
LSTM_OUTPUTS = {
    "i": ("i", "sigmoid"),
    "f": ("f", "sigmoid"),
    "g": ("ct", "tanh"),
    "o": ("o", "sigmoid"),
}
"""Each LSTM gate's output variable and function."""


def _lstm(options: Options) -> tuple[str, tuple[Stack, ...]]:
    out = "P" if options.proj_size else "H"
    parameters = _parameters(LSTM_GATES, options.bias, out)
    step = {}
    for gate in LSTM_GATES:
        output, function = LSTM_OUTPUTS[gate]
        step |= {f"a_{gate}": _affine(gate, options.bias), output: f"{function}(a_{gate})"}
    step["c"] = "f * c[t-1] + i * ct"
    stacks = _stacks(LSTM_GATES, options.bias)
    if options.proj_size:
        parameters["W_hr"] = "P, H"
        step |= {"q": "o * tanh(c)", "h": "W_hr @ q"}
        stacks += (Stack("weight_hr", "projection weights", ("W_hr",)),)
    else:
        step["h"] = "o * tanh(c)"
    return _text("LSTM", {"h": out, "c": "H"}, parameters, step), stacks


GRU_GATES = ("r", "z", "n")


def _gru(options: Options) -> tuple[str, tuple[Stack, ...]]:
    bias = options.bias
    step = {
        "a_r": _affine("r", bias),
        "r": "sigmoid(a_r)",
        "a_z": _affine("z", bias),
        "z": "sigmoid(a_z)",
        "a_hn": _affine("n", bias, x=False),
        "a_n": _affine("n", bias, h=False) + " + r * a_hn",
        "n": "tanh(a_n)",
        "h": "(1 - z) * n + z * h[t-1]",
    }
    text = _text("GRU", {"h": "H"}, _parameters(GRU_GATES, bias, "H"), step)
    return text, _stacks(GRU_GATES, bias)


@dataclass(frozen=True)
class TorchCell:
    """One of torch's cell families.

    Attributes:
        torch_class: the layer's class in ``torch.nn`` (the single-step cell's adds ``Cell``).
        equations: the options → the cell file's text and the stacked parameters.
        gates: the gates, for the printers.
        prose: what the printers say of it beyond its equations (given the options).
        stem: the options → the generated module's default name begins so (``rnn_tanh``).
        keywords: the layer's constructor arguments beyond the sizes and ``bias`` that the
            options of the same name set (``nonlinearity``, ``proj_size``).
        cell_keywords: the same for the single-step cell's constructor.
    """

    torch_class: str
    equations: Callable[[Options], tuple[str, tuple[Stack, ...]]]
    gates: tuple[Gate, ...]
    prose: Callable[[Options], Prose]
    stem: Callable[[Options], str]
    keywords: tuple[str, ...] = ()
    cell_keywords: tuple[str, ...] = ()


RNN_BACKWARD = r"$\bar{h}_t = \partial L / \partial h_t$ and $\delta_t = \partial L / \partial z_t$"

GRU_HIDDEN = "aʰⁿₜ = W_hn hₜ₋₁ + b_hn"


def _lstm_prose(options: Options) -> Prose:
    return Prose(
        terminal="c̃ₜ is torch's g gate; aˣₜ is the pre-activation of gate x.",
        explain="c̃ₜ is torch's g gate; i, f, o the other gates.",
        document=(
            "Gate $x$ ($i$, $f$, $g$, $o$) has the pre-activation $a^{x}_t$; the candidate "
            "$\\tilde{c}_t$ is\ntorch's gate $g$. PyTorch stacks each parameter's gate blocks "
            "by rows, in the order $i, f, g, o$;\nthe table gives the rows of each block."
        ),
    )


def _gru_prose(options: Options) -> Prose:
    return Prose(
        terminal=f"aˣₜ is the pre-activation of gate x; {GRU_HIDDEN} sits inside r.",
        explain=f"r, z are the gates, {GRU_HIDDEN}, n the candidate.",
        document=(
            "Gate $x$ ($r$, $z$, $n$) has the pre-activation $a^{x}_t$; the hidden part of "
            "$a^{n}_t$,\n$a^{hn}_t$, is kept apart because torch applies $r_t$ to it"
            + (", bias included" if options.bias else "")
            + ". PyTorch stacks each\nparameter's gate blocks by rows, in the order $r, z, n$; "
            "the table gives the rows of each block."
        ),
        meanings=(("a_hn", ", which $r_t$ scales inside $a^{n}_t$"),),
    )


TORCH_CELLS: dict[str, TorchCell] = {
    "rnn": TorchCell(
        "RNN",
        _rnn,
        (),
        lambda options: Prose(backward=RNN_BACKWARD),
        lambda options: f"rnn_{options.nonlinearity}",
        ("nonlinearity",),
        ("nonlinearity",),
    ),
    "lstm": TorchCell(
        "LSTM",
        _lstm,
        (
            Gate("i", "i", "input gate $i_t$"),
            Gate("f", "f", "forget gate $f_t$"),
            Gate("g", "ct", r"candidate $\tilde{c}_t$ (gate $g$)"),
            Gate("o", "o", "output gate $o_t$"),
        ),
        _lstm_prose,
        lambda options: "lstm",
        ("proj_size",),
    ),
    "gru": TorchCell(
        "GRU",
        _gru,
        (
            Gate("r", "r", "reset gate $r_t$"),
            Gate("z", "z", "update gate $z_t$"),
            Gate("n", "n", "new gate $n_t$"),
        ),
        _gru_prose,
        lambda options: "gru",
    ),
}
"""torch's cell families by the name the CLI uses (``lstm``; ``lstm_cell`` is one step of it)."""


@cache
def torch_cell(family: str, options: Options) -> Cell:
    """The definition of torch's ``family`` cell (``rnn``, ``lstm``, ``gru``) with ``options``."""
    kind = TORCH_CELLS[family]
    text, stacks = kind.equations(options)
    fields = parse_cell(text, f"<torch.nn.{kind.torch_class}>", built_in=True)
    return Cell(**fields, gates=kind.gates, stacks=stacks, prose=kind.prose(options))
