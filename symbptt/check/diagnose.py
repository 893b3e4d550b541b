"""The engine of ``symbptt check``: infer T and the sizes, call the user's function in a
child process, compare with the derivation, isolate the wrong terms, match the mistakes.

See :mod:`symbptt.check.command` for the command; :func:`check_file` is the entry point.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SpecError
from ..verification.agreement import HAND_FLOAT32_TOLERANCE, HAND_TOLERANCE, relative_error
from .points import (
    Layer,
    Point,
    describe_founding,
    generator,
    input_points,
    main_points,
    random_values,
    reference,
    saturation_points,
)
from .process import UserCodeError, UserProcess
from .report import CheckReport, Example, GradientReport, MistakeReport, TermReport
from .runner import ARGS, FUNCTION, SIGNATURE
from .variants import (
    KEYS,
    MISTAKES,
    Knobs,
    Mistake,
    Names,
    evaluate,
    knobs_of,
    legend,
    terms,
)

LENGTHS = tuple(range(1, 9))
"""The lengths T tried (the unrolled chains are printed up to 8 steps)."""
SIZES = (
    [(1, 2)]
    + [(i, h) for total in range(3, 9) for i in range(1, 5) for h in range(2, 5) if i + h == total]
    + [(i, 1) for i in range(1, 5)]
)
"""Sizes tried, in order, when neither the options nor the file's text give them."""


# --- what the file's text says ------------------------------------------------------------


def user_names(source: str) -> Names:
    """The names the file gives the arguments (and simple aliases such as ``W_hh = weight_hh``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return Names()
    function = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == FUNCTION
        ),
        None,
    )
    if function is None:
        return Names()
    params = [a.arg for a in [*function.args.posonlyargs, *function.args.args]]
    names = dict(zip(ARGS, params, strict=False))
    stores = Counter(
        node.id
        for node in ast.walk(function)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    )
    aliases: dict[str, str] = {}
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = [(target, value)]
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            pairs = list(zip(target.elts, value.elts, strict=False))
        for t, v in pairs:
            if isinstance(t, ast.Name) and isinstance(v, ast.Name) and stores[t.id] == 1:
                aliases.setdefault(v.id, t.id)
    return Names(**{arg: aliases.get(name, name) for arg, name in names.items()})


def size_hint(source: str) -> tuple[int, int] | None:
    """``input_size`` and ``hidden_size`` as the file's text names them, if it does."""
    i = re.search(r"input_size\s*=\s*(\d+)", source)
    h = re.search(r"hidden_size\s*=\s*(\d+)", source)
    if i and h:
        return int(i[1]), int(h[1])
    both = re.search(r"RNN\(\s*(\d+)\s*,\s*(\d+)", source)
    return (int(both[1]), int(both[2])) if both else None


def nonlinearity_hint(source: str) -> str:
    return "relu" if re.search(r"relu", source) and not re.search(r"tanh", source) else "tanh"


# --- the check ----------------------------------------------------------------------------


@dataclass
class _Length:
    """The calls at one length T and the derivation's values there."""

    layer: Layer
    points: list[Point]
    results: list[dict]
    references: list[dict] = field(default_factory=list)

    def of(self, kind: str, step: int | None = None) -> list[int]:
        return [
            i
            for i, p in enumerate(self.points)
            if p.kind in kind.split("|") and (step is None or p.step == step)
        ]


