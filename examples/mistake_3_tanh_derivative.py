"""Catalogued mistake 3: the derivative of tanh taken at the pre-activation.

d tanh(z)/dz = 1 - tanh(z)**2 = 1 - h**2, in the OUTPUT h = tanh(z), which is how torch
computes it. This derivation writes 1 - z**2 instead, so every term of every gradient is off
(nn.RNN(input_size=1, hidden_size=2), 3 steps, like the founding question).
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    z1 = x[0] @ W_ih.T + bias_ih + h0 @ W_hh.T + bias_hh
    h1 = torch.tanh(z1)
    z2 = x[1] @ W_ih.T + bias_ih + h1 @ W_hh.T + bias_hh
    h2 = torch.tanh(z2)
    z3 = x[2] @ W_ih.T + bias_ih + h2 @ W_hh.T + bias_hh
    # "tanh'(z) = 1 - z^2": the mistake, it is 1 - tanh(z)^2
    d3 = grad_h_n * (1 - z3**2)
    d2 = (d3 @ W_hh) * (1 - z2**2)
    d1 = (d2 @ W_hh) * (1 - z1**2)
    return {
        "weight_ih": torch.outer(d1, x[0]) + torch.outer(d2, x[1]) + torch.outer(d3, x[2]),
        "weight_hh": torch.outer(d1, h0) + torch.outer(d2, h1) + torch.outer(d3, h2),
        "bias_ih": d1 + d2 + d3,
        "bias_hh": d1 + d2 + d3,
    }
