"""Matmul FLOPs of one forward + backward of a recurrent layer, and a plain-matmul baseline.

A layer with G gate blocks (1 for RNN, 4 for LSTM, 3 for GRU) multiplies, at each of T steps,
the input x_t (B, I) by W_ihᵀ (I, G·H) and the state h_{t-1} (B, H) by W_hhᵀ (H, G·H). An
(m, k) @ (k, n) product is 2·m·k·n floating-point operations (one multiply and one add per
term), so

    forward  = 2·T·B·G·H·(I + H)
    backward = 2 · forward: the input and state gradients δ_t @ W (B, G·H) @ (G·H, I + H) and
               the weight gradients δ_tᵀ @ [x_t, h_{t-1}] (G·H, B) @ (B, I + H), each as many
               operations as the forward
    total    = 6·T·B·G·H·(I + H)

Element-wise work (activations, gate products, bias additions and sums) is left out: it is
O(T·B·G·H), small against the products once I + H is more than a few.
"""

from __future__ import annotations

from collections.abc import Callable

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
"""Gate blocks per cell: the rows of weight_ih and weight_hh are GATES[cell] · hidden_size."""

FORMULA = (
    "FLOPs of one forward + backward, counting only the matrix products (2·m·k·n for an "
    "(m, k) @ (k, n) product): forward 2·T·B·G·H·(I + H), backward twice that (input and "
    "state gradients δ @ W, weight gradients δᵀ @ [x, h]), total 6·T·B·G·H·(I + H), with "
    "G = 1 (RNN), 4 (LSTM), 3 (GRU) gate blocks. Element-wise work is not counted."
)


def matmul_flops(
    cell: str, steps: int, batch: int, input_size: int, hidden_size: int
) -> dict[str, int]:
    """FLOPs of the matrix products of one forward and one backward (see the module docstring)."""
    forward = 2 * steps * batch * GATES[cell] * hidden_size * (input_size + hidden_size)
    return {"forward": forward, "backward": 2 * forward, "total": 3 * forward}


def matmul_shapes(
    cell: str, steps: int, batch: int, input_size: int, hidden_size: int
) -> list[tuple[int, int, int]]:
    """The (m, k, n) of every product :func:`plain_matmuls` runs, in its order.

    Forward: every step's input projection at once, (T·B, I) @ (I, G·H), then per step
    h_{t-1} @ W_hhᵀ, (B, H) @ (H, G·H). Backward: per step δ_t @ W_hh, (B, G·H) @ (G·H, H),
    then over all steps at once δᵀ @ x (G·H, T·B) @ (T·B, I), δᵀ @ h (G·H, T·B) @ (T·B, H) and
    δ @ W_ih (T·B, G·H) @ (G·H, I). The per-step products cannot be batched over time (each
    needs the previous step's result); the others can, and both the loop form and torch do.
    """
    rows, gh = steps * batch, GATES[cell] * hidden_size
    return (
        [(rows, input_size, gh)]
        + [(batch, hidden_size, gh)] * steps
        + [(batch, gh, hidden_size)] * steps
        + [(gh, rows, input_size), (gh, rows, hidden_size), (rows, gh, input_size)]
    )


def plain_matmuls(
    cell: str, steps: int, batch: int, input_size: int, hidden_size: int, dtype
) -> Callable[[], None]:
    """A function running :func:`matmul_shapes`' products on random tensors and nothing else.

    The operands are laid out as the generated loop form lays them out (weights as stored,
    transposed views where the code multiplies by Wᵀ), so the time is what this machine's
    matmul takes for the layer's products: the ceiling of what a module can reach.
    """
    import torch

    gh = GATES[cell] * hidden_size
    x = torch.randn(steps, batch, input_size, dtype=dtype)
    h = torch.randn(steps + 1, batch, hidden_size, dtype=dtype)
    delta = torch.randn(steps, batch, gh, dtype=dtype)
    weight_ih = torch.randn(gh, input_size, dtype=dtype)
    weight_hh = torch.randn(gh, hidden_size, dtype=dtype)
    x_rows, h_rows, delta_rows = x.flatten(0, 1), h[:-1].flatten(0, 1), delta.flatten(0, 1)

    def run() -> None:
        x_rows @ weight_ih.T
        for t in range(steps):
            h[t] @ weight_hh.T
        for t in range(steps - 1, -1, -1):
            delta[t] @ weight_hh
        delta_rows.T @ x_rows
        delta_rows.T @ h_rows
        delta_rows @ weight_ih

    return run