def check_file(
    path: str | Path,
    *,
    steps: int | None = None,
    input_size: int | None = None,
    hidden_size: int | None = None,
    nonlinearity: str | None = None,
    bias: bool = True,
    timeout: float = 20.0,
    seed: int = 0,
) -> CheckReport:
    """Run ``path``'s ``manual_gradients`` in a child process and compare it with the derivation.

    Raises :class:`UserCodeError` when the file cannot be run, :class:`SpecError` for bad
    options.
    """
    display = str(path)
    path = Path(path)
    if steps is not None and steps not in LENGTHS:
        raise SpecError(f"check works for 1 to {LENGTHS[-1]} steps, got --steps {steps}")
    for what, value in (("--input-size", input_size), ("--hidden-size", hidden_size)):
        if value is not None and value < 1:
            raise SpecError(f"{what} must be a positive integer, got {value}")
    if nonlinearity not in (None, "tanh", "relu"):
        raise SpecError(f"nonlinearity must be tanh or relu, got {nonlinearity!r}")
    if timeout <= 0:
        raise SpecError(f"--timeout must be positive, got {timeout:g}")
    if not path.is_file():
        raise UserCodeError(f"{display}: no such file")
    source = path.read_text(errors="replace")
    inferred = []
    if nonlinearity is None:
        nonlinearity = nonlinearity_hint(source)
        if nonlinearity == "relu":
            inferred.append("nonlinearity relu: the file uses relu and never tanh")
    candidates = _size_candidates(source, input_size, hidden_size)
    with UserProcess(path, display, timeout) as process:
        loaded = process.request({"kind": "load"})
        if "error" in loaded:
            raise UserCodeError(f"{display} cannot be imported:", loaded["error"])
        if "missing" in loaded:
            raise UserCodeError(f"{loaded['missing']}; it must define {SIGNATURE}")
        layer, lengths, how = _probe(
            process, display, candidates, nonlinearity, bias, steps, seed, source
        )
        inferred[:0] = how
        checked = [_Length(layer.with_steps(n), [], []) for n in lengths]
        for length in checked:
            length.points = (
                main_points(length.layer, seed)
                + input_points(length.layer, seed)
                + saturation_points(length.layer, seed)
            )
        reply = process.request(
            {
                "kind": "call",
                "groups": [[p.args() for p in length.points] for length in checked],
                "stop_on_ok": False,
            }
        )
    for length, results in zip(checked, reply["groups"], strict=True):
        length.results = results
        length.references = [reference(length.layer, p) for p in length.points]
        for i in length.of("founding|random"):
            result = results[i]
            if result["status"] == "error":
                raise UserCodeError(
                    f"{display}: {FUNCTION} raised at a test point with T = {length.layer.steps}",
                    result["message"],
                )
            if result["status"] == "bad":
                raise UserCodeError(f"{display}: {result['message']}")
    return _report(display, source, layer, checked, inferred, seed)


def _size_candidates(
    source: str, input_size: int | None, hidden_size: int | None
) -> list[tuple[int, int]]:
    hint = size_hint(source)
    ordered = ([hint] if hint else []) + SIZES
    if input_size is not None and hidden_size is not None:
        return [(input_size, hidden_size)]
    if input_size is not None:
        ordered = [(input_size, h) for _, h in ordered]
    if hidden_size is not None:
        ordered = [(i, hidden_size) for i, _ in ordered]
    return list(dict.fromkeys(ordered))


def _differs(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return True
    return any(not torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-12, equal_nan=True) for k in a)


