"""symbptt: backpropagation through time for PyTorch's recurrent layers, derived symbolically.

>>> import symbptt
>>> d = symbptt.derive(steps=3, input_size=1, hidden_size=2)
>>> print(d.to_text())          # equations, backward recurrence, unrolled chains
>>> d.write("generated")        # generated/rnn_tanh_t3_i1_h2.py
>>> RNN = d.load().RNN          # drop-in for torch.nn.RNN whose backward is the derivation
"""

from .api import Derivation, derive
from .core.cell_definition import Cell
from .core.derivation import Gradient
from .core.spec import Spec
from .errors import (
    CodegenError,
    DerivationError,
    SpecError,
    SymbpttError,
    VerificationError,
)

__all__ = [
    "Cell",
    "CodegenError",
    "Derivation",
    "DerivationError",
    "Gradient",
    "Spec",
    "SpecError",
    "SymbpttError",
    "VerificationError",
    "derive",
]
