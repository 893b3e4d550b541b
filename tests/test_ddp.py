"""Training a generated module under DistributedDataParallel (gloo, 2 CPU processes).

Each process runs its half of the batch through ``DistributedDataParallel(module)``; after one
backward, DDP's averaged gradients must equal those of one process on the whole batch (the
same generated module, float64) and those of torch's own module (autograd, same weights), to
rel <= 1e-10. The loss is the batch mean of random-cotangent products, so that DDP's average
over equal shards is the whole batch's gradient. A step of SGD then keeps both processes'
parameters identical, and a second backward runs on the updated weights.
"""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import derivation, generated

WORLD = 2
BATCH = 6  # 3 sequences per process
SPECS = [
    dict(cell="lstm", steps=5, input_size=3, hidden_size=4, proj_size=2),
    dict(cell="gru", steps=20, input_size=2, hidden_size=3, num_layers=2, bidirectional=True),
    dict(cell="rnn", steps=4, input_size=2, hidden_size=3, nonlinearity="relu"),
]
TOL = 1e-10


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale else 1.0)


def _data(spec: dict) -> dict[str, torch.Tensor]:
    """The whole batch (batch_first): input, initial states and the loss's cotangents."""
    s = derivation(**spec).spec
    gen = torch.Generator().manual_seed(5)
    count = s.num_layers * s.directions

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    data = {
        "x": randn(BATCH, s.steps, s.input_size),
        "h0": randn(count, BATCH, s.output_size),
        "g_output": randn(BATCH, s.steps, s.directions * s.output_size),
        "g_h": randn(count, BATCH, s.output_size),
    }
    if s.family == "lstm":
        data |= {
            "c0": randn(count, BATCH, s.hidden_size),
            "g_c": randn(count, BATCH, s.hidden_size),
        }
    return data


def _loss(module: torch.nn.Module, data: dict, rows: slice) -> torch.Tensor:
    """Mean over the sequences ``rows`` of Σ gₜ·outputₜ + Σ gₙ·h_n (+ gᶜₙ·c_n)."""
    lstm = "c0" in data
    hx = (data["h0"][:, rows], data["c0"][:, rows]) if lstm else data["h0"][:, rows]
    output, finals = module(data["x"][rows], hx)
    finals = finals if lstm else (finals,)
    total = (output * data["g_output"][rows]).sum() + (finals[0] * data["g_h"][:, rows]).sum()
    if lstm:
        total = total + (finals[1] * data["g_c"][:, rows]).sum()
    return total / output.shape[0]


def _generated_module(spec: dict) -> torch.nn.Module:
    """The generated class for ``spec``, its weights from torch's init under a fixed seed."""
    torch.manual_seed(0)
    cls = getattr(generated(**spec), derivation(**spec).spec.torch_class)
    return cls(batch_first=True, dtype=torch.float64)


def _worker(rank: int, port: int, folder: str) -> None:
    """One DDP process: its shard's backward, a step of SGD, a second backward; the
    gradients and parameters go to ``folder/rank<rank>.pt``."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        results = []
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for spec in SPECS:
            model = torch.nn.parallel.DistributedDataParallel(_generated_module(spec))
            data = _data(spec)
            _loss(model, data, shard).backward()
            first = {n: p.grad.clone() for n, p in model.module.named_parameters()}
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            optimizer.step()
            optimizer.zero_grad()
            _loss(model, data, shard).backward()
            second = {n: p.grad.clone() for n, p in model.module.named_parameters()}
            params = {n: p.detach().clone() for n, p in model.module.named_parameters()}
            results.append({"first": first, "second": second, "params": params})
        torch.save(results, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torch_grads(spec: dict, module: torch.nn.Module, data: dict) -> dict[str, torch.Tensor]:
    """torch's own module with ``module``'s weights, autograd on the whole batch."""
    s = derivation(**spec).spec
    options = dict(num_layers=s.num_layers, bidirectional=s.bidirectional, batch_first=True)
    if s.proj_size:
        options["proj_size"] = s.proj_size
    if s.family == "rnn":
        options["nonlinearity"] = s.nonlinearity
    cls = getattr(torch.nn, s.torch_class)
    reference = cls(s.input_size, s.hidden_size, dtype=torch.float64, **options)
    reference.load_state_dict(module.state_dict())
    _loss(reference, data, slice(None)).backward()
    return {n: p.grad for n, p in reference.named_parameters()}


def test_ddp_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    context = mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("the DDP processes did not finish within 120 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for k, spec in enumerate(SPECS):
        module = _generated_module(spec)
        data = _data(spec)
        _loss(module, data, slice(None)).backward()
        whole = {n: p.grad for n, p in module.named_parameters()}
        theirs = _torch_grads(spec, module, data)
        assert whole.keys() == theirs.keys() == ranks[0][k]["first"].keys()
        for name, grad in whole.items():
            assert rel_error(grad, theirs[name]) <= TOL, (spec, name)
            for rank in ranks:
                assert rel_error(rank[k]["first"][name], grad) <= TOL, (spec, name)
        for part in ("first", "second", "params"):
            for name, value in ranks[0][k][part].items():
                assert torch.equal(value, ranks[1][k][part][name]), (spec, part, name)
        with torch.no_grad():  # one step of SGD on the whole batch's gradient
            for name, p in module.named_parameters():
                p -= 0.1 * p.grad
                assert rel_error(ranks[0][k]["params"][name], p) <= TOL, (spec, name)