def _probe(process, display, candidates, nonlinearity, bias, steps, seed, source):
    """Find the sizes the file runs with and the lengths it accepts.

    For each candidate size and each length L, the function is called once, and once more with
    each row of x changed: a file written for T steps fails below T and, above T, ignores the
    rows past T. Returns the layer, the lengths to check and how they were found.
    """
    groups = []
    for input_size, hidden_size in candidates:
        jobs = []
        for n in LENGTHS:
            layer = Layer(n, input_size, hidden_size, nonlinearity, bias)
            gen = generator(seed, 4, n)
            values = random_values(gen, layer)
            if nonlinearity == "relu":  # all positive: every unit on, so every row counts
                values = {name: value.abs() for name, value in values.items()}
            base = Point("probe", 0, values)
            jobs.append(base.args())
            for row in range(n):
                change = 2 * torch.randn(input_size, generator=gen, dtype=torch.float64)
                if nonlinearity == "relu":
                    change = change.abs()
                for factor in (1, -1) if nonlinearity == "tanh" else (1, 2):
                    values = dict(base.values, x=base.values["x"].clone())
                    values["x"][row] += factor * change
                    jobs.append(Point("probe", row, values).args())
        groups.append(jobs)
    reply = process.request({"kind": "call", "groups": groups, "stop_on_ok": True})
    found = None
    for (input_size, hidden_size), results in zip(candidates, reply["groups"], strict=False):
        if any(r["status"] == "ok" for r in results):
            found = (input_size, hidden_size), results
            break
    if found is None or all(found[1][offset]["status"] != "ok" for offset in _bases()):
        results = reply["groups"][0] if found is None else found[1]
        base = results[_bases()[-1]]  # the longest length's first call
        tried = ", ".join(f"{i}x{h}" for i, h in candidates[: len(reply["groups"])])
        if base["status"] == "error":
            raise UserCodeError(
                f"{display}: {FUNCTION} raised for x of every length 1..{LENGTHS[-1]} rows "
                f"and every size tried ({len(reply['groups'])}); with {LENGTHS[-1]} rows, "
                f"input_size={candidates[0][0]} and hidden_size={candidates[0][1]}:",
                base["message"],
            )
        raise UserCodeError(f"{display}: {base['message']} (sizes tried: {tried})")
    (input_size, hidden_size), results = found
    runs, reads, errors = [], {}, {}
    for n, offset in zip(LENGTHS, _bases(), strict=True):
        base, perturbed = results[offset], results[offset + 1 : offset + 1 + 2 * n]
        if base["status"] != "ok":
            errors[n] = base
            continue
        runs.append(n)
        reads[n] = {
            i // 2
            for i, r in enumerate(perturbed)
            if r["status"] != "ok" or _differs(r["values"], base["values"])
        }
    native = [n for n in runs if reads[n] == set(range(n))]
    layer = Layer(0, input_size, hidden_size, nonlinearity, bias)
    how = []
    if (input_size, hidden_size) == size_hint(source) and len(candidates) > 1:
        how.append(
            f"sizes input_size={input_size}, hidden_size={hidden_size}: named in the file, "
            "and it runs with them"
        )
    elif len(candidates) > 1:
        how.append(
            f"sizes input_size={input_size}, hidden_size={hidden_size}: the first the file "
            "runs with (give --input-size/--hidden-size to choose)"
        )
    if steps is not None:
        if steps not in runs:
            failed = errors[steps]
            raise UserCodeError(
                f"{display}: with x of {steps} rows (--steps {steps}): "
                + ("it raised" if failed["status"] == "error" else failed["message"]),
                failed["message"] if failed["status"] == "error" else "",
            )
        lengths = [n for n in native if n < steps] + [steps]
        how.append(f"T = {steps} from --steps")
        if steps not in native:
            how.append(f"note: at T = {steps} the file ignores some rows of x")
    elif len(native) == 1:
        lengths = native
        rows = "1 row" if native[0] == 1 else f"{native[0]} rows"
        how.append(f"T = {native[0]}: the file reads exactly {rows} of x")
    elif native:
        lengths = native
        how.append(
            f"T: the file accepts x of {_span(native)} rows; each length is checked and the "
            "first T where a gradient goes wrong is reported"
        )
    else:
        chosen = next(
            (n for n in runs if all(reads[m] == reads[n] for m in runs if m >= n)),
            3 if 3 in runs else runs[0],
        )
        lengths = [chosen]
        how.append(
            f"T = {chosen}: the file never reads every row of x (at {chosen} rows it reads "
            f"rows {sorted(reads[chosen])}); give --steps to choose T"
        )
    return layer, lengths, how


def _bases() -> list[int]:
    """Where each length's first probe call is: each length n has 1 + 2n calls."""
    return [sum(1 + 2 * m for m in LENGTHS[:i]) for i in range(len(LENGTHS))]


def _span(lengths: list[int]) -> str:
    if lengths == list(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]} to {lengths[-1]}"
    return ", ".join(map(str, lengths))


# --- comparing ---------------------------------------------------------------------------


class _Analysis:
    """The comparisons for one length: the user's totals, the derivation's, the variants'."""

    def __init__(self, length: _Length, tolerance: float):
        self.length = length
        self.tolerance = tolerance
        self._variants: dict[Knobs, list[dict]] = {}

    def user(self, i: int, key: str) -> torch.Tensor | None:
        result = self.length.results[i]
        if result["status"] != "ok":
            return None
        return result["values"].get(key)

    def agrees(self, indices: list[int], key: str, expected) -> bool | None:
        """Whether the user's totals equal ``expected(i)`` at every point (None: a call failed)."""
        for i in indices:
            actual = self.user(i, key)
            if actual is None:
                return None
            if relative_error(actual, expected(i)) > self.tolerance:
                return False
        return True

    def reference_total(self, i: int, key: str) -> torch.Tensor:
        return self.length.references[i][key].sum(0)

    def variant(self, knobs: Knobs, i: int) -> dict:
        if knobs not in self._variants:
            layer = self.length.layer
            self._variants[knobs] = [
                evaluate(knobs, p.values, layer.nonlinearity) for p in self.length.points
            ]
        return self._variants[knobs][i]


