"""The core: what to derive and the derivation itself, a value that imports no printer, template
or learner tool.

``spec`` (the layer and its options) → ``cell_definition`` (a cell as data: a user's from
``cell_file`` / ``cell_equation``, torch's from ``torch_cells``) → ``cell_program`` (its step
program of matrix expressions, ``program``, ``matexpr``) → ``adjoint`` (the reverse-mode rules)
→ ``derivation`` (every step, the backward recurrence and the gradients), with ``recurrence``
(linear recurrences) and ``unrolled`` (gradients as chains of products) read off it.
"""
