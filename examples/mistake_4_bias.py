"""Catalogued mistake 4: one of the two biases forgotten.

torch's RNN adds TWO biases, x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh (kept for CuDNN
compatibility). This derivation's forward has only b_ih, so its hidden states differ from
torch's and so does every term that reads them, although the backward is written right
(nn.RNN(input_size=1, hidden_size=2), 3 steps).
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    h1 = torch.tanh(x[0] @ W_ih.T + bias_ih + h0 @ W_hh.T)  # the mistake: no bias_hh
    h2 = torch.tanh(x[1] @ W_ih.T + bias_ih + h1 @ W_hh.T)
    h3 = torch.tanh(x[2] @ W_ih.T + bias_ih + h2 @ W_hh.T)
    d3 = grad_h_n * (1 - h3**2)
    d2 = (d3 @ W_hh) * (1 - h2**2)
    d1 = (d2 @ W_hh) * (1 - h1**2)
    return {
        "weight_ih": torch.outer(d1, x[0]) + torch.outer(d2, x[1]) + torch.outer(d3, x[2]),
        "weight_hh": torch.outer(d1, h0) + torch.outer(d2, h1) + torch.outer(d3, h2),
        "bias_ih": d1 + d2 + d3,
        "bias_hh": d1 + d2 + d3,
        "h0": d1 @ W_hh,
    }