def _report(display, source, layer, checked, inferred, seed) -> CheckReport:
    notes = []
    first = checked[0].results[checked[0].of("founding")[0]]
    if not layer.bias and any("bias" in k for k in first["values"]):
        notes.append("bias gradients are not checked with --no-bias")
    ignored = sorted(
        {k for length in checked for r in length.results for k in r.get("ignored", ())}
    )
    if ignored:
        notes.append(f"keys not known, ignored: {', '.join(ignored)}")
    low = any(r.get("low_precision") for length in checked for r in length.results)
    tolerance = HAND_FLOAT32_TOLERANCE if low else HAND_TOLERANCE
    if low:
        notes.append(
            "the function returned float32 (or lower) values, compared at a relative tolerance "
            f"of {HAND_FLOAT32_TOLERANCE:g} (mistake 9: checks belong in float64; the inputs "
            "are float64 and torch's default dtype is float64 in the child process)"
        )
    analyses = [_Analysis(length, tolerance) for length in checked]
    names = user_names(source)
    gradients, not_returned = [], []
    for key in (k for k in KEYS if layer.bias or "bias" not in k):
        present = [
            a
            for a in analyses
            if all(a.user(i, key) is not None for i in a.length.of("founding|random"))
        ]
        if not present:
            not_returned.append(key)
            continue
        if len(present) < len(analyses):
            missing = [a.length.layer.steps for a in analyses if a not in present]
            notes.append(f"{key} is not returned (at every point) at T = {_span(missing)}")
        ok_at, errors = [], {}
        for analysis in present:
            steps = analysis.length.layer.steps
            errors[steps] = max(
                relative_error(analysis.user(i, key), analysis.reference_total(i, key))
                for i in analysis.length.of("founding|random")
            )
            if errors[steps] <= tolerance:
                ok_at.append(steps)
        wrong = [a for a in present if a.length.layer.steps not in ok_at]
        if not wrong:
            last = present[-1].length.layer.steps
            gradients.append(GradientReport(key, True, tuple(ok_at), last, max(errors.values())))
            continue
        analysis = wrong[0]
        steps = analysis.length.layer.steps
        gradients.append(_diagnose(key, analysis, tuple(ok_at), errors[steps], names, seed))
    layer = checked[-1].layer
    return CheckReport(
        file=display,
        steps=layer.steps,
        input_size=layer.input_size,
        hidden_size=layer.hidden_size,
        nonlinearity=layer.nonlinearity,
        bias=layer.bias,
        lengths=tuple(length.layer.steps for length in checked),
        inferred=tuple(inferred),
        tolerance=tolerance,
        points=len(checked[0].of("founding|random")),
        gradients=tuple(gradients),
        not_returned=tuple(not_returned),
        notes=tuple(notes),
    )


def _isolate(key: str, analysis: _Analysis) -> tuple[str, dict[int, str]]:
    """Per-step verdicts from the isolating points: {t: "right" | "wrong"} (absent: unknown)."""
    length = analysis.length
    steps = length.layer.steps
    if key == "weight_ih":
        verdicts = {}
        for k in range(1, steps + 1):
            agrees = analysis.agrees(
                length.of("input", k), key, lambda i: analysis.reference_total(i, key)
            )
            if agrees is not None:
                verdicts[k] = "right" if agrees else "wrong"
        return "x zero at all steps but t isolates step t's term", verdicts
    # a_s = 0 keeps only the terms t > s: scan s = T-1 .. 0 until the sum stops matching
    verdicts = {}
    for s in range(steps - 1, -1, -1):
        indices = length.of("saturate", s) if s else length.of("founding|random")
        agrees = analysis.agrees(indices, key, lambda i: analysis.reference_total(i, key))
        if agrees is None:
            break
        verdicts[s + 1] = "right" if agrees else "wrong"
        if not agrees:
            break
    return (
        "from T down: saturating step s makes a_s = 0, which cuts every chain through s and "
        "leaves the terms t > s; '?' where that cannot tell",
        verdicts,
    )


