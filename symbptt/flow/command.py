"""Gradient flow through time: the Jacobian chain ∂h_T/∂h_t, symbolically and in numbers.

Derives one step's state Jacobian ∂h_t/∂h_{t-1} from the step program (forward mode; for an
LSTM the block matrix ∂(h_t, c_t)/∂(h_{t-1}, c_{t-1})) and prints the chain
∂h_T/∂h_t = J_T J_{T-1} ⋯ J_{t+1} (for an RNN Π_{k=t+1}^{T} D_k W_hh). Then, for the layer's
weights (torch's init under --seed, or --weights) and one input sequence (--input, or random),
float64, it prints per t the chain's spectral and Frobenius norms and singular values and the
norm of step t's term of ∂L/∂W_hh (L = Σ h_n), flags vanishing and exploding gradients, checks
the numbers against torch autograd, and with --plot draws them against t on a log scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..printing.text import wrap
from ..terminal import terminal_width
from ..verification.numeric_inputs import LOSSES as ACCEPTED_LOSSES
from ..verification.numeric_inputs import finite_float64, read_input, read_weights, reference_module
from ..verification.verify import check_seed
from .equations import chain_notation, symbolic_lines
from .numbers import LOSSES, Flow, FlowError, check_supported, gradient_flow
from .plot import check_plot_path, plot
from .verdict import check_line, summary, verdict

HELP = "the Jacobian chain ∂h_T/∂h_t: vanishing and exploding gradients, symbolic and numeric"
SPEC_OPTIONS = True


# --- output -----------------------------------------------------------------------------------


def _singular_text(values: tuple[float, ...]) -> str:
    shown = [f"{v:.2e}" for v in values]
    if len(shown) > 4:
        shown = shown[:2] + ["…", shown[-1]]
    return " ".join(shown)


def _table(flow: Flow, notation: dict[str, str], markdown: bool) -> list[str]:
    v = verdict(flow)
    chain = notation["chain"]
    header = ["t", f"‖{chain}‖₂", "‖·‖_F", "singular values", "‖term t‖_F", "note"]
    rows = []
    for r in flow.rows:
        term = "—" if r.contribution is None else f"{r.contribution:.3e}"
        values = " ".join(f"{s:.3e}" for s in r.singular_values) if markdown else None
        rows.append(
            [
                str(r.t),
                f"{r.spectral:.3e}",
                f"{r.frobenius:.3e}",
                values or _singular_text(r.singular_values),
                term,
                v.note(r.t),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    align = [">", ">", ">", "<", ">", "<"]

    def line(cells: list[str]) -> str:
        text = "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True))
        return "  " + text.rstrip()

    return [line(header)] + [line(row) for row in rows]


def _intro(flow: Flow, notation: dict[str, str]) -> list[str]:
    return [
        f"Gradient flow for {flow.spec.describe()}",
        f"The state Jacobian of one step ({notation['state']}), derived from the step program by "
        "forward mode; column convention, one sample: ∂aₜ/∂bₜ₋₁ has a row per entry of aₜ.",
    ]


def _numbers_intro(flow: Flow, notation: dict[str, str], source: str) -> str:
    return (
        f"Numbers: {source}, float64, initial state 0, {LOSSES[flow.loss]}. Per t: the chain "
        f"{notation['chain']} (spectral norm, Frobenius norm, singular values) and the Frobenius "
        f"norm of step t's term {flow.term} of ∂L/∂W_hh ({flow.parameter}), as the generated "
        "backward computes it (term t below)."
    )


def render_text(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    width = terminal_width()
    notation = chain_notation(flow.spec)
    lines = [wrap(line, width) for line in _intro(flow, notation)]
    for equation in equations:
        if latex:
            lines.append(rf"\[ {equation} \]")
        else:
            lines.append(wrap("  " + equation, width, 6))
    lines.append("")
    lines.append(wrap(_numbers_intro(flow, notation, source), width))
    lines += _table(flow, notation, markdown=False)
    lines.append(wrap(summary(flow, notation), width))
    lines.append(wrap(check_line(flow), width))
    return "\n".join(lines)


def render_markdown(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    notation = chain_notation(flow.spec)
    lines = [f"# Gradient flow: {flow.spec.describe()}", ""]
    lines += _intro(flow, notation)[1:]
    lines.append("")
    if latex:
        for equation in equations:
            lines += ["$$", equation, "$$", ""]
    else:
        lines += ["```text", *equations, "```", ""]
    lines += [_numbers_intro(flow, notation, source), ""]
    lines += _table(flow, notation, markdown=True)
    lines += ["", f"**{summary(flow, notation)}**", "", check_line(flow)]
    return "\n".join(lines)


def render_json(flow: Flow, equations: list[str], latex: bool, source: str) -> str:
    v = verdict(flow)
    data = {
        "spec": flow.spec.describe(),
        "options": flow.spec.cli_options(),
        "source": source,
        "loss": LOSSES[flow.loss],
        "state": [name for name, _ in flow.spec.states],
        "parameter": flow.parameter,
        "symbolic": {"format": "latex" if latex else "text", "equations": equations},
        "rows": [
            {
                "t": r.t,
                "spectral_norm": r.spectral,
                "frobenius_norm": r.frobenius,
                "singular_values": list(r.singular_values),
                "step_term_norm": r.contribution,
                "note": v.note(r.t),
            }
            for r in flow.rows
        ],
        "verdict": v.label,
        "summary": summary(flow, chain_notation(flow.spec)),
        "check": {"ok": flow.ok, "max_relative_error": flow.errors},
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("flow")
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="torch's init under torch.manual_seed(N), and the random input; 0 to 2**63 - 1 "
        "(default 0)",
    )
    group.add_argument(
        "--weights", metavar="FILE", help="a state_dict saved with torch.save (instead of --seed)"
    )
    group.add_argument(
        "--input", metavar="FILE", help="a (T, I) tensor saved with torch.save (default random)"
    )
    group.add_argument(
        "--loss",
        choices=tuple(ACCEPTED_LOSSES),
        default="h_n",
        metavar="{h_n,output}",
        help="h_n: L = h_n.sum() (default; hn also accepted); output: L = output.sum()",
    )
    group.add_argument("--plot", metavar="FILE", help="draw the numbers against t (.png or .svg)")
    group.add_argument(
        "--force", action="store_true", help="overwrite a plot file that symbptt did not write"
    )
    group.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format"
    )
    group.add_argument(
        "--latex", action="store_true", help="print the symbolic chain in LaTeX instead of text"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from ..arguments import derivation_from_args

    check_seed(args.seed)
    plot_path = Path(args.plot) if args.plot else None
    if plot_path is not None:
        check_plot_path(plot_path, args.force)
    x = _read_input(args.input) if args.input else None
    if x is not None and args.steps is None:
        args.steps = x.shape[0]
    derivation = derivation_from_args(args)
    spec = derivation.spec
    check_supported(spec)
    if x is not None and tuple(x.shape) != (spec.steps, spec.input_size):
        raise FlowError(
            f"--input {args.input}: shape {tuple(x.shape)}, expected (T, I) = "
            f"({spec.steps}, {spec.input_size})"
        )
    state_dict = None
    if args.weights:
        state_dict = read_weights(args.weights, spec, FlowError, integers=False)
    module = reference_module(spec, args.seed, state_dict)
    if x is None:
        generator = torch.Generator().manual_seed(args.seed)
        x = torch.randn(spec.steps, spec.input_size, generator=generator, dtype=torch.float64)
    weights = f"weights from {args.weights}" if args.weights else f"torch's init, seed {args.seed}"
    data = f"input from {args.input}" if args.input else f"random input (seed {args.seed})"
    source = f"{weights}, {data}"
    flow = gradient_flow(derivation, module, x, loss=args.loss)
    style = "latex" if args.latex else "text"
    equations = symbolic_lines(derivation, style)
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}
    print(render[args.format](flow, equations, args.latex, source))
    if plot_path is not None:
        written = plot(flow, plot_path, force=args.force)
        if args.format != "json":
            print(f"wrote {written}")
    return 0 if flow.ok else 1


def _read_input(path: str):
    """``--input``: a (T, I) tensor of finite floating-point numbers, as float64."""
    x = read_input(path, FlowError)
    if x.dim() != 2:
        raise FlowError(f"--input {path}: expected a (T, I) tensor, got shape {tuple(x.shape)}")
    return finite_float64(x, f"--input {path}", FlowError, integers=False)
