"""The founding question, adapted to ``symbptt check``'s signature (catalogued mistake 1).

Someone ran ``nn.RNN(input_size=1, hidden_size=2)`` over x = [1, 2, 3], called
``h_3.sum().backward()`` and derived dh_3/dW_ih by hand: 0.5162 where torch said 0.5053
(with ``torch.manual_seed(0)``: [2.0968, 0.0939] where torch says [2.0941, 0.1053]). The first
two terms are right; the third multiplies two row vectors element-wise where the chain needs
``(((a3 @ W_hh) * a2) @ W_hh) * a1 * x[0]`` (a_t = 1 - h_t**2).

    symbptt check examples/seed_question.py
"""

import torch
from torch import tanh


def manual_gradients(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_h_n):
    W_ih, W_hh = weight_ih, weight_hh
    b = bias_ih + bias_hh
    # forward, as nn.RNN computes it (column form: W_ih @ x_t is x_t @ W_ih.T)
    z_1 = W_ih @ x[0] + W_hh @ h0 + b
    z_2 = W_ih @ x[1] + W_hh @ tanh(z_1) + b
    z_3 = W_ih @ x[2] + W_hh @ tanh(z_2) + b
    # dL/dh_3 = grad_h_n (ones for L = h_3.sum())
    g = grad_h_n
    dh_3_dW_ih_3 = g * (1 - tanh(z_3) ** 2) * x[2]
    dh_3_dW_ih_2 = ((g * (1 - tanh(z_3) ** 2)) @ W_hh) * ((1 - tanh(z_2) ** 2) * x[1])
    dh_3_dW_ih_1 = (
        ((g * (1 - tanh(z_3) ** 2)) @ W_hh)
        * ((1 - tanh(z_2) ** 2) @ W_hh)
        * ((1 - tanh(z_1) ** 2) * x[0])
    )
    grad = dh_3_dW_ih_1 + dh_3_dW_ih_2 + dh_3_dW_ih_3
    return {"weight_ih": torch.reshape(grad, (2, 1))}
