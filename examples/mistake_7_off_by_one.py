"""Catalogued mistake 7: off by one step in time.

Step t computes z_t = x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh, so its W_hh term is
outer(delta_t, h_{t-1}): the state it READ, not the one it wrote. This derivation indexes the
list of states with t and gets h_t. Its gradient of W_ih is right; the one of W_hh is wrong in
every term (nn.RNN(input_size=1, hidden_size=2), 3 steps).
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    hs = [h0]
    for t in range(3):
        hs.append(torch.tanh(x[t] @ W_ih.T + bias_ih + hs[t] @ W_hh.T + bias_hh))
    deltas = [None, None, None, grad_h_n * (1 - hs[3] ** 2)]
    for t in (2, 1):
        deltas[t] = (deltas[t + 1] @ W_hh) * (1 - hs[t] ** 2)
    return {
        "weight_ih": sum(torch.outer(deltas[t], x[t - 1]) for t in (1, 2, 3)),
        "weight_hh": sum(torch.outer(deltas[t], hs[t]) for t in (1, 2, 3)),  # hs[t - 1]
    }
