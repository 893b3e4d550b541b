"""Generated modules from ``Derivation.load()`` pickle and ``torch.save`` like torch's own.

Instances pickle with the generated source (``symbptt.codegen.rebuild_instance``), so they load
in the same process (as instances of the very same class) and in a fresh one; classes and
functions pickle by name, in the process that loaded them; ``state_dict`` loads with
``weights_only=True``. Each round trip must give bit-identical outputs and gradients.
"""

from __future__ import annotations

import copy
import gc
import io
import pickle
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from conftest import derivation, generated

from symbptt.codegen import load_module, load_module_file

SPECS = [
    dict(steps=3, input_size=2, hidden_size=3),
    dict(cell="lstm", steps=20, input_size=3, hidden_size=4, proj_size=2),
    dict(cell="gru", steps=5, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
    dict(cell="lstm", steps=4, input_size=2, hidden_size=3, num_layers=2, dropout=0.5),
    dict(cell="gru_cell", input_size=3, hidden_size=2),
]
ROOT = Path(__file__).resolve().parent.parent


def _new(spec: dict) -> torch.nn.Module:
    """An instance of the generated class for ``spec``, float64, training mode."""
    return getattr(generated(**spec), derivation(**spec).spec.torch_class)(dtype=torch.float64)


def _inputs(spec: dict) -> torch.Tensor:
    """A random input for ``spec``'s module: a batch of 4 (of its steps, for a layer)."""
    gen = torch.Generator().manual_seed(3)
    spec = derivation(**spec).spec
    shape = (4, spec.input_size) if spec.is_cell else (spec.steps, 4, spec.input_size)
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def _run(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs and the gradients of every input and parameter, for random cotangents (the
    dropout masks drawn under a fixed seed)."""
    torch.manual_seed(7)
    x = x.clone().requires_grad_()
    result = module(x)
    outputs = [result] if isinstance(result, torch.Tensor) else [result[0]]
    if not isinstance(result, torch.Tensor):
        outputs += list(result[1]) if isinstance(result[1], tuple) else [result[1]]
    gen = torch.Generator().manual_seed(11)
    cotangents = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outputs]
    grads = torch.autograd.grad(outputs, [x, *module.parameters()], cotangents)
    return [o.detach() for o in outputs] + list(grads)


def _assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert torch.equal(left, right)


def _torch_round_trip(obj, **load_options):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, **load_options)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("how", ["pickle", "torch.save", "deepcopy"])
def test_instance_round_trip_in_the_same_process(spec, how):
    module = _new(spec)
    x = _inputs(spec)
    if how == "pickle":
        copied = pickle.loads(pickle.dumps(module))
    elif how == "torch.save":
        copied = _torch_round_trip(module, weights_only=False)
    else:
        copied = copy.deepcopy(module)
    assert type(copied) is type(module)
    assert copied is not module and copied.training and vars(copied).keys() == vars(module).keys()
    _assert_identical(_run(copied, x), _run(module, x))


@pytest.mark.parametrize("spec", SPECS[1:3], ids=lambda s: "-".join(map(str, s.values())))
def test_state_dict_loads_with_weights_only(spec):
    module = _new(spec)
    state = _torch_round_trip(module.state_dict(), weights_only=True)
    again = getattr(derivation(**spec).load(), type(module).__name__)(dtype=torch.float64)
    assert type(again) is not type(module)  # a module loaded anew, from the same source
    again.load_state_dict(state)
    x = _inputs(spec)
    _assert_identical(_run(again, x), _run(module, x))
    with pytest.raises(pickle.UnpicklingError, match="rebuild_instance"):
        _torch_round_trip(module, weights_only=True)  # the module itself runs code: refused


def test_classes_and_functions_pickle_by_name_in_the_same_process():
    module = generated(**SPECS[0])
    for obj in (module.RNN, module.forward, module.backward):
        assert pickle.loads(pickle.dumps(obj)) is obj


class Subclass(generated(**SPECS[0]).RNN):
    """A caller's subclass: pickled by its own name, as any class."""


def test_a_subclass_pickles_as_usual():
    module = Subclass(dtype=torch.float64)
    copied = pickle.loads(pickle.dumps(module))
    assert type(copied) is Subclass
    _assert_identical(_run(copied, _inputs(SPECS[0])), _run(module, _inputs(SPECS[0])))


def test_a_module_loaded_from_its_file_pickles(tmp_path):
    path = derivation(**SPECS[1]).write(tmp_path)
    module = load_module_file(path)
    assert module.__name__ == f"symbptt_generated.{path.stem}" and module.__file__ == str(path)
    assert sys.modules[module.__name__] is module
    instance = module.LSTM(dtype=torch.float64)
    copied = pickle.loads(pickle.dumps(instance))
    assert type(copied) is module.LSTM
    _assert_identical(_run(copied, _inputs(SPECS[1])), _run(instance, _inputs(SPECS[1])))


def test_unpickling_other_code_under_a_loaded_name_leaves_the_loaded_module():
    """The pickled instance's module is gone and another has its name: the instance's code
    runs again in a module of its own, and the name keeps the module loaded under it."""
    first = load_module(derivation(**SPECS[0]).render("shared_name"), "shared_name")
    instance = first.RNN(dtype=torch.float64)
    expected = _run(instance, _inputs(SPECS[0]))
    data = pickle.dumps(instance)
    gone = weakref.ref(first)
    del first, instance
    second = load_module(derivation(**SPECS[1]).render("shared_name"), "shared_name")
    gc.collect()
    assert gone() is None
    copied = pickle.loads(data)
    assert type(copied).__name__ == "RNN" and type(copied).__module__ == second.__name__
    assert sys.modules["symbptt_generated.shared_name"] is second
    _assert_identical(_run(copied, _inputs(SPECS[0])), expected)
    again = pickle.loads(pickle.dumps(copied))
    assert type(again) is type(copied)


FRESH = """
import pickle, sys, torch
folder = sys.argv[1]
try:
    pickle.load(open(f"{folder}/class.pkl", "rb"))
except ModuleNotFoundError as exc:
    print("before:", exc)
instance = torch.load(f"{folder}/instance.pt", weights_only=False)
same = pickle.load(open(f"{folder}/instance.pkl", "rb"))
print("type:", type(instance).__module__, type(instance).__name__, type(same) is type(instance))
try:
    pickle.load(open(f"{folder}/class.pkl", "rb"))
except ModuleNotFoundError as exc:
    print("after:", exc)
sys.path.insert(0, sys.argv[2])
from test_pickle import _run
x = torch.load(f"{folder}/x.pt", weights_only=True)
results = {"saved": _run(instance, x), "pickled": _run(same, x)}
torch.save(results, f"{folder}/results.pt")
"""


def test_round_trip_in_a_fresh_process(tmp_path):
    spec = SPECS[2]
    instance = _new(spec)
    x = _inputs(spec)
    torch.save(instance, tmp_path / "instance.pt")
    (tmp_path / "instance.pkl").write_bytes(pickle.dumps(instance))
    by_name = derivation(**SPECS[0]).load("loaded_only_here").RNN
    (tmp_path / "class.pkl").write_bytes(pickle.dumps(by_name))
    torch.save(x, tmp_path / "x.pt")
    (tmp_path / "fresh.py").write_text(FRESH)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "fresh.py"), str(tmp_path), str(ROOT / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "before: No module named 'symbptt_generated'"
    assert lines[1] == f"type: symbptt_generated.{derivation(**spec).spec.default_name} GRU True"
    assert lines[2].startswith(
        "after: symbptt_generated.loaded_only_here is a module symbptt generated in another process"
    )
    assert "load('loaded_only_here')" in lines[2]
    results = torch.load(tmp_path / "results.pt", weights_only=True)
    expected = _run(instance, x)
    _assert_identical(results["saved"], expected)
    _assert_identical(results["pickled"], expected)
