"""What ``symbptt check`` found, and how it is printed (text for people, JSON for tools)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass

STATUS = {"right": "right", "wrong": "WRONG", "unknown": "?"}


@dataclass(frozen=True)
class TermReport:
    """One per-step term of a wrong gradient (``step`` None: h0's single term)."""

    step: int | None
    status: str
    """``right``, ``wrong`` or ``unknown``."""
    how: str
    """What decided it: ``isolation``, ``mistake N`` (the matched variant), or ``""``."""
    correct: str | None = None
    """The derivation's term in the user's notation, for wrong and unknown terms."""
    yours: str | None = None
    """The matched variant's term where it is written differently from ``correct``."""


@dataclass(frozen=True)
class MistakeReport:
    """A catalogued mistake (or two together) that reproduces the user's numbers."""

    numbers: tuple[int, ...]
    descriptions: tuple[str, ...]

    @property
    def label(self) -> str:
        return " + ".join(str(n) for n in self.numbers)


@dataclass(frozen=True)
class Example:
    """The user's gradient and the derivation's at the founding question's point."""

    point: str
    yours: tuple[float, ...]
    derivation: tuple[float, ...]


@dataclass(frozen=True)
class GradientReport:
    """One returned gradient."""

    key: str
    ok: bool
    lengths_ok: tuple[int, ...]
    """The lengths T at which it matches."""
    steps: int
    """The T the rest is about: its first wrong T, or the largest checked."""
    max_rel_error: float
    isolation: str = ""
    terms: tuple[TermReport, ...] = ()
    mistakes: tuple[MistakeReport, ...] = ()
    points: int = 0
    """Test points the mistakes were compared at."""
    legend: tuple[str, ...] = ()
    yours_legend: tuple[str, ...] = ()
    example: Example | None = None
    """Where the two differ at the founding question's point."""


@dataclass(frozen=True)
class CheckReport:
    file: str
    steps: int
    input_size: int
    hidden_size: int
    nonlinearity: str
    bias: bool
    lengths: tuple[int, ...]
    """Every T the function was compared at."""
    inferred: tuple[str, ...]
    """How T, the sizes and the nonlinearity were found."""
    tolerance: float
    points: int
    """Main test points per T."""
    gradients: tuple[GradientReport, ...]
    not_returned: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gradients)

    def to_json(self) -> str:
        data = asdict(self)
        data["status"] = "match" if self.ok else "mismatch"
        for gradient, entry in zip(self.gradients, data["gradients"], strict=True):
            for mistake, item in zip(gradient.mistakes, entry["mistakes"], strict=True):
                item["label"] = mistake.label
        return json.dumps(data, indent=2)

    def to_text(self, width: int = 100) -> str:
        return "\n".join(_text(self, width))


def _lengths(lengths: tuple[int, ...]) -> str:
    if not lengths:
        return "none"
    if len(lengths) > 2 and list(lengths) == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]}..{lengths[-1]}"
    return ", ".join(str(n) for n in lengths)


