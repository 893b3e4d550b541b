"""Holding the generated code against independent references: ``verify`` (the table
``symbptt verify`` prints), ``agreement`` (the reference, the relative error, the tolerances),
``cell_reference`` (a user-defined cell's equations run step by step under autograd) and
``numeric_inputs`` (the weights and inputs the learner tools read).
"""
