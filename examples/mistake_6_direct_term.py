"""Catalogued mistake 6: only the direct term kept.

h_3 depends on W_ih directly, through z_3 = x_3 @ W_ih.T + ..., and also through h_2 and h_1,
which depend on W_ih too. This derivation keeps the direct dependence and drops the recurrence
through h_{t-1}, so of the three terms of each gradient only t = 3 is there
(nn.RNN(input_size=1, hidden_size=2), 3 steps).
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    h1 = torch.tanh(x[0] @ W_ih.T + bias_ih + h0 @ W_hh.T + bias_hh)
    h2 = torch.tanh(x[1] @ W_ih.T + bias_ih + h1 @ W_hh.T + bias_hh)
    h3 = torch.tanh(x[2] @ W_ih.T + bias_ih + h2 @ W_hh.T + bias_hh)
    # dL/dz_3; "h_2 does not depend on W_ih", which it does
    d3 = grad_h_n * (1 - h3**2)
    return {
        "weight_ih": torch.outer(d3, x[2]),
        "weight_hh": torch.outer(d3, h2),
        "bias_ih": d3,
        "bias_hh": d3,
    }