def _numbers(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _wrap(text: str, width: int, indent: str, hanging: str | None = None) -> list[str]:
    """``textwrap.wrap`` that never breaks an ``a = b`` apart."""
    lines = textwrap.wrap(
        text.replace(" = ", "\xa0=\xa0"),
        width=width,
        initial_indent=indent,
        subsequent_indent=hanging if hanging is not None else indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace("\xa0", " ") for line in lines]


def _text(report: CheckReport, width: int) -> list[str]:
    layer = f"torch.nn.RNN(input_size={report.input_size}, hidden_size={report.hidden_size}"
    if report.nonlinearity != "tanh":
        layer += f", nonlinearity={report.nonlinearity!r}"
    if not report.bias:
        layer += ", bias=False"
    lines = _wrap(
        f"symbptt check {report.file}: manual_gradients for {layer}), unbatched", width, ""
    )
    for item in report.inferred:
        lines += _wrap(item, width, "  ")
    lines += _wrap(
        f"compared with the derivation in float64 at T = {_lengths(report.lengths)}, "
        f"{report.points} points each (random weights, biases, x, h0 and grad_h_n, and the "
        f"founding question's), relative tolerance {report.tolerance:.0e}",
        width,
        "  ",
    )
    returned = ", ".join(g.key for g in report.gradients)
    text = f"returned: {returned}"
    if report.not_returned:
        text += f"; not returned (not checked): {', '.join(report.not_returned)}"
    lines += _wrap(text, width, "  ")
    for note in report.notes:
        lines += _wrap(f"note: {note}", width, "  ")
    for gradient in report.gradients:
        lines.append("")
        lines += _gradient(report, gradient, width)
    lines.append("")
    wrong = [g for g in report.gradients if not g.ok]
    if not wrong:
        lines.append(
            f"all match: {len(report.gradients)} of {len(report.gradients)} returned gradients "
            f"equal the derivation's at T = {_lengths(report.lengths)}"
        )
    else:
        named = []
        for g in wrong:
            labels = ", ".join(f"mistake {m.label}" for m in g.mistakes) or "no catalogued mistake"
            named.append(f"{g.key} ({labels})")
        lines += _wrap(
            f"MISMATCH: {len(wrong)} of {len(report.gradients)} returned gradients wrong: "
            + "; ".join(named),
            width,
            "",
            "  ",
        )
    return lines


def _gradient(report: CheckReport, g: GradientReport, width: int) -> list[str]:
    if g.ok:
        return [
            f"ok     {g.key}: matches at T = {_lengths(g.lengths_ok)} "
            f"(max relative error {g.max_rel_error:.1e})"
        ]
    where = f"at T = {g.steps}"
    if len(report.lengths) > 1:
        where = f"from T = {g.steps}"
        if g.lengths_ok:
            where += f" (matches at T = {_lengths(g.lengths_ok)})"
    lines = [f"WRONG  {g.key} {where}: max relative error {g.max_rel_error:.1e}"]
    if g.terms and g.terms[0].step is not None:
        lines += _wrap(f"per-step terms at T = {g.steps} ({g.isolation}):", width, "    ")
        for term in g.terms:
            how = f"  ({term.how})" if term.how and term.how != "isolation" else ""
            lines.append(f"      t={term.step}  {STATUS[term.status]}{how}")
    elif g.terms:
        lines.append(f"    {g.isolation}")
    for mistake in g.mistakes:
        lines += _wrap(
            f"matches catalogued mistake {mistake.label}: " + "; ".join(mistake.descriptions),
            width,
            "    ",
            "      ",
        )
    if g.mistakes:
        lines += _wrap(
            f"(reproduces your numbers at all {g.points} test points at T = {g.steps})",
            width,
            "      ",
        )
    elif g.points:
        lines += _wrap(
            "no catalogued mistake (alone or two together) reproduces your numbers",
            width,
            "    ",
        )
    shown = [t for t in g.terms if t.correct is not None]
    for term in shown:
        label = f"t={term.step}" if term.step is not None else "h0"
        pad = " " * len(label)
        if term.yours is not None:
            lines.append(f"    {label}  yours:   {term.yours}")
            lines.append(f"    {pad}  correct: {term.correct}")
        else:
            lines.append(f"    {label}  correct: {term.correct}")
    if shown:
        for i, line in enumerate(g.legend):
            lines += _wrap(("where " if i == 0 else "") + line, width, "    " + " " * 6 * (i > 0))
        for i, line in enumerate(g.yours_legend):
            lines += _wrap(("yours: " if i == 0 else "") + line, width, "    " + " " * 7 * (i > 0))
    if g.example is not None:
        lines += _wrap(f"the founding question's point: {g.example.point}:", width, "    ")
        lines.append(f"      yours       {_numbers(g.example.yours)}")
        lines.append(f"      derivation  {_numbers(g.example.derivation)}")
    return lines
