"""A correct hand derivation: every gradient of nn.RNN(input_size=1, hidden_size=2), 3 steps.

The founding question's derivation with the chain fixed and the other gradients added: going
back one step multiplies the row vector by W_hh and then by a_t = 1 - h_t**2 (the derivative
of tanh in its output), so each term is a chain, never an element-wise product of pieces.
``symbptt check examples/correct.py`` reports every gradient matching (exit status 0).
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    h1 = torch.tanh(x[0] @ W_ih.T + bias_ih + h0 @ W_hh.T + bias_hh)
    h2 = torch.tanh(x[1] @ W_ih.T + bias_ih + h1 @ W_hh.T + bias_hh)
    h3 = torch.tanh(x[2] @ W_ih.T + bias_ih + h2 @ W_hh.T + bias_hh)
    a1, a2, a3 = 1 - h1**2, 1 - h2**2, 1 - h3**2
    # delta_t = dL/dz_t, from the last step back: a chain of (@ W_hh) and (* a_t)
    d3 = grad_h_n * a3
    d2 = (d3 @ W_hh) * a2
    d1 = (d2 @ W_hh) * a1
    return {
        "weight_ih": torch.outer(d1, x[0]) + torch.outer(d2, x[1]) + torch.outer(d3, x[2]),
        "weight_hh": torch.outer(d1, h0) + torch.outer(d2, h1) + torch.outer(d3, h2),
        "bias_ih": d1 + d2 + d3,
        "bias_hh": d1 + d2 + d3,
        "h0": d1 @ W_hh,
    }
