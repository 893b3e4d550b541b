"""Catalogued mistake 2: W_hh transposed in the backward pass.

The forward is torch's, h_t = tanh(x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh), so one step
back multiplies the row vector delta_t by W_hh (dz_t/dh_{t-1} = W_hh). This derivation,
copied from column-form equations that read W_hh^T delta_t, multiplies by W_hh.T instead.
It loops over the steps, so it accepts any length: for nn.RNN(input_size=1, hidden_size=2)
``symbptt check`` finds T = 1 right for the weights and biases (no step back yet) and T = 2
the first length where they go wrong; the gradient of h0 is wrong from T = 1.
"""

import torch


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    hs = [h0]
    for x_t in x:
        hs.append(torch.tanh(x_t @ W_ih.T + bias_ih + hs[-1] @ W_hh.T + bias_hh))
    grads = {
        "weight_ih": torch.zeros_like(W_ih),
        "weight_hh": torch.zeros_like(W_hh),
        "bias_ih": torch.zeros_like(bias_ih),
        "bias_hh": torch.zeros_like(bias_hh),
    }
    dh = grad_h_n
    for t in range(len(x), 0, -1):
        delta = dh * (1 - hs[t] ** 2)
        grads["weight_ih"] += torch.outer(delta, x[t - 1])
        grads["weight_hh"] += torch.outer(delta, hs[t - 1])
        grads["bias_ih"] += delta
        grads["bias_hh"] += delta
        dh = delta @ W_hh.T  # the mistake: z_t = ... + h_{t-1} @ W_hh.T gives delta @ W_hh
    grads["h0"] = dh
    return grads
