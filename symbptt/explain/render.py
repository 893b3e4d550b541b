"""An explanation written out: aligned terminal text, Markdown, HTML (Jupyter) or JSON."""

from __future__ import annotations

import html
import json
import textwrap
import unicodedata

from ..errors import VerificationError
from .blocks import Table, explanation_blocks
from .ledger import LOSSES, Ledger


def _dwidth(text: str) -> int:
    """Display width: combining marks (the bar of h̄, the tilde of c̃) take no column."""
    return sum(0 if unicodedata.combining(c) else 1 for c in text)


def _text_table(table: Table) -> list[str]:
    widths = [
        max(_dwidth(row[i]) for row in [table.headers, *table.rows])
        for i in range(len(table.headers))
    ]

    def line(cells) -> str:
        parts = []
        for cell, w, align in zip(cells, widths, table.aligns, strict=True):
            pad = " " * (w - _dwidth(cell))
            parts.append(pad + cell if align == "r" else cell + pad)
        return ("  " + "  ".join(parts)).rstrip()

    lines = [line(table.headers), "  " + "  ".join("─" * w for w in widths)]
    for i, row in enumerate(table.rows):
        if i in table.rules:
            lines.append("  " + "  ".join("·" * w if w else "" for w in widths))
        lines.append(line(row))
    return lines


def _wrap(text: str, width: int, indent: str = "", hanging: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def render_text(e: Ledger, width: int = 100) -> str:
    """Headings, wrapped paragraphs and aligned tables, lines at most ``width`` wide."""
    lines: list[str] = []
    for block in explanation_blocks(e, width):
        if block.kind == "heading":
            if lines:
                lines.append("")
            lines.extend(_wrap(block.content, width))
            lines.append("─" * min(width, max(_dwidth(s) for s in lines[-1:])))
        elif block.kind == "para":
            lines.extend(_wrap(block.content, width))
        elif block.kind in ("lines", "equations"):
            for text in block.content:
                lines.extend(_wrap(text, width, "  ", "    "))
        else:
            lines.extend(_text_table(block.content))
    return "\n".join(lines)


def render_markdown(e: Ledger) -> str:
    """Markdown headings, paragraphs, lists and tables."""
    parts: list[str] = []
    for block in explanation_blocks(e):
        if block.kind == "heading":
            parts.append("#" * block.level + " " + block.content)
        elif block.kind == "para":
            parts.append(block.content)
        elif block.kind == "lines":
            parts.append("\n".join(f"- {' '.join(text.split())}" for text in block.content))
        elif block.kind == "equations":
            parts.append("\n".join(f"- `{text}`" for text in block.content))
        else:
            table = block.content
            rule = {"l": ":---", "r": "---:"}
            rows = [
                "| " + " | ".join(table.headers) + " |",
                "|" + "|".join(rule[a] for a in table.aligns) + "|",
            ]
            rows += ["| " + " | ".join(row) + " |" for row in table.rows]
            parts.append("\n".join(rows))
    return "\n\n".join(parts)


def render_html(e: Ledger) -> str:
    """HTML headings, paragraphs and tables (what Jupyter shows)."""
    parts: list[str] = []
    for block in explanation_blocks(e):
        if block.kind == "heading":
            level = min(block.level + 2, 6)
            parts.append(f"<h{level}>{html.escape(block.content)}</h{level}>")
        elif block.kind == "para":
            parts.append(f"<p>{html.escape(block.content)}</p>")
        elif block.kind in ("lines", "equations"):
            items = "".join(f"<li><code>{html.escape(text)}</code></li>" for text in block.content)
            parts.append(f"<ul>{items}</ul>")
        else:
            table = block.content
            align = {"l": "left", "r": "right"}
            head = "".join(
                f'<th style="text-align:{align[a]}">{html.escape(h)}</th>'
                for h, a in zip(table.headers, table.aligns, strict=True)
            )
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td style="text-align:{align[a]}"><code>{html.escape(cell)}</code></td>'
                    for cell, a in zip(row, table.aligns, strict=True)
                )
                + "</tr>"
                for row in table.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(parts)


def render_json(e: Ledger) -> str:
    """One JSON object: the spec, the weights and input, every value, term and check."""
    spec = e.spec

    def floats(tensor):
        return tensor.tolist()

    data = {
        "module": spec.describe(),
        "spec": {
            "cell": spec.cell,
            "steps": spec.steps,
            "input_size": spec.input_size,
            "hidden_size": spec.hidden_size,
            "proj_size": spec.proj_size,
            "nonlinearity": spec.nonlinearity,
            "bias": spec.bias,
        },
        "dtype": "float64",
        "weights_source": e.weights_source,
        "weights": {name: floats(value) for name, value in e.weights.items()},
        "input_source": e.input_source,
        "input": floats(e.x),
        "loss": {"name": e.loss, "expression": LOSSES[e.loss][0], "value": e.loss_value},
        "forward": {name: floats(value) for name, value in e.forward.items()},
        "output_max_abs_diff": e.output_diff,
        "adjoints": {name: floats(value) for name, value in e.adjoints.items()},
        "gradients": {
            g.name: {
                "shape": list(g.shape),
                "equations": list(g.equations),
                "per_step": floats(g.terms),
                "norms": g.norms,
                "share_kind": "signed" if g.signed else "norm",
                "shares": g.shares,
                "sum": floats(g.total),
                "torch": floats(g.torch_grad),
                "max_abs_diff": g.max_abs_diff,
                "ok": g.ok,
            }
            for g in e.gradients
        },
        "max_abs_diff": e.max_abs_diff,
        "ok": e.ok,
    }
    try:
        return _dump(data)
    except ValueError as exc:
        raise VerificationError(f"cannot write JSON: {exc}") from None


def _dump(value, depth: int = 0) -> str:
    """JSON with objects indented and every list (of numbers) on one line; no NaN."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    inner = "  " * (depth + 1)
    items = [
        f"{inner}{json.dumps(key, ensure_ascii=False)}: {_dump(item, depth + 1)}"
        for key, item in value.items()
    ]
    return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
