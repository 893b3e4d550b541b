"""``symbptt flow``: how the gradient flows back through the steps, as the products of the
step Jacobians (``jacobian``, ``equations``), their numbers (``numbers``), the verdict
(``verdict``) and a plot (``plot``); ``command`` is the subcommand.
"""
