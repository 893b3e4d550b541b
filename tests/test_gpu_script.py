"""benchmarks/gpu.py end to end on the CPU with tiny sizes (the GPU run is done by hand)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmarks_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_cpu_run_writes_the_tables(tmp_path):
    out = tmp_path / "gpu.md"
    assert load_script().main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# symbptt on CPU")
    assert "Command: `python benchmarks/gpu.py --device cpu --quick --out " in text
    assert "## Correctness on CPU" in text and "all passed" in text
    assert "## Speed on CPU" in text
    correctness = [line for line in text.splitlines() if "| float" in line]
    assert len(correctness) == 16
    assert all(line.endswith("| passed |") for line in correctness)
    speed = [line for line in text.splitlines() if line.startswith("| CPU") and "float" not in line]
    assert {line.split(" | ")[1] for line in speed} == {"rnn", "lstm", "gru"}
    assert not any("error:" in line for line in speed)
    assert "Total: correctness passed" in text


def test_a_failing_check_is_reported_and_the_rest_still_runs(tmp_path, monkeypatch):
    script = load_script()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(script, "compare", broken)
    monkeypatch.setattr(script, "CELLS", ("rnn",))
    out = tmp_path / "gpu.md"
    assert script.main(["--device", "cpu", "--quick", "--runs", "1", "--out", str(out)]) == 1
    text = out.read_text(encoding="utf-8")
    assert "error: RuntimeError: simulated failure" in text
    assert "SOME FAILED" in text
    assert "## Speed on CPU" in text and "Total: correctness FAILED" in text