def _matches(key: str, analysis: _Analysis, candidates) -> list[tuple[Mistake, ...]]:
    indices = [i for i in range(len(analysis.length.points)) if analysis.user(i, key) is not None]
    found = []
    if not indices:
        return found
    for mistakes in candidates:
        knobs = knobs_of(mistakes)
        if knobs is None:
            continue
        if analysis.agrees(indices, key, lambda i, k=knobs: analysis.variant(k, i)[key].sum(0)):
            found.append(mistakes)
    return found


def _diagnose(key, analysis: _Analysis, ok_at, error, names: Names, seed) -> GradientReport:
    layer = analysis.length.layer
    steps = layer.steps
    applicable = [
        m
        for m in MISTAKES
        if m.applies(layer.input_size, layer.hidden_size, layer.nonlinearity, layer.bias)
    ]
    matched = _matches(key, analysis, [(m,) for m in applicable])
    if not matched:
        matched = _matches(key, analysis, itertools.combinations(applicable, 2))
    indices = [i for i in range(len(analysis.length.points)) if analysis.user(i, key) is not None]
    correct = terms(Knobs(), key, steps, layer.input_size, names, ones=True)
    if key == "h0":
        isolation, verdicts = "one term (no sum over steps): WRONG", {1: "wrong"}
    else:
        isolation, verdicts = _isolate(key, analysis)
    by_variant: dict[int, str] = {}
    yours: dict[int, str] = {}
    if matched:
        per_variant = []
        for mistakes in matched:
            knobs = knobs_of(mistakes)
            per_variant.append(
                {
                    t: any(
                        relative_error(
                            analysis.variant(knobs, i)[key][t - 1],
                            analysis.length.references[i][key][t - 1],
                        )
                        > analysis.tolerance
                        for i in indices
                    )
                    for t in range(1, len(correct) + 1)
                }
            )
        for t in range(1, len(correct) + 1):
            if len({v[t] for v in per_variant}) == 1:
                by_variant[t] = "wrong" if per_variant[0][t] else "right"
        written = terms(knobs_of(matched[0]), key, steps, layer.input_size, names, ones=True)
        for t, (mine, right) in enumerate(zip(written, correct, strict=True), start=1):
            if mine != right:
                yours[t] = "(left out)" if mine is None else mine
    label = f"mistake {'+'.join(str(m.number) for m in matched[0])}" if matched else ""
    term_reports = []
    for t, formula in enumerate(correct, start=1):
        if t in verdicts:
            status, how = verdicts[t], "isolation"
        elif t in by_variant:
            status, how = by_variant[t], label
        else:
            status, how = "unknown", ""
        shown = status != "right"
        term_reports.append(
            TermReport(
                None if key == "h0" else t,
                status,
                how,
                formula if shown else None,
                yours.get(t) if shown else None,
            )
        )
    right_legend = legend(Knobs(), names, steps, layer.nonlinearity)
    extra = (
        f"written for grad_h_n = ones (L = h_{steps}.sum()); for another grad_h_n the chain "
        f"starts from {names.grad_h_n} * a{steps}"
    )
    yours_legend = ()
    if matched:
        theirs = legend(knobs_of(matched[0]), names, steps, layer.nonlinearity)
        yours_legend = tuple(
            mine for mine, right in zip(theirs, right_legend, strict=True) if mine != right
        )
    founding = analysis.length.of("founding")[0]
    example = None
    yours_there = analysis.user(founding, key)
    if yours_there is not None:
        right_there = analysis.reference_total(founding, key)
        if (
            relative_error(yours_there, right_there) > analysis.tolerance
            and right_there.numel() <= 8
        ):
            example = Example(
                describe_founding(layer, seed),
                tuple(yours_there.flatten().tolist()),
                tuple(right_there.flatten().tolist()),
            )
    return GradientReport(
        key=key,
        ok=False,
        lengths_ok=ok_at,
        steps=steps,
        max_rel_error=error,
        isolation=isolation,
        terms=tuple(term_reports),
        mistakes=tuple(
            MistakeReport(tuple(m.number for m in ms), tuple(m.description for m in ms))
            for ms in matched
        ),
        points=len(indices),
        legend=(*right_legend, extra),
        yours_legend=yours_legend,
        example=example,
    )
